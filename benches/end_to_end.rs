//! End-to-end throughput and server CPU cost over loopback OTLP/gRPC.
//!
//! Starts the release `otel-sli` binary as a child process on free loopback ports, waits for
//! `/readyz`, then drives `TraceService/Export` with pre-encoded 500-span requests (50
//! distinct ones generated up front) through `tonic::client::Grpc` with a codec that sends
//! the bytes as they are, so the client does no protobuf work per request. Several requests
//! are kept in flight over a few HTTP/2 connections.
//!
//! For uncompressed and gzip-compressed requests (tonic compresses on the client), each in
//! two phases:
//!
//! * max: closed loop, every in-flight slot sends its next request as soon as the previous
//!   one is answered: requests/s, spans/s, server CPU seconds (utime + stime of the child
//!   from `/proc/<pid>/stat`) and spans per server CPU-second, Export latency p50/p99;
//! * paced: requests started at fixed intervals adding up to about half the max rate:
//!   latency at moderate load, and the CPU cost there.
//!
//! Each phase has a warm-up that is not measured. At the end `/metrics` is scraped and
//! `otel_sli_accepted_spans_total` must equal the spans of all answered requests.
//!
//! `cargo bench --bench end_to_end`. Environment (defaults in brackets): `E2E_SECS` [10]
//! measured seconds per max phase, `E2E_PACED_SECS` [5], `E2E_WARMUP_SECS` [2],
//! `E2E_INFLIGHT` [16] concurrent requests, `E2E_CONNS` [4] HTTP/2 connections,
//! `E2E_SPANS` [500] spans per request, `E2E_REQUESTS` [50] distinct requests,
//! `E2E_CLIENT_THREADS` [2] client runtime threads, `E2E_MODES` [plain,gzip],
//! `E2E_CONFIG` [none] a configuration file for the server (e.g. one with
//! `completeness: {enabled: false}` to measure the cost of completeness tracking),
//! `E2E_BASELINE` [1] `0` skips the baseline receiver run (`benches/common/baseline.rs`:
//! full `prost` decode and a `HashMap`, same load, same CPU accounting; its ratio is printed),
//! `E2E_SERVER_IP` [127.0.0.1], `E2E_SINK_IP` [127.0.0.1] and `E2E_SERVER_PREFIX` [none] put
//! the server and the sink on other addresses and start the server under a command (e.g. in
//! a network namespace: `benches/netns.sh`), `E2E_SERVER_CPUS` [none] the CPUs only the
//! server runs on (`0` in `benches/netns.sh`): their whole busy time from `/proc/stat` is
//! reported too, which includes the receive processing the kernel does there while the
//! server is idle (a process's own CPU time includes it only when it lands while it runs),
//! with the share of their time the hypervisor stole reported beside it (`stolen`),
//! `E2E_RATE` [half the max] requests/s of the paced phase, to compare runs at the same load,
//! `E2E_FORWARD` [off] `http` or `grpc`: the server forwards every request to a discarding
//! OTLP/HTTP or OTLP/gRPC sink in this process, to measure the cost of the raw pass-through
//! (the sink's CPU is not the server's), with `E2E_FORWARD_COMPRESSION` [none] `none` or
//! `gzip` (gzip requests then pass through as received) and `E2E_FORWARD_BATCH` [off] a
//! `batch.wait` (e.g. `5ms`: received requests merged for the upstream), `E2E_PROBE_RATE` [100] requests/s
//! of the floor probe during paced phases (`0`: none): an empty Export (no spans) on a
//! connection of its own, whose round trip is the same network, scheduling and gRPC path
//! without the span work, so the Export latency can be read against it. The probe's
//! requests are load too (the server's CPU time includes them, the request count does not):
//! set it to `0` when comparing CPU figures at low request rates.
//! `E2E_PEER` [off] `spanmetrics` or `passthrough`: after otel-sli, the same load against
//! the real OpenTelemetry Collector (the test distribution of `tests/collector/`, built by
//! `tests/collector/build.sh`) on `benches/collector/<peer>.yaml`, started the same way
//! (`E2E_SERVER_PREFIX`, `E2E_SERVER_IP`) and measured the same way, at its maximum and at
//! the rate otel-sli's paced phase achieved; the ratios are printed, and the Collector's own
//! counts are checked against the spans sent. `passthrough` forwards to the same discarding
//! gRPC sink as `E2E_FORWARD=grpc`, compressing as `E2E_FORWARD_COMPRESSION` says.
//! `E2E_UNIQUE_TRACES` [0] `1`: every request sent gets trace ids of its own (the distinct
//! requests' ids with a per-send counter mixed into their low 8 bytes; the client copies
//! each body to do it), so the server sees a stream of new traces, as in production, rather
//! than the same `E2E_REQUESTS` requests' traces again; the completeness tracker's figures
//! (traces judged, on arrival, evicted, waiting, memory) are printed at the end either way.
//! Without `--bench` (as under `cargo test`) it runs a short smoke version.

mod common;

