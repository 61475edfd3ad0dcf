//! The memory budget end to end: with the process's resident size pushed over the soft
//! limit, both receivers refuse with the retryable answers (HTTP 503 + `Retry-After`, gRPC
//! `UNAVAILABLE` + `RetryInfo`), refusals are counted, `/healthz` keeps answering, and
//! requests are accepted again once memory is back under the limit.
//!
//! One test in a binary of its own: the budget is measured against this process's
//! resident size, which other tests running alongside would move.

mod common;

use bytes::Bytes;
use common::{grpc_raw, http_post, sample, TestServer, TRACE_EXPORT};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use otel_sli::memory::resident_bytes;
use otel_sli::otlp::rpc;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;
use std::time::{Duration, Instant, SystemTime};
use tonic::Code;

fn request() -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let (req, _, _) = traces_request(&Workload::default(), &mut Rng::new(1), 40, now);
    req.encode_to_vec()
}

async fn http_status(server: &TestServer, body: &[u8]) -> reqwest::Response {
    http_post(
        server.http,
        "/v1/traces",
        "application/x-protobuf",
        None,
        body.to_vec(),
    )
    .await
}

/// Polls until `want` holds for the HTTP status of an export, or fails after 10 s (the
/// sampler reads memory 10 times a second).
async fn until_status(server: &TestServer, body: &[u8], want: u16) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_status(server, body).await;
        if r.status() == want {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "still {} instead of {want}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_soft_limit_requests_are_refused_retryably_until_memory_falls() {
    // A budget 256 MiB above what this process uses now: its soft limit (90%) leaves the
    // server's own start-up room as long as the process is under 1 GiB.
    let before = resident_bytes().expect("procfs");
    assert!(before < 1 << 30, "test process already uses {before} bytes");
    let budget_mib = (before >> 20) + 256;
    let server = TestServer::start(&format!(
        "limits: {{memory_mib: {budget_mib}}}\npipeline: {{retry_after: 3s}}\n"
    ))
    .await;
    let body = request();
    until_status(&server, &body, 200).await;
    let metrics = server.metrics().await;
    assert_eq!(
        sample(&metrics, "otel_sli_memory_budget_bytes"),
        Some((budget_mib << 20) as f64)
    );

    // 512 MiB, every page touched, takes the resident size over the soft limit.
    let ballast = vec![1u8; 512 << 20];
    let r = until_status(&server, &body, 503).await;
    assert_eq!(r.headers()["retry-after"], "3");
    let status = rpc::Status::decode(r.bytes().await.expect("body")).expect("google.rpc.Status");
    assert_eq!(status.code, rpc::code::UNAVAILABLE);
    assert!(
        status.message.contains("memory budget"),
        "{}",
        status.message
    );

    let err = grpc_raw::<ExportTraceServiceResponse>(
        server.grpc,
        TRACE_EXPORT,
        Bytes::from(body.clone()),
        false,
    )
    .await
    .expect_err("refused");
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(common::retry_delay(&err).0, 3);

    // Still alive and observable while refusing.
    let health = reqwest::get(format!("http://{}/healthz", server.admin))
        .await
        .expect("admin reachable");
    assert_eq!(health.status(), 200);
    let metrics = server.metrics().await;
    let refused = |transport: &str| {
        sample(
            &metrics,
            &format!(
                "otel_sli_requests_total{{transport=\"{transport}\",signal=\"traces\",outcome=\"memory_limit\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert!(refused("http") >= 1.0, "{metrics}");
    assert_eq!(refused("grpc"), 1.0);
    let resident = sample(&metrics, "otel_sli_memory_resident_bytes").expect("resident gauge");
    let soft = sample(&metrics, "otel_sli_memory_soft_limit_bytes").expect("soft gauge");
    assert!(resident >= soft, "{resident} < {soft}");
    // Nothing of a refused request was counted as received: only the first (accepted)
    // HTTP request's spans are, and no gRPC ones.
    server.flush().await;
    let after = server.metrics().await;
    assert_eq!(
        sample(&after, "otel_sli_accepted_spans_total{transport=\"grpc\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "otel_sli_accepted_spans_total{transport=\"http\"}"),
        Some(40.0)
    );

    // Memory back: accepted again.
    assert_eq!(
        ballast.iter().map(|&b| u64::from(b)).sum::<u64>(),
        512 << 20
    );
    drop(ballast);
    until_status(&server, &body, 200).await;
    server.stop().await;
}
