//! The series table a shard owns: one entry per (service, feature, dimensions) key, with
//! all-time counters, exported histogram buckets and rolling windows, bounded by the
//! cardinality guard. Plain synchronous code, driven by the shard worker; no locks.

use crate::sli::classify::{Observation, SpanIds};
use crate::sli::exemplar::{Exemplar, Exemplars};
use crate::sli::hist::{Layout, SparseHist};
use crate::sli::key;
use crate::sli::matcher::FeatureMatch;
use crate::sli::window::{Window, Windows};
use hashbrown::HashTable;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Quantiles reported for every window, in this order.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Label value of the overflow series' service and feature.
pub const OVERFLOW: &str = "__overflow__";

/// Settings shared by all series of all shards.
#[derive(Debug)]
pub struct SeriesSettings {
    /// Histogram bucket layout.
    pub layout: Layout,
    /// Upper bounds of the exported histogram buckets, nanoseconds, ascending.
    pub bounds_ns: Vec<u64>,
    /// Most series across all shards.
    pub max_series: usize,
    /// Number of label values in a key (service, feature, dimensions).
    pub label_count: usize,
    /// Series currently alive across all shards.
    pub active: AtomicUsize,
    /// A series with no data for this many 10-second slots is dropped; `None`: never.
    pub expiry_slots: Option<u64>,
    /// When the process started, Unix nanoseconds (see [`SeriesTable::record_metric`]).
    pub started_unix_nanos: u64,
    /// Keep example requests per series (`sli.exemplars.enabled`).
    pub exemplars: bool,
    /// Snapshots of every series carry their window histograms.
    pub window_hists: bool,
    /// The scope (service, feature pattern) of each SLO, by SLO index; each series knows
    /// which of them it counts toward.
    slo_scopes: Vec<(String, FeatureMatch)>,
    /// SLO indices by service, so matching a request folded into the overflow series (done
    /// per request) only tries its own service's SLOs.
    slos_by_service: std::collections::HashMap<String, Vec<u16>>,
}

impl SeriesSettings {
    /// Settings for series keyed by `label_count` labels, exporting histogram buckets with
    /// the given upper bounds in seconds. Series never expire unless [`Self::with_expiry`].
    pub fn new(
        layout: Layout,
        bounds_seconds: &[f64],
        max_series: usize,
        label_count: usize,
    ) -> Self {
        Self {
            layout,
            bounds_ns: bounds_seconds
                .iter()
                .map(|s| (s * 1e9).round() as u64)
                .collect(),
            max_series,
            label_count,
            active: AtomicUsize::new(0),
            expiry_slots: None,
            started_unix_nanos: 0,
            exemplars: false,
            window_hists: false,
            slo_scopes: Vec::new(),
            slos_by_service: Default::default(),
        }
    }

    /// Sets the scopes (service, feature pattern) of the SLOs series are matched against,
    /// in SLO order.
    pub fn with_slos(mut self, scopes: impl IntoIterator<Item = (String, FeatureMatch)>) -> Self {
        self.slo_scopes = scopes.into_iter().collect();
        self.slos_by_service.clear();
        for (i, (service, _)) in self.slo_scopes.iter().enumerate() {
            if let Ok(i) = u16::try_from(i) {
                self.slos_by_service
                    .entry(service.clone())
                    .or_default()
                    .push(i);
            }
        }
        self
    }

    /// Whether any SLO is configured.
    pub fn has_slos(&self) -> bool {
        !self.slo_scopes.is_empty()
    }

    /// Indices of the SLOs covering `service`/`feature`.
    pub fn slo_matches(&self, service: &str, feature: &str) -> Box<[u16]> {
        let mut out = Vec::new();
        self.slo_matches_into(service, feature, &mut out);
        out.into_boxed_slice()
    }

    /// Like [`SeriesSettings::slo_matches`], into `out` (cleared first): no allocation once
    /// `out` has grown, for the per-request matching of overflowed requests.
    pub fn slo_matches_into(&self, service: &str, feature: &str, out: &mut Vec<u16>) {
        out.clear();
        let Some(candidates) = self.slos_by_service.get(service) else {
            return;
        };
        out.extend(candidates.iter().copied().filter(|&i| {
            self.slo_scopes
                .get(usize::from(i))
                .is_some_and(|(_, f)| f.matches(feature))
        }));
    }

