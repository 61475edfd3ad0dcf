//! OTLP metrics export of the derived metrics.

use crate::config::raw::RawOtlpMetrics;
use crate::config::ConfigError;

/// Validated `exporters.otlp_metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpMetricsConfig {}

/// Validates `exporters.otlp_metrics`.
pub fn validate(_raw: &RawOtlpMetrics) -> Result<OtlpMetricsConfig, ConfigError> {
    Err(crate::config::invalid_key(
        "exporters.otlp_metrics",
        "not available in this version",
    ))
}
