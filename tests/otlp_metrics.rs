//! OTLP metrics export end to end: spans sent with the OpenTelemetry SDK to a real server,
//! the exporter running against its pipeline with a capturing upstream, and the captured
//! requests decoded with prost: counts, histograms and SLO gauges equal what was sent, in
//! cumulative and delta temporality.

mod common;

use common::TestServer;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Metric, NumberDataPoint,
};
use otel_sli::export::delivery::{Payload, SendError, Upstream};
use otel_sli::export::otlp_metrics::OtlpMetricsExporter;
use otel_sli::telemetry::Signal;
use prost::Message;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// An upstream that keeps every payload.
#[derive(Default)]
struct Capture(Mutex<Vec<Payload>>);

impl Upstream for Capture {
    fn send<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move {
            self.0.lock().expect("capture").push(payload.clone());
            Ok(())
        })
    }
}

impl Capture {
    fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.0
            .lock()
            .expect("capture")
            .iter()
            .map(|p| {
                assert_eq!(p.signal, Some(Signal::Metrics));
                let req = ExportMetricsServiceRequest::decode(p.body.clone()).expect("decodes");
                assert_eq!(
                    p.items,
                    otel_sli::export::otlp_metrics::encode::data_points(&req)
                );
                req
            })
            .collect()
    }
}

use common::sdk_provider as provider;

/// Sends `n` `POST /pay` server spans for `pay` through the SDK's gRPC exporter, every
/// `failed_every`-th failed, each taking `took`, and waits for the export.
async fn send(server: &TestServer, n: usize, failed_every: usize, took: Duration) {
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = provider(&endpoint, "pay");
        let tracer = p.tracer("otlp-metrics-test");
        let end = SystemTime::now();
        for i in 0..n {
            let mut span = tracer
                .span_builder("POST /pay")
                .with_kind(SpanKind::Server)
                .with_start_time(end - took)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", "POST"),
                    KeyValue::new("http.route", "/pay"),
                ])
                .start(&tracer);
            if failed_every > 0 && i % failed_every == 0 {
                span.set_status(Status::error("boom"));
            }
            span.end_with_timestamp(end);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
}

