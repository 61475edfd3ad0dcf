//! Telemetry completeness: finding where the telemetry under an SLI is missing.
//!
//! [`traces`] judges trace structure; [`GapState`] is what one shard keeps of it: the
//! tracker, the services it has seen, and per-service gap counts it publishes.

pub mod recent;
pub mod spans;
pub mod traces;

use hashbrown::HashMap;
use spans::TraceSpans;
use std::sync::Arc;
use traces::{TraceGap, TraceTracker, TrackerStats};

/// What completeness tracking observes of one shard batch: the service names its spans and
/// events refer to (by index), the per-service events, and the spans of tracked traces.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// Service names, indexed by [`ServiceEvent::service`] and [`spans::SpanLink::service`].
    pub services: &'a [Box<str>],
    /// Per-service events: metrics and logs reported, invalid spans.
    pub signals: &'a [ServiceEvent],
    /// Spans of the traces this shard tracks, grouped by trace.
    pub spans: &'a TraceSpans,
}

/// What a service's telemetry in one request amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Metric data points received.
    MetricPoints,
    /// Log records received.
    LogRecords,
    /// Spans rejected for an invalid trace or span id.
    InvalidIds,
    /// Entry spans whose end was before their start, or with a missing timestamp.
    InvalidDurations,
    /// Spans whose end time is further from the arrival time than the allowed clock skew.
    ClockSkew,
}

/// A count of one [`EventKind`] from one service.
#[derive(Clone, Copy, Debug)]
pub struct ServiceEvent {
    /// Index into [`Observed::services`].
    pub service: u32,
    /// What was counted.
    pub kind: EventKind,
    /// How many.
    pub items: u64,
}

/// One kind of gap of one service, since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Occurrences: orphan spans, or rootless traces.
    pub count: u64,
    /// Spans affected.
    pub spans: u64,
    /// When first found, Unix nanoseconds (0: never).
    pub first_unix_nanos: u64,
    /// When last found, Unix nanoseconds (0: never).
    pub last_unix_nanos: u64,
}

impl KindCounts {
    fn add(&mut self, count: u64, spans: u64, now: u64) {
        self.count += count;
        self.spans += spans;
        if self.first_unix_nanos == 0 {
            self.first_unix_nanos = now;
        }
        self.last_unix_nanos = self.last_unix_nanos.max(now);
    }

    fn merge(&mut self, o: &KindCounts) {
        self.count += o.count;
        self.spans += o.spans;
        self.first_unix_nanos = match (self.first_unix_nanos, o.first_unix_nanos) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_unix_nanos = self.last_unix_nanos.max(o.last_unix_nanos);
    }
}

/// Gap counts of one service since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GapCounts {
    /// Spans of the service tracked (the base of the gap ratios).
    pub spans: u64,
    /// Metric data points received from the service.
    pub metric_points: u64,
    /// Log records received from the service.
    pub log_records: u64,
    /// When the service's last span arrived, Unix nanoseconds (0: never).
    pub last_span_unix_nanos: u64,
    /// When the service's last metrics or logs arrived, Unix nanoseconds (0: never).
    pub last_signal_unix_nanos: u64,
    /// Spans whose local parent never arrived.
    pub orphans: KindCounts,
    /// Traces with no root and no remote parent (count: traces; spans: their spans).
    pub missing_roots: KindCounts,
    /// Invalid spans of all reasons (count = spans).
    pub invalid: KindCounts,
    /// Of those: invalid trace or span ids (the spans were rejected).
    pub invalid_ids: u64,
    /// Of those: entry spans with end before start or a missing timestamp.
    pub invalid_durations: u64,
    /// Of those: spans whose end time is beyond the allowed clock skew.
    pub clock_skew: u64,
}

impl GapCounts {
    /// When anything last arrived from the service (0: never).
    pub fn last_seen_unix_nanos(&self) -> u64 {
        self.last_span_unix_nanos.max(self.last_signal_unix_nanos)
    }

    /// Adds another shard's counts for the same service.
    pub fn merge(&mut self, o: &GapCounts) {
        self.spans += o.spans;
        self.metric_points += o.metric_points;
        self.log_records += o.log_records;
        self.last_span_unix_nanos = self.last_span_unix_nanos.max(o.last_span_unix_nanos);
        self.last_signal_unix_nanos = self.last_signal_unix_nanos.max(o.last_signal_unix_nanos);
        self.orphans.merge(&o.orphans);
        self.missing_roots.merge(&o.missing_roots);
        self.invalid.merge(&o.invalid);
        self.invalid_ids += o.invalid_ids;
        self.invalid_durations += o.invalid_durations;
        self.clock_skew += o.clock_skew;
    }
}

/// A service's gap counts, as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceGaps {
    /// `service.name`.
    pub service: Arc<str>,
    /// Its counts.
    pub counts: GapCounts,
}

enum Kind {
    Orphan,
    MissingRoot,
}

/// One shard's completeness state.
#[derive(Debug, Default)]
pub struct GapState {
    tracker: Option<TraceTracker>,
    ids: HashMap<Box<str>, u32>,
    names: Vec<Arc<str>>,
    counts: Vec<GapCounts>,
    /// Batch service index → shard service id ([`UNTRACKED`] for a service with no id),
    /// reused between batches.
    remap: Vec<u32>,
    /// A batch's spans without those of services with no id (rare); reused.
    kept: TraceSpans,
    untracked_services: u64,
}

/// The tracker's service id for a service that has none (past [`MAX_SERVICES`]).
const UNTRACKED: u32 = u32::MAX;

