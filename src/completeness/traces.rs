//! Trace-structure gaps within one instance: **orphan spans** (a span whose parent should
//! have arrived here but did not within the trace timeout) and **missing roots** (a trace
//! with spans here, no root, and no remote parent that explains it).
//!
//! Plain synchronous state driven by the caller's clock: [`TraceTracker::observe_spans`]
//! for a batch's spans grouped by trace ([`super::spans`]); [`TraceTracker::expire`] on a
//! tick.
//!
//! Most traces can be judged the moment they arrive: a request's spans usually come in
//! one export, with their root (or the entry span whose parent is remote) and every local
//! parent among them. Such a trace is judged complete on arrival and never enters the
//! table; only its fingerprints are remembered ([`super::recent`]) so that spans of it
//! arriving later (a late child, another service's spans of the same trace) find their
//! parent and root. The table holds only traces still waiting for a parent or a root.
//!
//! Memory is bounded by a byte budget (`max_bytes`: half for the fingerprint tables, the
//! other half, less the tables' filters, for the table of waiting traces, counted
//! approximately), by `max_traces` and by
//! `max_spans_per_trace`; whatever is dropped early is counted, never silently lost.
//!
//! Rule for "the parent should be here": the span has a parent and that parent is not
//! remote. The OTLP span flags say so when the SDK set them (`HAS_IS_REMOTE` and
//! `IS_REMOTE`); otherwise a SERVER or CONSUMER span's parent is taken as remote (it called
//! in from elsewhere) and any other span's parent as local. Parents often end, and so
//! arrive, after their children; nothing is reported before the timeout.

use super::recent::{Found, Recent, TraceRef, MAX_GROUP};
use super::spans::{SpanLink, TraceSpans};
use hashbrown::HashTable;
use std::collections::VecDeque;

/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`.
pub const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`.
pub const FLAG_IS_REMOTE: u32 = 0x200;

/// Decides whether a span's parent is remote, from its flags and kind.
pub fn parent_is_remote(flags: u32, kind: i32) -> bool {
    if flags & FLAG_HAS_IS_REMOTE != 0 {
        flags & FLAG_IS_REMOTE != 0
    } else {
        // SERVER (2) and CONSUMER (5) spans are entered from another process.
        kind == 2 || kind == 5
    }
}

/// The service id `services` gives `span`'s service index (0 past its end).
#[inline]
fn service_of(services: &[u32], span: &SpanLink) -> u32 {
    services.get(span.service as usize).copied().unwrap_or(0)
}

/// Spans of one trace that arrived together, at `now`.
struct Arrival<'a> {
    now: u64,
    trace: TraceRef,
    spans: &'a [SpanLink],
    /// Service ids by each span's service index.
    services: &'a [u32],
}

/// A gap found when a trace timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceGap {
    /// A span of `service` whose local parent never arrived.
    Orphan {
        /// The child's service.
        service: u32,
    },
    /// A trace with no root and no remote parent, attributed to the service of its first
    /// span seen here.
    MissingRoot {
        /// That service.
        service: u32,
        /// Spans of the trace seen here.
        spans: u32,
    },
}

/// Limits and timing.
#[derive(Clone, Copy, Debug)]
pub struct TrackerConfig {
    /// A trace is judged this long after its last span arrived, in nanoseconds.
    pub timeout_nanos: u64,
    /// Most traces tracked at once; when a new trace needs room, the oldest is dropped
    /// unjudged and counted in [`TrackerStats::evicted_traces`].
    pub max_traces: usize,
    /// Most spans tracked per trace; later spans of the trace are counted, not tracked.
    pub max_spans_per_trace: usize,
    /// Bytes at most for the waiting traces and the fingerprints of judged ones; when the
    /// waiting traces need more, the oldest is dropped unjudged and counted in
    /// [`TrackerStats::evicted_traces`].
    pub max_bytes: usize,
}

