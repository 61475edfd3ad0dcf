//! The zero-copy wire scanner over arbitrary bytes, for traces, metrics and logs, and the
//! trace path the receivers take after it: classification into per-shard batches, then
//! recording into a shard's series table and completeness state.
//!
//! Oracle: no panic; and wherever prost decodes the bytes, the scanner must accept them
//! too and see the same number of spans (it accepts a superset of what prost accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otel_sli::completeness::traces::TraceTracker;
use otel_sli::completeness::GapState;
use otel_sli::otlp::scan::{
    count_log_records, count_metric_points, log_records_by_resource, metric_points_by_resource,
    scan_request_points, scan_traces, AttrsRef, ResourceView, ScanError, SpanSink, SpanView,
};
use otel_sli::otlp::tracestate;
use otel_sli::pipeline::batch::Collector;
use otel_sli::sli::series::SeriesTable;
use otel_sli::sli::window::slot_of;
use prost::Message;

/// Touches every attribute the way classifiers do.
fn walk(attrs: AttrsRef<'_>) -> usize {
    let mut n = 0;
    for (k, v) in attrs.iter() {
        n += k.len();
        n += v.as_str().map_or(0, str::len);
        n += usize::from(v.as_i64().is_some());
    }
    n += usize::from(attrs.get(b"service.name").is_some());
    n + attrs.len()
}

struct Walk(usize, usize);

impl<'a> SpanSink<'a> for Walk {
    fn resource(&mut self, r: ResourceView<'a>) {
        self.0 += walk(r.attributes);
    }
    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        // Every span's attributes validated, as a full decode does.
        s.attributes.try_for_each(|_, _| ())?;
        self.1 += 1;
        self.0 += walk(s.attributes);
        self.0 += tracestate::sampling(s.trace_state).weight() as usize;
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut w = Walk(0, 0);
    let scanned = scan_traces(data, &mut w);
    if let Ok(req) = ExportTraceServiceRequest::decode(data) {
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        assert_eq!(
            scanned.as_ref().ok(),
            Some(&spans),
            "prost decodes, scanner must agree"
        );
    }

    // The receiver's trace path: classify into batches, then record as a shard does.
    if scanned.is_ok() {
        let now = 1_700_000_000_000_000_000u64;
        let mut col =
            Collector::new(otel_sli_fuzz::classifier(), 2).with_traces(true, now, 1 << 40);
        if scan_traces(data, &mut col).is_ok() {
            col.finish();
            let cfg = otel_sli_fuzz::default_config();
            let mut table = SeriesTable::new(otel_sli_fuzz::series_settings());
            let mut gaps = GapState::new(cfg.pipeline.traces.map(TraceTracker::new));
            for batch in &col.batches {
                gaps.observe(now, batch.observed());
                for item in &batch.items {
                    let _ = table.record(item.hash, batch.key(item), &item.obs, slot_of(now));
                }
            }
            let _ = table.snapshot();
            gaps.expire(now.saturating_add(3_600_000_000_000));
            let _ = gaps.snapshot();
            let _ = col.tally.error_message();
        }
    }

    let points = count_metric_points(data);
    if ExportMetricsServiceRequest::decode(data).is_ok() {
        assert!(
            points.is_ok(),
            "prost decodes metrics, scanner must agree: {points:?}"
        );
    }
    let _ = metric_points_by_resource(data, &mut |a, n| {
        w.0 += walk(a) + n as usize;
    });
    let _ = scan_request_points(data, &mut |a, p| {
        w.0 += walk(a) + walk(p.attributes) + p.metric.len();
    });
    let records = count_log_records(data);
    if ExportLogsServiceRequest::decode(data).is_ok() {
        assert!(
            records.is_ok(),
            "prost decodes logs, scanner must agree: {records:?}"
        );
    }
    let _ = log_records_by_resource(data, &mut |a, n| {
        w.0 += walk(a) + n as usize;
    });
    std::hint::black_box(w.0);
});
