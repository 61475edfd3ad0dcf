//! Zero-copy scanner for OTLP protobuf payloads: trace requests span by span, and metrics
//! and logs requests validated and counted ([`count_metric_points`], [`count_log_records`])
//! without decoding them.
//!
//! # What this module owns
//!
//! The hot path of trace ingestion: walking the protobuf wire format of an
//! `ExportTraceServiceRequest` and handing each span to a [`SpanSink`] as a
//! [`SpanView`] whose byte fields borrow from the request buffer. Resources are
//! handed over as [`ResourceView`]s, once per `ResourceSpans`, before that
//! resource's spans. Attributes are exposed lazily through [`AttrsRef`], which
//! walks the bytes on demand. A span's attributes are only bounds-checked by the scan (one
//! length-delimited field each): they are parsed, and validated, by whoever reads them,
//! with [`AttrsRef::try_for_each`], whose error the sink returns to fail the scan. The
//! pipeline reads only entry spans' attributes, once; three spans in four are not entry
//! spans, and nothing of theirs but ids, kind, flags and times is needed.
//!
//! # What it must not do
//!
//! * Allocate, or build the prost object tree: the scan is O(bytes) with no heap
//!   traffic; length-delimited fields that are not needed are skipped in O(1).
//! * Panic on any input. Every read is bounds-checked and malformed input is
//!   reported as a [`ScanError`] with the byte offset of the offending element.
//! * Interpret data: it does not validate UTF-8 (strings are returned as bytes;
//!   see [`AnyValueRef::as_str`]), look at attribute semantics or derive SLIs.
//! * Descend into parts of the request the service does not use: instrumentation
//!   scopes, links, resource entity refs, and the contents of nested
//!   `ArrayValue` / `KeyValueList` attribute values are only bounds-checked as
//!   length-delimited fields. A span's events are bounds-checked and handed over as an
//!   [`EventsRef`], which, like [`AttrsRef`], is parsed by whoever walks it (the pipeline
//!   reads them for feature-flag evaluations).
//!
//! # Protobuf semantics (matched against prost)
//!
//! * Fields may appear in any order. For singular scalar fields the last
//!   occurrence wins. Singular embedded messages (the `Resource` of a
//!   `ResourceSpans`, the `Status` of a `Span`, the `AnyValue` of a `KeyValue`)
//!   are merged across occurrences: every field present in a later occurrence
//!   overrides, repeated fields (resource attributes) are concatenated.
//! * The resource may follow the scope spans on the wire: each `ResourceSpans`
//!   is walked twice, first (cheaply) to find and validate its resource, then to
//!   emit its spans.
//! * Unknown fields of every wire type are skipped, groups included (nested
//!   fields up to the matching end-group, with prost's recursion limit of 100).
//!   An unmatched end-group, a known field with the wrong wire type, a field
//!   number of 0, wire types 6/7, varints longer than 10 bytes (or overflowing
//!   64 bits), lengths beyond the enclosing message and truncated fixed-width
//!   values are errors.
//! * Enums and `int64` are decoded as prost does: the 64-bit varint is truncated
//!   (`as i32` / `as i64`), so negative values encoded in 10 bytes come out
//!   sign-correct.
//! * `AnyValue` is a oneof: the last variant set wins.
//!
//! Known, documented differences from a full prost decode (the scanner accepts
//! some inputs prost rejects, never the other way round):
//!
//! * UTF-8 of `string` fields is not checked.
//! * Skipped sub-messages (scope, links, nested array/kvlist values) are
//!   not validated internally, nor are a span's events unless the sink reads them; nor are a span's attributes unless the sink reads them
//!   (the pipeline reads the attributes of entry spans with valid ids, so a malformed
//!   `KeyValue` there refuses the request, while one in a span of a kind the entry kinds
//!   leave out, or in a span rejected for its ids, is forwarded as it came). As a span's
//!   attributes are read after the span, a span with several faults may be refused for a
//!   later one than prost names.
//! * When an `AnyValue` sets `array_value` (or `kvlist_value`) more than once,
//!   prost concatenates the lists; the scanner reports the last occurrence only.
//! * `string_value_strindex` (AnyValue field 8, profiling only) is treated as an
//!   unset value ([`AnyValueRef::Empty`]), as OTLP prescribes for non-profiling
//!   signals; `key_strindex` (KeyValue field 3) is ignored.

use std::fmt;

/// A malformed request: where in the request buffer, and what.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("malformed protobuf at byte {offset}: {kind}")]
pub struct ScanError {
    /// Offset (from the start of the buffer given to [`scan_traces`]) of the
    /// element that failed to decode: the varint, length prefix, fixed-width
    /// value or field key.
    pub offset: usize,
    /// What went wrong.
    pub kind: ScanErrorKind,
}

/// The kinds of wire-format violations the scanner reports.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ScanErrorKind {
    /// The buffer (or enclosing message) ends inside a varint.
    #[error("truncated varint")]
    TruncatedVarint,
    /// A varint longer than 10 bytes, or whose 10th byte overflows 64 bits.
    #[error("varint longer than 10 bytes or overflowing 64 bits")]
    VarintTooLong,
    /// A length prefix reaching past the end of the enclosing message.
    #[error("length-delimited field extends past the end of its enclosing message")]
    LengthOutOfBounds,
    /// A fixed32/fixed64 value cut off by the end of the enclosing message.
    #[error("truncated fixed-width value")]
    TruncatedFixed,
    /// A known field encoded with a wire type its declaration does not allow.
    #[error("field {field} has invalid wire type {wire_type}")]
    InvalidWireType {
        /// Field number.
        field: u32,
        /// Wire type found on the wire.
        wire_type: u8,
    },
    /// A field key larger than `u32::MAX`, or with field number 0.
    #[error("invalid field key")]
    InvalidKey,
    /// Wire type 6 or 7.
    #[error("unknown wire type {wire_type}")]
    UnknownWireType {
        /// Wire type found on the wire.
        wire_type: u8,
    },
    /// An end-group with no start-group, or closing a different field's group.
    #[error("unmatched end-group")]
    UnmatchedEndGroup,
    /// A start-group whose end-group never comes before the enclosing message ends.
    #[error("unterminated group")]
    UnterminatedGroup,
    /// Groups nested deeper than prost's recursion limit allows.
    #[error("recursion limit reached")]
    RecursionLimit,
}

const WT_VARINT: u8 = 0;
const WT_I64: u8 = 1;
const WT_LEN: u8 = 2;
const WT_START_GROUP: u8 = 3;
const WT_END_GROUP: u8 = 4;
const WT_I32: u8 = 5;

