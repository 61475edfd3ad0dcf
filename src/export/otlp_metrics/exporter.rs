//! The [`Encoder`] in the shared [`periodic`](crate::export::periodic) loop: every
//! `interval` it encodes the latest report and submits the request to its own delivery
//! queue; at shutdown it exports once more and gives the queue the rest of the deadline.
//! Sending is the [`Upstream`]'s job (the OTLP client); this never waits on the network.

use super::config::OtlpMetricsConfig;
use super::encode::{data_points, Encoder};
use crate::export::delivery::{self, spool::SpoolError, DeliveryConfig, Payload, Queue, Upstream};
use crate::export::periodic::{Encode, Periodic};
use crate::report::Reader;
use crate::telemetry::Signal;
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::time::Instant;

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

impl Encode for Encoder {
    fn payloads(&mut self, reader: &Reader) -> Vec<Payload> {
        let report = reader.report();
        let now = reader.pipeline().now_unix_nanos();
        let req = self.encode(&report, now);
        let items = data_points(&req);
        if items == 0 {
            return Vec::new();
        }
        vec![Payload {
            body: Bytes::from(req.encode_to_vec()),
            items,
            signal: Some(Signal::Metrics),
            gzipped: false,
        }]
    }
}

/// A running OTLP metrics exporter.
#[derive(Debug)]
pub struct OtlpMetricsExporter {
    periodic: Periodic,
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
        let cfg = cfg.clone();
        let periodic = Periodic::start(reader, cfg.interval, delivery, move || {
            Box::new(Encoder::new(&cfg))
        });
        Ok(Self { periodic })
    }

    /// The delivery queue (its counters feed the self-metrics).
    pub fn queue(&self) -> &Queue {
        self.periodic.queue()
    }

    /// Encodes the latest view and queues it now, besides the regular ticks.
    pub async fn export_now(&self) {
        self.periodic.export_now().await;
    }

    /// Exports once more (call it after the pipeline's final flush), then lets the queue
    /// deliver until `deadline`; what is left is spooled or counted as dropped.
    pub async fn shutdown(self, deadline: Instant) {
        self.periodic.shutdown(deadline).await;
    }
}
