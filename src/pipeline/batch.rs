//! Turning one scanned trace request into per-shard batches: the scanner's sink.
//!
//! Each entry span is classified, its series key is written into the batch of the shard that
//! owns the key (`hash % shards`), and invalid spans are counted for `partial_success`.
//! Nothing is sent from here; the caller sends the batches only after the whole request
//! scanned cleanly, so a malformed request never counts partially.

use crate::completeness::spans::{SpanLink, TraceSpans};
use crate::completeness::traces::parent_is_remote;
use crate::otlp::scan::{AnyValueRef, ResourceView, ScanError, SpanSink, SpanView};
use crate::sli::classify::{
    render, Classifier, Observation, Reject, ResourceValues, SpanIds, Verdict,
};
use crate::sli::flag::{self, FlagEval, FlagRules};
use crate::sli::key;
use hashbrown::HashTable;

/// Most series-key bytes one request may produce (after de-duplication). Only a request
/// built to explode (thousands of distinct multi-kilobyte labels) gets near it; it is then
/// refused as too large rather than allowed to take gigabytes.
pub const MAX_KEY_BYTES_PER_REQUEST: usize = 64 << 20;

/// One observation waiting for its shard.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    /// Hash of the series key.
    pub hash: u64,
    /// Start of the key in [`Batch::keys`].
    pub key_start: u32,
    /// Length of the key.
    pub key_len: u32,
    /// The observation.
    pub obs: Observation,
    /// The span's ids (for the series' example requests).
    pub ids: SpanIds,
}

pub use crate::completeness::{EventKind, Observed, ServiceEvent};

/// Observations for one shard from one request.
#[derive(Debug, Default)]
pub struct Batch {
    /// Concatenated series keys of the items.
    pub keys: Vec<u8>,
    /// The observations.
    pub items: Vec<Item>,
    /// Spans of the traces this shard tracks (routed by trace id, not series key), their
    /// services indexing `services`.
    pub spans: TraceSpans,
    /// Service names the spans and signals refer to.
    pub services: Vec<Box<str>>,
    /// Per-service events: metrics and logs reported, invalid spans.
    pub signals: Vec<ServiceEvent>,
    /// Request-metric data points, keyed like `items` (their keys are in `keys`).
    pub metric_points: Vec<MetricItem>,
    /// Concatenated flag series keys of `flags`.
    pub flag_keys: Vec<u8>,
    /// Requests under a flag variant, for the shard owning the (service, flag).
    pub flags: Vec<FlagItem>,
}

/// One request under one variant of one flag: its observation for the flag series
/// (service, feature, flag, variant) whose key is in [`Batch::flag_keys`].
#[derive(Clone, Copy, Debug)]
pub struct FlagItem {
    /// Hash of the flag series key.
    pub hash: u64,
    /// Start of the key in [`Batch::flag_keys`].
    pub key_start: u32,
    /// Length of the key.
    pub key_len: u32,
    /// The request's observation.
    pub obs: Observation,
    /// The request's ids.
    pub ids: SpanIds,
}

/// A request-metric data point for the series that owns its key.
#[derive(Clone, Copy, Debug)]
pub struct MetricItem {
    /// Hash of the series key.
    pub hash: u64,
    /// Start of the key in [`Batch::keys`].
    pub key_start: u32,
    /// Length of the key.
    pub key_len: u32,
    /// The point.
    pub point: crate::sli::series::MetricPoint,
}

impl Batch {
    /// Empties the batch, keeping its memory.
    pub fn clear(&mut self) {
        // Every field named: a new one must be cleared too, or a reused batch would carry
        // one request's data into another.
        let Batch {
            keys,
            items,
            spans,
            services,
            signals,
            metric_points,
            flag_keys,
            flags,
        } = self;
        keys.clear();
        items.clear();
        spans.clear();
        services.clear();
        signals.clear();
        metric_points.clear();
        flag_keys.clear();
        flags.clear();
    }

    /// Bytes of memory the batch holds (its vectors' capacity and the service names).
    pub fn capacity_bytes(&self) -> usize {
        use std::mem::size_of;
        self.keys.capacity()
            + self.items.capacity() * size_of::<Item>()
            + self.spans.capacity_bytes()
            + self.services.capacity() * size_of::<Box<str>>()
            + self.services.iter().map(|s| s.len()).sum::<usize>()
            + self.signals.capacity() * size_of::<ServiceEvent>()
            + self.metric_points.capacity() * size_of::<MetricItem>()
            + self.flag_keys.capacity()
            + self.flags.capacity() * size_of::<FlagItem>()
    }

    /// What completeness tracking observes of the batch.
    pub fn observed(&self) -> Observed<'_> {
        Observed {
            services: &self.services,
            signals: &self.signals,
            spans: &self.spans,
        }
    }

    /// True when the batch carries nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
            && self.spans.is_empty()
            && self.signals.is_empty()
            && self.metric_points.is_empty()
            && self.flags.is_empty()
    }

    /// The flag series key of `item`.
    #[inline]
    pub fn flag_key(&self, item: &FlagItem) -> &[u8] {
        let start = item.key_start as usize;
        self.flag_keys
            .get(start..start + item.key_len as usize)
            .unwrap_or(&[])
    }
}

impl Batch {
    /// The key of `item`.
    #[inline]
    pub fn key(&self, item: &Item) -> &[u8] {
        self.key_at(item.key_start, item.key_len)
    }

