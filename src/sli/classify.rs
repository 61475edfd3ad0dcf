//! Turns one scanned span into an SLI observation: is it an entry span, which series does it
//! belong to (service, feature, dimensions), was it good or bad, and how long did it take.
//!
//! Owns the feature-key rules and outcome rules. Reads only borrowed views from
//! `otlp::scan`; writes the series key into a caller-supplied buffer. No allocation per span.

use crate::otlp::scan::{AnyValueRef, AttrsRef, ScanError, SpanView};
use crate::sli::attr_keys::AttrKeys;
use crate::sli::flag::{self, FlagEval};
use crate::sli::key;
use std::io::Write as _;

/// OTLP span kinds (`Span.kind`).
pub mod kind {
    pub const INTERNAL: i32 = 1;
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;
}

/// `Status.code` value for ERROR.
const STATUS_ERROR: i32 = 2;

/// Most distinct attributes the rules may reference together.
pub const MAX_ATTRIBUTES: usize = 32;

/// Attribute slots: the rules' and the feature-flag attributes' ([`flag::KEY`],
/// [`flag::VARIANT`], [`flag::VALUE`]), which do not count against [`MAX_ATTRIBUTES`].
const SLOTS: usize = MAX_ATTRIBUTES + 5;

/// gRPC status code names, indexed by code.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A feature-key template as written in config, e.g. `"{http.request.method} {http.route}"`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureTemplate {
    parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq)]
enum TemplatePart {
    Literal(String),
    Attribute(String),
    SpanName,
}

impl FeatureTemplate {
    /// Parses a template. `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("template {text:?}: unclosed '{{'")),
                        }
                    }
                    let name = name.trim();
                    if name.is_empty() {
                        return Err(format!("template {text:?}: empty '{{}}'"));
                    }
                    if !lit.is_empty() {
                        parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(if name == "span.name" {
                        TemplatePart::SpanName
                    } else {
                        TemplatePart::Attribute(name.to_string())
                    });
                }
                '}' => return Err(format!("template {text:?}: unmatched '}}'")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(TemplatePart::Literal(lit));
        }
        if !parts.iter().any(|p| !matches!(p, TemplatePart::Literal(_))) {
            return Err(format!(
                "template {text:?} references no attribute; every span would share one feature"
            ));
        }
        Ok(Self { parts })
    }

    fn attributes(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            TemplatePart::Attribute(a) => Some(a.as_str()),
            _ => None,
        })
    }
}

/// The default feature rules, first match wins.
pub const DEFAULT_FEATURE_RULES: [&str; 6] = [
    "{feature.name}",
    "{http.request.method} {http.route}",
    "{http.method} {http.route}",
    "{rpc.service}/{rpc.method}",
    "{messaging.operation.type} {messaging.destination.name}",
    "{span.name}",
];

/// Validated classification settings.
#[derive(Clone, Debug)]
pub struct ClassifyConfig {
    /// Bit `k` set: span kind `k` is an entry span.
    pub entry_kinds: u8,
    /// Feature rules, first match wins.
    pub feature_rules: Vec<FeatureTemplate>,
    /// Extra dimension attribute names.
    pub dimensions: Vec<String>,
    /// Status ERROR makes a span bad.
    pub status_error_is_bad: bool,
    /// Bad HTTP status codes (index = code, 0..=999).
    pub http_bad: Box<[bool; 1000]>,
    /// Bad gRPC codes, bit per code.
    pub grpc_bad: u32,
    /// Longest label value kept.
    pub max_label_bytes: usize,
    /// Read feature-flag evaluations of entry spans ([`crate::sli::flag`]).
    pub flags: bool,
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        let mut http_bad = Box::new([false; 1000]);
        for b in &mut http_bad[500..600] {
            *b = true;
        }
        let grpc_bad = [
            "UNKNOWN",
            "DEADLINE_EXCEEDED",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
        ]
        .iter()
        .filter_map(|n| grpc_code_by_name(n))
        .fold(0u32, |acc, c| acc | 1 << c);
        Self {
            entry_kinds: 1 << kind::SERVER | 1 << kind::CONSUMER,
            feature_rules: DEFAULT_FEATURE_RULES
                .iter()
                .filter_map(|r| FeatureTemplate::parse(r).ok())
                .collect(),
            dimensions: Vec::new(),
            status_error_is_bad: true,
            http_bad,
            grpc_bad,
            max_label_bytes: 256,
            flags: false,
        }
    }
}

