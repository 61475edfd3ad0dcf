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

/// Loads the state file into `engine`, logging what was restored and what was not. Never
/// fails: an unusable file is set aside and the SLOs start empty.
pub fn restore(engine: &Mutex<SloEngine>, file: &StateFile) {
    match file.read() {
        Ok(None) => {
            tracing::info!(path = %file.path().display(), "no SLO state file yet; SLO windows start empty");
        }
        Ok(Some(state)) => {
            let r = lock(engine).restore(&state);
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
        Err(e) => tracing::error!(error = %e, "SLO state not restored"),
    }
}

/// Writes the engine's counts to the state file.
pub fn save(engine: &Mutex<SloEngine>, file: &StateFile) -> Result<(), StateError> {
    let state = lock(engine).state();
    file.write(&state)
}
