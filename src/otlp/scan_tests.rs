//! Tests for the zero-copy trace scanner: hand-built wire edge cases and
//! property tests against `prost` decoding of the same bytes.

use super::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::{Event, Link},
    ResourceSpans, ScopeSpans, Span, Status,
};
use proptest::prelude::*;
use prost::Message;

// ---------------------------------------------------------------------------
// Owned mirror of the scanner output, for comparisons.

#[derive(Clone, Debug, PartialEq)]
enum Ov {
    Empty,
    Str(Vec<u8>),
    Bool(bool),
    Int(i64),
    Double(u64),
    Bytes(Vec<u8>),
    Array(Vec<u8>),
    KvList(Vec<u8>),
}

type Attrs = Vec<(Vec<u8>, Ov)>;

#[derive(Clone, Debug, PartialEq)]
struct OSpan {
    resource: usize,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    trace_state: Vec<u8>,
    parent_span_id: Vec<u8>,
    flags: u32,
    name: Vec<u8>,
    kind: i32,
    start: u64,
    end: u64,
    attrs: Attrs,
    events: Vec<(Vec<u8>, Attrs)>,
    status_code: i32,
    status_message: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Out {
    resources: Vec<Attrs>,
    spans: Vec<OSpan>,
}

impl Out {
    /// Forgets the contents of nested array/kvlist values (prost concatenates
    /// repeated ones, the scanner keeps the last; see the module docs).
    fn loose(mut self) -> Self {
        fn fix(a: &mut Attrs) {
            for (_, v) in a.iter_mut() {
                match v {
                    Ov::Array(b) | Ov::KvList(b) => b.clear(),
                    _ => {}
                }
            }
        }
        self.resources.iter_mut().for_each(fix);
        self.spans.iter_mut().for_each(|s| fix(&mut s.attrs));
        self
    }
}

fn ov(v: AnyValueRef<'_>) -> Ov {
    match v {
        AnyValueRef::Empty => Ov::Empty,
        AnyValueRef::Str(b) => Ov::Str(b.to_vec()),
        AnyValueRef::Bool(b) => Ov::Bool(b),
        AnyValueRef::Int(i) => Ov::Int(i),
        AnyValueRef::Double(d) => Ov::Double(d.to_bits()),
        AnyValueRef::Bytes(b) => Ov::Bytes(b.to_vec()),
        AnyValueRef::Array(b) => Ov::Array(b.to_vec()),
        AnyValueRef::KvList(b) => Ov::KvList(b.to_vec()),
    }
}

/// Collects attributes and checks the `AttrsRef` accessors agree with iteration.
fn attrs(a: AttrsRef<'_>) -> Attrs {
    let it = a.iter();
    assert_eq!(it.len(), a.len());
    let out: Attrs = it.map(|(k, v)| (k.to_vec(), ov(v))).collect();
    assert_eq!(out.len(), a.len());
    assert_eq!(a.is_empty(), out.is_empty());
    let mut walked = Attrs::new();
    a.try_for_each(|k, v| walked.push((k.to_vec(), ov(v))))
        .expect("validated");
    assert_eq!(walked, out);
    for (k, _) in &out {
        let first = out.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.clone());
        assert_eq!(a.get(k).map(ov), first);
    }
    assert_eq!(a.get(b"\xffno-such-key"), None);
    out
}

/// A sink that reads every span's attributes, as a full decode does: the scan with it
/// accepts and refuses what prost does (but for the documented differences).
impl<'a> SpanSink<'a> for Out {
    fn resource(&mut self, r: ResourceView<'a>) {
        self.resources.push(attrs(r.attributes));
    }
    fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
        s.attributes.try_for_each(|_, _| ())?;
        let mut events = Vec::new();
        s.events.try_for_each(|name, a| {
            a.try_for_each(|_, _| ())?;
            events.push((name.to_vec(), attrs(a)));
            Ok(true)
        })?;
        assert_eq!(events.is_empty(), s.events.is_empty());
        let resource = self
            .resources
            .len()
            .checked_sub(1)
            .expect("resource before span");
        self.spans.push(OSpan {
            resource,
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            trace_state: s.trace_state.to_vec(),
            parent_span_id: s.parent_span_id.to_vec(),
            flags: s.flags,
            name: s.name.to_vec(),
            kind: s.kind,
            start: s.start_time_unix_nano,
            end: s.end_time_unix_nano,
            attrs: attrs(s.attributes),
            events,
            status_code: s.status_code,
            status_message: s.status_message.to_vec(),
        });
        Ok(())
    }
}

fn scan(buf: &[u8]) -> Result<Out, ScanError> {
    let mut out = Out::default();
    let n = scan_traces(buf, &mut out)?;
    assert_eq!(n, out.spans.len());
    Ok(out)
}

fn prost_ov(v: &Option<AnyValue>) -> Ov {
    match v.as_ref().and_then(|a| a.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => Ov::Empty,
        Some(Value::StringValue(s)) => Ov::Str(s.as_bytes().to_vec()),
        Some(Value::BoolValue(b)) => Ov::Bool(*b),
        Some(Value::IntValue(i)) => Ov::Int(*i),
        Some(Value::DoubleValue(d)) => Ov::Double(d.to_bits()),
        Some(Value::BytesValue(b)) => Ov::Bytes(b.clone()),
        Some(Value::ArrayValue(a)) => Ov::Array(a.encode_to_vec()),
        Some(Value::KvlistValue(k)) => Ov::KvList(k.encode_to_vec()),
    }
}

fn prost_attrs(kvs: &[KeyValue]) -> Attrs {
    kvs.iter()
        .map(|kv| (kv.key.as_bytes().to_vec(), prost_ov(&kv.value)))
        .collect()
}