    /// The key stored at `start..start + len`.
    #[inline]
    pub fn key_at(&self, start: u32, len: u32) -> &[u8] {
        let start = start as usize;
        self.keys.get(start..start + len as usize).unwrap_or(&[])
    }

    /// Adds `service` (its name cut to what completeness keeps) to the services the
    /// batch's spans and events refer to, and returns its index.
    fn add_service(&mut self, service: &str) -> u32 {
        let name = key::truncated(service, crate::completeness::MAX_SERVICE_NAME_BYTES);
        self.services.push(name.into());
        (self.services.len() - 1) as u32
    }
}

/// What a request contained, for the response and self-telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Spans in the request.
    pub spans: u64,
    /// Spans rejected because of an invalid trace id.
    pub bad_trace_id: u64,
    /// Spans rejected because of an invalid span id.
    pub bad_span_id: u64,
    /// Entry spans turned into observations.
    pub entries: u64,
    /// Entry spans whose end was before their start.
    pub invalid_durations: u64,
    /// Flag evaluations that count toward a request (one per request and flag).
    pub flag_evaluations: u64,
    /// Flag evaluations naming neither a variant nor a value: no cohort to count them in.
    pub flag_no_variant: u64,
    /// Flag evaluations on other spans than the entry span, whose entry span was not in
    /// the same export request.
    pub flag_unattributed: u64,
    /// Flag evaluations of keys outside `flags.keys`.
    pub flag_not_listed: u64,
    /// Flag evaluations beyond [`MAX_FLAGS_PER_REQUEST`] for one request, or beyond the
    /// request's budget of flag observations (two per span).
    pub flag_over_limit: u64,
}

impl Tally {
    /// Spans rejected for any reason.
    pub fn rejected(&self) -> u64 {
        self.bad_trace_id + self.bad_span_id
    }