use bytes::{Buf, BufMut, Bytes};
use common::{
    encoded_requests, env_or, http_get, is_bench_run, metric_sum, server_command, server_ip,
    thousands, trace_id_offsets,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

// ---------------------------------------------------------------------------------------
// The server child process.

/// Kills the server when dropped, including while unwinding from a failed check.
struct Server {
    child: Child,
    grpc: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three distinct free loopback ports (all bound at once, then released).
/// The address the forwarding sink listens on (`E2E_SINK_IP`, default loopback).
fn sink_listener() -> TcpListener {
    let ip: std::net::IpAddr = env_or("E2E_SINK_IP", "127.0.0.1".to_string())
        .parse()
        .expect("E2E_SINK_IP is an IP address");
    TcpListener::bind((ip, 0)).expect("bind sink")
}

fn free_ports() -> [u16; 3] {
    let ls: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    [port(&ls[0]), port(&ls[1]), port(&ls[2])]
}

/// A discarding OTLP/HTTP sink: answers every request 200 after reading its body.
fn http_sink() -> SocketAddr {
    let l = sink_listener();
    let addr = l.local_addr().expect("sink addr");
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || sink_connection(conn));
        }
    });
    addr
}

/// A discarding OTLP/gRPC sink (HTTP/2 without TLS) on a thread of its own: reads each
/// request and answers OK.
fn grpc_sink() -> SocketAddr {
    let l = sink_listener();
    let addr = l.local_addr().expect("sink addr");
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sink runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).expect("sink listener");
            let app = axum::Router::new().route(
                "/{*method}",
                axum::routing::post(|_body: axum::body::Bytes| async {
                    // An empty Export response (a zero-length message) and grpc-status 0 in
                    // the trailers: what a gRPC server answers, and what Go clients require
                    // (no message at all is a protocol error to them).
                    let mut trailers = axum::http::HeaderMap::new();
                    trailers.insert("grpc-status", axum::http::HeaderValue::from_static("0"));
                    let frames = [
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                            Bytes::from_static(&[0u8; 5]),
                        )),
                        Ok(http_body::Frame::trailers(trailers)),
                    ];
                    axum::response::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(axum::body::Body::new(http_body_util::StreamBody::new(
                            futures_util::stream::iter(frames),
                        )))
                        .expect("response")
                }),
            );
            let _ = axum::serve(l, app).await;
        });
    });
    addr
}

