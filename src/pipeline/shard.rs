//! The shard worker: a plain thread that owns one [`SeriesTable`], applies batches from its
//! queue, and publishes a snapshot on every flush tick. It is the only writer of its state,
//! so the per-span path takes no lock.

use super::batch::Batch;
use super::pool::BatchPool;
use super::query::{CohortQuery, CohortSlots};
use super::snapshot::ShardSnapshot;
use crate::clock::SharedClock;
use crate::completeness::GapState;
use crate::sli::flag_table::FlagTable;
use crate::sli::series::SeriesTable;
use crate::sli::window::slot_of;
use crate::slo::engine::SloEngine;
use crate::slo::tally::SloTally;
use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A message to a shard.
// Nearly every message is a batch: boxing it to shrink the rare others would allocate once
// more for every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Msg {
    /// Observations to record.
    Batch(Batch),
    /// Publish a snapshot now, then acknowledge.
    Flush(Sender<()>),
    /// Publish a final snapshot and exit.
    Stop,
    /// Answer a cohort query from live state.
    Query(Arc<CohortQuery>, Sender<CohortSlots>),
}

/// Everything a shard worker needs.
pub struct Worker {
    /// Incoming messages.
    pub rx: Receiver<Msg>,
    /// Batches queued and not yet applied; the receiver side reserves, the worker releases.
    pub queued: Arc<CachePadded<AtomicUsize>>,
    /// The shard's state.
    pub table: SeriesTable,
    /// The shard's flag series; `None` when flags are not read.
    pub flags: Option<FlagTable>,
    /// Trace-structure tracking for the traces routed to this shard.
    pub gaps: GapState,
    /// Time source for window slots.
    pub clock: SharedClock,
    /// Where snapshots are published.
    pub publish: Arc<ArcSwap<ShardSnapshot>>,
    /// Time between snapshots.
    pub flush_interval: Duration,
    /// SLO counts since the last flush, and the engine they go to on each flush; `None`
    /// without SLOs.
    pub slo: Option<(SloTally, Arc<Mutex<SloEngine>>)>,
    /// Where applied batches go back for reuse.
    pub pool: Arc<BatchPool>,
}

impl Worker {
    /// Runs until [`Msg::Stop`] or until every sender is gone.
    pub fn run(mut self) {
        let mut next_flush = Instant::now() + self.flush_interval;
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Batch(batch)) => {
                    self.apply(&batch);
                    self.queued.fetch_sub(1, Ordering::Release);
                    self.pool.give(batch);
                }
                Ok(Msg::Flush(ack)) => {
                    self.flush();
                    let _ = ack.send(());
                }
                Ok(Msg::Query(q, tx)) => {
                    let slot = slot_of(self.clock.now_unix_nanos());
                    self.table.advance(slot);
                    if let Some(f) = &mut self.flags {
                        f.advance(slot);
                    }
                    let _ = tx.send(self.answer(&q));
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    self.drain();
                    self.flush();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_flush {
                self.flush();
                next_flush = Instant::now() + self.flush_interval;
            }
        }
    }

    /// Applies whatever is still queued: nothing accepted is left behind at shutdown.
    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Batch(batch) => {
                    self.apply(&batch);
                    self.queued.fetch_sub(1, Ordering::Release);
                    self.pool.give(batch);
                }
                Msg::Flush(ack) => {
                    let _ = ack.send(());
                }
                Msg::Query(q, tx) => {
                    let _ = tx.send(self.answer(&q));
                }
                Msg::Stop => {}
            }
        }
    }

    /// Answers a cohort query from the series it is about: flag series for a flag query.
    fn answer(&self, q: &CohortQuery) -> CohortSlots {
        match (&q.flag, &self.flags) {
            (None, _) => q.run(&self.table),
            (Some(_), Some(flags)) => q.run(flags.series()),
            (Some(_), None) => CohortSlots::new(),
        }
    }

    fn apply(&mut self, batch: &Batch) {
        let now = self.clock.now_unix_nanos();
        self.gaps.observe(now, batch.observed());
        let slot = slot_of(now);
        match &mut self.slo {
            None => {
                for item in &batch.items {
                    let ids = Some(&item.ids);
                    self.table
                        .record_with(item.hash, batch.key(item), &item.obs, ids, slot);
                }
            }
            Some((tally, _)) => {
                for item in &batch.items {
                    let ids = Some(&item.ids);
                    let slos =
                        self.table
                            .record_with(item.hash, batch.key(item), &item.obs, ids, slot);
                    tally.record(slos, &item.obs, now);
                }
            }
        }
        if let Some(flags) = &mut self.flags {
            for f in &batch.flags {
                flags.record(f.hash, batch.flag_key(f), &f.obs, &f.ids, slot);
            }
        }
        for m in &batch.metric_points {
            self.table
                .record_metric(m.hash, batch.key_at(m.key_start, m.key_len), &m.point, slot);
        }
    }

    fn flush(&mut self) {
        let now = self.clock.now_unix_nanos();
        if let Some((tally, engine)) = &mut self.slo {
            // A panic elsewhere while holding the lock leaves counts that are still valid.
            engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .absorb(tally, now);
        }
        self.table.advance(slot_of(now));
        self.gaps.expire(now);
        let series = self.table.snapshot();
        let (flags, flag_overflow, tracked_flags, flag_bytes) = match &mut self.flags {
            Some(f) => {
                f.advance(slot_of(now));
                (f.snapshot(), f.overflow(), f.flags(), f.memory_bytes())
            }
            None => Default::default(),
        };
        self.publish.store(Arc::new(ShardSnapshot {
            series,
            overflow_spans: self.table.overflow_spans(),
            expired_series: self.table.expired(),
            gaps: self.gaps.snapshot(),
            trace_stats: self.gaps.stats(),
            tracked_traces: self.gaps.tracked_traces(),
            tracker_bytes: self.gaps.tracker_bytes(),
            untracked_service_items: self.gaps.untracked_services(),
            memory_bytes: self.table.memory_bytes() + flag_bytes,
            flushed_at_unix_nanos: now,
            flags,
            flag_overflow,
            tracked_flags,
        }));
    }
}