    /// The `partial_success.error_message`, or `None` when nothing was rejected.
    pub fn error_message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.bad_trace_id > 0 {
            parts.push(format!(
                "{} rejected: {}",
                crate::text::counted(self.bad_trace_id, "span", "spans"),
                Reject::TraceId.message()
            ));
        }
        if self.bad_span_id > 0 {
            parts.push(format!(
                "{} rejected: {}",
                crate::text::counted(self.bad_span_id, "span", "spans"),
                Reject::SpanId.message()
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The scanner sink that builds per-shard batches.
pub struct Collector<'a, 'c> {
    classifier: &'c Classifier,
    resource: Option<ResourceValues<'a>>,
    scratch: Vec<u8>,
    /// Keys already in a batch, as (hash, start, len): each distinct key is stored once.
    seen: HashTable<(u64, u32, u32)>,
    key_bytes: usize,
    key_limit: usize,
    /// The request produced more than [`MAX_KEY_BYTES_PER_REQUEST`] of keys.
    pub too_large: bool,
    /// Collect spans for the trace tracker.
    track_traces: bool,
    /// Per shard: index of the current resource's service in that batch's `services`.
    service_index: Vec<Option<u32>>,
    /// Invalid spans of the current resource so far: ids, durations, clock skew.
    invalid: [u64; 3],
    /// Arrival time and allowed skew for the clock-skew check, Unix nanoseconds.
    now: u64,
    max_skew: u64,
    /// One batch per shard.
    pub batches: Vec<Batch>,
    /// Counts for the response.
    pub tally: Tally,
    /// Which flag evaluations to read; `None`: none.
    flag_rules: Option<&'c FlagRules>,
    /// The flag evaluations of the current span.
    evals: Vec<FlagEval<'a>>,
    /// Entry spans' own evaluations, waiting for the end of the request.
    entry_evals: Vec<(EntryRef, FlagEval<'a>)>,
    /// Evaluations on other spans, waiting for the end of the request: each counts toward
    /// the entry spans of its (trace, service label) in the request.
    child_evals: Vec<(u128, &'a str, FlagEval<'a>)>,
    /// Flag keys already in a batch, as (hash, start, len).
    flag_seen: HashTable<(u64, u32, u32)>,
    /// Entry spans the request is expected to hold ([`Collector::with_size_hint`]).
    entries_hint: usize,
    /// The last tracked span's trace, while its group is the last of its shard's batch and
    /// the resource has not changed: a trace's spans come one after another, so its id is
    /// hashed and its service looked up once.
    last_trace: Option<LastTrace>,
}

/// See [`Collector::last_trace`].
#[derive(Clone, Copy, Debug)]
struct LastTrace {
    id: u128,
    shard: usize,
    service: u32,
}

/// An entry span of the request: where its item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EntryRef {
    shard: u32,
    item: u32,
}

/// Most flags one request counts under (its entry span's own and its children's
/// evaluations together); further ones are counted in [`Tally::flag_over_limit`].
pub const MAX_FLAGS_PER_REQUEST: usize = 64;

/// Flag observations one export request may make per span it holds (but at least
/// [`MAX_FLAGS_PER_REQUEST`]); further ones are counted in [`Tally::flag_over_limit`].
pub const FLAG_OBSERVATIONS_PER_SPAN: usize = 2;

impl<'a, 'c> Collector<'a, 'c> {
    /// A collector for `shards` shards.
    pub fn new(classifier: &'c Classifier, shards: usize) -> Self {
        Self {
            classifier,
            resource: None,
            scratch: Vec::with_capacity(128),
            seen: HashTable::with_capacity(64),
            key_bytes: 0,
            key_limit: MAX_KEY_BYTES_PER_REQUEST,
            too_large: false,
            track_traces: false,
            service_index: vec![None; shards.max(1)],
            invalid: [0; 3],
            now: 0,
            max_skew: u64::MAX,
            batches: (0..shards.max(1)).map(|_| Batch::default()).collect(),
            tally: Tally::default(),
            flag_rules: None,
            evals: Vec::new(),
            entry_evals: Vec::new(),
            child_evals: Vec::new(),
            flag_seen: HashTable::new(),
            entries_hint: 16,
            last_trace: None,
        }
    }

    /// Fills batches taken from `pool` (emptied, with the memory of earlier requests)
    /// rather than new ones.
    pub fn with_pool(mut self, pool: &super::pool::BatchPool) -> Self {
        for b in &mut self.batches {
            *b = pool.take();
        }
        self
    }

    /// Also reads entry spans' feature-flag evaluations by `rules` (and, by
    /// [`FlagRules::child_spans`], those of the request's other spans); the classifier must
    /// read flags too.
    pub fn with_flags(mut self, rules: Option<&'c FlagRules>) -> Self {
        self.flag_rules = rules;
        self
    }
}

impl<'a> Collector<'a, '_> {
    /// The current resource's `service.name` (as the classifier read it).
    fn resource_service(&self) -> &'a str {
        self.resource
            .as_ref()
            .map_or("unknown_service", |r| r.service())
    }
}

impl Collector<'_, '_> {
    /// Also collects every valid span for trace-structure tracking, and per-service
    /// counts of invalid spans; spans whose end time is more than `max_skew` nanoseconds
    /// from `now` count as clock-skewed.
    pub fn with_traces(mut self, on: bool, now: u64, max_skew: u64) -> Self {
        self.track_traces = on;
        self.now = now;
        self.max_skew = max_skew;
        self
    }

    /// Queues the current resource's invalid-span counts for the shard owning its service.
    /// Call after the last span of each resource; [`SpanSink::resource`] and
    /// [`Collector::finish`] do.
    fn flush_invalid(&mut self) {
        if self.invalid == [0; 3] {
            return;
        }
        let counts = std::mem::take(&mut self.invalid);
        let service = self.resource_service();
        let shard = shard_of(key::hash_key(service.as_bytes()), self.batches.len());
        let Some(batch) = self.batches.get_mut(shard) else {
            return;
        };
        let index = batch.add_service(service);
        let kinds = [
            EventKind::InvalidIds,
            EventKind::InvalidDurations,
            EventKind::ClockSkew,
        ];
        for (kind, items) in kinds.into_iter().zip(counts) {
            if items > 0 {
                batch.signals.push(ServiceEvent {
                    service: index,
                    kind,
                    items,
                });
            }
        }
        // The service list changed under the cached indices of this shard.
        if let Some(i) = self.service_index.get_mut(shard) {
            *i = None;
        }
        self.last_trace = None;
    }

    /// Completes the request: flushes what the last resource left, and queues the
    /// requests' flag evaluations.
    pub fn finish(&mut self) {
        if self.track_traces {
            self.flush_invalid();
        }
        if !self.entry_evals.is_empty() || !self.child_evals.is_empty() {
            self.finish_flags();
        }
    }

    /// Turns the request's flag evaluations into flag items: one per request and flag (by
    /// the flag label as written), the entry span's own evaluations first, then those of
    /// the other spans of its trace and service in wire order; at most
    /// [`MAX_FLAGS_PER_REQUEST`] per request and two per span of the export request.
    fn finish_flags(&mut self) {
        // The entry spans' own evaluations first, in wire order.
        let mut resolved = std::mem::take(&mut self.entry_evals);
        // Other spans' evaluations: the first per (trace, service, flag) is all that can
        // count, so a trace cannot multiply them.
        let mut children = std::mem::take(&mut self.child_evals);
        fn key<'e>(c: &(u128, &'e str, FlagEval<'e>)) -> (u128, &'e str, &'e [u8]) {
            (c.0, c.1, c.2.key)
        }
        // Stable, so the first of each in wire order is the one kept.
        children.sort_by_key(key);
        children.dedup_by(|a, b| key(a) == key(b));
        // The entry spans of those traces, found among the request's items (rare: most
        // evaluations are on entry spans).
        let mut by_trace: hashbrown::HashMap<u128, Vec<EntryRef>> =
            children.iter().map(|(t, _, _)| (*t, Vec::new())).collect();
        if !by_trace.is_empty() {
            for (shard, b) in self.batches.iter().enumerate() {
                for (item, i) in b.items.iter().enumerate() {
                    let trace = u128::from_be_bytes(i.ids.trace_id);
                    if let Some(list) = by_trace.get_mut(&trace) {
                        list.push(EntryRef {
                            shard: shard as u32,
                            item: item as u32,
                        });
                    }
                }
            }
        }
        let budget =
            (FLAG_OBSERVATIONS_PER_SPAN * self.tally.spans as usize).max(MAX_FLAGS_PER_REQUEST);
        for (trace, service, eval) in children {
            let of_service = |e: &&EntryRef| {
                self.batches
                    .get(e.shard as usize)
                    .and_then(|b| b.items.get(e.item as usize).map(|i| b.key(i)))
                    .is_some_and(|k| key::labels(k).next() == Some(service))
            };
            if resolved.len() >= budget {
                self.tally.flag_over_limit += 1;
                continue;
            }
            let before = resolved.len();
            let entries = by_trace
                .get(&trace)
                .into_iter()
                .flatten()
                .filter(of_service);
            resolved.extend(entries.take(budget - before).map(|e| (*e, eval)));
            if resolved.len() == before {
                self.tally.flag_unattributed += 1;
            }
        }
        // A request's evaluations side by side, its own first (a stable sort).
        if !by_trace.is_empty() {
            resolved.sort_by_key(|(e, _)| *e);
        }
        let max = self.classifier.config().max_label_bytes;
        let mut route = Vec::with_capacity(64);
        let mut buf = Vec::with_capacity(128);
        // The flag labels written for the current request, to count each flag once.
        let mut written: Vec<(usize, usize)> = Vec::with_capacity(8);
        let mut current: Option<EntryRef> = None;
        let mut counted = 0usize;
        let per_shard = resolved.len().min(budget) / self.batches.len().max(1) + 8;
        self.flag_seen
            .reserve(resolved.len().min(1024), |&(h, _, _)| h);
        for b in &mut self.batches {
            b.flags.reserve(per_shard);
            b.flag_keys.reserve(per_shard.min(64) * 64);
        }
        let mut labels: Vec<u8> = Vec::with_capacity(256);
        for (e, eval) in resolved {
            if current != Some(e) {
                current = Some(e);
                written.clear();
                labels.clear();
            }
            let Some(variant) = eval.variant else {
                continue;
            };
            // The flag label encoded as the series key holds it (cut, invalid UTF-8
            // replaced): two labels are equal when their encodings are.
            let start = labels.len();
            let v = key::begin_label(&mut labels);
            render(AnyValueRef::Str(eval.key), &mut labels);
            key::finish_label(&mut labels, v, max);
            let label = &labels[start..];
            if written
                .iter()
                .any(|&(s, l)| labels.get(s..s + l) == Some(label))
            {
                labels.truncate(start);
                continue;
            }
            if written.len() >= MAX_FLAGS_PER_REQUEST || counted >= budget {
                self.tally.flag_over_limit += 1;
                labels.truncate(start);
                continue;
            }
            written.push((start, labels.len() - start));
            let Some(item) = self
                .batches
                .get(e.shard as usize)
                .and_then(|b| b.items.get(e.item as usize).map(|i| (*i, b.key(i))))
                .map(|(item, key)| {
                    buf.clear();
                    buf.extend_from_slice(key.get(..service_feature_len(key)).unwrap_or(key));
                    item
                })
            else {
                continue;
            };
            // Routed by (service, flag), so one shard sees every variant of a flag.
            route.clear();
            route.extend_from_slice(buf.get(..service_len(&buf)).unwrap_or(&[]));
            let label = labels.get(start..).unwrap_or_default();
            route.extend_from_slice(label);
            buf.extend_from_slice(label);
            let v = key::begin_label(&mut buf);
            render(variant, &mut buf);
            key::finish_label(&mut buf, v, max);
            counted += 1;
            self.push_flag(&route, &buf, item);
        }
    }

    /// Queues a flag item with key `key` for the shard owning `route`.
    fn push_flag(&mut self, route: &[u8], key_bytes: &[u8], item: Item) {
        let shard = shard_of(key::hash_key(route), self.batches.len());
        let hash = key::hash_key(key_bytes);
        let Some(batch) = self.batches.get_mut(shard) else {
            return;
        };
        let budget = (&mut self.key_bytes, self.key_limit);
        let Some((key_start, key_len)) = store_key(
            &mut self.flag_seen,
            &mut batch.flag_keys,
            hash,
            key_bytes,
            budget,
        ) else {
            self.too_large = true;
            return;
        };
        self.tally.flag_evaluations += 1;
        batch.flags.push(FlagItem {
            hash,
            key_start,
            key_len,
            obs: item.obs,
            ids: item.ids,
        });
    }

    /// Sizes the batches for a request of `bytes` bytes, so they do not grow (and copy
    /// themselves) span by span: room for a span every [`BYTES_PER_SPAN_HINT`] bytes, spread
    /// over the shards, and for an entry span in four. A request of larger spans leaves
    /// room unused until the batches are dropped; one of smaller spans grows as before.
    pub fn with_size_hint(mut self, bytes: usize) -> Self {
        let shards = self.batches.len().max(1);
        let spans = (bytes / BYTES_PER_SPAN_HINT).min(MAX_SPANS_HINT) / shards + 8;
        self.entries_hint = spans * shards / 4;
        for b in &mut self.batches {
            if self.track_traces {
                b.spans.reserve(spans);
            }
            b.items.reserve(spans / 4);
        }
        self
    }

    /// Lowers the key-bytes limit (at most [`MAX_KEY_BYTES_PER_REQUEST`]).
    pub fn with_key_limit(mut self, bytes: usize) -> Self {
        self.key_limit = bytes.min(MAX_KEY_BYTES_PER_REQUEST);
        self
    }
}

/// Where `key` (hash `hash`) is in `keys`, storing it there the first time: each distinct
/// key is stored once per request. `None` when storing it would take the request's key
/// bytes (`used`, counted here) past `limit`.
#[inline(always)]
fn store_key(
    seen: &mut HashTable<(u64, u32, u32)>,
    keys: &mut Vec<u8>,
    hash: u64,
    key: &[u8],
    (used, limit): (&mut usize, usize),
) -> Option<(u32, u32)> {
    let found = seen.find(hash, |&(h, start, len)| {
        h == hash && keys.get(start as usize..(start + len) as usize) == Some(key)
    });
    if let Some(&(_, start, len)) = found {
        return Some((start, len));
    }
    *used += key.len();
    if *used > limit {
        return None;
    }
    // Both fit in u32: a batch holds at most MAX_KEY_BYTES_PER_REQUEST.
    let start = keys.len() as u32;
    let len = key.len() as u32;
    keys.extend_from_slice(key);
    seen.insert_unique(hash, (hash, start, len), |&(h, _, _)| h);
    Some((start, len))
}

/// Drops the evaluations that cannot count (no variant, a key outside `flags.keys`) from
/// `evals`, counting them.
fn keep_usable(evals: &mut Vec<FlagEval<'_>>, rules: &FlagRules, tally: &mut Tally) {
    evals.retain(|e| {
        if e.variant.is_none() {
            tally.flag_no_variant += 1;
            false
        } else if !rules.allows(e.key) {
            tally.flag_not_listed += 1;
            false
        } else {
            true
        }
    });
}

/// Bytes of the first label (the service) of an encoded key.
fn service_len(key: &[u8]) -> usize {
    label_end(key, 0)
}

/// Bytes of the first two labels (service and feature) of an encoded series key.
fn service_feature_len(key: &[u8]) -> usize {
    label_end(key, label_end(key, 0))
}

/// Where the label starting at `at` of an encoded key ends.
fn label_end(key: &[u8], at: usize) -> usize {
    match key.get(at..at + 2) {
        Some(&[a, b]) => (at + 2 + usize::from(u16::from_le_bytes([a, b]))).min(key.len()),
        _ => key.len(),
    }
}

/// Bytes of request per span assumed when sizing batches ([`Collector::with_size_hint`]):
/// small for a span with a few attributes, so most requests need no growth.
pub const BYTES_PER_SPAN_HINT: usize = 128;

/// Spans reserved for at most, however large the request (a request's batches grow past it
/// as needed).
const MAX_SPANS_HINT: usize = 1 << 16;

/// The shard that owns a key hash.
///
/// Uses hash bits 24..56 (multiply-shift, no division). The shard's `hashbrown` table uses the
/// low bits for the bucket and the top 7 bits as its tag; were the shard picked from either,
/// every key in a shard would share them, wasting buckets or tag bits.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    ((u64::from((hash >> 24) as u32) * shards as u64) >> 32) as usize
}

