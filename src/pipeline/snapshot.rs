//! What shards publish on every flush and how readers combine them.
//!
//! Each shard swaps in a new [`ShardSnapshot`] (an `arc-swap` pointer, so readers never
//! block the shard). A [`View`] combines the shards for one read: series are disjoint across
//! shards except the overflow series, which is merged here from its histograms.

use crate::completeness::traces::TrackerStats;
use crate::completeness::ServiceGaps;
use crate::sli::flag_table::FlagOverflow;
use crate::sli::hist::{merge_into, Layout, SparseHist};
use crate::sli::series::{SeriesSnapshot, WindowSnapshot, QUANTILES};
use std::sync::Arc;

/// One shard's published state.
#[derive(Clone, Debug, Default)]
pub struct ShardSnapshot {
    /// All series of the shard, including its overflow series if any.
    pub series: Vec<Arc<SeriesSnapshot>>,
    /// Spans folded into the overflow series since start.
    pub overflow_spans: u64,
    /// Series dropped after being idle past `limits.series_expiry`, since start.
    pub expired_series: u64,
    /// Per-service completeness gaps found by this shard.
    pub gaps: Vec<ServiceGaps>,
    /// Trace tracker counters.
    pub trace_stats: TrackerStats,
    /// Traces being tracked.
    pub tracked_traces: usize,
    /// Approximate bytes the trace tracker holds.
    pub tracker_bytes: usize,
    /// Spans and signals not tracked because the shard knew too many services.
    pub untracked_service_items: u64,
    /// Approximate bytes held by the shard's series.
    pub memory_bytes: usize,
    /// Clock time of the flush, Unix nanoseconds.
    pub flushed_at_unix_nanos: u64,
    /// The shard's flag series (service, feature, flag, variant), with their overflow series.
    pub flags: Vec<Arc<SeriesSnapshot>>,
    /// Flag evaluations the flag caps turned away, since start.
    pub flag_overflow: FlagOverflow,
    /// Flags the shard tracks.
    pub tracked_flags: usize,
}

/// All shards combined, for one read.
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Every series, the overflow series merged into one, sorted by labels.
    pub series: Vec<Arc<SeriesSnapshot>>,
    /// Spans folded into the overflow series since start.
    pub overflow_spans: u64,
    /// Series alive, not counting the overflow series.
    pub active_series: usize,
    /// Series dropped after being idle past `limits.series_expiry`, since start.
    pub expired_series: u64,
    /// Completeness gaps per service (all shards), sorted by service.
    pub gaps: Vec<ServiceGaps>,
    /// Trace tracker counters, all shards.
    pub trace_stats: TrackerStats,
    /// Traces being tracked, all shards.
    pub tracked_traces: usize,
    /// Approximate bytes the trace trackers hold, all shards.
    pub tracker_bytes: usize,
    /// Spans and signals not tracked because a shard knew too many services.
    pub untracked_service_items: u64,
    /// Approximate bytes held by all series.
    pub memory_bytes: usize,
    /// Oldest flush time among the shards, Unix nanoseconds.
    pub flushed_at_unix_nanos: u64,
    /// Every flag series, the flag overflow series merged into one, sorted by labels.
    pub flags: Vec<Arc<SeriesSnapshot>>,
    /// Flag evaluations the flag caps turned away, since start.
    pub flag_overflow: FlagOverflow,
    /// Flags tracked, all shards.
    pub tracked_flags: usize,
}

