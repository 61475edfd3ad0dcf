//! Application-like OTLP traffic from the OpenTelemetry Rust SDK: for each service, entry
//! (SERVER) spans of a few HTTP features, each with a CLIENT child, some of them failing
//! with HTTP 500. Used by `deploy/examples/local-demo.sh`; also handy for trying otel-sli:
//!
//! ```sh
//! cargo run --example send_spans -- --endpoint http://127.0.0.1:4317 --requests 1000
//! ```
//!
//! Prints what it sent per service and feature, so the SLIs can be checked against it. Exits
//! with an error, saying how many spans were not delivered, if any export failed (the SDK
//! itself only logs export errors).

use clap::Parser;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
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

/// What failed to export: spans lost and the first error.
#[derive(Debug, Default)]
struct Failures {
    spans: usize,
    first: Option<String>,
}

/// An exporter that records what its inner exporter failed to deliver.
#[derive(Debug)]
struct Checked<E> {
    inner: E,
    failures: Arc<Mutex<Failures>>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Checked<E>
{
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            if let Ok(mut f) = self.failures.lock() {
                f.spans += n;
                f.first.get_or_insert_with(|| e.to_string());
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
    let failures = Arc::new(Mutex::new(Failures::default()));
    for service in args
        .services
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Checked {
                inner: exporter(&args)?,
                failures: Arc::clone(&failures),
            })
            .with_resource(
                Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("send_spans");
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
                if failed {
                    server.set_status(Status::error("internal error"));
                    errors += 1;
                }
                server.end_with_timestamp(start + Duration::from_millis(10 + i % 40));
            }
            println!(
                "sent service={service} feature=\"{method} {route}\" requests={} errors={errors}",
                args.requests
            );
        }
        provider.force_flush().map_err(|e| format!("flush: {e}"))?;
        provider.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    }
    let failed = failures.lock().map_err(|e| e.to_string())?;
    if failed.spans > 0 {
        return Err(format!(
            "{} spans were not delivered to {} ({})",
            failed.spans,
            args.endpoint,
            failed.first.as_deref().unwrap_or("export failed")
        ));
    }
    Ok(())
}
