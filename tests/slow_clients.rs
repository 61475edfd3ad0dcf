//! Slow and idle clients on the OTLP/HTTP receiver: a client trickling its headers loses
//! its connection after `read_timeout`, one stalling its body gets 408, and beyond
//! `max_connections` new connections are closed at once and counted, while connections
//! within the limit keep working; a gRPC call stalling mid-message is cancelled after
//! `request_timeout`.

mod common;

use common::{sample, TestServer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Reads until the server answers or closes (a reset counts as closing); returns what it
/// sent and how long it took.
fn wait_for_server(mut c: TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    c.set_read_timeout(Some(limit)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            // Closed with unread data in its receive buffer: the kernel resets instead.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer or close within {limit:?}: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).expect("connect")
}

async fn post_ok(server: &TestServer) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/v1/traces", server.http))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("reachable")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off_and_a_stalled_body_gets_408() {
    let server = TestServer::start("receivers:\n  otlp_http: {read_timeout: 1s}\n").await;
    let addr = server.http;
    let (headers, body) = tokio::task::spawn_blocking(move || {
        let mut c = connect(addr);
        c.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        let headers = wait_for_server(c, Duration::from_secs(10));
        let mut c = connect(addr);
        c.write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"resourceSpans\"",
        )
        .expect("write");
        let body = wait_for_server(c, Duration::from_secs(10));
        (headers, body)
    })
    .await
    .expect("client");
    // The trickled headers: closed after about the timeout (hyper may say 408 first).
    assert!(
        headers.0.is_empty() || headers.0.starts_with("HTTP/1.1 408"),
        "{headers:?}"
    );
    assert!(headers.1 >= Duration::from_millis(900), "{headers:?}");
    assert!(headers.1 < Duration::from_secs(5), "{headers:?}");
    // The stalled body: 408 after about the timeout, counted.
    assert!(body.0.starts_with("HTTP/1.1 408"), "{body:?}");
    assert!(body.1 >= Duration::from_millis(900), "{body:?}");
    let metrics = server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "otel_sli_requests_total{transport=\"http\",signal=\"traces\",outcome=\"timeout\"}"
        ),
        Some(1.0)
    );
    // Clients that send in time are unaffected.
    assert_eq!(post_ok(&server).await, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_and_counted() {
    let server =
        TestServer::start("receivers:\n  otlp_http: {max_connections: 2, read_timeout: 30s}\n")
            .await;
    let addr = server.http;
    // Two idle connections take the two places.
    let held: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (third, took) = tokio::task::spawn_blocking(move || {
        let mut c = connect(addr);
        // The server closes it without reading; a write may or may not fail first.
        let _ = c.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}");
        wait_for_server(c, Duration::from_secs(10))
    })
    .await
    .expect("client");
    assert!(
        third.is_empty(),
        "the third connection was served: {third:?}"
    );
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    // A held connection still works.
    let mut c = held.into_iter().next().expect("held");
    let answer = tokio::task::spawn_blocking(move || {
        c.write_all(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        )
        .expect("write");
        let (head, _) = wait_for_server(c, Duration::from_secs(10));
        head
    })
    .await
    .expect("client");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The first held connection is gone now; a new client gets its place.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(post_ok(&server).await, 200);
    let metrics = server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "otel_sli_connections_refused_total{listener=\"otlp_http\",reason=\"max_connections\"}"
        ),
        Some(1.0)
    );
    server.stop().await;
}

/// An HTTP/2 client that sends an Export call's headers and the start of its message, then
/// stalls: the call is cut off with `CANCELLED` after `request_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_stalling_mid_message_is_cancelled() {
    use http_body_util::{BodyExt, StreamBody};
    let server = TestServer::start("receivers:\n  otlp_grpc: {request_timeout: 1s}\n").await;
    let tcp = tokio::net::TcpStream::connect(server.grpc)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    // A gRPC frame header announcing 1000 bytes, 10 of them, then nothing more.
    let mut start = vec![0u8, 0, 0, 0x03, 0xe8];
    start.extend_from_slice(&[0x0a; 10]);
    let body = StreamBody::new(
        futures_util::stream::iter([Ok::<_, std::convert::Infallible>(http_body::Frame::data(
            bytes::Bytes::from(start),
        ))])
        .chain(futures_util::stream::pending()),
    );
    use futures_util::StreamExt as _;
    let req = http::Request::post(format!("http://{}{}", server.grpc, common::TRACE_EXPORT))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("answered within 10 s")
        .expect("response");
    let headers = resp.headers().clone();
    let trailers = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("body within 10 s")
        .ok()
        .and_then(|c| c.trailers().cloned());
    let status = headers
        .get("grpc-status")
        .or_else(|| trailers.as_ref().and_then(|t| t.get("grpc-status")))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(
        status.as_deref(),
        Some("1"),
        "CANCELLED expected: {headers:?} {trailers:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    server.stop().await;
}
