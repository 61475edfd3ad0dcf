//! Bad input and overload, over both transports: each gets the error the OTLP specification
//! prescribes, and the server keeps serving with uncorrupted counts.

mod common;

use bytes::Bytes;
use common::{grpc_raw, gzip, http_post, TestServer, LOGS_EXPORT, METRICS_EXPORT, TRACE_EXPORT};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use otel_sli::otlp::rpc;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;
use std::time::SystemTime;
use tonic::Code;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// A request with `entries` SERVER spans (and children), and how many are errors.
fn good_request(seed: u64, spans: usize) -> (Vec<u8>, u64, u64) {
    let (req, entries, errors) =
        traces_request(&Workload::default(), &mut Rng::new(seed), spans, now());
    (req.encode_to_vec(), entries, errors)
}

/// A request whose first `bad` spans have an empty trace id.
fn partly_invalid(bad: usize) -> (Vec<u8>, u64) {
    let (mut req, entries, _) = traces_request(
        &Workload {
            error_every: 0,
            ..Workload::default()
        },
        &mut Rng::new(5),
        80,
        now(),
    );
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let mut removed_entries = 0;
    for s in spans.iter_mut().take(bad) {
        s.trace_id.clear();
        removed_entries += u64::from(s.kind == 2);
    }
    (req.encode_to_vec(), entries - removed_entries)
}

fn metrics_request(points: usize) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: None,
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint::default(); points],
                    })),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

fn logs_request(records: usize) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: vec![LogRecord::default(); records],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// Sends one hand-made gRPC frame (flag byte, length, payload) and returns `grpc-status`.
async fn grpc_frame(
    addr: std::net::SocketAddr,
    path: &str,
    compressed: bool,
    payload: &[u8],
) -> i32 {
    use http_body_util::BodyExt;
    use tower::Service;
    let mut channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            Bytes::from(frame),
        )))
        .expect("request");
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .expect("channel ready");
    let resp = channel.call(req).await.expect("response");
    let from_headers = resp.headers().get("grpc-status").cloned();
    let collected = resp.into_body().collect().await.expect("body");
    let status = from_headers.or_else(|| {
        collected
            .trailers()
            .and_then(|t| t.get("grpc-status").cloned())
    });
    status
        .and_then(|v| v.to_str().ok().and_then(|v| v.parse().ok()))
        .expect("grpc-status")
}

async fn total_requests(server: &TestServer) -> u64 {
    server.slis("all").await["slis"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["requests"].as_u64().expect("requests"))
        .sum()
}

