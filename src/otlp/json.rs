//! OTLP/JSON request bodies (hex trace/span ids, integer enums, 64-bit integers as strings or
//! numbers, unknown fields ignored), converted to the protobuf encoding so the rest of the
//! pipeline sees one format. JSON is the slow path by nature; this costs one decode and one
//! encode.

use crate::telemetry::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

/// Most memory one JSON body may expand to while it is decoded.
pub const MAX_DECODED_BYTES: usize = 512 << 20;

/// Conservative bytes of decoded structure per JSON object (a span or log record is larger,
/// an attribute smaller).
const BYTES_PER_OBJECT: usize = 256;

/// Refuses a body whose decoding could take more than [`MAX_DECODED_BYTES`]: a body of tiny
/// objects (`{},{},…`) expands ~100× when decoded into message structs, so the body limit
/// alone does not bound memory. Counts `{` bytes, an upper bound on the number of objects.
///
/// Otherwise returns the memory converting the body may take beside the body itself: the
/// decoded structures and the protobuf written from them (no larger than the JSON), bytes.
pub fn check_expansion(body: &[u8]) -> Result<usize, String> {
    let objects = body.iter().filter(|&&b| b == b'{').count();
    let decoded = objects.saturating_mul(BYTES_PER_OBJECT);
    if decoded > MAX_DECODED_BYTES {
        return Err(format!(
            "JSON body has {objects} objects; decoding it could take more than {} MiB, split it into smaller requests",
            MAX_DECODED_BYTES >> 20
        ));
    }
    Ok(decoded.saturating_add(body.len()))
}

/// Converts an OTLP/JSON body of `signal` to protobuf bytes.
///
/// An id that is not valid hex (`traceId`, `spanId`, `parentSpanId`, also in links and log
/// records) does not fail the whole request: it is read as empty, so that one span is
/// rejected in `partial_success` (or, for a parent id, read as "no parent") and the rest of
/// the request is used.
pub fn to_protobuf(signal: Signal, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    match decode(signal, body) {
        Ok(bytes) => Ok(bytes),
        Err(strict) => {
            // Slow path, only for bodies that failed: blank the undecodable ids and retry.
            let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
                return Err(strict);
            };
            if blank_bad_ids(&mut value) == 0 {
                return Err(strict);
            }
            let fixed = serde_json::to_vec(&value)?;
            decode(signal, &fixed).map_err(|_| strict)
        }
    }
}

fn decode(signal: Signal, body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
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

/// Replaces id strings that are not valid hex with `""`, anywhere in the document.
/// Returns how many were replaced.
fn blank_bad_ids(v: &mut Value) -> usize {
    const IDS: [&str; 3] = ["traceId", "spanId", "parentSpanId"];
    let mut n = 0;
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if IDS.contains(&k.as_str()) {
                    if let Value::String(s) = child {
                        if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                            s.clear();
                            n += 1;
                        }
                    }
                } else {
                    n += blank_bad_ids(child);
                }
            }
        }
        Value::Array(items) => n += items.iter_mut().map(blank_bad_ids).sum::<usize>(),
        _ => {}
    }
    n
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
    fn object_floods_are_refused_before_decoding() {
        let flood = "{},".repeat(3 << 20);
        assert!(check_expansion(flood.as_bytes()).is_err());
        assert!(check_expansion(b"{\"resourceSpans\":[]}").is_ok());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(to_protobuf(Signal::Traces, b"{not json").is_err());
        assert!(to_protobuf(
            Signal::Traces,
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"x"}]}]}]}"#
        )
        .is_err());
    }

    #[test]
    fn bad_hex_ids_reject_only_their_span() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"zz","spanId":"EEE19B7EC3C1B174","name":"bad"},
            {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"good"}]}]}]}"#;
        let bytes = to_protobuf(Signal::Traces, body).expect("rest of the request is used");
        let req = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("protobuf");
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert!(spans[0].trace_id.is_empty(), "undecodable id read as empty");
        assert_eq!(spans[1].trace_id.len(), 16);
    }
}
