//! Scanner throughput against a full prost decode, on identical pre-encoded requests.
//!
//! For 500- and 100-span requests of the synthetic workload (10 services × 8 features, one
//! SERVER span and three children per trace, about 155-160 bytes per span), measures
//! spans/s of:
//!
//! * `scan`: `scan_traces` with a sink that touches every `SpanView` field;
//! * `scan_attrs`: the same, plus iterating every span's and resource's attributes;
//! * `prost_decode`: `ExportTraceServiceRequest::decode` and walking every span the same way
//!   as `scan_attrs` (fields and attributes).
//!
//! After criterion's own report, prints spans/s and the prost/scan time ratios from
//! criterion's estimates.
//!
//! `cargo bench --bench scan [-- --warm-up-time 1 --measurement-time 3]`

mod common;

use common::{encoded_requests, thousands, Encoded};
use criterion::{BenchmarkId, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use otel_sli::otlp::scan::{scan_traces, AnyValueRef, ResourceView, ScanError, SpanSink, SpanView};
use prost::Message;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Distinct requests per size; iterations cycle through them.
const REQUESTS: usize = 8;
const SIZES: [usize; 2] = [500, 100];

/// Touches every field of every span (and the resource attribute count).
#[derive(Default)]
struct TouchFields {
    acc: u64,
}

impl<'a> SpanSink<'a> for TouchFields {
    fn resource(&mut self, r: ResourceView<'a>) {
        self.acc = self.acc.wrapping_add(r.attributes.len() as u64);
    }

    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        let s = black_box(s);
        self.acc = self.acc.wrapping_add(touch_view(s));
        Ok(())
    }
}

fn touch_view(s: &SpanView<'_>) -> u64 {
    let lens = s.trace_id.len()
        + s.span_id.len()
        + s.trace_state.len()
        + s.parent_span_id.len()
        + s.name.len()
        + s.status_message.len()
        + s.attributes.len();
    (lens as u64)
        ^ u64::from(s.flags)
        ^ (s.kind as u64)
        ^ s.start_time_unix_nano
        ^ s.end_time_unix_nano.rotate_left(7)
        ^ (s.status_code as u64).rotate_left(13)
        ^ u64::from(s.trace_id.first().copied().unwrap_or(0))
}

fn weigh_value(v: AnyValueRef<'_>) -> u64 {
    match v {
        AnyValueRef::Empty => 0,
        AnyValueRef::Str(b) | AnyValueRef::Bytes(b) | AnyValueRef::Array(b) => b.len() as u64,
        AnyValueRef::KvList(b) => b.len() as u64,
        AnyValueRef::Bool(b) => u64::from(b),
        AnyValueRef::Int(i) => i as u64,
        AnyValueRef::Double(d) => d.to_bits(),
    }
}

/// [`TouchFields`] plus walking every attribute of spans and resources.
#[derive(Default)]
struct TouchAttrs {
    acc: u64,
}

impl<'a> SpanSink<'a> for TouchAttrs {
    fn resource(&mut self, r: ResourceView<'a>) {
        for (k, v) in r.attributes {
            self.acc = self.acc.wrapping_add(k.len() as u64 ^ weigh_value(v));
        }
    }

    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        let s = black_box(s);
        let mut acc = touch_view(s);
        // Read (and validated) as the classifier reads an entry span's attributes.
        s.attributes
            .try_for_each(|k, v| acc = acc.wrapping_add(k.len() as u64 ^ weigh_value(v)))?;
        self.acc = self.acc.wrapping_add(acc);
        Ok(())
    }
}

fn weigh_kvs(kvs: &[KeyValue]) -> u64 {
    let mut acc = 0u64;
    for kv in kvs {
        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            None => 0,
            Some(any_value::Value::StringValue(s)) => s.len() as u64,
            Some(any_value::Value::BytesValue(b)) => b.len() as u64,
            Some(any_value::Value::BoolValue(b)) => u64::from(*b),
            Some(any_value::Value::IntValue(i)) => *i as u64,
            Some(any_value::Value::DoubleValue(d)) => d.to_bits(),
            Some(any_value::Value::ArrayValue(a)) => a.values.len() as u64,
            Some(any_value::Value::KvlistValue(l)) => l.values.len() as u64,
            Some(_) => 1,
        };
        acc = acc.wrapping_add(kv.key.len() as u64 ^ v);
    }
    acc
}

