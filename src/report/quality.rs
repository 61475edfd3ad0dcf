//! Whether data can be trusted: trace coverage, silent services, services with metrics but
//! no traces, and whether a gap is still active. Plain functions of snapshot values, used by
//! the other parts of the read model.

use super::{Report, Thresholds};
use crate::completeness::{GapCounts, KindCounts};
use crate::pipeline::snapshot::View;
use crate::sli::series::Flagged;
use std::collections::HashSet;

/// How long a gap stays active after it was last seen, nanoseconds (5 minutes).
pub const ACTIVE_FOR: u64 = 300 * 1_000_000_000;

/// Trace coverage: requests seen as spans (estimated) ÷ requests counted by request
/// metrics, capped at 1; `None` without request metrics.
pub fn coverage(span_requests: f64, metric_requests: u64) -> Option<f64> {
    (metric_requests > 0).then(|| (span_requests / metric_requests as f64).min(1.0))
}

/// Whether a gap last seen as `k` is active at `now`.
pub fn is_active(k: &KindCounts, now: u64) -> bool {
    k.count > 0 && now.saturating_sub(k.last_unix_nanos) <= ACTIVE_FOR
}

/// Whether requests named after their span name (`f`) were seen within [`ACTIVE_FOR`] of
/// `now`.
pub fn unattributed_active(f: &Flagged, now: u64) -> bool {
    f.count > 0 && now.saturating_sub(f.last_unix_nanos) <= ACTIVE_FOR
}

/// Whether a service that reported at some point has been silent for `silence_after`
/// nanoseconds at `now`.
pub fn is_silent(c: &GapCounts, now: u64, silence_after: u64) -> bool {
    let last = c.last_seen_unix_nanos();
    last != 0 && now.saturating_sub(last) > silence_after
}

/// Whether a service sends metrics but none of its spans ever arrived.
pub fn metrics_without_traces(c: &GapCounts) -> bool {
    c.metric_points > 0 && c.spans == 0
}

impl Report<'_> {
    /// Whether the service of `c` is silent now.
    pub fn is_silent(&self, c: &GapCounts) -> bool {
        is_silent(c, self.now(), self.thresholds().silence_after_nanos())
    }

    /// The services that are silent now.
    pub fn silent_services(&self) -> HashSet<&str> {
        silent_services(self.view(), self.thresholds())
    }
}

/// The services of `view` silent at its flush time.
pub fn silent_services<'v>(view: &'v View, t: &Thresholds) -> HashSet<&'v str> {
    let silence = t.silence_after_nanos();
    view.gaps
        .iter()
        .filter(|g| is_silent(&g.counts, view.flushed_at_unix_nanos, silence))
        .map(|g| &*g.service)
        .collect()
}

/// The reason an SLI's data is short of the coverage target (`over`: the window it was
/// measured over, as text), if it is.
pub fn coverage_reason(coverage: Option<f64>, over: &str, t: &Thresholds) -> Option<String> {
    let target = t.coverage_target;
    coverage.filter(|c| *c < target).map(|c| {
        format!("trace coverage {c:.2}{over} is below completeness.coverage_target ({target})")
    })
}

/// The reason given for a silent service.
pub fn silence_reason(service: &str) -> String {
    format!("{service} has sent no telemetry for completeness.silence_after")
}
