//! Raw pass-through: an agent forwards everything it accepted to a capturing OTLP/HTTP
//! upstream (bytes compared, headers checked) and to a gateway `otel-sli` over gRPC (counts
//! compared); an upstream that is down at first receives everything once it is up; an
//! upstream answering 400 gets each request once and the drops are counted; with `batch:`
//! the upstreams get fewer requests holding the received ones back to back.

mod common;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::otlp::{logs_request, metrics_request};
use common::sdk::{self, Req, Transport};
use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _, TracerProvider as _};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the upstream saw it: path, headers, body after gzip.
#[derive(Clone, Debug)]
struct Seen {
    signal: String,
    headers: HeaderMap,
    body: Vec<u8>,
    /// The body as it came over the wire (before gzip).
    raw: Vec<u8>,
}

#[derive(Clone, Default)]
struct Capture {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Status to answer with (200 unless set).
    status: Arc<Mutex<Option<StatusCode>>>,
}

async fn capture(
    State(c): State<Capture>,
    Path(signal): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = c.status.lock().expect("lock").unwrap_or(StatusCode::OK);
    let raw = body.clone();
    let body = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("gzip body");
        out
    } else {
        body.to_vec()
    };
    c.seen.lock().expect("lock").push(Seen {
        signal,
        headers,
        body,
        raw: raw.to_vec(),
    });
    status
}

/// Serves the capture on `listener`.
fn serve(listener: tokio::net::TcpListener, c: Capture) {
    let app = axum::Router::new()
        .route("/v1/{signal}", axum::routing::post(capture))
        .with_state(c);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

async fn capture_server() -> (SocketAddr, Capture) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let c = Capture::default();
    serve(l, c.clone());
    (addr, c)
}

/// Sends `n` server spans to the agent with the OpenTelemetry SDK over gRPC.
async fn sdk_spans(agent: &TestServer, n: usize) {
    let reqs = vec![Req::server("GET", "/cart", Duration::ZERO, 0); n];
    sdk::send(agent.grpc.to_string(), Transport::Grpc, false, "shop", reqs).await;
}

/// Waits until `f` holds, up to `secs` seconds.
async fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