/// What the scanner should produce, derived from a prost decode.
fn expected(req: &ExportTraceServiceRequest) -> Out {
    let mut out = Out::default();
    for (i, rs) in req.resource_spans.iter().enumerate() {
        out.resources.push(
            rs.resource
                .as_ref()
                .map(|r| prost_attrs(&r.attributes))
                .unwrap_or_default(),
        );
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let status = s.status.clone().unwrap_or_default();
                out.spans.push(OSpan {
                    resource: i,
                    trace_id: s.trace_id.clone(),
                    span_id: s.span_id.clone(),
                    trace_state: s.trace_state.as_bytes().to_vec(),
                    parent_span_id: s.parent_span_id.clone(),
                    flags: s.flags,
                    name: s.name.as_bytes().to_vec(),
                    kind: s.kind,
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                    attrs: prost_attrs(&s.attributes),
                    events: s
                        .events
                        .iter()
                        .map(|e| (e.name.as_bytes().to_vec(), prost_attrs(&e.attributes)))
                        .collect(),
                    status_code: status.code,
                    status_message: status.message.into_bytes(),
                });
            }
        }
    }
    out
}

fn prost_decode(buf: &[u8]) -> Option<Out> {
    ExportTraceServiceRequest::decode(buf)
        .ok()
        .map(|r| expected(&r))
}

/// Scans and checks agreement with prost: if prost decodes, the scanner must
/// succeed with the same result. Returns the scan result.
fn check_against_prost(buf: &[u8]) -> Result<Out, ScanError> {
    let got = scan(buf);
    if let Some(want) = prost_decode(buf) {
        assert_eq!(
            got.as_ref().ok(),
            Some(&want),
            "scanner disagrees with prost"
        );
    }
    got
}

// ---------------------------------------------------------------------------
// Hand encoding.

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        if v < 0x80 {
            out.push(v as u8);
            return out;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
}
fn key(field: u32, wt: u8) -> Vec<u8> {
    varint(u64::from(field) << 3 | u64::from(wt))
}
fn ld(field: u32, payload: &[u8]) -> Vec<u8> {
    [
        key(field, 2),
        varint(payload.len() as u64),
        payload.to_vec(),
    ]
    .concat()
}
fn vi(field: u32, v: u64) -> Vec<u8> {
    [key(field, 0), varint(v)].concat()
}
fn f64f(field: u32, v: u64) -> Vec<u8> {
    [key(field, 1), v.to_le_bytes().to_vec()].concat()
}
fn f32f(field: u32, v: u32) -> Vec<u8> {
    [key(field, 5), v.to_le_bytes().to_vec()].concat()
}
fn group(field: u32, inner: &[u8]) -> Vec<u8> {
    [key(field, 3), inner.to_vec(), key(field, 4)].concat()
}
fn kv_str(k: &str, v: &str) -> Vec<u8> {
    [ld(1, k.as_bytes()), ld(2, &ld(1, v.as_bytes()))].concat()
}
/// request{resource_spans{scope_spans{spans...}}}
fn wrap_spans(spans: &[Vec<u8>]) -> Vec<u8> {
    let ss: Vec<u8> = spans.iter().flat_map(|s| ld(2, s)).collect();
    ld(1, &ld(2, &ss))
}

fn sample_request() -> ExportTraceServiceRequest {
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let span = |name: &str, n: u8| Span {
        trace_id: vec![n; 16],
        span_id: vec![n + 1; 8],
        parent_span_id: if n.is_multiple_of(2) {
            vec![]
        } else {
            vec![9; 8]
        },
        trace_state: "a=b".into(),
        flags: 0x301,
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes: vec![
            kv("http.route", Value::StringValue("/users/{id}".into())),
            kv("http.response.status_code", Value::IntValue(503)),
            kv("sampled", Value::BoolValue(true)),
            kv("ratio", Value::DoubleValue(0.25)),
            kv("blob", Value::BytesValue(vec![0, 1, 2])),
            kv(
                "list",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::IntValue(-1)),
                    }],
                }),
            ),
            kv(
                "map",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("x", Value::StringValue("y".into()))],
                }),
            ),
        ],
        events: vec![
            Event {
                name: "ev".into(),
                time_unix_nano: 5,
                ..Default::default()
            },
            Event {
                name: "feature_flag.evaluation".into(),
                time_unix_nano: 6,
                attributes: vec![
                    kv("feature_flag.key", Value::StringValue("new-flow".into())),
                    kv(
                        "feature_flag.result.variant",
                        Value::StringValue("on".into()),
                    ),
                ],
                dropped_attributes_count: 1,
            },
        ],
        links: vec![Link {
            trace_id: vec![1; 16],
            ..Default::default()
        }],
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![
                    ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "lib".into(),
                            ..Default::default()
                        }),
                        spans: vec![span("GET /users/{id}", 1), span("SELECT", 2)],
                        schema_url: "s".into(),
                    },
                    ScopeSpans {
                        spans: vec![span("third", 3)],
                        ..Default::default()
                    },
                ],
                schema_url: "https://opentelemetry.io/schemas/1.0".into(),
            },
            ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }
}

// ---------------------------------------------------------------------------
// Unit tests.

#[test]
fn empty_request() {
    let out = scan(&[]).expect("empty is valid");
    assert_eq!(out, Out::default());
    // An empty ResourceSpans still announces its (empty) resource.
    let out = check_against_prost(&ld(1, &[])).expect("valid");
    assert_eq!(out.resources, vec![Vec::new()]);
    assert!(out.spans.is_empty());
}

#[test]
fn sample_request_matches_prost() {
    let buf = sample_request().encode_to_vec();
    let out = check_against_prost(&buf).expect("valid");
    assert_eq!(out.spans.len(), 4);
    assert_eq!(out.resources.len(), 2);
    let s = &out.spans[0];
    assert_eq!(s.name, b"GET /users/{id}");
    assert_eq!(s.status_code, 2);
    assert_eq!(s.status_message, b"boom");
    assert_eq!(s.flags, 0x301);
    assert_eq!(out.spans[3].resource, 1);
    assert!(out.resources[1].is_empty());
}

