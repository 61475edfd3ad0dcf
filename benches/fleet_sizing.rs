//! Fleet sizing: what one agent's remote write costs, and what a fleet of agents costs the
//! time-series database it writes into.
//!
//! **One agent.** Starts the real service in-process (`app::start`, every listener on
//! 127.0.0.1:0) with a realistic mix: 50 services × 20 features (routes) of the synthetic
//! workload (`otel_sli::otlp::synth`: SERVER spans with `http.request.method`, `http.route`,
//! `http.response.status_code`, 1 in 20 answered 500, three children each), the default
//! dimensions (`service_version`, from the default `canary.attribute`) and latency buckets
//! (14 bounds), and 20 SLOs (an availability and a 250 ms latency SLO for 10 of the
//! services; 250 ms is a default bound, so the buckets stay the default ones). It posts
//! OTLP/HTTP protobuf requests to the real receiver until every feature has requests and
//! errors, flushes, and then runs the remote-write export path exactly as
//! `RemoteWriteEncoder::payloads` (src/export/remote_write/mod.rs) does — the report and SLO
//! statuses, `encode::encode`, `starts::Starts::mark`, `encode::payloads` (protobuf +
//! snappy, ≤ 2,000 series per request) — for classic and for native histograms:
//!
//! * series, samples and requests per write, the protobuf and snappy-compressed bytes per
//!   write, and so samples/s and bytes/s at the default 15 s interval;
//! * the export path's time per write over `FLEET_ENCODE_ITERS` iterations (one thread, wall
//!   time, which is its CPU time on an otherwise idle process; the process's CPU ticks over
//!   the loop are printed beside it), split into its stages;
//! * the memory it holds, counted by a counting global allocator around jemalloc (the
//!   binary's allocator): the encoded series, the request bodies, and the starts
//!   bookkeeping kept between writes; plus the process RSS delta over the first export.
//!
//! **A fleet.** Then `FLEET_AGENTS` (50) agents write into a real VictoriaMetrics
//! (`/usr/bin/victoria-metrics`, classic histograms: this version takes no native
//! histograms) and a real Prometheus (`/usr/bin/prometheus`, classic, then native
//! histograms), each started on a free loopback port with a scratch directory. One harness
//! writes the agent's series as the agents `otel_sli_instance=agent-NN`, every
//! `FLEET_INTERVAL_MS` with the agents' phases spread evenly over the interval, each write
//! split into ≤ 2,000-series requests sent one after the other (as the exporter does), the
//! first write of each series preceded by its start zero, and the values advancing every
//! round like real counters (a few requests per series per round, into one bucket, now and
//! then an error). The bodies are built from each series' labels encoded once plus the
//! round's sample; the harness checks at the start that they are byte for byte what
//! `prost` encodes. The first write of every agent, where every series is created, is
//! timed on its own (the TSDB's CPU per series created); two intervals later (or after
//! `FLEET_WARMUP_SECS`, when later) it measures for `FLEET_SECS`: the TSDB's CPU time
//! (utime and stime of `/proc/<pid>/stat`), the other load on the machine in that window
//! (busy time of `/proc/stat` less the TSDB and this process), the samples it counted as
//! ingested (its own counter: `vm_rows_inserted_total{type="promremotewrite"}`,
//! `prometheus_tsdb_head_samples_appended_total`),
//! its RSS (`VmRSS`, `VmHWM` of `/proc/<pid>/status`) against the idle RSS, and its own count
//! of series. From those: CPU seconds per million samples and bytes of RSS per active
//! series, and, on paper, what 10, 100 and 1,000 nodes at 15 s would need.
//!
//! `cargo bench --bench fleet_sizing`. Environment (defaults in brackets):
//! `FLEET_SERVICES` [50], `FLEET_FEATURES` [20], `FLEET_SLO_SERVICES` [10] services with
//! the two SLOs, `FLEET_TRACES` [100000] entry spans sent, `FLEET_ENCODE_ITERS` [100],
//! `FLEET_AGENTS` [50], `FLEET_INTERVAL_MS` [10000] the accelerated write interval (50
//! agents every 10 s write what 75 agents write at 15 s; on 2 cores Prometheus cannot
//! take the classic series of 50 agents every 5 s beside the harness),
//! `FLEET_WARMUP_SECS` [0] seconds from the start before the measured window, which
//! always starts two intervals after the first write of every agent (series creation),
//! `FLEET_SECS` [45] measured seconds per database, `FLEET_TSDBS` [vm,prom,prom-native]
//! which runs to make (empty: none). The defaults take 5–6 minutes on 2 cores.
//! Without `--bench` (as under `cargo test`) it runs a short smoke version.

