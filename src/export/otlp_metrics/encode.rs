//! Turns a read-model [`Report`] (series and SLO statuses) into one
//! `ExportMetricsServiceRequest`. Plain synchronous code: the [`Encoder`] remembers, per
//! series, what it exported last (start time, totals) so it can give cumulative points
//! stable start times, recognise series that were reset (expired and recreated), and compute
//! deltas. It never touches the network.

use super::config::{HistogramMode, OtlpMetricsConfig, Temporality};
use crate::report::Report;
use crate::sli::exemplar::Exemplar as Example;
use crate::sli::series::SeriesSnapshot;
use crate::slo::def::{duration_name, Severity};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::HashMap;
use std::sync::Arc;

/// Instrumentation scope name (and `service.name` of the resource).
pub const SCOPE: &str = "otel-sli";

/// Most buckets of an exported exponential histogram (the OpenTelemetry SDKs' default
/// `max_size`); the scale is the finest at which all exported bounds fit.
pub const MAX_EXPONENTIAL_BUCKETS: i32 = 160;

/// Label values of a series: service, feature, then dimensions.
type Labels = Arc<[Box<str>]>;

/// What was exported for one series last time.
#[derive(Debug)]
struct Last {
    /// The labels of the shard's series object when last seen. A shard keeps the same
    /// allocation for as long as the series lives, so a different one with equal values
    /// means the series expired and was created anew (its totals restarted from zero).
    ident: Labels,
    /// Start time of its cumulative points.
    start: u64,
    totals: Totals,
    /// Export generation in which it was last seen.
    seen: u64,
}

/// A series' all-time totals.
#[derive(Clone, Debug, Default, PartialEq)]
struct Totals {
    requests: f64,
    errors: f64,
    /// Requests in the histogram (sum of `buckets`).
    count: u64,
    sum_ns: u128,
    /// Non-cumulative, one per exported bound plus `+Inf`.
    buckets: Box<[u64]>,
}

impl Totals {
    fn of(s: &SeriesSnapshot) -> Self {
        Self {
            requests: s.est_requests_total,
            errors: s.est_errors_total,
            count: s.buckets.iter().sum(),
            sum_ns: s.duration_sum_ns,
            buckets: s.buckets.clone(),
        }
    }

    /// True when any total is below `before`'s: the series started again from zero.
    fn went_down_from(&self, before: &Totals) -> bool {
        self.requests < before.requests
            || self.errors < before.errors
            || self.count < before.count
            || self.sum_ns < before.sum_ns
            || self.buckets.len() != before.buckets.len()
            || self
                .buckets
                .iter()
                .zip(before.buckets.iter())
                .any(|(a, b)| a < b)
    }

    /// `self − before` (callers make sure nothing went down).
    fn minus(&self, before: &Totals) -> Totals {
        Totals {
            requests: (self.requests - before.requests).max(0.0),
            errors: (self.errors - before.errors).max(0.0),
            count: self.count - before.count,
            sum_ns: self.sum_ns - before.sum_ns,
            buckets: self
                .buckets
                .iter()
                .zip(before.buckets.iter())
                .map(|(a, b)| a - b)
                .collect(),
        }
    }
}

/// Exponential buckets the explicit buckets map onto: one scale for the whole stream (so
/// backends never have to rescale), and for each explicit bucket the exponential index it
/// is reported in.
#[derive(Clone, Debug, PartialEq)]
pub struct ExponentialMapping {
    /// OTLP scale: base = 2^(2^−scale).
    pub scale: i32,
    /// Per explicit bucket (bounds then `+Inf`), the exponential bucket index.
    pub index: Vec<i32>,
}

/// Index of the exponential bucket holding `v` (> 0) at `scale`: buckets are
/// `(base^i, base^(i+1)]`, upper bound inclusive as in the OTLP definition.
pub fn exponential_index(v: f64, scale: i32) -> i32 {
    let x = v.log2() * 2f64.powi(scale);
    // Exact powers of the base land on an integer and belong to the bucket below.
    (x.ceil() - 1.0) as i32
}