// Recursion budgets at each message level, mirroring prost's `DecodeContext`
// (100 at the top-level message, one less per enclosing message). They bound
// how deeply unknown groups may nest, exactly as prost does.
const DEPTH_REQUEST: u32 = 100;
const DEPTH_RESOURCE_SPANS: u32 = 99;
const DEPTH_RESOURCE: u32 = 98;
const DEPTH_SCOPE_SPANS: u32 = 98;
const DEPTH_SPAN: u32 = 97;
const DEPTH_STATUS: u32 = 96;
const DEPTH_EVENT: u32 = 96;

#[cold]
#[inline(never)]
fn error(at: usize, kind: ScanErrorKind) -> ScanError {
    ScanError { offset: at, kind }
}

impl ScanError {
    /// Turns the address the scan recorded into an offset from the start of `request`.
    fn relative_to(self, request: &[u8]) -> Self {
        ScanError {
            offset: self.offset.wrapping_sub(request.as_ptr() as usize),
            kind: self.kind,
        }
    }
}

/// Runs a scan of `request`, reporting error positions as offsets into it.
#[inline(always)]
fn from_request<'a, T>(
    request: &'a [u8],
    scan: impl FnOnce(Cursor<'a>) -> Result<T, ScanError>,
) -> Result<T, ScanError> {
    scan(Cursor::new(request)).map_err(|e| e.relative_to(request))
}

