//! The per-span hot paths, for counting their instructions under `valgrind --tool=callgrind`
//! (`tests/instruction_budget.rs` runs it and holds the counts to a budget per span).
//!
//! ```sh
//! instructions <workload> <requests>
//! ```
//!
//! Workloads, each over `requests` pre-encoded 500-span requests of the synthetic workload
//! (10 services × 8 features, one SERVER span and 3 children per trace):
//!
//! * `scan`: the zero-copy wire scan alone (`scan_traces` into a sink that counts);
//! * `collect`: the per-request ingest work: scan, classify, key hashing and per-shard
//!   batching (`pipeline::batch::Collector`, 2 shards, its batches sized from the request
//!   as the pipeline sizes them), with every span's trace facts gathered for completeness
//!   tracking and feature-flag evaluations looked for, as the pipeline does by default;
//! * `collect_no_flags`: `collect` with flags off (`flags.enabled: false`);
//! * `collect_no_traces`: `collect` with completeness tracking off
//!   (`completeness.enabled: false`): what the receiving thread's part of tracking costs
//!   is `collect` less this;
//! * `collect_flags`: `collect` over requests whose entry spans each carry one
//!   `feature_flag.evaluation` event (so one flag item per entry span);
//! * `record`: recording the entry spans' observations into the series table
//!   (`SeriesTable::record`), the shard side of ingest;
//! * `track`: completeness tracking of every span (`GapState::observe`, the trace
//!   tracker), with each round of the distinct requests judged (`GapState::expire`) once
//!   the trace timeout has passed, so every trace is created, judged and forgotten: the
//!   steady state of a shard.
//!
//! Setup (encoding the requests, warming the table) is the same whatever `requests` is, so
//! the difference between two runs divided by the difference in spans is the cost per span.
//! Prints `spans=<n>` (the spans the measured part processed).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otel_sli::completeness::traces::{TraceTracker, TrackerConfig};
use otel_sli::completeness::GapState;
use otel_sli::otlp::scan::{scan_traces, ResourceView, ScanError, SpanSink, SpanView};
use otel_sli::otlp::synth::{traces_request, Rng, Workload};
use otel_sli::pipeline::batch::Collector;
use otel_sli::settings::DEFAULT_BUCKETS;
use otel_sli::sli::classify::{Classifier, ClassifyConfig};
use otel_sli::sli::flag::FlagRules;
use otel_sli::sli::hist::Layout;
use otel_sli::sli::series::{SeriesSettings, SeriesTable};
use otel_sli::sli::window::slot_of;
use prost::Message;
use std::hint::black_box;
use std::sync::Arc;

const START_UNIX_NANOS: u64 = 1_700_000_000_000_000_000;
/// Distinct requests, cycled through.
const DISTINCT: usize = 16;

struct Count(u64);

impl<'a> SpanSink<'a> for Count {
    fn resource(&mut self, r: ResourceView<'a>) {
        black_box(r);
    }
    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        black_box(s);
        self.0 += 1;
        Ok(())
    }
}

