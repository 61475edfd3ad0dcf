//! Example requests per series ([`crate::sli::exemplar`]) as readers show them: the recent
//! bad requests, the slowest requests of each window, and each latency bucket's example,
//! with ids in hex and reasons in words. Only series that have examples are listed.

use super::Report;
use crate::sli::exemplar::Exemplar;
use crate::sli::series::SeriesSnapshot;
use crate::sli::window::Window;
use std::sync::Arc;

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
    let secs = match w {
        Window::M1 => 60,
        Window::M5 => 300,
        Window::H1 => 3600,
        Window::All => return 0,
    };
    now_unix_nanos.saturating_sub(secs * 1_000_000_000)
}

impl Report<'_> {
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
