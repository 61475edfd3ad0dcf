//! The SLO state file: `slo-state.json` in `storage.directory`. One header line
//! (`otel-sli-slo-state <version> <crc32> <length>`) followed by the JSON body, so a torn or
//! edited file is detected before it is believed. Written to a temporary file, synced, then
//! renamed over the old one, so a crash leaves either the old or the new file, never half of
//! one. A file that cannot be used is renamed aside (`.corrupt-<unix seconds>`) and reported;
//! it never stops the process.

use super::engine::EngineState;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name inside `storage.directory`.
pub const FILE_NAME: &str = "slo-state.json";
const MAGIC: &str = "otel-sli-slo-state";
/// Version of the layout written.
pub const VERSION: u32 = 1;

/// Why the state could not be written or read.
#[derive(Debug, Error)]
pub enum StateError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a state file this version can use; it was moved to `aside`.
    #[error("{path} is unusable ({reason}); moved to {aside} and starting with empty SLO windows")]
    Unusable {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
        /// Where it was moved.
        aside: String,
    },
}

/// The state file in one directory.
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: PathBuf,
}

fn io(path: &Path, source: std::io::Error) -> StateError {
    StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl StateFile {
    /// The state file of `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Writes `state` atomically.
    pub fn write(&self, state: &EngineState) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(|e| io(&self.dir, e))?;
        let body = serde_json::to_vec(state).map_err(|e| io(&self.dir, e.into()))?;
        let header = format!(
            "{MAGIC} {VERSION} {:08x} {}\n",
            crc32fast::hash(&body),
            body.len()
        );
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(header.as_bytes())
            .and_then(|()| f.write_all(&body))
            .and_then(|()| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        drop(f);
        let path = self.path();
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads the state: `Ok(None)` when there is no file yet. A file that cannot be used
    /// is moved aside and reported as [`StateError::Unusable`].
    pub fn read(&self) -> Result<Option<EngineState>, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path, e)),
        };
        match parse(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(reason) => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let aside = self.dir.join(format!("{FILE_NAME}.corrupt-{secs}"));
                fs::rename(&path, &aside).map_err(|e| io(&path, e))?;
                Err(StateError::Unusable {
                    path: path.display().to_string(),
                    reason,
                    aside: aside.display().to_string(),
                })
            }
        }
    }
}

/// Parses the bytes of a state file (header line and body); the error says what is wrong.
/// Pure: [`StateFile::read`] uses it and moves an unusable file aside.
pub fn parse(bytes: &[u8]) -> Result<EngineState, String> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header is not text")?;
    let body = &bytes[nl + 1..];
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err("not an otel-sli SLO state file".into());
    }
    let version: u32 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or("no version")?;
    if version != VERSION {
        return Err(format!(
            "format version {version}; this build reads version {VERSION}"
        ));
    }
    let crc = parts
        .next()
        .and_then(|c| u32::from_str_radix(c, 16).ok())
        .ok_or("no checksum")?;
    let len: usize = parts
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no length")?;
    if body.len() != len {
        return Err(format!(
            "body is {} bytes, header says {len} (truncated?)",
            body.len()
        ));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("body does not parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::buckets::BucketsState;
    use crate::slo::engine::SloState;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("otel-sli-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn sample() -> EngineState {
        let mut s = EngineState::default();
        s.slos.insert(
            "a".into(),
            SloState {
                identity: "x".into(),
                buckets: BucketsState {
                    minutes: vec![(10, 5, 1)],
                    hours: vec![(0, 5, 1)],
                },
            },
        );
        s.late_spans = 3;
        s
    }

    #[test]
    fn round_trip_and_missing() {
        let d = dir("rt");
        let f = StateFile::new(&d);
        assert!(f.read().unwrap().is_none());
        f.write(&sample()).unwrap();
        f.write(&sample()).unwrap();
        assert_eq!(f.read().unwrap(), Some(sample()));
        assert!(!d.join(format!("{FILE_NAME}.tmp")).exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_files_are_set_aside() {
        let d = dir("corrupt");
        let f = StateFile::new(&d);
        f.write(&sample()).unwrap();
        let good = fs::read(f.path()).unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "header"),
            (good[..good.len() - 3].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    let last = b.len() - 2;
                    b[last] ^= 1;
                    b
                },
                "checksum",
            ),
            (
                String::from_utf8(good.clone())
                    .unwrap()
                    .replacen(" 1 ", " 99 ", 1)
                    .into_bytes(),
                "version 99",
            ),
        ];
        for (bytes, why) in cases {
            fs::write(f.path(), &bytes).unwrap();
            let err = f.read().unwrap_err().to_string();
            assert!(err.contains(why), "{why}: {err}");
            assert!(!f.path().exists(), "moved aside");
            assert!(f.read().unwrap().is_none(), "then starts empty");
            // Distinct names per second are not needed for the test; clear them.
            for e in fs::read_dir(&d).unwrap().flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let _ = fs::remove_dir_all(&d);
    }
}
