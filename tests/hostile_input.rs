//! Hostile but well-framed input over OTLP/HTTP, protobuf and JSON: deeply nested attribute
//! values, a span with a million attributes, invalid UTF-8, ids of the wrong length and
//! extreme timestamps. Each gets a defined answer (accepted, partially rejected or refused
//! with 400), the counts in `/metrics` and `/api/v1/slis` say what happened, and the server
//! keeps serving. Framing errors (garbage, truncation, bombs, wrong content types) are in
//! `receiver_errors.rs`.

mod common;

use common::otlp::trace_request;
use common::{http_post, sample, TestServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, Span};
use otel_sli::otlp::synth::{kv_int, kv_str};
use prost::Message;
use std::time::SystemTime;

const PROTO: &str = "application/x-protobuf";
const JSON: &str = "application/json";
const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const SPAN_ID: &str = "eee19b7ec3c1b174";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// A SERVER span of `GET /cart` that took 5 ms, ending now.
fn entry_span() -> Span {
    let end = now();
    Span {
        trace_id: vec![0x5b; 16],
        span_id: vec![0xee; 8],
        name: "GET /cart".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: end - 5_000_000,
        end_time_unix_nano: end,
        attributes: vec![
            kv_str("http.request.method", "GET"),
            kv_str("http.route", "/cart"),
            kv_int("http.response.status_code", 200),
        ],
        ..Default::default()
    }
}

/// One length-delimited protobuf field.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A request of `service` holding one span: `span` as encoded, followed by `extra` (more
/// span fields, written by hand where prost's types cannot express them).
fn request_with_span_bytes(service: &str, span: &Span, extra: &[u8]) -> Vec<u8> {
    let mut span_bytes = span.encode_to_vec();
    span_bytes.extend_from_slice(extra);
    let resource = Resource {
        attributes: vec![kv_str("service.name", service)],
        ..Default::default()
    };
    let mut rs = field(1, &resource.encode_to_vec());
    rs.extend(field(2, &field(2, &span_bytes)));
    field(1, &rs)
}

/// A span attribute (`Span.attributes`, field 9) `key` whose value is `depth` nested
/// arrays (`AnyValue.array_value`, field 5) or kvlists (`kvlist_value`, field 6) around a
/// string.
fn nested_attribute(key: &str, depth: usize, kvlist: bool) -> Vec<u8> {
    let mut value = field(1, b"leaf");
    for _ in 0..depth {
        value = if kvlist {
            let mut kv = field(1, b"k");
            kv.extend(field(2, &value));
            field(6, &field(1, &kv))
        } else {
            field(5, &field(1, &value))
        };
    }
    let mut kv = field(1, key.as_bytes());
    kv.extend(field(2, &value));
    field(9, &kv)
}

