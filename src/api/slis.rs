//! `GET /api/v1/slis?window=1m|5m|1h|all`: the read model's per-series SLIs
//! ([`crate::report::series`]) as JSON.

use crate::report::Report;
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

/// p50, p90, p95 and p99 in seconds, as the JSON API shows them.
#[derive(Serialize)]
pub struct Latency {
    p50: Option<f64>,
    p90: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

impl From<[Option<f64>; 4]> for Latency {
    fn from([p50, p90, p95, p99]: [Option<f64>; 4]) -> Self {
        Latency { p50, p90, p95, p99 }
    }
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

/// Renders the SLIs of `window` from `report`, or explains why the window name is wrong.
pub fn render(report: &Report<'_>, window: &str) -> Result<Vec<u8>, String> {
    let w = Window::parse(window)
        .ok_or_else(|| format!("unknown window {window:?}; use 1m, 5m, 1h or all"))?;
    let names = report.pipeline().classifier().label_names();
    let slis = report
        .series_slis(w)
        .into_iter()
        .map(|a| Sli {
            service: a.series.service(),
            feature: a.series.feature(),
            dimensions: dimensions(&names, &a.series.labels),
            requests: count(a.window.est_requests),
            errors: count(a.window.est_errors),
            sampled_requests: a.window.requests,
            sampling_ratio: a.sampling_ratio,
            trace_coverage: a.trace_coverage,
            success_ratio: a.success_ratio,
            latency_seconds: Latency::from(a.quantiles_seconds),
            data_quality: if a.sufficient() { "ok" } else { "insufficient" },
            data_quality_reasons: a.reasons,
        })
        .collect();
    serde_json::to_vec(&Response {
        window: w.name(),
        window_seconds: report.window_seconds(w),
        flushed_at_unix_nano: report.now(),
        slis,
    })
    .map_err(|e| e.to_string())
}