    /// Keeps example requests per series when `on` ([`crate::sli::exemplar`]).
    pub fn with_exemplars(mut self, on: bool) -> Self {
        self.exemplars = on;
        self
    }

    /// Makes every series' snapshot carry its window histograms, so readers can merge
    /// series (the flag series of one variant across features).
    pub fn with_window_hists(mut self, on: bool) -> Self {
        self.window_hists = on;
        self
    }

    /// Records when the process started.
    pub fn with_start(mut self, unix_nanos: u64) -> Self {
        self.started_unix_nanos = unix_nanos;
        self
    }

    /// Drops series idle for `idle` (rounded up to whole 10-second slots); `None` or zero:
    /// never.
    pub fn with_expiry(mut self, idle: Option<std::time::Duration>) -> Self {
        self.expiry_slots = idle.filter(|d| !d.is_zero()).map(|d| {
            d.as_secs()
                .div_ceil(crate::sli::window::SLOT_SECONDS)
                .max(1)
        });
        self
    }
}

/// One window of a published series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowSnapshot {
    /// Requests in the window.
    pub requests: u64,
    /// Bad requests in the window.
    pub errors: u64,
    /// Requests in the window estimated from sampled spans (= `requests` when unsampled).
    pub est_requests: f64,
    /// Requests in the window counted by request metrics.
    pub metric_requests: u64,
    /// Bad requests in the window, estimated likewise.
    pub est_errors: f64,
    /// Latency quantiles in nanoseconds ([`QUANTILES`]); `None` when the window is empty.
    pub quantiles_ns: [Option<u64>; 4],
}

/// A request-metric data point, reduced to what coverage needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricPoint {
    /// Identity of the point's stream (service, metric, attributes).
    pub stream: u64,
    /// Cumulative (else delta) temporality.
    pub cumulative: bool,
    /// Start of the aggregation period, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// Requests counted.
    pub count: u64,
    /// Which request metric ([`crate::otlp::scan::REQUEST_METRICS`] index; lower is preferred).
    pub metric: u8,
}

/// Most cumulative metric streams followed per series (e.g. one per status code); points
/// of further cumulative streams are not counted (delta points always are).
const MAX_STREAMS: usize = 64;

/// Requests flagged for a data-quality reason, with when that was first and last seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flagged {
    /// Flagged requests since the series was created.
    pub count: u64,
    /// Start of the 10-second slot of the first one, Unix nanoseconds (0: none).
    pub first_unix_nanos: u64,
    /// Start of the 10-second slot of the last one, Unix nanoseconds (0: none).
    pub last_unix_nanos: u64,
}

impl Flagged {
    fn note(&mut self, slot: u64) {
        let t = slot.saturating_mul(crate::sli::window::SLOT_SECONDS * 1_000_000_000);
        if self.count == 0 {
            self.first_unix_nanos = t;
        }
        self.count += 1;
        self.last_unix_nanos = self.last_unix_nanos.max(t);
    }

    /// Adds another series' flagged requests (same labels, other shard).
    pub fn merge(&mut self, o: &Flagged) {
        if self.count == 0 {
            self.first_unix_nanos = o.first_unix_nanos;
        } else if o.count > 0 {
            self.first_unix_nanos = self.first_unix_nanos.min(o.first_unix_nanos);
        }
        self.count += o.count;
        self.last_unix_nanos = self.last_unix_nanos.max(o.last_unix_nanos);
    }
}

/// What readers see of one series at the last flush.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSnapshot {
    /// Label values: service, feature, then dimensions.
    pub labels: Arc<[Box<str>]>,
    /// Requests since the series was created.
    pub requests_total: u64,
    /// Bad requests since the series was created.
    pub errors_total: u64,
    /// Requests since the series was created, estimated from sampled spans.
    pub est_requests_total: f64,
    /// Bad requests since the series was created, estimated from sampled spans.
    pub est_errors_total: f64,
    /// Sum of request durations, nanoseconds.
    pub duration_sum_ns: u128,
    /// Per exported bucket (non-cumulative), the last entry is `+Inf`.
    pub buckets: Box<[u64]>,
    /// Windows in [`Window::ALL`] order.
    pub windows: [WindowSnapshot; 4],
    /// Requests whose feature fell back to the span name or whose service is unknown.
    pub unattributed: Flagged,
    /// Requests counted by request metrics since the series was created.
    pub metric_requests_total: u64,
    /// The window histograms, for readers that merge series: kept by the overflow series
    /// (readers merge the shards' overflow series) and by every series of a table whose
    /// settings ask for them ([`SeriesSettings::with_window_hists`]); else `None`.
    pub window_hists: Option<Box<[SparseHist; 4]>>,
    /// This is the cardinality overflow series.
    pub overflow: bool,
    /// Example requests (sampled spans only); `None` when exemplars are off, for the
    /// overflow series, and until the first sampled request.
    pub exemplars: Option<Arc<Exemplars>>,
}

