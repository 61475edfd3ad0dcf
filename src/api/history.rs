//! `GET /api/v1/history?window=1h`: per-minute requests, errors and p95 of every series over
//! the last hour, for the dashboard's sparklines.
//!
//! The series windows cannot give this: [`crate::sli::window`] keeps 10-second slots only for
//! the last minute, minutes for the last five, and 5-minute periods beyond, and shards
//! publish only the window sums. So the admin side keeps its own bounded ring, sampled from
//! the published snapshots once a minute (on the pipeline's clock) by [`sample_every`]; the
//! ingest path is not touched.
//!
//! Each sample stores, per series, the growth of its cumulative estimated request and error
//! counts since the previous sample and the p95 of its `1m` window at that moment. A point
//! therefore covers the minute of *arrival* (to within the flush interval and the
//! [`SAMPLE_TICK`]), not of span end time. The answer ends with a live partial point: the
//! growth since the last sample and the current `1m` p95, so a sparkline has data from the
//! first flush on.
//!
//! Memory is bounded: at most [`POINTS`] points of 12 bytes per series, for at most
//! `limits.max_series` (+ the overflow series) series; series beyond it are not kept and
//! are counted. A series that leaves the snapshots (expired) is dropped once all its points
//! have rotated out. About 0.9 KiB per series, ≈ 9 MiB at the default 10,000 series.
//!
//! This module owns the ring and its JSON; it reads snapshots and writes nothing else.

use crate::pipeline::snapshot::View;
use crate::pipeline::Pipeline;
use crate::sli::series::SeriesSnapshot;
use crate::sli::window::Window;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

/// Completed points kept per series (one per minute: an hour).
pub const POINTS: usize = 60;
/// One point's width, nanoseconds.
pub const STEP_NANOS: u64 = 60 * 1_000_000_000;
/// How often the sampler looks at the clock.
pub const SAMPLE_TICK: std::time::Duration = std::time::Duration::from_secs(10);

/// One minute of one series. `p95_seconds` is NaN when the `1m` window was empty.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    requests: f32,
    errors: f32,
    p95_seconds: f32,
}

impl Point {
    const EMPTY: Point = Point {
        requests: 0.0,
        errors: 0.0,
        p95_seconds: f32::NAN,
    };
}

#[derive(Debug)]
struct Track {
    /// Aligned with [`History::minutes`].
    points: VecDeque<Point>,
    /// Cumulative estimated requests and errors at the last sample.
    last_requests: f64,
    last_errors: f64,
}

/// The sampled ring of every series.
#[derive(Debug)]
pub struct History {
    max_series: usize,
    /// Start of each completed point, in minutes since the epoch, oldest first.
    minutes: VecDeque<u64>,
    /// Minute of the last sample; `None` before the first (which only takes baselines).
    last_minute: Option<u64>,
    series: HashMap<Arc<[Box<str>]>, Track>,
}

/// The shared history the admin server reads and the sampler writes.
pub type SharedHistory = Arc<Mutex<History>>;

fn p95_seconds(s: &SeriesSnapshot) -> f32 {
    s.windows[Window::M1.index()].quantiles_ns[2].map_or(f32::NAN, |ns| (ns as f64 / 1e9) as f32)
}

/// Growth of a cumulative count; a count below the last one started again from zero.
fn growth(now: f64, last: f64) -> f64 {
    if now >= last {
        now - last
    } else {
        now
    }
}

impl History {
    /// An empty history keeping at most `max_series` series (plus one for overflow).
    pub fn new(max_series: usize) -> Self {
        Self {
            max_series: max_series.saturating_add(1),
            minutes: VecDeque::with_capacity(POINTS + 1),
            last_minute: None,
            series: HashMap::new(),
        }
    }

    /// Whether a sample is due at `now` (a new minute began since the last one).
    pub fn due(&self, now_unix_nanos: u64) -> bool {
        self.last_minute
            .is_none_or(|m| now_unix_nanos / STEP_NANOS > m)
    }

