//! Request body decompression with a hard limit on the decompressed size, so a gzip bomb
//! costs at most the limit in memory and is refused as "too large".

use flate2::read::MultiGzDecoder;
use std::io::Read;
use thiserror::Error;

/// Why a body could not be decompressed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecompressError {
    /// The decompressed body exceeds the limit.
    #[error("decompressed body exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not valid gzip.
    #[error("body is not valid gzip: {0}")]
    Corrupt(String),
}

/// Decompresses a gzip body, refusing output larger than `limit` bytes.
pub fn gunzip_limited(body: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let mut reader = MultiGzDecoder::new(body).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn round_trip_within_limit() {
        assert_eq!(gunzip_limited(&gz(b"hello"), 5), Ok(b"hello".to_vec()));
    }

    #[test]
    fn bomb_is_refused_at_the_limit() {
        let bomb = gz(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10, "compresses well");
        assert_eq!(
            gunzip_limited(&bomb, 1 << 20),
            Err(DecompressError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(
            gunzip_limited(b"not gzip", 100),
            Err(DecompressError::Corrupt(_))
        ));
        let mut truncated = gz(b"hello world hello world");
        truncated.truncate(truncated.len() - 6);
        assert!(matches!(
            gunzip_limited(&truncated, 100),
            Err(DecompressError::Corrupt(_))
        ));
    }
}
