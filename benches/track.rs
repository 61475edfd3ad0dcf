//! Per-span cost of completeness tracking on the shard (`GapState::observe`, the trace
//! tracker with the default `completeness.max_memory`), once its fingerprint tables have
//! grown to their full size, far beyond the caches:
//!
//! * `track/unique_traces`: every 500-span batch brings 125 new 4-span traces (a SERVER
//!   root and three children), each complete in its batch and so judged on arrival;
//! * `track/repeated_traces`: the same 2,000 batches again and again, so every trace is
//!   found already remembered and its keys are met again rather than stored.
//!
//! `cargo bench --bench track [-- --warm-up-time 3 --measurement-time 5]`; `TRACK_BUDGET_MIB`
//! sets another budget for the tracker (the fingerprint tables get half of it).

use criterion::{Criterion, Throughput};
use otel_sli::completeness::spans::{SpanLink, TraceSpans};
use otel_sli::completeness::traces::{TraceTracker, TrackerConfig};
use otel_sli::completeness::{GapState, Observed};
use otel_sli::settings::DEFAULT_TRACKING_MEMORY;
use std::hint::black_box;
use std::time::Duration;

const SPANS: usize = 500;
const SPANS_PER_TRACE: usize = 4;

/// One batch's spans for traces `first..first + 125`.
fn batch(first: u64, out: &mut TraceSpans) {
    out.clear();
    for t in 0..(SPANS / SPANS_PER_TRACE) as u64 {
        let n = first + t;
        let trace_id = u128::from(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(n);
        let root = n.wrapping_mul(0xd6e8_feb8_6659_fd93) | 1;
        for s in 0..SPANS_PER_TRACE as u64 {
            out.push(
                trace_id,
                SpanLink {
                    span_id: root.wrapping_add(s),
                    parent: if s > 0 { root } else { 0 },
                    parent_remote: s == 0,
                    service: 0,
                },
            );
        }
    }
}

fn gaps() -> GapState {
    let bytes = std::env::var("TRACK_BUDGET_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(DEFAULT_TRACKING_MEMORY as usize, |mib| mib << 20);
    GapState::new(Some(TraceTracker::new(TrackerConfig {
        timeout_nanos: 30_000_000_000,
        max_traces: 200_000,
        max_spans_per_trace: 1_000,
        max_bytes: bytes,
    })))
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(3))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
        .without_plots()
        .configure_from_args();
    let services: Vec<Box<str>> = vec!["checkout".into()];
    let mut group = c.benchmark_group("track");
    group.throughput(Throughput::Elements(SPANS as u64));

    let mut g = gaps();
    let mut spans = TraceSpans::default();
    let mut next = 1u64;
    let now = 1_700_000_000_000_000_000u64;
    group.bench_function("unique_traces", |b| {
        b.iter(|| {
            batch(next, &mut spans);
            next += (SPANS / SPANS_PER_TRACE) as u64;
            g.observe(
                now,
                black_box(Observed {
                    services: &services,
                    signals: &[],
                    spans: &spans,
                }),
            );
        })
    });

    let batches: Vec<TraceSpans> = (0..2_000u64)
        .map(|i| {
            let mut v = TraceSpans::default();
            batch(1 + i * (SPANS / SPANS_PER_TRACE) as u64, &mut v);
            v
        })
        .collect();
    let mut g = gaps();
    let mut i = 0;
    group.bench_function("repeated_traces", |b| {
        b.iter(|| {
            let spans = &batches[i % batches.len()];
            i += 1;
            g.observe(
                now,
                black_box(Observed {
                    services: &services,
                    signals: &[],
                    spans,
                }),
            );
        })
    });
    group.finish();
}