impl ExponentialMapping {
    /// The finest scale (at most 20) at which the bounds span at most
    /// [`MAX_EXPONENTIAL_BUCKETS`] buckets, plus one for requests above the last bound.
    pub fn new(bounds_ns: &[u64]) -> Self {
        let bounds: Vec<f64> = bounds_ns
            .iter()
            .filter(|b| **b > 0)
            .map(|b| *b as f64 / 1e9)
            .collect();
        let (Some(&lo), Some(&hi)) = (bounds.first(), bounds.last()) else {
            // Configuration requires a bound; without one everything is "somewhere above 0".
            return Self {
                scale: 0,
                index: vec![0; bounds_ns.len() + 1],
            };
        };
        let scale = (-10..=20)
            .rev()
            .find(|&s| {
                exponential_index(hi, s) + 1 - exponential_index(lo, s) < MAX_EXPONENTIAL_BUCKETS
            })
            .unwrap_or(-10);
        let mut index: Vec<i32> = bounds_ns
            .iter()
            .map(|b| exponential_index((*b).max(1) as f64 / 1e9, scale))
            .collect();
        index.push(exponential_index(hi, scale) + 1);
        Self { scale, index }
    }

    /// The exponential histogram buckets for explicit bucket counts: each explicit bucket's
    /// count goes to the exponential bucket holding its upper bound (`+Inf`: the bucket just
    /// above the last bound). Leading and trailing empty buckets are trimmed.
    pub fn buckets(&self, explicit: &[u64]) -> Buckets {
        let mut pairs: Vec<(i32, u64)> = self
            .index
            .iter()
            .zip(explicit.iter())
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (*i, *c))
            .collect();
        pairs.sort_unstable_by_key(|(i, _)| *i);
        let (Some(first), Some(last)) = (pairs.first(), pairs.last()) else {
            return Buckets::default();
        };
        let offset = first.0;
        let mut counts = vec![0u64; usize::try_from(last.0 - offset).unwrap_or(0) + 1];
        for (i, c) in &pairs {
            if let Some(slot) = counts.get_mut(usize::try_from(i - offset).unwrap_or(0)) {
                *slot += c;
            }
        }
        Buckets {
            offset,
            bucket_counts: counts,
        }
    }
}

/// Builds the export requests. Keeps, per series present in the last view, its start time
/// and last totals; series absent from a view are forgotten, so memory follows the
/// pipeline's series count.
#[derive(Debug)]
pub struct Encoder {
    temporality: Temporality,
    histogram: HistogramMode,
    resource: Resource,
    series: HashMap<Labels, Last>,
    /// Time of the previous export; `None` before the first.
    last_export: Option<u64>,
    generation: u64,
    exponential: Option<ExponentialMapping>,
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

fn double(v: f64) -> Option<number_data_point::Value> {
    Some(number_data_point::Value::AsDouble(v))
}

fn metric(name: &str, description: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.to_string(),
        description: description.to_string(),
        unit: unit.to_string(),
        metadata: Vec::new(),
        data: Some(data),
    }
}