/// jemalloc (the binary's allocator), counting the bytes live: its own statistics are not
/// compiled in.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to jemalloc; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { Jemalloc.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { Jemalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by jemalloc with `layout`.
        unsafe { Jemalloc.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by jemalloc with `layout`; the caller upholds the rest.
        let p = unsafe { Jemalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

mod common;

use common::{env_or, is_bench_run, metric_sum, thousands};
use otel_sli::export::delivery::Payload;
use otel_sli::export::remote_write::encode::{self, Shape, MAX_SERIES_PER_REQUEST};
use otel_sli::export::remote_write::prom;
use otel_sli::export::remote_write::starts::{self, Starts};
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use otel_sli::report::Reader;
use prost::Message;
use std::alloc::{GlobalAlloc, Layout};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tikv_jemallocator::Jemalloc;

/// The default remote-write interval the figures are scaled to.
const REAL_INTERVAL_SECS: f64 = 15.0;
/// Spans per OTLP request sent to the agent (whole 4-span traces).
const SPANS_PER_REQUEST: usize = 2000;

// ---------------------------------------------------------------------------------------
// Settings.

struct Settings {
    services: usize,
    features: usize,
    slo_services: usize,
    traces: usize,
    encode_iters: usize,
    agents: usize,
    interval: Duration,
    warmup: Duration,
    secs: Duration,
    tsdbs: Vec<String>,
}

impl Settings {
    fn from_env() -> Self {
        let full = is_bench_run();
        let pick = |full_v: u64, smoke: u64| if full { full_v } else { smoke };
        Self {
            services: env_or("FLEET_SERVICES", pick(50, 5) as usize),
            features: env_or("FLEET_FEATURES", pick(20, 4) as usize),
            slo_services: env_or("FLEET_SLO_SERVICES", pick(10, 2) as usize),
            traces: env_or("FLEET_TRACES", pick(100_000, 2_000) as usize),
            encode_iters: env_or("FLEET_ENCODE_ITERS", pick(100, 3) as usize).max(1),
            agents: env_or("FLEET_AGENTS", pick(50, 2) as usize).max(1),
            interval: Duration::from_millis(env_or("FLEET_INTERVAL_MS", pick(10_000, 500))),
            warmup: Duration::from_secs(env_or("FLEET_WARMUP_SECS", 0)),
            secs: Duration::from_secs(env_or("FLEET_SECS", pick(45, 2)).max(1)),
            tsdbs: env_or("FLEET_TSDBS", "vm,prom,prom-native".to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small process readings.

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, seconds.
fn cpu_secs(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state (field 3).
    let t = |i: usize| f[i].parse::<f64>().expect("stat field");
    (t(11) + t(12)) / ticks
}

/// A `/proc/<pid>/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Bytes the process holds on the heap now (all threads).
fn allocated() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed) as u64
}

/// Busy seconds of the whole machine (all CPUs, everything but idle and iowait), from
/// `/proc/stat`.
fn machine_busy_secs(ticks: f64) -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is counted in user).
    let busy: f64 =
        v.iter().take(8).sum::<f64>() - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    busy / ticks
}

fn unix_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit i64")
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

/// Bytes in the largest binary unit that keeps the number at least 1.
fn bytes(b: f64) -> String {
    const K: f64 = 1024.0;
    if b >= K * K * K {
        format!("{:.1} GiB", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.1} MiB", b / (K * K))
    } else {
        format!("{:.1} KiB", b / K)
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Part 1: one agent.

fn agent_yaml(s: &Settings) -> String {
    let mut y = String::from("slos:\n");
    for i in 0..s.slo_services.min(s.services) {
        let svc = otel_sli::otlp::synth::service_name(i);
        y.push_str(&format!(
            "  - {{name: {svc}-availability, service: {svc}, feature: \"*\", objective: 99.5}}\n  \
             - {{name: {svc}-latency, service: {svc}, feature: \"*\", sli: latency, threshold: 250ms, objective: 95}}\n"
        ));
    }
    if s.slo_services == 0 {
        y = String::new();
    }
    y
}

/// The agent's state after the traffic: the running service (kept alive) and its reader.
struct Agent {
    running: otel_sli::app::Running,
    entries: u64,
    errors: u64,
    spans: u64,
}

async fn start_agent(s: &Settings) -> Agent {
    let mut c = otel_sli::settings::parse(&agent_yaml(s), |k| std::env::var(k).ok())
        .expect("agent configuration is valid");
    c.grpc.endpoint = "127.0.0.1:0".into();
    c.http.endpoint = "127.0.0.1:0".into();
    c.admin = "127.0.0.1:0".into();
    let running = otel_sli::app::start(&c, otel_sli::clock::system())
        .await
        .expect("agent starts");
    let w = Workload {
        services: s.services,
        features: s.features,
        seed: 7,
        ..Workload::default()
    };
    let mut rng = Rng::new(7);
    let per_request = SPANS_PER_REQUEST / 4;
    let requests = s.traces.div_ceil(per_request);
    let url = format!("http://{}/v1/traces", running.http_addr);
    let client = reqwest::Client::new();
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let (mut entries, mut errors, mut spans) = (0, 0, 0);
    for i in 0..requests as u64 {
        // Spread over the last minute, ending a few seconds ago.
        let start = now_ns - 65_000_000_000 + i * 60_000_000_000 / requests as u64;
        let (req, e, bad) = traces_request(&w, &mut rng, SPANS_PER_REQUEST, start);
        entries += e;
        errors += bad;
        spans += common::span_count(&req) as u64;
        let r = client
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .expect("agent reachable");
        assert!(r.status().is_success(), "OTLP/HTTP export: {}", r.status());
    }
    let p = running.pipeline.clone();
    tokio::task::spawn_blocking(move || p.flush_now())
        .await
        .expect("flush");
    Agent {
        running,
        entries,
        errors,
        spans,
    }
}

/// Time spent in each stage of the export path, summed over iterations.
#[derive(Default, Clone, Copy)]
struct Stages {
    report: Duration,
    encode: Duration,
    starts: Duration,
    payloads: Duration,
}

impl Stages {
    fn total(&self) -> Duration {
        self.report + self.encode + self.starts + self.payloads
    }
}

/// One export of the latest report, as `RemoteWriteEncoder::payloads` does it, timed by
/// stage; also hands back a copy of the encoded series when `keep` is set.
fn export(
    reader: &Reader,
    external: &[(String, String)],
    native: bool,
    starts: &mut Option<Starts>,
    stages: &mut Stages,
    keep: Option<&mut Vec<prom::TimeSeries>>,
) -> Vec<Payload> {
    let t = Instant::now();
    let report = reader.report();
    let slos = report.slos().statuses;
    let pipeline = reader.pipeline();
    let names = pipeline.classifier().label_names();
    let shape = Shape {
        label_names: &names,
        bounds_ns: &pipeline.settings().bounds_ns,
    };
    let now_ms = i64::try_from(pipeline.now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let t1 = Instant::now();
    let mut series = encode::encode(report.view(), shape, &slos, now_ms, external, native);
    let t2 = Instant::now();
    let started = pipeline.settings().started_unix_nanos;
    starts
        .get_or_insert_with(|| Starts::since_start(started, now_ms))
        .mark(&mut series, now_ms);
    let t3 = Instant::now();
    if let Some(k) = keep {
        k.clone_from(&series);
    }
    let t3b = Instant::now();
    let out = encode::payloads(series);
    let t4 = Instant::now();
    stages.report += t1 - t;
    stages.encode += t2 - t1;
    stages.starts += t3 - t2;
    stages.payloads += t4 - t3b;
    out
}

/// What one agent's write looks like, classic or native.
#[derive(Clone, Copy, Default)]
struct WriteShape {
    series: usize,
    samples_first: u64,
    samples: u64,
    requests: usize,
    raw_bytes: u64,
    snappy_bytes: u64,
    /// Per write, steady state, mean over iterations.
    per_write: Stages,
    /// Process CPU seconds per write over the loop (all threads).
    process_cpu: f64,
    series_heap: u64,
    bodies_heap: u64,
    starts_heap: u64,
    rss_delta: i64,
}

fn measure_agent_writes(
    reader: &Reader,
    native: bool,
    iters: usize,
    ticks: f64,
) -> (WriteShape, Vec<prom::TimeSeries>) {
    let external = vec![(
        otel_sli::identity::LABEL.to_string(),
        "agent-00".to_string(),
    )];
    let pid = std::process::id();
    let mut out = WriteShape::default();

    // First write: the start zeros, and memory.
    let rss0 = status_bytes(pid, "VmRSS");
    let a0 = allocated();
    let report = reader.report();
    let slos = report.slos().statuses;
    let pipeline = reader.pipeline();
    let names = pipeline.classifier().label_names();
    let shape = Shape {
        label_names: &names,
        bounds_ns: &pipeline.settings().bounds_ns,
    };
    let now_ms = i64::try_from(pipeline.now_unix_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let mut series = encode::encode(report.view(), shape, &slos, now_ms, &external, native);
    drop(slos);
    drop(report);
    let a1 = allocated();
    let mut s0 = Starts::since_start(pipeline.settings().started_unix_nanos, now_ms);
    s0.mark(&mut series, now_ms);
    let a2 = allocated();
    out.series = series.len();
    out.samples_first = series
        .iter()
        .map(|s| (s.samples.len() + s.histograms.len()) as u64)
        .sum();
    let bodies = encode::payloads(series);
    let a3 = allocated();
    let rss1 = status_bytes(pid, "VmRSS");
    out.series_heap = a1.saturating_sub(a0);
    out.starts_heap = a2.saturating_sub(a1);
    out.bodies_heap = a3.saturating_sub(a2 - out.series_heap);
    out.rss_delta = rss1 as i64 - rss0 as i64;
    drop(bodies);
    let mut starts = Some(s0);

    // Steady state: the next writes (no zeros), timed.
    let mut template = Vec::new();
    let payloads = export(
        reader,
        &external,
        native,
        &mut starts,
        &mut Stages::default(),
        Some(&mut template),
    );
    out.requests = payloads.len();
    out.samples = payloads.iter().map(|p| p.items).sum();
    out.snappy_bytes = payloads.iter().map(|p| p.body.len() as u64).sum();
    out.raw_bytes = payloads
        .iter()
        .map(|p| snap::raw::decompress_len(&p.body).expect("snappy body") as u64)
        .sum();
    for p in &payloads {
        encode::decode(&p.body).expect("a body decodes");
    }
    let mut st = Stages::default();
    let c0 = cpu_secs(pid, ticks);
    for _ in 0..iters {
        let p = export(reader, &external, native, &mut starts, &mut st, None);
        std::hint::black_box(p);
    }
    let c1 = cpu_secs(pid, ticks);
    let n = iters as u32;
    out.per_write = Stages {
        report: st.report / n,
        encode: st.encode / n,
        starts: st.starts / n,
        payloads: st.payloads / n,
    };
    out.process_cpu = (c1 - c0) / iters as f64;
    (out, template)
}

// ---------------------------------------------------------------------------------------
// Part 2: a fleet of agents writing into a real TSDB.

/// How a series' value moves from one round to the next.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Requests,
    Errors,
    /// The `i`-th bucket of its histogram.
    Bucket(usize),
    Sum,
    Count,
    Ratio,
    /// `slo_window_requests` and `slo_window_bad_requests`.
    SloCount {
        bad: bool,
    },
    /// SLI, budget and burn-rate gauges: move a little.
    SloGauge,
    /// Objective, alert and data-sufficient gauges: constant.
    Constant,
    Native,
}

fn kind(name: &str, bucket: &mut usize) -> Kind {
    match name {
        "sli_requests_total" => {
            *bucket = 0;
            Kind::Requests
        }
        "sli_errors_total" => Kind::Errors,
        "sli_latency_seconds_bucket" => {
            *bucket += 1;
            Kind::Bucket(*bucket - 1)
        }
        "sli_latency_seconds_sum" => Kind::Sum,
        "sli_latency_seconds_count" => Kind::Count,
        "sli_latency_seconds" => Kind::Native,
        "sli_success_ratio" => Kind::Ratio,
        "slo_window_requests" => Kind::SloCount { bad: false },
        "slo_window_bad_requests" => Kind::SloCount { bad: true },
        "slo_sli_ratio" | "slo_error_budget_remaining_ratio" | "slo_burn_rate" => Kind::SloGauge,
        _ => Kind::Constant,
    }
}

/// One series of one agent: its labels encoded once, its current value or histogram.
struct Series {
    labels: Vec<u8>,
    kind: Kind,
    /// A counter or histogram: its first write starts with a zero (`starts`).
    cumulative: bool,
    value: f64,
    base: f64,
    /// Native histograms: absolute counts of the positive cells, and the histogram.
    cells: Vec<i64>,
    hist: Option<prom::Histogram>,
}

struct AgentSeries {
    series: Vec<Series>,
    rng: Rng,
    buckets: usize,
}

impl AgentSeries {
    fn new(template: &[prom::TimeSeries], instance: &str, seed: u64) -> Self {
        let mut bucket = 0;
        let mut buckets = 0;
        let series = template
            .iter()
            .map(|t| {
                let mut labels = t.labels.clone();
                for l in &mut labels {
                    if l.name == otel_sli::identity::LABEL {
                        l.value = instance.to_string();
                    }
                }
                let name = labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .map_or("", |l| l.value.as_str());
                let k = kind(name, &mut bucket);
                buckets = buckets.max(bucket);
                let value = t.samples.last().map_or(0.0, |s| s.value);
                let hist = t.histograms.last().cloned();
                let cells = hist.as_ref().map(absolute_cells).unwrap_or_default();
                Series {
                    cumulative: starts::is_cumulative(t),
                    labels: prom::TimeSeries {
                        labels,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    kind: k,
                    value,
                    base: value,
                    cells,
                    hist,
                }
            })
            .collect();
        Self {
            series,
            rng: Rng::new(seed),
            // Native histograms have no bucket series: pick among the default 15 buckets.
            buckets: if buckets == 0 { 15 } else { buckets },
        }
    }

    /// Moves every value on by one round of traffic: per SLI series 0–3 requests into one
    /// latency bucket, one in 20 of them an error.
    fn advance(&mut self) {
        let (mut n, mut b, mut e) = (0.0, 0usize, 0.0);
        for s in &mut self.series {
            match s.kind {
                Kind::Requests => {
                    n = self.rng.below(4) as f64;
                    b = self.rng.below(self.buckets as u64) as usize;
                    e = if n > 0.0 && self.rng.below(20) == 0 {
                        1.0
                    } else {
                        0.0
                    };
                    s.value += n;
                }
                Kind::Errors => s.value += e,
                Kind::Bucket(i) => {
                    if i >= b {
                        s.value += n;
                    }
                }
                Kind::Sum => s.value += n * 0.005 * (1u64 << b.min(10)) as f64,
                Kind::Count => s.value += n,
                Kind::Ratio | Kind::SloGauge => {
                    s.value = s.base * (1.0 - 0.0005 * self.rng.below(8) as f64);
                }
                Kind::SloCount { bad } => {
                    s.value += if bad {
                        self.rng.below(2) as f64
                    } else {
                        self.rng.below(60) as f64
                    }
                }
                Kind::Constant => {}
                Kind::Native => {
                    if let (Some(h), false) = (&mut s.hist, s.cells.is_empty()) {
                        let j = b.min(s.cells.len() - 1);
                        s.cells[j] += n as i64;
                        set_cells(h, &s.cells, n, b);
                    }
                }
            }
        }
    }

    /// The write's request bodies (uncompressed protobuf), ≤ 2,000 series each, every
    /// sample at `ts`; `zeros_at` puts the start zero before each cumulative series.
    fn bodies(&self, ts: i64, zeros_at: Option<i64>) -> Vec<Vec<u8>> {
        let mut scratch = Vec::with_capacity(256);
        self.series
            .chunks(MAX_SERIES_PER_REQUEST)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len() * (chunk[0].labels.len() + 24));
                for s in chunk {
                    scratch.clear();
                    let cumulative = s.cumulative;
                    if let Some(h) = &s.hist {
                        if let (Some(at), true) = (zeros_at, cumulative) {
                            let zero = prom::Histogram {
                                count: Some(prom::histogram::Count::CountInt(0)),
                                sum: 0.0,
                                schema: h.schema,
                                zero_threshold: h.zero_threshold,
                                zero_count: Some(prom::histogram::ZeroCount::ZeroCountInt(0)),
                                timestamp: at,
                                ..Default::default()
                            };
                            push_field(&mut scratch, 4, &zero);
                        }
                        let mut h = h.clone();
                        h.timestamp = ts;
                        push_field(&mut scratch, 4, &h);
                    } else {
                        if let (Some(at), true) = (zeros_at, cumulative) {
                            let zero = prom::Sample {
                                value: 0.0,
                                timestamp: at,
                            };
                            push_field(&mut scratch, 2, &zero);
                        }
                        let sample = prom::Sample {
                            value: s.value,
                            timestamp: ts,
                        };
                        push_field(&mut scratch, 2, &sample);
                    }
                    out.push(0x0a); // WriteRequest.timeseries, field 1, length-delimited.
                    varint(&mut out, (s.labels.len() + scratch.len()) as u64);
                    out.extend_from_slice(&s.labels);
                    out.extend_from_slice(&scratch);
                }
                out
            })
            .collect()
    }

    /// The same write as `prost` encodes it, for the check.
    fn prost_bodies(&self, ts: i64, zeros_at: Option<i64>) -> Vec<Vec<u8>> {
        self.series
            .chunks(MAX_SERIES_PER_REQUEST)
            .map(|chunk| {
                let timeseries = chunk
                    .iter()
                    .map(|s| {
                        let labels = prom::TimeSeries::decode(s.labels.as_slice())
                            .expect("labels")
                            .labels;
                        let mut t = prom::TimeSeries {
                            labels,
                            ..Default::default()
                        };
                        if let Some(h) = &s.hist {
                            let mut h = h.clone();
                            h.timestamp = ts;
                            t.histograms.push(h);
                        } else {
                            t.samples.push(prom::Sample {
                                value: s.value,
                                timestamp: ts,
                            });
                        }
                        if let Some(at) = zeros_at {
                            starts::Starts::new(at).mark(std::slice::from_mut(&mut t), ts);
                        }
                        t
                    })
                    .collect();
                prom::WriteRequest {
                    timeseries,
                    metadata: Vec::new(),
                }
                .encode_to_vec()
            })
            .collect()
    }
}

/// `msg` as field `field` (length-delimited) of the message being written to `out`.
fn push_field(out: &mut Vec<u8>, field: u32, msg: &impl Message) {
    varint(out, u64::from(field << 3 | 2));
    msg.encode_length_delimited(out).expect("Vec grows");
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The absolute counts of a native histogram's positive cells.
fn absolute_cells(h: &prom::Histogram) -> Vec<i64> {
    let mut c = 0i64;
    h.positive_deltas
        .iter()
        .map(|d| {
            c += d;
            c
        })
        .collect()
}

/// Writes `cells` back into `h` as deltas, with `n` more requests in count and sum.
fn set_cells(h: &mut prom::Histogram, cells: &[i64], n: f64, b: usize) {
    let mut prev = 0;
    for (d, c) in h.positive_deltas.iter_mut().zip(cells) {
        *d = c - prev;
        prev = *c;
    }
    if let Some(prom::histogram::Count::CountInt(c)) = &mut h.count {
        *c += n as u64;
    }
    h.sum += n * 0.005 * (1u64 << b.min(10)) as f64;
}

/// A TSDB child process with its scratch directory; killed and cleaned up on drop.
struct Tsdb {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "otel-sli-fleet-{name}-{}-{}",
        std::process::id(),
        unix_ms()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).expect("scratch dir");
    dir
}

fn spawn(name: &'static str, mut cmd: Command, dir: PathBuf, addr: String) -> Tsdb {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    Tsdb {
        name,
        child,
        dir,
        addr,
    }
}

impl Tsdb {
    fn victoria_metrics() -> Self {
        let dir = scratch("vm");
        let addr = free_addr();
        let mut cmd = Command::new("victoria-metrics");
        cmd.arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr={addr}"))
            .args([
                "-search.latencyOffset=0s",
                "-retentionPeriod=100y",
                "-loggerLevel=WARN",
            ]);
        spawn("victoria-metrics", cmd, dir, addr)
    }

    fn prometheus(native: bool) -> Self {
        let dir = scratch("prometheus");
        let addr = free_addr();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("config");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver");
        if native {
            cmd.arg("--enable-feature=native-histograms");
        }
        spawn("prometheus", cmd, dir, addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("{}.log", self.name)))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let path = if self.name == "prometheus" {
            "/-/ready"
        } else {
            "/health"
        };
        let start = Instant::now();
        loop {
            let ok = client
                .get(format!("http://{}{path}", self.addr))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited ({st})\n{}", self.name, self.log_tail());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} not ready\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self, client: &reqwest::Client) -> String {
        match client
            .get(format!("http://{}/metrics", self.addr))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Samples the database counted as ingested so far.
    async fn ingested(&self, client: &reqwest::Client) -> f64 {
        let m = self.metrics(client).await;
        if self.name == "prometheus" {
            metric_sum(&m, "prometheus_tsdb_head_samples_appended_total", "").unwrap_or(0.0)
        } else {
            metric_sum(&m, "vm_rows_inserted_total", "promremotewrite").unwrap_or(0.0)
        }
    }

    /// The database's own count of series.
    async fn series(&self, client: &reqwest::Client) -> f64 {
        if self.name == "prometheus" {
            let m = self.metrics(client).await;
            return metric_sum(&m, "prometheus_tsdb_head_series", "").unwrap_or(0.0);
        }
        let base = format!("http://{}", self.addr);
        let _ = client
            .get(format!("{base}/internal/force_flush"))
            .send()
            .await;
        let v: serde_json::Value = match client
            .get(format!("{base}/api/v1/series/count"))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        v["data"][0].as_f64().unwrap_or(0.0)
    }
}

/// What one fleet run measured.
#[derive(Clone, Default)]
struct FleetRun {
    label: String,
    native: bool,
    expected_series: usize,
    series: f64,
    /// Samples the database counted in the measured window, per second.
    ingested_per_sec: f64,
    sent_per_sec: f64,
    cores: f64,
    cpu_per_m_samples: f64,
    /// CPU seconds from the start to the end of the first write of every agent.
    creation_cpu: f64,
    creation_secs: f64,
    rss_idle: u64,
    rss_end: u64,
    rss_peak: u64,
    disk: u64,
    late_rounds: u64,
    rounds: u64,
    failures: u64,
    harness_cpu: f64,
    /// Cores used during the window by everything but the database and this harness.
    other_cores: f64,
}

impl FleetRun {
    fn rss_per_series(&self) -> f64 {
        (self.rss_end.saturating_sub(self.rss_idle)) as f64 / self.series.max(1.0)
    }
    fn peak_per_series(&self) -> f64 {
        (self.rss_peak.saturating_sub(self.rss_idle)) as f64 / self.series.max(1.0)
    }
}

struct Counters {
    sent: AtomicU64,
    first_done: AtomicU64,
    late: AtomicU64,
    rounds: AtomicU64,
    failures: AtomicU64,
    first_failure: std::sync::Mutex<String>,
}

async fn fleet_run(
    s: &Settings,
    which: &str,
    template: &[prom::TimeSeries],
    ticks: f64,
) -> FleetRun {
    let (mut db, native) = match which {
        "vm" => (Tsdb::victoria_metrics(), false),
        "prom" => (Tsdb::prometheus(false), false),
        "prom-native" => (Tsdb::prometheus(true), true),
        other => panic!("FLEET_TSDBS: unknown {other:?} (vm, prom, prom-native)"),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    db.wait_ready(&client).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = db.pid();
    let rss_idle = status_bytes(pid, "VmRSS");
    let url = format!("http://{}/api/v1/write", db.addr);

    // The agents' series, labels encoded once; checked against prost.
    let mut agents: Vec<AgentSeries> = (0..s.agents)
        .map(|k| AgentSeries::new(template, &format!("agent-{k:02}"), 1000 + k as u64))
        .collect();
    let ts = unix_ms();
    assert_eq!(
        agents[0].bodies(ts, Some(ts - 1)),
        agents[0].prost_bodies(ts, Some(ts - 1)),
        "the harness's bodies are what prost encodes"
    );
    assert_eq!(agents[0].bodies(ts, None), agents[0].prost_bodies(ts, None));
    let per_agent = agents[0].series.len();

    let counters = Arc::new(Counters {
        sent: AtomicU64::new(0),
        first_done: AtomicU64::new(0),
        late: AtomicU64::new(0),
        rounds: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        first_failure: std::sync::Mutex::new(String::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = tokio::time::Instant::now() + Duration::from_millis(200);
    let cpu_t0 = cpu_secs(pid, ticks);
    let harness_t0 = cpu_secs(std::process::id(), ticks);
    let wall_t0 = Instant::now();
    let interval = s.interval;
    let n_agents = s.agents;
    let mut tasks = Vec::new();
    for (k, mut agent) in agents.drain(..).enumerate() {
        let (client, url, counters, stop) = (
            client.clone(),
            url.clone(),
            Arc::clone(&counters),
            Arc::clone(&stop),
        );
        tasks.push(tokio::spawn(async move {
            let phase = interval * k as u32 / n_agents as u32;
            for round in 0u32.. {
                let due = t0 + phase + interval * round;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if tokio::time::Instant::now() > due + interval {
                    counters.late.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep_until(due).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let ts = unix_ms();
                if round > 0 {
                    agent.advance();
                }
                // The first write starts every cumulative series with a zero, 1 ms before.
                let zeros = if round == 0 { Some(ts - 1) } else { None };
                let bodies = agent.bodies(ts, zeros);
                let mut samples = 0u64;
                for (raw, chunk) in bodies
                    .into_iter()
                    .zip(agent.series.chunks(MAX_SERIES_PER_REQUEST))
                {
                    let body = encode::compress(&raw);
                    let zeros = if round == 0 {
                        chunk.iter().filter(|s| s.cumulative).count()
                    } else {
                        0
                    };
                    let n = (chunk.len() + zeros) as u64;
                    let r = client
                        .post(&url)
                        .header("Content-Encoding", "snappy")
                        .header("Content-Type", "application/x-protobuf")
                        .header("User-Agent", "otel-sli-fleet-bench")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(body)
                        .send()
                        .await;
                    let failed = match r {
                        Ok(r) if r.status().is_success() => None,
                        Ok(r) => Some(format!(
                            "{}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        )),
                        Err(e) => Some(e.to_string()),
                    };
                    match failed {
                        None => samples += n,
                        Some(why) => {
                            if counters.failures.fetch_add(1, Ordering::Relaxed) == 0 {
                                *counters.first_failure.lock().expect("lock") = why;
                            }
                        }
                    }
                }
                counters.sent.fetch_add(samples, Ordering::Relaxed);
                counters.rounds.fetch_add(1, Ordering::Relaxed);
                if round == 0 {
                    counters.first_done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // Series creation: until every agent's first write is in.
    while counters.first_done.load(Ordering::Relaxed) < s.agents as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let creation_secs = wall_t0.elapsed().as_secs_f64();
    let creation_cpu = cpu_secs(pid, ticks) - cpu_t0;
    // At least two rounds after every series exists, so the window holds appends only.
    let warm_end = (t0 + s.warmup).max(tokio::time::Instant::now() + 2 * s.interval);
    tokio::time::sleep_until(warm_end).await;
    let (c1, i1, sent1) = (
        cpu_secs(pid, ticks),
        db.ingested(&client).await,
        counters.sent.load(Ordering::Relaxed),
    );
    let (m1, h1) = (
        machine_busy_secs(ticks),
        cpu_secs(std::process::id(), ticks),
    );
    let w1 = Instant::now();
    let late_before = counters.late.load(Ordering::Relaxed);
    let rounds_before = counters.rounds.load(Ordering::Relaxed);
    tokio::time::sleep(s.secs).await;
    let (c2, i2, sent2) = (
        cpu_secs(pid, ticks),
        db.ingested(&client).await,
        counters.sent.load(Ordering::Relaxed),
    );
    let (m2, h2) = (
        machine_busy_secs(ticks),
        cpu_secs(std::process::id(), ticks),
    );
    let window = w1.elapsed().as_secs_f64();
    let other_cores = ((m2 - m1) - (c2 - c1) - (h2 - h1)).max(0.0) / window;
    let rss_end = status_bytes(pid, "VmRSS");
    let rss_peak = status_bytes(pid, "VmHWM");
    let late = counters.late.load(Ordering::Relaxed) - late_before;
    let rounds = counters.rounds.load(Ordering::Relaxed) - rounds_before;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let harness_cpu = cpu_secs(std::process::id(), ticks) - harness_t0;
    let series = db.series(&client).await;
    let disk = dir_bytes(&db.dir.join("data"));
    let failures = counters.failures.load(Ordering::Relaxed);
    let first_failure = counters.first_failure.lock().expect("lock").clone();
    if failures > 0 {
        eprintln!(
            "{which}: {failures} write requests failed; first: {first_failure}\n{}",
            db.log_tail()
        );
    }
    let ingested = i2 - i1;
    FleetRun {
        label: match which {
            "vm" => "VictoriaMetrics, classic".into(),
            "prom" => "Prometheus, classic".into(),
            _ => "Prometheus, native".into(),
        },
        native,
        expected_series: per_agent * s.agents,
        series,
        ingested_per_sec: ingested / window,
        sent_per_sec: (sent2 - sent1) as f64 / window,
        cores: (c2 - c1) / window,
        cpu_per_m_samples: (c2 - c1) / (ingested / 1e6).max(1e-9),
        creation_cpu,
        creation_secs,
        rss_idle,
        rss_end,
        rss_peak,
        disk,
        late_rounds: late,
        rounds,
        failures,
        harness_cpu,
        other_cores,
    }
}

// ---------------------------------------------------------------------------------------
// Reporting.

fn us(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn print_agent(s: &Settings, a: &Agent, classic: &WriteShape, native: &WriteShape) {
    let features = s.services * s.features;
    println!(
        "\n== One agent: {} services × {} features = {} features, {} SLOs, default buckets and dimensions ==",
        s.services,
        s.features,
        thousands(features as f64),
        2 * s.slo_services.min(s.services)
    );
    println!(
        "traffic sent over OTLP/HTTP: {} entry spans ({} spans), {} of them errors\n",
        thousands(a.entries as f64),
        thousands(a.spans as f64),
        thousands(a.errors as f64)
    );
    println!("| per agent | classic histograms | native histograms |");
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&WriteShape) -> String| {
        println!("| {name} | {} | {} |", f(classic), f(native));
    };
    row("active series (series per write)", &|w| {
        thousands(w.series as f64)
    });
    row("series per feature (SLO gauges included)", &|w| {
        format!("{:.1}", w.series as f64 / features as f64)
    });
    row("samples per write (first write, with start zeros)", &|w| {
        format!(
            "{} ({})",
            thousands(w.samples as f64),
            thousands(w.samples_first as f64)
        )
    });
    row("write requests per write (≤ 2,000 series)", &|w| {
        w.requests.to_string()
    });
    row("protobuf bytes per write", &|w| {
        format!(
            "{} ({:.0} B/series)",
            kib(w.raw_bytes as f64),
            w.raw_bytes as f64 / w.series as f64
        )
    });
    row("snappy bytes per write (sent)", &|w| {
        format!(
            "{} ({:.1} B/sample)",
            kib(w.snappy_bytes as f64),
            w.snappy_bytes as f64 / w.samples as f64
        )
    });
    row("samples/s at 15 s", &|w| {
        format!("{:.0}", w.samples as f64 / REAL_INTERVAL_SECS)
    });
    row("bytes/s at 15 s, snappy (protobuf)", &|w| {
        format!(
            "{} ({})",
            kib(w.snappy_bytes as f64 / REAL_INTERVAL_SECS),
            kib(w.raw_bytes as f64 / REAL_INTERVAL_SECS)
        )
    });
    row(
        "export CPU per write (report + SLOs / encode / starts / protobuf + snappy)",
        &|w| {
            format!(
                "**{}** ({} / {} / {} / {})",
                us(w.per_write.total()),
                us(w.per_write.report),
                us(w.per_write.encode),
                us(w.per_write.starts),
                us(w.per_write.payloads)
            )
        },
    );
    row("process CPU per write (all threads, ticks)", &|w| {
        format!("{:.2} ms", w.process_cpu * 1e3)
    });
    row("export CPU share of a core at 15 s", &|w| {
        format!(
            "{:.3}%",
            w.per_write.total().as_secs_f64() / REAL_INTERVAL_SECS * 100.0
        )
    });
    row("memory held while encoding: series / bodies", &|w| {
        format!(
            "{} / {}",
            mib(w.series_heap as f64),
            mib(w.bodies_heap as f64)
        )
    });
    row("memory kept between writes (starts set)", &|w| {
        kib(w.starts_heap as f64)
    });
    row("process RSS delta over the first write", &|w| {
        mib(w.rss_delta as f64)
    });
}

fn print_fleet(s: &Settings, runs: &[FleetRun], classic: &WriteShape, native: &WriteShape) {
    let equivalent = s.agents as f64 * REAL_INTERVAL_SECS / s.interval.as_secs_f64();
    println!(
        "\n== {} agents writing every {:.1} s (the sample rate of {:.0} agents at 15 s), {} s measured after {} s ==\n",
        s.agents,
        s.interval.as_secs_f64(),
        equivalent,
        s.secs.as_secs(),
        s.warmup.as_secs()
    );
    println!("| database | active series (its count / written) | samples/s ingested (sent) | CPU | CPU s per M samples | CPU per agent write | series creation (first write) | RSS idle → end (peak) | RSS per active series, end (peak) | RSS per agent | disk | late rounds | failed requests | harness CPU | other load in the window |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let w = if r.native { native } else { classic };
        println!(
            "| {} | {} / {} | {} ({}) | {:.2} cores | **{:.2}** | {:.1} ms | {:.1} CPU s in {:.1} s ({:.1} µs/series) | {} → {} ({}) | **{}** ({}) | {} | {} | {} of {} | {} | {:.1} s | {:.2} cores |",
            r.label,
            thousands(r.series),
            thousands(r.expected_series as f64),
            thousands(r.ingested_per_sec),
            thousands(r.sent_per_sec),
            r.cores,
            r.cpu_per_m_samples,
            r.cpu_per_m_samples * w.samples as f64 / 1e3,
            r.creation_cpu,
            r.creation_secs,
            r.creation_cpu / r.expected_series as f64 * 1e6,
            mib(r.rss_idle as f64),
            mib(r.rss_end as f64),
            mib(r.rss_peak as f64),
            kib(r.rss_per_series()),
            kib(r.peak_per_series()),
            mib(r.rss_per_series() * w.series as f64),
            mib(r.disk as f64),
            r.late_rounds,
            r.rounds,
            r.failures,
            r.harness_cpu,
            r.other_cores
        );
    }
}

/// 10, 100 and 1,000 nodes at 15 s, from the per-agent figures and the measured costs.
fn print_extrapolation(classic: &WriteShape, native: &WriteShape, runs: &[FleetRun]) {
    println!("\n== On paper: N nodes (one agent each) at 15 s, from the figures above ==\n");
    println!("| nodes | histograms | active series | samples/s | remote-write bytes/s (snappy) | database | est. CPU | est. RSS |");
    println!("|---|---|---|---|---|---|---|---|");
    for nodes in [10.0, 100.0, 1000.0] {
        for (w, native_h) in [(classic, false), (native, true)] {
            let series = w.series as f64 * nodes;
            let sps = w.samples as f64 * nodes / REAL_INTERVAL_SECS;
            let bps = w.snappy_bytes as f64 * nodes / REAL_INTERVAL_SECS;
            for r in runs.iter().filter(|r| r.native == native_h) {
                println!(
                    "| {} | {} | {} | {} | {} | {} | {:.3} cores | {} |",
                    thousands(nodes),
                    if native_h { "native" } else { "classic" },
                    thousands(series),
                    thousands(sps),
                    bytes(bps),
                    r.label,
                    sps / 1e6 * r.cpu_per_m_samples,
                    bytes(r.rss_idle as f64 + series * r.rss_per_series())
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

fn main() {
    let s = Settings::from_env();
    let ticks = clock_ticks_per_second();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let t = Instant::now();
        let agent = start_agent(&s).await;
        let reader = agent.running.reader.clone();
        let features = s.services * s.features;
        let got = reader.pipeline().view().series.len();
        assert_eq!(got, features, "one SLI series per feature");
        let (classic, template) = tokio::task::block_in_place(|| {
            measure_agent_writes(&reader, false, s.encode_iters, ticks)
        });
        let (native, native_template) = tokio::task::block_in_place(|| {
            measure_agent_writes(&reader, true, s.encode_iters, ticks)
        });
        println!(
            "fleet_sizing: {cpus} CPUs (`nproc`), release profile, jemalloc; one agent set up and measured in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        print_agent(&s, &agent, &classic, &native);
        drop(reader);
        agent.running.shutdown().await;

        let mut runs = Vec::new();
        for which in &s.tsdbs {
            let bin = if which == "vm" {
                "victoria-metrics"
            } else {
                "prometheus"
            };
            if Command::new(bin)
                .arg(if which == "vm" { "-version" } else { "--version" })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
            {
                println!("\n{which}: skipped, `{bin}` is not installed");
                continue;
            }
            let tpl = if which == "prom-native" {
                &native_template
            } else {
                &template
            };
            let t = Instant::now();
            let r = fleet_run(&s, which, tpl, ticks).await;
            eprintln!("{which}: done in {:.0} s", t.elapsed().as_secs_f64());
            runs.push(r);
        }
        if !runs.is_empty() {
            print_fleet(&s, &runs, &classic, &native);
            print_extrapolation(&classic, &native, &runs);
        }
    });
}
