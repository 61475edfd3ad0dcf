//! OTLP metrics export of the derived metrics.
//!
//! - [`config`]: `exporters.otlp_metrics` validation and defaults.

pub mod config;

pub use config::{validate, OtlpMetricsConfig};