/// Data points in a request (the delivery counters' items).
pub fn data_points(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

/// An OTLP exemplar of request `e` with `value`: its trace and span ids and end time.
fn exemplar(e: &Example, value: f64) -> Exemplar {
    Exemplar {
        filtered_attributes: Vec::new(),
        time_unix_nano: e.end_unix_nanos,
        value: Some(exemplar::Value::AsDouble(value)),
        span_id: e.span_id.to_vec(),
        trace_id: e.trace_id.to_vec(),
    }
}

impl Encoder {
    /// An encoder with nothing exported yet.
    pub fn new(cfg: &OtlpMetricsConfig) -> Self {
        let mut attrs = vec![string_kv("service.name", SCOPE)];
        for (k, v) in &cfg.resource_attributes {
            attrs.retain(|a| a.key != *k);
            attrs.push(string_kv(k, v));
        }
        Self {
            temporality: cfg.temporality,
            histogram: cfg.histogram,
            resource: Resource {
                attributes: attrs,
                ..Resource::default()
            },
            series: HashMap::new(),
            last_export: None,
            generation: 0,
            exponential: None,
        }
    }

    /// Series remembered (those in the last encoded view).
    pub fn tracked_series(&self) -> usize {
        self.series.len()
    }

    fn temporality(&self) -> i32 {
        match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
            Temporality::Delta => AggregationTemporality::Delta as i32,
        }
    }

    /// Encodes the series and SLO statuses of `report` as of `now_unix_nanos`.
    ///
    /// Start times: a series present at the first export starts at the process start; one
    /// first seen later starts at the previous export; a series whose totals went down (or
    /// whose shard object was replaced) was reset and starts again at the previous export.
    /// Delta points always cover the previous export to now, except a series' first point
    /// at the first export, which covers process start to now.
    pub fn encode(
        &mut self,
        report: &Report<'_>,
        now_unix_nanos: u64,
    ) -> ExportMetricsServiceRequest {
        let (view, pipeline) = (report.view(), report.pipeline());
        let settings = pipeline.settings();
        let process_start = match settings.started_unix_nanos {
            0 => now_unix_nanos,
            s => s.min(now_unix_nanos),
        };
        let since = self.last_export.unwrap_or(process_start);
        self.generation += 1;
        let generation = self.generation;
        let names = pipeline.classifier().label_names();
        let bounds: Vec<f64> = settings.bounds_ns.iter().map(|b| *b as f64 / 1e9).collect();
        if self.histogram == HistogramMode::Exponential && self.exponential.is_none() {
            self.exponential = Some(ExponentialMapping::new(&settings.bounds_ns));
        }

        let mut requests = Vec::with_capacity(view.series.len());
        let mut errors = Vec::with_capacity(view.series.len());
        let mut explicit = Vec::new();
        let mut exponential = Vec::new();
        for s in &view.series {
            let cur = Totals::of(s);
            let (start, value) = self.advance(s, cur, since, generation);
            let attributes: Vec<KeyValue> = names
                .iter()
                .zip(s.labels.iter())
                .enumerate()
                .filter(|(i, (_, v))| *i < 2 || !v.is_empty())
                .map(|(_, (n, v))| string_kv(n, v))
                .collect();
            let point = |v: f64| NumberDataPoint {
                attributes: attributes.clone(),
                start_time_unix_nano: start,
                time_unix_nano: now_unix_nanos,
                value: double(v),
                ..NumberDataPoint::default()
            };
            requests.push(point(value.requests));
            // Example requests that ended since the previous export.
            let new = |e: &&Example| e.end_unix_nanos > since;
            let examples = s.exemplars.as_deref();
            let bad = examples.and_then(|x| x.latest_bad()).filter(new);
            errors.push(NumberDataPoint {
                exemplars: bad.map(|e| exemplar(e, 1.0)).into_iter().collect(),
                ..point(value.errors)
            });
            let latency_examples: Vec<Exemplar> = examples
                .into_iter()
                .flat_map(|x| x.by_bucket().flatten())
                .filter(new)
                .map(|e| exemplar(e, e.duration_ns as f64 / 1e9))
                .collect();
            let sum = Some(value.sum_ns as f64 / 1e9);
            match &self.exponential {
                Some(map) if self.histogram == HistogramMode::Exponential => {
                    exponential.push(ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now_unix_nanos,
                        count: value.count,
                        sum,
                        scale: map.scale,
                        zero_count: 0,
                        positive: Some(map.buckets(&value.buckets)),
                        negative: None,
                        exemplars: latency_examples,
                        ..ExponentialHistogramDataPoint::default()
                    });
                }
                _ => explicit.push(HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: now_unix_nanos,
                    count: value.count,
                    sum,
                    bucket_counts: value.buckets.to_vec(),
                    explicit_bounds: bounds.clone(),
                    exemplars: latency_examples,
                    ..HistogramDataPoint::default()
                }),
            }
        }
        // Series gone from the view are forgotten; if they come back they start afresh.
        self.series.retain(|_, l| l.seen == generation);
        self.last_export = Some(now_unix_nanos);

        let mut metrics = if view.series.is_empty() {
            Vec::new()
        } else {
            self.sli_metrics(requests, errors, explicit, exponential)
        };
        slo_gauges(&mut metrics, report, now_unix_nanos);
        self.request(metrics)
    }

    /// The `sli.requests`, `sli.errors` and `sli.latency` metrics of the points.
    fn sli_metrics(
        &self,
        requests: Vec<NumberDataPoint>,
        errors: Vec<NumberDataPoint>,
        explicit: Vec<HistogramDataPoint>,
        exponential: Vec<ExponentialHistogramDataPoint>,
    ) -> Vec<Metric> {
        let temporality = self.temporality();
        let mut metrics = Vec::new();
        metrics.push(metric(
            "sli.requests",
            "Requests per feature: entry spans, each weighted by its sampling adjusted count (exact when nothing is sampled).",
            "{request}",
            Data::Sum(Sum {
                data_points: requests,
                aggregation_temporality: temporality,
                is_monotonic: true,
            }),
        ));
        metrics.push(metric(
            "sli.errors",
            "Bad requests per feature, by the outcome rules, weighted like sli.requests.",
            "{request}",
            Data::Sum(Sum {
                data_points: errors,
                aggregation_temporality: temporality,
                is_monotonic: true,
            }),
        ));
        let latency = if self.histogram == HistogramMode::Exponential {
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: exponential,
                aggregation_temporality: temporality,
            })
        } else {
            Data::Histogram(Histogram {
                data_points: explicit,
                aggregation_temporality: temporality,
            })
        };
        metrics.push(metric(
            "sli.latency",
            "Request duration (span end - start), one count per entry span received.",
            "s",
            latency,
        ));
        metrics
    }

    /// The request carrying `metrics`, with the exporter's resource and scope.
    fn request(&self, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// Updates one series' memory; returns the start time and the values to export
    /// (totals for cumulative, differences for delta).
    fn advance(
        &mut self,
        s: &SeriesSnapshot,
        cur: Totals,
        since: u64,
        generation: u64,
    ) -> (u64, Totals) {
        let cumulative = self.temporality == Temporality::Cumulative;
        match self.series.get_mut(&s.labels) {
            Some(last) => {
                // The overflow series is merged from several shards' objects, so only its
                // totals can tell a reset (it never expires anyway).
                let replaced = !s.is_overflow() && !Arc::ptr_eq(&last.ident, &s.labels);
                let reset = replaced || cur.went_down_from(&last.totals);
                let out = if reset {
                    last.start = since;
                    (since, cur.clone())
                } else if cumulative {
                    (last.start, cur.clone())
                } else {
                    (since, cur.minus(&last.totals))
                };
                last.ident = Arc::clone(&s.labels);
                last.totals = cur;
                last.seen = generation;
                out
            }
            None => {
                self.series.insert(
                    Arc::clone(&s.labels),
                    Last {
                        ident: Arc::clone(&s.labels),
                        start: since,
                        totals: cur.clone(),
                        seen: generation,
                    },
                );
                (since, cur)
            }
        }
    }
}