    /// Samples `view` if a new minute began at `now`; returns whether it did.
    pub fn observe(&mut self, view: &View, now_unix_nanos: u64) -> bool {
        let minute = now_unix_nanos / STEP_NANOS;
        let Some(last) = self.last_minute else {
            for s in &view.series {
                if let Some(t) = self.track(s, 0) {
                    t.last_requests = s.est_requests_total;
                    t.last_errors = s.est_errors_total;
                }
            }
            self.last_minute = Some(minute);
            return true;
        };
        if minute <= last {
            return false;
        }
        // Minutes the sampler missed (a stalled process) stay empty; the growth goes into
        // the last one. More than an hour of them is the same as an hour.
        let first = last.max(minute.saturating_sub(POINTS as u64));
        for m in first..minute {
            self.minutes.push_back(m);
        }
        let fresh = usize::try_from(minute - first).unwrap_or(POINTS);
        let len = self.minutes.len();
        let mut seen = std::collections::HashSet::with_capacity(view.series.len());
        for s in &view.series {
            let Some(t) = self.track(s, len - fresh) else {
                continue;
            };
            for _ in 1..fresh {
                t.points.push_back(Point::EMPTY);
            }
            t.points.push_back(Point {
                requests: growth(s.est_requests_total, t.last_requests) as f32,
                errors: growth(s.est_errors_total, t.last_errors) as f32,
                p95_seconds: p95_seconds(s),
            });
            t.last_requests = s.est_requests_total;
            t.last_errors = s.est_errors_total;
            seen.insert(Arc::clone(&s.labels));
        }
        for (labels, t) in self.series.iter_mut() {
            if !seen.contains(labels) {
                for _ in 0..fresh {
                    t.points.push_back(Point::EMPTY);
                }
                // Gone from the snapshots: if it comes back, its counters start from zero.
                t.last_requests = 0.0;
                t.last_errors = 0.0;
            }
        }
        while self.minutes.len() > POINTS {
            self.minutes.pop_front();
        }
        self.series.retain(|labels, t| {
            while t.points.len() > POINTS {
                t.points.pop_front();
            }
            seen.contains(labels) || t.points.iter().any(|p| p.requests > 0.0)
        });
        self.last_minute = Some(minute);
        true
    }

    /// The track of `s`, created with `pad` empty points if there is room.
    fn track(&mut self, s: &SeriesSnapshot, pad: usize) -> Option<&mut Track> {
        if !self.series.contains_key(&s.labels) {
            if self.series.len() >= self.max_series {
                return None;
            }
            let mut points = VecDeque::with_capacity(POINTS + 1);
            points.extend(std::iter::repeat_n(Point::EMPTY, pad));
            self.series.insert(
                Arc::clone(&s.labels),
                Track {
                    points,
                    last_requests: 0.0,
                    last_errors: 0.0,
                },
            );
        }
        self.series.get_mut(&s.labels)
    }

    /// Series kept.
    pub fn series_len(&self) -> usize {
        self.series.len()
    }

    /// Completed points kept per series.
    pub fn points_len(&self) -> usize {
        self.minutes.len()
    }

