//! Soak above capacity: the otel-sli binary, with a memory budget and small queues, takes
//! OTLP/gRPC and OTLP/HTTP traffic from more clients than it can serve, for
//! `OTEL_SLI_SOAK_SECS` seconds (default 20; loopback only). Throughout, its resident size
//! stays under the budget and `/healthz` answers; afterwards every span it acknowledged is
//! counted exactly, in self-telemetry and in the SLIs, and everything it refused was told to
//! retry.
//!
//! A longer run, on the release binary:
//! `OTEL_SLI_SOAK_SECS=600 OTEL_SLI_SOAK_BIN=target/release/otel-sli cargo test --release --test soak -- --nocapture`

mod common;

use bytes::Bytes;
use common::RawCodec;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const BUDGET_MIB: u64 = 96;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    accepted_spans: AtomicU64,
    accepted_entries: AtomicU64,
    accepted_requests: AtomicU64,
    /// Refused with a retryable answer (503 / `UNAVAILABLE`).
    retryable: AtomicU64,
    /// Any other answer: must stay 0.
    other: AtomicU64,
}

/// Requests for one client: (protobuf body, spans, entry spans).
fn requests(seed: u64) -> Vec<(Bytes, u64, u64)> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    (0..32)
        .map(|i| {
            let (req, entries, _) =
                traces_request(&Workload::default(), &mut rng, 500, now + i * 1_000_000);
            let spans = spans_in(&req);
            (Bytes::from(req.encode_to_vec()), spans, entries)
        })
        .collect()
}

fn spans_in(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

async fn grpc_client(addr: String, seed: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let reqs = requests(seed);
    let path = http::uri::PathAndQuery::from_static(common::TRACE_EXPORT);
    for (body, spans, entries) in reqs.iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        if grpc.ready().await.is_err() {
            tally.other.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let r = grpc
            .unary(
                tonic::Request::new(body.clone()),
                path.clone(),
                RawCodec::<ExportTraceServiceResponse>::default(),
            )
            .await;
        match r {
            Ok(resp) => {
                let rejected = resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| p.rejected_spans as u64);
                tally
                    .accepted_spans
                    .fetch_add(spans - rejected, Ordering::Relaxed);
                tally
                    .accepted_entries
                    .fetch_add(*entries, Ordering::Relaxed);
                tally.accepted_requests.fetch_add(1, Ordering::Relaxed);
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                tally.retryable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(s) => {
                eprintln!("unexpected gRPC answer: {s:?}");
                tally.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

async fn http_client(addr: String, seed: u64, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/traces");
    for (body, spans, entries) in requests(seed).iter().cycle() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let r = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await;
        match r.map(|r| r.status().as_u16()) {
            Ok(200) => {
                tally.accepted_spans.fetch_add(*spans, Ordering::Relaxed);
                tally
                    .accepted_entries
                    .fetch_add(*entries, Ordering::Relaxed);
                tally.accepted_requests.fetch_add(1, Ordering::Relaxed);
            }
            Ok(503) => {
                tally.retryable.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => {
                eprintln!("unexpected HTTP answer: {other:?}");
                tally.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    otel_sli::memory::parse_vm_rss(&s).map(|b| b / 1024)
}

async fn get(admin: &str, path: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .get(format!("http://{admin}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

fn sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_capacity_for_a_while_memory_stays_bounded_and_nothing_acknowledged_is_lost() {
    let secs: u64 = std::env::var("OTEL_SLI_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let bin = std::env::var("OTEL_SLI_SOAK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_otel-sli").to_string());
    let dir = std::env::temp_dir().join(format!("otel-sli-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("soak.yaml");
    std::fs::write(
        &config,
        format!("limits: {{ memory_mib: {BUDGET_MIB} }}\npipeline: {{ queue_capacity: 8 }}\n"),
    )
    .expect("config");
    let (grpc, http, admin) = (
        common::free_addr(),
        common::free_addr(),
        common::free_addr(),
    );
    let mut child = common::spawn_binary(&bin, &config, &grpc, &http, &admin);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&admin, "/readyz").await.is_none() {
        assert!(Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for i in 0..6 {
        clients.push(tokio::spawn(grpc_client(
            grpc.clone(),
            i + 1,
            Arc::clone(&stop),
            Arc::clone(&tally),
        )));
    }
    for i in 0..4 {
        clients.push(tokio::spawn(http_client(
            http.clone(),
            i + 100,
            Arc::clone(&stop),
            Arc::clone(&tally),
        )));
    }

    let started = Instant::now();
    let (mut peak_kib, mut worst_health) = (0u64, Duration::ZERO);
    let mut health_checks = 0u32;
    let mut next_health = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(r) = rss_kib(pid) {
            peak_kib = peak_kib.max(r);
        }
        if Instant::now() >= next_health {
            let t = Instant::now();
            let ok = get(&admin, "/healthz").await.is_some();
            assert!(ok, "/healthz did not answer 200 within 2 s under load");
            worst_health = worst_health.max(t.elapsed());
            health_checks += 1;
            next_health = Instant::now() + Duration::from_millis(250);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }

    let (spans, entries) = (
        tally.accepted_spans.load(Ordering::Relaxed),
        tally.accepted_entries.load(Ordering::Relaxed),
    );
    // Everything acknowledged is counted: self-telemetry at once, the SLIs once the shards
    // have drained their queues and published.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut counted, mut requests) = (0.0, 0.0);
    while Instant::now() < deadline {
        let m = get(&admin, "/metrics").await.unwrap_or_default();
        counted = sum(&m, "otel_sli_accepted_spans_total{");
        requests = sum(&m, "sli_requests_total{");
        if counted == spans as f64 && requests == entries as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = child.wait().expect("exit");
    let _ = std::fs::remove_dir_all(&dir);
    let retryable = tally.retryable.load(Ordering::Relaxed);
    println!(
        "soak {secs}s: {} requests accepted ({spans} spans, {entries} entry spans), {retryable} refused retryably; peak RSS {} MiB of a {BUDGET_MIB} MiB budget; {health_checks} /healthz checks, slowest {worst_health:?}",
        tally.accepted_requests.load(Ordering::Relaxed),
        peak_kib / 1024
    );
    assert_eq!(counted, spans as f64, "accepted spans counted exactly");
    assert_eq!(requests, entries as f64, "entry spans in the SLIs exactly");
    assert_eq!(
        tally.other.load(Ordering::Relaxed),
        0,
        "only 200 or retryable answers"
    );
    assert!(
        retryable > 0,
        "the load was above capacity (some requests refused)"
    );
    assert!(spans > 0, "some requests accepted");
    assert!(
        peak_kib <= BUDGET_MIB * 1024,
        "peak RSS {peak_kib} KiB over the {BUDGET_MIB} MiB budget"
    );
    assert!(status.success(), "clean exit after the soak: {status}");
}