/// The SLO gauges, from the same evaluation as `/api/v1/slos`.
fn slo_gauges(metrics: &mut Vec<Metric>, report: &Report<'_>, now: u64) {
    let all = report.slos().statuses;
    if all.is_empty() {
        return;
    }
    let attrs: Vec<Vec<KeyValue>> = all
        .iter()
        .map(|(d, _)| {
            std::iter::once(string_kv("slo", &d.name))
                .chain(d.labels.iter().map(|(k, v)| string_kv(k, v)))
                .collect()
        })
        .collect();
    let point = |a: &[KeyValue], extra: Option<KeyValue>, v: f64| NumberDataPoint {
        attributes: a.iter().cloned().chain(extra).collect(),
        time_unix_nano: now,
        value: double(v),
        ..NumberDataPoint::default()
    };
    // Unit `1` for ratios (Prometheus' OTLP translation adds `_ratio`, giving the same
    // names as `/metrics`); none for the burn rate and the alert state, which are not
    // ratios of a whole.
    let gauge = |name: &str, unit: &str, description: &str, points: Vec<NumberDataPoint>| {
        metric(
            name,
            description,
            unit,
            Data::Gauge(Gauge {
                data_points: points,
            }),
        )
    };
    let simple = |value: &dyn Fn(usize) -> Option<f64>| -> Vec<NumberDataPoint> {
        (0..all.len())
            .filter_map(|i| value(i).map(|v| point(&attrs[i], None, v)))
            .collect()
    };
    metrics.push(gauge(
        "slo.objective",
        "1",
        "Target fraction of good requests.",
        simple(&|i| Some(all[i].0.objective)),
    ));
    metrics.push(gauge(
        "slo.sli",
        "1",
        "Good ÷ total requests over the SLO window (absent without requests).",
        simple(&|i| all[i].1.sli),
    ));
    metrics.push(gauge(
        "slo.error_budget.remaining",
        "1",
        "1 − bad ÷ ((1 − objective) × total) over the SLO window; negative once overspent.",
        simple(&|i| all[i].1.budget_remaining),
    ));
    let mut burn = Vec::new();
    let mut alert = Vec::new();
    for (i, (_, st)) in all.iter().enumerate() {
        for (w, b) in &st.burn_rates {
            if let Some(b) = b {
                burn.push(point(
                    &attrs[i],
                    Some(string_kv("window", &duration_name(*w))),
                    *b,
                ));
            }
        }
        for sev in [Severity::Page, Severity::Ticket] {
            alert.push(point(
                &attrs[i],
                Some(string_kv("severity", sev.name())),
                f64::from(u8::from(st.firing.contains(&sev))),
            ));
        }
    }
    metrics.push(gauge(
        "slo.burn_rate",
        "",
        "Bad ratio over the window ÷ (1 − objective); 1 spends the budget exactly over the SLO window.",
        burn,
    ));
    metrics.push(gauge(
        "slo.alert.active",
        "",
        "1 while a multi-window burn-rate rule of the severity fires.",
        alert,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::pipeline::snapshot::View;
    use crate::pipeline::Pipeline;
    use crate::sli::series::Flagged;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    const T0: u64 = 1_700_000_000_000_000_000;
    const S: u64 = 1_000_000_000;

    const YAML: &str = r#"
sli:
  dimensions: [deployment.environment]
  latency:
    buckets: [0.1, 0.5, 1]
slos:
  - name: pay-availability
    service: pay
    feature: "POST /pay"
    objective: 99.9
    labels: { team: payments }
"#;

    /// Encodes `view` with the SLO statuses of `p` (default thresholds).
    fn enc(e: &mut Encoder, view: View, p: &Pipeline, now: u64) -> ExportMetricsServiceRequest {
        let reader = crate::report::Reader::new(p.clone(), crate::report::Thresholds::default());
        e.encode(&reader.report_of(view), now)
    }

    fn pipeline(yaml: &str) -> Pipeline {
        let c = crate::settings::parse(yaml, |_| None).expect("config");
        crate::app::build_pipeline(&c, Arc::new(ManualClock::new(T0))).expect("pipeline")
    }

    fn cfg(temporality: Temporality, histogram: HistogramMode) -> OtlpMetricsConfig {
        let mut c = super::super::validate(&super::super::config::RawOtlpMetrics {
            endpoint: Some("http://c:4317".into()),
            resource_attributes: Some([("k8s.node.name".to_string(), "n1".to_string())].into()),
            ..Default::default()
        })
        .expect("valid");
        c.temporality = temporality;
        c.histogram = histogram;
        c
    }

    /// A series with `n` requests (`bad` of them bad) spread as `buckets`.
    fn series(labels: &Labels, n: u64, bad: u64, buckets: [u64; 4]) -> Arc<SeriesSnapshot> {
        assert_eq!(buckets.iter().sum::<u64>(), n);
        Arc::new(SeriesSnapshot {
            labels: Arc::clone(labels),
            requests_total: n,
            errors_total: bad,
            est_requests_total: n as f64,
            est_errors_total: bad as f64,
            duration_sum_ns: u128::from(n) * 200_000_000,
            buckets: buckets.into(),
            windows: Default::default(),
            unattributed: Flagged::default(),
            metric_requests_total: 0,
            window_hists: None,
            overflow: false,
            exemplars: None,
        })
    }

    fn labels(v: &[&str]) -> Labels {
        v.iter().map(|s| Box::from(*s)).collect()
    }

    fn view(series: Vec<Arc<SeriesSnapshot>>) -> View {
        View {
            series,
            ..View::default()
        }
    }

    fn metrics(req: &ExportMetricsServiceRequest) -> &[Metric] {
        &req.resource_metrics[0].scope_metrics[0].metrics
    }

    fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        metrics(req)
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    fn sum_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
        match &find(req, name).data {
            Some(Data::Sum(s)) => &s.data_points,
            other => panic!("{name} is not a sum: {other:?}"),
        }
    }

    fn gauge_points<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
        match &find(req, name).data {
            Some(Data::Gauge(g)) => &g.data_points,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    fn hist_points(req: &ExportMetricsServiceRequest) -> &[HistogramDataPoint] {
        match &find(req, "sli.latency").data {
            Some(Data::Histogram(h)) => &h.data_points,
            other => panic!("not an explicit histogram: {other:?}"),
        }
    }

    fn value(p: &NumberDataPoint) -> f64 {
        match p.value {
            Some(Value::AsDouble(v)) => v,
            other => panic!("not a double: {other:?}"),
        }
    }

    fn attrs(a: &[KeyValue]) -> Vec<(String, String)> {
        a.iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => panic!("not a string: {other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn counters_histogram_resource_and_attributes() {
        let p = pipeline(YAML);
        let mut e = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Explicit));
        let a = labels(&["pay", "POST /pay", "prod"]);
        let b = labels(&["pay", "GET /status", ""]);
        let req = enc(
            &mut e,
            view(vec![
                series(&a, 10, 2, [5, 3, 1, 1]),
                series(&b, 4, 0, [4, 0, 0, 0]),
            ]),
            &p,
            T0 + 15 * S,
        );
        let rm = &req.resource_metrics[0];
        assert_eq!(
            attrs(&rm.resource.as_ref().expect("resource").attributes),
            kv(&[("service.name", "otel-sli"), ("k8s.node.name", "n1")])
        );
        let scope = rm.scope_metrics[0].scope.as_ref().expect("scope");
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("otel-sli", env!("CARGO_PKG_VERSION"))
        );

        let requests = find(&req, "sli.requests");
        assert_eq!(requests.unit, "{request}");
        let Some(Data::Sum(sum)) = &requests.data else {
            panic!("sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let pts = sum_points(&req, "sli.requests");
        assert_eq!(
            attrs(&pts[0].attributes),
            kv(&[
                ("service", "pay"),
                ("feature", "POST /pay"),
                ("deployment_environment", "prod")
            ])
        );
        assert_eq!(
            attrs(&pts[1].attributes),
            kv(&[("service", "pay"), ("feature", "GET /status")]),
            "an empty dimension is left out"
        );
        assert_eq!((value(&pts[0]), value(&pts[1])), (10.0, 4.0));
        assert_eq!(value(&sum_points(&req, "sli.errors")[0]), 2.0);
        for p in pts {
            assert_eq!(
                (p.start_time_unix_nano, p.time_unix_nano),
                (T0, T0 + 15 * S)
            );
        }

        assert_eq!(find(&req, "sli.latency").unit, "s");
        let h = &hist_points(&req)[0];
        assert_eq!(h.explicit_bounds, vec![0.1, 0.5, 1.0]);
        assert_eq!(h.bucket_counts, vec![5, 3, 1, 1]);
        assert_eq!(h.count, 10);
        assert_eq!(h.sum, Some(2.0));
        // Two series × three metrics, plus the objective and two alert states (no SLO data yet).
        assert_eq!(data_points(&req), 2 * 3 + 1 + 2);
        p.shutdown();
    }

    #[test]
    fn cumulative_start_times_follow_first_sight_and_resets() {
        let p = pipeline(YAML);
        let mut e = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Explicit));
        let a = labels(&["pay", "POST /pay", "prod"]);
        let b = labels(&["pay", "GET /status", ""]);
        let start = |req: &ExportMetricsServiceRequest, i: usize| {
            sum_points(req, "sli.requests")[i].start_time_unix_nano
        };
        let r1 = enc(
            &mut e,
            view(vec![series(&a, 1, 0, [1, 0, 0, 0])]),
            &p,
            T0 + 15 * S,
        );
        assert_eq!(
            start(&r1, 0),
            T0,
            "present at the first export: process start"
        );
        let r2 = enc(
            &mut e,
            view(vec![
                series(&a, 3, 0, [3, 0, 0, 0]),
                series(&b, 1, 0, [1, 0, 0, 0]),
            ]),
            &p,
            T0 + 30 * S,
        );
        assert_eq!(start(&r2, 0), T0, "unchanged while it lives");
        assert_eq!(
            start(&r2, 1),
            T0 + 15 * S,
            "first seen later: the previous export"
        );
        // `a` went down: reset. `b` was recreated (new shard object) with a higher total.
        let b2 = labels(&["pay", "GET /status", ""]);
        let r3 = enc(
            &mut e,
            view(vec![
                series(&a, 2, 0, [2, 0, 0, 0]),
                series(&b2, 5, 0, [5, 0, 0, 0]),
            ]),
            &p,
            T0 + 45 * S,
        );
        assert_eq!(start(&r3, 0), T0 + 30 * S, "total went down: restarted");
        assert_eq!(start(&r3, 1), T0 + 30 * S, "new shard object: restarted");
        assert_eq!(hist_points(&r3)[0].start_time_unix_nano, T0 + 30 * S);
        let r4 = enc(
            &mut e,
            view(vec![series(&a, 2, 0, [2, 0, 0, 0])]),
            &p,
            T0 + 60 * S,
        );
        assert_eq!(start(&r4, 0), T0 + 30 * S);
        assert_eq!(e.tracked_series(), 1, "b is absent and forgotten");
        let r5 = enc(
            &mut e,
            view(vec![
                series(&a, 2, 0, [2, 0, 0, 0]),
                series(&b2, 5, 0, [5, 0, 0, 0]),
            ]),
            &p,
            T0 + 75 * S,
        );
        assert_eq!(
            start(&r5, 1),
            T0 + 60 * S,
            "back after an absence: starts afresh"
        );
        p.shutdown();
    }

    #[test]
    fn deltas_add_up_to_the_cumulative_total() {
        let p = pipeline(YAML);
        let mut d = Encoder::new(&cfg(Temporality::Delta, HistogramMode::Explicit));
        let mut c = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Explicit));
        let a = labels(&["pay", "POST /pay", "prod"]);
        let steps = [
            series(&a, 4, 1, [2, 1, 1, 0]),
            series(&a, 9, 3, [5, 2, 1, 1]),
            series(&a, 17, 4, [9, 4, 2, 2]),
        ];
        let (mut requests, mut errors, mut count, mut sum) = (0.0, 0.0, 0, 0.0);
        let mut buckets = vec![0u64; 4];
        let mut last = None;
        for (i, s) in steps.iter().enumerate() {
            let now = T0 + (i as u64 + 1) * 15 * S;
            let req = enc(&mut d, view(vec![Arc::clone(s)]), &p, now);
            last = Some(enc(&mut c, view(vec![Arc::clone(s)]), &p, now));
            let pt = &sum_points(&req, "sli.requests")[0];
            let expect_start = if i == 0 { T0 } else { now - 15 * S };
            assert_eq!(pt.start_time_unix_nano, expect_start, "export {i}");
            let Some(Data::Sum(s)) = &find(&req, "sli.requests").data else {
                panic!("sum")
            };
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Delta as i32
            );
            requests += value(pt);
            errors += value(&sum_points(&req, "sli.errors")[0]);
            let h = &hist_points(&req)[0];
            assert_eq!(h.start_time_unix_nano, expect_start);
            count += h.count;
            sum += h.sum.expect("sum");
            for (t, b) in buckets.iter_mut().zip(&h.bucket_counts) {
                *t += b;
            }
        }
        let last = last.expect("exported");
        let total = &hist_points(&last)[0];
        assert_eq!(requests, value(&sum_points(&last, "sli.requests")[0]));
        assert_eq!(errors, value(&sum_points(&last, "sli.errors")[0]));
        assert_eq!((requests, errors), (17.0, 4.0));
        assert_eq!(count, total.count);
        assert_eq!(buckets, total.bucket_counts);
        assert!((sum - total.sum.expect("sum")).abs() < 1e-9);
        p.shutdown();
    }

    #[test]
    fn a_reset_in_delta_mode_exports_the_new_total() {
        let p = pipeline(YAML);
        let mut d = Encoder::new(&cfg(Temporality::Delta, HistogramMode::Explicit));
        let a = labels(&["pay", "POST /pay", "prod"]);
        enc(
            &mut d,
            view(vec![series(&a, 9, 0, [9, 0, 0, 0])]),
            &p,
            T0 + 15 * S,
        );
        let req = enc(
            &mut d,
            view(vec![series(&a, 2, 0, [2, 0, 0, 0])]),
            &p,
            T0 + 30 * S,
        );
        let pt = &sum_points(&req, "sli.requests")[0];
        assert_eq!((value(pt), pt.start_time_unix_nano), (2.0, T0 + 15 * S));
        let req = enc(
            &mut d,
            view(vec![series(&a, 5, 0, [5, 0, 0, 0])]),
            &p,
            T0 + 45 * S,
        );
        assert_eq!(value(&sum_points(&req, "sli.requests")[0]), 3.0);
        p.shutdown();
    }

    #[test]
    fn slo_gauges_carry_the_slo_and_its_labels() {
        let p = pipeline(YAML);
        let mut e = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Explicit));
        let req = enc(&mut e, View::default(), &p, T0 + 15 * S);
        assert!(
            metrics(&req).iter().all(|m| m.name.starts_with("slo.")),
            "no series, no sli.* metrics"
        );
        assert_eq!(find(&req, "slo.objective").unit, "1");
        assert_eq!(find(&req, "slo.burn_rate").unit, "");
        let objective = &gauge_points(&req, "slo.objective")[0];
        assert_eq!(
            attrs(&objective.attributes),
            kv(&[("slo", "pay-availability"), ("team", "payments")])
        );
        assert!((value(objective) - 0.999).abs() < 1e-12);
        assert_eq!(objective.time_unix_nano, T0 + 15 * S);
        let alerts = gauge_points(&req, "slo.alert.active");
        let severities: Vec<String> = alerts
            .iter()
            .map(|a| attrs(&a.attributes).last().expect("severity").1.clone())
            .collect();
        assert_eq!(severities, ["page", "ticket"]);
        assert!(alerts.iter().all(|a| value(a) == 0.0));
        assert!(
            gauge_points(&req, "slo.sli").is_empty(),
            "no requests: no SLI"
        );
        assert!(gauge_points(&req, "slo.burn_rate").is_empty());
        for name in ["slo.error_budget.remaining", "slo.burn_rate"] {
            find(&req, name);
        }
        p.shutdown();

        let p = pipeline("");
        let mut e = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Explicit));
        let req = enc(&mut e, View::default(), &p, T0 + 15 * S);
        assert!(metrics(&req).is_empty(), "no SLOs, no series: nothing");
        assert_eq!(data_points(&req), 0);
        p.shutdown();
    }

    #[test]
    fn exponential_mode_maps_each_bucket_to_the_one_holding_its_bound() {
        let p = pipeline(YAML);
        let mut e = Encoder::new(&cfg(Temporality::Cumulative, HistogramMode::Exponential));
        let a = labels(&["pay", "POST /pay", "prod"]);
        let req = enc(
            &mut e,
            view(vec![series(&a, 10, 0, [5, 3, 1, 1])]),
            &p,
            T0 + 15 * S,
        );
        let Some(Data::ExponentialHistogram(h)) = &find(&req, "sli.latency").data else {
            panic!("exponential")
        };
        let pt = &h.data_points[0];
        assert_eq!((pt.count, pt.sum, pt.zero_count), (10, Some(2.0), 0));
        let pos = pt.positive.as_ref().expect("positive");
        assert_eq!(pos.bucket_counts.iter().sum::<u64>(), 10);
        let base = 2f64.powf(2f64.powi(-pt.scale));
        // Bucket i covers (base^i, base^(i+1)].
        let upper = |i: i32| base.powi(i + 1);
        let lower = |i: i32| base.powi(i);
        let at = |v: f64| {
            let i = exponential_index(v, pt.scale);
            assert!(
                lower(i) < v * (1.0 + 1e-12) && v <= upper(i) * (1.0 + 1e-12),
                "{v} in bucket {i}"
            );
            pos.bucket_counts[usize::try_from(i - pos.offset).expect("in range")]
        };
        assert_eq!((at(0.1), at(0.5), at(1.0)), (5, 3, 1));
        let last = pos.offset + pos.bucket_counts.len() as i32 - 1;
        assert_eq!(pos.bucket_counts[pos.bucket_counts.len() - 1], 1, "+Inf");
        assert!(
            lower(last) >= 1.0 * (1.0 - 1e-12),
            "+Inf bucket lies above the last bound"
        );
        p.shutdown();
    }

    #[test]
    fn exponential_scale_fits_the_bounds_in_160_buckets() {
        let ns = |s: &[f64]| s.iter().map(|v| (v * 1e9) as u64).collect::<Vec<_>>();
        let default = ExponentialMapping::new(&ns(&crate::settings::DEFAULT_BUCKETS));
        assert_eq!(default.scale, 3);
        let span = default.index.last().expect("inf") - default.index[0] + 1;
        assert!(span <= MAX_EXPONENTIAL_BUCKETS, "{span}");
        let mut distinct = default.index.clone();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            default.index.len(),
            "default bounds stay apart"
        );
        assert_eq!(ExponentialMapping::new(&ns(&[0.25])).scale, 20);
        let wide = ExponentialMapping::new(&ns(&[1e-6, 3600.0]));
        assert!(wide.index.last().expect("inf") - wide.index[0] < MAX_EXPONENTIAL_BUCKETS);
        // Exact powers of two are upper bounds of their bucket.
        assert_eq!(exponential_index(1.0, 0), -1);
        assert_eq!(exponential_index(2.0, 0), 0);
        assert_eq!(exponential_index(2.5, 0), 1);
        assert_eq!(exponential_index(4.0, 1), 3);
        assert_eq!(exponential_index(1.0, -1), -1);
        assert_eq!(exponential_index(4.0, -1), 0);
        assert_eq!(exponential_index(5.0, -1), 1);
    }
}
