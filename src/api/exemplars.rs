//! `GET /api/v1/exemplars[?service=…&feature=…]`: the example requests of each series
//! ([`crate::report::exemplars`]) as JSON: the last bad requests, the slowest of each
//! window and each latency bucket's example, with hex ids and RFC 3339 end times.

use super::slis::dimensions;
use crate::report::exemplars::{Example, Failing};
use crate::report::gaps::rfc3339;
use crate::report::Report;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Response<'a> {
    series: Vec<Series<'a>>,
}

#[derive(Serialize)]
struct Series<'a> {
    service: &'a str,
    feature: &'a str,
    dimensions: BTreeMap<&'a str, &'a str>,
    bad: Vec<Request>,
    slowest: BTreeMap<&'static str, Vec<Request>>,
    buckets: Vec<Bucket>,
}

/// One request as the API shows it.
#[derive(Serialize)]
pub struct Request {
    trace_id: String,
    span_id: String,
    duration_seconds: f64,
    end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl From<Example> for Request {
    fn from(e: Example) -> Self {
        Request {
            trace_id: e.trace_id,
            span_id: e.span_id,
            duration_seconds: e.duration_seconds,
            end: rfc3339(e.end_unix_nanos),
            reason: e.reason,
        }
    }
}

/// A failing request with the series it belongs to, as the SLO and canary answers show it.
#[derive(Serialize)]
pub struct FailingRequest<'a> {
    service: &'a str,
    feature: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    dimensions: BTreeMap<&'a str, &'a str>,
    #[serde(flatten)]
    request: Request,
}

/// `failing` as JSON objects; `names`: every label name, service and feature first.
pub fn failing_requests<'a>(
    names: &'a [String],
    failing: &'a [Failing],
) -> Vec<FailingRequest<'a>> {
    failing
        .iter()
        .map(|f| FailingRequest {
            service: f.series.service(),
            feature: f.series.feature(),
            dimensions: dimensions(names, &f.series.labels),
            request: Request::from(f.example.clone()),
        })
        .collect()
}

#[derive(Serialize)]
struct Bucket {
    /// Upper bound in seconds, `"+Inf"` for the last.
    le: String,
    exemplar: Request,
}

/// Renders the examples of `report`, optionally of one service and feature.
pub fn render(report: &Report<'_>, service: Option<&str>, feature: Option<&str>) -> Vec<u8> {
    let names = report.pipeline().classifier().label_names();
    let all = report.exemplars(service, feature);
    let series = all
        .iter()
        .map(|x| Series {
            service: x.series.service(),
            feature: x.series.feature(),
            dimensions: dimensions(&names, &x.series.labels),
            bad: x.bad.iter().cloned().map(Request::from).collect(),
            slowest: x
                .slowest
                .iter()
                .map(|(w, v)| (w.name(), v.iter().cloned().map(Request::from).collect()))
                .collect(),
            buckets: x
                .buckets
                .iter()
                .map(|(le, e)| Bucket {
                    le: le.map_or_else(|| "+Inf".to_string(), |b| format!("{b}")),
                    exemplar: Request::from(e.clone()),
                })
                .collect(),
        })
        .collect();
    serde_json::to_vec(&Response { series }).unwrap_or_default()
}
