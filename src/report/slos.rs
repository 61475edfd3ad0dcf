//! SLO statuses: the SLO engine evaluated at the pipeline clock's current time, with the
//! completeness checks of the snapshot deciding whether each SLO's data is sufficient (its
//! service went silent, or its series' trace coverage is below the target).

use super::quality::{coverage, coverage_reason, is_silent, silence_reason};
use super::{Report, Thresholds};
use crate::pipeline::snapshot::View;
use crate::sli::window::Window;
use crate::slo::def::SloDef;
use crate::slo::status::Status;

/// What the SLOs say at one moment.
#[derive(Debug, Default)]
pub struct SloReport {
    /// When they were evaluated, Unix nanoseconds (the pipeline clock).
    pub evaluated_at_unix_nanos: u64,
    /// Entry spans of an SLO that arrived too late to count (`slo.max_lateness`).
    pub late_spans: u64,
    /// Every SLO with its status, in configuration order; empty without SLOs.
    pub statuses: Vec<(SloDef, Status)>,
}

/// Reasons an SLO's data cannot be trusted: its service went silent, or its series' trace
/// coverage (requests seen as spans ÷ requests counted by metrics, last 5 minutes) is below
/// the target.
pub fn quality(def: &SloDef, view: &View, t: &Thresholds) -> Vec<String> {
    let mut reasons = Vec::new();
    let silence = t.silence_after_nanos();
    if view.gaps.iter().any(|g| {
        *g.service == *def.service && is_silent(&g.counts, view.flushed_at_unix_nanos, silence)
    }) {
        reasons.push(silence_reason(&def.service));
    }
    let m5 = Window::M5.index();
    let (mut spans, mut metrics) = (0.0, 0u64);
    for s in view
        .series
        .iter()
        .filter(|s| def.matches(s.service(), s.feature()))
    {
        let w = &s.windows[m5];
        if w.metric_requests > 0 {
            spans += w.est_requests;
            metrics += w.metric_requests;
        }
    }
    reasons.extend(coverage_reason(
        coverage(spans, metrics),
        " over the last 5m",
        t,
    ));
    reasons
}

impl Report<'_> {
    /// Every SLO's status now. The completeness checks run before the engine lock is taken,
    /// so shards flushing are held up only for the bucket sums.
    pub fn slos(&self) -> SloReport {
        let pipeline = self.pipeline();
        let now = pipeline.now_unix_nanos();
        let Some(engine) = pipeline.slo_engine() else {
            return SloReport {
                evaluated_at_unix_nanos: now,
                ..SloReport::default()
            };
        };
        let lock = || {
            engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let defs = std::sync::Arc::clone(lock().defs());
        let reasons: Vec<Vec<String>> = defs
            .iter()
            .map(|d| quality(d, self.view(), self.thresholds()))
            .collect();
        let engine = lock();
        let statuses = engine.evaluate(now, self.thresholds().min_events, |i| {
            reasons.get(i).cloned().unwrap_or_default()
        });
        SloReport {
            evaluated_at_unix_nanos: now,
            late_spans: engine.late_spans(),
            statuses: defs.iter().cloned().zip(statuses).collect(),
        }
    }
}