#[derive(Debug)]
struct TraceState {
    last_seen: u64,
    first_service: u32,
    /// A root, or a span whose parent is remote, has been seen (here, or in a part of the
    /// trace judged earlier).
    rooted: bool,
    /// Spans of the trace were judged before (these came late): it is not counted again.
    judged_before: bool,
    /// Span ids seen here.
    spans: Vec<u64>,
    /// (parent id, child service) of spans whose local parent has not arrived yet.
    waiting: Vec<(u64, u32)>,
}

/// Spans remembered per judged trace, so one huge trace cannot crowd the others out of the
/// fingerprints. A late child of a bigger trace whose parent was past the cap waits for it.
const REMEMBERED_SPANS: usize = 64;
const _: () = assert!(REMEMBERED_SPANS < MAX_GROUP);

/// What one waiting trace costs besides its vectors: its table entry (with the table's
/// control byte) and its deadline.
const TRACE_BYTES: usize = std::mem::size_of::<Waiting>() + 1 + std::mem::size_of::<Due>();

/// A waiting trace in the table: its id and its state.
#[derive(Debug)]
struct Waiting {
    id: u128,
    state: TraceState,
}

/// The table's hash of a trace id: the one its fingerprints use.
fn hash_of(id: u128) -> u64 {
    TraceRef::new(id).hash()
}

impl TraceState {
    /// Approximate bytes held (the table's spare capacity is not counted).
    fn bytes(&self) -> usize {
        TRACE_BYTES
            + self.spans.capacity() * std::mem::size_of::<u64>()
            + self.waiting.capacity() * std::mem::size_of::<(u64, u32)>()
    }
}

/// A trace's deadline. The id is kept as two halves so an entry takes 24 bytes, not the 32
/// a `(u64, u128)` takes with `u128`'s 16-byte alignment.
#[derive(Clone, Copy, Debug)]
struct Due {
    at: u64,
    id: [u64; 2],
}

impl Due {
    fn new(at: u64, id: u128) -> Self {
        Self {
            at,
            id: [(id >> 64) as u64, id as u64],
        }
    }
    fn id(self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

/// Counters of what the tracker did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    /// Traces dropped before their timeout to make room (their spans were not judged).
    pub evicted_traces: u64,
    /// Spans not tracked because their trace reached `max_spans_per_trace`.
    pub untracked_spans: u64,
    /// Traces judged, on arrival or at their timeout.
    pub judged_traces: u64,
    /// Of those, traces judged complete on arrival (they never waited in the table).
    pub judged_on_arrival: u64,
    /// Generations of judged traces' fingerprints forgotten before `timeout_nanos` had
    /// passed, because the span rate filled them (see [`super::recent`]).
    pub forgotten_early: u64,
}

/// In-flight traces of one shard.
#[derive(Debug)]
pub struct TraceTracker {
    cfg: TrackerConfig,
    /// Waiting traces, hashed by [`TraceRef::hash`].
    traces: HashTable<Waiting>,
    /// Traces in the order they were created, with their deadlines; stale entries are
    /// re-queued.
    deadlines: VecDeque<Due>,
    /// Approximate bytes of `traces` and `deadlines`.
    table_bytes: usize,
    /// What `table_bytes` may reach: half the byte budget less what the fingerprint
    /// tables' filters may hold (the tables have the other half).
    table_budget: usize,
    recent: Recent,
    stats: TrackerStats,
    /// The traces of the batch being observed ([`Self::observe_spans`]); reused.
    batch_traces: Vec<TraceRef>,
}

impl TraceTracker {
    /// An empty tracker.
    pub fn new(cfg: TrackerConfig) -> Self {
        let recent = Recent::new(cfg.timeout_nanos, cfg.max_bytes / 2, 0);
        Self {
            cfg,
            traces: HashTable::new(),
            deadlines: VecDeque::new(),
            table_bytes: 0,
            table_budget: (cfg.max_bytes / 2).saturating_sub(recent.max_filter_bytes()),
            recent,
            stats: TrackerStats::default(),
            batch_traces: Vec::new(),
        }
    }

