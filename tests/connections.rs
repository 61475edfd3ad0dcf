//! Connection limits on the listeners: the cap on open connections and the cap per client
//! address, which keeps one noisy client from taking every connection.

mod common;

use common::stat;
use common::TestServer;
use otel_sli::telemetry::Listener;
use std::time::{Duration, Instant};

/// Opens a TCP connection from `from` (any port) and reports whether the server closed it
/// within `wait`.
async fn closed_within_from(
    from: std::net::IpAddr,
    addr: std::net::SocketAddr,
    wait: Duration,
) -> (tokio::net::TcpStream, bool) {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind((from, 0).into()).expect("bind");
    let mut s = socket.connect(addr).await.expect("connect");
    let mut buf = [0u8; 64];
    let closed = match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => false,
    };
    (s, closed)
}

async fn closed_within(
    addr: std::net::SocketAddr,
    wait: Duration,
) -> (tokio::net::TcpStream, bool) {
    closed_within_from([127, 0, 0, 1].into(), addr, wait).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_connection_cap_closes_connections_beyond_it_and_frees_slots() {
    let server = TestServer::start("receivers: { otlp_grpc: { max_connections: 2 } }").await;
    let wait = Duration::from_millis(500);
    let (a, a_closed) = closed_within(server.grpc, wait).await;
    let (b, b_closed) = closed_within(server.grpc, wait).await;
    assert!(
        !a_closed && !b_closed,
        "connections within the cap stay open"
    );
    let (c, c_closed) = closed_within(server.grpc, wait).await;
    assert!(c_closed, "the third connection is closed at once");
    assert_eq!(stat(&server, Listener::OtlpGrpc, |c| &c.refused), 1);
    assert_eq!(stat(&server, Listener::OtlpGrpc, |c| &c.open), 2);
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat(&server, Listener::OtlpGrpc, |c| &c.open) != 1 {
        assert!(
            Instant::now() < deadline,
            "a closed connection must free its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (d, d_closed) = closed_within(server.grpc, wait).await;
    assert!(!d_closed, "a freed slot takes a new connection");
    drop((b, c, d));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_cannot_take_every_connection() {
    let server = TestServer::start(
        "receivers: { otlp_http: { max_connections: 10, max_connections_per_client: 2 } }",
    )
    .await;
    let wait = Duration::from_millis(300);
    let noisy: std::net::IpAddr = [127, 0, 0, 1].into();
    let quiet: std::net::IpAddr = [127, 0, 0, 2].into();
    let (a, a_closed) = closed_within_from(noisy, server.http, wait).await;
    let (b, b_closed) = closed_within_from(noisy, server.http, wait).await;
    assert!(!a_closed && !b_closed);
    let (c, c_closed) = closed_within_from(noisy, server.http, wait).await;
    assert!(
        c_closed,
        "a third connection from the same address is closed"
    );
    let (d, d_closed) = closed_within_from(quiet, server.http, wait).await;
    assert!(!d_closed, "another client is not affected");
    assert_eq!(
        stat(&server, Listener::OtlpHttp, |c| &c.refused_per_client),
        1
    );
    assert_eq!(stat(&server, Listener::OtlpHttp, |c| &c.refused), 0);
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            "otel_sli_connections_refused_total{listener=\"otlp_http\",reason=\"per_client\"}"
        ),
        Some(1.0)
    );
    drop((a, b, c, d));
    server.stop().await;
}

#[test]
fn the_per_client_cap_may_not_exceed_the_listener_cap() {
    let e = otel_sli::settings::parse(
        "receivers: { otlp_grpc: { max_connections: 10, max_connections_per_client: 11 } }",
        |_| None,
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        e.contains("receivers.otlp_grpc.max_connections_per_client"),
        "{e}"
    );
}

/// Idle connections, fresh or kept alive after a request, are closed once the header read
/// timeout passes without a new request: idle clients cannot pile up to the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_kept_alive_connections_are_closed_after_the_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(
        "receivers: { otlp_http: { read_timeout: 1s, max_connections_per_client: 0 }, otlp_grpc: { request_timeout: 1s } }",
    )
    .await;
    // Within a typical 1024 descriptor limit for both ends.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(
            tokio::net::TcpStream::connect(server.http)
                .await
                .expect("connect"),
        );
    }
    // A lone byte, and an HTTP/2 preface that stops half way, do not count as a start.
    let mut one = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    one.write_all(b"P").await.expect("write");
    let mut half = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    half.write_all(b"PRI * HTTP/2.0").await.expect("write");
    let mut grpc_half = tokio::net::TcpStream::connect(server.grpc)
        .await
        .expect("connect");
    grpc_half
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    let mut kept = tokio::net::TcpStream::connect(server.http)
        .await
        .expect("connect");
    let body = br#"{"resourceSpans":[]}"#;
    let req = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    kept.write_all(req.as_bytes()).await.expect("write");
    kept.write_all(body).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.expect("answer");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let open = stat(&server, Listener::OtlpHttp, |c| &c.open);
    assert_eq!(open, 403);

    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(&server, Listener::OtlpHttp, |c| &c.open) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} connections still open",
            stat(&server, Listener::OtlpHttp, |c| &c.open)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The server closed them: reads see the end.
    let n = tokio::time::timeout(Duration::from_secs(2), kept.read(&mut buf))
        .await
        .expect("closed, not hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "kept-alive connection closed by the server");
    let n = tokio::time::timeout(Duration::from_secs(2), idle[0].read(&mut buf))
        .await
        .expect("closed, not hanging")
        .unwrap_or(0);
    assert_eq!(n, 0);
    for s in [&mut one, &mut half] {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("closed, not hanging")
            .unwrap_or(0);
        assert_eq!(n, 0, "a connection that only started is closed");
    }
    // gRPC: the preface alone, then nothing: closed within request_timeout (1 s here).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(&server, Listener::OtlpGrpc, |c| &c.open) > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled gRPC connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(grpc_half);
    server.stop().await;
}