#[test]
fn view_accessors() {
    let buf = sample_request().encode_to_vec();
    struct First<'a>(Option<SpanView<'a>>, Option<ResourceView<'a>>);
    impl<'a> SpanSink<'a> for First<'a> {
        fn resource(&mut self, r: ResourceView<'a>) {
            self.1.get_or_insert(r);
        }
        fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
            self.0.get_or_insert(*s);
            Ok(())
        }
    }
    let mut sink = First(None, None);
    assert_eq!(scan_traces(&buf, &mut sink), Ok(4));
    let span = sink.0.expect("a span");
    let res = sink.1.expect("a resource");
    let a = span.attributes;
    assert_eq!(a.len(), 7);
    assert_eq!(
        a.get(b"http.route").and_then(|v| v.as_str()),
        Some("/users/{id}")
    );
    assert_eq!(
        a.get(b"http.response.status_code").and_then(|v| v.as_i64()),
        Some(503)
    );
    assert_eq!(a.get(b"sampled"), Some(AnyValueRef::Bool(true)));
    assert_eq!(a.get(b"ratio"), Some(AnyValueRef::Double(0.25)));
    assert_eq!(a.get(b"blob"), Some(AnyValueRef::Bytes(&[0, 1, 2])));
    assert!(matches!(a.get(b"list"), Some(AnyValueRef::Array(_))));
    assert!(matches!(a.get(b"map"), Some(AnyValueRef::KvList(_))));
    assert_eq!(a.get(b"missing"), None);
    assert_eq!(
        res.attributes.get(b"service.name").and_then(|v| v.as_str()),
        Some("checkout")
    );
    // Debug renders the attributes.
    let dbg = format!("{:?}", res.attributes);
    assert!(dbg.contains("service.name"), "{dbg}");
    // IntoIterator and the empty set.
    assert_eq!(a.into_iter().count(), 7);
    let e = AttrsRef::empty();
    assert!(e.is_empty());
    assert_eq!(e.len(), 0);
    assert_eq!(e.iter().next(), None);
    assert_eq!(e.get(b""), None);
}

#[test]
fn any_value_helpers() {
    assert_eq!(AnyValueRef::Str(b"42").as_i64(), Some(42));
    assert_eq!(AnyValueRef::Str(b"-7").as_i64(), Some(-7));
    assert_eq!(AnyValueRef::Str(b"4x").as_i64(), None);
    assert_eq!(AnyValueRef::Str(b" 4").as_i64(), None);
    assert_eq!(AnyValueRef::Int(i64::MIN).as_i64(), Some(i64::MIN));
    assert_eq!(AnyValueRef::Double(1.0).as_i64(), None);
    assert_eq!(AnyValueRef::Bytes(b"1").as_i64(), None);
    assert_eq!(AnyValueRef::Str(b"\xff").as_str(), None);
    assert_eq!(AnyValueRef::Str(b"ok").as_str(), Some("ok"));
    assert_eq!(AnyValueRef::Bytes(b"ok").as_str(), None);
    assert_eq!(AnyValueRef::Empty.as_str(), None);
}

#[test]
fn resource_after_scope_spans() {
    let span = ld(5, b"op");
    let rs = [
        ld(2, &ld(2, &span)),
        ld(3, b"schema"),
        ld(1, &ld(1, &kv_str("service.name", "svc"))),
    ]
    .concat();
    let buf = ld(1, &rs);
    let out = check_against_prost(&buf).expect("valid");
    assert_eq!(
        out.resources,
        vec![vec![(b"service.name".to_vec(), Ov::Str(b"svc".to_vec()))]]
    );
    assert_eq!(out.spans.len(), 1);
    assert_eq!(out.spans[0].name, b"op");
}

#[test]
fn duplicate_resource_merges_attributes() {
    let rs = [
        ld(1, &[ld(1, &kv_str("a", "1")), vi(2, 3)].concat()),
        ld(2, &ld(2, &ld(5, b"op"))),
        ld(1, &[]),
        ld(
            1,
            &[vi(2, 4), ld(1, &kv_str("b", "2")), ld(1, &kv_str("a", "3"))].concat(),
        ),
    ]
    .concat();
    let out = check_against_prost(&ld(1, &rs)).expect("valid");
    let attrs = &out.resources[0];
    assert_eq!(attrs.len(), 3);
    assert_eq!(attrs[0].0, b"a");
    assert_eq!(attrs[1].0, b"b");
    assert_eq!(attrs[2], (b"a".to_vec(), Ov::Str(b"3".to_vec())));
}

#[test]
fn duplicate_status_merges() {
    // code from the first, message from the second, then a later code overrides.
    let span = [
        ld(15, &vi(3, 2)),
        ld(5, b"op"),
        ld(15, &ld(2, b"msg")),
        ld(15, &[]),
    ]
    .concat();
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    assert_eq!(out.spans[0].status_code, 2);
    assert_eq!(out.spans[0].status_message, b"msg");

    let span = [ld(15, &[vi(3, 2), ld(2, b"a")].concat()), ld(15, &vi(3, 1))].concat();
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    assert_eq!(out.spans[0].status_code, 1);
    assert_eq!(out.spans[0].status_message, b"a");
}

#[test]
fn last_scalar_wins_and_any_order() {
    let span = [
        vi(6, 1),
        ld(5, b"first"),
        f64f(8, 20),
        ld(1, b"t1"),
        f32f(16, 7),
        ld(5, b"second"),
        vi(6, 3),
        f64f(7, 10),
        ld(1, b"t2"),
        f32f(16, 9),
    ]
    .concat();
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    let s = &out.spans[0];
    assert_eq!((s.name.as_slice(), s.kind, s.flags), (&b"second"[..], 3, 9));
    assert_eq!(
        (s.start, s.end, s.trace_id.as_slice()),
        (10, 20, &b"t2"[..])
    );
}