    /// Records the spans of one batch seen at `now` (Unix nanoseconds), grouped by trace;
    /// `services` maps each span's service index to the service id reported in gaps (an
    /// index past its end reports 0).
    ///
    /// The fingerprint tables are far larger than the caches, so the lines of every trace
    /// of the batch are asked for first ([`Recent::warm`]), and their misses overlap.
    pub fn observe_spans(&mut self, now: u64, spans: &TraceSpans, services: &[u32]) {
        let mut traces = std::mem::take(&mut self.batch_traces);
        traces.clear();
        traces.extend(spans.groups().map(|(g, _)| TraceRef::new(g.trace_id())));
        self.recent.warm(traces.iter().copied());
        for ((group, links), &trace) in spans.groups().zip(&traces) {
            self.observe_group(now, trace, group.trace_id(), links, services);
        }
        self.batch_traces = traces;
    }

    /// Records `spans` of trace `id` (whose [`TraceRef`] is `trace`) that arrived together.
    fn observe_group(
        &mut self,
        now: u64,
        trace: TraceRef,
        id: u128,
        spans: &[SpanLink],
        services: &[u32],
    ) {
        let Some(first) = spans.first() else {
            return;
        };
        let hash = trace.hash();
        if !self.traces.is_empty() {
            if let Some(w) = self.traces.find_mut(hash, |w| w.id == id) {
                let t = &mut w.state;
                let before = t.bytes();
                let arrival = Arrival {
                    now,
                    trace,
                    spans,
                    services,
                };
                Self::apply(t, &arrival, &self.cfg, &self.recent, &mut self.stats);
                self.table_bytes = (self.table_bytes + t.bytes()).saturating_sub(before);
                self.keep_within_budget();
                return;
            }
        }
        let found = self.recent.find(trace.key(0));
        let known = found.known;
        let rooted = known || spans.iter().any(|s| s.parent == 0 || s.parent_remote);
        if rooted && self.parents_known(trace, spans) {
            // Late spans of a trace judged before do not make it count twice.
            if !known {
                self.stats.judged_traces += 1;
                self.stats.judged_on_arrival += 1;
            }
            let remembered = spans.get(..REMEMBERED_SPANS).unwrap_or(spans);
            self.remember_after(now, trace, found, remembered.iter().map(|s| s.span_id));
            return;
        }
        if self.traces.len() >= self.cfg.max_traces {
            self.evict_oldest();
        }
        let mut t = TraceState {
            last_seen: now,
            first_service: service_of(services, first),
            rooted,
            judged_before: known,
            spans: Vec::new(),
            waiting: Vec::new(),
        };
        let arrival = Arrival {
            now,
            trace,
            spans,
            services,
        };
        Self::apply(&mut t, &arrival, &self.cfg, &self.recent, &mut self.stats);
        self.table_bytes += t.bytes();
        self.traces
            .insert_unique(hash, Waiting { id, state: t }, |w| hash_of(w.id));
        self.deadlines
            .push_back(Due::new(now.saturating_add(self.cfg.timeout_nanos), id));
        self.keep_within_budget();
    }

    /// Whether every span of `spans` (one trace) with a local parent finds it among them or
    /// among the remembered spans of the trace.
    fn parents_known(&self, trace: TraceRef, spans: &[SpanLink]) -> bool {
        // A sorted copy of the ids only for big groups; a small one is scanned.
        let sorted: Option<Vec<u64>> = (spans.len() > 32).then(|| {
            let mut ids: Vec<u64> = spans.iter().map(|s| s.span_id).collect();
            ids.sort_unstable();
            ids
        });
        let in_group = |p: u64| match &sorted {
            Some(ids) => ids.binary_search(&p).is_ok(),
            None => spans.iter().any(|o| o.span_id == p),
        };
        spans
            .iter()
            .filter(|s| !s.parent_remote)
            .filter_map(SpanLink::parent)
            .all(|p| in_group(p) || self.recent.contains(trace.key(p)))
    }