impl SeriesSnapshot {
    /// The service label.
    pub fn service(&self) -> &str {
        self.labels.first().map(|s| &**s).unwrap_or("")
    }
    /// The feature label.
    pub fn feature(&self) -> &str {
        self.labels.get(1).map(|s| &**s).unwrap_or("")
    }
    /// True for the cardinality overflow series.
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }
}

struct Series {
    key: Box<[u8]>,
    hash: u64,
    labels: Arc<[Box<str>]>,
    requests: u64,
    errors: u64,
    est_requests: f64,
    est_errors: f64,
    sum_ns: u128,
    buckets: Box<[u64]>,
    windows: Windows,
    /// Slot of the last recorded request, for expiry.
    last_slot: u64,
    unattributed: Flagged,
    /// Requests counted by request metrics since the series was created.
    metric_requests: u64,
    /// Cumulative metric streams: (stream, start, last count).
    streams: Vec<(u64, u64, u64)>,
    /// The most preferred request metric seen (index; `u8::MAX`: none yet).
    best_metric: u8,
    dirty: bool,
    published: Option<Arc<SeriesSnapshot>>,
    /// Indices of the SLOs this series counts toward.
    slos: Box<[u16]>,
    /// Example requests (a snapshot takes a copy: no atomic on the recording path).
    exemplars: Option<Box<Exemplars>>,
}

impl Series {
    fn new(key: &[u8], hash: u64, settings: &SeriesSettings, slot: u64) -> Self {
        let labels: Arc<[Box<str>]> = key::labels(key).map(Box::from).collect();
        let slos = match (labels.first(), labels.get(1)) {
            (Some(service), Some(feature)) if settings.has_slos() => {
                settings.slo_matches(service, feature)
            }
            _ => Box::default(),
        };
        Self {
            slos,
            key: key.into(),
            hash,
            labels,
            requests: 0,
            errors: 0,
            est_requests: 0.0,
            est_errors: 0.0,
            sum_ns: 0,
            buckets: vec![0; settings.bounds_ns.len() + 1].into_boxed_slice(),
            windows: Windows::new(slot),
            last_slot: slot,
            unattributed: Flagged::default(),
            metric_requests: 0,
            streams: Vec::new(),
            best_metric: u8::MAX,
            dirty: true,
            published: None,
            exemplars: None,
        }
    }

    /// Records `obs`; with `ids`, keeps it as an example request too.
    #[inline]
    fn record(
        &mut self,
        obs: &Observation,
        settings: &SeriesSettings,
        slot: u64,
        ids: Option<&SpanIds>,
    ) {
        self.windows.advance(slot);
        self.last_slot = self.last_slot.max(slot);
        if obs.unattributed {
            self.unattributed.note(slot);
        }
        let d = obs.duration_ns;
        self.windows
            .record(obs.bad, settings.layout.index_of(d), obs.weight);
        self.requests += 1;
        self.errors += u64::from(obs.bad);
        self.est_requests += obs.weight;
        if obs.bad {
            self.est_errors += obs.weight;
        }
        self.sum_ns += u128::from(d);
        let b = settings.bounds_ns.partition_point(|&bound| bound < d);
        if let Some(c) = self.buckets.get_mut(b) {
            *c += 1;
        }
        if let Some(ids) = ids {
            let n = self.buckets.len();
            self.exemplars
                .get_or_insert_with(|| Box::new(Exemplars::new(n)))
                .record(
                    b,
                    Exemplar {
                        trace_id: ids.trace_id,
                        span_id: ids.span_id,
                        duration_ns: d,
                        end_unix_nanos: obs.end_unix_nanos,
                        reason: obs.reason,
                    },
                );
        }
        self.dirty = true;
    }