#[test]
fn any_value_oneof_last_variant_wins_and_merges() {
    let kvs = [
        // Two variants in one AnyValue: the last wins.
        [ld(1, b"k1"), ld(2, &[ld(1, b"s"), vi(3, 5)].concat())].concat(),
        // Value split across two AnyValue occurrences; the empty one changes nothing.
        [ld(2, &vi(2, 1)), ld(1, b"k2"), ld(2, &[])].concat(),
        // Key repeated: last wins. No value: Empty.
        [ld(1, b"old"), ld(1, b"k3")].concat(),
        // Double, bytes, negative int (10-byte varint).
        [ld(1, b"k4"), ld(2, &f64f(4, 1.5f64.to_bits()))].concat(),
        [ld(1, b"k5"), ld(2, &ld(7, b"\x00\xff"))].concat(),
        [ld(1, b"k6"), ld(2, &vi(3, -3i64 as u64))].concat(),
        // string_value_strindex clears the value; key_strindex is ignored.
        [
            ld(1, b"k7"),
            vi(3, 4),
            ld(2, &[ld(1, b"s"), vi(8, 2)].concat()),
        ]
        .concat(),
        // Unknown fields inside KeyValue and AnyValue.
        [
            vi(30, 1),
            ld(1, b"k8"),
            ld(2, &[group(40, &vi(1, 1)), vi(3, 8)].concat()),
        ]
        .concat(),
    ];
    let span: Vec<u8> = kvs.iter().flat_map(|kv| ld(9, kv)).collect();
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    assert_eq!(
        out.spans[0].attrs,
        vec![
            (b"k1".to_vec(), Ov::Int(5)),
            (b"k2".to_vec(), Ov::Bool(true)),
            (b"k3".to_vec(), Ov::Empty),
            (b"k4".to_vec(), Ov::Double(1.5f64.to_bits())),
            (b"k5".to_vec(), Ov::Bytes(b"\x00\xff".to_vec())),
            (b"k6".to_vec(), Ov::Int(-3)),
            (b"k7".to_vec(), Ov::Empty),
            (b"k8".to_vec(), Ov::Int(8)),
        ]
    );
}