/// Label names the exporters use themselves; a dimension may not take them.
pub const RESERVED_LABELS: [&str; 5] = ["service", "feature", "le", "window", "quantile"];

/// The Prometheus label name of a dimension attribute: every character outside
/// `[a-zA-Z0-9_]` becomes `_`, and a leading digit gets a `_` prefix
/// (`service.version` → `service_version`, `k8s.pod.name` → `k8s_pod_name`).
pub fn label_name(attribute: &str) -> String {
    let mut out: String = attribute
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Looks a gRPC status code up by its canonical name (`"UNAVAILABLE"`).
pub fn grpc_code_by_name(name: &str) -> Option<u32> {
    GRPC_CODES.iter().position(|n| *n == name).map(|p| p as u32)
}

/// Parses a span kind name (`server`, `consumer`, …).
pub fn span_kind_by_name(name: &str) -> Option<i32> {
    match name.to_ascii_lowercase().as_str() {
        "internal" => Some(kind::INTERNAL),
        "server" => Some(kind::SERVER),
        "client" => Some(kind::CLIENT),
        "producer" => Some(kind::PRODUCER),
        "consumer" => Some(kind::CONSUMER),
        _ => None,
    }
}

/// Why a span could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `trace_id` is not 16 bytes or is all zero.
    TraceId,
    /// `span_id` is not 8 bytes or is all zero.
    SpanId,
}

impl Reject {
    /// Label value used in self-telemetry.
    pub fn reason(self) -> &'static str {
        match self {
            Reject::TraceId => "invalid_trace_id",
            Reject::SpanId => "invalid_span_id",
        }
    }
    /// Explanation for `partial_success.error_message`.
    pub fn message(self) -> &'static str {
        match self {
            Reject::TraceId => "trace_id must be 16 bytes and not all zero",
            Reject::SpanId => "span_id must be 8 bytes and not all zero",
        }
    }
}

/// What one span contributes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// A valid span that is not an entry span: no SLI observation.
    NotEntry,
    /// An invalid span; nothing is recorded.
    Rejected(Reject),
    /// An entry span; its key was appended to the key buffer.
    Entry(Observation),
}

/// Why a request was bad, packed in 32 bits: what said so (span status, HTTP status code,
/// gRPC status code) and the code. [`Reason::NONE`] for a good request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reason(u32);

impl Reason {
    /// A good request.
    pub const NONE: Reason = Reason(0);
    /// The span's status is ERROR.
    pub const STATUS_ERROR: Reason = Reason(1 << 24);

    /// An HTTP status code that fails the request.
    pub fn http(code: u16) -> Self {
        Reason(2 << 24 | u32::from(code))
    }

    /// A gRPC status code that fails the request.
    pub fn grpc(code: u32) -> Self {
        Reason(3 << 24 | (code & 0xffff))
    }

    /// How a user reads it: `http 503`, `grpc UNAVAILABLE`, `status ERROR`; `None` for a
    /// good request.
    pub fn describe(self) -> Option<String> {
        let code = self.0 & 0xffff;
        match self.0 >> 24 {
            1 => Some("status ERROR".to_string()),
            2 => Some(format!("http {code}")),
            3 => Some(match GRPC_CODES.get(code as usize) {
                Some(name) => format!("grpc {name}"),
                None => format!("grpc {code}"),
            }),
            _ => None,
        }
    }
}

/// The ids of an entry span, sent beside its observation for the series' example requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpanIds {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// The span was sampled (its W3C sampled flag is set, or its exporter left the flags
    /// unset, as older SDKs do: an SDK exports only sampled spans), so its trace can be
    /// found at the vendor.
    pub sampled: bool,
}

impl SpanIds {
    /// The ids of `span` (zeros where an id is not of its length).
    #[inline]
    pub fn of(span: &SpanView<'_>) -> Self {
        SpanIds {
            trace_id: <[u8; 16]>::try_from(span.trace_id).unwrap_or_default(),
            span_id: <[u8; 8]>::try_from(span.span_id).unwrap_or_default(),
            sampled: span.flags == 0 || span.flags & 1 == 1,
        }
    }
}

/// One request observation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    /// The request failed by the outcome rules.
    pub bad: bool,
    /// Duration in nanoseconds (0 when invalid).
    pub duration_ns: u64,
    /// End was before start, or a timestamp was missing; the duration was taken as 0.
    pub invalid_duration: bool,
    /// The feature fell back to the span name because the attributes the feature rules
    /// need were missing, or the span has no `service.name`.
    pub unattributed: bool,
    /// How many requests this span stands for: its adjusted count from the sampling
    /// information in its `tracestate`, 1 when there is none.
    pub weight: f64,
    /// End time of the span, Unix nanoseconds (0 when missing): SLO windows are kept in
    /// event time.
    pub end_unix_nanos: u64,
    /// Why it was bad ([`Reason::NONE`] when good).
    pub reason: Reason,
}

