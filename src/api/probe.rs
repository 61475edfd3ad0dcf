//! `otel-sli healthcheck`: one HTTP GET of an admin URL (by default `/healthz`), success on a
//! 2xx answer. It is what a container `HEALTHCHECK` runs, in images that have no shell or
//! `curl`. `http://` or `https://` (an admin server with `admin.tls`), blocking, with one
//! deadline for the whole exchange.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http(s)://host:port/path`.
    #[error("{0:?} is not an http://host:port/path or https://host:port/path URL")]
    Url(String),
    /// The TLS settings are not usable.
    #[error("{0}: {1}")]
    Tls(String, String),
    /// No connection or no complete answer in time.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The answer is not HTTP.
    #[error("{0}: not an HTTP answer")]
    NotHttp(String),
    /// A status other than 2xx.
    #[error("{0}: HTTP {1}")]
    Status(String, u16),
}

/// How an `https://` probe checks the server.
#[derive(Clone, Debug, Default)]
pub struct ProbeTls {
    /// PEM CA certificates to trust instead of the bundled public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate (a liveness check of the local process).
    pub insecure_skip_verify: bool,
}

/// GETs `url` within `timeout`; `Ok` with the status line on a 2xx answer.
pub fn probe(url: &str, timeout: Duration, tls: &ProbeTls) -> Result<String, ProbeError> {
    let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(ProbeError::Url(url.to_string())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(ProbeError::Url(url.to_string()));
    }
    let io = |e| ProbeError::Io(url.to_string(), e);
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addrs: Vec<_> = authority.to_socket_addrs().map_err(io)?.collect();
    // Every address the name resolves to (`localhost` may be ::1 and 127.0.0.1), within
    // the one deadline.
    let mut conn = None;
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, left()) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = match (conn, last) {
        (Some(c), _) => c,
        (None, Some(e)) => return Err(io(e)),
        (None, None) => return Err(ProbeError::Url(url.to_string())),
    };
    tcp.set_write_timeout(Some(left())).map_err(io)?;
    tcp.set_read_timeout(Some(left())).map_err(io)?;
    if !https {
        return exchange(url, authority, path, tcp, &left);
    }
    let settings = crate::export::upstream::http::TlsSettings {
        ca_pem: tls.ca_pem.clone(),
        identity_pem: None,
        insecure_skip_verify: tls.insecure_skip_verify,
    };
    let config = crate::export::upstream::http::tls_config(&settings)
        .map_err(|e| ProbeError::Tls(url.to_string(), e))?;
    let host = match authority.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => authority,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| ProbeError::Tls(url.to_string(), e.to_string()))?;
    let session = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| ProbeError::Tls(url.to_string(), e.to_string()))?;
    exchange(
        url,
        authority,
        path,
        rustls::StreamOwned::new(session, tcp),
        &left,
    )
}

/// Sends the GET on `conn` and reads the status line.
fn exchange(
    url: &str,
    authority: &str,
    path: &str,
    mut conn: impl Read + Write + Timeouts,
    left: &dyn Fn() -> Duration,
) -> Result<String, ProbeError> {
    let io = |e| ProbeError::Io(url.to_string(), e);
    // One write: a server that answers after its first read sees the whole request.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: otel-sli-healthcheck\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all that matters; read until it is complete.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        conn.read_timeout(left()).map_err(io)?;
        let n = conn.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head
        .split(|&b| b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim_end().to_string())
        .unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::NotHttp(url.to_string()))?;
    if (200..300).contains(&status) {
        Ok(line)
    } else {
        Err(ProbeError::Status(url.to_string(), status))
    }
}

/// Sets the read deadline of the socket under a stream.
trait Timeouts {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()>;
}

impl Timeouts for TcpStream {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(d))
    }
}

impl Timeouts for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn read_timeout(&self, d: Duration) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that answers one connection with `answer`.
    fn answering(answer: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            // The whole request, so closing does not reset the connection under the
            // answer.
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(answer.as_bytes());
        });
        format!("http://{addr}/healthz")
    }

    #[test]
    fn a_2xx_answer_passes_and_others_fail_with_the_status() {
        let ok = probe(
            &answering("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n"),
            Duration::from_secs(5),
            &ProbeTls::default(),
        );
        assert_eq!(ok.unwrap(), "HTTP/1.1 200 OK");
        let down = probe(
            &answering("HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            Duration::from_secs(5),
            &ProbeTls::default(),
        );
        assert!(matches!(down, Err(ProbeError::Status(_, 503))), "{down:?}");
        let garbage = probe(
            &answering("SSH-2.0-x\r\n"),
            Duration::from_secs(5),
            &ProbeTls::default(),
        );
        assert!(
            matches!(garbage, Err(ProbeError::NotHttp(_))),
            "{garbage:?}"
        );
    }

    #[test]
    fn nothing_listening_and_bad_urls_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = probe(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_secs(2),
            &ProbeTls::default(),
        );
        assert!(matches!(refused, Err(ProbeError::Io(..))), "{refused:?}");
        for bad in ["ftp://127.0.0.1:9464/", "127.0.0.1:9464", "http:///healthz"] {
            assert!(matches!(
                probe(bad, Duration::from_secs(1), &ProbeTls::default()),
                Err(ProbeError::Url(_))
            ));
        }
    }

    #[test]
    fn a_silent_server_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", l.local_addr().unwrap());
        let started = Instant::now();
        let r = probe(&url, Duration::from_millis(300), &ProbeTls::default());
        assert!(matches!(r, Err(ProbeError::Io(..))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(l);
    }
}