/// Decodes with prost and walks every span like [`TouchAttrs`].
fn prost_walk(body: &[u8]) -> u64 {
    let req = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => panic!("prost decode failed: {e}"),
    };
    let mut acc = 0u64;
    for rs in &req.resource_spans {
        if let Some(r) = &rs.resource {
            acc = acc.wrapping_add(weigh_kvs(&r.attributes));
        }
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let s = black_box(s);
                let (code, msg) = s
                    .status
                    .as_ref()
                    .map_or((0, 0), |st| (st.code, st.message.len()));
                let lens = s.trace_id.len()
                    + s.span_id.len()
                    + s.trace_state.len()
                    + s.parent_span_id.len()
                    + s.name.len()
                    + msg
                    + s.attributes.len();
                let mut a = (lens as u64)
                    ^ u64::from(s.flags)
                    ^ (s.kind as u64)
                    ^ s.start_time_unix_nano
                    ^ s.end_time_unix_nano.rotate_left(7)
                    ^ (code as u64).rotate_left(13)
                    ^ u64::from(s.trace_id.first().copied().unwrap_or(0));
                a = a.wrapping_add(weigh_kvs(&s.attributes));
                acc = acc.wrapping_add(a);
            }
        }
    }
    acc
}

fn scan_with<'a, S: SpanSink<'a>>(body: &'a [u8], sink: &mut S) -> usize {
    match scan_traces(body, sink) {
        Ok(n) => n,
        Err(e) => panic!("scan failed: {e}"),
    }
}

fn bench_size(c: &mut Criterion, spans: usize, reqs: &[Encoded]) {
    let mut group = c.benchmark_group(format!("scan_{spans}"));
    group.throughput(Throughput::Elements(reqs[0].spans as u64));

    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("scan"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let mut sink = TouchFields::default();
            let n = scan_with(black_box(&reqs[i].body), &mut sink);
            black_box((n, sink.acc))
        })
    });
    group.bench_function(BenchmarkId::from_parameter("scan_attrs"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let mut sink = TouchAttrs::default();
            let n = scan_with(black_box(&reqs[i].body), &mut sink);
            black_box((n, sink.acc))
        })
    });
    group.bench_function(BenchmarkId::from_parameter("prost_decode"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            black_box(prost_walk(black_box(&reqs[i].body)))
        })
    });
    group.finish();
}

/// Where criterion writes its estimates (same rule as criterion's own default).
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(h);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

/// Time per iteration (ns) of `group/bench` as criterion reports it (the slope estimate,
/// else the mean), if criterion wrote it during this run.
fn typical_ns(group: &str, bench: &str, since: SystemTime) -> Option<f64> {
    let path = criterion_dir()
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let estimate = |name: &str| v.get(name)?.get("point_estimate")?.as_f64();
    estimate("slope").or_else(|| estimate("mean"))
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .without_plots()
        .configure_from_args();

    let mut sets = Vec::new();
    for spans in SIZES {
        let reqs = encoded_requests(REQUESTS, spans, 42);
        let bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
        let n: usize = reqs.iter().map(|r| r.spans).sum();
        println!(
            "{spans}-span requests: {} bytes each on average, {:.1} bytes per span",
            bytes / reqs.len(),
            bytes as f64 / n as f64
        );
        sets.push((spans, reqs));
    }
    for (spans, reqs) in &sets {
        bench_size(&mut c, *spans, reqs);
    }
    c.final_summary();

    let mut printed_header = false;
    for (spans, reqs) in &sets {
        let group = format!("scan_{spans}");
        let per = reqs[0].spans as f64;
        let get = |b: &str| typical_ns(&group, b, started);
        let (Some(scan), Some(attrs), Some(prost)) =
            (get("scan"), get("scan_attrs"), get("prost_decode"))
        else {
            continue;
        };
        if !printed_header {
            println!("\nsummary (criterion estimates, as in the time lines above)");
            println!(
                "{:>6} {:>16} {:>16} {:>16} {:>12} {:>12}",
                "spans", "scan spans/s", "scan+attrs /s", "prost /s", "scan/prost", "attrs/prost"
            );
            printed_header = true;
        }
        let rate = |ns: f64| per / (ns / 1e9);
        println!(
            "{:>6} {:>16} {:>16} {:>16} {:>11.1}x {:>11.1}x",
            spans,
            thousands(rate(scan)),
            thousands(rate(attrs)),
            thousands(rate(prost)),
            prost / scan,
            prost / attrs
        );
    }
}
