//! HTTP/2 connections driven by the task that sends on them (see [`super::driven`]), for
//! gRPC upstreams: a pool of connections to one upstream, each carrying one call at a time,
//! whose I/O the calling task drives while it waits for the answer. There is no connection
//! task, no hand-over of the request or the answer, and no task per request body.
//!
//! Connections write through [`super::coalesce`], which gathers a batch of HTTP/2 frames into
//! one send; that relies on the connection being polled (and reading) whenever its task is
//! woken, which [`super::driven::drive`] does.
//!
//! It owns connections and nothing else: what to send, and what an answer means, are the
//! caller's.

use super::coalesce::Coalesce;
use super::driven::{drive, ConnError, Idle, IDLE_FOR};
use super::http::{error_chain, Http2Connector, MAX_ANSWER_BYTES};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;

type Io = TokioIo<hyper_rustls::MaybeHttpsStream<Coalesce<TokioIo<tokio::net::TcpStream>>>>;

/// An answer: its status, headers and trailers (the body is read and discarded).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Response headers (a gRPC trailers-only answer has its status here).
    pub headers: http::HeaderMap,
    /// Trailers, if the answer had any.
    pub trailers: Option<http::HeaderMap>,
}

impl From<h2::Error> for ConnError {
    fn from(e: h2::Error) -> Self {
        ConnError::http(&e)
    }
}

struct Conn {
    send: h2::client::SendRequest<Bytes>,
    conn: h2::client::Connection<Io, Bytes>,
}

/// HTTP/2 connections to one upstream.
pub struct H2Pool {
    connector: Http2Connector,
    idle: Idle<Conn>,
}

impl std::fmt::Debug for H2Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Pool").finish_non_exhaustive()
    }
}

impl H2Pool {
    /// A pool keeping up to `max_idle` idle connections for [`IDLE_FOR`], connecting
    /// within `connect_timeout` with the TLS settings `tls` (ALPN `h2`).
    pub fn new(
        tls: &super::http::TlsSettings,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, String> {
        Ok(Self {
            connector: super::http::http2_connector(tls, connect_timeout)?,
            idle: Idle::new(max_idle, IDLE_FOR),
        })
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Conn, ConnError> {
        let mut connector = self.connector.clone();
        let stream = tower::Service::call(&mut connector, uri.clone())
            .await
            .map_err(|e| ConnError::Connect(error_chain(&*e)))?;
        let (send, conn) = h2::client::Builder::new()
            .enable_push(false)
            // Room for answers; requests are limited by the upstream's windows.
            .initial_window_size(1 << 20)
            .initial_connection_window_size(4 << 20)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ConnError::Connect(error_chain(&e)))?;
        Ok(Conn { send, conn })
    }

    /// Sends `head` (an absolute URI) with `body` as its DATA, the parts one after the
    /// other without copying them, and reads the whole answer. An idle connection that
    /// turns out to be closed or going away before the call starts is replaced once by a
    /// new one.
    pub async fn request(
        &self,
        mut head: http::Request<()>,
        body: [Bytes; 2],
    ) -> Result<Answer, ConnError> {
        *head.version_mut() = http::Version::HTTP_2;
        strip_connection_headers(head.headers_mut());
        let mut ready = None;
        if let Some(mut c) = self.idle.take(|_| true) {
            // Reading what arrived while it was idle shows a close or a GOAWAY now.
            if Self::ready(&mut c).await.is_ok() {
                ready = Some(c);
            }
        }
        let mut c = match ready {
            Some(c) => c,
            None => {
                let mut c = self.connect(head.uri()).await?;
                Self::ready(&mut c).await?;
                c
            }
        };
        let answer = Self::call(&mut c, head, body).await?;
        self.idle.put(c, |_| true);
        Ok(answer)
    }

    /// Waits until `c` can open a stream.
    async fn ready(c: &mut Conn) -> Result<(), ConnError> {
        let Conn { send, conn } = c;
        Ok(drive(conn, std::future::poll_fn(|cx| send.poll_ready(cx))).await??)
    }

    async fn call(
        c: &mut Conn,
        head: http::Request<()>,
        body: [Bytes; 2],
    ) -> Result<Answer, ConnError> {
        let Conn { send, conn } = c;
        let (answer, mut stream) = send.send_request(head, false)?;
        let [first, second] = body;
        stream.send_data(first, false)?;
        stream.send_data(second, true)?;
        let resp = drive(conn, answer).await??;
        let (parts, mut recv) = resp.into_parts();
        let trailers = drive(conn, async {
            let mut read = 0usize;
            while let Some(chunk) = recv.data().await {
                let chunk = chunk?;
                read += chunk.len();
                if read > MAX_ANSWER_BYTES {
                    return Err(ConnError::Http(format!(
                        "answer body over {MAX_ANSWER_BYTES} bytes"
                    )));
                }
                // Read and done with: the upstream may send more.
                let _ = recv.flow_control().release_capacity(chunk.len());
            }
            Ok(recv.trailers().await?)
        })
        .await??;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            trailers,
        })
    }
}