impl Collector<'_, '_> {
    /// Queues a valid span for the tracker of the shard that owns its trace.
    #[inline]
    fn track(&mut self, span: &SpanView<'_>) {
        let (Ok(trace), Ok(id)) = (
            <[u8; 16]>::try_from(span.trace_id),
            <[u8; 8]>::try_from(span.span_id),
        ) else {
            return;
        };
        let id_of_trace = u128::from_be_bytes(trace);
        let parent = <[u8; 8]>::try_from(span.parent_span_id).map_or(0, u64::from_be_bytes);
        let mut link = SpanLink {
            span_id: u64::from_be_bytes(id),
            parent,
            service: 0,
            parent_remote: parent_is_remote(span.flags, span.kind),
        };
        // Another span of the trace just queued: its group is still the last of its batch.
        if let Some(last) = &self.last_trace {
            if last.id == id_of_trace {
                if let Some(batch) = self.batches.get_mut(last.shard) {
                    link.service = last.service;
                    batch.spans.push_to_last(id_of_trace, link);
                }
                return;
            }
        }
        self.track_first(trace, id_of_trace, link);
    }

    /// [`Self::track`] for a span of a trace other than the last one's.
    fn track_first(&mut self, bytes: [u8; 16], trace: u128, mut link: SpanLink) {
        let shard = shard_of(key::hash_key(&bytes), self.batches.len());
        let name = self.resource_service();
        let (Some(batch), Some(index)) = (
            self.batches.get_mut(shard),
            self.service_index.get_mut(shard),
        ) else {
            return;
        };
        let service = *index.get_or_insert_with(|| {
            let index = batch.add_service(name);
            batch.spans.begin_service(index);
            index
        });
        link.service = service;
        batch.spans.push_in_run(trace, link);
        self.last_trace = Some(LastTrace {
            id: trace,
            shard,
            service,
        });
    }
}