impl View {
    /// Combines shard snapshots.
    pub fn combine(shards: &[Arc<ShardSnapshot>], layout: &Layout) -> Self {
        let mut series = Vec::with_capacity(shards.iter().map(|s| s.series.len()).sum());
        let mut overflow: Vec<&Arc<SeriesSnapshot>> = Vec::new();
        let mut view = View {
            flushed_at_unix_nanos: shards
                .iter()
                .map(|s| s.flushed_at_unix_nanos)
                .min()
                .unwrap_or(0),
            ..View::default()
        };
        let mut gap_index: hashbrown::HashMap<Arc<str>, usize> = hashbrown::HashMap::new();
        let mut flag_overflow: Vec<&Arc<SeriesSnapshot>> = Vec::new();
        for shard in shards {
            view.overflow_spans += shard.overflow_spans;
            view.expired_series += shard.expired_series;
            view.tracked_traces += shard.tracked_traces;
            view.tracker_bytes += shard.tracker_bytes;
            view.untracked_service_items += shard.untracked_service_items;
            view.trace_stats.evicted_traces += shard.trace_stats.evicted_traces;
            view.trace_stats.untracked_spans += shard.trace_stats.untracked_spans;
            view.trace_stats.judged_traces += shard.trace_stats.judged_traces;
            view.trace_stats.judged_on_arrival += shard.trace_stats.judged_on_arrival;
            view.trace_stats.forgotten_early += shard.trace_stats.forgotten_early;
            for g in &shard.gaps {
                match gap_index.get(&g.service) {
                    Some(&i) => {
                        if let Some(v) = view.gaps.get_mut(i) {
                            v.counts.merge(&g.counts);
                        }
                    }
                    None => {
                        gap_index.insert(Arc::clone(&g.service), view.gaps.len());
                        view.gaps.push(g.clone());
                    }
                }
            }
            view.memory_bytes += shard.memory_bytes;
            view.flag_overflow.merge(&shard.flag_overflow);
            view.tracked_flags += shard.tracked_flags;
            split_overflow(&shard.flags, &mut view.flags, &mut flag_overflow);
            split_overflow(&shard.series, &mut series, &mut overflow);
        }
        view.active_series = series.len();
        // Each shard's overflow series is one part of one series; so for flag series.
        push_merged(&overflow, &mut series, layout);
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        view.gaps.sort_by(|a, b| a.service.cmp(&b.service));
        push_merged(&flag_overflow, &mut view.flags, layout);
        view.flags.sort_by(|a, b| a.labels.cmp(&b.labels));
        view.series = series;
        view
    }
}

/// Appends a shard's series to `kept`, and its overflow series to `overflow`.
fn split_overflow<'a>(
    shard: &'a [Arc<SeriesSnapshot>],
    kept: &mut Vec<Arc<SeriesSnapshot>>,
    overflow: &mut Vec<&'a Arc<SeriesSnapshot>>,
) {
    for s in shard {
        if s.is_overflow() {
            overflow.push(s);
        } else {
            kept.push(Arc::clone(s));
        }
    }
}

/// Appends the overflow series made of `parts` (the shards' overflow series) to `out`.
fn push_merged(
    parts: &[&Arc<SeriesSnapshot>],
    out: &mut Vec<Arc<SeriesSnapshot>>,
    layout: &Layout,
) {
    match parts {
        [] => {}
        [one] => out.push(Arc::clone(one)),
        _ => out.push(Arc::new(merge_overflow(parts, layout))),
    }
}

fn merge_overflow(parts: &[&Arc<SeriesSnapshot>], layout: &Layout) -> SeriesSnapshot {
    let mut out = SeriesSnapshot::clone(parts[0]);
    for p in &parts[1..] {
        out.requests_total += p.requests_total;
        out.errors_total += p.errors_total;
        out.est_requests_total += p.est_requests_total;
        out.est_errors_total += p.est_errors_total;
        out.metric_requests_total += p.metric_requests_total;
        out.duration_sum_ns += p.duration_sum_ns;
        out.unattributed.merge(&p.unattributed);
        for (a, b) in out.buckets.iter_mut().zip(p.buckets.iter()) {
            *a += b;
        }
    }
    let mut hists: [SparseHist; 4] = Default::default();
    for (w, merged) in hists.iter_mut().enumerate() {
        let ins: Vec<&SparseHist> = parts
            .iter()
            .filter_map(|p| p.window_hists.as_ref().and_then(|h| h.get(w)))
            .collect();
        merge_into(merged, &ins);
        let mut q = [None; 4];
        merged.values_at_quantiles(layout, &QUANTILES, &mut q);
        out.windows[w] = WindowSnapshot {
            requests: parts.iter().map(|p| p.windows[w].requests).sum(),
            errors: parts.iter().map(|p| p.windows[w].errors).sum(),
            est_requests: parts.iter().map(|p| p.windows[w].est_requests).sum(),
            est_errors: parts.iter().map(|p| p.windows[w].est_errors).sum(),
            metric_requests: parts.iter().map(|p| p.windows[w].metric_requests).sum(),
            quantiles_ns: q,
        };
    }
    out.window_hists = Some(Box::new(hists));
    out
}
