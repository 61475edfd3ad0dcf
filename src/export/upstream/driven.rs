//! What the upstream connection pools share ([`super::http1`] for OTLP/HTTP,
//! [`super::http2`] for OTLP/gRPC): connections driven by the task that sends on them, and a
//! list of idle ones kept for reuse.
//!
//! A pooled client hands every request to a connection task and gets the answer back from
//! it, which costs task wake-ups (and often a thread's) per request; for a forwarder sending
//! thousands of requests a second those wake-ups are a large part of its cost. Here the task
//! waiting for an answer polls the connection itself, so a request and its answer run on one
//! task from start to end.

use super::http::error_chain;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a request got no complete answer.
#[derive(Debug, Error)]
pub enum ConnError {
    /// No connection could be made.
    #[error("connecting: {0}")]
    Connect(String),
    /// The connection (or the request's stream) failed, or closed before the answer was
    /// complete.
    #[error("{0}")]
    Http(String),
}

impl ConnError {
    /// A failure of the connection or the exchange, with its sources.
    pub fn http(e: &dyn std::error::Error) -> Self {
        ConnError::Http(error_chain(e))
    }
}

/// Polls `fut` while driving `conn`'s I/O, until `fut` is done or the connection ends. The
/// connection is polled first each time, so it writes what `fut` queued and reads what
/// answers it before `fut` looks.
pub async fn drive<C, E, F>(conn: &mut C, fut: F) -> Result<F::Output, ConnError>
where
    C: Future<Output = Result<(), E>> + Unpin,
    E: std::error::Error,
    F: Future,
{
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        let ended = Pin::new(&mut *conn).poll(cx);
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match ended {
            Poll::Ready(Ok(())) => Poll::Ready(Err(ConnError::Http(
                "connection closed before the answer was complete".into(),
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(ConnError::http(&e))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// How long an idle upstream connection is kept for reuse, in both pools.
pub const IDLE_FOR: Duration = Duration::from_secs(60);

/// Idle connections, most recently used first out, each kept for a limited time.
#[derive(Debug)]
pub struct Idle<C> {
    conns: Mutex<Vec<(C, Instant)>>,
    max: usize,
    timeout: Duration,
}

impl<C> Idle<C> {
    /// Keeps up to `max` connections, each for `timeout` after its last use.
    pub fn new(max: usize, timeout: Duration) -> Self {
        Self {
            conns: Mutex::new(Vec::new()),
            max,
            timeout,
        }
    }

    /// The most recently used connection that has not timed out and is still `usable`;
    /// those that are not are closed (dropped) on the way.
    pub fn take(&self, usable: impl Fn(&C) -> bool) -> Option<C> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((c, since)) = conns.pop() {
            if since.elapsed() < self.timeout && usable(&c) {
                return Some(c);
            }
        }
        None
    }

    /// Keeps `c` for reuse unless the list is full. Connections that timed out or are no
    /// longer `usable` go now, rather than holding descriptors until they would be taken.
    pub fn put(&self, c: C, usable: impl Fn(&C) -> bool) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.timeout;
        conns.retain(|(c, since)| since.elapsed() < timeout && usable(c));
        if conns.len() < self.max {
            conns.push((c, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_connections_are_taken_newest_first_and_expire() {
        let idle = Idle::new(2, Duration::from_millis(50));
        idle.put(1, |_| true);
        idle.put(2, |_| true);
        idle.put(3, |_| true);
        assert_eq!(idle.take(|_| true), Some(2), "full: the third was not kept");
        assert_eq!(idle.take(|c| *c != 1), None, "an unusable one is dropped");
        idle.put(4, |_| true);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(idle.take(|_| true), None, "timed out");
    }

    #[tokio::test]
    async fn drive_ends_with_the_future_or_the_connection() {
        let mut open = std::future::pending::<Result<(), std::io::Error>>();
        assert_eq!(
            drive(&mut open, async { 7 }).await.ok(),
            Some(7),
            "the future completes while the connection stays open"
        );
        let mut closed = std::future::ready(Ok::<(), std::io::Error>(()));
        match drive(&mut closed, std::future::pending::<()>()).await {
            Err(ConnError::Http(m)) => assert!(m.contains("closed before the answer"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut failed = std::future::ready(Err::<(), _>(std::io::Error::other("reset")));
        match drive(&mut failed, std::future::pending::<()>()).await {
            Err(ConnError::Http(m)) => assert_eq!(m, "reset"),
            other => panic!("{other:?}"),
        }
    }
}
