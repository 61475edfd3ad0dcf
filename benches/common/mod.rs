//! Helpers shared by the benchmarks: pre-encoded synthetic requests and small utilities.
//!
//! Each bench target compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod baseline;
pub mod collector;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use prost::Message;

/// Start time of the generated spans (any fixed time works; the scanner does not care).
pub const START_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;

/// One pre-encoded `ExportTraceServiceRequest`.
pub struct Encoded {
    /// The protobuf bytes.
    pub body: Vec<u8>,
    /// Spans in the request.
    pub spans: usize,
    /// Entry (SERVER) spans in the request.
    pub entries: u64,
}

/// Spans in a decoded request.
pub fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}

/// `count` distinct requests of the default workload with `spans` spans each
/// (`spans` should be a multiple of 4: one SERVER span plus 3 children per trace).
pub fn encoded_requests(count: usize, spans: usize, seed: u64) -> Vec<Encoded> {
    let w = Workload {
        seed,
        ..Workload::default()
    };
    let mut rng = Rng::new(seed);
    (0..count as u64)
        .map(|i| {
            let (req, entries, _) =
                traces_request(&w, &mut rng, spans, START_UNIX_NANOS + i * 1_000_000_000);
            Encoded {
                spans: span_count(&req),
                body: req.encode_to_vec(),
                entries,
            }
        })
        .collect()
}

/// True when the binary was started by `cargo bench` (which passes `--bench`); `cargo test`
/// runs bench targets without it, and the plain-`main` benches then do a quick smoke run.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// An environment variable parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// Formats a large number with thousands separators.
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
