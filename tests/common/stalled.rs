//! Receivers in front of a pipeline whose shard workers are not running yet: its queues fill
//! on demand, so the receivers refuse with `UNAVAILABLE` + `RetryInfo` / 503 + `Retry-After`
//! until [`Stalled::resume`] starts the workers.

use otel_sli::pipeline::{Pipeline, Worker};
use otel_sli::receiver::grpc::{OtlpGrpc, Traces};
use otel_sli::receiver::{http, Ingest};
use std::net::SocketAddr;
use std::sync::Arc;

/// Receivers on 127.0.0.1 over a held pipeline.
pub struct Stalled {
    pub pipeline: Pipeline,
    pub telemetry: Arc<otel_sli::telemetry::Telemetry>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    workers: Vec<Worker>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Stalled {
    /// `yaml` configures the pipeline (for example one shard with `queue_capacity: 1`).
    pub async fn start(yaml: &str) -> Self {
        let mut c = super::config(yaml);
        c.max_series = 100;
        let classifier =
            otel_sli::sli::classify::Classifier::new(c.classify.clone()).expect("rules");
        let settings = Arc::new(otel_sli::sli::series::SeriesSettings::new(
            c.layout,
            &[0.001],
            100,
            2,
        ));
        let (pipeline, workers) = Pipeline::build(
            &c.pipeline,
            classifier,
            settings,
            Arc::from(Vec::new()),
            otel_sli::clock::system(),
        );
        let telemetry: Arc<otel_sli::telemetry::Telemetry> = Arc::default();
        let ingest = Ingest {
            pipeline: pipeline.clone(),
            telemetry: Arc::clone(&telemetry),
            forward: Default::default(),
            memory: None,
            auth: None,
        };
        let http_l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let http = http_l.local_addr().expect("addr");
        let app = http::router(ingest.clone(), 1 << 20, std::time::Duration::from_secs(30));
        tokio::spawn(async move { axum::serve(http_l, app).await });
        let grpc_l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let grpc = grpc_l.local_addr().expect("addr");
        let server = tonic::transport::Server::builder()
            .add_service(OtlpGrpc::<Traces>::new(ingest, 4 << 20));
        tokio::spawn(
            server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc_l)),
        );
        Self {
            pipeline,
            telemetry,
            grpc,
            http,
            workers,
            threads: Vec::new(),
        }
    }

    /// Starts the shard workers: the queues drain and requests are accepted again.
    pub fn resume(&mut self) {
        self.threads = std::mem::take(&mut self.workers)
            .into_iter()
            .map(|w| std::thread::spawn(move || w.run()))
            .collect();
    }

    /// Makes everything accepted so far visible in [`Pipeline::view`].
    pub async fn flush(&self) {
        let p = self.pipeline.clone();
        tokio::task::spawn_blocking(move || p.flush_now())
            .await
            .expect("flush");
    }

    /// Entry spans counted so far, over every series.
    pub async fn requests(&self) -> u64 {
        self.flush().await;
        self.pipeline
            .view()
            .series
            .iter()
            .map(|s| s.requests_total)
            .sum()
    }

    /// Stops the pipeline and joins its workers.
    pub async fn stop(self) {
        let p = self.pipeline.clone();
        tokio::task::spawn_blocking(move || p.shutdown())
            .await
            .expect("shutdown");
        for t in self.threads {
            t.join().expect("worker");
        }
    }
}
