//! Serving HTTP (1.1 and h2) on a listener's connections: a deadline on each request's
//! headers, so a client trickling a header holds a connection for at most that long, and
//! graceful shutdown: stop accepting, let requests in flight finish.

use super::conn::Conn;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Serves `app` on the connections of `conns` until `stop` turns true, then waits for the
/// requests in flight. `header_timeout` bounds the wait for each request's headers.
pub async fn serve(
    mut conns: mpsc::Receiver<Conn>,
    app: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let conn = tokio::select! {
            c = conns.recv() => match c {
                Some(c) => c,
                None => break,
            },
            () = async { let _ = stop.wait_for(|v| *v).await; } => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(conn), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(conns);
    graceful.shutdown().await;
}
