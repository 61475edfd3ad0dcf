//! An accepted connection, plain TCP or TLS over TCP, holding its place under the
//! listener's connection cap until it is dropped.

use crate::telemetry::{ConnStats, Listener, Telemetry};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The byte stream of a connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Open connections per client address, for `max_connections_per_client`.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// At most `max` connections from one address.
    pub fn new(max: usize) -> Self {
        PerClient {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more connection from `ip`; `false` (nothing counted) when it has `max`.
    pub fn try_open(&self, ip: IpAddr) -> bool {
        let mut open = self.counts();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return false;
        }
        *n += 1;
        true
    }

    fn close(&self, ip: IpAddr) {
        let mut open = self.counts();
        if let Some(n) = open.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Keeps a connection counted as open (its cap permit taken, and its client's count) while
/// it lives.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    client: Option<(Arc<PerClient>, IpAddr)>,
    telemetry: Arc<Telemetry>,
    listener: Listener,
}

impl Slot {
    /// Counts a connection open under `permit`, and under its client's count when `client`
    /// is given (already counted by [`PerClient::try_open`]).
    pub fn new(
        permit: OwnedSemaphorePermit,
        client: Option<(Arc<PerClient>, IpAddr)>,
        telemetry: Arc<Telemetry>,
        listener: Listener,
    ) -> Self {
        ConnStats::bump(&telemetry.listener(listener).open);
        Slot {
            _permit: permit,
            client,
            telemetry,
            listener,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((per_client, ip)) = &self.client {
            per_client.close(*ip);
        }
        self.telemetry
            .listener(self.listener)
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// An accepted connection.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    peer: Option<SocketAddr>,
    /// Until the client's first bytes arrive: when it gives up on them. A client that
    /// connects and sends nothing is closed then, instead of holding its slot for ever
    /// (HTTP servers wait for the first bytes before any of their own timers start).
    first_bytes: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes read while `first_bytes` is armed.
    first_seen: usize,
    _slot: Slot,
}

/// Bytes a client must send before its first-bytes deadline: the HTTP/2 preface (24) and a
/// frame header (9), so neither a stalled preface nor a lone byte holds a connection (an
/// HTTP/1 request head is longer than this too).
const FIRST_BYTES: usize = 33;

impl Conn {
    /// A connection over `stream` from `peer`, counted by `slot`, whose client must send its
    /// first bytes within `first_bytes_within`.
    pub fn new(
        stream: Stream,
        peer: Option<SocketAddr>,
        slot: Slot,
        first_bytes_within: std::time::Duration,
    ) -> Self {
        Conn {
            stream,
            peer,
            first_bytes: Some(Box::pin(tokio::time::sleep(first_bytes_within))),
            first_seen: 0,
            _slot: slot,
        }
    }
}

impl Conn {
    /// The plain TCP stream, for inspecting its socket options; `None` over TLS.
    #[cfg(test)]
    pub fn tcp(&self) -> Option<&TcpStream> {
        match &self.stream {
            Stream::Plain(s) => Some(s),
            Stream::Tls(_) => None,
        }
    }
}

/// What gRPC handlers can learn of the connection.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        PeerInfo {
            remote_addr: self.peer,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Some(deadline) = this.first_bytes.as_mut() {
            match &polled {
                Poll::Ready(Ok(())) => {
                    this.first_seen += buf.filled().len() - before;
                    if this.first_seen >= FIRST_BYTES {
                        this.first_bytes = None;
                    }
                }
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request bytes within the read timeout",
                    )));
                }
                _ => {}
            }
        }
        polled
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_counts_are_per_address_and_freed() {
        let p = PerClient::new(2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(p.try_open(a) && p.try_open(a));
        assert!(!p.try_open(a), "a third from the same address");
        assert!(p.try_open(b), "another address is not affected");
        p.close(a);
        assert!(p.try_open(a));
        p.close(b);
        assert!(
            !p.counts().contains_key(&b),
            "no entry left for a gone client"
        );
    }
}
