//! Serving the OTLP/HTTP receiver's connections with limits a node agent needs against slow
//! or idle clients: a deadline on each request's headers (a client trickling a header
//! holds a connection for at most that long) and a cap on open connections (beyond it new
//! connections are closed at once, and counted). Graceful shutdown: stop accepting, let
//! requests in flight finish.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connection limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Time allowed for a request's headers to arrive (and, in the handler, its body).
    pub read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` turns true, then waits for the requests in
/// flight. Connections refused for the cap are counted in `telemetry`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    telemetry: Arc<crate::telemetry::Telemetry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "OTLP/HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|v| *v).await; } => break,
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            telemetry.connection_refused();
            drop(tcp);
            continue;
        };
        // Small responses on long-lived connections: do not let Nagle delay them.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(tcp), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