fn sink_connection(mut s: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0usize;
    loop {
        // Read the head.
        let head_end = loop {
            if let Some(i) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut buf[have..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => have += n,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let in_buf = have - head_end;
        let consumed = if in_buf >= len {
            head_end + len
        } else {
            // Read exactly the rest of the body, so nothing of the next request is taken.
            let mut left = len - in_buf;
            let mut chunk = vec![0u8; left.min(1 << 20)];
            while left > 0 {
                let want = left.min(chunk.len());
                match s.read(&mut chunk[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => left -= n,
                }
            }
            have
        };
        buf.copy_within(consumed..have, 0);
        have -= consumed;
        if s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        )
        .is_err()
        {
            return;
        }
    }
}

/// The discarding sink of `E2E_FORWARD` (`http` or `grpc`), if set.
fn forward_sink() -> Option<(String, SocketAddr)> {
    let mode = std::env::var("E2E_FORWARD").ok()?;
    let sink = match mode.as_str() {
        "http" => http_sink(),
        "grpc" => grpc_sink(),
        other => panic!("E2E_FORWARD={other:?}: use http or grpc"),
    };
    Some((mode, sink))
}

fn start_server(forward: Option<&(String, SocketAddr)>) -> Server {
    let [grpc, http, admin] = free_ports();
    let ip = server_ip();
    let addr = |p: u16| SocketAddr::new(ip, p);
    // E2E_BIN: another build of the server (e.g. an older commit's) to compare against.
    let bin = env_or("E2E_BIN", env!("CARGO_BIN_EXE_otel-sli").to_string());
    let mut cmd = server_command(&bin);
    if let Ok(config) = std::env::var("E2E_CONFIG") {
        cmd.args(["--config", &config]);
    }
    if let Some((mode, sink)) = forward {
        let compression: String = env_or("E2E_FORWARD_COMPRESSION", "none".to_string());
        let batch = std::env::var("E2E_FORWARD_BATCH")
            .map(|wait| format!("    batch: {{ wait: {wait} }}\n"))
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("otel-sli-e2e-forward-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            format!("forward:\n  - endpoint: http://{sink}\n    protocol: {mode}\n    compression: {compression}\n{batch}"),
        )
        .expect("write forward config");
        cmd.args(["--config", &path.display().to_string()]);
    }
    let child = cmd
        .args(["--otlp-grpc", &addr(grpc).to_string()])
        .args(["--otlp-http", &addr(http).to_string()])
        .args(["--admin", &addr(admin).to_string()])
        .args(["--log-level", "warn"])
        .env_remove("RUST_LOG")
        .env_remove("OTEL_SLI_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the otel-sli binary");
    let mut server = Server {
        child,
        grpc: addr(grpc),
        admin: addr(admin),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("otel-sli exited during start-up: {status}");
        }
        if let Ok((200, _)) = http_get(server.admin, "/readyz") {
            return server;
        }
        assert!(Instant::now() < deadline, "otel-sli not ready after 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `conns` HTTP/2 connections (one `Endpoint::connect` each) to a gRPC receiver.
async fn connect(conns: usize, addr: SocketAddr) -> Vec<Channel> {
    let mut channels = Vec::with_capacity(conns);
    for _ in 0..conns {
        let ch = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to the gRPC receiver");
        channels.push(ch);
    }
    channels
}

/// Starts the baseline receiver (`common::baseline`) as a child process of this binary,
/// under `E2E_SERVER_PREFIX` and on `E2E_SERVER_IP` like `otel-sli`, once it accepts
/// connections.
fn start_baseline() -> Server {
    let [grpc, _, _] = free_ports();
    let addr = SocketAddr::new(server_ip(), grpc);
    let mut cmd = server_command(std::env::current_exe().expect("own path"));
    let child = cmd
        .args(["--baseline-server", &addr.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the baseline receiver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "baseline receiver did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server {
        child,
        grpc: addr,
        admin: addr,
    }
}

/// Waits (up to a minute) until the server's forwarders hold no request.
async fn forward_drained(admin: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        let queued = http_get(admin, "/metrics")
            .ok()
            .and_then(|(_, m)| metric_sum(&m, "otel_sli_exporter_queue_size", ""));
        if queued == Some(0.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("  (the forwarder still held requests after a minute)");
}

/// User and system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name (field 2) is parenthesised and may contain spaces; the fields after
    // it start with field 3 (state), so utime (14) and stime (15) are at indices 11 and 12.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> u64 {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected /proc/{pid}/stat format"))
    };
    (field(11), field(12))
}

/// Idle clock ticks (idle + iowait) and stolen ticks of `cpus` from `/proc/stat`. Idle time
/// there is measured (not sampled by the tick, which stops while a CPU idles), so the time
/// since the last sample minus it is the CPUs' whole busy time: the server's CPU time
/// together with the interrupt and receive processing done on its CPUs while it was idle,
/// which its own accounting leaves out (and any time stolen while they were busy). Stolen
/// time is what the hypervisor gave to others while these virtual CPUs wanted to run.
fn idle_and_stolen_ticks(cpus: &[usize]) -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let (mut idle, mut stolen) = (0, 0);
    for cpu in cpus {
        let name = format!("cpu{cpu}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&name))
            .unwrap_or_else(|| panic!("no {name} in /proc/stat"));
        // user nice system idle iowait irq softirq steal ...
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().expect("/proc/stat field"))
            .collect();
        idle += f[3] + f[4];
        stolen += f.get(7).copied().unwrap_or(0);
    }
    (idle, stolen)
}

/// Context switches (voluntary + involuntary) summed over the live threads of a process.
fn context_switches(pid: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------
// A gRPC codec that sends pre-encoded request bytes and hands back the response bytes.

#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

// ---------------------------------------------------------------------------------------
// Load generation.

/// Counters over the whole run (all phases, warm-ups included).
#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    spans: AtomicU64,
    entries: AtomicU64,
    busy: AtomicU64,
    rejected: AtomicU64,
    /// Empty Exports of the floor probe answered (not in `requests`).
    probes: AtomicU64,
}

struct Body {
    bytes: Bytes,
    spans: u64,
    entries: u64,
    /// Where each span's trace id starts in `bytes`.
    trace_ids: Vec<usize>,
}

impl Body {
    /// The body to send: as it is, or (with `unique`) a copy whose trace ids have `n` mixed
    /// into their low 8 bytes, the same for every span of a trace.
    fn for_send(&self, unique: bool, n: u64) -> Bytes {
        if !unique {
            return self.bytes.clone();
        }
        let mut b = self.bytes.to_vec();
        for &at in &self.trace_ids {
            if let Some(low) = b.get_mut(at + 8..at + 16) {
                for (x, k) in low.iter_mut().zip(n.to_le_bytes()) {
                    *x ^= k;
                }
            }
        }
        Bytes::from(b)
    }
}

/// Requests sent so far, all phases: what makes each one's trace ids its own.
static SENDS: AtomicU64 = AtomicU64::new(1);

struct Setup {
    server_pid: String,
    channels: Vec<Channel>,
    /// The floor probe's connection and rate, if it runs.
    probe: Option<(Channel, f64)>,
    bodies: Arc<Vec<Body>>,
    inflight: usize,
    warmup: Duration,
    ticks: f64,
    totals: Arc<Totals>,
    /// The CPUs only the server runs on (`E2E_SERVER_CPUS`), whose busy time is reported too.
    server_cpus: Option<Vec<usize>>,
    /// The admin address of a forwarding otel-sli, whose dropped items each phase reports.
    forwarder_admin: Option<SocketAddr>,
}

impl Setup {
    /// The same load against another server (the baseline receiver, the Collector): its
    /// process, its connections, counters of its own, no floor probe.
    fn for_other(&self, pid: u32, channels: Vec<Channel>) -> Setup {
        Setup {
            server_pid: pid.to_string(),
            channels,
            probe: None,
            bodies: Arc::clone(&self.bodies),
            inflight: self.inflight,
            warmup: self.warmup,
            ticks: self.ticks,
            totals: Arc::new(Totals::default()),
            server_cpus: self.server_cpus.clone(),
            forwarder_admin: None,
        }
    }
}

/// Counters and CPU times at one instant.
struct Sample {
    at: Instant,
    requests: u64,
    spans: u64,
    busy: u64,
    /// Server (user, system) clock ticks.
    server: (u64, u64),
    /// This process's (user, system) clock ticks.
    client: (u64, u64),
    server_ctx: u64,
    /// Idle and stolen clock ticks of the server's own CPUs (`E2E_SERVER_CPUS`), if given.
    server_cpus: Option<(u64, u64)>,
}

struct PhaseResult {
    name: String,
    secs: f64,
    requests: u64,
    spans: u64,
    busy: u64,
    server_cpu: f64,
    server_sys: f64,
    server_ctx: u64,
    /// Busy seconds of the server's own CPUs and the percentage of their time stolen by the
    /// hypervisor, if given.
    cpus_busy: Option<(f64, f64)>,
    client_cpu: f64,
    latencies: Vec<Duration>,
    /// Round trips of the floor probe's empty Exports (paced phases only).
    floor: Vec<Duration>,
    /// Items the forwarder dropped from the warm-up's end to the phase's end (queue full).
    forward_dropped: f64,
}

impl PhaseResult {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn spans_per_sec(&self) -> f64 {
        self.spans as f64 / self.secs
    }
    fn spans_per_cpu(&self) -> f64 {
        if self.server_cpu > 0.0 {
            self.spans as f64 / self.server_cpu
        } else {
            f64::NAN
        }
    }
    /// The server's CPU per span, in microseconds.
    fn cpu_us_per_span(&self) -> f64 {
        1e6 * self.server_cpu / self.spans.max(1) as f64
    }
    /// The kernel's part of [`Self::cpu_us_per_span`].
    fn sys_us_per_span(&self) -> f64 {
        1e6 * self.server_sys / self.spans.max(1) as f64
    }
    fn spans_per_busy_cpu(&self) -> Option<f64> {
        self.cpus_busy
            .map(|(b, _)| b)
            .filter(|b| *b > 0.0)
            .map(|b| self.spans as f64 / b)
    }
    fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q).unwrap_or(Duration::ZERO)
    }
}

/// The `q` quantile of sorted durations; `None` when there are none.
fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank.min(sorted.len()).checked_sub(1)?).copied()
}