impl<'a> SpanSink<'a> for Collector<'a, '_> {
    fn resource(&mut self, resource: ResourceView<'a>) {
        if self.track_traces {
            self.flush_invalid();
        }
        self.resource = Some(self.classifier.resource(resource.attributes));
        self.service_index.iter_mut().for_each(|i| *i = None);
        self.last_trace = None;
    }

    fn span(&mut self, span: &SpanView<'a>) -> Result<(), ScanError> {
        self.tally.spans += 1;
        let resource = match &self.resource {
            Some(r) => r,
            None => {
                let r = self
                    .classifier
                    .resource(crate::otlp::scan::AttrsRef::empty());
                self.resource.insert(r)
            }
        };
        self.scratch.clear();
        let verdict = match self.flag_rules {
            None => self
                .classifier
                .classify(span, resource, &mut self.scratch)?,
            Some(rules) => {
                self.evals.clear();
                let verdict = self.classifier.classify_with(
                    span,
                    resource,
                    &mut self.scratch,
                    Some(&mut self.evals),
                )?;
                if verdict == Verdict::NotEntry && rules.child_spans && !span.events.is_empty() {
                    flag::from_events(&span.events, &mut self.evals)?;
                    let trace = <[u8; 16]>::try_from(span.trace_id)
                        .map(u128::from_be_bytes)
                        .unwrap_or(0);
                    // Matched against entry spans' keys: the service label as written.
                    let service = self.classifier.service_label(resource);
                    keep_usable(&mut self.evals, rules, &mut self.tally);
                    self.child_evals
                        .extend(self.evals.iter().map(|e| (trace, service, *e)));
                } else if !self.evals.is_empty() {
                    keep_usable(&mut self.evals, rules, &mut self.tally);
                }
                verdict
            }
        };
        if self.track_traces {
            match verdict {
                Verdict::Rejected(_) => self.invalid[0] += 1,
                _ => {
                    if let Verdict::Entry(o) = verdict {
                        self.invalid[1] += u64::from(o.invalid_duration);
                    }
                    let end = span.end_time_unix_nano;
                    if end != 0 && end.abs_diff(self.now) > self.max_skew {
                        self.invalid[2] += 1;
                    }
                    self.track(span);
                }
            }
        }
        match verdict {
            Verdict::NotEntry => {}
            Verdict::Rejected(Reject::TraceId) => self.tally.bad_trace_id += 1,
            Verdict::Rejected(Reject::SpanId) => self.tally.bad_span_id += 1,
            Verdict::Entry(obs) => {
                self.tally.entries += 1;
                self.tally.invalid_durations += u64::from(obs.invalid_duration);
                let hash = key::hash_key(&self.scratch);
                let n = self.batches.len();
                let Some(batch) = self.batches.get_mut(shard_of(hash, n)) else {
                    return Ok(());
                };
                let budget = (&mut self.key_bytes, self.key_limit);
                let Some((key_start, key_len)) =
                    store_key(&mut self.seen, &mut batch.keys, hash, &self.scratch, budget)
                else {
                    self.too_large = true;
                    return Ok(());
                };
                let ids = SpanIds::of(span);
                let at = batch.items.len() as u32;
                batch.items.push(Item {
                    hash,
                    key_start,
                    key_len,
                    obs,
                    ids,
                });
                if !self.evals.is_empty() {
                    let entry = EntryRef {
                        shard: shard_of(hash, n) as u32,
                        item: at,
                    };
                    if self.entry_evals.capacity() == 0 {
                        // Room for an evaluation per entry span of the request.
                        self.entry_evals
                            .reserve(self.entries_hint.max(self.evals.len()));
                    }
                    self.entry_evals
                        .extend(self.evals.iter().map(|e| (entry, *e)));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::shard_of;
    use crate::completeness::traces::{TraceTracker, TrackerConfig};
    use crate::completeness::GapState;
    use crate::otlp::scan::scan_traces;
    use crate::otlp::synth::{traces_request, Rng, Workload};
    use crate::sli::classify::{Classifier, ClassifyConfig};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;
    use std::collections::BTreeMap;

    /// Every valid span reaches the tracker of its trace's shard and is counted under its
    /// service, whichever span of its trace it is and however the request's resources
    /// repeat services: the counts are what the request holds per `service.name`.
    #[test]
    fn tracked_spans_are_counted_under_their_service() {
        let c = Classifier::new(ClassifyConfig::default()).expect("rules");
        let w = Workload {
            services: 3,
            features: 2,
            ..Workload::default()
        };
        // Two requests' resources in one: each service's spans come in two resources.
        let (mut req, _, _) = traces_request(&w, &mut Rng::new(5), 1000, 1);
        let (more, _, _) = traces_request(&w, &mut Rng::new(6), 600, 1);
        req.resource_spans.extend(more.resource_spans);
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for rs in &req.resource_spans {
            let name = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .expect("every resource is named");
            let spans: usize = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum();
            *want.entry(name).or_default() += spans as u64;
        }
        assert!(req.resource_spans.len() > want.len(), "services repeat");
        let body = req.encode_to_vec();
        let now = 1;
        let mut col = super::Collector::new(&c, 2)
            .with_traces(true, now, u64::MAX)
            .with_size_hint(body.len());
        scan_traces(&body, &mut col).expect("valid");
        col.finish();
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for b in &col.batches {
            let mut gaps = GapState::new(Some(TraceTracker::new(TrackerConfig {
                timeout_nanos: 30_000_000_000,
                max_traces: 10_000,
                max_spans_per_trace: 1_000,
                max_bytes: 1 << 20,
            })));
            gaps.observe(now, b.observed());
            for g in gaps.snapshot() {
                *got.entry(g.service.to_string()).or_default() += g.counts.spans;
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn keys_are_stored_once_per_request() {
        let c = Classifier::new(ClassifyConfig::default()).expect("rules");
        let w = Workload {
            services: 2,
            features: 3,
            ..Workload::default()
        };
        let (req, entries, _) = traces_request(&w, &mut Rng::new(1), 2000, 1);
        let body = req.encode_to_vec();
        let mut col = super::Collector::new(&c, 2);
        scan_traces(&body, &mut col).expect("valid");
        let items: usize = col.batches.iter().map(|b| b.items.len()).sum();
        assert_eq!(items as u64, entries);
        let distinct: std::collections::HashSet<Vec<u8>> = col
            .batches
            .iter()
            .flat_map(|b| b.items.iter().map(move |i| b.key(i).to_vec()))
            .collect();
        assert_eq!(distinct.len(), 6, "2 services x 3 features");
        let key_bytes: usize = col.batches.iter().map(|b| b.keys.len()).sum();
        assert_eq!(key_bytes, distinct.iter().map(Vec::len).sum::<usize>());
        assert!(!col.too_large);

        let mut tight = super::Collector::new(&c, 2).with_key_limit(key_bytes - 1);
        scan_traces(&body, &mut tight).expect("valid");
        assert!(tight.too_large, "one byte short of the distinct keys");
    }

    /// A request of one resource with one span of `kind` whose only attribute is `attr`
    /// (raw `KeyValue` bytes), and where in the request that attribute starts.
    fn request_with_attribute(kind: u8, attr: &[u8]) -> (Vec<u8>, usize) {
        fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
            assert!(payload.len() < 0x80);
            [&[field << 3 | 2, payload.len() as u8][..], payload].concat()
        }
        let head = [ld(1, &[7; 16]), ld(2, &[9; 8]), vec![0x30, kind]].concat();
        let span = [head.clone(), ld(9, attr)].concat();
        let body = ld(1, &ld(2, &ld(2, &span)));
        // Three levels of key and length (two bytes each), the span's fields, the
        // attribute's key and length.
        (body, 2 * 3 + head.len() + 2)
    }

    #[test]
    fn only_entry_spans_attributes_are_read_and_a_malformed_one_refuses_the_request() {
        use crate::otlp::scan::ScanErrorKind;
        let c = Classifier::new(ClassifyConfig::default()).expect("rules");
        // A KeyValue whose key has the wrong wire type (varint): prost refuses it.
        let bad = [0x08, 0x01];
        let good = [0x0a, 0x01, b'k', 0x12, 0x03, 0x0a, 0x01, b'v'];
        // SERVER (2) is an entry kind; CLIENT (3) is not.
        for (kind, attr, refused) in [(2, &bad[..], true), (3, &bad, false), (2, &good, false)] {
            let (body, at) = request_with_attribute(kind, attr);
            let mut col = super::Collector::new(&c, 1).with_traces(true, 0, u64::MAX);
            let got = scan_traces(&body, &mut col);
            if refused {
                let err = got.expect_err("a malformed attribute of an entry span");
                assert_eq!(
                    err.kind,
                    ScanErrorKind::InvalidWireType {
                        field: 1,
                        wire_type: 0
                    }
                );
                assert_eq!(err.offset, at, "the offset of the malformed KeyValue's key");
            } else {
                assert_eq!(got, Ok(1), "kind {kind}, attribute {attr:?}");
                assert_eq!(col.tally.entries, u64::from(kind == 2));
                assert_eq!(col.batches[0].spans.len(), 1, "tracked");
            }
        }
    }

    #[test]
    fn events_are_read_and_validated_only_when_flags_are_read() {
        use crate::sli::flag::FlagRules;
        // An event whose name (field 2) has the wrong wire type (varint): prost refuses it.
        let event = [0x10, 0x01];
        let span = |kind: u8| {
            let mut s = vec![0x0a, 16];
            s.extend([7; 16]);
            s.extend([0x12, 8]);
            s.extend([9; 8]);
            s.extend([0x30, kind, 0x5a, event.len() as u8]);
            s.extend(event);
            s
        };
        let wrap = |payload: Vec<u8>, field: u8| {
            let mut out = vec![field << 3 | 2, payload.len() as u8];
            out.extend(payload);
            out
        };
        let rules = FlagRules::default();
        for flags in [false, true] {
            let c = Classifier::new(ClassifyConfig {
                flags,
                ..ClassifyConfig::default()
            })
            .expect("rules");
            // SERVER (2), an entry span; INTERNAL (1), read for child spans' evaluations.
            for kind in [2u8, 1] {
                let body = wrap(wrap(wrap(span(kind), 2), 2), 1);
                let mut col = super::Collector::new(&c, 1).with_flags(flags.then_some(&rules));
                let got = scan_traces(&body, &mut col);
                assert_eq!(got.is_err(), flags, "flags {flags}, kind {kind}: {got:?}");
            }
        }
    }

    /// A span for [`flag_request`]: kind, trace id byte, and its flag evaluation events, each
    /// as its attributes.
    type TestSpan<'a> = (i32, u8, Vec<Vec<(&'a str, &'a str)>>);

    /// A request of one resource per `(service, spans)`.
    fn flag_request(resources: &[(&str, Vec<TestSpan<'_>>)]) -> Vec<u8> {
        use crate::otlp::synth::kv_str;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span};
        let mut id = 0u64;
        let resource_spans = resources
            .iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", service)],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|(kind, trace, events)| {
                            id += 1;
                            Span {
                                trace_id: vec![*trace; 16],
                                span_id: id.to_be_bytes().to_vec(),
                                kind: *kind,
                                name: "GET /".into(),
                                start_time_unix_nano: 1,
                                end_time_unix_nano: 2,
                                events: events
                                    .iter()
                                    .map(|kvs| Event {
                                        name: "feature_flag.evaluation".into(),
                                        attributes: kvs.iter().map(|(k, v)| kv_str(k, v)).collect(),
                                        ..Default::default()
                                    })
                                    .collect(),
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }.encode_to_vec()
    }

    /// The flag series keys (labels joined by `|`) a request produces, and its tally.
    fn flag_items(body: &[u8]) -> (Vec<String>, super::Tally) {
        use crate::sli::flag::FlagRules;
        let c = Classifier::new(ClassifyConfig {
            flags: true,
            ..ClassifyConfig::default()
        })
        .expect("rules");
        let rules = FlagRules::default();
        let mut col = super::Collector::new(&c, 2).with_flags(Some(&rules));
        scan_traces(body, &mut col).expect("valid");
        col.finish();
        let mut keys: Vec<String> = col
            .batches
            .iter()
            .flat_map(|b| b.flags.iter().map(move |f| b.flag_key(f)))
            .map(|k| crate::sli::key::labels(k).collect::<Vec<_>>().join("|"))
            .collect();
        keys.sort();
        (keys, col.tally)
    }

    const SERVER: i32 = 2;
    const INTERNAL: i32 = 1;

    #[test]
    fn one_observation_per_request_and_flag_label() {
        let long = "a".repeat(300);
        let (x, y) = (format!("{long}x"), format!("{long}y"));
        let body = flag_request(&[(
            "svc",
            vec![(
                SERVER,
                1,
                vec![
                    // No variant: it does not take the place of the next one.
                    vec![("feature_flag.key", "k")],
                    vec![
                        ("feature_flag.key", "k"),
                        ("feature_flag.result.variant", "on"),
                    ],
                    // Two keys that are one label once cut to 256 bytes.
                    vec![
                        ("feature_flag.key", x.as_str()),
                        ("feature_flag.result.variant", "a"),
                    ],
                    vec![
                        ("feature_flag.key", y.as_str()),
                        ("feature_flag.result.variant", "b"),
                    ],
                ],
            )],
        )]);
        let (keys, tally) = flag_items(&body);
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.contains(&"svc|GET /|k|on".to_string()), "{keys:?}");
        assert!(
            keys.iter().any(|k| k.ends_with("|a")),
            "the first of the two: {keys:?}"
        );
        assert_eq!((tally.flag_no_variant, tally.flag_evaluations), (1, 2));
    }

    #[test]
    fn child_evaluations_count_for_their_service_only_and_within_limits() {
        let on = vec![
            ("feature_flag.key", "f"),
            ("feature_flag.result.variant", "on"),
        ];
        // Trace 1 passes through "a" and "b"; "a"'s handler span evaluates f.
        let body = flag_request(&[
            (
                "a",
                vec![(SERVER, 1, vec![]), (INTERNAL, 1, vec![on.clone()])],
            ),
            ("b", vec![(SERVER, 1, vec![])]),
            // A child evaluation whose entry span is not in the request.
            ("c", vec![(INTERNAL, 2, vec![on.clone()])]),
        ]);
        let (keys, tally) = flag_items(&body);
        assert_eq!(keys, ["a|GET /|f|on"]);
        assert_eq!(tally.flag_unattributed, 1);

        // A service name longer than a label may be is cut in the series key; a child's
        // evaluation still finds its entry span of that service.
        let long = "s".repeat(300);
        let body = flag_request(&[(
            long.as_str(),
            vec![(SERVER, 4, vec![]), (INTERNAL, 4, vec![on.clone()])],
        )]);
        let (keys, tally) = flag_items(&body);
        assert_eq!(keys, [format!("{}|GET /|f|on", &long[..256])]);
        assert_eq!(tally.flag_unattributed, 0);

        // One trace of 2,000 entry spans and 2,000 children each evaluating another flag:
        // at most two flag observations per span of the request, the rest counted.
        let keys: Vec<String> = (0..2000).map(|i| format!("flag-{i}")).collect();
        let mut spans: Vec<TestSpan<'_>> = (0..2000).map(|_| (SERVER, 3, vec![])).collect();
        spans.extend(keys.iter().map(|k| {
            (
                INTERNAL,
                3,
                vec![vec![
                    ("feature_flag.key", k.as_str()),
                    ("feature_flag.result.variant", "on"),
                ]],
            )
        }));
        let (items, tally) = flag_items(&flag_request(&[("svc", spans)]));
        assert_eq!(items.len(), 8000, "2 x 4,000 spans");
        assert_eq!(tally.flag_evaluations, 8000);
        // The first four flags fill the budget across the 2,000 entry spans; the other
        // 1,996 evaluations are counted over the limit.
        assert_eq!(tally.flag_over_limit, 1996);
    }

    #[test]
    fn shard_of_stays_in_range_and_spreads() {
        let mut seen = [0usize; 4];
        for i in 0..10_000u64 {
            let h = crate::sli::key::hash_key(&i.to_le_bytes());
            let s = shard_of(h, 4);
            assert!(s < 4);
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 2000), "{seen:?}");
        assert_eq!(shard_of(u64::MAX, 1), 0);
    }
}
