//! Wiring and ordered shutdown.
//!
//! Start: pipeline (shard threads) → the read model, forwarders and metric exporters →
//! bind every listener (so a port conflict fails fast, before anything is served) → serve.
//!
//! Shutdown, in this order: `/readyz` answers 503 → stop the OTLP receivers (in-flight
//! requests finish, `RECEIVER_GRACE`) → forwarders deliver what they hold (or spool it) →
//! the pipeline refuses new requests, drains the shards and publishes their final
//! snapshots → the metric exporters send that final snapshot → write the SLO state file →
//! stop the admin server last, so the final state stays readable until the end.

use crate::api::{self, ApiState};
use crate::clock::SharedClock;
use crate::export::forward::Forwarders;
use crate::net::tls::ServerTls;
use crate::net::{Acceptor, ALPN_GRPC, ALPN_HTTP};
use crate::pipeline::Pipeline;
use crate::receiver::grpc::{Logs, Metrics, OtlpGrpc, Traces};
use crate::receiver::{http, Ingest};
use crate::settings::Config;
use crate::sli::classify::Classifier;
use crate::sli::series::SeriesSettings;
use crate::slo::persist;
use crate::slo::state::StateFile;
use crate::telemetry::{Listener, Telemetry};
use crate::ticker::Ticker;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long receivers get to finish in-flight requests on shutdown.
const RECEIVER_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the service could not start.
#[derive(Debug, Error)]
pub enum AppError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The classification rules could not be compiled.
    #[error("invalid SLI rules: {0}")]
    Rules(String),
    /// Threads could not be started.
    #[error("cannot start pipeline: {0}")]
    Pipeline(std::io::Error),
    /// A forwarder could not be set up.
    #[error("cannot set up forwarding: {0}")]
    Forward(#[from] crate::export::forward::StartError),
    /// An exporter's client could not be set up.
    #[error("cannot set up an exporter: {0}")]
    Exporter(#[from] crate::export::upstream::otlp_client::ClientError),
    /// A listener's TLS certificate or key could not be loaded.
    #[error("cannot set up TLS for the {what} listener: {source}")]
    Tls {
        /// Which listener.
        what: &'static str,
        /// The error.
        source: crate::net::tls::TlsError,
    },
    /// An exporter's spool could not be opened.
    #[error("cannot open an exporter's spool: {0}")]
    Spool(#[from] crate::export::delivery::spool::SpoolError),
}

/// A running instance.
pub struct Running {
    /// Bound OTLP/gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound OTLP/HTTP address.
    pub http_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The read model over the pipeline, as the admin server and the exporters read it.
    pub reader: crate::report::Reader,
    /// Self-telemetry.
    pub telemetry: Arc<Telemetry>,
    ready: Arc<AtomicBool>,
    stop_receivers: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    receivers: Vec<JoinHandle<()>>,
    admin: JoinHandle<()>,
    state: Option<StateFile>,
    saver: Option<JoinHandle<()>>,
    forwarders: Vec<crate::export::delivery::Running>,
    otlp_metrics: Option<crate::export::otlp_metrics::OtlpMetricsExporter>,
    remote_write: Option<crate::export::remote_write::RemoteWriteExporter>,
    derived: Vec<crate::export::otlp_metrics::OtlpMetricsExporter>,
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

fn local(l: &TcpListener, what: &'static str, addr: &str) -> Result<SocketAddr, AppError> {
    l.local_addr().map_err(|source| AppError::Bind {
        what,
        addr: addr.to_string(),
        source,
    })
}

/// The reloading TLS configuration of a listener, when it serves TLS.
fn server_tls(
    files: Option<&crate::net::tls::TlsFiles>,
    alpn: &'static [&'static [u8]],
    listener: Listener,
    telemetry: &Arc<Telemetry>,
) -> Result<Option<Arc<ServerTls>>, AppError> {
    let Some(files) = files else { return Ok(None) };
    ServerTls::new(files.clone(), alpn, listener, Arc::clone(telemetry))
        .map(|t| Some(Arc::new(t)))
        .map_err(|source| AppError::Tls {
            what: listener.name(),
            source,
        })
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Builds the pipeline from a validated configuration.
pub fn build_pipeline(config: &Config, clock: SharedClock) -> Result<Pipeline, AppError> {
    let classifier = Classifier::new(config.classify.clone()).map_err(AppError::Rules)?;
    let settings = Arc::new(
        SeriesSettings::new(
            config.layout,
            &config.buckets,
            config.max_series,
            2 + config.classify.dimensions.len(),
        )
        .with_expiry(config.series_expiry)
        .with_exemplars(config.exemplars)
        .with_start(clock.now_unix_nanos())
        .with_slos(
            config
                .slos
                .iter()
                .map(|d| (d.service.clone(), d.feature.clone())),
        ),
    );
    let slos = Arc::from(config.slos.clone());
    Pipeline::start(&config.pipeline, classifier, settings, slos, clock).map_err(AppError::Pipeline)
}

/// Starts everything and returns once all listeners are bound.
pub async fn start(config: &Config, clock: SharedClock) -> Result<Running, AppError> {
    // TLS clients (forwarders, exporters) use `ring`; make it the process default once.
    crate::export::upstream::otlp_client::install_crypto_provider();
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let pipeline = build_pipeline(config, clock)?;
    let state = restore_slo_state(config, &pipeline).await;
    let telemetry = Arc::new(Telemetry::default());
    let reader = crate::report::Reader::new(pipeline.clone(), config.thresholds);

    let l = &config.listeners;
    let Bound {
        grpc: (grpc_l, grpc_addr, grpc_tls),
        http: (http_l, http_addr, http_tls),
        admin: (admin_l, admin_addr, admin_tls),
    } = bind_listeners(config, &telemetry).await?;
    // Exporters start once the admin port is known: it is part of the default identity.
    let instance = crate::identity::detect(admin_addr.port());
    let Upstreams {
        forward,
        forwarders,
        otlp_metrics,
        derived,
        remote_write,
        queues: exporters,
    } = start_upstreams(config, &reader, &instance)?;
    let memory = memory_budget(config.memory, config.pipeline.retry_after);
    let ingest = Ingest {
        pipeline: pipeline.clone(),
        telemetry: Arc::clone(&telemetry),
        forward,
        memory: memory.clone(),
        auth: config.receivers_auth.clone(),
    };

    let (stop_receivers, stop_rx) = watch::channel(false);
    let (stop_admin, admin_rx) = watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));

    for tls in [&grpc_tls, &http_tls, &admin_tls].into_iter().flatten() {
        // Watched until the admin server, the last listener, stops.
        tokio::spawn(crate::net::tls::watch_files(
            Arc::clone(tls),
            admin_rx.clone(),
        ));
    }
    let (grpc_tls_on, http_tls_on, admin_tls_on) =
        (grpc_tls.is_some(), http_tls.is_some(), admin_tls.is_some());

    let accept = |tcp, tls, limits, listener, stop: &watch::Receiver<bool>| {
        let acceptor = Acceptor {
            tcp,
            tls,
            limits,
            listener,
        };
        acceptor.start(Arc::clone(&telemetry), stop.clone())
    };
    let grpc_conns = accept(grpc_l, grpc_tls, l.grpc_conn, Listener::OtlpGrpc, &stop_rx);
    let grpc_task = serve_grpc(config, ingest.clone(), grpc_conns, stop_rx.clone());
    let http_app = http::router(ingest, config.http.max_bytes, l.http_conn.read_timeout);
    let http_conns = accept(http_l, http_tls, l.http_conn, Listener::OtlpHttp, &stop_rx);
    let http_task = tokio::spawn(crate::net::serve::serve(
        http_conns,
        http_app,
        l.http_conn.read_timeout,
        stop_rx.clone(),
    ));

    let admin_app = admin_router(
        config,
        AdminParts {
            reader: reader.clone(),
            telemetry: Arc::clone(&telemetry),
            ready: Arc::clone(&ready),
            exporters,
            memory,
            otlp: (grpc_addr, http_addr),
        },
        stop_rx.clone(),
    );
    let admin_limits = crate::settings::listeners::ADMIN_LIMITS;
    let admin_conns = accept(admin_l, admin_tls, admin_limits, Listener::Admin, &admin_rx);
    let admin = tokio::spawn(crate::net::serve::serve(
        admin_conns,
        admin_app,
        admin_limits.read_timeout,
        admin_rx,
    ));

    let saver = spawn_saver(config, state.as_ref(), &pipeline, stop_rx);

    ready.store(true, Ordering::Release);
    tracing::info!(
        %grpc_addr,
        grpc_tls = grpc_tls_on,
        %http_addr,
        http_tls = http_tls_on,
        %admin_addr,
        admin_tls = admin_tls_on,
        shards = config.pipeline.shards,
        "otel-sli listening"
    );
    Ok(Running {
        grpc_addr,
        http_addr,
        admin_addr,
        pipeline,
        reader,
        telemetry,
        ready,
        stop_receivers,
        stop_admin,
        receivers: vec![grpc_task, http_task],
        admin,
        state,
        saver,
        forwarders,
        otlp_metrics,
        remote_write,
        derived,
    })
}

/// What the admin server reads, besides the configuration.
struct AdminParts {
    reader: crate::report::Reader,
    telemetry: Arc<Telemetry>,
    ready: Arc<AtomicBool>,
    exporters: Vec<crate::export::delivery::Queue>,
    memory: Option<Arc<crate::memory::MemoryBudget>>,
    /// The OTLP receivers' addresses (gRPC, HTTP), for `/api/v1/info`.
    otlp: (SocketAddr, SocketAddr),
}

/// The admin routes, with the history ring and the memory reading sampled in the
/// background until `stop`.
fn admin_router(config: &Config, p: AdminParts, stop: watch::Receiver<bool>) -> axum::Router {
    let history = Arc::new(std::sync::Mutex::new(api::history::History::new(
        config.max_series,
    )));
    tokio::spawn(api::history::sample_every(
        Arc::clone(&history),
        p.reader.pipeline().clone(),
        stop.clone(),
    ));
    if let Some(m) = &p.memory {
        tokio::spawn(sample_memory(Arc::clone(m), stop));
    }
    api::router(ApiState {
        reader: p.reader,
        telemetry: p.telemetry,
        ready: p.ready,
        canary: config.canary.clone(),
        exporters: Arc::new(p.exporters),
        memory: p.memory,
        auth: config.admin_auth.clone(),
        info: Arc::new(api::info::Info {
            otlp_grpc: p.otlp.0,
            otlp_http: p.otlp.1,
            receivers_auth: config.receivers_auth.is_some(),
            canary_attribute: config.canary.as_ref().map(|c| c.attribute.clone()),
            history_series_limit: config.max_series,
            trace_url: config.trace_url.clone(),
        }),
        history,
    })
}

/// A bound listener: the socket, its address, its TLS (if any).
type BoundListener = (TcpListener, SocketAddr, Option<Arc<ServerTls>>);

/// The three listeners, bound.
struct Bound {
    grpc: BoundListener,
    http: BoundListener,
    admin: BoundListener,
}

/// Loads each listener's TLS files and binds the three listeners, so that a bad
/// certificate or a port in use fails the start before anything is served.
async fn bind_listeners(config: &Config, telemetry: &Arc<Telemetry>) -> Result<Bound, AppError> {
    let l = &config.listeners;
    let grpc_tls = server_tls(
        l.grpc_tls.as_ref(),
        ALPN_GRPC,
        Listener::OtlpGrpc,
        telemetry,
    )?;
    let http_tls = server_tls(
        l.http_tls.as_ref(),
        ALPN_HTTP,
        Listener::OtlpHttp,
        telemetry,
    )?;
    let admin_tls = server_tls(l.admin_tls.as_ref(), ALPN_HTTP, Listener::Admin, telemetry)?;
    let grpc_l = bind("otlp grpc", &config.grpc.endpoint).await?;
    let http_l = bind("otlp http", &config.http.endpoint).await?;
    let admin_l = bind("admin", &config.admin).await?;
    let grpc_addr = local(&grpc_l, "otlp grpc", &config.grpc.endpoint)?;
    let http_addr = local(&http_l, "otlp http", &config.http.endpoint)?;
    let admin_addr = local(&admin_l, "admin", &config.admin)?;
    Ok(Bound {
        grpc: (grpc_l, grpc_addr, grpc_tls),
        http: (http_l, http_addr, http_tls),
        admin: (admin_l, admin_addr, admin_tls),
    })
}

/// Writes the SLO state file every `storage.interval` until `stop`, when there is one.
fn spawn_saver(
    config: &Config,
    state: Option<&StateFile>,
    pipeline: &Pipeline,
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let (file, engine) = (state?, pipeline.slo_engine()?);
    Some(tokio::spawn(save_every(
        config.storage.interval,
        Arc::clone(engine),
        file.clone(),
        stop,
    )))
}

/// Restores the SLO windows from the state file under `storage.directory`; the file to keep
/// writing, or `None` when there is no SLO, no directory, or the file is unusable.
async fn restore_slo_state(config: &Config, pipeline: &Pipeline) -> Option<StateFile> {
    match (&config.storage.directory, pipeline.slo_engine()) {
        (Some(dir), Some(engine)) => {
            let file = StateFile::new(dir);
            let (engine, f) = (Arc::clone(engine), file.clone());
            let now = pipeline.now_unix_nanos();
            let usable =
                tokio::task::spawn_blocking(move || persist::restore(&engine, &f, now)).await;
            usable.unwrap_or(false).then_some(file)
        }
        (None, Some(_)) => {
            tracing::info!("storage.directory is not set: SLO windows are kept in memory only and start empty after a restart");
            None
        }
        (_, None) => None,
    }
}

/// The forwarders and metric exporters, running.
struct Upstreams {
    forward: Forwarders,
    forwarders: Vec<crate::export::delivery::Running>,
    otlp_metrics: Option<crate::export::otlp_metrics::OtlpMetricsExporter>,
    derived: Vec<crate::export::otlp_metrics::OtlpMetricsExporter>,
    remote_write: Option<crate::export::remote_write::RemoteWriteExporter>,
    /// Every delivery queue, for self-telemetry.
    queues: Vec<crate::export::delivery::Queue>,
}

/// Starts the forwarders (`forward:`), their derived-metrics exporters
/// (`include_derived`) and the metric exporters (`exporters:`), reading `reader`.
/// `instance` is the identity the metric exporters give their series unless configured
/// otherwise (see [`crate::identity`]).
fn start_upstreams(
    config: &Config,
    reader: &crate::report::Reader,
    instance: &str,
) -> Result<Upstreams, AppError> {
    use crate::export::otlp_metrics::OtlpMetricsExporter;
    use crate::export::upstream::otlp_client::OtlpClient;
    let (forward, forwarders) = Forwarders::start(&config.forward)?;
    let mut queues: Vec<crate::export::delivery::Queue> = forward.queues();
    let otlp_metrics = match &config.otlp_metrics {
        Some(cfg) => {
            let client = OtlpClient::new(cfg.transport.client_config()?)?;
            let cfg = &cfg.clone().identified(instance);
            let e = OtlpMetricsExporter::start(cfg, reader.clone(), Arc::new(client))?;
            queues.push(e.queue().clone());
            Some(e)
        }
        None => None,
    };
    let mut derived = Vec::new();
    for (i, f) in config.forward.iter().enumerate() {
        if let Some(d) = &f.derived {
            let client = OtlpClient::new(d.transport.client_config()?)?;
            let name = format!("forward_{i}_derived");
            let d = &d.clone().identified(instance);
            let e = OtlpMetricsExporter::start_named(&name, d, reader.clone(), Arc::new(client))?;
            queues.push(e.queue().clone());
            derived.push(e);
        }
    }
    let remote_write = match &config.remote_write {
        Some(cfg) => {
            let cfg = &cfg.clone().identified(instance);
            let e = crate::export::remote_write::RemoteWriteExporter::start(cfg, reader.clone())?;
            queues.push(e.queue().clone());
            Some(e)
        }
        None => None,
    };
    Ok(Upstreams {
        forward,
        forwarders,
        otlp_metrics,
        derived,
        remote_write,
        queues,
    })
}

/// Serves OTLP/gRPC on the accepted connections `conns` until `stop`.
fn serve_grpc(
    config: &Config,
    ingest: Ingest,
    conns: tokio::sync::mpsc::Receiver<crate::net::conn::Conn>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let max = config.grpc.max_bytes;
    let server = tonic::transport::Server::builder()
        // A client that stalls mid-message is cut off (CANCELLED) instead of holding a stream.
        .timeout(config.listeners.grpc_request_timeout)
        .add_service(OtlpGrpc::<Traces>::new(ingest.clone(), max))
        .add_service(OtlpGrpc::<Metrics>::new(ingest.clone(), max))
        .add_service(OtlpGrpc::<Logs>::new(ingest, max));
    let incoming = futures_util::stream::unfold(conns, |mut conns| async move {
        conns
            .recv()
            .await
            .map(|c| (Ok::<_, std::io::Error>(c), conns))
    });
    tokio::spawn(async move {
        if let Err(e) = server
            .serve_with_incoming_shutdown(incoming, stopped(stop))
            .await
        {
            tracing::error!(error = %e, "OTLP/gRPC server failed");
        }
    })
}

/// The memory budget `limit` asks for; `None` for none.
fn memory_budget(
    limit: crate::settings::MemoryLimit,
    retry_after: std::time::Duration,
) -> Option<Arc<crate::memory::MemoryBudget>> {
    use crate::settings::MemoryLimit;
    let bytes = match limit {
        MemoryLimit::Off => return None,
        MemoryLimit::Bytes(b) => {
            tracing::info!(budget_mib = b >> 20, "memory budget from limits.memory_mib");
            b
        }
        MemoryLimit::FromCgroup => match crate::memory::cgroup_limit() {
            Some(limit) => {
                let b = crate::memory::default_budget(limit);
                tracing::info!(
                    budget_mib = b >> 20,
                    cgroup_limit_mib = limit >> 20,
                    "memory budget: 80% of the cgroup memory limit"
                );
                b
            }
            None => {
                tracing::info!("no memory budget: no cgroup memory limit and no limits.memory_mib");
                return None;
            }
        },
    };
    let budget = crate::memory::MemoryBudget::new(bytes, retry_after);
    if let Some(r) = crate::memory::resident_bytes() {
        budget.observe(r);
    }
    Some(Arc::new(budget))
}

/// Reads the resident set size into `budget` until the receivers stop, logging when
/// requests start and stop being refused.
async fn sample_memory(budget: Arc<crate::memory::MemoryBudget>, stop: watch::Receiver<bool>) {
    let mut ticker = Ticker::now(crate::memory::SAMPLE_EVERY, stop);
    let mut was_over = budget.over_soft_limit();
    let mut unreadable = false;
    while ticker.next().await {
        let Some(r) = crate::memory::resident_bytes() else {
            // Fail open: a budget that cannot be read must not refuse everything. Logged
            // once per failure streak; sampling goes on.
            if !unreadable {
                tracing::warn!("cannot read the resident set size; the memory budget is not enforced until it can be read again");
                unreadable = true;
            }
            budget.observe(0);
            was_over = false;
            continue;
        };
        unreadable = false;
        budget.observe(r);
        let over = budget.over_soft_limit();
        if over != was_over {
            if over {
                tracing::warn!(
                    resident_mib = r >> 20,
                    soft_limit_mib = budget.soft_limit_bytes() >> 20,
                    "over the memory budget's soft limit: refusing requests (retryable) until memory is back under it"
                );
            } else {
                tracing::info!(
                    resident_mib = r >> 20,
                    "back under the memory budget's soft limit: accepting requests"
                );
            }
            was_over = over;
        }
    }
}

/// Saves the SLO state every `interval` until the receivers stop (the final save follows
/// the last shard flush in [`Running::shutdown`]).
async fn save_every(
    interval: std::time::Duration,
    engine: Arc<std::sync::Mutex<crate::slo::engine::SloEngine>>,
    file: StateFile,
    stop: watch::Receiver<bool>,
) {
    let mut ticker = Ticker::after(interval, stop);
    while ticker.next().await {
        let (e, f) = (Arc::clone(&engine), file.clone());
        match tokio::task::spawn_blocking(move || persist::save(&e, &f)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the SLO state file"),
            Err(e) => tracing::error!(error = %e, "SLO state writer failed"),
        }
    }
}

impl Running {
    /// Ordered shutdown; see the module documentation.
    pub async fn shutdown(self) {
        // Not ready first, so load balancers and Kubernetes stop sending while we drain.
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_receivers.send(true);
        for t in self.receivers {
            // Receivers finish in-flight requests; a client that keeps a connection open
            // past the grace period does not hold the shutdown hostage.
            let abort = t.abort_handle();
            if tokio::time::timeout(RECEIVER_GRACE, t).await.is_err() {
                tracing::warn!("receiver did not stop within {RECEIVER_GRACE:?}; closing it");
                abort.abort();
            }
        }
        if let Some(s) = self.saver {
            let _ = s.await;
        }
        // Receivers are stopped: deliver what was accepted for the upstreams, within the
        // grace period; anything left is counted as dropped.
        let deadline = std::time::Instant::now() + RECEIVER_GRACE;
        for f in self.forwarders {
            f.shutdown(deadline).await;
        }
        let pipeline = self.pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || pipeline.shutdown()).await;
        // The shards' final snapshots are published: exporters send them once more.
        let deadline = std::time::Instant::now() + RECEIVER_GRACE;
        match (self.otlp_metrics, self.remote_write) {
            (Some(o), Some(r)) => {
                tokio::join!(o.shutdown(deadline), r.shutdown(deadline));
            }
            (Some(o), None) => o.shutdown(deadline).await,
            (None, Some(r)) => r.shutdown(deadline).await,
            (None, None) => {}
        }
        for e in self.derived {
            e.shutdown(deadline).await;
        }
        if let (Some(file), Some(engine)) = (self.state, self.pipeline.slo_engine()) {
            let engine = Arc::clone(engine);
            match tokio::task::spawn_blocking(move || persist::save(&engine, &file)).await {
                Ok(Ok(())) => tracing::info!("SLO state saved"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot write the SLO state file; SLO windows since the last save are lost")
                }
                Err(e) => tracing::error!(error = %e, "SLO state writer failed"),
            }
        }
        let _ = self.stop_admin.send(true);
        let abort = self.admin.abort_handle();
        if tokio::time::timeout(RECEIVER_GRACE, self.admin)
            .await
            .is_err()
        {
            abort.abort();
        }
        tracing::info!("otel-sli stopped");
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down in order.
pub async fn run(config: &Config, clock: SharedClock) -> Result<(), AppError> {
    let running = start(config, clock).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // SIGHUP would end the process by default. Reloading is not supported (listeners,
        // shards, queues and spools are fixed at start), so it is logged and ignored.
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::warn!(
                        "SIGHUP: configuration reload is not supported; restart otel-sli to apply a new configuration (check it first with `otel-sli validate`)"
                    );
                }
            });
        }
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