    fn snapshot(
        &mut self,
        settings: &SeriesSettings,
        overflow: bool,
        scratch: &mut crate::sli::window::Slot,
    ) -> Arc<SeriesSnapshot> {
        if let (false, Some(p)) = (self.dirty, &self.published) {
            return Arc::clone(p);
        }
        let mut windows: [WindowSnapshot; 4] = Default::default();
        let mut hists: [SparseHist; 4] = Default::default();
        let keep = overflow || settings.window_hists;
        for w in Window::ALL {
            let mut q = [None; 4];
            if keep {
                // Readers merge the shards' overflow series, so it keeps its histograms.
                self.windows.read(w, scratch);
                scratch
                    .hist
                    .values_at_quantiles(&settings.layout, &QUANTILES, &mut q);
            } else {
                self.windows
                    .read_quantiles(w, &settings.layout, &QUANTILES, scratch, &mut q);
            }
            windows[w.index()] = WindowSnapshot {
                requests: scratch.requests,
                errors: scratch.errors,
                est_requests: scratch.est_requests,
                est_errors: scratch.est_errors,
                metric_requests: scratch.metric_requests,
                quantiles_ns: q,
            };
            if keep {
                hists[w.index()] = scratch.hist.clone();
            }
        }
        let snap = Arc::new(SeriesSnapshot {
            labels: Arc::clone(&self.labels),
            requests_total: self.requests,
            errors_total: self.errors,
            est_requests_total: self.est_requests,
            est_errors_total: self.est_errors,
            duration_sum_ns: self.sum_ns,
            buckets: self.buckets.clone(),
            windows,
            unattributed: self.unattributed,
            metric_requests_total: self.metric_requests,
            window_hists: keep.then(|| Box::new(hists)),
            overflow,
            exemplars: self.exemplars.as_ref().map(|e| Arc::new((**e).clone())),
        });
        self.published = Some(Arc::clone(&snap));
        self.dirty = false;
        snap
    }

    /// The requests a metric point adds: deltas as they are; cumulative points as the
    /// increase since the stream's previous point, the whole count after a reset (a new
    /// start time or a smaller count).
    fn metric_delta(&mut self, p: &MetricPoint, started_unix_nanos: u64) -> u64 {
        if !p.cumulative {
            return p.count;
        }
        let full = self.streams.len() >= MAX_STREAMS;
        match self.streams.iter_mut().find(|(id, _, _)| *id == p.stream) {
            Some((_, start, last)) => {
                let delta = if *start == p.start_unix_nanos && p.count >= *last {
                    p.count - *last
                } else {
                    p.count
                };
                (*start, *last) = (p.start_unix_nanos, p.count);
                delta
            }
            // Without room to follow the stream, its increases cannot be told apart from
            // its totals: it is not counted at all rather than counted many times over.
            None if full => 0,
            None => {
                self.streams.push((p.stream, p.start_unix_nanos, p.count));
                if p.start_unix_nanos >= started_unix_nanos {
                    p.count
                } else {
                    0
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.streams.capacity() * 24
            + self.key.len()
            + self.labels.iter().map(|l| l.len() + 16).sum::<usize>()
            + self.buckets.len() * 8
            + self.windows.heap_bytes()
            + self.exemplars.as_ref().map_or(0, |e| e.memory_bytes())
    }
}

/// The series of `key`, created if the cardinality guard admits it, else the overflow
/// series (then `true`).
fn series_for<'t>(
    settings: &SeriesSettings,
    table: &'t mut HashTable<Series>,
    overflow: &'t mut Option<Series>,
    overflow_key: &[u8],
    (hash, key, slot): (u64, &[u8], u64),
) -> (&'t mut Series, bool) {
    match table.entry(hash, |s| *s.key == *key, |s| s.hash) {
        hashbrown::hash_table::Entry::Occupied(e) => (e.into_mut(), false),
        hashbrown::hash_table::Entry::Vacant(v) => {
            let admitted = *key != *overflow_key
                && settings
                    .active
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < settings.max_series).then_some(n + 1)
                    })
                    .is_ok();
            if admitted {
                (
                    v.insert(Series::new(key, hash, settings, slot)).into_mut(),
                    false,
                )
            } else {
                let series = overflow.get_or_insert_with(|| {
                    Series::new(overflow_key, key::hash_key(overflow_key), settings, slot)
                });
                (series, true)
            }
        }
    }
}

