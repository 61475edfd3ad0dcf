//! `GET /api/v1/slos`: every SLO's SLI, error budget, burn rates and alert state as JSON,
//! and the `slo_*` Prometheus series, both rendered from the read model's SLO statuses
//! ([`crate::report::slos`]).

use crate::report::slos::SloReport;
use crate::report::Report;
use crate::slo::def::{duration_name, Severity, SloDef};
use crate::slo::status::Status;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Response<'a> {
    evaluated_at_unix_nano: u64,
    late_spans: u64,
    slos: Vec<Slo<'a>>,
}

#[derive(Serialize)]
struct Slo<'a> {
    name: &'a str,
    service: &'a str,
    feature: &'a str,
    sli: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    threshold_seconds: Option<f64>,
    objective: f64,
    window: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    sli_value: Option<f64>,
    total: u64,
    bad: u64,
    error_budget_remaining: Option<f64>,
    error_budget_consumed: Option<f64>,
    burn_rates: Ordered,
    alert: &'static str,
    firing: Vec<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    alert_reasons: &'a [String],
    exhaustion_eta_seconds: Option<f64>,
}

/// Burn rates as a JSON object keyed by window, shortest window first.
struct Ordered(Vec<(String, Option<f64>)>);

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Renders `/api/v1/slos` from `report`.
pub fn render(report: &Report<'_>) -> Vec<u8> {
    let r = report.slos();
    let slos = r
        .statuses
        .iter()
        .map(|(d, s)| Slo {
            name: &d.name,
            service: &d.service,
            feature: d.feature.pattern(),
            sli: d.sli.name(),
            threshold_seconds: d.sli.threshold_nanos().map(|n| n as f64 / 1e9),
            objective: d.objective,
            window: duration_name(d.window),
            description: d.description.as_deref(),
            labels: &d.labels,
            sli_value: s.sli,
            total: s.window.total,
            bad: s.window.bad,
            error_budget_remaining: s.budget_remaining,
            error_budget_consumed: s.budget_consumed(),
            burn_rates: Ordered(
                s.burn_rates
                    .iter()
                    .map(|(w, b)| (duration_name(*w), *b))
                    .collect(),
            ),
            alert: s.alert.name(),
            firing: s.firing.iter().map(|f| f.name()).collect(),
            alert_reasons: &s.reasons,
            exhaustion_eta_seconds: s.exhaustion_eta_seconds,
        })
        .collect();
    serde_json::to_vec(&Response {
        evaluated_at_unix_nano: r.evaluated_at_unix_nanos,
        late_spans: r.late_spans,
        slos,
    })
    .unwrap_or_default()
}

/// The labels of an SLO's series: `slo` then its own labels, as `name="value"` pairs.
fn slo_labels(d: &SloDef) -> String {
    use super::prometheus::escaped;
    let mut out = format!("slo=\"{}\"", escaped(&d.name));
    for (k, v) in &d.labels {
        out.push_str(&format!(",{k}=\"{}\"", escaped(v)));
    }
    out
}

/// Writes the `slo_*` series (only when SLOs are configured; `otel_sli_late_spans_total`
/// is always written).
pub fn prometheus(out: &mut String, report: &Report<'_>) {
    use super::prometheus::{float, header};
    use std::fmt::Write;
    let SloReport {
        late_spans: late,
        statuses: all,
        ..
    } = report.slos();
    header(
        out,
        "otel_sli_late_spans_total",
        "counter",
        "Entry spans of an SLO that arrived more than slo.max_lateness after they ended; left out of SLO windows.",
    );
    let _ = writeln!(out, "otel_sli_late_spans_total {late}");
    if all.is_empty() {
        return;
    }
    let labelled: Vec<(String, &Status, &SloDef)> =
        all.iter().map(|(d, s)| (slo_labels(d), s, d)).collect();
    let gauge = |out: &mut String,
                 name: &str,
                 help: &str,
                 value: &dyn Fn(&SloDef, &Status) -> Option<f64>| {
        header(out, name, "gauge", help);
        for (l, s, d) in &labelled {
            if let Some(v) = value(d, s) {
                let _ = writeln!(out, "{name}{{{l}}} {}", float(v));
            }
        }
    };
    gauge(
        out,
        "slo_objective_ratio",
        "Target fraction of good requests.",
        &|d, _| Some(d.objective),
    );
    gauge(
        out,
        "slo_sli_ratio",
        "Good ÷ total requests over the SLO window (absent without requests).",
        &|_, s| s.sli,
    );
    gauge(
        out,
        "slo_error_budget_remaining_ratio",
        "1 − bad ÷ ((1 − objective) × total) over the SLO window; negative once overspent.",
        &|_, s| s.budget_remaining,
    );
    gauge(
        out,
        "slo_window_requests",
        "Requests counted over the SLO window.",
        &|_, s| Some(s.window.total as f64),
    );
    gauge(
        out,
        "slo_window_bad_requests",
        "Bad requests counted over the SLO window.",
        &|_, s| Some(s.window.bad as f64),
    );
    header(
        out,
        "slo_burn_rate",
        "gauge",
        "Bad ratio over the window ÷ (1 − objective); 1 spends the budget exactly over the SLO window.",
    );
    for (l, s, _) in &labelled {
        for (w, b) in &s.burn_rates {
            if let Some(b) = b {
                let _ = writeln!(
                    out,
                    "slo_burn_rate{{{l},window=\"{}\"}} {}",
                    duration_name(*w),
                    float(*b)
                );
            }
        }
    }
    header(
        out,
        "slo_alert_active",
        "gauge",
        "1 while a multi-window burn-rate rule of the severity fires.",
    );
    for (l, s, _) in &labelled {
        for sev in [Severity::Page, Severity::Ticket] {
            let _ = writeln!(
                out,
                "slo_alert_active{{{l},severity=\"{}\"}} {}",
                sev.name(),
                u8::from(s.firing.contains(&sev))
            );
        }
    }
    header(
        out,
        "slo_data_sufficient",
        "gauge",
        "0 when the SLO has no data or its data is insufficient (completeness gaps, too few requests).",
    );
    for (l, s, _) in &labelled {
        let ok = s.window.total > 0 && s.reasons.is_empty();
        let _ = writeln!(out, "slo_data_sufficient{{{l}}} {}", u8::from(ok));
    }
}