    /// Renders the last `minutes` completed points of every series plus the live partial
    /// point read from `view`. `names` are the label names (service, feature, dimensions).
    pub fn render(&self, view: &View, minutes: usize, names: &[String]) -> Vec<u8> {
        let n = minutes.min(self.minutes.len());
        let skip = self.minutes.len() - n;
        let start_minute = self
            .minutes
            .get(skip)
            .copied()
            .or(self.last_minute)
            .unwrap_or(view.flushed_at_unix_nanos / STEP_NANOS);
        let live: HashMap<&Arc<[Box<str>]>, &SeriesSnapshot> =
            view.series.iter().map(|s| (&s.labels, &**s)).collect();
        let mut out: Vec<Series<'_>> = Vec::with_capacity(self.series.len());
        for (labels, t) in &self.series {
            let now = live.get(labels).map(|s| Point {
                requests: growth(s.est_requests_total, t.last_requests) as f32,
                errors: growth(s.est_errors_total, t.last_errors) as f32,
                p95_seconds: p95_seconds(s),
            });
            let points = t
                .points
                .iter()
                .skip(skip)
                .copied()
                .chain(std::iter::once(now.unwrap_or(Point::EMPTY)));
            out.push(Series::of(labels, names, points, n));
        }
        // Series born since the last sample: all they counted is in the minute in progress.
        if self.last_minute.is_some() && self.series.len() < self.max_series {
            for s in view
                .series
                .iter()
                .filter(|s| !self.series.contains_key(&s.labels))
            {
                let empty = std::iter::repeat_n(Point::EMPTY, n);
                let now = Point {
                    requests: s.est_requests_total as f32,
                    errors: s.est_errors_total as f32,
                    p95_seconds: p95_seconds(s),
                };
                out.push(Series::of(
                    &s.labels,
                    names,
                    empty.chain(std::iter::once(now)),
                    n,
                ));
            }
        }
        // Once the table is full, the live series it does not hold are left out.
        let untracked = if self.series.len() >= self.max_series {
            view.series
                .iter()
                .filter(|s| !self.series.contains_key(&s.labels))
                .count()
        } else {
            0
        };
        out.sort_by(|a, b| (a.service, a.feature).cmp(&(b.service, b.feature)));
        serde_json::to_vec(&Response {
            step_seconds: STEP_NANOS / 1_000_000_000,
            start_unix_nano: start_minute.saturating_mul(STEP_NANOS),
            points: n + 1,
            series_limit: self.max_series.saturating_sub(1),
            untracked_series: untracked as u64,
            series: out,
        })
        .unwrap_or_default()
    }
}

/// A count as JSON: whole when it is (always, when nothing is sampled), else 3 decimals.
fn rounded_count(x: f32) -> serde_json::Value {
    crate::api::slis::count((f64::from(x) * 1000.0).round() / 1000.0)
}

#[derive(Serialize)]
struct Response<'a> {
    step_seconds: u64,
    /// Start of the first point; point `i` starts `i × step_seconds` later and the last one
    /// is the minute in progress.
    start_unix_nano: u64,
    points: usize,
    series_limit: usize,
    untracked_series: u64,
    series: Vec<Series<'a>>,
}

#[derive(Serialize)]
struct Series<'a> {
    service: &'a str,
    feature: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dimensions: BTreeMap<&'a str, &'a str>,
    requests: Vec<serde_json::Value>,
    errors: Vec<serde_json::Value>,
    p95_seconds: Vec<Option<f64>>,
}

impl<'a> Series<'a> {
    fn of(
        labels: &'a [Box<str>],
        names: &'a [String],
        points: impl Iterator<Item = Point>,
        n: usize,
    ) -> Self {
        let mut s = Series {
            service: labels.first().map_or("", |v| &**v),
            feature: labels.get(1).map_or("", |v| &**v),
            dimensions: crate::api::slis::dimensions(names, labels),
            requests: Vec::with_capacity(n + 1),
            errors: Vec::with_capacity(n + 1),
            p95_seconds: Vec::with_capacity(n + 1),
        };
        for p in points {
            s.requests.push(rounded_count(p.requests));
            s.errors.push(rounded_count(p.errors));
            s.p95_seconds.push(
                Some(f64::from(p.p95_seconds))
                    .filter(|v| v.is_finite())
                    .map(|v| (v * 1e6).round() / 1e6),
            );
        }
        s
    }
}

/// Minutes asked for by `window` (`1m` to `1h`, default `1h`), or why it is wrong.
pub fn parse_window(window: Option<&str>) -> Result<usize, String> {
    let text = window.unwrap_or("1h");
    let d = crate::config::units::parse_duration(text)?;
    let secs = d.as_secs();
    if !(60..=3600).contains(&secs) {
        return Err(format!("window {text:?} is out of range; use 1m to 1h"));
    }
    Ok(usize::try_from(secs.div_ceil(60)).unwrap_or(POINTS))
}