/// A read position inside one message's bytes: what is left of them.
///
/// Two words, so that it lives in registers through the hot loops. While the scan runs,
/// positions (`at`, and [`ScanError::offset`]) are addresses of bytes of the request;
/// the public entry points turn them into offsets from its start ([`from_request`]).
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn new(buf: &'a [u8]) -> Self {
        Cursor { rest: buf }
    }

    #[inline(always)]
    fn has_more(&self) -> bool {
        !self.rest.is_empty()
    }

    /// The address of the next byte, for error positions.
    #[inline(always)]
    fn at(&self) -> usize {
        self.rest.as_ptr() as usize
    }

    /// Bytes left: within one message, a position counted from its end.
    #[inline(always)]
    fn left(&self) -> usize {
        self.rest.len()
    }

    /// Reads the one-byte key `key` if it comes next.
    #[inline(always)]
    fn eat(&mut self, key: u8) -> bool {
        match *self.rest {
            [b, ref tail @ ..] if b == key => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    /// Reads the two-byte key `key` if it comes next.
    #[inline(always)]
    fn eat2(&mut self, key: [u8; 2]) -> bool {
        match self.rest.split_first_chunk::<2>() {
            Some((k, tail)) if *k == key => {
                self.rest = tail;
                true
            }
            _ => false,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, ScanError> {
        match *self.rest {
            [b0, ref tail @ ..] if b0 < 0x80 => {
                self.rest = tail;
                Ok(u64::from(b0))
            }
            [b0, b1, ref tail @ ..] if b1 < 0x80 => {
                self.rest = tail;
                Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(always)]
    fn varint_slow(&mut self) -> Result<u64, ScanError> {
        match varint_slow(self.rest) {
            Ok((value, len)) => {
                self.rest = self.rest.get(len..).unwrap_or_default();
                Ok(value)
            }
            Err(kind) => Err(error(self.at(), kind)),
        }
    }

    /// Reads a field key: `(field number, wire type)`.
    #[inline(always)]
    fn key(&mut self) -> Result<(u32, u8), ScanError> {
        let at = self.at();
        let tag = self.tag()?;
        split_tag(tag, at)
    }

    /// Reads a field key whole, `field << 3 | wire type`, unchecked: for a dispatch in
    /// which every key but the expected ones goes to [`other_field`], which checks it.
    #[inline(always)]
    fn tag(&mut self) -> Result<u32, ScanError> {
        let at = self.at();
        u32::try_from(self.varint()?).map_err(|_| error(at, ScanErrorKind::InvalidKey))
    }

    /// Checks that known field `field` (key at `at`) has wire type `want`.
    #[inline(always)]
    fn want(&self, field: u32, wire_type: u8, want: u8, at: usize) -> Result<(), ScanError> {
        if wire_type == want {
            Ok(())
        } else {
            Err(error(
                at,
                ScanErrorKind::InvalidWireType { field, wire_type },
            ))
        }
    }

    /// Reads a length-delimited payload as a cursor over it.
    #[inline(always)]
    fn sub(&mut self) -> Result<Cursor<'a>, ScanError> {
        self.bytes().map(Cursor::new)
    }

    /// Reads a length-delimited payload.
    #[inline(always)]
    fn bytes(&mut self) -> Result<&'a [u8], ScanError> {
        let at = self.at();
        let len = self.varint()?;
        match usize::try_from(len)
            .ok()
            .and_then(|n| self.rest.split_at_checked(n))
        {
            Some((payload, tail)) => {
                self.rest = tail;
                Ok(payload)
            }
            None => Err(error(at, ScanErrorKind::LengthOutOfBounds)),
        }
    }

    #[inline(always)]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ScanError> {
        match self.rest.split_first_chunk::<N>() {
            Some((value, tail)) => {
                self.rest = tail;
                Ok(*value)
            }
            None => Err(error(self.at(), ScanErrorKind::TruncatedFixed)),
        }
    }

    #[inline(always)]
    fn fixed64(&mut self) -> Result<u64, ScanError> {
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    #[inline(always)]
    fn fixed32(&mut self) -> Result<u32, ScanError> {
        self.fixed::<4>().map(u32::from_le_bytes)
    }

    /// Skips the value of an unknown field whose key (at `at`) was just read.
    /// `depth` is the recursion budget of the enclosing message (see prost).
    #[inline(always)]
    fn skip(&mut self, field: u32, wire_type: u8, depth: u32, at: usize) -> Result<(), ScanError> {
        self.rest = skip_value(self.rest, field, wire_type, depth, at)?;
        Ok(())
    }
}

/// The bytes of `msg` between two positions in it, given as bytes left ([`Cursor::left`]).
#[inline(always)]
fn between(msg: &[u8], first_left: usize, last_left: usize) -> &[u8] {
    let len = msg.len();
    msg.get(len.saturating_sub(first_left)..len.saturating_sub(last_left))
        .unwrap_or_default()
}

/// The field number and wire type of a key read whole ([`Cursor::tag`], at `at`), or the
/// error for a key no message may have.
#[inline(always)]
fn split_tag(tag: u32, at: usize) -> Result<(u32, u8), ScanError> {
    let wire_type = (tag & 7) as u8;
    if wire_type > WT_I32 {
        return Err(error(at, ScanErrorKind::UnknownWireType { wire_type }));
    }
    let field = tag >> 3;
    if field == 0 {
        return Err(error(at, ScanErrorKind::InvalidKey));
    }
    Ok((field, wire_type))
}

// The out-of-line helpers below take and return plain values rather than
// `&mut Cursor`, so that callers' cursors can stay in registers.

/// Decodes a varint of any length at the start of `buf`; returns it and its length.
#[inline(never)]
fn varint_slow(buf: &[u8]) -> Result<(u64, usize), ScanErrorKind> {
    let mut value = 0u64;
    for i in 0..10usize {
        let Some(&b) = buf.get(i) else {
            return Err(ScanErrorKind::TruncatedVarint);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            // The 10th byte may only contribute the top bit of a u64.
            if i == 9 && b > 1 {
                break;
            }
            return Ok((value, i + 1));
        }
    }
    Err(ScanErrorKind::VarintTooLong)
}

/// Skips the value of field `field` (wire type `wire_type`, key at `at`) at the start of
/// `rest`; returns what follows it.
#[inline(never)]
fn skip_value(
    rest: &[u8],
    field: u32,
    wire_type: u8,
    depth: u32,
    at: usize,
) -> Result<&[u8], ScanError> {
    if depth == 0 {
        return Err(error(at, ScanErrorKind::RecursionLimit));
    }
    let mut c = Cursor::new(rest);
    match wire_type {
        WT_VARINT => drop(c.varint()?),
        WT_I64 => drop(c.fixed::<8>()?),
        WT_LEN => drop(c.bytes()?),
        WT_I32 => drop(c.fixed::<4>()?),
        WT_START_GROUP => loop {
            if !c.has_more() {
                return Err(error(at, ScanErrorKind::UnterminatedGroup));
            }
            let inner_at = c.at();
            let (inner_field, inner_wt) = c.key()?;
            if inner_wt == WT_END_GROUP {
                if inner_field != field {
                    return Err(error(inner_at, ScanErrorKind::UnmatchedEndGroup));
                }
                break;
            }
            c.rest = skip_value(c.rest, inner_field, inner_wt, depth - 1, inner_at)?;
        },
        _ => return Err(error(at, ScanErrorKind::UnmatchedEndGroup)),
    };
    Ok(c.rest)
}

/// Attributes of a span or resource: the repeated `KeyValue` field of an
/// already-validated message (or, for a resource sent as several merged
/// `Resource` occurrences, of each of those messages in turn).
///
/// Cheap to copy; iterating re-walks the borrowed bytes without allocating.
#[derive(Clone, Copy)]
pub struct AttrsRef<'a> {
    /// The message holding the `KeyValue` fields, narrowed to the span from the
    /// first to the last of them; in nested mode, the parent message narrowed
    /// to its `outer_field` occurrences.
    buf: &'a [u8],
    /// Field number of the repeated `KeyValue`.
    field: u32,
    /// 0: `buf` is the message itself. Otherwise `buf` holds length-delimited
    /// `outer_field` occurrences, each a message containing `field`.
    outer_field: u32,
    /// Number of `KeyValue` fields, counted by the scan (for a span, before they are
    /// validated: if one is malformed, iteration stops there, short of this count).
    len: usize,
}

impl<'a> AttrsRef<'a> {
    /// True when both refer to the very same attribute bytes (the same resource of one
    /// request), whatever their contents.
    pub fn same_as(&self, other: &AttrsRef<'_>) -> bool {
        std::ptr::eq(self.buf.as_ptr(), other.buf.as_ptr())
            && self.buf.len() == other.buf.len()
            && self.field == other.field
            && self.len == other.len
    }

    const EMPTY: Self = AttrsRef {
        buf: &[],
        field: 1,
        outer_field: 0,
        len: 0,
    };

    /// No attributes.
    pub fn empty() -> Self {
        Self::EMPTY
    }

    fn flat(buf: &'a [u8], field: u32, len: usize) -> Self {
        if len == 0 {
            return Self::empty();
        }
        AttrsRef {
            buf,
            field,
            outer_field: 0,
            len,
        }
    }

    /// Iterates `(key, value)` pairs in wire order (duplicates included).
    pub fn iter(&self) -> AttrIter<'a> {
        let empty = Cursor::new(&[]);
        let whole = Cursor::new(self.buf);
        let (outer, inner) = if self.outer_field == 0 {
            (empty, whole)
        } else {
            (whole, empty)
        };
        AttrIter {
            outer,
            inner,
            field: self.field,
            outer_field: self.outer_field,
            remaining: self.len,
        }
    }

    /// Calls `f` with each `(key, value)` pair in wire order, validating each `KeyValue` as
    /// prost would: a span's attributes are only bounds-checked by the scan, and this is
    /// where they are read. On the first malformed one, stops with its error (after `f` saw
    /// the attributes before it).
    ///
    /// The error's `offset` is where the fault is in memory, not yet an offset into the
    /// request: a [`SpanSink`] returns the error from [`SpanSink::span`], and
    /// [`scan_traces`] turns it into the offset from the start of its request.
    ///
    /// The attributes of resources, metric points and log records were validated by the
    /// scan; for them this is [`AttrsRef::iter`] in a tighter loop, and never an error.
    #[inline]
    pub fn try_for_each(
        &self,
        mut f: impl FnMut(&'a [u8], AnyValueRef<'a>),
    ) -> Result<(), ScanError> {
        if self.outer_field != 0 {
            self.iter().for_each(|(k, v)| f(k, v));
            return Ok(());
        }
        // A span's attributes (field 9 of a span) get prost's recursion budget at that
        // depth. Those of other messages were validated with a smaller or equal budget than
        // the largest, which therefore refuses nothing the scan accepted (a resource's
        // attributes, field 1, are validated one level above a span's).
        let depth = match self.field {
            9 => DEPTH_SPAN - 1,
            // An event's attributes (the only flat attributes in field 3).
            3 => DEPTH_EVENT - 1,
            _ => DEPTH_REQUEST,
        };
        let mut c = Cursor::new(self.buf);
        while let Some(kv) = next_occurrence(&mut c, self.field)? {
            // `parse_key_value` written out, with `f` called on each path rather than after
            // them: where the two paths' results were merged, they went through memory, and
            // the load reading them back was this walk's hot spot in the profile. (A shared
            // helper taking `f` measured 1.5% slower in `collector/request_tracked`.)
            match key_value_fast(kv.rest) {
                Some((k, v)) => f(k, v),
                None => {
                    let (k, v) = parse_key_value_slow(kv, depth)?;
                    f(k, v);
                }
            }
        }
        Ok(())
    }

    /// The value of the FIRST attribute with key `key` (keys should be unique;
    /// if a sender repeats one, the first occurrence on the wire is returned).
    pub fn get(&self, key: &[u8]) -> Option<AnyValueRef<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Number of attributes (O(1)).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for AttrsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (String::from_utf8_lossy(k), v)))
            .finish()
    }
}

impl<'a> IntoIterator for AttrsRef<'a> {
    type Item = (&'a [u8], AnyValueRef<'a>);
    type IntoIter = AttrIter<'a>;
    fn into_iter(self) -> AttrIter<'a> {
        self.iter()
    }
}