/// Compiled classifier. Build once, share read-only across receiver tasks.
#[derive(Debug)]
pub struct Classifier {
    cfg: ClassifyConfig,
    /// Attribute keys of interest; a span's values land in the slot of each key's index.
    keys: AttrKeys,
    rules: Vec<Vec<Part>>,
    dims: Vec<usize>,
    http_status: [usize; 2],
    grpc_int: usize,
    grpc_str: [usize; 2],
    /// Slots of the feature-flag attributes (key, three variants, value) when flags are
    /// read.
    flag_slots: Option<[usize; 5]>,
}

#[derive(Debug)]
enum Part {
    Literal(Box<str>),
    Slot(usize),
    SpanName,
}

/// Attribute values of interest from one resource, computed once per `ResourceSpans`.
#[derive(Clone, Copy, Debug)]
pub struct ResourceValues<'a> {
    service: &'a str,
    slots: [Option<AnyValueRef<'a>>; SLOTS],
}

impl<'a> ResourceValues<'a> {
    /// `service.name`, or `unknown_service` when absent, empty or not valid UTF-8.
    pub fn service(&self) -> &'a str {
        self.service
    }
}

impl Classifier {
    /// Compiles the rules. Fails if they reference more than [`MAX_ATTRIBUTES`] attributes.
    pub fn new(cfg: ClassifyConfig) -> Result<Self, String> {
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        fn slot_in(keys: &mut Vec<Box<[u8]>>, name: &str) -> usize {
            match keys.iter().position(|k| &**k == name.as_bytes()) {
                Some(i) => i,
                None => {
                    keys.push(name.as_bytes().into());
                    keys.len() - 1
                }
            }
        }
        let mut slot = |name: &str| slot_in(&mut keys, name);
        let http_status = [slot("http.response.status_code"), slot("http.status_code")];
        let grpc_int = slot("rpc.grpc.status_code");
        let grpc_str = [slot("rpc.status_code"), slot("rpc.response.status_code")];
        let rules = cfg
            .feature_rules
            .iter()
            .map(|t| {
                t.parts
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Literal(l) => Part::Literal(l.as_str().into()),
                        TemplatePart::Attribute(a) => Part::Slot(slot(a)),
                        TemplatePart::SpanName => Part::SpanName,
                    })
                    .collect()
            })
            .collect();
        let dims = cfg.dimensions.iter().map(|d| slot(d)).collect();
        // Names referenced only for validation of the total count.
        for t in &cfg.feature_rules {
            for a in t.attributes() {
                slot(a);
            }
        }
        if keys.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "feature rules, dimensions and outcome rules reference {} distinct attributes; at most {MAX_ATTRIBUTES} are supported",
                keys.len()
            ));
        }
        // The flag attributes have slots of their own beyond the rules' limit.
        let flag_slots = cfg.flags.then(|| {
            [
                slot_in(&mut keys, flag::KEY),
                slot_in(&mut keys, flag::VARIANT[0]),
                slot_in(&mut keys, flag::VARIANT[1]),
                slot_in(&mut keys, flag::VARIANT[2]),
                slot_in(&mut keys, flag::VALUE),
            ]
        });
        Ok(Self {
            cfg,
            keys: AttrKeys::new(&keys),
            rules,
            dims,
            http_status,
            grpc_int,
            grpc_str,
            flag_slots,
        })
    }

    /// Distinct attributes the rules read (the flags' not counted).
    #[cfg(test)]
    fn keys_in_rules(&self) -> usize {
        self.keys.len() - self.flag_slots.map_or(0, |s| s.len())
    }

    /// The `service` label of the series keys of spans of `resource`, as written: the
    /// service name cut to `max_label_bytes`.
    pub fn service_label<'a>(&self, resource: &ResourceValues<'a>) -> &'a str {
        key::truncated(
            resource.service(),
            self.cfg.max_label_bytes.min(u16::MAX as usize),
        )
    }

    /// The settings this classifier was built from.
    pub fn config(&self) -> &ClassifyConfig {
        &self.cfg
    }

    /// Label names of the series key, in key order: `service`, `feature`, then dimensions.
    pub fn label_names(&self) -> Vec<String> {
        let mut names = vec!["service".to_string(), "feature".to_string()];
        names.extend(self.cfg.dimensions.iter().map(|d| label_name(d)));
        names
    }

    /// The values of the attributes of interest in `attrs` (first occurrence wins), in one
    /// pass that also validates every attribute; the error is the first malformed one's.
    #[inline]
    fn slots<'a>(
        &self,
        attrs: &AttrsRef<'a>,
        slots: &mut [Option<AnyValueRef<'a>>; SLOTS],
    ) -> Result<(), ScanError> {
        attrs.try_for_each(|k, v| self.put(slots, k, v))
    }

    #[inline]
    fn put<'a>(&self, slots: &mut [Option<AnyValueRef<'a>>; SLOTS], k: &[u8], v: AnyValueRef<'a>) {
        if let Some(i) = self.keys.slot(k) {
            if let Some(s) = slots.get_mut(i) {
                if s.is_none() {
                    *s = Some(v);
                }
            }
        }
    }

    /// Extracts `service.name` and the attributes of interest from a resource.
    pub fn resource<'a>(&self, attrs: AttrsRef<'a>) -> ResourceValues<'a> {
        let mut slots = [None; SLOTS];
        let mut service: &'a str = "unknown_service";
        for (k, v) in attrs.iter() {
            if k == b"service.name" {
                if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
                    service = s;
                }
            }
            self.put(&mut slots, k, v);
        }
        ResourceValues { service, slots }
    }

    /// Classifies one span. For an entry span, appends its encoded series key to `key_buf`.
    ///
    /// Only an entry span's attributes are read (once its ids are found valid), in one pass
    /// that validates them too: a malformed one is the error (the request is malformed),
    /// `key_buf` then holds part of a key. The error's offset is a position in memory that
    /// [`crate::otlp::scan::scan_traces`] turns into one in its request when the error is
    /// returned from [`crate::otlp::scan::SpanSink::span`].
    pub fn classify<'a>(
        &self,
        span: &SpanView<'a>,
        resource: &ResourceValues<'a>,
        key_buf: &mut Vec<u8>,
    ) -> Result<Verdict, ScanError> {
        self.classify_with(span, resource, key_buf, None)
    }

    /// [`Classifier::classify`], also appending an entry span's feature-flag evaluations
    /// (its `feature_flag.*` attributes, read in the same pass as the others, then its
    /// evaluation events) to `flags`, when flags are read and `flags` is given.
    #[inline]
    pub fn classify_with<'a>(
        &self,
        span: &SpanView<'a>,
        resource: &ResourceValues<'a>,
        key_buf: &mut Vec<u8>,
        flags: Option<&mut Vec<FlagEval<'a>>>,
    ) -> Result<Verdict, ScanError> {
        if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
            return Ok(Verdict::Rejected(Reject::TraceId));
        }
        if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
            return Ok(Verdict::Rejected(Reject::SpanId));
        }
        let kind = span.kind;
        if !(0..8).contains(&kind) || self.cfg.entry_kinds & (1 << kind) == 0 {
            return Ok(Verdict::NotEntry);
        }
        let mut slots = [None; SLOTS];
        self.slots(&span.attributes, &mut slots)?;
        if let (Some(out), Some(fs)) = (flags, &self.flag_slots) {
            let at = |i: usize| slots.get(i).copied().flatten();
            // Most entry spans carry no flag: one slot read and one length check.
            if let Some(key) = at(fs[0]) {
                let parts = flag::Parts {
                    key: Some(key),
                    variant: [at(fs[1]), at(fs[2]), at(fs[3])],
                    value: at(fs[4]),
                };
                if let Some(e) = parts.eval() {
                    out.push(e);
                }
            }
            if !span.events.is_empty() {
                flag::from_events(&span.events, out)?;
            }
        }
        let lookup = |i: usize| value(&slots, resource, i);

        let max = self.cfg.max_label_bytes;
        key::push_label(key_buf, self.service_label(resource), max);
        let attributed = self.write_feature(span.name, &lookup, key_buf)
            && !resource.service().starts_with("unknown_service");
        for &d in &self.dims {
            let start = key::begin_label(key_buf);
            if let Some(v) = lookup(d) {
                render(v, key_buf);
            }
            key::finish_label(key_buf, start, max);
        }

        let reason = self.outcome(span, &lookup);
        // A missing (zero) timestamp would make a duration of decades; like end < start it
        // counts as an invalid duration of 0.
        let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
        let (duration_ns, invalid_duration) = match end.checked_sub(start) {
            Some(d) if start != 0 && end != 0 => (d, false),
            _ => (0, true),
        };
        Ok(Verdict::Entry(Observation {
            bad: reason != Reason::NONE,
            duration_ns,
            invalid_duration,
            unattributed: !attributed,
            weight: crate::otlp::tracestate::sampling(span.trace_state).weight(),
            end_unix_nanos: end,
            reason,
        }))
    }

    /// Writes the feature label; returns false when it fell back to the span name (the
    /// matching rule reads no attribute) or no rule matched.
    fn write_feature<'a>(
        &self,
        span_name: &[u8],
        lookup: &impl Fn(usize) -> Option<AnyValueRef<'a>>,
        buf: &mut Vec<u8>,
    ) -> bool {
        let max = self.cfg.max_label_bytes;
        'rules: for rule in &self.rules {
            for p in rule {
                match p {
                    Part::Slot(i) => {
                        if !lookup(*i).is_some_and(renderable) {
                            continue 'rules;
                        }
                    }
                    Part::SpanName => {
                        if span_name.is_empty() {
                            continue 'rules;
                        }
                    }
                    Part::Literal(_) => {}
                }
            }
            let start = key::begin_label(buf);
            for p in rule {
                match p {
                    Part::Literal(l) => buf.extend_from_slice(l.as_bytes()),
                    Part::Slot(i) => {
                        if let Some(v) = lookup(*i) {
                            render(v, buf);
                        }
                    }
                    Part::SpanName => push_utf8(span_name, buf),
                }
            }
            key::finish_label(buf, start, max);
            return rule.iter().any(|p| matches!(p, Part::Slot(_)));
        }
        // No rule matched (e.g. an unnamed span and no span-name rule).
        key::push_label(buf, "unknown_feature", max);
        false
    }

    /// Writes the series key of a request-metric data point (service and feature from the
    /// same rules as spans, with the point's attributes in place of span attributes; rules
    /// that need the span name cannot match). Returns false, with nothing usable in `buf`,
    /// when no attribute rule matches: such points cannot be matched to a feature.
    pub fn metric_key<'a>(
        &self,
        resource: &ResourceValues<'a>,
        attributes: AttrsRef<'a>,
        key_buf: &mut Vec<u8>,
    ) -> bool {
        let mut slots = [None; SLOTS];
        // The scan validated the points' attributes; were one malformed, no key.
        if self.slots(&attributes, &mut slots).is_err() {
            return false;
        }
        let lookup = |i: usize| value(&slots, resource, i);
        let max = self.cfg.max_label_bytes;
        key::push_label(key_buf, resource.service(), max);
        if !self.write_feature(b"", &lookup, key_buf) {
            return false;
        }
        for &d in &self.dims {
            let start = key::begin_label(key_buf);
            if let Some(v) = lookup(d) {
                render(v, key_buf);
            }
            key::finish_label(key_buf, start, max);
        }
        true
    }

    /// Why the request failed by the outcome rules, [`Reason::NONE`] when it did not.
    fn outcome<'a>(
        &self,
        span: &SpanView<'a>,
        lookup: &impl Fn(usize) -> Option<AnyValueRef<'a>>,
    ) -> Reason {
        if self.cfg.status_error_is_bad && span.status_code == STATUS_ERROR {
            return Reason::STATUS_ERROR;
        }
        if span.kind != kind::SERVER {
            return Reason::NONE;
        }
        let http = self
            .http_status
            .iter()
            .find_map(|&i| lookup(i).and_then(|v| v.as_i64()));
        if let Some(code) = http {
            if let Ok(c) = u16::try_from(code) {
                if self
                    .cfg
                    .http_bad
                    .get(usize::from(c))
                    .copied()
                    .unwrap_or(false)
                {
                    return Reason::http(c);
                }
            }
        }
        let grpc = lookup(self.grpc_int).and_then(|v| v.as_i64()).or_else(|| {
            self.grpc_str.iter().find_map(|&i| {
                let v = lookup(i)?;
                v.as_i64()
                    .or_else(|| v.as_str().and_then(grpc_code_by_name).map(i64::from))
            })
        });
        if let Some(code) = grpc {
            if (0..32).contains(&code) && self.cfg.grpc_bad & (1 << code) != 0 {
                return Reason::grpc(code as u32);
            }
        }
        Reason::NONE
    }
}

