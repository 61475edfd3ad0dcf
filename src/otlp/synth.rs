//! Synthetic OTLP trace requests shaped like real service traffic: each trace is one SERVER
//! span with HTTP semantic-convention attributes plus CLIENT/INTERNAL children, spread over
//! a number of services and routes. Used by the benchmarks and tests, and handy for load
//! generation. Deterministic for a given seed.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

/// Shape of the generated traffic.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Distinct `service.name`s.
    pub services: usize,
    /// Distinct routes per service.
    pub features: usize,
    /// Child spans per trace (the trace has one SERVER span plus these).
    pub children_per_trace: usize,
    /// One in this many requests answers 500 (0: none).
    pub error_every: u64,
    /// Random seed.
    pub seed: u64,
    /// Feature-flag evaluation events on each entry span (`feature_flag.evaluation`, keys
    /// `flag-0`, `flag-1`, …, variants `on` and `off` at random).
    pub flag_events: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            services: 10,
            features: 8,
            children_per_trace: 3,
            error_every: 20,
            seed: 1,
            flag_events: 0,
        }
    }
}

/// A small deterministic PRNG (xorshift64*).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (0 is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// Next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A string attribute.
pub fn kv_str(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

/// Name of service `i`.
pub fn service_name(i: usize) -> String {
    format!("service-{i}")
}

/// Route of feature `j`.
pub fn route(j: usize) -> String {
    format!("/api/v1/resource-{j}/{{id}}")
}

/// The feature key the default rules derive for feature `j`.
pub fn feature_key(j: usize) -> String {
    format!("{} {}", METHODS[j % METHODS.len()], route(j))
}

/// Generates a request with about `spans` spans (whole traces), starting at `start_unix_nanos`.
/// Returns the request and the number of SERVER (entry) spans and of those, errors.
pub fn traces_request(
    w: &Workload,
    rng: &mut Rng,
    spans: usize,
    start_unix_nanos: u64,
) -> (ExportTraceServiceRequest, u64, u64) {
    let per_trace = 1 + w.children_per_trace;
    let traces = (spans / per_trace).max(1);
    let services = w.services.max(1);
    let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); services];
    let (mut entries, mut errors) = (0u64, 0u64);
    for _ in 0..traces {
        let svc = rng.below(services as u64) as usize;
        let feat = rng.below(w.features.max(1) as u64) as usize;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        trace_id[8..].copy_from_slice(&(rng.next_u64() | 1).to_le_bytes());
        let root_id = (rng.next_u64() | 1).to_le_bytes();
        let start = start_unix_nanos + rng.below(1_000_000_000);
        // Log-uniform-ish latency between ~1 ms and ~1 s.
        let dur = 1_000_000u64 << rng.below(10);
        let dur = dur + rng.below(dur);
        let bad = w.error_every > 0 && rng.below(w.error_every) == 0;
        entries += 1;
        errors += u64::from(bad);
        let spans = &mut by_service[svc];
        spans.push(Span {
            trace_id: trace_id.to_vec(),
            span_id: root_id.to_vec(),
            parent_span_id: Vec::new(),
            flags: 0x301,
            name: feature_key(feat),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![
                kv_str("http.request.method", METHODS[feat % METHODS.len()]),
                kv_str("http.route", &route(feat)),
                kv_int("http.response.status_code", if bad { 500 } else { 200 }),
                kv_str("url.scheme", "https"),
            ],
            status: bad.then(|| Status {
                message: String::new(),
                code: status::StatusCode::Error as i32,
            }),
            events: (0..w.flag_events)
                .map(|i| span::Event {
                    time_unix_nano: start,
                    name: "feature_flag.evaluation".into(),
                    attributes: vec![
                        kv_str("feature_flag.key", &format!("flag-{i}")),
                        kv_str("feature_flag.provider.name", "flagd"),
                        kv_str(
                            "feature_flag.result.variant",
                            if rng.below(2) == 0 { "on" } else { "off" },
                        ),
                    ],
                    dropped_attributes_count: 0,
                })
                .collect(),
            ..Default::default()
        });
        for c in 0..w.children_per_trace {
            let cstart = start + dur / 8 * c as u64;
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: (rng.next_u64() | 1).to_le_bytes().to_vec(),
                parent_span_id: root_id.to_vec(),
                flags: 0x101,
                name: if c % 2 == 0 {
                    "SELECT orders".into()
                } else {
                    "render".into()
                },
                kind: if c % 2 == 0 {
                    span::SpanKind::Client as i32
                } else {
                    span::SpanKind::Internal as i32
                },
                start_time_unix_nano: cstart,
                end_time_unix_nano: cstart + dur / 8,
                attributes: if c % 2 == 0 {
                    vec![
                        kv_str("db.system.name", "postgresql"),
                        kv_str("db.operation.name", "SELECT"),
                    ]
                } else {
                    vec![kv_str("code.function.name", "render")]
                },
                ..Default::default()
            });
        }
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", &service_name(i)),
                    kv_str("service.version", "1.4.2"),
                    kv_str("host.name", "node-1"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    (
        ExportTraceServiceRequest { resource_spans },
        entries,
        errors,
    )
}