    /// Adds the spans of `arrival` to a waiting trace.
    fn apply(
        t: &mut TraceState,
        arrival: &Arrival<'_>,
        cfg: &TrackerConfig,
        recent: &Recent,
        stats: &mut TrackerStats,
    ) {
        t.last_seen = t.last_seen.max(arrival.now);
        for span in arrival.spans {
            // This span may be the parent others are waiting for, or the root: that is
            // always recorded, even past the span cap, so a big trace is not misjudged.
            t.waiting.retain(|&(parent, _)| parent != span.span_id);
            let full = t.spans.len() >= cfg.max_spans_per_trace;
            match span.parent() {
                None => t.rooted = true,
                Some(_) if span.parent_remote => t.rooted = true,
                Some(parent) => {
                    let here =
                        t.spans.contains(&parent) || recent.contains(arrival.trace.key(parent));
                    if !full && !here {
                        t.waiting.push((parent, service_of(arrival.services, span)));
                    }
                }
            }
            if full {
                stats.untracked_spans += 1;
            } else {
                t.spans.push(span.span_id);
            }
        }
    }

    /// Remembers the first [`REMEMBERED_SPANS`] spans of a judged trace for their late
    /// relatives, and the trace itself (which makes late spans of it rooted) when `rooted`.
    fn remember(
        &mut self,
        now: u64,
        trace: TraceRef,
        rooted: bool,
        spans: impl Iterator<Item = u64>,
    ) {
        let mut spans = spans.take(REMEMBERED_SPANS).peekable();
        let first = if rooted {
            trace.key(0)
        } else if let Some(&span) = spans.peek() {
            trace.key(span)
        } else {
            return;
        };
        let found = self.recent.find(first);
        self.remember_after(now, trace, found, spans);
    }

    /// Remembers the key that `found` looked for, then `spans` (at most
    /// [`REMEMBERED_SPANS`]; a key met again is not stored twice).
    fn remember_after(
        &mut self,
        now: u64,
        trace: TraceRef,
        found: Found,
        spans: impl Iterator<Item = u64>,
    ) {
        let keys = spans.map(|s| trace.key(s));
        self.recent.insert_after(now, found, keys);
        self.stats.forgotten_early = self.recent.retired_full();
    }

    /// Drops the oldest waiting traces, unjudged and counted, while the table is over its
    /// part of the byte budget (what the fingerprints cannot take).
    fn keep_within_budget(&mut self) {
        while self.table_bytes > self.table_budget && !self.traces.is_empty() {
            self.evict_oldest();
        }
    }

    /// Judges every trace whose last span is older than the timeout at `now`, reporting its
    /// gaps to `report`.
    pub fn expire(&mut self, now: u64, mut report: impl FnMut(TraceGap)) {
        while let Some(&due) = self.deadlines.front() {
            if due.at > now {
                break;
            }
            self.deadlines.pop_front();
            let id = due.id();
            let hash = hash_of(id);
            let Some(w) = self.traces.find(hash, |w| w.id == id) else {
                continue; // evicted earlier
            };
            let due = w.state.last_seen.saturating_add(self.cfg.timeout_nanos);
            if due > now {
                // Active since it was queued: judge it later.
                self.deadlines.push_back(Due::new(due, id));
                continue;
            }
            // Found again to be taken: looking a due trace up once through `find_entry`
            // from the start costs more (25 instructions per span on the `track`
            // workload) than this second lookup of a trace already in the caches.
            let Ok(entry) = self.traces.find_entry(hash, |w| w.id == id) else {
                continue;
            };
            let (Waiting { state: t, .. }, _) = entry.remove();
            self.table_bytes = self.table_bytes.saturating_sub(t.bytes());
            if !t.judged_before {
                self.stats.judged_traces += 1;
            }
            for &(_, service) in &t.waiting {
                report(TraceGap::Orphan { service });
            }
            if !t.rooted {
                report(TraceGap::MissingRoot {
                    service: t.first_service,
                    spans: u32::try_from(t.spans.len()).unwrap_or(u32::MAX),
                });
            }
            self.remember(now, TraceRef::new(id), t.rooted, t.spans.iter().copied());
        }
    }

