//! `GET /api/v1/gaps`: the read model's active gaps ([`crate::report::gaps`]) as JSON, most
//! severe first, with RFC 3339 times.

use crate::report::gaps::rfc3339;
use crate::report::Report;
use serde::Serialize;

#[derive(Serialize)]
struct Response<'a> {
    gaps: Vec<Gap<'a>>,
}

#[derive(Serialize)]
struct Gap<'a> {
    kind: &'static str,
    service: &'a str,
    feature: Option<&'a str>,
    count: u64,
    ratio: f64,
    since: String,
    last_seen: String,
    detail: String,
}

/// Renders the active gaps of `report`.
pub fn render(report: &Report<'_>) -> Vec<u8> {
    let gaps = report
        .gaps()
        .into_iter()
        .map(|g| Gap {
            kind: g.kind,
            service: g.service,
            feature: g.feature,
            count: g.count,
            ratio: g.ratio,
            since: rfc3339(g.since_unix_nanos),
            last_seen: rfc3339(g.last_seen_unix_nanos),
            detail: g.detail,
        })
        .collect();
    serde_json::to_vec(&Response { gaps }).unwrap_or_default()
}