/// The same as OTLP/JSON.
fn nested_json(depth: usize, kvlist: bool) -> String {
    let (open, close) = if kvlist {
        (r#"{"kvlistValue":{"values":[{"key":"k","value":"#, "}]}}")
    } else {
        (r#"{"arrayValue":{"values":["#, "]}}")
    };
    format!(
        "{}{{\"stringValue\":\"leaf\"}}{}",
        open.repeat(depth),
        close.repeat(depth)
    )
}

/// An OTLP/JSON request of service `cart` holding the given span objects.
fn json_request(spans: &[String]) -> Vec<u8> {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"cart"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    )
    .into_bytes()
}

/// An OTLP/JSON `GET /cart` SERVER span; `overrides` (member name, JSON value) replace the
/// defaults of ids, times and attributes.
fn json_span(overrides: &[(&str, String)]) -> String {
    let end = now();
    let mut members: Vec<(&str, String)> = vec![
        ("traceId", format!("\"{TRACE_ID}\"")),
        ("spanId", format!("\"{SPAN_ID}\"")),
        ("startTimeUnixNano", format!("\"{}\"", end - 5_000_000)),
        ("endTimeUnixNano", format!("\"{end}\"")),
        ("attributes", json_attributes("")),
    ];
    for (name, value) in overrides {
        members.retain(|(n, _)| n != name);
        members.push((name, value.clone()));
    }
    let members: Vec<String> = members
        .iter()
        .map(|(n, v)| format!("\"{n}\":{v}"))
        .collect();
    format!(r#"{{"name":"GET /cart","kind":2,{}}}"#, members.join(","))
}

/// The attributes of a `GET /cart` span after `before` (attribute objects, each followed
/// by a comma).
fn json_attributes(before: &str) -> String {
    format!(
        r#"[{before}{{"key":"http.request.method","value":{{"stringValue":"GET"}}}},{{"key":"http.route","value":{{"stringValue":"/cart"}}}}]"#
    )
}

/// Requests of `/v1/traces` over HTTP with `outcome`.
async fn requests(server: &TestServer, outcome: &str) -> f64 {
    let text = server.metrics().await;
    sample(
        &text,
        &format!(
            "otel_sli_requests_total{{transport=\"http\",signal=\"traces\",outcome=\"{outcome}\"}}"
        ),
    )
    .unwrap_or(0.0)
}

async fn counter(server: &TestServer, series: &str) -> f64 {
    sample(&server.metrics().await, series).unwrap_or(0.0)
}

/// Requests counted for `service`/`feature`, 0 without a series.
async fn sli_requests(server: &TestServer, service: &str, feature: &str) -> u64 {
    server.slis("all").await["slis"]
        .as_array()
        .expect("slis array")
        .iter()
        .find(|s| s["service"] == service && s["feature"] == feature)
        .map_or(0, |s| s["requests"].as_u64().expect("requests"))
}

async fn rejected_spans(resp: reqwest::Response) -> i64 {
    let bytes = resp.bytes().await.expect("body");
    ExportTraceServiceResponse::decode(bytes)
        .expect("ExportTraceServiceResponse")
        .partial_success
        .map_or(0, |p| p.rejected_spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_values_neither_overflow_the_stack_nor_stop_the_server() {
    let server = TestServer::start("").await;
    let addr = server.http;

    // Protobuf, 10,000 levels of arrays and of kvlists: the scanner bounds-checks nested
    // values without descending into them, so the span is used like any other.
    for kvlist in [false, true] {
        let body = request_with_span_bytes(
            "cart",
            &entry_span(),
            &nested_attribute("deep", 10_000, kvlist),
        );
        let r = http_post(addr, "/v1/traces", PROTO, None, body).await;
        assert_eq!(r.status(), 200, "kvlist: {kvlist}");
        assert_eq!(rejected_spans(r).await, 0);
    }
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 2);

    // JSON, the same depth: refused with 400 at the decoder's nesting limit.
    for kvlist in [false, true] {
        let deep = format!(
            r#"{{"key":"deep","value":{}}},"#,
            nested_json(10_000, kvlist)
        );
        let span = json_span(&[("attributes", json_attributes(&deep))]);
        let r = http_post(addr, "/v1/traces", JSON, None, json_request(&[span])).await;
        assert_eq!(r.status(), 400, "kvlist: {kvlist}");
        let v: serde_json::Value = r.json().await.expect("JSON status body");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or_default()
                .contains("recursion limit"),
            "{v}"
        );
    }
    assert_eq!(requests(&server, "malformed").await, 2.0);

    // Moderate nesting in JSON is accepted.
    let deep = format!(r#"{{"key":"deep","value":{}}},"#, nested_json(10, false));
    let span = json_span(&[("attributes", json_attributes(&deep))]);
    let r = http_post(addr, "/v1/traces", JSON, None, json_request(&[span])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(requests(&server, "ok").await, 3.0);
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_with_a_million_attributes_is_classified() {
    let server = TestServer::start("").await;
    let addr = server.http;
    const N: usize = 1_000_000;

    // Protobuf: a million attributes before the ones the classifier reads.
    let mut span = entry_span();
    let wanted = std::mem::take(&mut span.attributes);
    let mut extra = Vec::with_capacity(N * 12);
    for i in 0..N {
        let mut kv = field(1, b"k");
        let mut any = Vec::new();
        prost::encoding::int64::encode(3, &(i as i64), &mut any);
        kv.extend(field(2, &any));
        extra.extend(field(9, &kv));
    }
    for kv in &wanted {
        extra.extend(field(9, &kv.encode_to_vec()));
    }
    let body = request_with_span_bytes("cart", &span, &extra);
    assert!(body.len() < 20 << 20, "within the default body limit");
    let r = http_post(addr, "/v1/traces", PROTO, None, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(rejected_spans(r).await, 0);
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 1);

    // JSON: the same count of (empty) attributes.
    let attrs = json_attributes(&r#"{"key":"k"},"#.repeat(N));
    let body = json_request(&[json_span(&[("attributes", attrs)])]);
    let r = http_post(addr, "/v1/traces", JSON, None, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 2);
    assert_eq!(
        counter(&server, "otel_sli_accepted_spans_total{transport=\"http\"}").await,
        2.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_accepted_replaced_and_counted() {
    let server = TestServer::start("").await;
    let addr = server.http;

    // Protobuf does not check UTF-8 on the hot path: placeholders of the same length are
    // replaced by invalid bytes in the encoded request.
    let mut span = entry_span();
    span.attributes[1] = kv_str("http.route", "/caXX");
    let mut body = trace_request("svcXX", vec![span]).encode_to_vec();
    let replace = |body: &mut Vec<u8>, from: &[u8], to: &[u8]| {
        let at = body
            .windows(from.len())
            .position(|w| w == from)
            .expect("placeholder");
        body[at..at + to.len()].copy_from_slice(to);
    };
    replace(&mut body, b"svcXX", b"svc\xff\xfe");
    replace(&mut body, b"/caXX", b"/ca\xc3\x28");
    assert!(
        ExportTraceServiceRequest::decode(body.as_slice()).is_err(),
        "prost would refuse it"
    );
    let r = http_post(addr, "/v1/traces", PROTO, None, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(rejected_spans(r).await, 0);
    // A service name that is not UTF-8 is no name; a route is kept with U+FFFD.
    assert_eq!(
        sli_requests(&server, "unknown_service", "GET /ca\u{fffd}(").await,
        1
    );
    assert_eq!(
        counter(&server, "otel_sli_accepted_spans_total{transport=\"http\"}").await,
        1.0
    );
    assert_eq!(requests(&server, "ok").await, 1.0);

    // JSON text must be UTF-8: raw invalid bytes and lone surrogate escapes are refused.
    let mut raw = json_request(&[json_span(&[])]);
    let at = raw.windows(4).position(|w| w == b"cart").expect("service");
    raw[at + 2] = 0xff;
    let r = http_post(addr, "/v1/traces", JSON, None, raw).await;
    assert_eq!(r.status(), 400);
    let escaped = json_request(&[json_span(&[])]);
    let escaped =
        String::from_utf8(escaped)
            .expect("text")
            .replacen("\"cart\"", "\"ca\\ud800rt\"", 1);
    let r = http_post(addr, "/v1/traces", JSON, None, escaped.into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(requests(&server, "malformed").await, 2.0);
    assert_eq!(
        counter(&server, "otel_sli_accepted_spans_total{transport=\"http\"}").await,
        1.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_of_the_wrong_length_reject_only_their_spans() {
    let server = TestServer::start("").await;
    let addr = server.http;
    let with = |trace: Vec<u8>, span: Vec<u8>| Span {
        trace_id: trace,
        span_id: span,
        ..entry_span()
    };

    // Protobuf: empty and 17-byte trace ids, empty and 9-byte span ids, one good span.
    let spans = vec![
        with(vec![], vec![0xee; 8]),
        with(vec![0x5b; 17], vec![0xee; 8]),
        with(vec![0x5b; 16], vec![]),
        with(vec![0x5b; 16], vec![0xee; 9]),
        with(vec![0x5b; 1 << 16], vec![0xee; 1 << 16]),
        entry_span(),
    ];
    let r = http_post(
        addr,
        "/v1/traces",
        PROTO,
        None,
        trace_request("cart", spans).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(rejected_spans(r).await, 5);

    // JSON: the same lengths in hex.
    let spans = [
        json_span(&[("traceId", r#""""#.into())]),
        json_span(&[("traceId", format!(r#""{TRACE_ID}ab""#))]),
        json_span(&[("spanId", r#""""#.into())]),
        json_span(&[("spanId", format!(r#""{SPAN_ID}ab""#))]),
        json_span(&[]),
    ];
    let r = http_post(addr, "/v1/traces", JSON, None, json_request(&spans)).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.expect("JSON response");
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "4", "{v}");

    let refused = |reason: &str| {
        format!("otel_sli_refused_spans_total{{transport=\"http\",reason=\"{reason}\"}}")
    };
    assert_eq!(counter(&server, &refused("invalid_trace_id")).await, 5.0);
    assert_eq!(counter(&server, &refused("invalid_span_id")).await, 4.0);
    assert_eq!(
        counter(&server, "otel_sli_accepted_spans_total{transport=\"http\"}").await,
        2.0
    );
    assert_eq!(requests(&server, "partial").await, 2.0);
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_timestamps_count_as_requests_and_invalid_durations() {
    let server = TestServer::start("").await;
    let addr = server.http;
    const MAX: u64 = u64::MAX;
    // (start, end): both missing, start missing, end before start — invalid durations;
    // both at the maximum (0 s) and 1 ns to the maximum (584 years) — valid, if absurd.
    let times = [(0, 0), (0, MAX), (MAX, 1), (MAX, MAX), (1, MAX)];

    let spans = times
        .iter()
        .map(|&(start, end)| Span {
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            ..entry_span()
        })
        .collect();
    let r = http_post(
        addr,
        "/v1/traces",
        PROTO,
        None,
        trace_request("cart", spans).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(rejected_spans(r).await, 0);

    let spans: Vec<String> = times
        .iter()
        .map(|(start, end)| {
            json_span(&[
                ("startTimeUnixNano", format!(r#""{start}""#)),
                ("endTimeUnixNano", end.to_string()),
            ])
        })
        .collect();
    let r = http_post(addr, "/v1/traces", JSON, None, json_request(&spans)).await;
    assert_eq!(r.status(), 200);

    assert_eq!(
        counter(&server, "otel_sli_invalid_durations_total").await,
        6.0
    );
    assert_eq!(counter(&server, "otel_sli_entry_spans_total").await, 10.0);
    assert_eq!(sli_requests(&server, "cart", "GET /cart").await, 10);
    let sli = server.sli("all", "cart", "GET /cart").await;
    let p99 = sli["latency_seconds"]["p99"].as_f64().expect("p99");
    assert!(p99.is_finite() && p99 >= 0.0, "{sli}");
    assert_eq!(requests(&server, "ok").await, 2.0);
    server.stop().await;
}