    fn evict_oldest(&mut self) {
        while let Some(due) = self.deadlines.pop_front() {
            let id = due.id();
            if let Ok(entry) = self.traces.find_entry(hash_of(id), |w| w.id == id) {
                let (Waiting { state: t, .. }, _) = entry.remove();
                self.table_bytes = self.table_bytes.saturating_sub(t.bytes());
                self.stats.evicted_traces += 1;
                return;
            }
        }
    }

    /// Approximate bytes held: the waiting traces and the judged traces' fingerprints.
    pub fn bytes(&self) -> usize {
        self.table_bytes + self.recent.bytes()
    }

    /// Traces being tracked.
    pub fn len(&self) -> usize {
        self.traces.len()
    }

    /// True when no trace is tracked.
    pub fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// What the tracker did so far.
    pub fn stats(&self) -> TrackerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One span with its trace id, as the tests write them.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct SpanFacts {
        trace_id: u128,
        span_id: u64,
        /// `None` for a root span.
        parent: Option<u64>,
        parent_remote: bool,
        /// Reported back in gaps.
        service: u32,
    }

    impl TraceTracker {
        /// Records one span seen at `now` (Unix nanoseconds).
        fn observe(&mut self, now: u64, span: SpanFacts) {
            self.observe_trace(now, std::slice::from_ref(&span));
        }

        /// Records `spans` that arrived together at `now`, through the shards' entry point.
        fn observe_trace(&mut self, now: u64, spans: &[SpanFacts]) {
            let mut batch = TraceSpans::default();
            let services: Vec<u32> = spans.iter().map(|s| s.service).collect();
            for (i, s) in spans.iter().enumerate() {
                let link = SpanLink {
                    span_id: s.span_id,
                    parent: s.parent.unwrap_or(0),
                    service: i as u32,
                    parent_remote: s.parent_remote,
                };
                batch.push(s.trace_id, link);
            }
            self.observe_spans(now, &batch, &services);
        }
    }

    const SEC: u64 = 1_000_000_000;

    fn tracker() -> TraceTracker {
        TraceTracker::new(TrackerConfig {
            timeout_nanos: 30 * SEC,
            max_traces: 100,
            max_spans_per_trace: 50,
            max_bytes: 64 << 20,
        })
    }

    fn span(trace: u128, id: u64, parent: Option<u64>, remote: bool, service: u32) -> SpanFacts {
        SpanFacts {
            trace_id: trace,
            span_id: id,
            parent,
            parent_remote: remote,
            service,
        }
    }

    #[test]
    fn a_deadline_keeps_the_whole_trace_id() {
        for id in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(Due::new(7, id).id(), id);
        }
        assert_eq!(std::mem::size_of::<Due>(), 24);
    }

    fn gaps(t: &mut TraceTracker, now: u64) -> Vec<TraceGap> {
        let mut out = Vec::new();
        t.expire(now, |g| out.push(g));
        out
    }

    #[test]
    fn a_batch_is_judged_trace_by_trace() {
        let mut t = tracker();
        let spans = [
            // Trace 1: whole.
            span(1, 10, None, false, 1),
            span(1, 11, Some(10), false, 1),
            // Trace 2: a child whose parent never comes.
            span(2, 21, Some(20), false, 2),
            // Trace 3: whole, its root last.
            span(3, 31, Some(30), false, 3),
            span(3, 30, Some(99), true, 3),
        ];
        let mut batch = TraceSpans::default();
        for s in spans {
            batch.push(
                s.trace_id,
                SpanLink {
                    span_id: s.span_id,
                    parent: s.parent.unwrap_or(0),
                    service: s.service - 1,
                    parent_remote: s.parent_remote,
                },
            );
        }
        t.observe_spans(0, &batch, &[1, 2, 3]);
        let s = t.stats();
        assert_eq!((s.judged_traces, s.judged_on_arrival), (2, 2));
        assert_eq!(t.len(), 1, "trace 2 waits");
        // Trace 1 and 3 were remembered under their own ids: late children find their
        // parents there, and do not count their traces again.
        t.observe_trace(SEC, &[span(1, 12, Some(11), false, 1)]);
        t.observe_trace(SEC, &[span(3, 32, Some(31), false, 3)]);
        assert_eq!((t.len(), t.stats().judged_traces), (1, 2));
        assert_eq!(
            gaps(&mut t, 31 * SEC),
            vec![
                TraceGap::Orphan { service: 2 },
                TraceGap::MissingRoot {
                    service: 2,
                    spans: 1
                }
            ]
        );
    }

