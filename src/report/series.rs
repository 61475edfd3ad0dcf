//! Per-series SLIs over one window: estimated requests and errors, success and sampling
//! ratios, latency quantiles, trace coverage, and the reasons the data is insufficient
//! (too few requests, coverage below target, a silent service).

use super::quality::{coverage, coverage_reason, silence_reason, silent_services};
use super::{Report, Thresholds};
use crate::pipeline::snapshot::View;
use crate::sli::series::{SeriesSnapshot, WindowSnapshot};
use crate::sli::window::Window;

/// The SLI of one series over one window.
#[derive(Debug)]
pub struct SeriesSli<'a> {
    /// The series (labels, totals, buckets).
    pub series: &'a SeriesSnapshot,
    /// Its figures in the window.
    pub window: &'a WindowSnapshot,
    /// Good ÷ all estimated requests, in [0, 1]; `None` without requests.
    pub success_ratio: Option<f64>,
    /// Received ÷ estimated requests (1 when nothing is sampled); `None` without requests.
    pub sampling_ratio: Option<f64>,
    /// p50, p90, p95, p99 in seconds; `None` without requests.
    pub quantiles_seconds: [Option<f64>; 4],
    /// Requests seen as spans ÷ requests counted by request metrics; `None` without request
    /// metrics.
    pub trace_coverage: Option<f64>,
    /// Why the data is insufficient; empty when it is good enough.
    pub reasons: Vec<String>,
}

impl SeriesSli<'_> {
    /// Whether the data is good enough to judge the SLI by.
    pub fn sufficient(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// Good ÷ all estimated requests of a window, in [0, 1]; `None` without requests.
pub fn success_ratio(w: &WindowSnapshot) -> Option<f64> {
    (w.est_requests > 0.0)
        .then(|| ((w.est_requests - w.est_errors) / w.est_requests).clamp(0.0, 1.0))
}

/// The time window `w` covers at `now`, for a process started at `started` (Unix
/// nanoseconds): its nominal length, or the time since the start when that is shorter
/// (at least one second; `all` is always the time since the start).
pub fn window_seconds(w: Window, now: u64, started: u64) -> f64 {
    let up = (now.saturating_sub(started) as f64 / 1e9).max(1.0);
    w.nominal_seconds().map_or(up, |n| up.min(n as f64))
}

/// Every series' SLI over `w` in `view`, judged by `t`, in the snapshot's order.
pub fn slis<'v>(view: &'v View, t: &Thresholds, w: Window) -> Vec<SeriesSli<'v>> {
    let min_events = t.min_events;
    let silent = silent_services(view, t);
    view.series
        .iter()
        .map(|s| {
            let ws = &s.windows[w.index()];
            let trace_coverage = coverage(ws.est_requests, ws.metric_requests);
            let mut reasons = Vec::new();
            reasons.extend(coverage_reason(trace_coverage, "", t));
            if ws.requests < min_events {
                reasons.push(format!(
                    "{} in the window, fewer than completeness.min_events ({min_events})",
                    crate::text::counted(ws.requests, "request", "requests")
                ));
            }
            if silent.contains(s.service()) {
                reasons.push(silence_reason(s.service()));
            }
            SeriesSli {
                series: s,
                window: ws,
                success_ratio: success_ratio(ws),
                sampling_ratio: (ws.est_requests > 0.0)
                    .then(|| (ws.requests as f64 / ws.est_requests).min(1.0)),
                quantiles_seconds: ws.quantiles_ns.map(|q| q.map(|ns| ns as f64 / 1e9)),
                trace_coverage,
                reasons,
            }
        })
        .collect()
}

/// A series' trace coverage over the last 5 minutes; `None` without request metrics.
pub fn coverage_5m(s: &SeriesSnapshot) -> Option<f64> {
    let w = &s.windows[Window::M5.index()];
    coverage(w.est_requests, w.metric_requests)
}

impl Report<'_> {
    /// Every series' SLI over `w`, in the snapshot's order.
    pub fn series_slis(&self, w: Window) -> Vec<SeriesSli<'_>> {
        slis(self.view(), self.thresholds(), w)
    }

    /// The time `w` covers in this report (see [`window_seconds`]).
    pub fn window_seconds(&self, w: Window) -> f64 {
        window_seconds(w, self.now(), self.pipeline().settings().started_unix_nanos)
    }

    /// Whether a series' 5-minute trace coverage is below the target.
    pub fn under_covered(&self, s: &SeriesSnapshot) -> bool {
        coverage_5m(s).is_some_and(|c| c < self.thresholds().coverage_target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_at_most_the_time_since_start() {
        let s = 1_000_000_000_000;
        let at = |secs: u64| s + secs * 1_000_000_000;
        assert_eq!(window_seconds(Window::M1, at(20), s), 20.0);
        assert_eq!(window_seconds(Window::M1, at(600), s), 60.0);
        assert_eq!(window_seconds(Window::M5, at(120), s), 120.0);
        assert_eq!(window_seconds(Window::H1, at(7200), s), 3600.0);
        assert_eq!(window_seconds(Window::All, at(7200), s), 7200.0);
        assert_eq!(window_seconds(Window::M1, s, s), 1.0, "never zero");
        assert_eq!(
            window_seconds(Window::M1, 0, s),
            1.0,
            "a clock before the start"
        );
    }
}