async fn status_body(resp: reqwest::Response) -> rpc::Status {
    let bytes = resp.bytes().await.expect("body");
    rpc::Status::decode(bytes).expect("google.rpc.Status body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_input_gets_spec_errors_and_counts_stay_exact() {
    let server =
        TestServer::start("receivers:\n  otlp_http:\n    max_request_body_size: 1MiB\n").await;
    let addr = server.http;
    let proto = "application/x-protobuf";

    // Garbage protobuf: 400 with a google.rpc.Status body.
    let r = http_post(addr, "/v1/traces", proto, None, vec![0xff; 64]).await;
    assert_eq!(r.status(), 400);
    let st = status_body(r).await;
    assert_eq!(st.code, rpc::code::INVALID_ARGUMENT);
    assert!(st.message.contains("malformed"), "{}", st.message);

    // Truncated valid request: 400.
    let (mut body, _, _) = good_request(1, 200);
    body.truncate(body.len() / 2);
    assert_eq!(
        http_post(addr, "/v1/traces", proto, None, body)
            .await
            .status(),
        400
    );

    // Bad JSON: 400 with a JSON status body.
    let r = http_post(
        addr,
        "/v1/traces",
        "application/json",
        None,
        b"{\"resourceSpans\": [".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json error body");
    assert_eq!(v["code"], 3);

    // Corrupt gzip: 400.
    assert_eq!(
        http_post(
            addr,
            "/v1/traces",
            proto,
            Some("gzip"),
            b"not gzip".to_vec()
        )
        .await
        .status(),
        400
    );

    // Oversized body: 413, both plain and as a gzip bomb that only grows when inflated.
    assert_eq!(
        http_post(addr, "/v1/traces", proto, None, vec![0; 2 << 20])
            .await
            .status(),
        413
    );
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "the bomb itself is under the limit");
    let r = http_post(addr, "/v1/traces", proto, Some("gzip"), bomb).await;
    assert_eq!(r.status(), 413);
    assert_eq!(status_body(r).await.code, rpc::code::RESOURCE_EXHAUSTED);

    // Unsupported content type and encoding: 415. Wrong method: 405.
    assert_eq!(
        http_post(addr, "/v1/traces", "text/plain", None, vec![])
            .await
            .status(),
        415
    );
    assert_eq!(
        http_post(addr, "/v1/traces", proto, Some("br"), vec![])
            .await
            .status(),
        415
    );
    let get = reqwest::get(format!("http://{addr}/v1/traces"))
        .await
        .expect("reachable");
    assert_eq!(get.status(), 405);

    // Partial success: invalid spans counted and explained, the rest used.
    let (body, valid_entries) = partly_invalid(3);
    let r = http_post(addr, "/v1/traces", proto, None, body).await;
    assert_eq!(r.status(), 200);
    let resp =
        ExportTraceServiceResponse::decode(r.bytes().await.expect("body")).expect("response");
    let ps = resp.partial_success.expect("partial_success set");
    assert_eq!(ps.rejected_spans, 3);
    assert!(
        ps.error_message.contains("trace_id"),
        "{}",
        ps.error_message
    );

    // After all that, good requests (plain and gzip) count exactly.
    let (a, a_entries, a_errors) = good_request(2, 500);
    let (b, b_entries, b_errors) = good_request(3, 500);
    assert_eq!(
        http_post(addr, "/v1/traces", proto, None, a).await.status(),
        200
    );
    assert_eq!(
        http_post(addr, "/v1/traces", proto, Some("gzip"), gzip(&b))
            .await
            .status(),
        200
    );
    // A body large enough to be processed off the I/O threads.
    let (c, c_entries, c_errors) = good_request(4, 4000);
    assert!(c.len() > 512 << 10, "{} bytes", c.len());
    assert_eq!(
        http_post(addr, "/v1/traces", proto, None, c).await.status(),
        200
    );
    assert_eq!(
        total_requests(&server).await,
        valid_entries + a_entries + b_entries + c_entries
    );
    let errors: u64 = server.slis("all").await["slis"]
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["errors"].as_u64().expect("errors"))
        .sum();
    assert_eq!(errors, a_errors + b_errors + c_errors);

    // Metrics and logs are accepted and counted.
    assert_eq!(
        http_post(addr, "/v1/metrics", proto, None, metrics_request(7))
            .await
            .status(),
        200
    );
    assert_eq!(
        http_post(
            addr,
            "/v1/logs",
            proto,
            Some("gzip"),
            gzip(&logs_request(4))
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        http_post(addr, "/v1/metrics", proto, None, vec![0xff; 9])
            .await
            .status(),
        400
    );

    let m = server.metrics().await;
    let s = |k: &str| common::sample(&m, k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(
        s("otel_sli_received_items_total{transport=\"http\",signal=\"metrics\"}"),
        7.0
    );
    assert_eq!(
        s("otel_sli_received_items_total{transport=\"http\",signal=\"logs\"}"),
        4.0
    );
    assert_eq!(
        s("otel_sli_refused_spans_total{transport=\"http\",reason=\"invalid_trace_id\"}"),
        3.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"too_large\"}"),
        2.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"malformed\"}"),
        4.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"partial\"}"),
        1.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"unsupported\"}"),
        2.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_input_gets_spec_errors_and_counts_stay_exact() {
    let server = TestServer::start("").await;
    let addr = server.grpc;

    let err = grpc_raw::<ExportTraceServiceResponse>(
        addr,
        TRACE_EXPORT,
        Bytes::from(vec![0xff; 32]),
        false,
    )
    .await
    .expect_err("garbage refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // Over the 4 MiB default: RESOURCE_EXHAUSTED, plain and compressed.
    let big = Bytes::from(vec![0u8; 5 << 20]);
    let err = grpc_raw::<ExportTraceServiceResponse>(addr, TRACE_EXPORT, big.clone(), false)
        .await
        .expect_err("oversize refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let err = grpc_raw::<ExportTraceServiceResponse>(addr, TRACE_EXPORT, big, true)
        .await
        .expect_err("oversize compressed refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // A frame flagged as gzip that is not gzip: INVALID_ARGUMENT, counted as malformed.
    let status = grpc_frame(addr, TRACE_EXPORT, true, b"definitely not gzip").await;
    assert_eq!(status, Code::InvalidArgument as i32);

    // Partial success.
    let (body, valid_entries) = partly_invalid(2);
    let resp = grpc_raw::<ExportTraceServiceResponse>(addr, TRACE_EXPORT, Bytes::from(body), false)
        .await
        .expect("accepted");
    assert_eq!(resp.partial_success.expect("partial").rejected_spans, 2);

    // Good traffic, gzip and plain, counts exactly afterwards.
    let (a, a_entries, _) = good_request(8, 500);
    let (b, b_entries, _) = good_request(9, 100);
    let ok = grpc_raw::<ExportTraceServiceResponse>(addr, TRACE_EXPORT, Bytes::from(a), true)
        .await
        .expect("accepted");
    assert_eq!(ok.partial_success, None);
    grpc_raw::<ExportTraceServiceResponse>(addr, TRACE_EXPORT, Bytes::from(b), false)
        .await
        .expect("accepted");
    assert_eq!(
        total_requests(&server).await,
        valid_entries + a_entries + b_entries
    );

    // Metrics and logs services.
    grpc_raw::<ExportMetricsServiceResponse>(
        addr,
        METRICS_EXPORT,
        Bytes::from(metrics_request(5)),
        false,
    )
    .await
    .expect("metrics accepted");
    grpc_raw::<ExportLogsServiceResponse>(addr, LOGS_EXPORT, Bytes::from(logs_request(6)), true)
        .await
        .expect("logs accepted");
    let err =
        grpc_raw::<ExportLogsServiceResponse>(addr, LOGS_EXPORT, Bytes::from(vec![0xff; 5]), false)
            .await
            .expect_err("bad logs refused");
    assert_eq!(err.code(), Code::InvalidArgument);

    let m = server.metrics().await;
    let s = |k: &str| common::sample(&m, k).unwrap_or_else(|| panic!("{k} missing"));
    assert_eq!(
        s("otel_sli_received_items_total{transport=\"grpc\",signal=\"metrics\"}"),
        5.0
    );
    assert_eq!(
        s("otel_sli_received_items_total{transport=\"grpc\",signal=\"logs\"}"),
        6.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"grpc\",signal=\"traces\",outcome=\"too_large\"}"),
        2.0
    );
    assert_eq!(
        s("otel_sli_requests_total{transport=\"grpc\",signal=\"traces\",outcome=\"malformed\"}"),
        2.0,
        "garbage protobuf and corrupt gzip"
    );
    server.stop().await;
}

/// Receivers in front of a pipeline whose shard is not running, so queues fill on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pipeline_asks_clients_to_retry() {
    let mut stalled = common::stalled::Stalled::start(
        "pipeline:\n  shards: 1\n  queue_capacity: 1\n  retry_after: 1500ms\n",
    )
    .await;
    let (http_addr, grpc_addr) = (stalled.http, stalled.grpc);
    let telemetry = std::sync::Arc::clone(&stalled.telemetry);
    let (body, entries, _) = good_request(4, 100);
    // Fills the only slot.
    let r = http_post(
        http_addr,
        "/v1/traces",
        "application/x-protobuf",
        None,
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    // Refused: 503 + Retry-After (1.5 s rounds up to 2).
    let r = http_post(
        http_addr,
        "/v1/traces",
        "application/x-protobuf",
        None,
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(status_body(r).await.code, rpc::code::UNAVAILABLE);
    // gRPC: UNAVAILABLE with RetryInfo in the status details.
    let err = grpc_raw::<ExportTraceServiceResponse>(
        grpc_addr,
        TRACE_EXPORT,
        Bytes::from(body.clone()),
        false,
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(common::retry_delay(&err), (1, 500_000_000));
    use otel_sli::telemetry::{RefuseReason, Transport};
    let spans_per_request = ExportTraceServiceRequest::decode(body.as_slice())
        .expect("request")
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum::<u64>();
    assert_eq!(
        telemetry.refused_spans_count(Transport::Http, RefuseReason::Busy)
            + telemetry.refused_spans_count(Transport::Grpc, RefuseReason::Busy),
        2 * spans_per_request,
        "spans of refused requests are counted as refused (busy)"
    );

    // Once the shard runs, the queue drains and requests are accepted again.
    stalled.resume();
    stalled.flush().await;
    let r = http_post(
        http_addr,
        "/v1/traces",
        "application/x-protobuf",
        None,
        body,
    )
    .await;
    assert_eq!(r.status(), 200);
    let counted = stalled.requests().await;
    stalled.stop().await;
    assert_eq!(
        counted,
        2 * entries,
        "refused requests left no trace in the counts"
    );
}