/// Samples the pipeline's snapshots into `history` whenever a new minute begins on the
/// pipeline's clock, until `stop` turns true.
pub async fn sample_every(
    history: SharedHistory,
    pipeline: Pipeline,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = crate::ticker::Ticker::now(SAMPLE_TICK, stop);
    while ticker.next().await {
        let now = pipeline.now_unix_nanos();
        let due = history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due(now);
        if due {
            let view = pipeline.view();
            history
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(&view, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::series::Flagged;
    use crate::sli::series::WindowSnapshot;

    const MIN: u64 = STEP_NANOS;

    fn series(
        service: &str,
        feature: &str,
        requests: f64,
        errors: f64,
        p95_ms: Option<u64>,
    ) -> Arc<SeriesSnapshot> {
        let mut windows: [WindowSnapshot; 4] = Default::default();
        windows[Window::M1.index()].quantiles_ns[2] = p95_ms.map(|ms| ms * 1_000_000);
        Arc::new(SeriesSnapshot {
            labels: Arc::from(vec![Box::from(service), Box::from(feature)]),
            requests_total: requests as u64,
            errors_total: errors as u64,
            est_requests_total: requests,
            est_errors_total: errors,
            duration_sum_ns: 0,
            buckets: Box::new([]),
            windows,
            unattributed: Flagged::default(),
            metric_requests_total: 0,
            window_hists: None,
            overflow: false,
            exemplars: None,
        })
    }

    fn view(series: Vec<Arc<SeriesSnapshot>>) -> View {
        View {
            series,
            ..View::default()
        }
    }

    fn json(h: &History, v: &View, minutes: usize) -> serde_json::Value {
        let names = ["service".to_string(), "feature".to_string()];
        serde_json::from_slice(&h.render(v, minutes, &names)).expect("json")
    }

    fn find<'a>(j: &'a serde_json::Value, feature: &str) -> &'a serde_json::Value {
        j["series"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["feature"] == feature))
            .unwrap_or_else(|| panic!("no {feature} in {j}"))
    }

    #[test]
    fn points_are_per_minute_growth_with_a_live_point() {
        let mut h = History::new(100);
        let t0 = 1000 * MIN + 5_000_000_000;
        // Before the first sample: the 40 requests already counted are the baseline.
        assert!(h.observe(&view(vec![series("a", "GET /x", 40.0, 0.0, Some(10))]), t0));
        assert!(!h.due(t0 + 30_000_000_000), "same minute");
        assert!(h.due(t0 + MIN));
        assert!(h.observe(
            &view(vec![series("a", "GET /x", 100.0, 6.0, Some(20))]),
            t0 + MIN
        ));
        assert!(!h.observe(
            &view(vec![series("a", "GET /x", 999.0, 0.0, None)]),
            t0 + MIN + 1
        ));
        let later = view(vec![
            series("a", "GET /x", 130.0, 6.0, Some(30)),
            series("b", "GET /y", 7.0, 7.0, None),
        ]);
        assert!(h.observe(&later, t0 + 2 * MIN));
        let live = view(vec![
            series("a", "GET /x", 135.0, 9.0, Some(40)),
            series("b", "GET /y", 8.0, 7.0, Some(50)),
        ]);
        let j = json(&h, &live, 60);
        assert_eq!(j["points"], 3);
        assert_eq!(j["step_seconds"], 60);
        assert_eq!(j["start_unix_nano"], 1000 * MIN);
        let a = find(&j, "GET /x");
        assert_eq!(a["requests"], serde_json::json!([60, 30, 5]));
        assert_eq!(a["errors"], serde_json::json!([6, 0, 3]));
        assert_eq!(a["p95_seconds"], serde_json::json!([0.02, 0.03, 0.04]));
        // A series born after a sample: all of its count belongs to the minute it appeared.
        let b = find(&j, "GET /y");
        assert_eq!(b["requests"], serde_json::json!([0, 7, 1]));
        assert_eq!(b["p95_seconds"], serde_json::json!([null, null, 0.05]));
        // A series born since the last sample shows in the live point at once.
        let mut newer = live.clone();
        newer.series.push(series("c", "GET /z", 3.0, 1.0, Some(60)));
        let j2 = json(&h, &newer, 60);
        assert_eq!(
            find(&j2, "GET /z")["requests"],
            serde_json::json!([0, 0, 3])
        );
        assert_eq!(
            find(&j2, "GET /z")["p95_seconds"],
            serde_json::json!([null, null, 0.06])
        );
        // The last 1 minute: one completed point and the live one.
        let j = json(&h, &live, 1);
        assert_eq!(find(&j, "GET /x")["requests"], serde_json::json!([30, 5]));
        assert_eq!(j["start_unix_nano"], 1001 * MIN);
    }

    #[test]
    fn memory_is_bounded_in_points_and_series() {
        let mut h = History::new(3);
        let mut t = 5000 * MIN;
        let live = |i: u64| {
            view(
                (0..10)
                    .map(|k| series("s", &format!("f{k}"), (i * 10) as f64, 0.0, Some(5)))
                    .collect(),
            )
        };
        for i in 0..200u64 {
            h.observe(&live(i), t);
            t += MIN;
        }
        assert_eq!(h.points_len(), POINTS);
        assert_eq!(h.series_len(), 4, "max_series + the overflow series");
        let j = json(&h, &live(200), 60);
        assert_eq!(j["untracked_series"].as_u64().map(|u| u > 0), Some(true));
        assert_eq!(
            j["untracked_series"], 6,
            "the live series left out, not samples"
        );
        assert_eq!(json(&h, &view(vec![]), 60)["untracked_series"], 0);
        for s in j["series"].as_array().expect("series") {
            assert_eq!(s["requests"].as_array().map(Vec::len), Some(POINTS + 1));
        }
    }

    #[test]
    fn expired_series_are_dropped_after_an_hour_and_restarts_count_from_zero() {
        let mut h = History::new(10);
        let t0 = 7000 * MIN;
        h.observe(&view(vec![series("a", "x", 0.0, 0.0, None)]), t0);
        h.observe(&view(vec![series("a", "x", 50.0, 0.0, None)]), t0 + MIN);
        // Gone (expired) for a while, then back with fresh counters.
        h.observe(&view(vec![]), t0 + 2 * MIN);
        h.observe(&view(vec![series("a", "x", 4.0, 1.0, None)]), t0 + 3 * MIN);
        let j = json(&h, &view(vec![]), 60);
        assert_eq!(find(&j, "x")["requests"], serde_json::json!([50, 0, 4, 0]));
        let mut t = t0 + 4 * MIN;
        for _ in 0..POINTS {
            h.observe(&view(vec![]), t);
            t += MIN;
        }
        assert_eq!(h.series_len(), 0, "nothing left of it in the hour");
    }

    #[test]
    fn a_stalled_sampler_leaves_the_missed_minutes_empty() {
        let mut h = History::new(10);
        let t0 = 9000 * MIN;
        h.observe(&view(vec![series("a", "x", 0.0, 0.0, None)]), t0);
        h.observe(&view(vec![series("a", "x", 9.0, 0.0, None)]), t0 + 3 * MIN);
        let j = json(&h, &view(vec![]), 60);
        assert_eq!(find(&j, "x")["requests"], serde_json::json!([0, 0, 9, 0]));
        h.observe(
            &view(vec![series("a", "x", 9.0, 0.0, None)]),
            t0 + 1000 * MIN,
        );
        assert_eq!(h.points_len(), POINTS);
    }

    #[test]
    fn windows_parse_to_minutes() {
        assert_eq!(parse_window(None), Ok(60));
        assert_eq!(parse_window(Some("5m")), Ok(5));
        assert_eq!(parse_window(Some("90s")), Ok(2));
        assert!(parse_window(Some("2h")).is_err());
        assert!(parse_window(Some("10s")).is_err());
        assert!(parse_window(Some("soon")).is_err());
    }
}
