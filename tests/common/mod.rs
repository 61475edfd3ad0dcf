//! Shared test harness: a real server on 127.0.0.1:0, raw HTTP and gRPC clients, and helpers
//! to read the admin API.
#![allow(dead_code)]

pub mod browser;
pub mod collector;
pub mod otlp;
pub mod sdk;
pub mod stalled;
pub mod tsdb;

use bytes::{Buf, BufMut, Bytes};
use otel_sli::app::{self, Running};
use otel_sli::settings::{self as config, Config};
use serde_json::Value;
use std::net::SocketAddr;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// A server with every listener on an ephemeral loopback port.
pub struct TestServer {
    pub running: Option<Running>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// Parses `yaml` (may be empty) and puts every listener on 127.0.0.1:0.
pub fn config(yaml: &str) -> Config {
    let mut c = config::parse(yaml, |k| std::env::var(k).ok()).expect("test config is valid");
    c.grpc.endpoint = "127.0.0.1:0".into();
    c.http.endpoint = "127.0.0.1:0".into();
    c.admin = "127.0.0.1:0".into();
    c
}

impl TestServer {
    pub async fn start(yaml: &str) -> Self {
        Self::start_with(config(yaml)).await
    }

    pub async fn start_with(c: Config) -> Self {
        Self::start_with_clock(c, otel_sli::clock::system()).await
    }

    pub async fn start_with_clock(c: Config, clock: otel_sli::clock::SharedClock) -> Self {
        let running = app::start(&c, clock).await.expect("server starts");
        Self {
            grpc: running.grpc_addr,
            http: running.http_addr,
            admin: running.admin_addr,
            running: Some(running),
        }
    }

    /// Makes every accepted request visible to readers now.
    pub async fn flush(&self) {
        let p = self.running.as_ref().expect("running").pipeline.clone();
        tokio::task::spawn_blocking(move || p.flush_now())
            .await
            .expect("flush");
    }

    /// `GET /api/v1/slis?window=…` after a flush.
    pub async fn slis(&self, window: &str) -> Value {
        self.flush().await;
        let url = format!("http://{}/api/v1/slis?window={window}", self.admin);
        reqwest::get(url)
            .await
            .expect("admin reachable")
            .json()
            .await
            .expect("json")
    }

    /// `GET /api/v1/gaps` after a flush.
    pub async fn gaps(&self) -> Value {
        self.flush().await;
        reqwest::get(format!("http://{}/api/v1/gaps", self.admin))
            .await
            .expect("admin reachable")
            .json()
            .await
            .expect("json")
    }

    /// The SLI entry of one feature.
    pub async fn sli(&self, window: &str, service: &str, feature: &str) -> Value {
        let all = self.slis(window).await;
        all["slis"]
            .as_array()
            .expect("slis array")
            .iter()
            .find(|s| s["service"] == service && s["feature"] == feature)
            .cloned()
            .unwrap_or_else(|| panic!("no SLI for {service}/{feature} in {all}"))
    }

    /// `GET path` (JSON) on the admin server after a flush, with the status code.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        self.flush().await;
        let r = reqwest::get(format!("http://{}{path}", self.admin))
            .await
            .expect("admin reachable");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    /// `GET /api/v1/slos` after a flush: the SLO named `name`.
    pub async fn slo(&self, name: &str) -> Value {
        let (_, all) = self.get_json("/api/v1/slos").await;
        all["slos"]
            .as_array()
            .expect("slos array")
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no SLO {name} in {all}"))
    }

    /// `GET /metrics` after a flush.
    pub async fn metrics(&self) -> String {
        self.flush().await;
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .expect("admin reachable")
            .text()
            .await
            .expect("text")
    }