#[test]
fn attrs_interleaved_with_other_fields_and_first_key_wins() {
    let span = [
        ld(9, &kv_str("a", "1")),
        ld(5, b"op"),
        ld(9, &kv_str("b", "2")),
        vi(10, 1),
        ld(9, &kv_str("a", "3")),
    ]
    .concat();
    let buf = wrap_spans(&[span]);
    let out = check_against_prost(&buf).expect("valid");
    assert_eq!(out.spans[0].attrs.len(), 3);
    struct Get(Option<Ov>);
    impl<'a> SpanSink<'a> for Get {
        fn resource(&mut self, _: ResourceView<'a>) {}
        fn span(&mut self, s: &SpanView<'a>) -> Result<(), ScanError> {
            self.0 = s.attributes.get(b"a").map(ov);
            Ok(())
        }
    }
    let mut g = Get(None);
    scan_traces(&buf, &mut g).expect("valid");
    assert_eq!(g.0, Some(Ov::Str(b"1".to_vec())));
}

#[test]
fn negative_and_wide_enums() {
    let span = [
        vi(6, -1i64 as u64),
        ld(15, &vi(3, i64::from(i32::MIN) as u64)),
    ]
    .concat();
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    assert_eq!(out.spans[0].kind, -1);
    assert_eq!(out.spans[0].status_code, i32::MIN);
    // Wider than 32 bits: truncated like prost.
    let span = vi(6, (1u64 << 32) + 5);
    let out = check_against_prost(&wrap_spans(&[span])).expect("valid");
    assert_eq!(out.spans[0].kind, 5);
}

/// Unknown fields of each wire type, incl. nested groups, at every level.
fn unknowns(field: u32) -> Vec<u8> {
    [
        vi(field, u64::MAX),
        f64f(field + 1, 1),
        ld(field + 2, b"junk"),
        f32f(field + 3, 2),
        group(field + 4, &[]),
        group(
            field + 5,
            &[
                vi(1, 1),
                group(2, &[ld(3, b"x"), group(2, &f32f(9, 0))].concat()),
                f64f(7, 0),
            ]
            .concat(),
        ),
    ]
    .concat()
}

#[test]
fn unknown_fields_of_every_wire_type_are_skipped() {
    let u = unknowns(100);
    let kv = [u.clone(), kv_str("k", "v"), u.clone()].concat();
    let any = [u.clone(), vi(3, 7), u.clone()].concat();
    let kv2 = [ld(1, b"n"), ld(2, &any)].concat();
    let status = [u.clone(), vi(3, 2), u.clone()].concat();
    let span = [
        u.clone(),
        ld(5, b"op"),
        ld(9, &kv),
        ld(9, &kv2),
        ld(15, &status),
        u.clone(),
    ]
    .concat();
    let scope = [u.clone(), ld(2, &span), u.clone()].concat();
    let resource = [u.clone(), ld(1, &kv), u.clone()].concat();
    let rs = [u.clone(), ld(1, &resource), ld(2, &scope), u.clone()].concat();
    let buf = [u.clone(), ld(1, &rs), u.clone()].concat();
    let out = check_against_prost(&buf).expect("valid");
    assert!(prost_decode(&buf).is_some());
    assert_eq!(out.spans.len(), 1);
    let s = &out.spans[0];
    assert_eq!(s.name, b"op");
    assert_eq!(s.status_code, 2);
    assert_eq!(
        s.attrs,
        vec![
            (b"k".to_vec(), Ov::Str(b"v".to_vec())),
            (b"n".to_vec(), Ov::Int(7))
        ]
    );
    assert_eq!(
        out.resources[0],
        vec![(b"k".to_vec(), Ov::Str(b"v".to_vec()))]
    );
}

/// The scan must fail (and prost too).
fn assert_both_fail(buf: &[u8]) -> ScanErrorKind {
    assert!(
        ExportTraceServiceRequest::decode(buf).is_err(),
        "prost accepted {buf:?}"
    );
    match scan(buf) {
        Ok(out) => panic!("scanner accepted {buf:?}: {out:?}"),
        Err(e) => {
            assert!(e.offset <= buf.len(), "{e}");
            e.kind
        }
    }
}

#[test]
fn group_errors() {
    use ScanErrorKind::*;
    // End-group with no start, at top level and inside a span.
    assert_eq!(assert_both_fail(&key(5, 4)), UnmatchedEndGroup);
    assert_eq!(
        assert_both_fail(&wrap_spans(&[key(50, 4)])),
        UnmatchedEndGroup
    );
    // Mismatched end-group.
    assert_eq!(
        assert_both_fail(&[key(5, 3), key(6, 4)].concat()),
        UnmatchedEndGroup
    );
    // Unterminated groups.
    assert_eq!(assert_both_fail(&key(5, 3)), UnterminatedGroup);
    assert_eq!(
        assert_both_fail(&wrap_spans(&[[key(50, 3), vi(1, 1)].concat()])),
        UnterminatedGroup
    );
    // An end-group key for a known field is a wire-type error (as in prost).
    assert_eq!(
        assert_both_fail(&wrap_spans(&[key(5, 4)])),
        InvalidWireType {
            field: 5,
            wire_type: 4
        }
    );
}

#[test]
fn recursion_limit_matches_prost() {
    fn nested(depth: usize, field: u32) -> Vec<u8> {
        let mut inner = vi(1, 1);
        for _ in 0..depth {
            inner = group(field, &inner);
        }
        inner
    }
    for depth in [1, 50, 94, 95, 96, 97, 98, 99, 100, 101, 150] {
        for buf in [
            nested(depth, 7),
            wrap_spans(&[nested(depth, 70)]),
            wrap_spans(&[ld(9, &[ld(1, b"k"), ld(2, &nested(depth, 70))].concat())]),
            ld(1, &ld(1, &nested(depth, 70))),
            // A resource attribute, walked again (`try_for_each`) at its own depth.
            ld(
                1,
                &ld(1, &ld(1, &[ld(1, b"k"), nested(depth, 70)].concat())),
            ),
        ] {
            let prost_ok = ExportTraceServiceRequest::decode(&buf[..]).is_ok();
            let got = check_against_prost(&buf);
            assert_eq!(got.is_ok(), prost_ok, "depth {depth}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.kind, ScanErrorKind::RecursionLimit);
            }
        }
    }
}

#[test]
fn wrong_wire_type_for_known_fields() {
    let cases: Vec<(Vec<u8>, u32, u8)> = vec![
        (vi(1, 0), 1, 0),                                  // request.resource_spans
        (ld(1, &vi(2, 0)), 2, 0),                          // resource_spans.scope_spans
        (ld(1, &f32f(1, 0)), 1, 5),                        // resource_spans.resource
        (ld(1, &vi(3, 0)), 3, 0),                          // resource_spans.schema_url
        (ld(1, &ld(1, &f64f(2, 0))), 2, 1),                // resource.dropped_attributes_count
        (ld(1, &ld(1, &vi(1, 0))), 1, 0),                  // resource.attributes
        (ld(1, &ld(2, &vi(2, 0))), 2, 0),                  // scope_spans.spans
        (ld(1, &ld(2, &vi(1, 0))), 1, 0),                  // scope_spans.scope
        (wrap_spans(&[vi(1, 0)]), 1, 0),                   // trace_id
        (wrap_spans(&[f32f(5, 0)]), 5, 5),                 // name
        (wrap_spans(&[ld(6, b"")]), 6, 2),                 // kind
        (wrap_spans(&[vi(7, 0)]), 7, 0),                   // start time
        (wrap_spans(&[f32f(8, 0)]), 8, 5),                 // end time
        (wrap_spans(&[vi(9, 0)]), 9, 0),                   // attributes
        (wrap_spans(&[ld(10, b"")]), 10, 2),               // dropped attrs
        (wrap_spans(&[vi(11, 0)]), 11, 0),                 // events
        (wrap_spans(&[f64f(13, 0)]), 13, 1),               // links
        (wrap_spans(&[vi(15, 0)]), 15, 0),                 // status
        (wrap_spans(&[vi(16, 0)]), 16, 0),                 // flags
        (wrap_spans(&[f64f(16, 0)]), 16, 1),               // flags
        (wrap_spans(&[ld(15, &ld(3, b""))]), 3, 2),        // status.code
        (wrap_spans(&[ld(15, &vi(2, 0))]), 2, 0),          // status.message
        (wrap_spans(&[ld(9, &vi(1, 0))]), 1, 0),           // kv.key
        (wrap_spans(&[ld(9, &vi(2, 0))]), 2, 0),           // kv.value
        (wrap_spans(&[ld(9, &ld(3, b""))]), 3, 2),         // kv.key_strindex
        (wrap_spans(&[ld(9, &ld(2, &vi(1, 0)))]), 1, 0),   // any.string
        (wrap_spans(&[ld(9, &ld(2, &ld(2, b"")))]), 2, 2), // any.bool
        (wrap_spans(&[ld(9, &ld(2, &f64f(3, 0)))]), 3, 1), // any.int
        (wrap_spans(&[ld(9, &ld(2, &vi(4, 0)))]), 4, 0),   // any.double
        (wrap_spans(&[ld(9, &ld(2, &vi(5, 0)))]), 5, 0),   // any.array
        (wrap_spans(&[ld(9, &ld(2, &f32f(6, 0)))]), 6, 5), // any.kvlist
        (wrap_spans(&[ld(9, &ld(2, &vi(7, 0)))]), 7, 0),   // any.bytes
        (wrap_spans(&[ld(9, &ld(2, &f64f(8, 0)))]), 8, 1), // any.strindex
    ];
    for (buf, field, wire_type) in cases {
        assert_eq!(
            assert_both_fail(&buf),
            ScanErrorKind::InvalidWireType { field, wire_type },
            "{buf:?}"
        );
    }
    // A group where a known message field is expected.
    assert!(matches!(
        assert_both_fail(&wrap_spans(&[group(15, &[])])),
        ScanErrorKind::InvalidWireType {
            field: 15,
            wire_type: 3
        }
    ));
}

#[test]
fn error_offsets_point_at_the_offending_element() {
    // request: [0a len] rs: [12 len] ss: [12 len] span: name with wrong wire type.
    let buf = wrap_spans(&[[ld(5, b"ok"), vi(1, 0)].concat()]);
    let err = scan(&buf).expect_err("invalid");
    assert_eq!(err.offset, buf.len() - 2);
    assert_eq!(
        err.to_string(),
        format!(
            "malformed protobuf at byte {}: field 1 has invalid wire type 0",
            buf.len() - 2
        )
    );
    // Errors found while skipping groups carry absolute offsets too.
    let buf = wrap_spans(&[[ld(5, b"ok"), key(50, 3), vi(1, 1), key(51, 4)].concat()]);
    let err = scan(&buf).expect_err("invalid");
    assert_eq!(
        (err.offset, err.kind),
        (buf.len() - 2, ScanErrorKind::UnmatchedEndGroup)
    );
    let buf = wrap_spans(&[[key(50, 3), group(7, &[]), vec![0x08, 0x80]].concat()]);
    let err = scan(&buf).expect_err("invalid");
    assert_eq!(
        (err.offset, err.kind),
        (buf.len() - 1, ScanErrorKind::TruncatedVarint)
    );
    let buf = wrap_spans(&[[ld(5, b"ok"), key(50, 3), vi(1, 1)].concat()]);
    let err = scan(&buf).expect_err("invalid");
    assert_eq!(
        (err.offset, err.kind),
        (buf.len() - 4, ScanErrorKind::UnterminatedGroup)
    );
    let err = scan(&[0x0a, 0x05, 0x00]).expect_err("invalid");
    assert_eq!(
        (err.offset, err.kind),
        (1, ScanErrorKind::LengthOutOfBounds)
    );
}

#[test]
fn malformed_scalars_and_keys() {
    use ScanErrorKind::*;
    // Varints: 11 bytes; 10 bytes overflowing; truncated.
    let mut long = vec![0x80u8; 10];
    long.push(0x00);
    assert_eq!(
        assert_both_fail(&[vec![0x10], long].concat()),
        VarintTooLong
    );
    let mut overflow = vec![0xffu8; 9];
    overflow.push(0x02);
    assert_eq!(
        assert_both_fail(&[vec![0x10], overflow].concat()),
        VarintTooLong
    );
    let mut max = vec![0xffu8; 9];
    max.push(0x01);
    assert!(check_against_prost(&[vec![0x10], max].concat()).is_ok());
    assert_eq!(assert_both_fail(&[0x10, 0x80]), TruncatedVarint);
    assert_eq!(assert_both_fail(&[0x80]), TruncatedVarint);
    // Varint truncated by the end of its enclosing message.
    assert_eq!(
        assert_both_fail(&wrap_spans(&[vec![0x30, 0x80]])),
        TruncatedVarint
    );
    // Keys: field 0; wire types 6 and 7; key above u32::MAX.
    assert_eq!(assert_both_fail(&[0x00, 0x00]), InvalidKey);
    assert_eq!(assert_both_fail(&[0x0e]), UnknownWireType { wire_type: 6 });
    assert_eq!(
        assert_both_fail(&wrap_spans(&[vec![0x0f]])),
        UnknownWireType { wire_type: 7 }
    );
    assert_eq!(assert_both_fail(&varint(1 << 32)), InvalidKey);
    // Lengths beyond the buffer / enclosing message.
    assert_eq!(assert_both_fail(&[0x0a, 0x01]), LengthOutOfBounds);
    assert_eq!(
        assert_both_fail(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        LengthOutOfBounds
    );
    assert_eq!(
        assert_both_fail(&[vec![0x0a], varint(u64::MAX)].concat()),
        LengthOutOfBounds
    );
    assert_eq!(
        assert_both_fail(&wrap_spans(&[vec![0x2a, 0x05, b'a']])),
        LengthOutOfBounds
    );
    // Truncated fixed-width values.
    assert_eq!(
        assert_both_fail(&wrap_spans(&[vec![0x39, 1, 2, 3]])),
        TruncatedFixed
    );
    assert_eq!(
        assert_both_fail(&wrap_spans(&[vec![0x85, 0x01, 1, 2, 3]])),
        TruncatedFixed
    );
    assert_eq!(
        assert_both_fail(&[0x11, 1, 2, 3, 4, 5, 6, 7]),
        TruncatedFixed
    );
    assert_eq!(assert_both_fail(&[0x15, 1, 2, 3]), TruncatedFixed);
}

#[test]
fn every_truncation_of_a_real_request() {
    let buf = sample_request().encode_to_vec();
    let mut ok = 0;
    for cut in 0..buf.len() {
        let part = &buf[..cut];
        let prost_ok = ExportTraceServiceRequest::decode(part).is_ok();
        let got = check_against_prost(part);
        assert_eq!(got.is_ok(), prost_ok, "cut at {cut}");
        ok += usize::from(prost_ok);
    }
    // Only the boundaries between the two ResourceSpans (and 0) are valid.
    assert_eq!(ok, 2);
}

#[test]
fn scanner_errors_but_prost_rejects_too_or_accepts_more() {
    // Invalid UTF-8 in a string: prost rejects, the scanner hands out bytes.
    let buf = wrap_spans(&[ld(5, b"\xff\xfe")]);
    assert!(ExportTraceServiceRequest::decode(&buf[..]).is_err());
    let out = scan(&buf).expect("scanner does not check UTF-8");
    assert_eq!(out.spans[0].name, b"\xff\xfe");
    // Malformed nested array contents are only length-checked.
    let buf = wrap_spans(&[ld(9, &[ld(1, b"k"), ld(2, &ld(5, &[0xff]))].concat())]);
    assert!(ExportTraceServiceRequest::decode(&buf[..]).is_err());
    let out = scan(&buf).expect("nested contents not validated");
    assert_eq!(out.spans[0].attrs[0].1, Ov::Array(vec![0xff]));
}

#[test]
fn key_value_fast_path_agrees_with_the_general_path() {
    let long = "k".repeat(127);
    let longer = "v".repeat(128);
    let values = [
        None,
        Some(Value::StringValue(String::new())),
        Some(Value::StringValue("GET".into())),
        Some(Value::StringValue(long.clone())),
        Some(Value::StringValue(longer.clone())),
        Some(Value::BoolValue(true)),
        Some(Value::BoolValue(false)),
        Some(Value::IntValue(0)),
        Some(Value::IntValue(127)),
        Some(Value::IntValue(128)),
        Some(Value::IntValue(200)),
        Some(Value::IntValue(16_383)),
        Some(Value::IntValue(16_384)),
        Some(Value::IntValue(-1)),
        Some(Value::DoubleValue(-0.5)),
        Some(Value::BytesValue(vec![1, 2])),
        Some(Value::StringValueStrindex(3)),
    ];
    let mut fast = 0;
    for key in ["http.route", "", long.as_str(), longer.as_str()] {
        for value in &values {
            for with_value in [true, false] {
                let kv = KeyValue {
                    key: key.into(),
                    value: with_value.then(|| AnyValue {
                        value: value.clone(),
                    }),
                    ..Default::default()
                };
                let buf = kv.encode_to_vec();
                let general = parse_key_value_slow(Cursor::new(&buf), DEPTH_SPAN - 1)
                    .expect("prost's encoding");
                if let Some(got) = key_value_fast(&buf) {
                    assert_eq!(got, general, "{kv:?}");
                    fast += 1;
                }
                assert_eq!(
                    parse_key_value(Cursor::new(&buf), DEPTH_SPAN - 1),
                    Ok(general)
                );
            }
        }
    }
    // Both non-empty keys of up to 127 bytes (an empty key is not on the wire), each with
    // the 11 values that are empty, a string of up to 127 bytes, a bool, an int of up to
    // two varint bytes or a double.
    assert_eq!(fast, 2 * 11);
    // Shapes the fast path leaves alone: a repeated key, a value before its key, a
    // string with trailing bytes in its AnyValue.
    for buf in [
        [ld(1, b"a"), ld(1, b"b"), ld(2, &ld(1, b"v"))].concat(),
        [ld(2, &ld(1, b"v")), ld(1, b"a")].concat(),
        [ld(1, b"a"), ld(2, &[ld(1, b"v"), vi(3, 1)].concat())].concat(),
    ] {
        assert_eq!(key_value_fast(&buf), None, "{buf:?}");
        let kv = KeyValue::decode(&buf[..]).expect("valid");
        let (k, v) = parse_key_value(Cursor::new(&buf), DEPTH_SPAN - 1).expect("valid");
        assert_eq!(k, kv.key.as_bytes());
        assert_eq!(ov(v), prost_ov(&kv.value));
    }
}

// ---------------------------------------------------------------------------
// Property tests.

/// splitmix64, driven by a proptest-chosen seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum M {
    Req,
    Rs,
    Res,
    Ss,
    Span,
    Status,
    Kv,
    Any,
}

/// Sub-messages the mutator descends into: (child type, singular?).
fn child(m: M, field: u32) -> Option<(M, bool)> {
    Some(match (m, field) {
        (M::Req, 1) => (M::Rs, false),
        (M::Rs, 1) => (M::Res, true),
        (M::Rs, 2) => (M::Ss, false),
        (M::Res, 1) => (M::Kv, false),
        (M::Ss, 2) => (M::Span, false),
        (M::Span, 9) => (M::Kv, false),
        (M::Span, 15) => (M::Status, true),
        (M::Kv, 2) => (M::Any, true),
        _ => return None,
    })
}

/// Singular scalar fields for which an earlier, overridden occurrence may be injected.
fn overridable(m: M, field: u32) -> bool {
    match m {
        M::Span => matches!(field, 1..=8 | 16),
        M::Status => matches!(field, 2 | 3),
        M::Kv => field == 1,
        M::Any => matches!(field, 1..=4 | 7),
        M::Rs | M::Ss => field == 3,
        M::Req | M::Res => false,
    }
}

fn random_value(field: u32, wt: u8, rng: &mut Rng) -> Vec<u8> {
    match wt {
        0 => vi(field, rng.next() >> rng.below(64)),
        1 => f64f(field, rng.next()),
        5 => f32f(field, rng.next() as u32),
        _ => {
            let s: Vec<u8> = (0..rng.below(6))
                .map(|_| b'a' + rng.below(26) as u8)
                .collect();
            ld(field, &s)
        }
    }
}

fn unknown_field(field: u32, rng: &mut Rng, depth: u32) -> Vec<u8> {
    match rng.below(if depth == 0 { 4 } else { 5 }) {
        0 => random_value(field, 0, rng),
        1 => random_value(field, 1, rng),
        2 => random_value(field, 2, rng),
        3 => random_value(field, 5, rng),
        _ => {
            let inner: Vec<u8> = (0..rng.below(3))
                .flat_map(|_| {
                    let f = 1 + rng.below(40) as u32;
                    unknown_field(f, rng, depth - 1)
                })
                .collect();
            group(field, &inner)
        }
    }
}

/// Splits prost-encoded bytes into (field, wire type, whole field bytes, payload).
fn split_fields(mut buf: &[u8]) -> Vec<(u32, u8, &[u8], &[u8])> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let (field, wt) = prost::encoding::decode_key(&mut buf).expect("valid key");
        let payload: &[u8] = match wt {
            prost::encoding::WireType::Varint => {
                prost::encoding::decode_varint(&mut buf).expect("varint");
                &[]
            }
            prost::encoding::WireType::SixtyFourBit => {
                buf = &buf[8..];
                &[]
            }
            prost::encoding::WireType::ThirtyTwoBit => {
                buf = &buf[4..];
                &[]
            }
            prost::encoding::WireType::LengthDelimited => {
                let len = prost::encoding::decode_varint(&mut buf).expect("len") as usize;
                let (p, rest) = buf.split_at(len);
                buf = rest;
                p
            }
            other => panic!("prost does not emit {other:?}"),
        };
        let whole = &start[..start.len() - buf.len()];
        out.push((field, wt as u8, whole, payload));
    }
    out
}

