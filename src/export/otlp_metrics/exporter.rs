//! The async shell around the [`Encoder`]: every `interval` it encodes the pipeline's
//! latest view and submits the request to its own delivery queue; at shutdown it exports
//! once more and gives the queue the rest of the deadline. Sending is the [`Upstream`]'s
//! job (the OTLP client); this task never waits on the network.

use super::config::OtlpMetricsConfig;
use super::encode::{data_points, Encoder};
use crate::export::delivery::{self, DeliveryConfig, Payload, Queue, Upstream};
use crate::export::spool::SpoolError;
use crate::report::Reader;
use crate::telemetry::Signal;
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The `exporter` name of the delivery counters.
pub const NAME: &str = "otlp_metrics";

/// Delivery settings: one worker, so points reach the upstream in the order they were
/// encoded (backends refuse out-of-order cumulative points); 100 requests waiting at most
/// (25 minutes at the default interval).
pub fn delivery_config() -> DeliveryConfig {
    DeliveryConfig {
        queue_capacity: 100,
        workers: 1,
        ..DeliveryConfig::default()
    }
}

/// A running OTLP metrics exporter.
#[derive(Debug)]
pub struct OtlpMetricsExporter {
    delivery: delivery::Running,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl OtlpMetricsExporter {
    /// Starts exporting what `reader` reports every `cfg.interval` to `upstream`, on the
    /// current runtime. The first export happens one interval after the start.
    /// Fails only when its spool cannot be opened.
    pub fn start(
        cfg: &OtlpMetricsConfig,
        reader: Reader,
        upstream: Arc<dyn Upstream>,
    ) -> Result<Self, SpoolError> {
        Self::start_named(NAME, cfg, reader, upstream)
    }

    /// Like [`OtlpMetricsExporter::start`], with `name` as the `exporter` label of its
    /// delivery counters (e.g. `forward_0_derived` for a forwarder's `include_derived`).
    pub fn start_named(
        name: &str,
        cfg: &OtlpMetricsConfig,
        reader: Reader,
        upstream: Arc<dyn Upstream>,
    ) -> Result<Self, SpoolError> {
        let delivery =
            delivery::spawn_spooled(name, upstream, delivery_config(), cfg.spool.clone())?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(
            Encoder::new(cfg),
            reader,
            delivery.queue.clone(),
            cfg.interval,
            stopped,
        ));
        Ok(Self {
            delivery,
            stop,
            task,
        })
    }

    /// The delivery queue (its counters feed the self-metrics).
    pub fn queue(&self) -> &Queue {
        &self.delivery.queue
    }

    /// Exports once more (call it after the pipeline's final flush), then lets the queue
    /// deliver until `deadline`; what is left is counted as dropped.
    pub async fn shutdown(self, deadline: Instant) {
        let Self {
            delivery,
            stop,
            mut task,
        } = self;
        let _ = stop.send(());
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, &mut task).await.is_err() {
            tracing::warn!(
                exporter = NAME,
                "the final export did not finish before the shutdown deadline"
            );
            task.abort();
            let _ = task.await;
        }
        delivery.shutdown(deadline).await;
    }
}

async fn run(
    mut encoder: Encoder,
    reader: Reader,
    queue: Queue,
    interval: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stopped => true,
        };
        encoder = match export(encoder, &reader, &queue).await {
            Some(e) => e,
            None => return,
        };
        if last {
            return;
        }
    }
}

/// Encodes the latest view on a blocking thread (large views take a while, and the SLO
/// evaluation takes the engine lock) and submits it. `None` if the encoding panicked.
async fn export(mut encoder: Encoder, reader: &Reader, queue: &Queue) -> Option<Encoder> {
    let r = reader.clone();
    let done = tokio::task::spawn_blocking(move || {
        let report = r.report();
        let now = r.pipeline().now_unix_nanos();
        let req = encoder.encode(&report, now);
        (encoder, req)
    })
    .await;
    let (encoder, req) = match done {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(exporter = NAME, error = %e, "encoding the metrics failed; the exporter stops");
            return None;
        }
    };
    let items = data_points(&req);
    if items > 0 {
        let accepted = queue.submit(Payload {
            body: Bytes::from(req.encode_to_vec()),
            items,
            signal: Some(Signal::Metrics),
            gzipped: false,
        });
        if !accepted {
            tracing::debug!(exporter = NAME, items, "queue full; this export is dropped");
        }
    }
    Some(encoder)
}
