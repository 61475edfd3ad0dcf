//! Admission by bytes in flight: requests reserve room in a pool of half the memory budget
//! before their bodies are read, so a burst of large requests is refused retryably (HTTP
//! 503 + `Retry-After`, gRPC `UNAVAILABLE`) instead of being read into memory, and room comes
//! back when a request ends, also when its client goes away mid-body.
//!
//! Clients here declare large bodies and hold them back, so nothing large is ever
//! allocated: the test is about reservations, not the resident size.

mod common;

use bytes::Bytes;
use common::{grpc_raw, http_post, sample, TestServer, TRACE_EXPORT};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;

fn request(spans: usize) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let (req, _, _) = traces_request(&Workload::default(), &mut Rng::new(3), spans, now);
    req.encode_to_vec()
}

/// Starts a POST declaring a body of `declared` bytes and sends only its first bytes.
async fn held_back(server: &TestServer, declared: u64) -> TcpStream {
    let mut s = TcpStream::connect(server.http).await.expect("connect");
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&[0x0a]).await.expect("write");
    s
}

async fn in_flight(server: &TestServer) -> f64 {
    let m = server.metrics().await;
    sample(&m, "otel_sli_memory_in_flight_bytes").unwrap_or(-1.0)
}

async fn until_in_flight(server: &TestServer, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight(server).await != want as f64 {
        assert!(
            Instant::now() < deadline,
            "in flight {} instead of {want}",
            in_flight(server).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_large_requests_is_refused_before_it_is_read() {
    // Budget 1 GiB: a pool of 512 MiB, far above this process's resident size, so only the
    // pool can refuse.
    let server = TestServer::start(
        "limits: { memory_mib: 1024 }\n\
         receivers: { otlp_http: { max_request_body_size: 400MiB }, otlp_grpc: { max_recv_msg_size: 128MiB } }",
    )
    .await;
    let m = server.metrics().await;
    assert_eq!(
        sample(&m, "otel_sli_memory_in_flight_limit_bytes"),
        Some((512 * MIB) as f64)
    );

    let a = held_back(&server, 200 * MIB).await;
    // Half a MiB left in the pool.
    let b = held_back(&server, 311 * MIB + MIB / 2).await;
    until_in_flight(&server, 511 * MIB + MIB / 2).await;

    // A third 200 MiB body does not fit: 503 with Retry-After, before any of it is read.
    let mut c = held_back(&server, 200 * MIB).await;
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut answer))
        .await
        .expect("answered at once")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );

    // A gRPC call reserves 1 MiB before its message is read: refused too.
    let body = Bytes::from(request(40));
    let refused =
        grpc_raw::<ExportTraceServiceResponse>(server.grpc, TRACE_EXPORT, body.clone(), false)
            .await
            .expect_err("no room");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(
        refused.message().contains("in flight"),
        "{}",
        refused.message()
    );
    // A small HTTP request (its declared length) still fits beside the two held back.
    assert_eq!(
        http_post(
            server.http,
            "/v1/traces",
            "application/x-protobuf",
            None,
            body.to_vec()
        )
        .await
        .status(),
        200
    );

    // A client that goes away mid-body gives its room back.
    drop(a);
    until_in_flight(&server, 311 * MIB + MIB / 2).await;
    let ok = grpc_raw::<ExportTraceServiceResponse>(server.grpc, TRACE_EXPORT, body, false).await;
    assert!(ok.is_ok(), "{ok:?}");

    let m = server.metrics().await;
    let refused = |t: &str| {
        sample(
            &m,
            &format!("otel_sli_requests_total{{transport=\"{t}\",signal=\"traces\",outcome=\"memory_limit\"}}"),
        )
    };
    assert_eq!(refused("http"), Some(1.0));
    assert_eq!(refused("grpc"), Some(1.0));
    assert_eq!(
        sample(&m, "otel_sli_accepted_spans_total{transport=\"grpc\"}"),
        Some(40.0)
    );
    assert_eq!(
        sample(&m, "otel_sli_accepted_spans_total{transport=\"http\"}"),
        Some(40.0)
    );
    drop((b, c));
    until_in_flight(&server, 0).await;
    server.stop().await;
}