/// Re-encodes a prost-encoded message with semantics-preserving noise: unknown
/// fields (groups included), overridden earlier occurrences of singular
/// scalars, singular sub-messages split into merged occurrences, and fields
/// reordered (keeping the relative order of equal field numbers).
fn reencode(buf: &[u8], m: M, rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out: Vec<(u32, Vec<u8>)> = Vec::new();
    for (field, wt, whole, payload) in split_fields(buf) {
        if let (Some((cm, singular)), 2) = (child(m, field), wt) {
            let mut parts = reencode(payload, cm, rng);
            if singular && rng.one_in(3) {
                let second = parts.split_off(rng.below(parts.len() + 1));
                out.push((field, ld(field, &parts.concat())));
                out.push((field, ld(field, &second.concat())));
            } else {
                out.push((field, ld(field, &parts.concat())));
            }
        } else {
            if overridable(m, field) && rng.one_in(4) {
                // An earlier occurrence (for AnyValue: another oneof variant).
                let (f, w) = if m == M::Any {
                    (2 + rng.below(2) as u32, 0)
                } else {
                    (field, wt)
                };
                out.push((f, random_value(f, w, rng)));
            }
            out.push((field, whole.to_vec()));
        }
    }
    if rng.one_in(2) {
        for _ in 0..1 + rng.below(3) {
            let field = 20 + rng.below(200) as u32;
            let pos = rng.below(out.len() + 1);
            out.insert(pos, (field, unknown_field(field, rng, 3)));
        }
    }
    if rng.one_in(2) {
        // Random interleaving that keeps each field number's occurrences in order.
        let mut order: Vec<usize> = (0..out.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut queues: std::collections::BTreeMap<u32, std::collections::VecDeque<Vec<u8>>> =
            Default::default();
        let numbers: Vec<u32> = out.iter().map(|(f, _)| *f).collect();
        for (f, bytes) in out {
            queues.entry(f).or_default().push_back(bytes);
        }
        return order
            .into_iter()
            .map(|i| {
                queues
                    .get_mut(&numbers[i])
                    .and_then(|q| q.pop_front())
                    .expect("one per slot")
            })
            .collect();
    }
    out.into_iter().map(|(_, b)| b).collect()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z._]{0,8}", 1 => "\\PC{0,4}"]
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        Just(None),
        text().prop_map(|s| Some(Value::StringValue(s))),
        any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
        // Status codes and the like: one- and two-byte varints.
        (-2i64..300).prop_map(|i| Some(Value::IntValue(i))),
        any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
        bytes(6).prop_map(|b| Some(Value::BytesValue(b))),
        (0i32..4).prop_map(|i| Some(Value::StringValueStrindex(i))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values })),
            }),
            prop::collection::vec(("[a-z]{0,3}", prop::option::of(inner)), 0..3).prop_map(|kvs| {
                AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value,
                                ..Default::default()
                            })
                            .collect(),
                    })),
                }
            }),
        ]
    })
}