/// One shard's series.
pub struct SeriesTable {
    settings: Arc<SeriesSettings>,
    table: HashTable<Series>,
    overflow: Option<Series>,
    /// The overflow series' key; a client series with exactly these labels is folded into it
    /// too, so two series never share labels.
    overflow_key: Box<[u8]>,
    overflow_spans: u64,
    expired: u64,
    scratch: crate::sli::window::Slot,
    /// SLO matches of the last request folded into the overflow series (reused).
    overflow_slos: Vec<u16>,
}

impl std::fmt::Debug for SeriesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesTable")
            .field("series", &self.table.len())
            .field("overflow_spans", &self.overflow_spans)
            .finish()
    }
}

impl SeriesTable {
    /// An empty table using the shared settings.
    pub fn new(settings: Arc<SeriesSettings>) -> Self {
        let mut labels = vec![OVERFLOW, OVERFLOW];
        labels.resize(settings.label_count.max(2), "");
        let overflow_key = key::encode(labels, usize::MAX).into_boxed_slice();
        Self {
            settings,
            table: HashTable::new(),
            overflow: None,
            overflow_key,
            overflow_spans: 0,
            expired: 0,
            scratch: Default::default(),
            overflow_slos: Vec::new(),
        }
    }

    /// Records one observation for the series `key` (hash `hash`) at time slot `slot`.
    /// Returns the indices of the SLOs the request counts toward: those of its own labels
    /// even when the cardinality guard folded it into the overflow series.
    #[inline]
    pub fn record(&mut self, hash: u64, key: &[u8], obs: &Observation, slot: u64) -> &[u16] {
        self.record_with(hash, key, obs, None, slot)
    }

    /// [`SeriesTable::record`] of a span with ids `ids`, kept as an example request when
    /// examples are on and the span was sampled.
    #[inline]
    pub fn record_with(
        &mut self,
        hash: u64,
        key: &[u8],
        obs: &Observation,
        ids: Option<&SpanIds>,
        slot: u64,
    ) -> &[u16] {
        let settings = &*self.settings;
        let (series, overflowed) = series_for(
            settings,
            &mut self.table,
            &mut self.overflow,
            &self.overflow_key,
            (hash, key, slot),
        );
        let ids = ids.filter(|i| settings.exemplars && i.sampled && !overflowed);
        series.record(obs, settings, slot, ids);
        self.overflow_spans += u64::from(overflowed);
        if !overflowed {
            return &series.slos;
        }
        let mut labels = key::labels(key);
        match (labels.next(), labels.next()) {
            (Some(service), Some(feature)) if settings.has_slos() => {
                settings.slo_matches_into(service, feature, &mut self.overflow_slos);
            }
            _ => self.overflow_slos.clear(),
        }
        &self.overflow_slos
    }

    /// Adds the requests a request-metric data point counts to the series `key`.
    /// A cumulative stream first seen here counts whole only if it started after this
    /// process did ([`SeriesSettings::started_unix_nanos`]): its earlier history is unknown.
    pub fn record_metric(&mut self, hash: u64, key: &[u8], point: &MetricPoint, slot: u64) {
        let settings = &*self.settings;
        // Only series that spans created: metrics alone never take a place under the
        // series limit (a service with metrics and no spans is a service-level gap).
        let Some(series) = self.table.find_mut(hash, |s| *s.key == *key) else {
            return;
        };
        // An SDK may export the stable and the older HTTP metric side by side: count one,
        // the most preferred seen.
        if point.metric > series.best_metric {
            return;
        }
        series.best_metric = point.metric;
        let delta = series.metric_delta(point, settings.started_unix_nanos);
        series.last_slot = series.last_slot.max(slot);
        if delta > 0 {
            series.windows.advance(slot);
            series.windows.record_metric(delta);
            series.metric_requests = series.metric_requests.saturating_add(delta);
            series.dirty = true;
        }
    }

    /// Whether the series `key` (hash `hash`) exists (not counting the overflow series).
    #[inline]
    pub fn contains(&self, hash: u64, key: &[u8]) -> bool {
        self.table.find(hash, |s| *s.key == *key).is_some()
    }

    /// Every series (not the overflow series) with its labels and windows.
    pub fn each(&self) -> impl Iterator<Item = (&[Box<str>], &Windows)> {
        self.table.iter().map(|s| (&*s.labels, &s.windows))
    }