/// Iterator over the attributes of an [`AttrsRef`], in wire order.
///
/// Ends at the first malformed `KeyValue` (a span's attributes are not validated by the
/// scan; [`AttrsRef::try_for_each`] reports what this stops at).
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    outer: Cursor<'a>,
    inner: Cursor<'a>,
    field: u32,
    outer_field: u32,
    remaining: usize,
}

impl AttrIter<'_> {
    fn finish(&mut self) {
        self.outer = Cursor::new(&[]);
        self.inner = Cursor::new(&[]);
        self.remaining = 0;
    }
}

/// Advances `c` to the next length-delimited occurrence of `field`, skipping
/// anything else; `Ok(None)` at the end of the message.
#[inline(always)]
fn next_occurrence<'a>(c: &mut Cursor<'a>, field: u32) -> Result<Option<Cursor<'a>>, ScanError> {
    let want = field << 3 | u32::from(WT_LEN);
    while c.has_more() {
        let at = c.at();
        let tag = c.tag()?;
        if tag == want {
            return c.sub().map(Some);
        }
        c.rest = skip_value(c.rest, tag >> 3, (tag & 7) as u8, DEPTH_REQUEST, at)?;
    }
    Ok(None)
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (&'a [u8], AnyValueRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match next_occurrence(&mut self.inner, self.field) {
                Ok(Some(kv)) => match parse_key_value(kv, DEPTH_REQUEST) {
                    Ok(item) => {
                        self.remaining = self.remaining.saturating_sub(1);
                        return Some(item);
                    }
                    Err(_) => break,
                },
                Ok(None) => {}
                Err(_) => break,
            }
            if self.outer_field == 0 {
                break;
            }
            match next_occurrence(&mut self.outer, self.outer_field) {
                Ok(Some(msg)) => self.inner = msg,
                Ok(None) | Err(_) => break,
            }
        }
        self.finish();
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for AttrIter<'_> {}
impl std::iter::FusedIterator for AttrIter<'_> {}

/// The events of one span (field 11), borrowing from the request: the span's bytes from its
/// first event on, walked for events on demand. The scan only bounds-checks each event
/// and notes that there are some; [`EventsRef::try_for_each`] parses and validates them as
/// prost would, so a span's events cost nothing unless read.
#[derive(Clone, Copy, Debug)]
pub struct EventsRef<'a> {
    /// The span's bytes from its first event (empty when it has no events).
    span: &'a [u8],
}

impl<'a> EventsRef<'a> {
    const EMPTY: Self = EventsRef { span: &[] };

    /// No events.
    pub fn empty() -> Self {
        Self::EMPTY
    }

    /// True if the span has no events (O(1)).
    pub fn is_empty(&self) -> bool {
        self.span.is_empty()
    }

    /// Calls `f` with each event's name and attributes, in wire order, validating each
    /// `Event`'s own fields as prost would; its attributes are validated as `f` reads them
    /// with [`AttrsRef::try_for_each`]. On the first malformed one, stops
    /// with its error (after `f` saw the events before it); as with
    /// [`AttrsRef::try_for_each`], the error's offset is a position in memory that
    /// [`scan_traces`] turns into one in its request.
    ///
    /// `f` returns whether to go on: an event it stops at is not validated further, nor are
    /// the events after it.
    pub fn try_for_each(
        &self,
        mut f: impl FnMut(&'a [u8], AttrsRef<'a>) -> Result<bool, ScanError>,
    ) -> Result<(), ScanError> {
        let mut c = Cursor::new(self.span);
        while let Some(event) = next_occurrence(&mut c, 11)? {
            let (name, attrs) = parse_event(event)?;
            if !f(name, attrs)? {
                break;
            }
        }
        Ok(())
    }
}

/// Parses one `Event`: its name and its attributes, which, like a span's, are only
/// bounds-checked here and validated by whoever reads them ([`AttrsRef::try_for_each`]).
fn parse_event(mut c: Cursor<'_>) -> Result<(&[u8], AttrsRef<'_>), ScanError> {
    let msg = c.rest;
    let mut name: &[u8] = &[];
    let mut n = 0usize;
    let (mut first, mut last) = (0usize, 0usize);
    while c.has_more() {
        let left = c.left();
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.want(field, wt, WT_I64, at)?;
                c.fixed64()?;
            }
            2 => {
                c.want(field, wt, WT_LEN, at)?;
                name = c.bytes()?;
            }
            3 => {
                c.want(field, wt, WT_LEN, at)?;
                c.bytes()?;
                if n == 0 {
                    first = left;
                }
                last = c.left();
                n += 1;
            }
            4 => {
                c.want(field, wt, WT_VARINT, at)?;
                c.varint()?;
            }
            _ => c.skip(field, wt, DEPTH_EVENT, at)?,
        }
    }
    Ok((name, AttrsRef::flat(between(msg, first, last), 3, n)))
}

/// An attribute value borrowing from the request.
///
/// The tag is a whole word, so the value is three aligned words and a copy moves them
/// as such. With the default one-byte tag the compiler copied bytes 1 to 24 as an
/// unaligned 16-byte and an overlapping 8-byte move, and the profile's hot spot in the
/// classifier was the load after such a copy. The wider tag alone measured no faster;
/// with the split in [`AttrsRef::try_for_each`] it did (docs/performance.md, "Reading
/// fields in order").
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(u64)]
pub enum AnyValueRef<'a> {
    /// No value set (also: a missing `value` field, or `string_value_strindex`).
    Empty,
    /// `string_value`, UTF-8 not checked.
    Str(&'a [u8]),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// `array_value`: the encoded `ArrayValue` message (contents not validated).
    Array(&'a [u8]),
    /// `kvlist_value`: the encoded `KeyValueList` message (contents not validated).
    KvList(&'a [u8]),
}

impl<'a> AnyValueRef<'a> {
    /// The string, if this is a `Str` holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            AnyValueRef::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The integer, if this is an `Int`, or a `Str` that parses as an `i64`
    /// (decimal, optional sign, no surrounding whitespace).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            AnyValueRef::Int(i) => Some(i),
            AnyValueRef::Str(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            _ => None,
        }
    }
}

/// One span, borrowing from the request buffer. Missing fields have their
/// protobuf defaults (empty slices, zeros).
#[derive(Clone, Copy, Debug)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub flags: u32,
    pub name: &'a [u8],
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: AttrsRef<'a>,
    pub events: EventsRef<'a>,
    pub status_code: i32,
    pub status_message: &'a [u8],
}