fn key_values(max: usize) -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (text(), prop::option::weighted(0.9, any_value()), 0i32..2),
        0..=max,
    )
    .prop_map(|kvs| {
        kvs.into_iter()
            .map(|(key, value, key_strindex)| KeyValue {
                key,
                value,
                key_strindex,
            })
            .collect()
    })
}

fn span() -> impl Strategy<Value = Span> {
    (
        (
            bytes(20),
            bytes(10),
            text(),
            bytes(10),
            any::<u32>(),
            text(),
        ),
        (
            prop_oneof![0i32..6, any::<i32>()],
            any::<u64>(),
            any::<u64>(),
            key_values(5),
            any::<u32>(),
        ),
        (
            prop::collection::vec((any::<u64>(), text()), 0..2),
            prop::collection::vec(bytes(16), 0..2),
            prop::option::of((prop_oneof![0i32..3, any::<i32>()], text())),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, trace_state, parent_span_id, flags, name),
                (kind, start, end, attributes, dropped),
                (events, links, status),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped,
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name)| Event {
                        time_unix_nano,
                        name,
                        ..Default::default()
                    })
                    .collect(),
                dropped_events_count: dropped / 2,
                links: links
                    .into_iter()
                    .map(|trace_id| Link {
                        trace_id,
                        ..Default::default()
                    })
                    .collect(),
                dropped_links_count: dropped / 3,
                status: status.map(|(code, message)| Status { code, message }),
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans = (
        prop::option::of(text()),
        prop::collection::vec(span(), 0..4),
        text(),
    )
        .prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope: scope.map(|name| InstrumentationScope {
                name,
                ..Default::default()
            }),
            spans,
            schema_url,
        });
    let resource_spans = (
        prop::option::of((key_values(4), any::<u32>())),
        prop::collection::vec(scope_spans, 0..3),
        text(),
    )
        .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
            resource: resource.map(|(attributes, dropped_attributes_count)| Resource {
                attributes,
                dropped_attributes_count,
                ..Default::default()
            }),
            scope_spans,
            schema_url,
        });
    prop::collection::vec(resource_spans, 0..3)
        .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

