//! Keeping SLO windows across restarts: restore from the state file at start, save
//! periodically and once more after the final shard flush. The engine lock is held only
//! to copy the counts; the file is written outside it.

use super::engine::SloEngine;
use super::state::{StateError, StateFile};
use std::sync::Mutex;

fn lock(engine: &Mutex<SloEngine>) -> std::sync::MutexGuard<'_, SloEngine> {
    engine
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Loads the state file into `engine` at time `now_nanos`, logging what was restored and
/// what was not. An unusable file is set aside and the SLOs start empty. Returns false
/// when the file could not be read or set aside (permissions, I/O errors): it may hold
/// good counts, so it must not be overwritten.
pub fn restore(engine: &Mutex<SloEngine>, file: &StateFile, now_nanos: u64) -> bool {
    match file.read() {
        Ok(None) => {
            tracing::info!(path = %file.path().display(), "no SLO state file yet; SLO windows start empty");
        }
        Ok(Some(state)) => {
            let r = lock(engine).restore(&state, now_nanos);
            tracing::info!(
                path = %file.path().display(),
                restored = r.restored.len(),
                "SLO state restored"
            );
            for name in &r.changed {
                tracing::warn!(slo = %name, "SLO definition changed since the state was saved; its window starts empty");
            }
            for name in &r.unknown {
                tracing::info!(slo = %name, "saved SLO is no longer configured; its counts are dropped");
            }
        }
        Err(e @ StateError::Unusable { .. }) => {
            tracing::error!(error = %e, "SLO state not restored")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the SLO state file; SLO windows start empty and the file is left alone (not saved over) until the next restart");
            return false;
        }
    }
    true
}

/// Writes the engine's counts to the state file.
pub fn save(engine: &Mutex<SloEngine>, file: &StateFile) -> Result<(), StateError> {
    let state = lock(engine).state();
    file.write(&state)
}