impl SpanView<'_> {
    /// Puts every field back to its protobuf default, field by field (cheaper than
    /// copying [`SpanView::EMPTY`] over it).
    #[inline(always)]
    fn clear(&mut self) {
        self.trace_id = &[];
        self.span_id = &[];
        self.trace_state = &[];
        self.parent_span_id = &[];
        self.flags = 0;
        self.name = &[];
        self.kind = 0;
        self.start_time_unix_nano = 0;
        self.end_time_unix_nano = 0;
        self.attributes = AttrsRef::EMPTY;
        self.events = EventsRef::EMPTY;
        self.status_code = 0;
        self.status_message = &[];
    }

    /// A span with every field at its protobuf default.
    const EMPTY: Self = SpanView {
        trace_id: &[],
        span_id: &[],
        trace_state: &[],
        parent_span_id: &[],
        flags: 0,
        name: &[],
        kind: 0,
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        attributes: AttrsRef::EMPTY,
        events: EventsRef::EMPTY,
        status_code: 0,
        status_message: &[],
    };
}

/// The resource of one `ResourceSpans` (empty attributes if it has none).
#[derive(Clone, Copy, Debug)]
pub struct ResourceView<'a> {
    pub attributes: AttrsRef<'a>,
}

/// Receives the scan's output in wire order. On error, the caller discards what it received.
pub trait SpanSink<'a> {
    /// Called once per `ResourceSpans`, before its spans (empty attrs if no resource).
    fn resource(&mut self, resource: ResourceView<'a>);
    /// Called for each span of the current resource, in wire order. The span's attributes
    /// are not validated yet: a sink that reads them does so with
    /// [`AttrsRef::try_for_each`] and returns its error, which ends the scan with it.
    fn span(&mut self, span: &SpanView<'a>) -> Result<(), ScanError>;
}

/// Walks an ExportTraceServiceRequest. Returns the number of spans seen.
///
/// Everything the scan descends into is validated before the sink sees it (a span's
/// attributes are the sink's to validate as it reads them, see [`SpanSink::span`]); an
/// error may still come after the sink received earlier resources and spans.
pub fn scan_traces<'a, S: SpanSink<'a>>(buf: &'a [u8], sink: &mut S) -> Result<usize, ScanError> {
    from_request(buf, |mut c| {
        let mut spans = 0usize;
        while c.has_more() {
            let at = c.at();
            let (field, wt) = c.key()?;
            if field == 1 {
                c.want(field, wt, WT_LEN, at)?;
                let rs = c.sub()?;
                spans += scan_resource_spans(rs, sink)?;
            } else {
                c.skip(field, wt, DEPTH_REQUEST, at)?;
            }
        }
        Ok(spans)
    })
}

fn scan_resource_spans<'a, S: SpanSink<'a>>(
    rs: Cursor<'a>,
    sink: &mut S,
) -> Result<usize, ScanError> {
    // Pass 1: validate the ResourceSpans' own fields and its resource(s).
    let mut c = rs;
    let mut occurrences = 0usize;
    let mut attrs = 0usize;
    let mut single: &'a [u8] = &[];
    let (mut first_left, mut last_left) = (0usize, 0usize);
    while c.has_more() {
        let left = c.left();
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.want(field, wt, WT_LEN, at)?;
                let resource = c.sub()?;
                let (n, range) = scan_resource(resource)?;
                occurrences += 1;
                if occurrences == 1 {
                    first_left = left;
                    single = range;
                }
                last_left = c.left();
                attrs += n;
            }
            2 | 3 => {
                c.want(field, wt, WT_LEN, at)?;
                c.sub()?;
            }
            _ => c.skip(field, wt, DEPTH_RESOURCE_SPANS, at)?,
        }
    }
    let attributes = if attrs == 0 {
        AttrsRef::empty()
    } else if occurrences == 1 {
        AttrsRef::flat(single, 1, attrs)
    } else {
        AttrsRef {
            buf: between(rs.rest, first_left, last_left),
            field: 1,
            outer_field: 1,
            len: attrs,
        }
    };
    sink.resource(ResourceView { attributes });

    // Pass 2: the spans.
    let mut c = rs;
    let mut spans = 0usize;
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            2 => {
                c.want(field, wt, WT_LEN, at)?;
                let scope_spans = c.sub()?;
                spans += scan_scope_spans(scope_spans, sink)?;
            }
            1 | 3 => {
                c.want(field, wt, WT_LEN, at)?;
                c.sub()?;
            }
            _ => c.skip(field, wt, DEPTH_RESOURCE_SPANS, at)?,
        }
    }
    Ok(spans)
}

/// Validates a `Resource`; returns its attribute count and the byte range
/// covering its attributes.
fn scan_resource(mut c: Cursor<'_>) -> Result<(usize, &[u8]), ScanError> {
    let msg = c.rest;
    let mut n = 0usize;
    let (mut first, mut last) = (0usize, 0usize);
    while c.has_more() {
        let left = c.left();
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.want(field, wt, WT_LEN, at)?;
                let kv = c.sub()?;
                parse_key_value(kv, DEPTH_RESOURCE - 1)?;
                if n == 0 {
                    first = left;
                }
                last = c.left();
                n += 1;
            }
            2 => {
                c.want(field, wt, WT_VARINT, at)?;
                c.varint()?;
            }
            3 => {
                c.want(field, wt, WT_LEN, at)?;
                c.sub()?;
            }
            _ => c.skip(field, wt, DEPTH_RESOURCE, at)?,
        }
    }
    Ok((n, between(msg, first, last)))
}

fn scan_scope_spans<'a, S: SpanSink<'a>>(
    mut c: Cursor<'a>,
    sink: &mut S,
) -> Result<usize, ScanError> {
    let mut spans = 0usize;
    let mut span = SpanView::EMPTY;
    while c.has_more() {
        let at = c.at();
        match c.tag()? {
            0x12 => {
                parse_span(c.sub()?, &mut span)?;
                sink.span(&span)?;
                span.clear();
                spans += 1;
            }
            // scope, schema_url
            0x0a | 0x1a => drop(c.bytes()?),
            tag => c.rest = other_field(c.rest, tag, 3, DEPTH_SCOPE_SPANS, at)?,
        }
    }
    Ok(spans)
}

