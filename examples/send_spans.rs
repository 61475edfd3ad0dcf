//! Application-like OTLP traffic from the OpenTelemetry Rust SDK: for each service, entry
//! (SERVER) spans of a few HTTP features, each with a CLIENT child, some of them failing
//! with HTTP 500, each evaluating the feature flag `new-checkout` (a
//! `feature_flag.evaluation` event: variant `on` for one request in ten, else `off`). Used by `deploy/examples/local-demo.sh`; also handy for trying otel-sli:
//!
//! ```sh
//! cargo run --example send_spans -- --endpoint http://127.0.0.1:4317 --requests 1000
//! ```
//!
//! Prints what it sent per service and feature, so the SLIs can be checked against it. Exits
//! with an error, saying how many spans were not delivered, if fewer spans were exported
//! successfully than were made (the SDK itself only logs export errors and spans dropped
//! from a full queue); the queue holds all of a service's spans, so none are dropped there.

use clap::Parser;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData,
};
use opentelemetry_sdk::Resource;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Parser, Debug)]
struct Args {
    /// OTLP endpoint: `http://host:4317` for gRPC, `http://host:4318` for HTTP.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    endpoint: String,
    /// `grpc` or `http` (protobuf).
    #[arg(long, default_value = "grpc")]
    protocol: String,
    /// Comma-separated service names.
    #[arg(long, default_value = "checkout,catalog")]
    services: String,
    /// Requests per service.
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// Every n-th request of a feature fails (HTTP 500); 0: none.
    #[arg(long, default_value_t = 20)]
    error_every: u64,
}

/// What was exported: spans delivered, and the first error.
#[derive(Debug, Default)]
struct Delivery {
    spans: usize,
    first_error: Option<String>,
}

/// An exporter that records what its inner exporter delivered.
#[derive(Debug)]
struct Checked<E> {
    inner: E,
    delivery: Arc<Mutex<Delivery>>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Checked<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        if let Ok(mut d) = self.delivery.lock() {
            match &result {
                Ok(()) => d.spans += n,
                Err(e) => {
                    d.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The features of every service: (HTTP method, route).
const FEATURES: [(&str, &str); 2] = [("GET", "/items"), ("POST", "/checkout")];

fn exporter(args: &Args) -> Result<SpanExporter, String> {
    let built = match args.protocol.as_str() {
        "grpc" => {
            use opentelemetry_otlp::WithTonicConfig as _;
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&args.endpoint)
                .with_compression(opentelemetry_otlp::Compression::Gzip)
                .build()
        }
        "http" => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", args.endpoint.trim_end_matches('/')))
            .build(),
        other => return Err(format!("--protocol {other:?}: use grpc or http")),
    };
    built.map_err(|e| format!("exporter: {e}"))
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _entered = runtime.enter();
    let delivery = Arc::new(Mutex::new(Delivery::default()));
    let mut made = 0usize;
    let mut flush_error: Option<String> = None;
    // Room for all of a service's spans: two per request of each feature.
    let queue = (args.requests as usize)
        .saturating_mul(FEATURES.len() * 2)
        .max(2048);
    for service in args
        .services
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(Checked {
                    inner: exporter(&args)?,
                    delivery: Arc::clone(&delivery),
                })
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(queue)
                        .build(),
                )
                .build(),
            )
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("send_spans");
        // Requests and errors per variant of the flag, over the service's features.
        let mut flag = [(0u64, 0u64); 2];
        for (method, route) in FEATURES {
            let mut errors = 0;
            for i in 1..=args.requests {
                let failed = args.error_every > 0 && i % args.error_every == 0;
                let start = SystemTime::now() - Duration::from_millis(50);
                let code: i64 = if failed { 500 } else { 200 };
                let mut server = tracer
                    .span_builder(format!("{method} {route}"))
                    .with_kind(SpanKind::Server)
                    .with_start_time(start)
                    .with_attributes(vec![
                        KeyValue::new("http.request.method", method),
                        KeyValue::new("http.route", route),
                        KeyValue::new("http.response.status_code", code),
                    ])
                    .start(&tracer);
                let cx = Context::current().with_remote_span_context(server.span_context().clone());
                let mut child = tracer
                    .span_builder("SELECT items")
                    .with_kind(SpanKind::Client)
                    .with_start_time(start + Duration::from_millis(5))
                    .start_with_context(&tracer, &cx);
                child.end_with_timestamp(start + Duration::from_millis(15));
                made += 2;
                let on = i % 10 == 0;
                server.add_event(
                    "feature_flag.evaluation",
                    vec![
                        KeyValue::new("feature_flag.key", "new-checkout"),
                        KeyValue::new("feature_flag.provider.name", "send_spans"),
                        KeyValue::new("feature_flag.result.variant", if on { "on" } else { "off" }),
                    ],
                );
                let cohort = &mut flag[usize::from(on)];
                cohort.0 += 1;
                if failed {
                    server.set_status(Status::error("internal error"));
                    errors += 1;
                    cohort.1 += 1;
                }
                server.end_with_timestamp(start + Duration::from_millis(10 + i % 40));
            }
            println!(
                "sent service={service} feature=\"{method} {route}\" requests={} errors={errors}",
                args.requests
            );
        }
        for (variant, (requests, errors)) in ["off", "on"].iter().zip(flag) {
            println!(
                "flag service={service} flag=new-checkout variant={variant} requests={requests} errors={errors}"
            );
        }
        // Export errors are reported below, with the count of spans they cost.
        if let Err(e) = provider.force_flush() {
            flush_error.get_or_insert_with(|| format!("flush: {e}"));
        }
        if let Err(e) = provider.shutdown() {
            flush_error.get_or_insert_with(|| format!("shutdown: {e}"));
        }
    }
    let delivered = delivery.lock().map_err(|e| e.to_string())?;
    if delivered.spans < made {
        return Err(format!(
            "{} of {made} spans were not delivered to {} ({})",
            made - delivered.spans,
            args.endpoint,
            delivered
                .first_error
                .as_deref()
                .unwrap_or("dropped before export")
        ));
    }
    if let Some(e) = flush_error {
        return Err(e);
    }
    Ok(())
}