fn requests(flag_events: usize) -> Vec<Vec<u8>> {
    let w = Workload {
        seed: 7,
        flag_events,
        ..Workload::default()
    };
    let mut rng = Rng::new(7);
    (0..DISTINCT as u64)
        .map(|i| {
            let (req, _, _): (ExportTraceServiceRequest, u64, u64) =
                traces_request(&w, &mut rng, 500, START_UNIX_NANOS + i * 1_000_000_000);
            req.encode_to_vec()
        })
        .collect()
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(workload), Some(n)) = (args.first(), args.get(1)) else {
        // Built and run without arguments by `cargo test`: nothing to measure.
        eprintln!(
            "usage: instructions scan|collect|collect_no_flags|collect_no_traces|collect_flags|record|track <requests>"
        );
        return Ok(());
    };
    let n: usize = n.parse().map_err(|e| format!("requests {n:?}: {e}"))?;
    let flagged = workload == "collect_flags";
    let reqs = requests(usize::from(flagged));
    let flags = workload != "collect_no_flags";
    let classifier = Classifier::new(ClassifyConfig {
        flags,
        ..ClassifyConfig::default()
    })
    .map_err(|e| e.to_string())?;
    // The defaults of `flags:`: every key, child spans' evaluations attributed.
    let rules = FlagRules::default();
    let mut spans = 0u64;
    match workload.as_str() {
        "scan" => {
            for i in 0..n {
                let mut c = Count(0);
                scan_traces(black_box(&reqs[i % DISTINCT]), &mut c).map_err(|e| e.to_string())?;
                spans += c.0;
            }
        }
        "collect" | "collect_no_flags" | "collect_flags" | "collect_no_traces" => {
            for i in 0..n {
                let req = black_box(&reqs[i % DISTINCT]);
                let mut col = Collector::new(&classifier, 2)
                    .with_traces(workload != "collect_no_traces", START_UNIX_NANOS, u64::MAX)
                    .with_flags(flags.then_some(&rules))
                    .with_size_hint(req.len());
                scan_traces(req, &mut col).map_err(|e| e.to_string())?;
                col.finish();
                spans += col.tally.spans;
                black_box(col.batches);
            }
        }
        "record" => {
            let settings = Arc::new(
                SeriesSettings::new(
                    Layout::new(2).map_err(|e| e.to_string())?,
                    &DEFAULT_BUCKETS,
                    10_000,
                    2,
                )
                // Example requests are kept by default.
                .with_exemplars(true),
            );
            let mut table = SeriesTable::new(settings);
            let batches: Vec<_> = reqs
                .iter()
                .map(|r| {
                    let mut col = Collector::new(&classifier, 1);
                    scan_traces(r, &mut col).map(|_| (col.tally.spans, col.batches))
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let slot = slot_of(START_UNIX_NANOS);
            // Warm: every series and histogram bucket exists before measuring.
            for (_, b) in &batches {
                for item in &b[0].items {
                    table.record(item.hash, b[0].key(item), &item.obs, slot);
                }
            }
            for i in 0..n {
                let (request_spans, b) = &batches[i % DISTINCT];
                for item in &b[0].items {
                    let (obs, ids) = (black_box(&item.obs), Some(&item.ids));
                    table.record_with(item.hash, b[0].key(item), obs, ids, slot);
                }
                spans += request_spans;
            }
            black_box(&table);
        }
        "track" => {
            const TIMEOUT: u64 = 30_000_000_000;
            let batches: Vec<_> = reqs
                .iter()
                .map(|r| {
                    let mut col = Collector::new(&classifier, 1).with_traces(
                        true,
                        START_UNIX_NANOS,
                        u64::MAX,
                    );
                    scan_traces(r, &mut col).map(|_| {
                        col.finish();
                        (col.tally.spans, col.batches)
                    })
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let mut gaps = GapState::new(Some(TraceTracker::new(TrackerConfig {
                timeout_nanos: TIMEOUT,
                max_traces: 200_000,
                max_spans_per_trace: 1_000,
                max_bytes: 64 << 20,
            })));
            let mut now = START_UNIX_NANOS;
            // Warm: every service is known and the tables have grown before measuring.
            for (_, b) in &batches {
                gaps.observe(now, b[0].observed());
            }
            now += TIMEOUT;
            gaps.expire(now);
            for i in 0..n {
                if i % DISTINCT == 0 {
                    // The previous round's traces time out and are judged.
                    now += TIMEOUT;
                    gaps.expire(now);
                }
                let (request_spans, b) = &batches[i % DISTINCT];
                gaps.observe(now, black_box(b[0].observed()));
                spans += request_spans;
            }
            now += TIMEOUT;
            gaps.expire(now);
            black_box(&gaps);
        }
        other => {
            return Err(format!(
                "unknown workload {other:?} (scan, collect, collect_no_flags, collect_no_traces, collect_flags, record, track)"
            ))
        }
    }
    println!("spans={spans}");
    Ok(())
}
