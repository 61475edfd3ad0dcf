//! Example requests per series ([`crate::sli::exemplar`]) as readers show them: the recent
//! bad requests, the slowest requests of each window, and each latency bucket's example,
//! with ids in hex and reasons in words. Only series that have examples are listed. Also
//! the failing requests behind an SLO ([`Report::slo_examples`]) and behind a canary
//! cohort ([`failing`]).

use super::Report;
use crate::pipeline::snapshot::View;
use crate::sli::exemplar::Exemplar;
use crate::sli::series::SeriesSnapshot;
use crate::sli::window::Window;
use crate::slo::def::SloDef;
use crate::slo::status::Status;
use std::sync::Arc;

/// Failing requests listed for an SLO or a canary cohort.
pub const FAILING_LISTED: usize = 5;

/// Slowest requests listed per window.
pub const SLOWEST_PER_WINDOW: usize = 3;

/// One example request, ready to show.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Trace id, 32 lower-case hex digits.
    pub trace_id: String,
    /// Span id of the entry span, 16 lower-case hex digits.
    pub span_id: String,
    /// Duration, seconds.
    pub duration_seconds: f64,
    /// End of the request, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// Why it was bad (`http 503`, `grpc UNAVAILABLE`, `status ERROR`); `None` when good.
    pub reason: Option<String>,
}

/// A failing request and the series it belongs to.
#[derive(Clone, Debug)]
pub struct Failing {
    /// The series (its labels say the feature, dimensions and cohort).
    pub series: Arc<SeriesSnapshot>,
    /// The request.
    pub example: Example,
}

/// Up to `n` failing requests of the series `matches` accepts that ended at or after
/// `since_unix_nanos`, newest first: bad by the outcome rules, or (with `slow_above_ns`, for
/// latency objectives) slower than that, whose reason then says so.
pub fn failing(
    view: &View,
    since_unix_nanos: u64,
    slow_above_ns: Option<u64>,
    n: usize,
    matches: impl Fn(&SeriesSnapshot) -> bool,
) -> Vec<Failing> {
    failing_in(&view.series, since_unix_nanos, slow_above_ns, n, matches)
}

/// [`failing`] among `series` (the flag series, for instance).
pub fn failing_in(
    series: &[Arc<SeriesSnapshot>],
    since_unix_nanos: u64,
    slow_above_ns: Option<u64>,
    n: usize,
    matches: impl Fn(&SeriesSnapshot) -> bool,
) -> Vec<Failing> {
    let mut out: Vec<(&Arc<SeriesSnapshot>, &Exemplar)> = Vec::new();
    for s in series.iter().filter(|s| matches(s)) {
        let Some(x) = s.exemplars.as_ref() else {
            continue;
        };
        let slow = slow_above_ns.into_iter().flat_map(|t| {
            x.by_bucket()
                .flatten()
                .filter(move |e| e.duration_ns > t && !e.is_bad())
        });
        out.extend(
            x.bad()
                .chain(slow)
                .filter(|e| e.end_unix_nanos >= since_unix_nanos)
                .map(|e| (s, e)),
        );
    }
    out.sort_by_key(|(_, e)| std::cmp::Reverse(e.end_unix_nanos));
    out.truncate(n);
    out.into_iter()
        .map(|(s, e)| {
            let mut example = Example::from(e);
            if example.reason.is_none() {
                let t = slow_above_ns.unwrap_or(0) as f64 / 1e9;
                example.reason = Some(format!("slower than {t}s"));
            }
            Failing {
                series: Arc::clone(s),
                example,
            }
        })
        .collect()
}

impl From<&Exemplar> for Example {
    fn from(e: &Exemplar) -> Self {
        Example {
            trace_id: e.trace_id_hex(),
            span_id: e.span_id_hex(),
            duration_seconds: e.duration_ns as f64 / 1e9,
            end_unix_nanos: e.end_unix_nanos,
            reason: e.reason.describe(),
        }
    }
}

/// The examples of one series.
#[derive(Clone, Debug)]
pub struct SeriesExamples {
    /// The series (labels, counts).
    pub series: Arc<SeriesSnapshot>,
    /// The last bad requests, newest first.
    pub bad: Vec<Example>,
    /// Per window in [`Window::ALL`] order, the slowest requests that ended in it, slowest
    /// first.
    pub slowest: Vec<(Window, Vec<Example>)>,
    /// Per exported bucket that has one, its upper bound in seconds (`None`: `+Inf`) and
    /// example.
    pub buckets: Vec<(Option<f64>, Example)>,
}

/// The earliest end time a window's examples may have, for a report taken at `now`.
fn window_start(w: Window, now_unix_nanos: u64) -> u64 {
    w.nominal_seconds().map_or(0, |secs| {
        now_unix_nanos.saturating_sub(secs * 1_000_000_000)
    })
}

impl Report<'_> {
    /// The failing requests behind SLO `def` with status `status`, newest first: from the
    /// longest window that burns its budget faster than it lasts (burn rate above 1), else
    /// from the SLO window.
    pub fn slo_examples(&self, def: &SloDef, status: &Status) -> Vec<Failing> {
        let burning = status
            .burn_rates
            .iter()
            .filter(|(_, b)| b.is_some_and(|b| b > 1.0))
            .map(|(w, _)| *w)
            .max()
            .unwrap_or(def.window);
        let nanos = u64::try_from(burning.as_nanos()).unwrap_or(u64::MAX);
        let since = self.now().saturating_sub(nanos);
        let slow = def.sli.threshold_nanos();
        failing(self.view(), since, slow, FAILING_LISTED, |s| {
            def.matches(s.service(), s.feature())
        })
    }

    /// The examples of every series with some, optionally only `service`'s and `feature`'s,
    /// in the snapshot's series order.
    pub fn exemplars(&self, service: Option<&str>, feature: Option<&str>) -> Vec<SeriesExamples> {
        let now = self.now();
        let bounds = &self.pipeline().settings().bounds_ns;
        self.view()
            .series
            .iter()
            .filter(|s| service.is_none_or(|x| s.service() == x))
            .filter(|s| feature.is_none_or(|x| s.feature() == x))
            .filter_map(|s| {
                let x = s.exemplars.as_ref()?;
                Some(SeriesExamples {
                    series: Arc::clone(s),
                    bad: x.bad().map(Example::from).collect(),
                    slowest: Window::ALL
                        .into_iter()
                        .map(|w| {
                            let since = window_start(w, now);
                            let v = x.slowest_since(since, SLOWEST_PER_WINDOW);
                            (w, v.into_iter().map(Example::from).collect())
                        })
                        .collect(),
                    buckets: x
                        .by_bucket()
                        .enumerate()
                        .filter_map(|(i, e)| {
                            let le = bounds.get(i).map(|b| *b as f64 / 1e9);
                            Some((le, Example::from(e?)))
                        })
                        .collect(),
                })
            })
            .collect()
    }
}