fn parse_span<'a>(mut c: Cursor<'a>, s: &mut SpanView<'a>) -> Result<(), ScanError> {
    let msg = c.rest;
    let mut lists = SpanLists::default();
    // The fields in the schema's order, which is the order SDKs and the Collector write
    // them in: each is one compare of the next byte, taken the same way span after span,
    // where the dispatch below is an indirect jump per field to a target that changes field
    // by field (the profile's hot spot, most likely mispredicted). Whatever is left (a field
    // out of order, an unknown one, a malformed key) is read by that dispatch, in wire
    // order as before, so a later occurrence of a field still overrides an earlier one.
    // The arms below repeat the dispatch's on purpose: one inlined function of the key
    // called from here with each constant key measured 558 scan instructions per span
    // over a loop of keys and 860 through a closure, against 363 written out.
    if c.eat(0x0a) {
        s.trace_id = c.bytes()?;
    }
    if c.eat(0x12) {
        s.span_id = c.bytes()?;
    }
    if c.eat(0x1a) {
        s.trace_state = c.bytes()?;
    }
    if c.eat(0x22) {
        s.parent_span_id = c.bytes()?;
    }
    if c.eat(0x2a) {
        s.name = c.bytes()?;
    }
    if c.eat(0x30) {
        s.kind = c.varint()? as i32;
    }
    if c.eat(0x39) {
        s.start_time_unix_nano = c.fixed64()?;
    }
    if c.eat(0x41) {
        s.end_time_unix_nano = c.fixed64()?;
    }
    loop {
        let left = c.left();
        if !c.eat(0x4a) {
            break;
        }
        lists.attribute(left, &mut c)?;
    }
    if c.eat(0x7a) {
        merge_status(c.sub()?, s)?;
    }
    if c.eat2([0x85, 0x01]) {
        s.flags = c.fixed32()?;
    }
    while c.has_more() {
        let left = c.left();
        let at = c.at();
        // One dispatch on the whole key: a known field with the wire type the schema gives
        // it matches an arm; anything else goes to `other_field`.
        match c.tag()? {
            0x0a => s.trace_id = c.bytes()?,
            0x12 => s.span_id = c.bytes()?,
            0x1a => s.trace_state = c.bytes()?,
            0x22 => s.parent_span_id = c.bytes()?,
            0x2a => s.name = c.bytes()?,
            0x30 => s.kind = c.varint()? as i32,
            0x39 => s.start_time_unix_nano = c.fixed64()?,
            0x41 => s.end_time_unix_nano = c.fixed64()?,
            // Attributes are read (and validated) by whoever walks them, with
            // `AttrsRef::try_for_each`: only entry spans' are.
            0x4a => lists.attribute(left, &mut c)?,
            // Events are read (and validated) by whoever walks them, like attributes.
            0x5a => {
                if lists.events_left == 0 {
                    lists.events_left = left;
                }
                c.bytes()?;
            }
            // dropped attributes, events and links counts; links.
            0x50 | 0x60 | 0x70 => drop(c.varint()?),
            0x6a => drop(c.bytes()?),
            0x7a => {
                let status = c.sub()?;
                merge_status(status, s)?;
            }
            0x85 => s.flags = c.fixed32()?,
            tag => c.rest = other_field(c.rest, tag, 16, DEPTH_SPAN, at)?,
        }
    }
    if lists.n_attrs != 0 {
        s.attributes = AttrsRef::flat(
            between(msg, lists.attrs_first, lists.attrs_last),
            9,
            lists.n_attrs,
        );
    }
    if lists.events_left != 0 {
        s.events = EventsRef {
            span: between(msg, lists.events_left, 0),
        };
    }
    Ok(())
}

/// Where a span's attributes and events lie in its message, as [`parse_span`] finds them:
/// positions counted as bytes left to the message's end.
#[derive(Default)]
struct SpanLists {
    /// Attributes seen.
    n_attrs: usize,
    /// Bytes left at the first attribute's key.
    attrs_first: usize,
    /// Bytes left after the last attribute.
    attrs_last: usize,
    /// Bytes left at the first event's key; events are read from there on.
    events_left: usize,
}

impl SpanLists {
    /// Notes one attribute, whose key (read) began `left` bytes before the end, and skips
    /// its payload.
    #[inline(always)]
    fn attribute(&mut self, left: usize, c: &mut Cursor<'_>) -> Result<(), ScanError> {
        c.bytes()?;
        if self.n_attrs == 0 {
            self.attrs_first = left;
        }
        self.attrs_last = c.left();
        self.n_attrs += 1;
        Ok(())
    }
}

/// A field key (`tag`, at `at`) that none of a message's arms matched: an error if the key
/// is invalid or names one of the message's fields (`1..=known`) with another wire type,
/// else an unknown field, skipped. Returns what follows it.
#[cold]
#[inline(never)]
fn other_field(
    rest: &[u8],
    tag: u32,
    known: u32,
    depth: u32,
    at: usize,
) -> Result<&[u8], ScanError> {
    let (field, wire_type) = split_tag(tag, at)?;
    if field <= known {
        return Err(error(
            at,
            ScanErrorKind::InvalidWireType { field, wire_type },
        ));
    }
    skip_value(rest, field, wire_type, depth, at)
}

/// Merges one `Status` occurrence into the span (present fields override).
fn merge_status<'a>(mut c: Cursor<'a>, s: &mut SpanView<'a>) -> Result<(), ScanError> {
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            2 => {
                c.want(field, wt, WT_LEN, at)?;
                s.status_message = c.bytes()?;
            }
            3 => {
                c.want(field, wt, WT_VARINT, at)?;
                s.status_code = c.varint()? as i32;
            }
            _ => c.skip(field, wt, DEPTH_STATUS, at)?,
        }
    }
    Ok(())
}

/// Parses (and thereby validates) one `KeyValue`; `depth` is its recursion budget.
#[inline(always)]
fn parse_key_value(c: Cursor<'_>, depth: u32) -> Result<(&[u8], AnyValueRef<'_>), ScanError> {
    match key_value_fast(c.rest) {
        Some(kv) => Ok(kv),
        None => parse_key_value_slow(c, depth),
    }
}

/// The `KeyValue` shape SDKs write, read without a field loop: the key (field 1), then the
/// value (field 2) holding one string, bool, int or double variant (or none), every length
/// in one byte. `None` for anything else, which [`parse_key_value_slow`] then reads; for the
/// shapes it accepts, the result is the one the general path gives.
#[inline(always)]
fn key_value_fast(kv: &[u8]) -> Option<(&[u8], AnyValueRef<'_>)> {
    let [0x0a, klen, ref rest @ ..] = *kv else {
        return None;
    };
    if klen >= 0x80 {
        return None;
    }
    let (key, rest) = rest.split_at_checked(usize::from(klen))?;
    let [0x12, vlen, ref any @ ..] = *rest else {
        return None;
    };
    if vlen >= 0x80 || usize::from(vlen) != any.len() {
        return None;
    }
    let value = match *any {
        [] => AnyValueRef::Empty,
        [0x0a, slen, ref s @ ..] if slen < 0x80 && usize::from(slen) == s.len() => {
            AnyValueRef::Str(s)
        }
        [0x10, b] if b < 0x80 => AnyValueRef::Bool(b != 0),
        [0x18, b] if b < 0x80 => AnyValueRef::Int(i64::from(b)),
        [0x18, b0, b1] if b0 >= 0x80 && b1 < 0x80 => {
            AnyValueRef::Int(i64::from(b0 & 0x7f) | (i64::from(b1) << 7))
        }
        [0x21, b0, b1, b2, b3, b4, b5, b6, b7] => {
            AnyValueRef::Double(f64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]))
        }
        _ => return None,
    };
    Some((key, value))
}

