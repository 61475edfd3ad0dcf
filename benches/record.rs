//! Per-span cost of the stages after the scan.
//!
//! * `classify/all_spans`: `Classifier::classify` (default `ClassifyConfig`) over every span of
//!   the synthetic workload (3 of 4 spans are not entry spans and return early);
//! * `classify/entry_spans`: the same over the SERVER (entry) spans only;
//! * `record/steady_slot`: `SeriesTable::record` of entry observations into 80 series
//!   (10 services × 8 features) with the workload's latency spread (~1 ms to ~2 s), all in one
//!   time slot, the histograms already populated: the hot path under sustained load;
//! * `record/new_slot_each_iter`: the same, but every iteration moves to the next 10 s slot,
//!   so each series rotates its windows once per ~50 observations (lighter load per series);
//! * `record/steady_slot_with_slos`: `steady_slot` with 20 SLOs configured (per service one
//!   availability SLO on every feature and one latency SLO on its `GET` features, both
//!   globs), each observation also counted into the shard's SLO tally, which is drained
//!   once per iteration as a flush would;
//! * `collector/request`: the whole `pipeline::batch::Collector` sink over a 500-span request
//!   (scan + classify + key hashing + per-shard batching, 2 shards);
//! * `collector/request_tracked`: the same with trace tracking on (the default), which also
//!   batches every span for the completeness tracker;
//! * `collector/request_and_record`: the collector plus recording its batch into a table,
//!   i.e. all the per-span CPU work of ingestion except transport and the shard hand-off.
//!
//! `cargo bench --bench record [-- --warm-up-time 1 --measurement-time 3]`

mod common;

use common::encoded_requests;
use criterion::{BenchmarkId, Criterion, Throughput};
use otel_sli::otlp::scan::{scan_traces, ResourceView, ScanError, SpanSink, SpanView};
use otel_sli::pipeline::batch::{Batch, Collector};
use otel_sli::settings::DEFAULT_BUCKETS;
use otel_sli::sli::classify::{kind, Classifier, ClassifyConfig, ResourceValues, Verdict};
use otel_sli::sli::hist::Layout;
use otel_sli::sli::series::{SeriesSettings, SeriesTable};
use otel_sli::sli::window::slot_of;
use otel_sli::slo::def::{FeatureMatch, SliKind, SloDef};
use otel_sli::slo::tally::SloTally;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// Collects span views and per-resource values, so `classify` can be measured alone.
struct Gather<'a, 'c> {
    classifier: &'c Classifier,
    resources: Vec<ResourceValues<'a>>,
    spans: Vec<(SpanView<'a>, usize)>,
}

impl<'a> SpanSink<'a> for Gather<'a, '_> {
    fn resource(&mut self, r: ResourceView<'a>) {
        self.resources.push(self.classifier.resource(r.attributes));
    }
    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        self.spans
            .push((*s, self.resources.len().saturating_sub(1)));
        Ok(())
    }
}

fn settings() -> Arc<SeriesSettings> {
    Arc::new(SeriesSettings::new(
        Layout::new(2).expect("layout"),
        &DEFAULT_BUCKETS,
        10_000,
        2,
    ))
}

