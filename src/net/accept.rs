//! The accept loop every listener shares: a cap on open connections and one per client
//! address (beyond either a new connection is closed at once, and counted), the socket
//! options of accepted connections (`TCP_NODELAY`, keepalive, user timeout), and the TLS
//! handshake, with a deadline, off the accept loop so a slow handshake delays nobody else.
//! Connections come out of a channel ready for HTTP.

use super::conn::{Conn, PerClient, Slot, Stream};
use super::tls::ServerTls;
use crate::telemetry::{ConnStats, Listener, Telemetry};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

/// Idle time of a connection before the first TCP keepalive probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// Time between keepalive probes while the peer does not answer.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Longest the peer may go unheard, while sent data or keepalive probes wait for its
/// answer, before the kernel drops the connection (Linux).
pub const USER_TIMEOUT: Duration = Duration::from_secs(120);

/// Sets the options of an accepted connection.
///
/// - `TCP_NODELAY`: small responses on long-lived connections are not held back by Nagle.
/// - Keepalive and a user timeout: a client that vanished without closing its connection
///   (its node lost power, a partition, a NAT that forgot it) is found within about
///   [`USER_TIMEOUT`] and its connection closed, instead of holding its place under the
///   connection caps for ever. Nothing else would notice: an idle HTTP/2 connection sends
///   nothing.
pub fn tune(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    let sock = socket2::SockRef::from(tcp);
    sock.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL),
    )?;
    // Elsewhere the system's keepalive probe count decides when the connection is dropped.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    sock.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    Ok(())
}

/// Limits of one listener's connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Time allowed for a TLS handshake, and for a request's headers to arrive (and, in the
    /// OTLP/HTTP handler, its body).
    pub read_timeout: Duration,
    /// Open connections at most, TLS handshakes in progress included.
    pub max_connections: usize,
    /// Open connections at most from one client address; `None`: no such limit.
    pub max_connections_per_client: Option<usize>,
}

/// A listener ready to accept.
#[derive(Debug)]
pub struct Acceptor {
    /// The bound socket.
    pub tcp: TcpListener,
    /// TLS, when the listener serves it.
    pub tls: Option<Arc<ServerTls>>,
    /// Connection limits.
    pub limits: ConnLimits,
    /// Which listener, for self-telemetry and logs.
    pub listener: Listener,
}

impl Acceptor {
    /// Accepts until `stop` turns true; connections arrive on the returned channel, which
    /// closes when accepting has stopped.
    pub fn start(
        self,
        telemetry: Arc<Telemetry>,
        stop: watch::Receiver<bool>,
    ) -> mpsc::Receiver<Conn> {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(self.run(telemetry, tx, stop));
        rx
    }

    async fn run(
        self,
        telemetry: Arc<Telemetry>,
        tx: mpsc::Sender<Conn>,
        mut stop: watch::Receiver<bool>,
    ) {
        let permits = Arc::new(Semaphore::new(self.limits.max_connections));
        let per_client = self
            .limits
            .max_connections_per_client
            .map(|n| Arc::new(PerClient::new(n)));
        let stats = || telemetry.listener(self.listener);
        loop {
            let (tcp, peer) = tokio::select! {
                // Stopping wins over a connection waiting to be accepted.
                biased;
                () = async { let _ = stop.wait_for(|v| *v).await; } => break,
                r = self.tcp.accept() => match r {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = self.listener.name(), error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                ConnStats::bump(&stats().refused);
                drop(tcp);
                continue;
            };
            let client = match &per_client {
                Some(p) if !p.try_open(peer.ip()) => {
                    ConnStats::bump(&stats().refused_per_client);
                    drop(tcp);
                    continue;
                }
                Some(p) => Some((Arc::clone(p), peer.ip())),
                None => None,
            };
            let slot = Slot::new(permit, client, Arc::clone(&telemetry), self.listener);
            if let Err(e) = tune(&tcp) {
                tracing::debug!(error = %e, "cannot set the connection's socket options");
            }
            match &self.tls {
                None => {
                    if tx
                        .send(Conn::new(
                            Stream::Plain(tcp),
                            Some(peer),
                            slot,
                            self.limits.read_timeout,
                        ))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                    let (tx, telemetry) = (tx.clone(), Arc::clone(&telemetry));
                    let (deadline, listener) = (self.limits.read_timeout, self.listener);
                    tokio::spawn(async move {
                        match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => {
                                let conn =
                                    Conn::new(Stream::Tls(Box::new(s)), Some(peer), slot, deadline);
                                let _ = tx.send(conn).await;
                            }
                            Ok(Err(e)) => {
                                ConnStats::bump(&telemetry.listener(listener).handshake_failures);
                                tracing::debug!(listener = listener.name(), %peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                ConnStats::bump(&telemetry.listener(listener).handshake_failures);
                                tracing::debug!(listener = listener.name(), %peer, "TLS handshake timed out");
                            }
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_get_nodelay_keepalive_and_a_user_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let sock = socket2::SockRef::from(&accepted);
        assert!(!sock.tcp_nodelay().expect("nodelay"), "off before tuning");
        assert!(!sock.keepalive().expect("keepalive"), "off before tuning");
        tune(&accepted).expect("tune");
        assert!(sock.tcp_nodelay().expect("nodelay"));
        assert!(sock.keepalive().expect("keepalive"));
        assert_eq!(sock.tcp_keepalive_time().expect("time"), KEEPALIVE_IDLE);
        assert_eq!(
            sock.tcp_keepalive_interval().expect("interval"),
            KEEPALIVE_INTERVAL
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            sock.tcp_user_timeout().expect("user timeout"),
            Some(USER_TIMEOUT)
        );
    }

    #[tokio::test]
    async fn the_accept_loop_tunes_the_connections_it_hands_out() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("address");
        let acceptor = Acceptor {
            tcp,
            tls: None,
            limits: ConnLimits {
                read_timeout: Duration::from_secs(5),
                max_connections: 4,
                max_connections_per_client: None,
            },
            listener: Listener::OtlpGrpc,
        };
        let (_stop, stop_rx) = watch::channel(false);
        let mut conns = acceptor.start(Arc::new(Telemetry::default()), stop_rx);
        let _client = TcpStream::connect(addr).await.expect("connect");
        let conn = tokio::time::timeout(Duration::from_secs(5), conns.recv())
            .await
            .expect("a connection within 5 s")
            .expect("the accept loop is running");
        let tcp = conn.tcp().expect("a plain TCP connection");
        let sock = socket2::SockRef::from(tcp);
        assert!(sock.tcp_nodelay().expect("nodelay"));
        assert!(sock.keepalive().expect("keepalive"));
        assert_eq!(sock.tcp_keepalive_time().expect("time"), KEEPALIVE_IDLE);
    }
}