/// Removes the headers HTTP/2 forbids (RFC 9113, 8.2.2), which configured headers could
/// name: h2 refuses a request carrying them.
fn strip_connection_headers(headers: &mut http::HeaderMap) {
    for name in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::HeaderName::from_static("keep-alive"),
        http::HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers
        .get(http::header::TE)
        .is_some_and(|v| v.as_bytes() != b"trailers")
    {
        headers.remove(http::header::TE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// How the test upstream answers each call.
    #[derive(Clone, Copy)]
    enum Answers {
        /// `200`, one DATA frame, trailers `grpc-status: 0`.
        Ok,
        /// The same, then a GOAWAY: the connection ends after each call.
        OkThenGoAway,
        /// `200` with a body far over what an answer can be.
        Huge,
    }

    /// Connections accepted, and each call's path and body.
    #[derive(Default)]
    struct Seen {
        conns: AtomicUsize,
        calls: Mutex<Vec<(String, Vec<u8>)>>,
    }

    async fn upstream(answers: Answers) -> (std::net::SocketAddr, Arc<Seen>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let seen = Arc::new(Seen::default());
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                s.conns.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        let path = req.uri().path().to_string();
                        let mut body = req.into_body();
                        let mut got = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            got.extend_from_slice(&chunk);
                        }
                        s.calls.lock().expect("calls").push((path, got));
                        let head = http::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(())
                            .expect("head");
                        let Ok(mut out) = respond.send_response(head, false) else {
                            return;
                        };
                        let data = match answers {
                            Answers::Huge => Bytes::from(vec![0u8; 4 * MAX_ANSWER_BYTES]),
                            _ => Bytes::from_static(&[0, 0, 0, 0, 0]),
                        };
                        let _ = out.send_data(data, false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = out.send_trailers(trailers);
                        if let Answers::OkThenGoAway = answers {
                            conn.graceful_shutdown();
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn head(addr: std::net::SocketAddr) -> http::Request<()> {
        http::Request::post(format!("http://{addr}/svc/Export"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            // Forbidden in HTTP/2; a configured header could name it.
            .header("connection", "keep-alive")
            .body(())
            .expect("request")
    }

    fn body() -> [Bytes; 2] {
        [
            Bytes::from_static(&[0, 0, 0, 0, 3]),
            Bytes::from_static(b"abc"),
        ]
    }

    fn pool() -> H2Pool {
        H2Pool::new(&Default::default(), Duration::from_secs(2), 8).expect("pool")
    }

    #[tokio::test]
    async fn calls_reuse_one_connection_and_read_the_trailers() {
        let (addr, seen) = upstream(Answers::Ok).await;
        let pool = pool();
        for _ in 0..5 {
            let a = pool.request(head(addr), body()).await.expect("answer");
            assert_eq!(a.status, 200);
            let status = a.trailers.as_ref().and_then(|t| t.get("grpc-status"));
            assert_eq!(status.map(|v| v.as_bytes()), Some(&b"0"[..]));
        }
        assert_eq!(seen.conns.load(Ordering::SeqCst), 1);
        let calls = seen.calls.lock().expect("calls");
        assert_eq!(calls.len(), 5);
        for (path, got) in calls.iter() {
            assert_eq!(path, "/svc/Export");
            assert_eq!(got, &[0, 0, 0, 0, 3, b'a', b'b', b'c']);
        }
    }

    #[tokio::test]
    async fn a_connection_going_away_while_idle_is_replaced() {
        let (addr, seen) = upstream(Answers::OkThenGoAway).await;
        let pool = pool();
        for _ in 0..5 {
            let a = pool.request(head(addr), body()).await.expect("answer");
            assert_eq!(a.status, 200);
            // Let the GOAWAY arrive, as it would between calls.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen.conns.load(Ordering::SeqCst), 5);
        assert_eq!(seen.calls.lock().expect("calls").len(), 5);
    }

    #[tokio::test]
    async fn an_oversized_answer_fails_and_its_connection_is_not_reused() {
        let (addr, seen) = upstream(Answers::Huge).await;
        let pool = pool();
        for _ in 0..2 {
            match pool.request(head(addr), body()).await {
                Err(ConnError::Http(reason)) => assert!(reason.contains("answer body"), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        assert!(matches!(
            pool().request(head(addr), body()).await,
            Err(ConnError::Connect(_))
        ));
    }
}