/// The floor probe: empty Export requests at `rate` per second on `channel` until `stop`,
/// keeping the round trips made while `measuring`. Answered requests are counted in
/// `totals.probes`, apart from the load's.
async fn probe(
    channel: Channel,
    rate: f64,
    stop: Arc<AtomicBool>,
    measuring: Arc<AtomicBool>,
    totals: Arc<Totals>,
) -> Vec<Duration> {
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = PathAndQuery::from_static(EXPORT_PATH);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let in_window = measuring.load(Ordering::Relaxed);
        let start = Instant::now();
        if let Err(e) = grpc.ready().await {
            panic!("gRPC channel failed: {e}");
        }
        let result = grpc
            .unary(tonic::Request::new(Bytes::new()), path.clone(), RawCodec)
            .await;
        let took = start.elapsed();
        match result {
            Ok(_) => {
                totals.probes.fetch_add(1, Ordering::Relaxed);
                if in_window && measuring.load(Ordering::Relaxed) {
                    latencies.push(took);
                }
            }
            Err(s) if s.code() == Code::Unavailable && s.message().contains("queues are full") => {}
            Err(s) => panic!("empty Export failed: {s}"),
        }
    }
    latencies
}

/// Runs one phase: `warmup`, then `measure` with counters and CPU sampled at both ends.
/// `rate`: total requests per second to pace at; `None` for a closed loop.
async fn phase(
    setup: &Setup,
    name: &str,
    gzip: bool,
    rate: Option<f64>,
    measure: Duration,
) -> PhaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let n = setup.inflight;
    let path = PathAndQuery::from_static(EXPORT_PATH);
    let mut tasks = Vec::with_capacity(n);
    let t0 = tokio::time::Instant::now();
    for t in 0..n {
        let channel = setup.channels[t % setup.channels.len()].clone();
        let (stop, measuring) = (Arc::clone(&stop), Arc::clone(&measuring));
        let (bodies, totals) = (Arc::clone(&setup.bodies), Arc::clone(&setup.totals));
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            if gzip {
                // As an SDK's gzip exporter does: compressed requests, compressed answers
                // accepted (the Collector compresses its answers to a gzip client).
                grpc = grpc
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
            }
            // Each slot sends every n-th request; staggered start when paced.
            let mut ticker = rate.map(|r| {
                let period = Duration::from_secs_f64(n as f64 / r);
                let mut i =
                    tokio::time::interval_at(t0 + period.mul_f64(t as f64 / n as f64), period);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
            let mut latencies = Vec::new();
            let mut k = t * 7;
            let unique = env_or("E2E_UNIQUE_TRACES", 0u8) == 1;
            while !stop.load(Ordering::Relaxed) {
                if let Some(i) = ticker.as_mut() {
                    i.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                k = (k + 1) % bodies.len();
                let body = &bodies[k];
                let bytes = body.for_send(unique, SENDS.fetch_add(1, Ordering::Relaxed));
                let in_window = measuring.load(Ordering::Relaxed);
                let start = Instant::now();
                if let Err(e) = grpc.ready().await {
                    panic!("gRPC channel failed: {e}");
                }
                let result = grpc
                    .unary(tonic::Request::new(bytes), path.clone(), RawCodec)
                    .await;
                let took = start.elapsed();
                match result {
                    Ok(resp) => {
                        let resp = ExportTraceServiceResponse::decode(resp.into_inner())
                            .expect("ExportTraceServiceResponse");
                        let rejected = resp.partial_success.map_or(0, |p| p.rejected_spans);
                        totals.requests.fetch_add(1, Ordering::Relaxed);
                        totals.spans.fetch_add(body.spans, Ordering::Relaxed);
                        totals.entries.fetch_add(body.entries, Ordering::Relaxed);
                        totals
                            .rejected
                            .fetch_add(rejected as u64, Ordering::Relaxed);
                        if in_window && measuring.load(Ordering::Relaxed) {
                            latencies.push(took);
                        }
                    }
                    Err(s)
                        if s.code() == Code::Unavailable
                            && (s.message().contains("queues are full")
                                || s.message().contains("sending queue is full")) =>
                    {
                        // Pipeline queues full (otel-sli), or the sending queue (the Collector
                        // peer): the request counted nothing; back off briefly. (Other
                        // UNAVAILABLE errors, e.g. a dead connection, fail the run.)
                        totals.busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(s) => panic!("Export failed: {s}"),
                }
            }
            latencies
        }));
    }

    let prober = match (&setup.probe, rate) {
        (Some((channel, probe_rate)), Some(_)) => Some(tokio::spawn(probe(
            channel.clone(),
            *probe_rate,
            Arc::clone(&stop),
            Arc::clone(&measuring),
            Arc::clone(&setup.totals),
        ))),
        _ => None,
    };
    let sample = |totals: &Totals| Sample {
        at: Instant::now(),
        requests: totals.requests.load(Ordering::Relaxed),
        spans: totals.spans.load(Ordering::Relaxed),
        busy: totals.busy.load(Ordering::Relaxed),
        server: cpu_ticks(&setup.server_pid),
        client: cpu_ticks("self"),
        server_ctx: context_switches(&setup.server_pid),
        server_cpus: setup.server_cpus.as_deref().map(idle_and_stolen_ticks),
    };
    let dropped = || {
        setup.forwarder_admin.map_or(0.0, |admin| {
            http_get(admin, "/metrics")
                .ok()
                .and_then(|(_, m)| metric_sum(&m, "otel_sli_exporter_dropped_items_total", ""))
                .unwrap_or(0.0)
        })
    };
    tokio::time::sleep(setup.warmup).await;
    let dropped_before = dropped();
    let a = sample(&setup.totals);
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(measure).await;
    measuring.store(false, Ordering::Relaxed);
    let b = sample(&setup.totals);
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for t in tasks {
        match t.await {
            Ok(l) => latencies.extend(l),
            Err(e) => panic!("load task failed: {e}"),
        }
    }
    latencies.sort_unstable();
    let mut floor = match prober {
        Some(p) => p.await.unwrap_or_else(|e| panic!("probe task failed: {e}")),
        None => Vec::new(),
    };
    floor.sort_unstable();
    let forward_dropped = dropped() - dropped_before;
    let ticks = |(u, s): (u64, u64)| (u + s) as f64 / setup.ticks;
    PhaseResult {
        name: name.to_string(),
        secs: (b.at - a.at).as_secs_f64(),
        requests: b.requests - a.requests,
        spans: b.spans - a.spans,
        busy: b.busy - a.busy,
        server_cpu: ticks(b.server) - ticks(a.server),
        server_sys: (b.server.1 - a.server.1) as f64 / setup.ticks,
        server_ctx: b.server_ctx - a.server_ctx,
        cpus_busy: a
            .server_cpus
            .zip(b.server_cpus)
            .map(|((idle_a, st_a), (idle_b, st_b))| {
                let cpus = setup.server_cpus.as_ref().map_or(0, Vec::len) as f64;
                let idle = (idle_b - idle_a) as f64 / setup.ticks;
                let stolen = (st_b - st_a) as f64 / setup.ticks;
                let elapsed = (b.at - a.at).as_secs_f64() * cpus;
                // Stolen time is not taken out: while a halted vCPU waits to be run again
                // its time counts as idle and as stolen, and would be taken out twice.
                (
                    (elapsed - idle).max(0.0),
                    100.0 * stolen / elapsed.max(f64::MIN_POSITIVE),
                )
            }),
        client_cpu: ticks(b.client) - ticks(a.client),
        latencies,
        floor,
        forward_dropped,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Prints both servers' CPU per span split into kernel and user space, and the ratio no
/// user-space work could exceed. The kernel's part (TCP receive, system calls) is work per
/// byte and per packet, which otel-sli pays whatever its own code costs: the other server's
/// CPU per span over otel-sli's kernel part is about the most the ratio can be on this
/// machine.
fn print_kernel_split(ours: &PhaseResult, theirs: &PhaseResult) {
    let kernel = PhaseResult::sys_us_per_span;
    let user = |r: &PhaseResult| r.cpu_us_per_span() - r.sys_us_per_span();
    println!(
        "    of which kernel {:.3} µs vs {:.3} µs, user space {:.3} µs vs {:.3} µs ({:.1}x); ratio bound with no user-space work at all: {:.1}x",
        kernel(ours),
        kernel(theirs),
        user(ours),
        user(theirs),
        user(theirs) / user(ours).max(f64::MIN_POSITIVE),
        theirs.cpu_us_per_span() / kernel(ours).max(f64::MIN_POSITIVE)
    );
}

fn print_phase(r: &PhaseResult) {
    println!(
        "  {:<14} {:>8.1} req/s {:>11} spans/s  server CPU {:>5.2} s ({:.2} cores)  {:>11} spans/CPU-s  p50 {} ms  p99 {} ms{}{}{}",
        r.name,
        r.rps(),
        thousands(r.spans_per_sec()),
        r.server_cpu,
        r.server_cpu / r.secs,
        thousands(r.spans_per_cpu()),
        ms(r.quantile(0.5)),
        ms(r.quantile(0.99)),
        match quantile(&r.floor, 0.99) {
            Some(p99) => format!("  (empty Export p99 {} ms)", ms(p99)),
            None => String::new(),
        },
        if r.busy > 0 {
            format!("  ({} busy refusals)", r.busy)
        } else {
            String::new()
        },
        if r.forward_dropped > 0.0 {
            format!("  ({} forwarded items dropped: queue full)", r.forward_dropped)
        } else {
            String::new()
        }
    );
}

fn main() {
    // The baseline receiver runs as a child process of this binary (see `start_baseline`).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--baseline-server") {
        let addr = args
            .get(i + 1)
            .and_then(|a| a.parse().ok())
            .expect("--baseline-server ADDR");
        common::baseline::serve(addr);
        return;
    }
    let bench = is_bench_run();
    let secs = |name: &str, default: f64, smoke: f64| {
        Duration::from_secs_f64(if bench { env_or(name, default) } else { smoke })
    };
    let measure = secs("E2E_SECS", 10.0, 1.0);
    let paced_secs = secs("E2E_PACED_SECS", 5.0, 0.5);
    let warmup = secs("E2E_WARMUP_SECS", 2.0, 0.3);
    let inflight: usize = env_or("E2E_INFLIGHT", if bench { 16 } else { 4 }).max(1);
    let conns: usize = env_or("E2E_CONNS", if bench { 4 } else { 2 }).clamp(1, inflight);
    let spans: usize = env_or("E2E_SPANS", 500);
    let distinct: usize = env_or("E2E_REQUESTS", if bench { 50 } else { 5 }).max(1);
    let client_threads: usize = env_or("E2E_CLIENT_THREADS", 2).max(1);
    let modes: String = env_or("E2E_MODES", "plain,gzip".to_string());
    let rate: Option<f64> = std::env::var("E2E_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r: &f64| *r > 0.0);
    if !bench {
        println!("end_to_end: smoke run (use `cargo bench --bench end_to_end` for the real one)");
    }

    let encoded = encoded_requests(distinct, spans, 2024);
    let bytes: usize = encoded.iter().map(|e| e.body.len()).sum();
    let bodies: Vec<Body> = encoded
        .into_iter()
        .map(|e| Body {
            spans: e.spans as u64,
            entries: e.entries,
            trace_ids: trace_id_offsets(&e.body),
            bytes: Bytes::from(e.body),
        })
        .collect();
    println!(
        "{} distinct requests of {} spans, {} bytes each on average ({:.0} bytes/span)",
        bodies.len(),
        bodies[0].spans,
        bytes / bodies.len(),
        bytes as f64 / bodies.iter().map(|b| b.spans).sum::<u64>() as f64
    );

    let forward = forward_sink();
    let server = start_server(forward.as_ref());
    let ticks = clock_ticks_per_second();
    println!(
        "server pid {} (gRPC {}, admin {}); client: {inflight} in flight over {conns} connections, {client_threads} runtime threads; CLK_TCK {ticks}",
        server.child.id(),
        server.grpc,
        server.admin
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let totals = Arc::new(Totals::default());
    let forwarding = std::env::var("E2E_FORWARD").is_ok();
    let with_baseline = env_or("E2E_BASELINE", 1u8) == 1;
    let probe_rate: f64 = env_or("E2E_PROBE_RATE", 100.0);
    assert!(
        (0.0..=10_000.0).contains(&probe_rate),
        "E2E_PROBE_RATE: 0 (off) to 10000 requests/s"
    );
    let server_cpus: Option<Vec<usize>> = std::env::var("E2E_SERVER_CPUS").ok().map(|v| {
        v.split(',')
            .map(|c| {
                c.trim()
                    .parse()
                    .expect("E2E_SERVER_CPUS: CPU numbers, comma-separated")
            })
            .collect()
    });
    let peer_kind = std::env::var("E2E_PEER").ok();
    let (results, baseline, peer) = rt.block_on(async {
        let channels = connect(conns, server.grpc).await;
        let probe = match probe_rate {
            r if r > 0.0 => connect(1, server.grpc).await.pop().map(|c| (c, r)),
            _ => None,
        };
        let setup = Setup {
            server_pid: server.child.id().to_string(),
            channels,
            probe,
            bodies: Arc::new(bodies),
            inflight,
            warmup,
            ticks,
            totals: Arc::clone(&totals),
            server_cpus,
            forwarder_admin: forwarding.then_some(server.admin),
        };
        let mut results = Vec::new();
        for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let gzip = match mode {
                "plain" => false,
                "gzip" => true,
                other => panic!("unknown mode {other:?} in E2E_MODES (plain, gzip)"),
            };
            let max = phase(&setup, &format!("{mode} max"), gzip, None, measure).await;
            print_phase(&max);
            // What the forwarder still holds from the max phase would be sent (and its CPU
            // counted) in the next phase.
            if forwarding {
                forward_drained(server.admin).await;
            }
            // A fixed rate compares runs at the same load (e.g. with and without forwarding).
            let (rate, label) = match rate {
                Some(r) => (r, format!("{mode} {r:.0}/s")),
                None => ((max.rps() * 0.5).max(1.0), format!("{mode} 50%")),
            };
            let paced = phase(&setup, &label, gzip, Some(rate), paced_secs).await;
            print_phase(&paced);
            results.push(max);
            results.push(paced);
        }
        // The same load against the OpenTelemetry Collector doing the comparable job.
        let peer = match peer_kind.as_deref() {
            Some(kind) => {
                let sink = forward
                    .as_ref()
                    .filter(|(mode, _)| mode == "grpc")
                    .map(|(_, sink)| *sink)
                    .unwrap_or_else(grpc_sink);
                let p = common::collector::start(
                    kind,
                    sink,
                    &env_or("E2E_FORWARD_COMPRESSION", "none".to_string()),
                );
                let psetup = setup.for_other(p.child.id(), connect(conns, p.grpc).await);
                let mut peer_results = Vec::new();
                for (i, mode) in modes
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .enumerate()
                {
                    let gzip = mode == "gzip";
                    let r = phase(
                        &psetup,
                        &format!("collector {mode} max"),
                        gzip,
                        None,
                        measure,
                    )
                    .await;
                    print_phase(&r);
                    peer_results.push((2 * i, r));
                    // At the rate otel-sli's paced phase achieved: the same load for both.
                    if let Some(ours) = results.get(2 * i + 1) {
                        let rate = ours.rps();
                        let r = phase(
                            &psetup,
                            &format!("collector {mode} {rate:.0}/s"),
                            gzip,
                            Some(rate),
                            paced_secs,
                        )
                        .await;
                        print_phase(&r);
                        peer_results.push((2 * i + 1, r));
                    }
                }
                let sent = psetup.totals.spans.load(Ordering::Relaxed);
                let check = common::collector::check(&p, sent);
                Some((kind.to_string(), peer_results, check))
            }
            None => None,
        };
        // The same load against the straightforward receiver, for the ratio.
        let mut baseline = Vec::new();
        if with_baseline {
            let b = start_baseline();
            let bsetup = setup.for_other(b.child.id(), connect(conns, b.grpc).await);
            for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                let r = phase(
                    &bsetup,
                    &format!("baseline {mode} max"),
                    mode == "gzip",
                    None,
                    measure,
                )
                .await;
                print_phase(&r);
                baseline.push(r);
            }
        }
        (results, baseline, peer)
    });
    drop(rt);
    for b in &baseline {
        let mode = b.name.trim_start_matches("baseline ");
        if let Some(ours) = results.iter().find(|r| r.name == mode) {
            println!(
                "ratio {mode}: otel-sli {} / baseline (prost decode + HashMap) {} spans per server CPU-second = {:.1}x",
                thousands(ours.spans_per_cpu()),
                thousands(b.spans_per_cpu()),
                ours.spans_per_cpu() / b.spans_per_cpu()
            );
            print_kernel_split(ours, b);
        }
    }

    if let Some((kind, peer_results, check)) = &peer {
        for (i, theirs) in peer_results {
            let Some(ours) = results.get(*i) else {
                continue;
            };
            let phase = &theirs.name;
            println!(
                "vs collector ({kind}) {phase}: otel-sli {} / Collector {} spans per server CPU-second = {:.1}x; server CPU per span {:.3} µs vs {:.3} µs",
                thousands(ours.spans_per_cpu()),
                thousands(theirs.spans_per_cpu()),
                ours.spans_per_cpu() / theirs.spans_per_cpu(),
                ours.cpu_us_per_span(),
                theirs.cpu_us_per_span()
            );
            print_kernel_split(ours, theirs);
        }
        println!("collector check: {check}");
    }

    // Correctness: the server counted exactly the spans of the requests it answered OK.
    let (status, metrics) = http_get(server.admin, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics");
    let accepted = metric_sum(&metrics, "otel_sli_accepted_spans_total", "").unwrap_or(-1.0);
    let ok_requests = metric_sum(
        &metrics,
        "otel_sli_requests_total",
        "signal=\"traces\",outcome=\"ok\"",
    )
    .unwrap_or(-1.0);
    let entry_spans = metric_sum(&metrics, "otel_sli_entry_spans_total", "").unwrap_or(-1.0);
    let forwarded = metric_sum(&metrics, "otel_sli_exporter_sent_items_total", "").unwrap_or(0.0);
    let forward_dropped =
        metric_sum(&metrics, "otel_sli_exporter_dropped_items_total", "").unwrap_or(0.0);
    let forward_queued = metric_sum(&metrics, "otel_sli_exporter_queue_size", "").unwrap_or(0.0);
    let tracking = |name: &str| metric_sum(&metrics, name, "").unwrap_or(0.0);
    let judged = tracking("otel_sli_completeness_judged_traces_total");
    let on_arrival = tracking("otel_sli_completeness_judged_on_arrival_total");
    let evicted = tracking("otel_sli_completeness_evicted_total");
    let waiting = tracking("otel_sli_tracked_traces");
    let tracking_bytes = tracking("otel_sli_completeness_memory_bytes");
    let forgotten_early = tracking("otel_sli_completeness_forgotten_early_total");
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    let sent_spans = totals.spans.load(Ordering::Relaxed);
    let sent_requests = totals.requests.load(Ordering::Relaxed);
    let probes = totals.probes.load(Ordering::Relaxed);
    let sent_entries = totals.entries.load(Ordering::Relaxed);
    drop(server);

    println!("\nresults ({spans}-span requests, {inflight} in flight, {conns} connections; latency = Export round trip at the client)");
    println!(
        "{:<12} {:>8} {:>11} {:>10} {:>6} {:>5} {:>8} {:>10} {:>14} {:>9} {:>12} {:>6} {:>7} {:>7} {:>9} {:>9} {:>5}",
        "phase",
        "req/s",
        "spans/s",
        "server CPU",
        "cores",
        "sys%",
        "ctxsw/req",
        "client CPU",
        "spans/server-s",
        "CPUs busy",
        "spans/busy-s",
        "stolen",
        "p50 ms",
        "p99 ms",
        "empty p50",
        "empty p99",
        "busy"
    );
    for r in &results {
        println!(
            "{:<12} {:>8.1} {:>11} {:>9.2}s {:>6.2} {:>5.0} {:>9.1} {:>9.2}s {:>14} {:>9} {:>12} {:>6} {:>7} {:>7} {:>9} {:>9} {:>5}",
            r.name,
            r.rps(),
            thousands(r.spans_per_sec()),
            r.server_cpu,
            r.server_cpu / r.secs,
            100.0 * r.server_sys / r.server_cpu.max(f64::MIN_POSITIVE),
            r.server_ctx as f64 / r.requests.max(1) as f64,
            r.client_cpu,
            thousands(r.spans_per_cpu()),
            r.cpus_busy.map_or("-".into(), |(b, _)| format!("{b:.2}s")),
            r.spans_per_busy_cpu().map_or("-".into(), thousands),
            r.cpus_busy.map_or("-".into(), |(_, st)| format!("{st:.1}%")),
            ms(r.quantile(0.5)),
            ms(r.quantile(0.99)),
            quantile(&r.floor, 0.5).map_or("-".into(), ms),
            quantile(&r.floor, 0.99).map_or("-".into(), ms),
            r.busy
        );
    }
    println!(
        "(spans/server-s = spans per server CPU-second, goal ≥ 1,000,000 for 500-span requests; \
         sys% = kernel share of the server's CPU; ctxsw/req = server thread context switches \
         per answered request; CPUs busy = all busy time of E2E_SERVER_CPUS, the server's own \
         CPUs, including receive processing done there while the server was idle; stolen = share of \
         those CPUs' time the hypervisor gave to others while they wanted to run; empty p50/p99 \
         = round trip of the floor probe's empty Exports, E2E_PROBE_RATE per second on a \
         connection of their own during the paced phase; server RSS at the end {rss_kib} KiB)"
    );
    println!("\ncheck: spans in answered requests  {sent_spans}");
    println!("       otel_sli_accepted_spans_total {accepted}");
    println!(
        "completeness: {} traces judged ({} on arrival), {} evicted unjudged ({:.3}% of judged + evicted), {} waiting, {:.1} MiB held, {} generations forgotten early",
        thousands(judged),
        thousands(on_arrival),
        thousands(evicted),
        100.0 * evicted / (judged + evicted).max(1.0),
        thousands(waiting),
        tracking_bytes / f64::from(1 << 20),
        thousands(forgotten_early)
    );
    if std::env::var("E2E_FORWARD").is_ok() {
        println!(
            "       forwarded: items sent {forwarded}, dropped {forward_dropped}, requests still queued {forward_queued}"
        );
    }
    println!(
        "       requests {sent_requests} + {probes} empty / otel_sli_requests_total{{traces,ok}} {ok_requests}; \
         entry spans {sent_entries} / otel_sli_entry_spans_total {entry_spans}; rejected {}",
        totals.rejected.load(Ordering::Relaxed)
    );
    assert!(
        accepted == sent_spans as f64,
        "MISMATCH: server accepted {accepted} spans, client sent {sent_spans} in answered requests"
    );
    assert!(
        ok_requests == (sent_requests + probes) as f64,
        "MISMATCH: server counted {ok_requests} OK trace requests, client got {sent_requests} + {probes} empty"
    );
    assert!(
        entry_spans == sent_entries as f64,
        "MISMATCH: server counted {entry_spans} entry spans, client sent {sent_entries}"
    );
    println!("       OK");
}