    #[test]
    fn complete_trace_has_no_gap_even_when_the_parent_arrives_last() {
        let mut t = tracker();
        // Children first (they end first), the root last, in separate "requests".
        t.observe(0, span(1, 11, Some(10), false, 7));
        t.observe(SEC, span(1, 12, Some(11), false, 7));
        t.observe(20 * SEC, span(1, 10, None, false, 7));
        assert_eq!(
            gaps(&mut t, 45 * SEC),
            [],
            "nothing before the timeout after the last span"
        );
        assert_eq!(gaps(&mut t, 51 * SEC), []);
        assert!(t.is_empty());
        assert_eq!(t.stats().judged_traces, 1);
    }

    #[test]
    fn never_arriving_parent_makes_an_orphan_and_a_missing_root() {
        let mut t = tracker();
        t.observe(0, span(2, 21, Some(20), false, 3));
        t.observe(0, span(2, 22, Some(21), false, 3));
        assert_eq!(gaps(&mut t, 29 * SEC), []);
        assert_eq!(
            gaps(&mut t, 30 * SEC),
            [
                TraceGap::Orphan { service: 3 },
                TraceGap::MissingRoot {
                    service: 3,
                    spans: 2
                }
            ]
        );
    }

    #[test]
    fn remote_parents_explain_a_missing_root() {
        let mut t = tracker();
        // An entry span whose caller lives on another node, and its local child.
        t.observe(0, span(3, 31, Some(30), true, 1));
        t.observe(0, span(3, 32, Some(31), false, 1));
        assert_eq!(gaps(&mut t, 31 * SEC), []);
    }

    #[test]
    fn remote_decision_uses_flags_then_kind() {
        assert!(parent_is_remote(FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE, 1));
        assert!(
            !parent_is_remote(FLAG_HAS_IS_REMOTE, 2),
            "flags say local, even for SERVER"
        );
        assert!(parent_is_remote(0, 2));
        assert!(parent_is_remote(0, 5));
        assert!(!parent_is_remote(0, 3));
        assert!(!parent_is_remote(0, 1));
    }

    #[test]
    fn activity_postpones_judgement() {
        let mut t = tracker();
        t.observe(0, span(4, 41, Some(40), false, 2));
        t.observe(25 * SEC, span(4, 40, None, false, 2));
        assert_eq!(gaps(&mut t, 30 * SEC), []);
        assert_eq!(t.len(), 1, "re-queued, not judged");
        assert_eq!(gaps(&mut t, 55 * SEC), []);
        assert!(t.is_empty());
    }

    #[test]
    fn limits_are_counted() {
        let mut t = TraceTracker::new(TrackerConfig {
            timeout_nanos: 30 * SEC,
            max_traces: 2,
            max_spans_per_trace: 2,
            max_bytes: 64 << 20,
        });
        // Children before their parent: the trace waits, and its third span is past the cap.
        t.observe(0, span(5, 2, Some(1), false, 0));
        t.observe(0, span(5, 3, Some(2), false, 0));
        t.observe(0, span(5, 4, Some(3), false, 0));
        t.observe(1, span(6, 1, Some(9), false, 0));
        t.observe(2, span(7, 1, Some(9), false, 0));
        assert_eq!(t.len(), 2);
        let s = t.stats();
        assert_eq!((s.untracked_spans, s.evicted_traces), (1, 1));
        // Trace 5 was evicted unjudged; 6 and 7 are judged.
        assert_eq!(gaps(&mut t, 40 * SEC).len(), 4);
    }

