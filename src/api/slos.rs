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
    /// Failing requests behind the status, newest first (example requests).
    examples: Vec<super::exemplars::FailingRequest<'a>>,
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
    let names = report.pipeline().classifier().label_names();
    let failing: Vec<_> = r
        .statuses
        .iter()
        .map(|(d, s)| report.slo_examples(d, s))
        .collect();
    let slos = r
        .statuses
        .iter()
        .zip(&failing)
        .map(|((d, s), f)| Slo {
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
            examples: super::exemplars::failing_requests(&names, f),
        })
        .collect();
    serde_json::to_vec(&Response {
        evaluated_at_unix_nano: r.evaluated_at_unix_nanos,
        late_spans: r.late_spans,
        slos,
    })
    .unwrap_or_default()
}

/// The labels of an SLO's series: `slo` then its own labels.
fn slo_labels(d: &SloDef) -> Vec<(&str, &str)> {
    std::iter::once(("slo", d.name.as_str()))
        .chain(d.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .collect()
}

/// Writes the `slo_*` series (only when SLOs are configured; `otel_sli_late_spans_total`
/// is always written).
pub fn prometheus(out: &mut String, report: &Report<'_>) {
    use super::exposition::{family, float, Kind};
    let SloReport {
        late_spans: late,
        statuses: all,
        ..
    } = report.slos();
    family(
        out,
        "otel_sli_late_spans_total",
        Kind::Counter,
        "Entry spans of an SLO that arrived more than slo.max_lateness after they ended; left out of SLO windows.",
    )
    .sample(&[], late);
    if all.is_empty() {
        return;
    }
    type Value = fn(&SloDef, &Status) -> Option<f64>;
    let gauges: [(&str, &str, Value); 5] = [
        (
            "slo_objective_ratio",
            "Target fraction of good requests.",
            |d, _| Some(d.objective),
        ),
        (
            "slo_sli_ratio",
            "Good ÷ total requests over the SLO window (absent without requests).",
            |_, s| s.sli,
        ),
        (
            "slo_error_budget_remaining_ratio",
            "1 − bad ÷ ((1 − objective) × total) over the SLO window; negative once overspent.",
            |_, s| s.budget_remaining,
        ),
        (
            "slo_window_requests",
            "Requests counted over the SLO window.",
            |_, s| Some(s.window.total as f64),
        ),
        (
            "slo_window_bad_requests",
            "Bad requests counted over the SLO window.",
            |_, s| Some(s.window.bad as f64),
        ),
    ];
    for (name, help, value) in gauges {
        let mut f = family(out, name, Kind::Gauge, help);
        for (d, s) in &all {
            if let Some(v) = value(d, s) {
                f.sample(&slo_labels(d), float(v));
            }
        }
    }
    let mut f = family(
        out,
        "slo_burn_rate",
        Kind::Gauge,
        "Bad ratio over the window ÷ (1 − objective); 1 spends the budget exactly over the SLO window.",
    );
    for (d, s) in &all {
        for (w, b) in &s.burn_rates {
            if let Some(b) = b {
                let window = duration_name(*w);
                let mut labels = slo_labels(d);
                labels.push(("window", &window));
                f.sample(&labels, float(*b));
            }
        }
    }
    let mut f = family(
        out,
        "slo_alert_active",
        Kind::Gauge,
        "1 while a multi-window burn-rate rule of the severity fires.",
    );
    for (d, s) in &all {
        for sev in [Severity::Page, Severity::Ticket] {
            let mut labels = slo_labels(d);
            labels.push(("severity", sev.name()));
            f.sample(&labels, u8::from(s.firing.contains(&sev)));
        }
    }
    let mut f = family(
        out,
        "slo_data_sufficient",
        Kind::Gauge,
        "0 when the SLO has no data or its data is insufficient (completeness gaps, too few requests).",
    );
    for (d, s) in &all {
        f.sample(&slo_labels(d), u8::from(s.data_sufficient()));
    }
}