/// [`parse_key_value`] for any encoding prost accepts, and the errors for what it refuses.
#[inline(never)]
fn parse_key_value_slow(
    mut c: Cursor<'_>,
    depth: u32,
) -> Result<(&[u8], AnyValueRef<'_>), ScanError> {
    let mut key: &[u8] = &[];
    let mut value = AnyValueRef::Empty;
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.want(field, wt, WT_LEN, at)?;
                key = c.bytes()?;
            }
            2 => {
                c.want(field, wt, WT_LEN, at)?;
                let any = c.sub()?;
                merge_any_value(any, depth.saturating_sub(1), &mut value)?;
            }
            3 => {
                c.want(field, wt, WT_VARINT, at)?;
                c.varint()?;
            }
            _ => c.skip(field, wt, depth, at)?,
        }
    }
    Ok((key, value))
}

/// Merges one `AnyValue` occurrence into `value` (the last variant set wins).
#[inline]
fn merge_any_value<'a>(
    mut c: Cursor<'a>,
    depth: u32,
    value: &mut AnyValueRef<'a>,
) -> Result<(), ScanError> {
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            1 => {
                c.want(field, wt, WT_LEN, at)?;
                *value = AnyValueRef::Str(c.bytes()?);
            }
            2 => {
                c.want(field, wt, WT_VARINT, at)?;
                *value = AnyValueRef::Bool(c.varint()? != 0);
            }
            3 => {
                c.want(field, wt, WT_VARINT, at)?;
                *value = AnyValueRef::Int(c.varint()? as i64);
            }
            4 => {
                c.want(field, wt, WT_I64, at)?;
                *value = AnyValueRef::Double(f64::from_bits(c.fixed64()?));
            }
            5 => {
                c.want(field, wt, WT_LEN, at)?;
                *value = AnyValueRef::Array(c.bytes()?);
            }
            6 => {
                c.want(field, wt, WT_LEN, at)?;
                *value = AnyValueRef::KvList(c.bytes()?);
            }
            7 => {
                c.want(field, wt, WT_LEN, at)?;
                *value = AnyValueRef::Bytes(c.bytes()?);
            }
            8 => {
                // string_value_strindex: profiling only, treated as unset.
                c.want(field, wt, WT_VARINT, at)?;
                c.varint()?;
                *value = AnyValueRef::Empty;
            }
            _ => c.skip(field, wt, depth, at)?,
        }
    }
    Ok(())
}

/// Counts the items of a metrics or logs request by walking the wire format, without
/// building any object tree: memory use is independent of the request. Every message on the
/// path to the items is validated as prost would (wire types, lengths); the items' own
/// contents are skipped.
fn count_items(
    mut c: Cursor<'_>,
    path: &[u32],
    leaf: &dyn Fn(Cursor<'_>) -> Result<u64, ScanError>,
    depth: u32,
) -> Result<u64, ScanError> {
    let Some((&field_here, rest)) = path.split_first() else {
        return leaf(c);
    };
    let mut n = 0u64;
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        if field == field_here {
            c.want(field, wt, WT_LEN, at)?;
            let sub = c.sub()?;
            n = n.saturating_add(count_items(sub, rest, leaf, depth.saturating_sub(1))?);
        } else {
            c.skip(field, wt, depth, at)?;
        }
    }
    Ok(n)
}

/// Data points of one `Metric`: the `data_points` of whichever of gauge (5), sum (7),
/// histogram (9), exponential histogram (10) or summary (11) it holds. As in prost, a later
/// oneof field replaces an earlier one, and repeated occurrences of the same one merge.
fn metric_points(mut c: Cursor<'_>) -> Result<u64, ScanError> {
    let (mut current, mut n) = (0u32, 0u64);
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        match field {
            5 | 7 | 9 | 10 | 11 => {
                c.want(field, wt, WT_LEN, at)?;
                let data = c.sub()?;
                let points = count_items(data, &[1], &|_| Ok(1), DEPTH_REQUEST - 4)?;
                if field == current {
                    n = n.saturating_add(points);
                } else {
                    (current, n) = (field, points);
                }
            }
            _ => c.skip(field, wt, DEPTH_REQUEST - 3, at)?,
        }
    }
    Ok(n)
}

