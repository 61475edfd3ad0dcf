//! Prometheus remote write 1.0 of the derived metrics.

use crate::config::raw::RawRemoteWrite;
use crate::config::ConfigError;

/// Validated `exporters.prometheus_remote_write`.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteWriteConfig {}

/// Validates `exporters.prometheus_remote_write`.
pub fn validate(_raw: &RawRemoteWrite) -> Result<RemoteWriteConfig, ConfigError> {
    Err(crate::config::invalid_key(
        "exporters.prometheus_remote_write",
        "not available in this version",
    ))
}
