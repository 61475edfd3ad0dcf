//! HTTP/1.1 connections driven by the task that sends on them (see [`super::driven`]): a
//! small pool of keep-alive connections to one upstream, each taken by one request at a
//! time, which writes the request and reads the answer itself.
//!
//! It owns connections and nothing else: what to send, and what an answer means, are the
//! caller's.

use super::driven::{drive, ConnError, Idle, IDLE_FOR};
use super::http::{https_connector, read_prefix, Alpn, Https, MAX_ANSWER_BYTES};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::time::Duration;

type Stream = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

/// An answer: its status, `Retry-After` header and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: http::StatusCode,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<http::HeaderValue>,
    /// The body.
    pub body: Bytes,
}

impl From<hyper::Error> for ConnError {
    fn from(e: hyper::Error) -> Self {
        ConnError::http(&e)
    }
}

struct Conn {
    send: SendRequest<Full<Bytes>>,
    conn: Connection<Stream, Full<Bytes>>,
}

impl Conn {
    fn usable(&self) -> bool {
        !self.send.is_closed()
    }
}

/// Keep-alive connections to one upstream.
pub struct H1Pool {
    connector: Https,
    idle: Idle<Conn>,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool").finish_non_exhaustive()
    }
}

impl H1Pool {
    /// A pool keeping up to `max_idle` idle connections for [`IDLE_FOR`], connecting
    /// within `connect_timeout` with the TLS settings `tls`.
    pub fn new(
        tls: &super::http::TlsSettings,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Result<Self, String> {
        Ok(Self {
            connector: https_connector(tls, connect_timeout, Alpn::Http1)?,
            idle: Idle::new(max_idle, IDLE_FOR),
        })
    }

    async fn connect(&self, uri: &http::Uri) -> Result<Conn, ConnError> {
        let mut connector = self.connector.clone();
        let stream = tower::Service::call(&mut connector, uri.clone())
            .await
            .map_err(|e| ConnError::Connect(super::http::error_chain(&*e)))?;
        let (send, conn) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|e| ConnError::Connect(super::http::error_chain(&e)))?;
        Ok(Conn { send, conn })
    }

    /// Sends `req` on an idle connection (or a new one) and reads the whole answer. A
    /// reused connection that turns out to be closed before the request went out is
    /// replaced once by a new one.
    pub async fn request(&self, mut req: http::Request<Full<Bytes>>) -> Result<Answer, ConnError> {
        let uri = req.uri().clone();
        // On the wire: origin-form target and a Host header, as HTTP/1.1 servers expect.
        if let Some(authority) = uri.authority() {
            if !req.headers().contains_key(http::header::HOST) {
                if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
                    req.headers_mut().insert(http::header::HOST, host);
                }
            }
        }
        let target = uri.path_and_query().map_or_else(
            || http::Uri::from_static("/"),
            |pq| {
                http::Uri::from_maybe_shared(Bytes::copy_from_slice(pq.as_str().as_bytes()))
                    .unwrap_or_else(|_| http::Uri::from_static("/"))
            },
        );
        *req.uri_mut() = target;
        if let Some(mut c) = self.idle.take(Conn::usable) {
            // A connection the upstream closed while idle fails at once, before anything
            // was written; the request is then sent on a new one.
            if let Ok(()) = drive(&mut c.conn, c.send.ready())
                .await
                .and_then(|r| r.map_err(ConnError::from))
            {
                return self.exchange(c, req).await;
            }
        }
        let c = self.connect(&uri).await?;
        self.exchange(c, req).await
    }

    async fn exchange(
        &self,
        mut c: Conn,
        req: http::Request<Full<Bytes>>,
    ) -> Result<Answer, ConnError> {
        let sent = c.send.send_request(req);
        let resp = drive(&mut c.conn, sent).await?.map_err(ConnError::from)?;
        let (parts, body) = resp.into_parts();
        let (body, complete) = drive(&mut c.conn, read_prefix(body, MAX_ANSWER_BYTES))
            .await?
            .map_err(ConnError::from)?;
        let keep = complete
            && !parts
                .headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if keep && c.usable() {
            self.idle.put(c, Conn::usable);
        }
        Ok(Answer {
            status: parts.status,
            retry_after: parts.headers.get(http::header::RETRY_AFTER).cloned(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// How the test server answers each request.
    #[derive(Clone, Copy, PartialEq)]
    enum Answers {
        /// `200`, body `ok`, `Retry-After: 3`.
        Ok,
        /// The same, then the connection is closed without saying so.
        OkThenClose,
        /// `200` with a body far over what an answer can be.
        Huge,
    }

    /// A server answering each request as `answers` says. Counts connections.
    async fn server(answers: Answers) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    let mut have = 0;
                    loop {
                        let Ok(n) = s.read(&mut buf[have..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        have += n;
                        // Bodies here are small: a request is complete once its body is in.
                        let text = String::from_utf8_lossy(&buf[..have]).to_string();
                        let Some(head_end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let len: usize = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().to_string())
                            })
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if have < head_end + 4 + len {
                            continue;
                        }
                        have = 0;
                        let expect = "POST /v1/logs HTTP/1.1\r\n";
                        let host = format!(
                            "\r\nhost: {}\r\n",
                            s.local_addr().map(|a| a.to_string()).unwrap_or_default()
                        );
                        if !text.starts_with(expect) || !text.to_ascii_lowercase().contains(&host) {
                            let _ = s
                                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            continue;
                        }
                        if answers == Answers::Huge {
                            let len = 4 * MAX_ANSWER_BYTES;
                            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n");
                            let _ = s.write_all(head.as_bytes()).await;
                            let _ = s.write_all(&vec![b'x'; len]).await;
                            continue;
                        }
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nretry-after: 3\r\n\r\nok",
                            )
                            .await;
                        if answers == Answers::OkThenClose {
                            return;
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    fn req(addr: std::net::SocketAddr) -> http::Request<Full<Bytes>> {
        http::Request::post(format!("http://{addr}/v1/logs"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .expect("request")
    }

    fn pool() -> H1Pool {
        H1Pool::new(&Default::default(), Duration::from_secs(2), 8).expect("pool")
    }

    #[tokio::test]
    async fn connections_are_reused() {
        let (addr, conns) = server(Answers::Ok).await;
        let pool = pool();
        for _ in 0..5 {
            let a = pool.request(req(addr)).await.expect("answer");
            assert_eq!(a.status, 200);
            assert_eq!(&a.body[..], b"ok");
            assert_eq!(
                a.retry_after.as_ref().map(|v| v.as_bytes()),
                Some(&b"3"[..])
            );
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced() {
        let (addr, conns) = server(Answers::OkThenClose).await;
        let pool = pool();
        for _ in 0..5 {
            let a = pool.request(req(addr)).await.expect("answer");
            assert_eq!(a.status, 200);
            // Let the close arrive, as it would between requests.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(conns.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn an_oversized_answer_is_cut_short_and_its_connection_not_reused() {
        let (addr, conns) = server(Answers::Huge).await;
        let pool = pool();
        for _ in 0..2 {
            let a = pool.request(req(addr)).await.expect("answer");
            assert_eq!(a.status, 200);
            assert_eq!(a.body.len(), MAX_ANSWER_BYTES);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = pool();
        assert!(matches!(
            pool.request(req(addr)).await,
            Err(ConnError::Connect(_))
        ));
    }
}
