//! OTLP requests built by hand (protobuf bytes) for what the SDK does not send in tests:
//! gauge points and log records of service `shop`, each with an attribute, and spans with
//! chosen trace, span and parent ids.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
use otel_sli::otlp::synth::{kv_int, kv_str};
use prost::Message;

fn shop() -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv_str("service.name", "shop")],
        ..Default::default()
    })
}

/// `points` points of the gauge `queue.depth`, point `i` with value `i` and attribute
/// `point` = `i`.
pub fn metrics_request(points: usize) -> Vec<u8> {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: shop(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                                value: Some(number_data_point::Value::AsInt(i as i64)),
                                attributes: vec![kv_int("point", i as i64)],
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// `records` log records, record `i` with body `line i` and attribute `line` = `i`.
pub fn logs_request(records: usize) -> Vec<u8> {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: shop(),
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(format!("line {i}"))),
                        }),
                        attributes: vec![kv_int("line", i as i64)],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// One span of a trace: ids, parent (0: a root), OTLP kind (2 = SERVER, 1 = INTERNAL,
/// 3 = CLIENT), and its name.
#[derive(Clone, Copy, Debug)]
pub struct SpanIds {
    pub trace: u128,
    pub span: u64,
    pub parent: u64,
    pub kind: i32,
    pub name: &'static str,
}

/// A request holding `spans` of `service`, timed to end now, each taking 20 ms; SERVER spans
/// carry the HTTP attributes of `GET /orders` answered 200.
pub fn traces_request(service: &str, spans: &[SpanIds]) -> Vec<u8> {
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: s.trace.to_be_bytes().to_vec(),
            span_id: s.span.to_be_bytes().to_vec(),
            parent_span_id: if s.parent == 0 {
                Vec::new()
            } else {
                s.parent.to_be_bytes().to_vec()
            },
            name: s.name.into(),
            kind: s.kind,
            start_time_unix_nano: end - 20_000_000,
            end_time_unix_nano: end,
            attributes: if s.kind == span::SpanKind::Server as i32 {
                vec![
                    kv_str("http.request.method", "GET"),
                    kv_str("http.route", "/orders"),
                    kv_int("http.response.status_code", 200),
                ]
            } else {
                Vec::new()
            },
            ..Default::default()
        })
        .collect();
    trace_request(service, spans).encode_to_vec()
}

/// A trace request holding `spans` of one resource, service `service`.
pub fn trace_request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