/// Attribute `i`: the span's (or data point's) value, else the resource's.
#[inline]
fn value<'a>(
    slots: &[Option<AnyValueRef<'a>>; SLOTS],
    resource: &ResourceValues<'a>,
    i: usize,
) -> Option<AnyValueRef<'a>> {
    slots
        .get(i)
        .copied()
        .flatten()
        .or_else(|| resource.slots.get(i).copied().flatten())
}

fn renderable(v: AnyValueRef<'_>) -> bool {
    match v {
        AnyValueRef::Str(s) => !s.is_empty(),
        AnyValueRef::Bool(_) | AnyValueRef::Int(_) | AnyValueRef::Double(_) => true,
        _ => false,
    }
}

/// Appends a string, boolean or number value as text (nothing for other values).
pub fn render(v: AnyValueRef<'_>, buf: &mut Vec<u8>) {
    match v {
        AnyValueRef::Str(s) => push_utf8(s, buf),
        AnyValueRef::Bool(b) => buf.extend_from_slice(if b { b"true" } else { b"false" }),
        AnyValueRef::Int(i) => {
            let _ = write!(buf, "{i}");
        }
        AnyValueRef::Double(d) => {
            let _ = write!(buf, "{d}");
        }
        _ => {}
    }
}

/// Appends bytes that should be UTF-8; invalid sequences become U+FFFD (rare, cold).
fn push_utf8(bytes: &[u8], buf: &mut Vec<u8>) {
    // ASCII (what names and routes nearly always are) is checked a word at a time.
    if bytes.is_ascii() {
        buf.extend_from_slice(bytes);
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => buf.extend_from_slice(s.as_bytes()),
        Err(_) => buf.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::scan::{scan_traces, ResourceView, SpanSink};
    use crate::otlp::synth::{kv_int, kv_str};
    use crate::sli::key;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    /// Classifies every span of a one-resource request; returns verdicts and key labels.
    fn classify_all(
        c: &Classifier,
        resource: Vec<KeyValue>,
        spans: Vec<Span>,
    ) -> Vec<(Verdict, Vec<String>)> {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = req.encode_to_vec();
        struct S<'a, 'c> {
            c: &'c Classifier,
            res: Option<ResourceValues<'a>>,
            out: Vec<(Verdict, Vec<String>)>,
        }
        impl<'a> SpanSink<'a> for S<'a, '_> {
            fn resource(&mut self, r: ResourceView<'a>) {
                self.res = Some(self.c.resource(r.attributes));
            }
            fn span(&mut self, span: &SpanView<'a>) -> Result<(), ScanError> {
                let mut buf = Vec::new();
                let res = self.res.expect("resource first");
                let v = self.c.classify(span, &res, &mut buf)?;
                self.out
                    .push((v, key::labels(&buf).map(String::from).collect()));
                Ok(())
            }
        }
        let mut s = S {
            c,
            res: None,
            out: Vec::new(),
        };
        scan_traces(&bytes, &mut s).expect("valid request");
        s.out
    }

    fn span(kind: i32, name: &str, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            kind,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn default_classifier() -> Classifier {
        Classifier::new(ClassifyConfig::default()).expect("default rules")
    }

    #[test]
    fn template_parsing() {
        assert!(FeatureTemplate::parse("{a} {b}").is_ok());
        assert!(FeatureTemplate::parse("{{literal}} {a}").is_ok());
        assert!(FeatureTemplate::parse("{a")
            .unwrap_err()
            .contains("unclosed"));
        assert!(FeatureTemplate::parse("a}")
            .unwrap_err()
            .contains("unmatched"));
        assert!(FeatureTemplate::parse("{}").unwrap_err().contains("empty"));
        assert!(FeatureTemplate::parse("static")
            .unwrap_err()
            .contains("no attribute"));
    }

    #[test]
    fn feature_rules_in_order_and_values_rendered() {
        let c = default_classifier();
        let out = classify_all(
            &c,
            vec![kv_str("service.name", "shop")],
            vec![
                span(
                    kind::SERVER,
                    "GET /u/{id}",
                    vec![
                        kv_str("http.request.method", "GET"),
                        kv_str("http.route", "/u/{id}"),
                    ],
                ),
                // No route: falls through to the span name, never to a URL.
                span(
                    kind::SERVER,
                    "GET",
                    vec![
                        kv_str("http.request.method", "GET"),
                        kv_str("url.path", "/u/123"),
                    ],
                ),
                // Integer-valued attributes render as decimal.
                span(
                    kind::CONSUMER,
                    "x",
                    vec![
                        kv_str("messaging.operation.type", "process"),
                        kv_int("messaging.destination.name", 7),
                    ],
                ),
                // Empty strings do not satisfy a rule.
                span(kind::SERVER, "fallback", vec![kv_str("feature.name", "")]),
            ],
        );
        let features: Vec<&str> = out.iter().map(|(_, l)| l[1].as_str()).collect();
        assert_eq!(features, ["GET /u/{id}", "GET", "process 7", "fallback"]);
        let unattributed: Vec<bool> = out
            .iter()
            .map(|(v, _)| matches!(v, Verdict::Entry(o) if o.unattributed))
            .collect();
        assert_eq!(
            unattributed,
            [false, true, false, true],
            "span-name fallbacks"
        );
        assert!(out.iter().all(|(_, l)| l[0] == "shop"));
        assert!(matches!(out[0].0, Verdict::Entry(o) if o.duration_ns == 4_000 && !o.bad));
    }

    #[test]
    fn service_name_fallbacks() {
        let c = default_classifier();
        let s = || vec![span(kind::SERVER, "n", vec![])];
        assert_eq!(classify_all(&c, vec![], s())[0].1[0], "unknown_service");
        assert_eq!(
            classify_all(&c, vec![kv_str("service.name", "")], s())[0].1[0],
            "unknown_service"
        );
        assert_eq!(
            classify_all(&c, vec![kv_int("service.name", 3)], s())[0].1[0],
            "unknown_service"
        );
    }

    #[test]
    fn ids_kinds_and_durations() {
        let c = default_classifier();
        let mut bad_trace = span(kind::SERVER, "a", vec![]);
        bad_trace.trace_id = vec![0; 16];
        let mut short_span = span(kind::SERVER, "a", vec![]);
        short_span.span_id = vec![1; 4];
        let mut backwards = span(kind::SERVER, "a", vec![]);
        backwards.end_time_unix_nano = 10;
        let mut no_start = span(kind::SERVER, "a", vec![]);
        no_start.start_time_unix_nano = 0;
        let out = classify_all(
            &c,
            vec![],
            vec![
                bad_trace,
                short_span,
                span(kind::CLIENT, "c", vec![]),
                span(kind::INTERNAL, "i", vec![]),
                backwards,
                no_start,
            ],
        );
        assert_eq!(out[0].0, Verdict::Rejected(Reject::TraceId));
        assert_eq!(out[1].0, Verdict::Rejected(Reject::SpanId));
        assert_eq!(out[2].0, Verdict::NotEntry);
        assert_eq!(out[3].0, Verdict::NotEntry);
        let invalid = Verdict::Entry(Observation {
            bad: false,
            duration_ns: 0,
            invalid_duration: true,
            unattributed: true,
            weight: 1.0,
            ..Observation::default()
        });
        // The end time is kept as sent, whatever the duration.
        let no_end = |v: Verdict| match v {
            Verdict::Entry(o) => Verdict::Entry(Observation {
                end_unix_nanos: 0,
                ..o
            }),
            other => other,
        };
        assert_eq!(no_end(out[4].0), invalid, "end before start");
        assert_eq!(no_end(out[5].0), invalid, "missing start time");
    }

    #[test]
    fn outcomes_by_semantic_conventions() {
        let c = default_classifier();
        let http =
            |code: i64, kind: i32| span(kind, "h", vec![kv_int("http.response.status_code", code)]);
        let grpc_str = |code: &str| span(kind::SERVER, "g", vec![kv_str("rpc.status_code", code)]);
        let mut error_status = span(kind::CONSUMER, "e", vec![]);
        error_status.status = Some(Status {
            code: 2,
            message: "x".into(),
        });
        let cases = vec![
            (http(200, kind::SERVER), None),
            (http(404, kind::SERVER), None),
            (http(429, kind::SERVER), None),
            (http(500, kind::SERVER), Some("http 500")),
            (http(503, kind::SERVER), Some("http 503")),
            // 5xx on a consumer span is not a server response.
            (http(503, kind::CONSUMER), None),
            (
                span(kind::SERVER, "o", vec![kv_str("http.status_code", "502")]),
                Some("http 502"),
            ),
            (
                span(kind::SERVER, "g", vec![kv_int("rpc.grpc.status_code", 14)]),
                Some("grpc UNAVAILABLE"),
            ),
            (
                span(kind::SERVER, "g", vec![kv_int("rpc.grpc.status_code", 5)]),
                None,
            ),
            (
                grpc_str("DEADLINE_EXCEEDED"),
                Some("grpc DEADLINE_EXCEEDED"),
            ),
            (grpc_str("NOT_FOUND"), None),
            (grpc_str("13"), Some("grpc INTERNAL")),
            (error_status, Some("status ERROR")),
        ];
        let (spans, want): (Vec<_>, Vec<_>) = cases.into_iter().unzip();
        let got: Vec<(bool, Option<String>)> = classify_all(&c, vec![], spans)
            .into_iter()
            .map(|(v, _)| match v {
                Verdict::Entry(o) => (o.bad, o.reason.describe()),
                _ => (false, Some("not an entry span".into())),
            })
            .collect();
        let want: Vec<(bool, Option<String>)> = want
            .into_iter()
            .map(|w| (w.is_some(), w.map(str::to_string)))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn span_ids_and_the_sampled_flag() {
        let mut sampled = span(kind::SERVER, "s", vec![]);
        sampled.flags = 0x101;
        let mut unsampled = span(kind::SERVER, "u", vec![]);
        unsampled.flags = 0x100;
        let unset = span(kind::SERVER, "n", vec![]);
        let bytes = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![sampled, unsampled, unset],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        struct S(Vec<SpanIds>);
        impl<'a> SpanSink<'a> for S {
            fn resource(&mut self, _: ResourceView<'a>) {}
            fn span(&mut self, span: &SpanView<'a>) -> Result<(), ScanError> {
                self.0.push(SpanIds::of(span));
                Ok(())
            }
        }
        let mut s = S(Vec::new());
        scan_traces(&bytes, &mut s).expect("valid request");
        let ids = s.0;
        assert_eq!(
            ids.iter().map(|i| i.sampled).collect::<Vec<_>>(),
            [true, false, true]
        );
        let first = span(kind::SERVER, "s", vec![]);
        assert_eq!(ids[0].trace_id.as_slice(), first.trace_id.as_slice());
        assert_eq!(ids[0].span_id.as_slice(), first.span_id.as_slice());
    }

    #[test]
    fn dimensions_from_span_then_resource_and_long_values_cut() {
        let mut cfg = ClassifyConfig {
            dimensions: vec!["service.version".into(), "region".into()],
            max_label_bytes: 16,
            ..ClassifyConfig::default()
        };
        cfg.feature_rules = vec![FeatureTemplate::parse("{span.name}").expect("rule")];
        let c = Classifier::new(cfg).expect("rules");
        assert_eq!(
            c.label_names(),
            ["service", "feature", "service_version", "region"]
        );
        let bytes_value = KeyValue {
            key: "region".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::BytesValue(vec![1, 2])),
            }),
            ..Default::default()
        };
        let out = classify_all(
            &c,
            vec![
                kv_str("service.name", "s"),
                kv_str("service.version", "1.0"),
            ],
            vec![
                span(
                    kind::SERVER,
                    "a-very-long-span-name-indeed",
                    vec![kv_str("service.version", "2.0")],
                ),
                span(kind::SERVER, "b", vec![bytes_value]),
            ],
        );
        assert_eq!(out[0].1, ["s", "a-very-long-span", "2.0", ""]);
        assert_eq!(
            out[1].1,
            ["s", "b", "1.0", ""],
            "bytes values are not labels"
        );
    }

    #[test]
    fn label_names_are_valid_prometheus_names() {
        let c = Classifier::new(ClassifyConfig {
            dimensions: vec!["app.kubernetes.io/name".into()],
            ..ClassifyConfig::default()
        })
        .expect("rules");
        assert_eq!(c.label_names()[2], "app_kubernetes_io_name");
        assert_eq!(label_name("service.version"), "service_version");
        assert_eq!(label_name("k8s/pod-name"), "k8s_pod_name");
        assert_eq!(label_name("1x"), "_1x");
        assert_eq!(label_name("région"), "r_gion");
    }

    #[test]
    fn too_many_attributes_is_an_error() {
        let cfg = ClassifyConfig {
            dimensions: (0..40).map(|i| format!("d{i}")).collect(),
            ..ClassifyConfig::default()
        };
        assert!(Classifier::new(cfg).unwrap_err().contains("at most 32"));
        // The rules may use all 32 with flags read: flags have slots of their own.
        let base = Classifier::new(ClassifyConfig::default())
            .expect("defaults")
            .keys_in_rules();
        let cfg = ClassifyConfig {
            dimensions: (0..MAX_ATTRIBUTES - base)
                .map(|i| format!("d{i}"))
                .collect(),
            flags: true,
            ..ClassifyConfig::default()
        };
        let c = Classifier::new(cfg).expect("32 attributes and the flags' own");
        assert_eq!(c.keys_in_rules(), MAX_ATTRIBUTES);
    }
}
