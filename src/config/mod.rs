//! The configuration's leaf: `${env:…}` expansion ([`env`]), units ([`units`]), and the
//! error type every validator returns, which names the key path and the reason. It imports
//! nothing of otel-sli's own, so every component defines and validates its own section
//! with it (as serde structs beside its validator); the document's top level and the
//! validated whole are assembled by `settings`.

pub mod env;
pub mod units;

use thiserror::Error;

/// A configuration problem.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `${VAR}` expansion failed.
    #[error(transparent)]
    Expand(#[from] env::ExpandError),
    /// YAML syntax or a value of the wrong type / an unknown key.
    #[error("{path}: {reason}")]
    Parse {
        /// Key path, e.g. `sli.latency.significant_digits`, or `(document)`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A value that parses but is not acceptable.
    #[error("{path}: {reason}")]
    Invalid {
        /// Key path.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// An invalid value at `path`.
pub fn invalid_key(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        reason: reason.into(),
    }
}