    /// Moves every series' windows to `slot` and drops series idle past the expiry.
    pub fn advance(&mut self, slot: u64) {
        for s in self.table.iter_mut().chain(self.overflow.as_mut()) {
            if s.windows.advance(slot) {
                s.dirty = true;
            }
        }
        if let Some(expiry) = self.settings.expiry_slots {
            let idle = |s: &Series| slot.saturating_sub(s.last_slot) > expiry;
            let before = self.table.len();
            self.table.retain(|s| !idle(s));
            let removed = before - self.table.len();
            if removed > 0 {
                self.settings.active.fetch_sub(removed, Ordering::Relaxed);
                self.expired += removed as u64;
            }
            if self.overflow.as_ref().is_some_and(idle) {
                self.overflow = None;
            }
        }
    }

    /// Series dropped by expiry so far.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Snapshots of all series, reusing the previous snapshot of unchanged ones.
    pub fn snapshot(&mut self) -> Vec<Arc<SeriesSnapshot>> {
        let settings = &*self.settings;
        let scratch = &mut self.scratch;
        let mut out = Vec::with_capacity(self.table.len() + 1);
        for s in self.table.iter_mut() {
            out.push(s.snapshot(settings, false, scratch));
        }
        if let Some(o) = self.overflow.as_mut() {
            out.push(o.snapshot(settings, true, scratch));
        }
        out
    }

    /// Series in this shard (not counting the overflow series).
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when the shard has no series.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.overflow.is_none()
    }

    /// Spans folded into the overflow series so far.
    pub fn overflow_spans(&self) -> u64 {
        self.overflow_spans
    }

    /// Approximate bytes held by the series (heap plus table slots), for memory reporting.
    pub fn memory_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<Series>()
            + self
                .table
                .iter()
                .chain(self.overflow.as_ref())
                .map(Series::heap_bytes)
                .sum::<usize>()
    }
}