/// Walks a metrics or logs request per resource: for each `ResourceMetrics` /
/// `ResourceLogs`, reports its resource attributes and its item count (data points or log
/// records) to `sink`. Returns the total. Validation as [`count_metric_points`].
fn items_by_resource<'a>(
    buf: &'a [u8],
    leaf: &dyn Fn(Cursor<'_>) -> Result<u64, ScanError>,
    sink: &mut dyn FnMut(AttrsRef<'a>, u64),
) -> Result<u64, ScanError> {
    from_request(buf, |c| items_by_resource_in(c, leaf, sink))
}

fn items_by_resource_in<'a>(
    mut c: Cursor<'a>,
    leaf: &dyn Fn(Cursor<'_>) -> Result<u64, ScanError>,
    sink: &mut dyn FnMut(AttrsRef<'a>, u64),
) -> Result<u64, ScanError> {
    let mut total = 0u64;
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        if field != 1 {
            c.skip(field, wt, DEPTH_REQUEST, at)?;
            continue;
        }
        c.want(field, wt, WT_LEN, at)?;
        let mut r = c.sub()?;
        let mut attrs = AttrsRef::empty();
        let mut items = 0u64;
        while r.has_more() {
            let at = r.at();
            let (field, wt) = r.key()?;
            match field {
                1 => {
                    r.want(field, wt, WT_LEN, at)?;
                    let (n, range) = scan_resource(r.sub()?)?;
                    if attrs.is_empty() {
                        attrs = AttrsRef::flat(range, 1, n);
                    }
                }
                2 => {
                    r.want(field, wt, WT_LEN, at)?;
                    let scope = r.sub()?;
                    items =
                        items.saturating_add(count_items(scope, &[2], leaf, DEPTH_RESOURCE_SPANS)?);
                }
                _ => r.skip(field, wt, DEPTH_RESOURCE_SPANS, at)?,
            }
        }
        sink(attrs, items);
        total = total.saturating_add(items);
    }
    Ok(total)
}

/// Data points per resource of an `ExportMetricsServiceRequest`; see [`items_by_resource`].
pub fn metric_points_by_resource<'a>(
    buf: &'a [u8],
    sink: &mut dyn FnMut(AttrsRef<'a>, u64),
) -> Result<u64, ScanError> {
    items_by_resource(buf, &metric_points, sink)
}

/// Log records per resource of an `ExportLogsServiceRequest`; see [`items_by_resource`].
pub fn log_records_by_resource<'a>(
    buf: &'a [u8],
    sink: &mut dyn FnMut(AttrsRef<'a>, u64),
) -> Result<u64, ScanError> {
    items_by_resource(buf, &|_| Ok(1), sink)
}

/// Calls `f` with each occurrence of length-delimited field `field` of the message under
/// `c`, validating it and skipping every other field.
fn each_sub<'a>(
    mut c: Cursor<'a>,
    field: u32,
    depth: u32,
    f: &mut dyn FnMut(Cursor<'a>) -> Result<(), ScanError>,
) -> Result<(), ScanError> {
    while c.has_more() {
        let at = c.at();
        let (got, wt) = c.key()?;
        if got == field {
            c.want(got, wt, WT_LEN, at)?;
            f(c.sub()?)?;
        } else {
            c.skip(got, wt, depth, at)?;
        }
    }
    Ok(())
}

/// The attributes of the first `resource` (field 1) of a `ResourceMetrics`/`ResourceLogs`.
fn first_resource(rm: Cursor<'_>) -> Result<AttrsRef<'_>, ScanError> {
    let mut resource = AttrsRef::empty();
    each_sub(rm, 1, DEPTH_RESOURCE_SPANS, &mut |r| {
        let (n, range) = scan_resource(r)?;
        if resource.is_empty() {
            resource = AttrsRef::flat(range, 1, n);
        }
        Ok(())
    })?;
    Ok(resource)
}

/// Metrics whose data points count server requests, by semantic convention.
pub const REQUEST_METRICS: [&[u8]; 3] = [
    b"http.server.request.duration",
    b"http.server.duration",
    b"rpc.server.duration",
];

/// One data point of a request-duration histogram.
#[derive(Clone, Copy, Debug)]
pub struct RequestPoint<'a> {
    /// The metric's name (one of [`REQUEST_METRICS`]).
    pub metric: &'a [u8],
    /// The data point's attributes.
    pub attributes: AttrsRef<'a>,
    /// `AggregationTemporality`: 1 delta, 2 cumulative.
    pub temporality: i32,
    /// Start of the point's aggregation period, Unix nanoseconds.
    pub start_time_unix_nano: u64,
    /// Number of requests the point counts.
    pub count: u64,
}

/// Walks an `ExportMetricsServiceRequest` and reports every data point of the request
/// metrics ([`REQUEST_METRICS`], histogram or exponential histogram) with its resource's
/// attributes. Everything on the way is validated; other metrics are skipped.
pub fn scan_request_points<'a>(
    buf: &'a [u8],
    sink: &mut dyn FnMut(AttrsRef<'a>, RequestPoint<'a>),
) -> Result<(), ScanError> {
    from_request(buf, |c| {
        each_sub(c, 1, DEPTH_REQUEST, &mut |rm| {
            let resource = first_resource(rm)?;
            each_sub(rm, 2, DEPTH_RESOURCE_SPANS, &mut |scope| {
                each_sub(scope, 2, DEPTH_SCOPE_SPANS, &mut |metric| {
                    request_metric(metric, resource, sink)
                })
            })
        })
    })
}

/// One `Metric`: if it is a request metric, reports its histogram points.
fn request_metric<'a>(
    m: Cursor<'a>,
    resource: AttrsRef<'a>,
    sink: &mut dyn FnMut(AttrsRef<'a>, RequestPoint<'a>),
) -> Result<(), ScanError> {
    let mut c = m;
    let mut name: &[u8] = &[];
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        if field == 1 {
            c.want(field, wt, WT_LEN, at)?;
            name = c.bytes()?;
        } else {
            c.skip(field, wt, DEPTH_SPAN, at)?;
        }
    }
    let Some(&metric) = REQUEST_METRICS.iter().find(|m| **m == name) else {
        return Ok(());
    };
    let mut c = m;
    while c.has_more() {
        let at = c.at();
        let (field, wt) = c.key()?;
        // Histogram (9): points' attributes are field 9; exponential histogram (10): 1.
        let attr_field = match field {
            9 => 9,
            10 => 1,
            _ => {
                c.skip(field, wt, DEPTH_SPAN, at)?;
                continue;
            }
        };
        c.want(field, wt, WT_LEN, at)?;
        let hist = c.sub()?;
        let mut h = hist;
        let mut temporality = 0i32;
        while h.has_more() {
            let at = h.at();
            let (field, wt) = h.key()?;
            if field == 2 {
                h.want(field, wt, WT_VARINT, at)?;
                temporality = h.varint()? as i32;
            } else {
                h.skip(field, wt, DEPTH_STATUS, at)?;
            }
        }
        let mut h = hist;
        while h.has_more() {
            let at = h.at();
            let (field, wt) = h.key()?;
            if field != 1 {
                h.skip(field, wt, DEPTH_STATUS, at)?;
                continue;
            }
            h.want(field, wt, WT_LEN, at)?;
            let mut p = h.sub()?;
            let point_buf = p.rest;
            let (mut start, mut count, mut flags) = (0u64, 0u64, 0u64);
            let (mut first, mut last, mut n) = (0usize, 0usize, 0usize);
            while p.has_more() {
                let left = p.left();
                let at = p.at();
                let (f, wt) = p.key()?;
                if f == attr_field {
                    p.want(f, wt, WT_LEN, at)?;
                    parse_key_value(p.sub()?, DEPTH_STATUS - 1)?;
                    if n == 0 {
                        first = left;
                    }
                    last = p.left();
                    n += 1;
                } else if f == 2 {
                    p.want(f, wt, WT_I64, at)?;
                    start = p.fixed64()?;
                } else if f == 4 {
                    p.want(f, wt, WT_I64, at)?;
                    count = p.fixed64()?;
                } else if f == 10 {
                    p.want(f, wt, WT_VARINT, at)?;
                    flags = p.varint()?;
                } else {
                    p.skip(f, wt, DEPTH_STATUS - 1, at)?;
                }
            }
            // DATA_POINT_FLAGS_NO_RECORDED_VALUE: a staleness marker, not a count.
            if flags & 1 != 0 {
                continue;
            }
            let attributes = AttrsRef::flat(between(point_buf, first, last), attr_field, n);
            sink(
                resource,
                RequestPoint {
                    metric,
                    attributes,
                    temporality,
                    start_time_unix_nano: start,
                    count,
                },
            );
        }
    }
    Ok(())
}

/// Number of data points in an `ExportMetricsServiceRequest`
/// (`resource_metrics` → `scope_metrics` → `metrics` → data → `data_points`).
pub fn count_metric_points(buf: &[u8]) -> Result<u64, ScanError> {
    from_request(buf, |c| {
        count_items(c, &[1, 2, 2], &metric_points, DEPTH_REQUEST)
    })
}

/// Number of log records in an `ExportLogsServiceRequest`
/// (`resource_logs` → `scope_logs` → `log_records`).
pub fn count_log_records(buf: &[u8]) -> Result<u64, ScanError> {
    from_request(buf, |c| {
        count_items(c, &[1, 2, 2], &|_| Ok(1), DEPTH_REQUEST)
    })
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
