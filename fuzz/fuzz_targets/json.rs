//! OTLP/JSON decoding of arbitrary bytes, for each signal, as the HTTP receiver does it
//! (expansion check, then conversion to protobuf).
//!
//! Oracle: no panic; whatever the conversion produces is protobuf the scanner accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otel_sli::otlp::json;
use otel_sli::otlp::scan::{
    count_log_records, count_metric_points, scan_traces, ResourceView, ScanError, SpanSink,
    SpanView,
};
use otel_sli::telemetry::Signal;

struct Count(usize);

impl<'a> SpanSink<'a> for Count {
    fn resource(&mut self, _: ResourceView<'a>) {}
    fn span(&mut self, _: &SpanView<'a>) -> Result<(), ScanError> {
        self.0 += 1;
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if json::check_expansion(data).is_err() {
        return;
    }
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        let Ok(proto) = json::to_protobuf(signal, data) else {
            continue;
        };
        match signal {
            Signal::Traces => {
                let r = scan_traces(&proto, &mut Count(0));
                assert!(r.is_ok(), "converted traces must scan: {r:?}");
            }
            Signal::Metrics => {
                let r = count_metric_points(&proto);
                assert!(r.is_ok(), "converted metrics must scan: {r:?}");
            }
            Signal::Logs => {
                let r = count_log_records(&proto);
                assert!(r.is_ok(), "converted logs must scan: {r:?}");
            }
        }
    }
});