impl Drop for SeriesTable {
    fn drop(&mut self) {
        self.settings
            .active
            .fetch_sub(self.table.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: usize) -> Arc<SeriesSettings> {
        Arc::new(SeriesSettings::new(
            Layout::new(2).expect("layout"),
            &[0.01, 0.1, 1.0],
            max,
            2,
        ))
    }

    fn obs(bad: bool, ms: u64) -> Observation {
        Observation {
            bad,
            duration_ns: ms * 1_000_000,
            invalid_duration: false,
            unattributed: false,
            weight: 1.0,
            ..Observation::default()
        }
    }

    fn rec(t: &mut SeriesTable, labels: [&str; 2], o: Observation) {
        let k = key::encode(labels, 256);
        t.record(key::hash_key(&k), &k, &o, 1000);
    }

    /// The memory target, guarded deterministically: a series at 2 requests per second for
    /// 62 minutes (every window and ring populated), with typical latencies (log-normal
    /// around 50 ms) and with latencies spread evenly over three decades, holds at most
    /// 15 KiB; the published snapshot adds about 0.7 KiB (`benches/memory.rs`), for ≤ 16 KiB.
    #[test]
    fn a_busy_series_stays_within_its_memory_budget() {
        let settings = Arc::new(SeriesSettings::new(
            Layout::new(2).expect("layout"),
            &crate::settings::DEFAULT_BUCKETS,
            100,
            2,
        ));
        for wide in [false, true] {
            let mut t = SeriesTable::new(Arc::clone(&settings));
            let mut rng = crate::otlp::synth::Rng::new(11);
            let mut unit = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let keys: Vec<Vec<u8>> = (0..4)
                .map(|i| key::encode(["svc", &format!("GET /r{i}")], 256))
                .collect();
            let start = 30 * 6_000_000;
            for slot in start..start + 372 {
                t.advance(slot);
                for k in &keys {
                    for _ in 0..20 {
                        let ns = if wide {
                            1e6 * 1000f64.powf(unit())
                        } else {
                            let z = (-2.0 * unit().ln()).sqrt()
                                * (std::f64::consts::TAU * unit()).cos();
                            50e6 * (0.5 * z).exp()
                        };
                        let o = Observation {
                            duration_ns: ns as u64,
                            ..obs(unit() < 0.05, 0)
                        };
                        t.record(key::hash_key(k), k, &o, slot);
                    }
                }
            }
            let snaps = t.snapshot();
            assert_eq!(
                snaps.iter().map(|s| s.requests_total).sum::<u64>(),
                4 * 20 * 372
            );
            let per_series = t.memory_bytes() / keys.len();
            assert!(
                per_series <= 15 * 1024,
                "wide {wide}: {per_series} bytes per series"
            );
        }
    }

    #[test]
    fn slo_matches_hold_for_overflowed_requests_too() {
        // The scopes of three SLOs: "all" (a, *), "gets" (a, GET *), "other" (b, *).
        let slos = [("a", "*"), ("a", "GET *"), ("b", "*")]
            .map(|(service, feature)| (service.to_string(), FeatureMatch::new(feature)));
        let settings = Arc::new(
            SeriesSettings::new(Layout::new(2).expect("layout"), &[0.1], 1, 2).with_slos(slos),
        );
        let mut t = SeriesTable::new(settings);
        let mut matches = |labels: [&str; 2]| {
            let k = key::encode(labels, 256);
            t.record(key::hash_key(&k), &k, &obs(false, 1), 1000)
                .to_vec()
        };
        assert_eq!(matches(["a", "GET /x"]), vec![0, 1]);
        // The series limit (1) is reached: folded into the overflow series, still counted.
        assert_eq!(matches(["a", "POST /y"]), vec![0]);
        assert_eq!(matches(["b", "GET /x"]), vec![2]);
        assert_eq!(matches(["c", "GET /x"]), Vec::<u16>::new());
        assert_eq!(t.overflow_spans(), 3);
    }

    #[test]
    fn counts_and_buckets_per_series() {
        let mut t = SeriesTable::new(settings(10));
        rec(&mut t, ["a", "GET /x"], obs(false, 5));
        rec(&mut t, ["a", "GET /x"], obs(true, 50));
        rec(&mut t, ["a", "GET /x"], obs(false, 5000));
        rec(&mut t, ["b", "GET /x"], obs(false, 10));
        let snaps = t.snapshot();
        assert_eq!(snaps.len(), 2);
        let a = snaps.iter().find(|s| s.service() == "a").expect("series a");
        assert_eq!((a.requests_total, a.errors_total), (3, 1));
        assert_eq!(&*a.buckets, &[1, 1, 0, 1]);
        assert_eq!(a.duration_sum_ns, 5_055_000_000);
        let b = snaps.iter().find(|s| s.service() == "b").expect("series b");
        assert_eq!(&*b.buckets, &[1, 0, 0, 0], "le is inclusive");
        let all = &a.windows[Window::All.index()];
        assert_eq!((all.requests, all.errors), (3, 1));
        assert!(all.quantiles_ns[0].is_some());
    }

    #[test]
    fn unchanged_series_reuse_their_snapshot() {
        let mut t = SeriesTable::new(settings(10));
        rec(&mut t, ["a", "f"], obs(false, 1));
        let first = t.snapshot();
        let second = t.snapshot();
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        rec(&mut t, ["a", "f"], obs(false, 1));
        let third = t.snapshot();
        assert!(!Arc::ptr_eq(&first[0], &third[0]));
        assert_eq!(third[0].requests_total, 2);
    }

    #[test]
    fn idle_series_expire_and_free_their_place() {
        let s = Arc::new(
            SeriesSettings::new(Layout::new(2).expect("layout"), &[0.1], 2, 2)
                .with_expiry(Some(std::time::Duration::from_secs(60))),
        );
        let mut t = SeriesTable::new(Arc::clone(&s));
        let at = |t: &mut SeriesTable, f: &str, slot: u64| {
            let k = key::encode(["svc", f], 256);
            t.record(key::hash_key(&k), &k, &obs(false, 1), slot);
        };
        at(&mut t, "old", 100);
        at(&mut t, "busy", 100);
        at(&mut t, "busy", 105);
        t.advance(106);
        assert_eq!(t.len(), 2, "60 s idle is not past the expiry");
        t.advance(107);
        assert_eq!(t.len(), 1, "old expired after 70 s idle");
        assert_eq!((t.expired(), s.active.load(Ordering::Relaxed)), (1, 1));
        at(&mut t, "new", 107);
        assert_eq!(t.len(), 2, "the freed place is available");
        assert_eq!(t.overflow_spans(), 0);
    }

    #[test]
    fn metric_points_count_deltas_cumulative_increases_and_resets() {
        let settings = Arc::new(
            SeriesSettings::new(Layout::new(2).expect("layout"), &[0.1], 10, 2).with_start(1_000),
        );
        let mut t = SeriesTable::new(settings);
        let k = key::encode(["svc", "GET /x"], 256);
        let h = key::hash_key(&k);
        let point = |stream, cumulative, start, count| MetricPoint {
            stream,
            cumulative,
            start_unix_nanos: start,
            count,
            metric: 0,
        };
        // Metric points only add to series that spans created.
        t.record_metric(h, &k, &point(1, true, 2_000, 50), 100);
        assert!(t.is_empty(), "no series from metrics alone");
        t.record(h, &k, &obs(false, 1), 100);
        let total = |t: &mut SeriesTable| t.snapshot()[0].metric_requests_total;
        // A cumulative stream that started after this process: counted whole, then by increase.
        t.record_metric(h, &k, &point(1, true, 2_000, 50), 100);
        assert_eq!(total(&mut t), 50);
        t.record_metric(h, &k, &point(1, true, 2_000, 80), 100);
        assert_eq!(total(&mut t), 80);
        // A reset (new start time, smaller count): the new count is all new requests.
        t.record_metric(h, &k, &point(1, true, 9_000, 5), 100);
        assert_eq!(total(&mut t), 85);
        // A counter that went down without a new start is a reset too.
        t.record_metric(h, &k, &point(1, true, 9_000, 3), 100);
        assert_eq!(total(&mut t), 88);
        // A stream that started before this process: its history is unknown, baseline only.
        t.record_metric(h, &k, &point(2, true, 500, 1_000), 100);
        assert_eq!(total(&mut t), 88);
        t.record_metric(h, &k, &point(2, true, 500, 1_010), 100);
        assert_eq!(total(&mut t), 98);
        // Deltas count as they are.
        t.record_metric(h, &k, &point(3, false, 0, 7), 100);
        t.record_metric(h, &k, &point(3, false, 0, 7), 100);
        assert_eq!(total(&mut t), 112);
        let snap = t.snapshot();
        assert_eq!(snap[0].windows[Window::M1.index()].metric_requests, 112);
        assert_eq!(snap[0].requests_total, 1, "metrics are not spans");
        // Past MAX_STREAMS cumulative streams, new ones are not counted (not over-counted).
        for id in 10..10 + MAX_STREAMS as u64 {
            t.record_metric(h, &k, &point(id, true, 2_000, 1), 100);
        }
        let before = total(&mut t);
        t.record_metric(h, &k, &point(999, true, 2_000, 40), 100);
        t.record_metric(h, &k, &point(999, true, 2_000, 40), 100);
        assert_eq!(total(&mut t), before);
        // A less preferred metric (the older HTTP one) is ignored once the stable one is seen.
        let old = MetricPoint {
            metric: 1,
            ..point(5000, false, 0, 9)
        };
        t.record_metric(h, &k, &old, 100);
        assert_eq!(total(&mut t), before);
    }

    #[test]
    fn client_series_named_like_overflow_joins_it() {
        let mut t = SeriesTable::new(settings(10));
        rec(&mut t, [OVERFLOW, OVERFLOW], obs(false, 1));
        rec(&mut t, ["a", "b"], obs(false, 1));
        let snaps = t.snapshot();
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps.iter().filter(|s| s.is_overflow()).count(), 1);
    }

    #[test]
    fn cardinality_guard_folds_into_overflow() {
        let s = settings(2);
        let mut t = SeriesTable::new(Arc::clone(&s));
        for f in ["a", "b", "c", "d"] {
            rec(&mut t, ["svc", f], obs(false, 1));
        }
        rec(&mut t, ["svc", "a"], obs(false, 1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.overflow_spans(), 2);
        let snaps = t.snapshot();
        let o = snaps.iter().find(|s| s.is_overflow()).expect("overflow");
        assert_eq!((o.service(), o.feature()), (OVERFLOW, OVERFLOW));
        assert_eq!(o.requests_total, 2);
        assert_eq!(s.active.load(Ordering::Relaxed), 2);
        drop(t);
        assert_eq!(s.active.load(Ordering::Relaxed), 0);
    }
}