    /// The value of one sample line (`name{labels}`) in `/metrics`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// One connection counter (`f` picks it) of listener `l` of a running test server.
pub fn stat(
    server: &TestServer,
    l: otel_sli::telemetry::Listener,
    f: fn(&otel_sli::telemetry::ConnStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    let t = &server.running.as_ref().expect("running").telemetry;
    otel_sli::telemetry::ConnStats::read(f(t.listener(l)))
}

/// Starts the otel-sli binary with `config` and every listener on the given addresses,
/// its output discarded.
pub fn spawn_otel_sli(
    config: &std::path::Path,
    grpc: &str,
    http: &str,
    admin: &str,
) -> std::process::Child {
    spawn_binary(env!("CARGO_BIN_EXE_otel-sli"), config, grpc, http, admin)
}

/// [`spawn_otel_sli`] with the binary at `bin`.
pub fn spawn_binary(
    bin: &str,
    config: &std::path::Path,
    grpc: &str,
    http: &str,
    admin: &str,
) -> std::process::Child {
    spawn_with_env(bin, config, grpc, http, admin, &[])
}

/// [`spawn_binary`] with `env` set for the process (for a configuration's `${env:…}`).
pub fn spawn_with_env(
    bin: &str,
    config: &std::path::Path,
    grpc: &str,
    http: &str,
    admin: &str,
    env: &[(&str, String)],
) -> std::process::Child {
    std::process::Command::new(bin)
        .arg("--config")
        .arg(config)
        .args(["--otlp-grpc", grpc, "--otlp-http", http, "--admin", admin])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("otel-sli starts")
}

/// Waits up to 20 s until the admin server at `admin` answers `/readyz` with 200.
pub fn wait_ready(admin: &str) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http_get_text(admin, "/readyz").is_none() {
        assert!(std::time::Instant::now() < end, "{admin} not ready in 20 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A free loopback address, `127.0.0.1:port`.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string()
}

/// `GET path` over HTTP/1.0 (blocking): the body of a 200 answer.
pub fn http_get_text(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.split(' ').nth(1).filter(|c| *c == "200")?;
    Some(body.to_string())
}

/// Finds a sample by its exact `name{labels}` text.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A codec that sends raw bytes and decodes responses as `M`.
pub struct RawCodec<M>(std::marker::PhantomData<M>);
impl<M> Default for RawCodec<M> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}
pub struct RawEnc;
pub struct MsgDec<M>(std::marker::PhantomData<M>);
impl Encoder for RawEnc {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }
}
impl<M: prost::Message + Default> Decoder for MsgDec<M> {
    type Item = M;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<M>, Status> {
        let b = buf.copy_to_bytes(buf.remaining());
        M::decode(b)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
impl<M: prost::Message + Default + Send + 'static> Codec for RawCodec<M> {
    type Encode = Bytes;
    type Decode = M;
    type Encoder = RawEnc;
    type Decoder = MsgDec<M>;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> MsgDec<M> {
        MsgDec(std::marker::PhantomData)
    }
}

pub const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Sends raw bytes as one gRPC Export call.
pub async fn grpc_raw<M: prost::Message + Default + Send + 'static>(
    addr: SocketAddr,
    path: &'static str,
    body: Bytes,
    gzip: bool,
) -> Result<M, Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec::<M>::default(),
    )
    .await
    .map(|r| r.into_inner())
}

/// Sends one OTLP/HTTP request.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header("content-type", content_type)
        .body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    req.send().await.expect("server reachable")
}

/// POSTs an uncompressed OTLP/HTTP protobuf body.
pub async fn post_protobuf(addr: SocketAddr, path: &str, body: Vec<u8>) -> reqwest::Response {
    http_post(addr, path, "application/x-protobuf", None, body).await
}

/// gzip-compresses bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("write");
    e.finish().expect("finish")
}

/// The exact q-quantile (rank ceil(q·n)) of sorted samples.
pub fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Asserts a reported quantile is within 1% of the exact one.
pub fn assert_close(reported: &Value, exact: f64, what: &str) {
    let r = reported
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: not a number: {reported}"));
    let err = (r - exact).abs() / exact;
    assert!(
        err <= 0.01,
        "{what}: reported {r}, exact {exact}, error {:.3}%",
        err * 100.0
    );
}

/// An OpenTelemetry SDK tracer provider exporting to `endpoint` (`http://host:port`) over
/// OTLP/gRPC with a batch processor, for service `service` ([`sdk::provider`]).
pub fn sdk_provider(endpoint: &str, service: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    let host_port = endpoint.trim_start_matches("http://");
    sdk::provider(host_port, sdk::Transport::Grpc, false, service)
}

/// True when `tool` runs (with `args`, e.g. `--version`); otherwise prints
/// `skipped: <tool> not installed` for the caller to skip, or fails under
/// `OTEL_SLI_REQUIRE_TOOLS=1` (CI), where `.ci/run` installs every tool.
pub fn tool_available(tool: &str, args: &[&str]) -> bool {
    let found = std::process::Command::new(tool)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("OTEL_SLI_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} not installed and OTEL_SLI_REQUIRE_TOOLS=1 (see .ci/run)"
        );
        eprintln!("skipped: {tool} not installed");
    }
    found
}

/// The `RetryInfo` delay (seconds, nanoseconds) in a gRPC status's details.
pub fn retry_delay(err: &Status) -> (i64, i32) {
    use prost::Message;
    let details =
        otel_sli::otlp::rpc::Status::decode(err.details()).expect("google.rpc.Status details");
    let info = details
        .details
        .iter()
        .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .expect("RetryInfo");
    let delay = otel_sli::otlp::rpc::RetryInfo::decode(info.value.as_slice())
        .expect("RetryInfo decodes")
        .retry_delay
        .expect("delay");
    (delay.seconds, delay.nanos)
}
