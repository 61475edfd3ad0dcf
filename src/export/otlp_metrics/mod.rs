//! OTLP metrics export of the derived metrics: per-feature request and error counters, the
//! latency histogram and the SLO gauges, sent every interval to an OTLP endpoint.
//!
//! - [`config`]: `exporters.otlp_metrics` validation and defaults.
//! - [`encode`]: the [`Encoder`], plain sync code turning a view into an
//!   `ExportMetricsServiceRequest` (start times, resets, deltas, histogram modes).
//! - [`exporter`]: the encoder in the shared [`crate::export::periodic`] loop, feeding a
//!   [`crate::export::delivery`] queue.
//!
//! It owns no connection: the [`crate::export::delivery::Upstream`] it is given does the
//! sending. It reads the pipeline only through views and the SLO statuses. Metric names,
//! attributes and temporality rules are documented in `docs/otlp-metrics.md`.

pub mod config;
pub mod encode;
pub mod exporter;

pub use config::{validate, OtlpMetricsConfig};
pub use encode::Encoder;
pub use exporter::OtlpMetricsExporter;
