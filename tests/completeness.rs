//! Completeness gaps with the OpenTelemetry SDK as the client: a parent that is never ended
//! (so never exported) leaves an orphan and a rootless trace; server spans without a route
//! are unattributed; a healthy service shows no gap at all. Time is an injected clock,
//! moved past the trace timeout by hand.

mod common;

use common::TestServer;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use otel_sli::clock::ManualClock;
use std::sync::Arc;
use std::time::SystemTime;

fn provider(endpoint: &str, service: &str) -> SdkTracerProvider {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("exporter");
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_parent_is_an_orphan_and_a_missing_root_healthy_service_is_clean() {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let clock = Arc::new(ManualClock::new(now));
    let server = TestServer::start_with_clock(
        common::config("completeness:\n  trace_timeout: 30s\n"),
        clock.clone(),
    )
    .await;
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _g = handle.enter();
        // A service whose request handler never ends its span (crash, leak, lost export).
        let broken = provider(&endpoint, "broken");
        let tracer = broken.tracer("t");
        let parent = tracer
            .span_builder("GET /stuck")
            .with_kind(SpanKind::Server)
            .start(&tracer);
        let cx = Context::current_with_span(parent);
        let mut child = tracer
            .span_builder("SELECT")
            .with_kind(SpanKind::Client)
            .start_with_context(&tracer, &cx);
        child.end();
        broken.force_flush().expect("flush");
        // A healthy service: whole traces, children ending before their parents.
        let healthy = provider(&endpoint, "healthy");
        let tracer = healthy.tracer("t");
        for _ in 0..5 {
            let parent = tracer
                .span_builder("GET /ok")
                .with_kind(SpanKind::Server)
                .with_attributes(vec![
                    KeyValue::new("http.request.method", "GET"),
                    KeyValue::new("http.route", "/ok"),
                ])
                .start(&tracer);
            let cx = Context::current_with_span(parent);
            let mut child = tracer.start_with_context("work", &cx);
            child.end();
            cx.span().end();
        }
        healthy.force_flush().expect("flush");
        healthy.shutdown().expect("shutdown");
        // Instrumentation that records no route: features fall back to the span name.
        let vague = provider(&endpoint, "vague");
        let tracer = vague.tracer("t");
        for _ in 0..4 {
            tracer
                .span_builder("GET")
                .with_kind(SpanKind::Server)
                .with_attributes(vec![KeyValue::new("http.request.method", "GET")])
                .start(&tracer)
                .end();
        }
        vague.force_flush().expect("flush");
        vague.shutdown().expect("shutdown");
        // `broken` is dropped without ending the parent: it is never exported.
        std::mem::forget(cx);
        broken.shutdown().expect("shutdown");
    })
    .join()
    .expect("sdk thread");

    let m = server.metrics().await;
    let s = |k: &str| common::sample(&m, k);
    assert_eq!(
        s("telemetry_gap_spans_total{service=\"broken\",kind=\"orphan_spans\"}"),
        Some(0.0),
        "no gap before the timeout"
    );
    let early = server.gaps().await;
    assert!(
        early["gaps"]
            .as_array()
            .is_some_and(|g| g.iter().all(|g| g["service"] == "vague")),
        "no trace-structure gap before the timeout: {early}"
    );

    clock.advance(31_000_000_000);
    let m = server.metrics().await;
    let s = |k: &str| common::sample(&m, k);
    assert_eq!(
        s("telemetry_gap_spans_total{service=\"broken\",kind=\"orphan_spans\"}"),
        Some(1.0)
    );
    assert_eq!(
        s("telemetry_gap_spans_total{service=\"broken\",kind=\"missing_root\"}"),
        Some(1.0)
    );
    assert_eq!(
        s("telemetry_gap_traces_total{service=\"broken\",kind=\"missing_root\"}"),
        Some(1.0)
    );
    assert_eq!(
        s("telemetry_gap_active{service=\"broken\",kind=\"orphan_spans\"}"),
        Some(1.0)
    );
    for kind in ["orphan_spans", "missing_root"] {
        assert_eq!(
            s(&format!(
                "telemetry_gap_spans_total{{service=\"healthy\",kind=\"{kind}\"}}"
            )),
            Some(0.0),
            "a healthy service has no gap"
        );
        assert_eq!(
            s(&format!(
                "telemetry_gap_active{{service=\"healthy\",kind=\"{kind}\"}}"
            )),
            Some(0.0)
        );
    }
    assert_eq!(s("otel_sli_tracked_traces"), Some(0.0));
    assert_eq!(s("otel_sli_completeness_evicted_total"), Some(0.0));
    // Ten traces: the healthy ones' children were exported before their parents (simple
    // exporter) and the broken one never got its parent, so those six waited for the
    // timeout; the four one-span traces of `vague` were whole on arrival.
    assert_eq!(s("otel_sli_completeness_judged_traces_total"), Some(10.0));
    assert_eq!(
        s("otel_sli_completeness_judged_on_arrival_total"),
        Some(4.0)
    );

    assert_eq!(
        s("telemetry_gap_spans_total{service=\"vague\",kind=\"unattributed_spans\"}"),
        Some(4.0)
    );
    assert_eq!(
        s("telemetry_gap_spans_total{service=\"healthy\",kind=\"unattributed_spans\"}"),
        Some(0.0)
    );

    let v = server.gaps().await;
    let all = v["gaps"].as_array().expect("gaps array");
    let vague: Vec<_> = all.iter().filter(|g| g["service"] == "vague").collect();
    assert_eq!(vague.len(), 1, "{v}");
    assert_eq!(vague[0]["kind"], "unattributed_spans");
    assert_eq!(vague[0]["feature"], "GET");
    assert_eq!(vague[0]["count"], 4);
    assert_eq!(vague[0]["ratio"], 1.0);
    assert!(vague[0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("http.route")));
    assert!(all.iter().all(|g| g["service"] != "healthy"), "{v}");
    let list: Vec<_> = all.iter().filter(|g| g["service"] == "broken").collect();
    assert_eq!(list.len(), 2, "{v}");
    for g in &list {
        assert_eq!(g["service"], "broken");
        assert_eq!(g["count"], 1);
        assert_eq!(
            g["ratio"], 1.0,
            "the only span seen from broken is affected"
        );
        assert!(g["since"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(g["detail"].as_str().is_some_and(|d| d.contains("broken")));
    }
    let kinds: Vec<&str> = list.iter().filter_map(|g| g["kind"].as_str()).collect();
    assert!(kinds.contains(&"orphan_spans") && kinds.contains(&"missing_root"));

    assert_eq!(
        s("telemetry_service_silent{service=\"healthy\"}"),
        Some(0.0)
    );

    // Five minutes later: the old gaps are no longer active, and every service, having sent
    // nothing since, is reported silent.
    clock.advance(311_000_000_000);
    let m = server.metrics().await;
    assert_eq!(
        common::sample(&m, "telemetry_service_silent{service=\"healthy\"}"),
        Some(1.0)
    );
    let v = server.gaps().await;
    let list = v["gaps"].as_array().expect("gaps array");
    assert!(list.iter().all(|g| g["kind"] == "silent_service"), "{v}");
    let mut silent: Vec<&str> = list.iter().filter_map(|g| g["service"].as_str()).collect();
    silent.sort_unstable();
    assert_eq!(silent, ["broken", "healthy", "vague"]);
    // A silent service's SLIs are not presented as healthy.
    let slis: serde_json::Value = reqwest::get(format!("http://{}/api/v1/slis", server.admin))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let healthy = slis["slis"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["service"] == "healthy"))
        .expect("healthy SLI");
    assert_eq!(healthy["data_quality"], "insufficient", "{healthy}");
    assert!(healthy["data_quality_reasons"]
        .to_string()
        .contains("no telemetry"));
    server.stop().await;
}

