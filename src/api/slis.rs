//! `GET /api/v1/slis?window=1m|5m|1h|all`: per-feature SLIs as JSON.

use crate::pipeline::Pipeline;
use crate::sli::window::Window;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Response<'a> {
    window: &'a str,
    /// The time the window's figures cover: its length, or less while the process has run
    /// for less (divide counts by it for rates).
    window_seconds: f64,
    flushed_at_unix_nano: u64,
    slis: Vec<Sli<'a>>,
}

#[derive(Serialize)]
struct Sli<'a> {
    service: &'a str,
    feature: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dimensions: BTreeMap<&'a str, &'a str>,
    /// Requests, estimated from sampled spans (exact when nothing is sampled).
    requests: serde_json::Value,
    errors: serde_json::Value,
    /// Entry spans received.
    sampled_requests: u64,
    /// Received / estimated requests: 1 when nothing is sampled.
    sampling_ratio: Option<f64>,
    /// Requests seen as spans ÷ requests counted by request metrics in the window; null
    /// when no request metrics arrived for this series.
    trace_coverage: Option<f64>,
    success_ratio: Option<f64>,
    latency_seconds: Latency,
    /// `ok`, or `insufficient` when the SLI rests on too little data to be trusted.
    data_quality: &'static str,
    /// Why the data is insufficient (empty when `ok`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    data_quality_reasons: Vec<String>,
}

#[derive(Serialize)]
struct Latency {
    p50: Option<f64>,
    p90: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// Trace coverage: requests seen as spans (estimated) ÷ requests counted by request
/// metrics, capped at 1; `None` without request metrics.
pub fn coverage(span_requests: f64, metric_requests: u64) -> Option<f64> {
    (metric_requests > 0).then(|| (span_requests / metric_requests as f64).min(1.0))
}

/// The non-empty dimension labels of a series (`labels` after service and feature), by
/// name (`names`: every label name, service and feature first).
pub fn dimensions<'a>(names: &'a [String], labels: &'a [Box<str>]) -> BTreeMap<&'a str, &'a str> {
    names
        .iter()
        .skip(2)
        .zip(labels.iter().skip(2))
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.as_str(), &**v))
        .collect()
}

/// A count as a JSON number: an integer when it is whole (always, when nothing is sampled).
pub fn count(x: f64) -> serde_json::Value {
    if x.fract() == 0.0 && (0.0..9.0e15).contains(&x) {
        serde_json::Value::from(x as u64)
    } else {
        serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// The time window `w` covers at `now`, for a process started at `started` (Unix
/// nanoseconds): its nominal length, or the time since the start when that is shorter
/// (at least one second; `all` is always the time since the start).
pub fn window_seconds(w: Window, now: u64, started: u64) -> f64 {
    let up = (now.saturating_sub(started) as f64 / 1e9).max(1.0);
    match w {
        Window::M1 => up.min(60.0),
        Window::M5 => up.min(300.0),
        Window::H1 => up.min(3600.0),
        Window::All => up,
    }
}

/// Renders the SLIs of `window`, or explains why the window name is wrong.
pub fn render(pipeline: &Pipeline, window: &str) -> Result<Vec<u8>, String> {
    let w = Window::parse(window)
        .ok_or_else(|| format!("unknown window {window:?}; use 1m, 5m, 1h or all"))?;
    let view = pipeline.view();
    let names = pipeline.classifier().label_names();
    let min_events = pipeline.min_events();
    let target = pipeline.coverage_target();
    let silence = pipeline.silence_after_nanos();
    let silent: std::collections::HashSet<&str> = view
        .gaps
        .iter()
        .filter(|g| crate::api::gaps::is_silent(&g.counts, view.flushed_at_unix_nanos, silence))
        .map(|g| &*g.service)
        .collect();
    let slis = view
        .series
        .iter()
        .map(|s| {
            let ws = &s.windows[w.index()];
            let q = |i: usize| ws.quantiles_ns[i].map(|ns| ns as f64 / 1e9);
            let coverage = coverage(ws.est_requests, ws.metric_requests);
            let mut reasons = Vec::new();
            if let Some(c) = coverage.filter(|c| *c < target) {
                reasons.push(format!(
                    "trace coverage {c:.2} is below completeness.coverage_target ({target})"
                ));
            }
            if ws.requests < min_events {
                reasons.push(format!(
                    "{} in the window, fewer than completeness.min_events ({min_events})",
                    crate::text::counted(ws.requests, "request", "requests")
                ));
            }
            if silent.contains(s.service()) {
                reasons.push(format!(
                    "{} has sent no telemetry for completeness.silence_after",
                    s.service()
                ));
            }
            Sli {
                service: s.service(),
                feature: s.feature(),
                dimensions: dimensions(&names, &s.labels),
                requests: count(ws.est_requests),
                errors: count(ws.est_errors),
                sampled_requests: ws.requests,
                sampling_ratio: (ws.est_requests > 0.0)
                    .then(|| (ws.requests as f64 / ws.est_requests).min(1.0)),
                trace_coverage: coverage,
                success_ratio: (ws.est_requests > 0.0)
                    .then(|| ((ws.est_requests - ws.est_errors) / ws.est_requests).clamp(0.0, 1.0)),
                latency_seconds: Latency {
                    p50: q(0),
                    p90: q(1),
                    p95: q(2),
                    p99: q(3),
                },
                data_quality: if reasons.is_empty() {
                    "ok"
                } else {
                    "insufficient"
                },
                data_quality_reasons: reasons,
            }
        })
        .collect();
    serde_json::to_vec(&Response {
        window: w.name(),
        window_seconds: window_seconds(
            w,
            view.flushed_at_unix_nanos,
            pipeline.settings().started_unix_nanos,
        ),
        flushed_at_unix_nano: view.flushed_at_unix_nanos,
        slis,
    })
    .map_err(|e| e.to_string())
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