fn attr(p: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    p.iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

fn is_pay(p: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> bool {
    attr(p, "service").as_deref() == Some("pay")
        && attr(p, "feature").as_deref() == Some("POST /pay")
}

/// The `pay` / `POST /pay` point of a sum.
fn pay_sum(req: &ExportMetricsServiceRequest, name: &str) -> Option<(f64, u64, i32)> {
    let Some(Data::Sum(s)) = &metric(req, name)?.data else {
        panic!("{name} is not a sum")
    };
    let p: &NumberDataPoint = s.data_points.iter().find(|p| is_pay(&p.attributes))?;
    let Some(number_data_point::Value::AsDouble(v)) = p.value else {
        panic!("not a double")
    };
    Some((v, p.start_time_unix_nano, s.aggregation_temporality))
}

fn gauge(req: &ExportMetricsServiceRequest, name: &str, slo: &str) -> Option<f64> {
    let Some(Data::Gauge(g)) = &metric(req, name)?.data else {
        panic!("{name} is not a gauge")
    };
    g.data_points
        .iter()
        .find(|p| attr(&p.attributes, "slo").as_deref() == Some(slo))
        .and_then(|p| match p.value {
            Some(number_data_point::Value::AsDouble(v)) => Some(v),
            _ => None,
        })
}

const CUMULATIVE: &str = r#"
sli:
  latency:
    buckets: [0.01, 0.1, 1]
slos:
  - name: pay-availability
    service: pay
    feature: "POST /pay"
    objective: 99
exporters:
  otlp_metrics:
    endpoint: http://127.0.0.1:9
    interval: 1s
    resource_attributes: { k8s.node.name: node-a }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_export_counts_what_was_sent() {
    let config = common::config(CUMULATIVE);
    let cfg = config.otlp_metrics.clone().expect("section validated");
    let server = TestServer::start_with(config).await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let capture = Arc::new(Capture::default());
    let exporter = OtlpMetricsExporter::start(&cfg, reader, capture.clone()).expect("start");

    send(&server, 200, 10, Duration::from_millis(50)).await;
    server.flush().await;
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;

    let reqs = capture.requests();
    let last = reqs.last().expect("the final export was delivered");
    let resource = last.resource_metrics[0]
        .resource
        .as_ref()
        .expect("resource");
    assert_eq!(
        attr(&resource.attributes, "service.name").as_deref(),
        Some("otel-sli")
    );
    assert_eq!(
        attr(&resource.attributes, "k8s.node.name").as_deref(),
        Some("node-a")
    );
    let (requests, start, temporality) = pay_sum(last, "sli.requests").expect("pay requests");
    assert_eq!(requests, 200.0);
    assert_eq!(temporality, AggregationTemporality::Cumulative as i32);
    assert!(start > 0);
    assert_eq!(pay_sum(last, "sli.errors").expect("pay errors").0, 20.0);

    let Some(Data::Histogram(h)) = &metric(last, "sli.latency").expect("latency").data else {
        panic!("explicit histogram")
    };
    let h = h
        .data_points
        .iter()
        .find(|p| is_pay(&p.attributes))
        .expect("pay latency");
    assert_eq!(h.explicit_bounds, vec![0.01, 0.1, 1.0]);
    assert_eq!(h.bucket_counts, vec![0, 200, 0, 0], "50 ms each");
    assert_eq!(h.count, 200);
    let sum = h.sum.expect("sum");
    assert!((sum - 10.0).abs() < 0.01, "200 × 50 ms, got {sum}");
    assert!(h.time_unix_nano > h.start_time_unix_nano);

    assert_eq!(gauge(last, "slo.objective", "pay-availability"), Some(0.99));
    let sli = gauge(last, "slo.sli", "pay-availability").expect("slo sli");
    assert!((sli - 0.9).abs() < 1e-9, "{sli}");
    assert!(gauge(last, "slo.error_budget.remaining", "pay-availability").is_some());
    server.stop().await;
}

const DELTA: &str = r#"
exporters:
  otlp_metrics:
    endpoint: http://127.0.0.1:9
    interval: 1s
    temporality: delta
    histogram: exponential
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_exports_add_up_to_what_was_sent() {
    let config = common::config(DELTA);
    let cfg = config.otlp_metrics.clone().expect("section validated");
    let server = TestServer::start_with(config).await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let capture = Arc::new(Capture::default());
    let exporter = OtlpMetricsExporter::start(&cfg, reader, capture.clone()).expect("start");

    send(&server, 30, 3, Duration::from_millis(20)).await;
    server.flush().await;
    // Let at least one interval export see the first batch.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !capture
        .requests()
        .iter()
        .any(|r| pay_sum(r, "sli.requests").is_some())
    {
        assert!(Instant::now() < deadline, "no interval export");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    send(&server, 45, 5, Duration::from_millis(20)).await;
    server.flush().await;
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;

    let reqs = capture.requests();
    assert!(reqs.len() >= 2, "{} exports", reqs.len());
    let (mut requests, mut errors, mut count) = (0.0, 0.0, 0);
    let mut previous_time = None;
    for r in &reqs {
        let Some((v, start, temporality)) = pay_sum(r, "sli.requests") else {
            continue;
        };
        assert_eq!(temporality, AggregationTemporality::Delta as i32);
        if let Some(t) = previous_time {
            assert_eq!(start, t, "each delta starts where the previous one ended");
        }
        requests += v;
        errors += pay_sum(r, "sli.errors").expect("errors").0;
        let Some(Data::ExponentialHistogram(h)) = &metric(r, "sli.latency").expect("latency").data
        else {
            panic!("exponential histogram")
        };
        let p = h
            .data_points
            .iter()
            .find(|p| is_pay(&p.attributes))
            .expect("pay latency");
        let buckets: u64 = p
            .positive
            .as_ref()
            .map_or(0, |b| b.bucket_counts.iter().sum());
        assert_eq!(buckets, p.count);
        count += p.count;
        previous_time = Some(p.time_unix_nano);
    }
    assert_eq!(requests, 75.0);
    assert_eq!(errors, 10.0 + 9.0);
    assert_eq!(count, 75);
    server.stop().await;
}

/// An exemplar's double value (-1 when it is not a double).
fn exemplar_value(e: &opentelemetry_proto::tonic::metrics::v1::Exemplar) -> f64 {
    match e.value {
        Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(v)) => v,
        _ => -1.0,
    }
}

/// The OTLP points carry the series' example requests as exemplars: the latest bad request
/// on `sli.errors` and each bucket's example on `sli.latency`, with the ids and durations
/// `/api/v1/exemplars` shows; an export with no new request carries none again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplars_ride_on_the_points() {
    // Exports only when asked, so each one's content is known.
    let config = common::config(&CUMULATIVE.replace("interval: 1s", "interval: 1h"));
    let cfg = config.otlp_metrics.clone().expect("section validated");
    let server = TestServer::start_with(config).await;
    let reader = server.running.as_ref().expect("running").reader.clone();
    let capture = Arc::new(Capture::default());
    let exporter = OtlpMetricsExporter::start(&cfg, reader, capture.clone()).expect("start");
    send(&server, 20, 4, Duration::from_millis(50)).await;
    send(&server, 3, 0, Duration::from_millis(500)).await;
    server.flush().await;
    exporter.export_now().await;
    // What the JSON API shows of the series.
    let (_, api) = server.get_json("/api/v1/exemplars?service=pay").await;
    let s = &api["series"][0];
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let latest_bad = s["bad"][0]["trace_id"]
        .as_str()
        .expect("a bad one")
        .to_string();
    let mut buckets: Vec<(String, f64)> = s["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| {
            (
                b["exemplar"]["trace_id"].as_str().unwrap_or("").to_string(),
                b["exemplar"]["duration_seconds"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(buckets.len(), 2, "{api}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let req = loop {
        let last = capture.requests().into_iter().last();
        if let Some(r) = last.filter(|r| pay_sum(r, "sli.requests").map(|p| p.0) == Some(23.0)) {
            break r;
        }
        assert!(Instant::now() < deadline, "no export of 23 requests");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors = match metric(&req, "sli.errors").and_then(|m| m.data.as_ref()) {
        Some(Data::Sum(s)) => s
            .data_points
            .iter()
            .find(|p| is_pay(&p.attributes))
            .cloned(),
        _ => None,
    }
    .expect("errors point");
    let ex: Vec<(String, f64)> = errors
        .exemplars
        .iter()
        .map(|e| (hex(&e.trace_id), exemplar_value(e)))
        .collect();
    assert_eq!(ex, vec![(latest_bad, 1.0)]);
    let latency = match metric(&req, "sli.latency").and_then(|m| m.data.as_ref()) {
        Some(Data::Histogram(h)) => h
            .data_points
            .iter()
            .find(|p| is_pay(&p.attributes))
            .cloned(),
        _ => None,
    }
    .expect("latency point");
    let mut got: Vec<(String, f64)> = latency
        .exemplars
        .iter()
        .map(|e| {
            assert_eq!(e.span_id.len(), 8);
            (hex(&e.trace_id), exemplar_value(e))
        })
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    assert_eq!(got, buckets);

    // Nothing new: the next export repeats no exemplar.
    let before = capture.requests().len();
    exporter.export_now().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while capture.requests().len() == before {
        assert!(Instant::now() < deadline, "no second export");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = capture.requests().into_iter().last().expect("export");
    let any = again
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .any(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.iter().any(|p| !p.exemplars.is_empty()),
            Some(Data::Histogram(h)) => h.data_points.iter().any(|p| !p.exemplars.is_empty()),
            _ => false,
        });
    assert!(!any, "exemplars are sent once");
    exporter
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
    server.stop().await;
}
