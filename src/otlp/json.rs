//! OTLP/JSON request bodies (hex trace/span ids, integer enums, 64-bit integers as strings or
//! numbers, unknown fields ignored), converted to the protobuf encoding so the rest of the
//! pipeline sees one format. JSON is the slow path by nature; this costs one decode and one
//! encode.

use crate::telemetry::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// Converts an OTLP/JSON body of `signal` to protobuf bytes.
pub fn to_protobuf(signal: Signal, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    Ok(match signal {
        Signal::Traces => {
            serde_json::from_slice::<ExportTraceServiceRequest>(body)?.encode_to_vec()
        }
        Signal::Metrics => {
            serde_json::from_slice::<ExportMetricsServiceRequest>(body)?.encode_to_vec()
        }
        Signal::Logs => serde_json::from_slice::<ExportLogsServiceRequest>(body)?.encode_to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_decodes() {
        let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
          "scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
          "parentSpanId":"","name":"GET /cart","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
          "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}}],"status":{"code":2},"futureField":{"a":1}}]}]}]}"#;
        let bytes = to_protobuf(Signal::Traces, body).expect("valid OTLP/JSON");
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("protobuf");
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id.len(), 16);
        assert_eq!(span.kind, 2);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            1_000_000_000
        );
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(to_protobuf(Signal::Traces, b"{not json").is_err());
        assert!(to_protobuf(
            Signal::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#
        )
        .is_err());
    }
}