/// A random request, encoded by prost and (optionally) re-encoded with noise.
fn encoded_request() -> impl Strategy<Value = Vec<u8>> {
    (request(), any::<u64>(), any::<bool>()).prop_map(|(req, seed, noisy)| {
        let buf = req.encode_to_vec();
        if noisy {
            reencode(&buf, M::Req, &mut Rng(seed)).concat()
        } else {
            buf
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn prop_scan_matches_prost(buf in encoded_request()) {
        let req = ExportTraceServiceRequest::decode(&buf[..]).expect("noise keeps requests valid");
        let got = scan(&buf).expect("scanner accepts what prost accepts");
        prop_assert_eq!(got, expected(&req));
    }

    #[test]
    fn prop_truncation_agrees_with_prost(buf in encoded_request(), cut in any::<prop::sample::Index>()) {
        let part = &buf[..cut.index(buf.len() + 1)];
        let prost_ok = ExportTraceServiceRequest::decode(part).is_ok();
        let got = check_against_prost(part);
        prop_assert_eq!(got.is_ok(), prost_ok);
    }

    #[test]
    fn prop_byte_corruption_never_panics(
        buf in encoded_request(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut buf = buf;
        if !buf.is_empty() {
            for (at, b) in edits {
                let i = at.index(buf.len());
                buf[i] = b;
            }
        }
        let got = scan(&buf);
        if let Some(want) = prost_decode(&buf) {
            prop_assert_eq!(got.map(Out::loose), Ok(want.loose()));
        }
    }

    #[test]
    fn prop_random_bytes_never_panic(buf in bytes(300)) {
        let got = scan(&buf);
        if let Some(want) = prost_decode(&buf) {
            prop_assert_eq!(got.map(Out::loose), Ok(want.loose()));
        }
    }
}