/// A service whose metrics arrive but whose spans never do has no SLIs here: reported as
/// `metrics_without_traces`; its metrics also keep it from being called silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_without_traces_and_metrics_keep_a_service_alive() {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
    use prost::Message;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    let clock = Arc::new(ManualClock::new(now));
    let server = TestServer::start_with_clock(common::config(""), clock.clone()).await;
    let metrics = |service: &str| {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(ProtoResource {
                    attributes: vec![otel_sli::otlp::synth::kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "queue.depth".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 3],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    for _ in 0..2 {
        let r = common::post_protobuf(server.http, "/v1/metrics", metrics("metrics-only")).await;
        assert_eq!(r.status(), 200);
    }
    server.flush().await;
    let v = server.gaps().await;
    let list = v["gaps"].as_array().expect("array");
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["kind"], "metrics_without_traces");
    assert_eq!(list[0]["service"], "metrics-only");
    assert_eq!(list[0]["count"], 6);

    // Four minutes on, fresh metrics: not silent. Another four: still not (last metrics
    // were four minutes ago). Six more without anything: silent.
    clock.advance(240_000_000_000);
    common::post_protobuf(server.http, "/v1/metrics", metrics("metrics-only")).await;
    // Let the shard apply it at this clock time before moving the clock on.
    server.flush().await;
    clock.advance(240_000_000_000);
    let m = server.metrics().await;
    assert_eq!(
        common::sample(&m, "telemetry_service_silent{service=\"metrics-only\"}"),
        Some(0.0)
    );
    clock.advance(120_000_000_000);
    let m = server.metrics().await;
    assert_eq!(
        common::sample(&m, "telemetry_service_silent{service=\"metrics-only\"}"),
        Some(1.0)
    );
    server.stop().await;
}

/// A service whose request metrics (from the SDK's own metrics exporter) count 200 requests
/// while only 100 of them arrive as spans has trace coverage 0.5 and an
/// `untraced_requests` gap; its SLI is marked insufficient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_metrics_reveal_untraced_requests() {
    let server = TestServer::start("").await;
    let endpoint = format!("http://{}", server.grpc);
    let handle = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let _g = handle.enter();
        let attrs = [
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/items"),
            KeyValue::new("http.response.status_code", 200),
        ];
        let traces = provider(&endpoint, "shop");
        let tracer = traces.tracer("t");
        for _ in 0..100 {
            tracer
                .span_builder("GET /items")
                .with_kind(SpanKind::Server)
                .with_attributes(attrs.to_vec())
                .start(&tracer)
                .end();
        }
        traces.force_flush().expect("flush spans");
        traces.shutdown().expect("shutdown");
        // Request metrics count the series' requests once its spans made it exist.
        let resource = Resource::builder().with_service_name("shop").build();
        common::sdk::request_metrics(&endpoint, resource, "/items", 200, 0.02);
    })
    .join()
    .expect("sdk thread");

    let sli = server.sli("5m", "shop", "GET /items").await;
    assert_eq!(sli["requests"], 100);
    assert_eq!(sli["trace_coverage"], 0.5, "{sli}");
    assert_eq!(sli["data_quality"], "insufficient");
    assert!(sli["data_quality_reasons"].to_string().contains("coverage"));
    let m = server.metrics().await;
    assert_eq!(
        common::sample(
            &m,
            "telemetry_trace_coverage_ratio{service=\"shop\",feature=\"GET /items\"}"
        ),
        Some(0.5)
    );
    assert_eq!(
        common::sample(
            &m,
            "telemetry_gap_active{service=\"shop\",kind=\"untraced_requests\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        common::sample(
            &m,
            "telemetry_gap_active{service=\"shop\",kind=\"silent_service\"}"
        ),
        Some(0.0)
    );
    let v = server.gaps().await;
    let gap = v["gaps"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["kind"] == "untraced_requests"))
        .unwrap_or_else(|| panic!("no untraced_requests gap in {v}"));
    assert_eq!(gap["service"], "shop");
    assert_eq!(gap["feature"], "GET /items");
    assert_eq!(gap["count"], 100);
    assert_eq!(gap["ratio"], 0.5);
    server.stop().await;
}
