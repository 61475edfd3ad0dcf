//! Prometheus remote write end to end: spans sent with the OpenTelemetry SDK become series in
//! a real Prometheus (classic and native histograms), and the exporter's retry semantics
//! against a local server: a 400 is dropped after one attempt, a 429 is retried after its
//! `Retry-After`.
//!
//! The Prometheus tests need the `prometheus` binary (Debian package `prometheus`). Without
//! it they print `skipped: prometheus not installed` and pass, unless
//! `OTEL_SLI_REQUIRE_TOOLS=1` (CI).

mod common;

use common::tsdb::{prometheus_available, PromOptions, Prometheus};
use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use otel_sli::export::delivery::{DropReason, Stats};
use otel_sli::export::remote_write::{encode, RemoteWriteConfig, RemoteWriteExporter};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::sdk_provider as provider;

/// Sends `n` server spans of `method route` for `service` taking 20 ms each, every
/// `failed_every`-th one failed (0: none), through the SDK's gRPC exporter.
async fn send(
    server: &TestServer,
    service: &str,
    method: &'static str,
    route: &'static str,
    n: usize,
    failed_every: usize,
) {
    send_to(
        &server.grpc.to_string(),
        service,
        method,
        route,
        n,
        failed_every,
    )
    .await;
}

/// [`send`] to the OTLP/gRPC receiver at `grpc` (`host:port`).
async fn send_to(
    grpc: &str,
    service: &str,
    method: &'static str,
    route: &'static str,
    n: usize,
    failed_every: usize,
) {
    let endpoint = format!("http://{grpc}");
    let service = service.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = provider(&endpoint, &service);
        let tracer = p.tracer("remote-write-test");
        let now = SystemTime::now();
        for i in 0..n {
            let mut span = tracer
                .span_builder(format!("{method} {route}"))
                .with_kind(SpanKind::Server)
                .with_start_time(now - Duration::from_millis(20))
                .with_attributes(vec![
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("http.route", route),
                ])
                .start(&tracer);
            if failed_every > 0 && i % failed_every == 0 {
                span.set_status(Status::error("boom"));
            }
            span.end_with_timestamp(now);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

/// A server with the remote-write section in its configuration; returns the validated
/// exporter settings. The server runs its own exporter from it; most tests start a second
/// one by hand to watch its counters (both write the same samples).
async fn server(endpoint: &str, interval: &str, extra: &str) -> (TestServer, RemoteWriteConfig) {
    let yaml = format!(
        r#"
exporters:
  prometheus_remote_write:
    endpoint: {endpoint}
    interval: {interval}
    external_labels: {{ node: test-node }}
    headers: {{ X-Scope-OrgID: tenant-1 }}
{extra}
slos:
  - name: cart-availability
    service: cart
    feature: "GET /cart"
    objective: 99
"#
    );
    let c = common::config(&yaml);
    let rw = c.remote_write.clone().expect("remote write configured");
    (TestServer::start_with(c).await, rw)
}

/// Sends the test traffic: cart 20 requests (every 4th failed), pay 10 (none failed).
async fn traffic(server: &TestServer) {
    send(server, "cart", "GET", "/cart", 20, 4).await;
    send(server, "pay", "POST", "/pay", 10, 0).await;
    server.flush().await;
}

/// Waits until nothing is queued or being sent.
async fn settle(stats: &Stats) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.queued.load(Ordering::Relaxed) > 0 {
        assert!(Instant::now() < deadline, "queue did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_histograms_reach_prometheus() {
    if !prometheus_available() {
        return;
    }
    let prom = Prometheus::start("classic", PromOptions::default()).await;
    // The server's own exporter writes only at start and stop (1h), so that it cannot write
    // an older view after the watched one has written a newer (Prometheus would refuse it as
    // out of order); the watched exporter ticks every second.
    let (server, mut cfg) = server(&prom.write_url(), "1h", "").await;
    cfg.interval = Duration::from_secs(1);
    let reader = server.running.as_ref().expect("running").reader.clone();
    let exporter = RemoteWriteExporter::start(&cfg, reader).expect("start");
    traffic(&server).await;
    // The ticker (1s) writes on its own.
    prom.expect("sum(sli_requests_total)", 30.0).await;
    prom.expect("sum(sli_errors_total)", 5.0).await;
    prom.expect("sum(sli_latency_seconds_count)", 30.0).await;
    prom.expect(r#"sum(sli_latency_seconds_bucket{le="+Inf"})"#, 30.0)
        .await;
    prom.expect(
        r#"sli_requests_total{service="cart",feature="GET /cart"}"#,
        20.0,
    )
    .await;
    // Every series carries the external label.
    let all = prom.query("count({__name__=~\"sli_.*|slo_.*\"})").await;
    let labelled = prom
        .query(r#"count({__name__=~"sli_.*|slo_.*",node="test-node"})"#)
        .await;
    assert!(all.is_some_and(|n| n > 10.0), "{all:?}");
    assert_eq!(all, labelled, "every series has node=test-node");
    // What several agents would do: sum across nodes.
    prom.expect(
        r#"sum without (node) (sli_requests_total{service="pay"})"#,
        10.0,
    )
    .await;
    // SLO gauges.
    prom.expect(
        r#"slo_objective_ratio{slo="cart-availability",node="test-node"}"#,
        0.99,
    )
    .await;
    prom.expect(r#"slo_window_bad_requests{slo="cart-availability"}"#, 5.0)
        .await;
    let stats = Arc::clone(exporter.queue().stats());
    assert_eq!(exporter.queue().name(), "prometheus_remote_write");
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    assert!(stats.sent_requests.load(Ordering::Relaxed) >= 1);
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "{}", r.name());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_histograms_reach_prometheus() {
    if !prometheus_available() {
        return;
    }
    let native = PromOptions {
        native_histograms: true,
        ..PromOptions::default()
    };
    let prom = Prometheus::start("native", native).await;
    let (server, cfg) = server(&prom.write_url(), "1h", "    native_histograms: true").await;
    assert!(cfg.native_histograms);
    let reader = server.running.as_ref().expect("running").reader.clone();
    let exporter = RemoteWriteExporter::start(&cfg, reader).expect("start");
    traffic(&server).await;
    exporter.export_now().await;
    prom.expect("sum(sli_requests_total)", 30.0).await;
    prom.expect("histogram_count(sum(sli_latency_seconds))", 30.0)
        .await;
    prom.expect(
        r#"histogram_count(sli_latency_seconds{service="cart",node="test-node"})"#,
        20.0,
    )
    .await;
    // 30 requests of 20 ms.
    let sum = prom
        .query("histogram_sum(sum(sli_latency_seconds))")
        .await
        .expect("histogram sum");
    assert!((sum - 0.6).abs() < 1e-6, "{sum}");
    // No classic series in native mode.
    assert_eq!(prom.query("count(sli_latency_seconds_bucket)").await, None);
    // The median of 20 ms requests reads as the upper bound of their exported bucket,
    // 25 ms by default (within the 0.3% of one exponential bucket).
    let p50 = prom
        .query("histogram_quantile(0.5, sum(sli_latency_seconds))")
        .await
        .expect("quantile");
    assert!((p50 / 0.025 - 1.0).abs() < 0.003, "{p50}");
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    server.stop().await;
}

/// What the fake endpoint saw: attempt times, headers and bodies.
#[derive(Default)]
struct Seen {
    times: Vec<Instant>,
    headers: Vec<http::HeaderMap>,
    bodies: Vec<bytes::Bytes>,
}

/// A local remote-write endpoint answering the statuses of `answers` in turn (the last one
/// repeats), with `Retry-After: 1` on 429s.
async fn fake_endpoint(answers: Vec<u16>) -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let state = Arc::clone(&state);
            let answers = answers.clone();
            async move {
                let n = {
                    let mut s = state.lock().expect("seen");
                    s.times.push(Instant::now());
                    s.headers.push(headers);
                    s.bodies.push(body);
                    s.times.len()
                };
                let status = answers
                    .get(n - 1)
                    .or(answers.last())
                    .copied()
                    .unwrap_or(200);
                let mut resp = http::Response::builder().status(status);
                if status == 429 {
                    resp = resp.header("Retry-After", "1");
                }
                resp.body(axum::body::Body::from("rejected by test"))
                    .expect("response")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/api/v1/write"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dropped_after_one_attempt_and_counted() {
    let (url, seen) = fake_endpoint(vec![400]).await;
    let (server, cfg) = server(&url, "1h", "").await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let exporter = RemoteWriteExporter::start(&cfg, reader).expect("start");
    traffic(&server).await;
    exporter.export_now().await;
    let stats = Arc::clone(exporter.queue().stats());
    settle(&stats).await;
    let s = std::mem::take(&mut *seen.lock().expect("seen"));
    assert_eq!(s.times.len(), 1, "one payload, one attempt");
    let items = encode::decode(&s.bodies[0])
        .expect("snappy protobuf")
        .timeseries
        .iter()
        .map(|t| (t.samples.len() + t.histograms.len()) as u64)
        .sum::<u64>();
    assert!(items > 0);
    assert_eq!(stats.dropped(DropReason::Rejected), items);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 0);
    assert_eq!(stats.sent_requests.load(Ordering::Relaxed), 0);
    let h = &s.headers[0];
    assert_eq!(h["content-encoding"], "snappy");
    assert_eq!(h["content-type"], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h["x-scope-orgid"], "tenant-1");
    assert!(h["user-agent"]
        .to_str()
        .is_ok_and(|u| u.starts_with("otel-sli/")));
    exporter
        .shutdown(Instant::now() + Duration::from_secs(2))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after() {
    let (url, seen) = fake_endpoint(vec![429, 200]).await;
    let (server, cfg) = server(&url, "1h", "").await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let exporter = RemoteWriteExporter::start(&cfg, reader).expect("start");
    traffic(&server).await;
    exporter.export_now().await;
    let stats = Arc::clone(exporter.queue().stats());
    settle(&stats).await;
    let s = std::mem::take(&mut *seen.lock().expect("seen"));
    assert_eq!(s.times.len(), 2, "one refusal, one delivery");
    let waited = s.times[1] - s.times[0];
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert_eq!(s.bodies[0], s.bodies[1], "the same payload again");
    assert_eq!(stats.sent_requests.load(Ordering::Relaxed), 1);
    assert_eq!(stats.retries.load(Ordering::Relaxed), 1);
    for r in DropReason::ALL {
        assert_eq!(stats.dropped(r), 0, "{}", r.name());
    }
    exporter
        .shutdown(Instant::now() + Duration::from_secs(2))
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_latest_view_once_more() {
    let (url, seen) = fake_endpoint(vec![200]).await;
    let (server, cfg) = server(&url, "1h", "").await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let exporter = RemoteWriteExporter::start(&cfg, reader).expect("start");
    traffic(&server).await;
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    let s = std::mem::take(&mut *seen.lock().expect("seen"));
    assert_eq!(s.bodies.len(), 1, "the final export");
    let req = encode::decode(&s.bodies[0]).expect("decodes");
    let requests: f64 = req
        .timeseries
        .iter()
        .filter(|t| {
            t.labels
                .iter()
                .any(|l| l.name == "__name__" && l.value == "sli_requests_total")
        })
        .map(|t| {
            // Each series' first write starts with a zero at the process start.
            assert_eq!(t.samples.len(), 2, "{:?}", t.labels);
            assert_eq!(t.samples[0].value, 0.0);
            assert!(t.samples[0].timestamp < t.samples[1].timestamp);
            t.samples[1].value
        })
        .sum();
    assert_eq!(requests, 30.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_spooled_while_prometheus_is_down_arrive_in_order_once_it_is_up() {
    if !prometheus_available() {
        return;
    }
    let addr = common::free_addr();
    let state = std::env::temp_dir().join(format!("otel-sli-rw-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    // The server's own exporter this time (the others start one by hand).
    let (server, cfg) = server(
        &format!("http://{addr}/api/v1/write"),
        "1s",
        &format!(
            "    spool: {{ max_bytes: 4MiB }}\nstorage: {{ directory: {} }}",
            state.display()
        ),
    )
    .await;
    assert!(cfg.spool.is_some());
    let m =
        |name: &str| format!("otel_sli_exporter_{name}{{exporter=\"prometheus_remote_write\"}}");
    traffic(&server).await;
    // Prometheus is not there: the first write keeps being retried in memory, the later
    // ones (one a second) wait in the spool behind it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric(&m("spool_items")).await < 3.0 {
        assert!(Instant::now() < deadline, "nothing spooled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(server.metric(&m("sent_requests_total")).await, 0.0);
    let prom = Prometheus::start_on("spool", PromOptions::default(), addr).await;
    prom.expect("sum(sli_requests_total)", 30.0).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while server.metric(&m("spool_items")).await > 0.0 {
        if Instant::now() >= deadline {
            let text = server.metrics().await;
            let ours: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("prometheus_remote_write"))
                .collect();
            panic!("spool not delivered:\n{}", ours.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every write of the downtime landed, oldest first: Prometheus refuses an older sample
    // after a newer one (400, counted as rejected).
    let metrics = server.metrics().await;
    for r in DropReason::ALL {
        let series = format!(
            "otel_sli_exporter_dropped_items_total{{exporter=\"prometheus_remote_write\",reason=\"{}\"}}",
            r.name()
        );
        assert_eq!(common::sample(&metrics, &series), Some(0.0), "{series}");
    }
    // Everything that went to disk was sent on (one payload was retried in memory).
    let spooled = common::sample(&metrics, &m("spooled_items_total")).unwrap_or(-1.0);
    let sent = common::sample(&metrics, &m("sent_items_total")).unwrap_or(-1.0);
    assert!(
        spooled > 0.0 && sent > spooled,
        "spooled {spooled}, sent {sent}"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&state);
}

/// `GET path` on `addr` with a plain blocking request; the body of a 200 answer.
fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

/// The process is stopped with SIGTERM before its first remote-write interval has come: the
/// final flush on the way out is what brings the counts to Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_the_final_counts_to_prometheus() {
    if !prometheus_available() {
        return;
    }
    let prom = Prometheus::start("sigterm", PromOptions::default()).await;
    let dir = prom.dir.clone();
    let config = dir.join("otel-sli.yaml");
    std::fs::write(
        &config,
        format!(
            "exporters:\n  prometheus_remote_write:\n    endpoint: {}\n    interval: 1h\n",
            prom.write_url()
        ),
    )
    .expect("config");
    let (grpc, http, admin) = (
        common::free_addr(),
        common::free_addr(),
        common::free_addr(),
    );
    let mut child = common::spawn_otel_sli(&config, &grpc, &http, &admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&admin, "/readyz").is_none() {
        assert!(Instant::now() < deadline, "otel-sli not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send_to(&grpc, "cart", "GET", "/cart", 48, 6).await;
    let accepted = "otel_sli_accepted_spans_total{transport=\"grpc\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&admin, "/metrics").and_then(|m| common::sample(&m, accepted)) != Some(48.0) {
        assert!(Instant::now() < deadline, "spans not accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing has reached Prometheus yet: the interval is an hour (the first write, at
    // start, had no series).
    assert_eq!(prom.query("sum(sli_requests_total)").await, None);

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "otel-sli did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    prom.expect("sum(sli_requests_total)", 48.0).await;
    prom.expect("sum(sli_errors_total)", 8.0).await;
    prom.expect("sum(sli_latency_seconds_count)", 48.0).await;
}
