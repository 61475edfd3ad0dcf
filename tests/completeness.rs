//! Trace-structure gaps with the OpenTelemetry SDK as the client: a parent that is never
//! ended (so never exported) leaves an orphan and a rootless trace; a healthy service shows
//! no gap at all. Time is an injected clock, moved past the trace timeout by hand.

mod common;

use common::TestServer;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::Context;
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
                .start(&tracer);
            let cx = Context::current_with_span(parent);
            let mut child = tracer.start_with_context("work", &cx);
            child.end();
            cx.span().end();
        }
        healthy.force_flush().expect("flush");
        healthy.shutdown().expect("shutdown");
        // `broken` is dropped without ending the parent: it is never exported.
        std::mem::forget(cx);
        broken.shutdown().expect("shutdown");
    })
    .join()
    .expect("sdk thread");

    let m = server.metrics().await;
    assert!(
        !m.contains("telemetry_gap_spans_total{"),
        "no gap before the timeout:\n{m}"
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
    assert!(
        !m.contains("service=\"healthy\",kind="),
        "a healthy service has no gap:\n{m}"
    );
    assert_eq!(s("otel_sli_tracked_traces"), Some(0.0));
    assert_eq!(s("otel_sli_completeness_evicted_total"), Some(0.0));
    server.stop().await;
}
