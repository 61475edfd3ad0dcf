//! Raw pass-through of accepted requests to upstream OTLP endpoints.

use crate::config::raw::RawForward;
use crate::config::ConfigError;

/// Validated `forward[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardConfig {}

/// Validates `forward[i]`.
pub fn validate(_raw: &RawForward, at: &str) -> Result<ForwardConfig, ConfigError> {
    Err(crate::config::invalid_key(
        at,
        "not available in this version",
    ))
}