fn spans_in(seen: &[Seen]) -> usize {
    seen.iter()
        .filter(|s| s.signal == "traces")
        .map(|s| {
            ExportTraceServiceRequest::decode(&s.body[..])
                .expect("forwarded traces decode")
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_accepted_reaches_every_upstream_unchanged_with_the_vendor_headers() {
    let (vendor, cap) = capture_server().await;
    let gateway = TestServer::start("").await;
    let agent = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{vendor}\n    protocol: http\n    headers: {{ x-api-key: \"${{FWD_TEST_KEY:-k3y}}\" }}\n    compression: gzip\n  - endpoint: http://{}\n    protocol: grpc\n    compression: none\n    signals: [traces, logs]\n",
        gateway.grpc
    ))
    .await;

    sdk_spans(&agent, 300).await;
    let metrics = metrics_request(7);
    let logs = logs_request(5);
    for (path, body) in [("/v1/metrics", &metrics), ("/v1/logs", &logs)] {
        let r = common::post_protobuf(agent.http, path, body.clone()).await;
        assert_eq!(r.status(), 200);
    }
    // Undecodable: refused, never forwarded.
    let r = common::post_protobuf(agent.http, "/v1/traces", vec![0xff; 9]).await;
    assert_eq!(r.status(), 400);

    assert!(
        eventually(10, || {
            let seen = cap.seen.lock().expect("lock");
            spans_in(&seen) == 300 && seen.iter().any(|s| s.signal == "logs")
        })
        .await,
        "everything arrives at the vendor"
    );
    let seen = cap.seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|s| s.headers["x-api-key"] == "k3y"),
        "vendor header on every request"
    );
    assert!(seen.iter().all(|s| s.headers["content-encoding"] == "gzip"));
    let by = |sig: &str| -> Vec<&Seen> { seen.iter().filter(|s| s.signal == sig).collect() };
    assert_eq!(by("metrics").len(), 1);
    assert_eq!(
        by("metrics")[0].body,
        metrics,
        "metrics forwarded byte for byte"
    );
    assert_eq!(by("logs")[0].body, logs, "logs forwarded byte for byte");

    // The gRPC gateway takes traces and logs: it derives the same SLI from the forwarded spans.
    let sli = gateway.sli("all", "shop", "GET /cart").await;
    assert_eq!(sli["requests"], 300, "{sli}");
    let m = agent.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            "otel_sli_exporter_sent_items_total{exporter=\"forward_0\"}"
        ),
        Some(312.0)
    );
    assert_eq!(
        common::sample(
            &m,
            "otel_sli_exporter_sent_items_total{exporter=\"forward_1\"}"
        ),
        Some(305.0),
        "traces + logs, no metrics"
    );
    agent.stop().await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_down_at_first_gets_everything_once_up_and_a_400_is_dropped_and_counted() {
    // Reserve a port, leave it closed for now.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let vendor = l.local_addr().expect("addr");
    drop(l);
    let agent = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{vendor}\n    protocol: http\n    compression: none\n    signals: [logs]\n"
    ))
    .await;
    let body = logs_request(3);
    for _ in 0..10 {
        let r = common::post_protobuf(agent.http, "/v1/logs", body.clone()).await;
        assert_eq!(r.status(), 200, "accepted while the upstream is down");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let m = agent.metrics().await;
    assert!(
        common::sample(
            &m,
            "otel_sli_exporter_failed_attempts_total{exporter=\"forward_0\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    // The upstream comes up: everything queued arrives, exactly once.
    let cap = Capture::default();
    serve(
        tokio::net::TcpListener::bind(vendor).await.expect("rebind"),
        cap.clone(),
    );
    assert!(
        eventually(20, || cap.seen.lock().expect("lock").len() >= 10).await,
        "all delivered after recovery"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cap.seen.lock().expect("lock").len(), 10, "no duplicates");

    // Now it refuses with 400: one attempt each, dropped and counted.
    *cap.status.lock().expect("lock") = Some(StatusCode::BAD_REQUEST);
    for _ in 0..4 {
        common::post_protobuf(agent.http, "/v1/logs", body.clone()).await;
    }
    let counted =
        "otel_sli_exporter_dropped_items_total{exporter=\"forward_0\",reason=\"rejected\"}";
    let mut dropped = 0.0;
    for _ in 0..100 {
        dropped = common::sample(&agent.metrics().await, counted).unwrap_or(0.0);
        if dropped >= 12.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dropped, 12.0, "4 requests × 3 records");
    assert_eq!(
        cap.seen.lock().expect("lock").len(),
        14,
        "each refused request tried once"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_metrics_reach_an_otlp_upstream() {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let (vendor, cap) = capture_server().await;
    let requests = |seen: &[Seen]| -> Option<f64> {
        let last = seen.iter().rev().find(|s| s.signal == "metrics")?;
        let req = ExportMetricsServiceRequest::decode(&last.body[..]).ok()?;
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "sli.requests")
            .find_map(|m| match &m.data {
                Some(Data::Sum(s)) => s.data_points.first().map(|p| match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    Some(number_data_point::Value::AsInt(v)) => v as f64,
                    None => -1.0,
                }),
                _ => None,
            })
    };
    let agent = TestServer::start(&format!(
        "exporters:\n  otlp_metrics:\n    endpoint: http://{vendor}\n    protocol: http\n    interval: 1s\n    headers: {{ x-api-key: k }}\n"
    ))
    .await;
    // The same through a forwarder's include_derived (default interval: checked at shutdown).
    let (vendor2, cap2) = capture_server().await;
    let agent2 = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{vendor2}\n    protocol: http\n    signals: [logs]\n    include_derived: true\n    headers: {{ x-api-key: k2 }}\n"
    ))
    .await;
    sdk_spans(&agent2, 40).await;
    agent2.stop().await;
    let seen2 = cap2.seen.lock().expect("lock").clone();
    assert_eq!(
        requests(&seen2),
        Some(40.0),
        "final export at shutdown carries the derived metrics"
    );
    assert!(seen2.iter().all(|s| s.headers["x-api-key"] == "k2"));
    sdk_spans(&agent, 120).await;
    agent.flush().await;
    assert!(
        eventually(10, || requests(&cap.seen.lock().expect("lock"))
            == Some(120.0))
        .await,
        "sli.requests = 120 arrives: {:?}",
        requests(&cap.seen.lock().expect("lock"))
    );
    let seen = cap.seen.lock().expect("lock").clone();
    assert!(seen.iter().all(|s| s.headers["x-api-key"] == "k"));
    let m = agent.metrics().await;
    assert!(
        common::sample(
            &m,
            "otel_sli_exporter_sent_requests_total{exporter=\"otlp_metrics\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    agent.stop().await;
}

/// An `otel-sli` process (the real binary) with a config file; killed when dropped.
struct Agent {
    child: std::process::Child,
    grpc: String,
    admin: String,
}

impl Agent {
    async fn start(config: &std::path::Path) -> Self {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (grpc, http, admin) = (port(), port(), port());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_otel-sli"))
            .arg("--config")
            .arg(config)
            .args(["--otlp-grpc", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http", &format!("127.0.0.1:{http}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("otel-sli starts");
        let a = Agent {
            child,
            grpc: format!("127.0.0.1:{grpc}"),
            admin: format!("127.0.0.1:{admin}"),
        };
        assert!(
            eventually(30, || a.metrics_blocking().is_some()).await,
            "agent did not come up"
        );
        a
    }

    fn metrics_blocking(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.admin).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.starts_with("HTTP/1.1 200").then_some(out)
    }

    fn sample(&self, series: &str) -> f64 {
        self.metrics_blocking()
            .and_then(|m| common::sample(&m, series))
            .unwrap_or(-1.0)
    }

    fn kill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("exits")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every span id the upstream received, in arrival order.
fn span_ids(seen: &[Seen]) -> Vec<Vec<u8>> {
    seen.iter()
        .filter(|s| s.signal == "traces")
        .flat_map(|s| {
            ExportTraceServiceRequest::decode(&s.body[..])
                .expect("forwarded traces decode")
                .resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|ss| ss.spans)
                .map(|sp| sp.span_id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_spooled_when_the_process_is_killed_are_delivered_after_the_restart() {
    let (vendor, cap) = capture_server().await;
    *cap.status.lock().expect("lock") = Some(StatusCode::SERVICE_UNAVAILABLE);
    let dir = std::env::temp_dir().join(format!("otel-sli-spool-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("otel-sli.yaml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  directory: {}\nforward:\n  - endpoint: http://{vendor}\n    protocol: http\n    compression: none\n    spool: {{ max_bytes: 64MiB }}\n",
            dir.join("state").display()
        ),
    )
    .expect("config");

    let agent = Agent::start(&config).await;
    let spooled = "otel_sli_exporter_spool_items{exporter=\"forward_0\"}";
    let accepted = "otel_sli_accepted_spans_total{transport=\"grpc\"}";
    // The SDK sends 600 spans while the vendor answers 503: all of them go to disk.
    let provider = common::sdk_provider(&format!("http://{}", agent.grpc), "shop");
    let tracer = provider.tracer("spool");
    tokio::task::spawn_blocking(move || {
        for i in 0..600 {
            let mut s = tracer
                .span_builder(format!("GET /item/{}", i % 3))
                .with_kind(SpanKind::Server)
                .start(&tracer);
            s.end();
        }
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk");
    assert_eq!(agent.sample(accepted), 600.0);
    assert!(
        eventually(20, || agent.sample(spooled) == 600.0).await,
        "all 600 spans spooled: {}",
        agent.sample(spooled)
    );
    let tried = cap.seen.lock().expect("lock").len();
    assert!(tried >= 1, "the vendor was tried");
    agent.kill();

    // The vendor is back; a new process on the same storage delivers the spool.
    cap.seen.lock().expect("lock").clear();
    *cap.status.lock().expect("lock") = None;
    let agent = Agent::start(&config).await;
    assert!(
        eventually(30, || span_ids(&cap.seen.lock().expect("lock")).len()
            >= 600)
        .await,
        "spooled spans delivered after the restart"
    );
    let sent = "otel_sli_exporter_sent_items_total{exporter=\"forward_0\"}";
    assert!(eventually(10, || agent.sample(sent) == 600.0).await);
    assert!(eventually(10, || agent.sample(spooled) == 0.0).await);
    let mut ids = span_ids(&cap.seen.lock().expect("lock"));
    assert_eq!(ids.len(), 600, "each span once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 600, "600 distinct spans");
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    let left: Vec<_> = std::fs::read_dir(dir.join("state/spool"))
        .expect("spool dir")
        .flat_map(|d| std::fs::read_dir(d.expect("entry").path()).expect("spool"))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .collect();
    assert!(left.is_empty(), "delivered segments removed: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_body_is_passed_on_as_received_to_a_gzip_http_upstream() {
    let (gz_vendor, gz_cap) = capture_server().await;
    let (plain_vendor, plain_cap) = capture_server().await;
    let agent = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{gz_vendor}\n    protocol: http\n    compression: gzip\n  - endpoint: http://{plain_vendor}\n    protocol: http\n    compression: none\n"
    ))
    .await;
    let body = logs_request(50);
    // Best compression: not what otel-sli would produce itself (it uses the fastest level).
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut e, &body).expect("gzip");
    let sent = e.finish().expect("gzip");
    assert_ne!(sent, common::gzip(&body));
    let r = common::http_post(
        agent.http,
        "/v1/logs",
        "application/x-protobuf",
        Some("gzip"),
        sent.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    // And one over gRPC, which tonic decompresses: compressed again for the gzip upstream.
    common::grpc_raw::<opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse>(
        agent.grpc,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        body.clone().into(),
        true,
    )
    .await
    .expect("grpc export");
    assert!(eventually(10, || gz_cap.seen.lock().expect("lock").len() == 2).await);
    assert!(eventually(10, || plain_cap.seen.lock().expect("lock").len() == 2).await);
    let gz = gz_cap.seen.lock().expect("lock").clone();
    let from_http = gz.iter().find(|s| s.raw == sent);
    assert!(from_http.is_some(), "the received gzip bytes, unchanged");
    assert!(gz.iter().all(|s| s.body == body
        && s.headers
            .get("content-encoding")
            .is_some_and(|v| v == "gzip")));
    let plain = plain_cap.seen.lock().expect("lock").clone();
    assert!(
        plain
            .iter()
            .all(|s| s.raw == body && s.headers.get("content-encoding").is_none()),
        "decompressed for an upstream without gzip"
    );
    agent.stop().await;
}

/// A gRPC upstream that records each request's headers and body (the gRPC frame, as sent)
/// and answers OK (trailers-only).
async fn grpc_capture_server() -> (SocketAddr, Capture) {
    async fn record(
        State(c): State<Capture>,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        c.seen.lock().expect("lock").push(Seen {
            signal: "grpc".into(),
            headers,
            body: Vec::new(),
            raw: body.to_vec(),
        });
        axum::response::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "0")
            .body(axum::body::Body::empty())
            .expect("response")
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let c = Capture::default();
    let app = axum::Router::new()
        .route("/{*method}", axum::routing::post(record))
        .with_state(c.clone());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, c)
}

/// `body` gzip-compressed at the best level, which otel-sli never uses itself.
fn gzip_best(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut e, body).expect("gzip");
    let z = e.finish().expect("gzip");
    assert_ne!(z, otel_sli::export::upstream::otlp_client::gzip(body));
    z
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_messages_pass_through_between_grpc_and_http_without_recompression() {
    let (grpc_vendor, grpc_cap) = grpc_capture_server().await;
    let (http_vendor, http_cap) = capture_server().await;
    let agent = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{grpc_vendor}\n    protocol: grpc\n    compression: gzip\n    headers: {{ x-api-key: k }}\n  - endpoint: http://{http_vendor}\n    protocol: http\n    compression: gzip\n"
    ))
    .await;
    let body = logs_request(40);
    let z = gzip_best(&body);

    // A gzip-compressed gRPC message, framed by hand so its bytes are known.
    let client = otel_sli::export::upstream::http2::H2Pool::new(
        &Default::default(),
        Duration::from_secs(5),
        1,
    )
    .expect("client");
    let mut frame = vec![1u8];
    frame.extend_from_slice(&(z.len() as u32).to_be_bytes());
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            agent.grpc
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip")
        .body(())
        .expect("request");
    let resp = client
        .request(req, [frame.into(), z.clone().into()])
        .await
        .expect("gRPC export");
    assert_eq!(resp.status, 200);
    let status = resp.trailers.as_ref().and_then(|t| t.get("grpc-status"));
    assert_eq!(status.map(|v| v.as_bytes()), Some(&b"0"[..]), "{resp:?}");

    // The same bytes over OTLP/HTTP.
    let r = common::http_post(
        agent.http,
        "/v1/logs",
        "application/x-protobuf",
        Some("gzip"),
        z.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);

    assert!(eventually(10, || grpc_cap.seen.lock().expect("lock").len() == 2).await);
    assert!(eventually(10, || http_cap.seen.lock().expect("lock").len() == 2).await);
    let mut want_frame = vec![1u8];
    want_frame.extend_from_slice(&(z.len() as u32).to_be_bytes());
    want_frame.extend_from_slice(&z);
    for s in grpc_cap.seen.lock().expect("lock").iter() {
        assert_eq!(
            s.raw, want_frame,
            "the received gzip message, unchanged, in one gRPC frame"
        );
        assert_eq!(
            s.headers.get("grpc-encoding").map(|v| v.as_bytes()),
            Some(&b"gzip"[..])
        );
        assert_eq!(
            s.headers.get("x-api-key").map(|v| v.as_bytes()),
            Some(&b"k"[..])
        );
    }
    for s in http_cap.seen.lock().expect("lock").iter() {
        assert_eq!(s.raw, z, "the received gzip bytes, unchanged");
        assert_eq!(s.body, body);
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_batching_requests_are_merged_byte_for_byte_and_decoded_whole_upstream() {
    let (vendor, cap) = capture_server().await;
    let gateway = TestServer::start("").await;
    let agent = TestServer::start(&format!(
        "forward:\n  - endpoint: http://{vendor}\n    protocol: http\n    compression: gzip\n    max_in_flight: 1\n    batch: {{ wait: 1s }}\n  - endpoint: http://{}\n    protocol: grpc\n    compression: none\n    batch: {{ wait: 1s, max_bytes: 64KiB }}\n",
        gateway.grpc
    ))
    .await;

    let sent: Vec<Vec<u8>> = (1..=10).map(logs_request).collect();
    for body in &sent {
        let r = common::post_protobuf(agent.http, "/v1/logs", body.clone()).await;
        assert_eq!(r.status(), 200);
    }
    // Three SDK exports (each its own request) for the gateway's SLI.
    for _ in 0..3 {
        sdk_spans(&agent, 100).await;
    }
    assert!(
        eventually(10, || {
            let seen = cap.seen.lock().expect("lock");
            spans_in(&seen) == 300
                && seen
                    .iter()
                    .filter(|s| s.signal == "logs")
                    .map(|s| s.body.len())
                    .sum::<usize>()
                    == sent.iter().map(Vec::len).sum::<usize>()
        })
        .await,
        "everything arrives at the vendor"
    );
    let seen = cap.seen.lock().expect("lock").clone();
    let logs: Vec<&Seen> = seen.iter().filter(|s| s.signal == "logs").collect();
    assert!(
        logs.len() < sent.len(),
        "{} upstream requests for {} received",
        logs.len(),
        sent.len()
    );
    // One sender: the merged requests arrive in order, holding every received body once.
    assert_eq!(
        logs.iter()
            .flat_map(|s| s.body.clone())
            .collect::<Vec<u8>>(),
        sent.concat()
    );
    let records: usize = logs
        .iter()
        .map(|s| {
            ExportLogsServiceRequest::decode(&s.body[..])
                .expect("a merged request decodes")
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(records, (1..=10).sum::<usize>());

    // The gateway reads merged requests like any other; its forwarder may finish later.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let m = agent.metrics().await;
        let sent = |i: usize| {
            common::sample(
                &m,
                &format!("otel_sli_exporter_sent_items_total{{exporter=\"forward_{i}\"}}"),
            )
        };
        if (sent(0), sent(1)) == (Some(355.0), Some(355.0)) || Instant::now() > end {
            assert_eq!(
                (sent(0), sent(1)),
                (Some(355.0), Some(355.0)),
                "300 spans, 55 log records each"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sli = gateway.sli("all", "shop", "GET /cart").await;
    assert_eq!(sli["requests"], 300, "{sli}");
    agent.stop().await;
    gateway.stop().await;
}