/// Counts `spans` spans of `service` seen at `now` (nothing for [`UNTRACKED`]).
fn count_spans(counts: &mut [GapCounts], (service, spans): (u32, u64), now: u64) {
    if let Some(c) = counts.get_mut(service as usize).filter(|_| spans > 0) {
        c.spans += spans;
        c.last_span_unix_nanos = c.last_span_unix_nanos.max(now);
    }
}

/// Most services one shard keeps completeness state for.
pub const MAX_SERVICES: usize = 10_000;

/// Longest service name kept, in bytes (as `limits.max_label_bytes` at its maximum).
pub const MAX_SERVICE_NAME_BYTES: usize = 4096;

impl GapState {
    /// State with `tracker`, or inert when tracking is off.
    pub fn new(tracker: Option<TraceTracker>) -> Self {
        Self {
            tracker,
            ..Self::default()
        }
    }

    /// The id of service `name`, or `None` when [`MAX_SERVICES`] are known already (the
    /// service's telemetry is then counted in `untracked_services`, not tracked).
    fn intern(&mut self, name: &str) -> Option<u32> {
        // Names are labels: cut like every label value, so one huge name cannot take memory.
        let name = crate::sli::key::truncated(name, MAX_SERVICE_NAME_BYTES);
        if let Some(&id) = self.ids.get(name) {
            return Some(id);
        }
        if self.names.len() >= MAX_SERVICES {
            return None;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.into(), id);
        self.names.push(name.into());
        self.counts.push(GapCounts::default());
        Some(id)
    }

    /// Tracks the spans and signals of one batch seen at `now`.
    pub fn observe(&mut self, now: u64, batch: Observed<'_>) {
        if self.tracker.is_none() || (batch.spans.is_empty() && batch.signals.is_empty()) {
            return;
        }
        let mut remap = std::mem::take(&mut self.remap);
        remap.clear();
        for name in batch.services {
            let id = self.intern(name).unwrap_or(UNTRACKED);
            remap.push(id);
        }
        let id_of = |i: u32| remap.get(i as usize).copied().filter(|&id| id != UNTRACKED);
        for sig in batch.signals {
            let Some(c) = id_of(sig.service).and_then(|id| self.counts.get_mut(id as usize)) else {
                self.untracked_services += 1;
                continue;
            };
            match sig.kind {
                EventKind::MetricPoints => {
                    c.metric_points += sig.items;
                    c.last_signal_unix_nanos = c.last_signal_unix_nanos.max(now);
                }
                EventKind::LogRecords => {
                    c.log_records += sig.items;
                    c.last_signal_unix_nanos = c.last_signal_unix_nanos.max(now);
                }
                EventKind::InvalidIds => {
                    c.invalid_ids += sig.items;
                    c.invalid.add(sig.items, sig.items, now);
                }
                EventKind::InvalidDurations => {
                    c.invalid_durations += sig.items;
                    c.invalid.add(sig.items, sig.items, now);
                }
                EventKind::ClockSkew => {
                    c.clock_skew += sig.items;
                    c.invalid.add(sig.items, sig.items, now);
                }
            }
        }
        if let Some(tracker) = self.tracker.as_mut() {
            // Spans come grouped by resource, so a service's spans are counted per run.
            for (index, spans) in batch.spans.service_counts() {
                let service = id_of(index).unwrap_or(UNTRACKED);
                count_spans(&mut self.counts, (service, spans), now);
            }
            if remap.contains(&UNTRACKED) {
                // Past MAX_SERVICES: those services' spans are counted, not tracked.
                let mut kept = std::mem::take(&mut self.kept);
                kept.clear();
                for (group, links) in batch.spans.groups() {
                    for l in links {
                        if id_of(l.service).is_some() {
                            kept.push(group.trace_id(), *l);
                        } else {
                            self.untracked_services += 1;
                        }
                    }
                }
                tracker.observe_spans(now, &kept, &remap);
                self.kept = kept;
            } else {
                tracker.observe_spans(now, batch.spans, &remap);
            }
        }
        self.remap = remap;
    }

    /// Spans and signals not tracked because [`MAX_SERVICES`] services were known.
    pub fn untracked_services(&self) -> u64 {
        self.untracked_services
    }

    /// Judges the traces that timed out by `now`.
    pub fn expire(&mut self, now: u64) {
        let Some(tracker) = self.tracker.as_mut() else {
            return;
        };
        let counts = &mut self.counts;
        tracker.expire(now, |gap| {
            let (service, kind, spans) = match gap {
                TraceGap::Orphan { service } => (service, Kind::Orphan, 1),
                TraceGap::MissingRoot { service, spans } => {
                    (service, Kind::MissingRoot, u64::from(spans))
                }
            };
            if let Some(c) = counts.get_mut(service as usize) {
                match kind {
                    Kind::Orphan => c.orphans.add(1, spans, now),
                    Kind::MissingRoot => c.missing_roots.add(1, spans, now),
                }
            }
        });
    }

    /// Every service seen, with its counts.
    pub fn snapshot(&self) -> Vec<ServiceGaps> {
        self.names
            .iter()
            .zip(&self.counts)
            .map(|(n, c)| ServiceGaps {
                service: Arc::clone(n),
                counts: *c,
            })
            .collect()
    }

    /// Tracker counters (zero when tracking is off).
    pub fn stats(&self) -> TrackerStats {
        self.tracker
            .as_ref()
            .map(TraceTracker::stats)
            .unwrap_or_default()
    }

    /// Traces being tracked.
    pub fn tracked_traces(&self) -> usize {
        self.tracker.as_ref().map_or(0, TraceTracker::len)
    }

    /// Approximate bytes the trace tracker holds.
    pub fn tracker_bytes(&self) -> usize {
        self.tracker.as_ref().map_or(0, TraceTracker::bytes)
    }
}
