//! Request spans sent by the OpenTelemetry SDK (`opentelemetry-otlp`), over OTLP/gRPC or
//! OTLP/HTTP, with the durations, statuses and kinds a test needs.

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::{Duration, SystemTime};

/// The OTLP transport of an exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// One request span: an HTTP span of `kind` taking `latency`, answered with `status` (0: no
/// status code attribute), its span status ERROR when `error`, named `name` (by default
/// `method route`, as HTTP instrumentations name server spans).
#[derive(Clone, Debug)]
pub struct Req {
    pub name: Option<String>,
    pub method: &'static str,
    pub route: String,
    pub latency: Duration,
    pub status: u16,
    pub error: bool,
    pub kind: SpanKind,
}

impl Req {
    /// A SERVER span of `method route` answered `status` after `latency`.
    pub fn server(method: &'static str, route: &str, latency: Duration, status: u16) -> Self {
        Self {
            name: None,
            method,
            route: route.to_string(),
            latency,
            status,
            error: false,
            kind: SpanKind::Server,
        }
    }
}

/// The resource of `service`: `service.name` and the `(key, value)` attributes given (for
/// example `service.version`, which tells canary cohorts apart).
pub fn resource(service: &str, attrs: &[(&str, &str)]) -> Resource {
    let mut b = Resource::builder().with_service_name(service.to_string());
    for (k, v) in attrs {
        b = b.with_attribute(KeyValue::new(k.to_string(), v.to_string()));
    }
    b.build()
}

/// A tracer provider for `service` exporting to `endpoint` (`host:port`) over `transport`,
/// gzip-compressed when `gzip`, with a batch processor.
pub fn provider(
    endpoint: &str,
    transport: Transport,
    gzip: bool,
    service: &str,
) -> SdkTracerProvider {
    provider_with_resource(endpoint, transport, gzip, resource(service, &[]))
}

/// [`provider`] with a resource of the caller's.
pub fn provider_with_resource(
    endpoint: &str,
    transport: Transport,
    gzip: bool,
    resource: Resource,
) -> SdkTracerProvider {
    let exporter = match transport {
        Transport::Grpc => {
            let b = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(format!("http://{endpoint}"));
            if gzip {
                b.with_compression(opentelemetry_otlp::Compression::Gzip)
                    .build()
            } else {
                b.build()
            }
        }
        Transport::Http => {
            let b = SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(format!("http://{endpoint}/v1/traces"));
            if gzip {
                b.with_compression(opentelemetry_otlp::Compression::Gzip)
                    .build()
            } else {
                b.build()
            }
        }
    }
    .expect("exporter");
    SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build()
}

/// Sends `reqs` as spans of `service` through the SDK to `endpoint` and waits until the
/// exporter has flushed them.
pub async fn send(
    endpoint: String,
    transport: Transport,
    gzip: bool,
    service: &str,
    reqs: Vec<Req>,
) {
    send_with_resource(endpoint, transport, gzip, resource(service, &[]), reqs).await;
}

/// [`send`] from a resource of the caller's.
pub async fn send_with_resource(
    endpoint: String,
    transport: Transport,
    gzip: bool,
    resource: Resource,
    reqs: Vec<Req>,
) {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = provider_with_resource(&endpoint, transport, gzip, resource);
        let tracer = p.tracer("otel-sli-tests");
        for r in reqs {
            let end = SystemTime::now();
            let mut attrs = vec![
                KeyValue::new("http.request.method", r.method),
                KeyValue::new("http.route", r.route.clone()),
            ];
            if r.status > 0 {
                attrs.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(r.status),
                ));
            }
            let mut span = tracer
                .span_builder(
                    r.name
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", r.method, r.route)),
                )
                .with_kind(r.kind.clone())
                .with_start_time(end - r.latency)
                .with_attributes(attrs)
                .start(&tracer);
            if r.error {
                span.set_status(Status::error("failed"));
            }
            span.end_with_timestamp(end);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

/// [`send_with_resource`] for requests that evaluated feature flags: each span carries its
/// request's evaluations, `(flag key, variant)`, as `feature_flag.evaluation` events with
/// `feature_flag.key` and `feature_flag.result.variant` (as OpenFeature's OpenTelemetry hook
/// records them), in the order given.
pub async fn send_with_flags(
    endpoint: String,
    transport: Transport,
    resource: Resource,
    reqs: Vec<(Req, Vec<(String, String)>)>,
) {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = handle.enter();
        let p = provider_with_resource(&endpoint, transport, false, resource);
        let tracer = p.tracer("otel-sli-tests");
        for (r, flags) in reqs {
            let end = SystemTime::now();
            let mut attrs = vec![
                KeyValue::new("http.request.method", r.method),
                KeyValue::new("http.route", r.route.clone()),
            ];
            if r.status > 0 {
                attrs.push(KeyValue::new(
                    "http.response.status_code",
                    i64::from(r.status),
                ));
            }
            let mut span = tracer
                .span_builder(
                    r.name
                        .clone()
                        .unwrap_or_else(|| format!("{} {}", r.method, r.route)),
                )
                .with_kind(r.kind.clone())
                .with_start_time(end - r.latency)
                .with_attributes(attrs)
                .start(&tracer);
            for (key, variant) in flags {
                span.add_event(
                    "feature_flag.evaluation",
                    vec![
                        KeyValue::new("feature_flag.key", key),
                        KeyValue::new("feature_flag.result.variant", variant),
                    ],
                );
            }
            if r.error {
                span.set_status(Status::error("failed"));
            }
            span.end_with_timestamp(end);
        }
        p.force_flush().expect("flush");
        p.shutdown().expect("shutdown");
    })
    .await
    .expect("sdk thread");
}

/// Request metrics as an HTTP server instrumentation records them
/// (`http.server.request.duration`): `n` requests of `GET route` answered 200, each
/// `seconds` long, from `resource`, exported over OTLP/gRPC to `endpoint`
/// (`http://host:port`). Blocking: call it from a thread that has entered the runtime.
pub fn request_metrics(endpoint: &str, resource: Resource, route: &str, n: usize, seconds: f64) {
    use opentelemetry::metrics::MeterProvider as _;
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .expect("metric exporter"),
        )
        .with_resource(resource)
        .build();
    let duration = meters
        .meter("http")
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build();
    let attrs = [
        KeyValue::new("http.request.method", "GET"),
        KeyValue::new("http.route", route.to_string()),
        KeyValue::new("http.response.status_code", 200),
    ];
    for _ in 0..n {
        duration.record(seconds, &attrs);
    }
    meters.force_flush().expect("flush metrics");
    meters.shutdown().expect("shutdown");
}