    fn tracker_with(max_bytes: usize) -> TraceTracker {
        TraceTracker::new(TrackerConfig {
            timeout_nanos: 30 * SEC,
            max_traces: 1_000_000,
            max_spans_per_trace: 50,
            max_bytes,
        })
    }

    #[test]
    fn a_trace_complete_on_arrival_never_waits_in_the_table() {
        let mut t = tracker();
        // An entry span (remote parent) and its children, in any order, in one request.
        t.observe_trace(
            0,
            &[
                span(8, 82, Some(81), false, 1),
                span(8, 83, Some(81), false, 1),
                span(8, 81, Some(80), true, 1),
            ],
        );
        // A root trace of another service.
        t.observe_trace(0, &[span(9, 91, None, false, 2)]);
        assert!(t.is_empty());
        let s = t.stats();
        assert_eq!((s.judged_traces, s.judged_on_arrival), (2, 2));
        assert_eq!(gaps(&mut t, 60 * SEC), []);
    }

    #[test]
    fn late_spans_of_a_judged_trace_find_their_parent_and_root() {
        let mut t = tracker();
        t.observe_trace(
            0,
            &[
                span(10, 100, None, false, 1),
                span(10, 101, Some(100), false, 1),
            ],
        );
        // Seconds later: an async child of the root, and a grandchild through it.
        t.observe_trace(5 * SEC, &[span(10, 102, Some(100), false, 1)]);
        t.observe_trace(6 * SEC, &[span(10, 103, Some(102), false, 1)]);
        assert!(t.is_empty(), "judged on arrival: parents remembered");
        assert_eq!(t.stats().judged_traces, 1, "one trace, judged once");
        assert_eq!(gaps(&mut t, 60 * SEC), []);
    }

    #[test]
    fn a_late_span_whose_parent_never_came_is_an_orphan_but_its_trace_has_a_root() {
        let mut t = tracker();
        t.observe_trace(0, &[span(11, 110, None, false, 1)]);
        t.observe_trace(SEC, &[span(11, 112, Some(111), false, 4)]);
        assert_eq!(t.len(), 1, "waits for 111");
        assert_eq!(gaps(&mut t, 31 * SEC), [TraceGap::Orphan { service: 4 }]);
        assert_eq!(t.stats().judged_traces, 1, "one trace, judged once");
    }

    #[test]
    fn waiting_traces_stay_within_their_part_of_the_byte_budget() {
        let budget = 1 << 20;
        let mut t = tracker_with(budget);
        for i in 0..100_000u64 {
            // Children whose parent has not arrived: each trace waits.
            t.observe_trace(i, &[span(u128::from(i) + 1, 2, Some(1), false, 0)]);
        }
        let s = t.stats();
        assert!(s.evicted_traces > 0);
        assert_eq!(s.evicted_traces + t.len() as u64, 100_000);
        assert!(t.table_bytes <= t.table_budget, "{}", t.table_bytes);
        assert!(t.table_budget < budget / 2);
        assert!(t.bytes() <= budget, "{} > {budget}", t.bytes());
        // The newest are kept, the oldest went first.
        let has = |t: &TraceTracker, id: u128| t.traces.find(hash_of(id), |w| w.id == id).is_some();
        assert!(has(&t, 100_000));
        assert!(!has(&t, 1));
    }

    #[test]
    fn a_trace_judged_rootless_stays_rootless_for_its_late_spans() {
        let mut t = tracker();
        t.observe_trace(0, &[span(12, 121, Some(120), false, 5)]);
        assert_eq!(
            gaps(&mut t, 30 * SEC),
            [
                TraceGap::Orphan { service: 5 },
                TraceGap::MissingRoot {
                    service: 5,
                    spans: 1
                }
            ]
        );
        // A child of the judged span, late: its parent is remembered, but the trace has
        // still no root, so it waits and is judged rootless again.
        t.observe_trace(31 * SEC, &[span(12, 122, Some(121), false, 5)]);
        assert_eq!(t.len(), 1);
        assert_eq!(
            gaps(&mut t, 61 * SEC),
            [TraceGap::MissingRoot {
                service: 5,
                spans: 1
            }]
        );
    }
}