fn record_all(table: &mut SeriesTable, batch: &Batch, slot: u64) {
    for item in &batch.items {
        table.record_with(item.hash, batch.key(item), &item.obs, Some(&item.ids), slot);
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .sample_size(50)
        .without_plots()
        .configure_from_args();

    let classifier = Classifier::new(ClassifyConfig::default()).expect("default rules compile");
    let reqs = encoded_requests(32, 500, 7);

    // --- classify ---
    let mut gather = Gather {
        classifier: &classifier,
        resources: Vec::new(),
        spans: Vec::new(),
    };
    for r in &reqs[..8] {
        scan_traces(&r.body, &mut gather).expect("valid request");
    }
    let Gather {
        resources, spans, ..
    } = gather;
    let entries: Vec<(SpanView<'_>, usize)> = spans
        .iter()
        .filter(|(s, _)| s.kind == kind::SERVER)
        .copied()
        .collect();
    let mut group = c.benchmark_group("classify");
    let mut key_buf = Vec::with_capacity(128);
    for (name, set) in [("all_spans", &spans), ("entry_spans", &entries)] {
        group.throughput(Throughput::Elements(set.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut n = 0u64;
                for (span, r) in set.iter() {
                    key_buf.clear();
                    let v = classifier.classify(black_box(span), &resources[*r], &mut key_buf);
                    n += u64::from(matches!(v, Ok(Verdict::Entry(_))));
                    black_box(&key_buf);
                }
                black_box(n)
            })
        });
    }
    group.finish();

    // --- SeriesTable::record ---
    // One batch (one shard) holding the entry observations of all 32 requests.
    let mut collector = Collector::new(&classifier, 1);
    for r in &reqs {
        scan_traces(&r.body, &mut collector).expect("valid request");
    }
    let batch = collector.batches.pop().expect("one batch");
    let slot0 = slot_of(common::START_UNIX_NANOS);
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(batch.items.len() as u64));
    {
        let mut table = SeriesTable::new(settings());
        for _ in 0..20 {
            record_all(&mut table, &batch, slot0);
        }
        assert_eq!(table.len(), 80, "10 services × 8 features");
        group.bench_function(BenchmarkId::from_parameter("steady_slot"), |b| {
            b.iter(|| record_all(&mut table, black_box(&batch), slot0))
        });
    }
    {
        // The same with example requests kept (the default configuration).
        let settings =
            SeriesSettings::new(Layout::new(2).expect("layout"), &DEFAULT_BUCKETS, 10_000, 2);
        let mut table = SeriesTable::new(Arc::new(settings.with_exemplars(true)));
        for _ in 0..20 {
            record_all(&mut table, &batch, slot0);
        }
        group.bench_function(BenchmarkId::from_parameter("steady_slot_exemplars"), |b| {
            b.iter(|| record_all(&mut table, black_box(&batch), slot0))
        });
    }
    {
        let mut table = SeriesTable::new(settings());
        let mut slot = slot0;
        for _ in 0..400 {
            slot += 1;
            record_all(&mut table, &batch, slot);
        }
        group.bench_function(BenchmarkId::from_parameter("new_slot_each_iter"), |b| {
            b.iter(|| {
                slot += 1;
                record_all(&mut table, black_box(&batch), slot)
            })
        });
    }
    {
        let slos: Vec<SloDef> = (0..10)
            .flat_map(|i| {
                let slo = |name: String, feature: &str, sli| SloDef {
                    name,
                    service: otel_sli::otlp::synth::service_name(i),
                    feature: FeatureMatch::new(feature),
                    sli,
                    objective: 0.999,
                    window: Duration::from_secs(30 * 86_400),
                    description: None,
                    labels: Default::default(),
                };
                [
                    slo(format!("s{i}-all"), "*", SliKind::Availability),
                    slo(
                        format!("s{i}-get"),
                        "GET *",
                        SliKind::Latency {
                            threshold: Duration::from_millis(100),
                        },
                    ),
                ]
            })
            .collect();
        let settings = Arc::new(
            SeriesSettings::new(Layout::new(2).expect("layout"), &DEFAULT_BUCKETS, 10_000, 2)
                .with_slos(slos.iter().map(|d| (d.service.clone(), d.feature.clone()))),
        );
        let mut table = SeriesTable::new(settings);
        let mut tally = SloTally::new(&slos, Duration::from_secs(3600));
        let now = common::START_UNIX_NANOS;
        let record_with_slos = |table: &mut SeriesTable, tally: &mut SloTally| {
            for item in &batch.items {
                let m = table.record(item.hash, batch.key(item), &item.obs, slot0);
                tally.record(m, &item.obs, now);
            }
            black_box(tally.drain());
        };
        for _ in 0..20 {
            record_with_slos(&mut table, &mut tally);
        }
        group.bench_function(BenchmarkId::from_parameter("steady_slot_with_slos"), |b| {
            b.iter(|| record_with_slos(&mut table, &mut tally))
        });
    }
    group.finish();

    // --- the Collector sink over a whole request ---
    let mut group = c.benchmark_group("collector");
    group.throughput(Throughput::Elements(reqs[0].spans as u64));
    let mut i = 0usize;
    group.bench_function(BenchmarkId::from_parameter("request"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let mut col = Collector::new(&classifier, 2);
            scan_traces(black_box(&reqs[i].body), &mut col).expect("valid request");
            black_box((col.tally, col.batches))
        })
    });
    group.bench_function(BenchmarkId::from_parameter("request_tracked"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let mut col = Collector::new(&classifier, 2).with_traces(true, 0, u64::MAX);
            scan_traces(black_box(&reqs[i].body), &mut col).expect("valid request");
            col.finish();
            black_box((col.tally, col.batches))
        })
    });
    let mut table = SeriesTable::new(settings());
    for r in &reqs {
        let mut col = Collector::new(&classifier, 1);
        scan_traces(&r.body, &mut col).expect("valid request");
        for _ in 0..20 {
            record_all(&mut table, &col.batches[0], slot0);
        }
    }
    group.bench_function(BenchmarkId::from_parameter("request_and_record"), |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let mut col = Collector::new(&classifier, 1);
            scan_traces(black_box(&reqs[i].body), &mut col).expect("valid request");
            for batch in &col.batches {
                record_all(&mut table, batch, slot0);
            }
            black_box(col.tally)
        })
    });
    group.finish();

    c.final_summary();
}
