//! The disk side of a spooled queue: [`Spill`] hands payloads to a writer thread
//! ([`write_spool`]) that appends them to the [`Spool`], and [`replay`] sends the spool back,
//! oldest first, acknowledging records in order as [`Replay`] decides.

use super::batch::Gathered;
use super::policy::{Outcome, Replay};
use super::spool::{Position, Record, Spool};
use super::stats::{DropReason, Stats};
use super::worker::Shared;
use super::Payload;
use futures_util::stream::{FuturesOrdered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Messages (one or more payloads each) on their way to the spool writer, at least.
pub(super) const SPILL_CHANNEL: usize = 4096;

/// The disk side of a spooled queue.
pub(super) struct Spill {
    /// Records to append, a received request each; a merged request's come as one message.
    pub(super) tx: crossbeam::channel::Sender<Vec<Payload>>,
    /// Bytes of payloads on their way to the writer (memory bound).
    pub(super) pending_bytes: AtomicU64,
    pub(super) max_pending_bytes: u64,
    /// Payloads handed to the writer and not yet appended: they count as spooled, so what
    /// comes after them is spooled too, behind them.
    pub(super) pending: AtomicU64,
    /// Shutdown: the writer appends what it holds, syncs and stops.
    pub(super) closing: AtomicBool,
    /// The spool holds undelivered records.
    pub(super) nonempty: AtomicBool,
    /// The last attempt failed (retryably).
    pub(super) failing: AtomicBool,
    pub(super) spool: Mutex<Spool>,
    /// Records were appended.
    pub(super) wake: Notify,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill")
            .field("nonempty", &self.nonempty)
            .field("failing", &self.failing)
            .finish()
    }
}

impl Spill {
    /// The last attempt failed (retryably).
    pub(super) fn failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }

    /// Records whether the last attempt failed retryably.
    pub(super) fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Release);
    }

    /// New payloads go to disk: the upstream is failing, or older ones wait there (or are
    /// on their way there).
    pub(super) fn diverting(&self) -> bool {
        self.nonempty.load(Ordering::Acquire)
            || self.pending.load(Ordering::Acquire) > 0
            || self.failing.load(Ordering::Acquire)
    }

    /// Hands `payload` to the writer thread; never waits.
    pub(super) fn offer(&self, payload: Payload, stats: &Stats) -> bool {
        self.offer_all(vec![payload], stats, DropReason::QueueFull)
    }

    /// Offers the requests `g` holds, as they were received: one record each (a merged
    /// request is not spooled merged, so replayed, each is judged on its own), handed over
    /// together. Counts a refusal as `reason`.
    pub(super) fn offer_received(&self, g: &Gathered, stats: &Stats, reason: DropReason) {
        self.offer_all(g.received().to_vec(), stats, reason);
    }

    /// Hands `records` (in order) to the writer thread as one message, or counts them as
    /// dropped for `reason`; never waits.
    fn offer_all(&self, records: Vec<Payload>, stats: &Stats, reason: DropReason) -> bool {
        let items: u64 = records.iter().map(|p| p.items).sum();
        let len: u64 = records.iter().map(|p| p.body.len() as u64).sum();
        let count = records.len() as u64;
        let reserved = self
            .pending_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + len <= self.max_pending_bytes || b == 0).then_some(b + len)
            })
            .is_ok();
        if reserved {
            self.pending.fetch_add(count, Ordering::AcqRel);
            if self.tx.try_send(records).is_ok() {
                return true;
            }
            self.pending.fetch_sub(count, Ordering::AcqRel);
            self.pending_bytes.fetch_sub(len, Ordering::AcqRel);
        }
        stats.drop_items(reason, items);
        false
    }

    /// Publishes the spool's size and losses to `stats`.
    pub(super) fn publish(spool: &mut Spool, stats: &Stats) {
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        stats.spool_items.store(spool.items(), Ordering::Relaxed);
        let lost = spool.take_lost();
        stats.drop_items(DropReason::SpoolFull, lost.full);
        stats.drop_items(DropReason::SpoolError, lost.corrupt);
    }
}

/// The spool writer thread: appends what it is handed until shutdown, then syncs. Segments
/// filled meanwhile are synced outside the spool's lock.
pub(super) fn write_spool(
    sp: &Spill,
    stats: &Stats,
    name: &str,
    rx: &crossbeam::channel::Receiver<Vec<Payload>>,
) {
    let mut last_error: Option<Instant> = None;
    loop {
        let records = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {
                if sp.closing.load(Ordering::Acquire) && rx.is_empty() {
                    break;
                }
                continue;
            }
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => break,
        };
        for p in records {
            if !append_one(sp, stats, name, p, &mut last_error) {
                return;
            }
        }
    }
    if let Ok(mut spool) = sp.spool.lock() {
        if let Err(e) = spool.close(Instant::now()) {
            tracing::error!(exporter = name, error = %e, "cannot sync the spool");
        }
        Spill::publish(&mut spool, stats);
    }
}

/// Appends one payload to the spool and accounts for it; `false` if the spool's lock is
/// poisoned (the writer then stops).
fn append_one(
    sp: &Spill,
    stats: &Stats,
    name: &str,
    p: Payload,
    last_error: &mut Option<Instant>,
) -> bool {
    let items = p.items;
    let len = p.body.len() as u64;
    let rec = Record {
        body: p.body,
        items,
        signal: p.signal,
        gzipped: p.gzipped,
    };
    let sealed = {
        let Ok(mut spool) = sp.spool.lock() else {
            return false;
        };
        match spool.append(&rec) {
            Ok(true) => {
                stats.spooled_items.fetch_add(items, Ordering::Relaxed);
                sp.nonempty.store(true, Ordering::Release);
            }
            Ok(false) => {}
            Err(e) => {
                stats.drop_items(DropReason::SpoolError, items);
                if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::error!(exporter = name, error = %e, "cannot spool a payload; it is dropped");
                    *last_error = Some(Instant::now());
                }
            }
        }
        Spill::publish(&mut spool, stats);
        spool.take_sealed()
    };
    sp.pending_bytes.fetch_sub(len, Ordering::AcqRel);
    sp.pending.fetch_sub(1, Ordering::AcqRel);
    sp.wake.notify_one();
    for f in sealed {
        if let Err(e) = f.sync_data() {
            tracing::warn!(exporter = name, error = %e, "cannot sync a full spool segment");
        }
    }
    true
}

/// Sends the spool, oldest first, up to `workers` records at once, acknowledging them in
/// order. Records still unacknowledged at shutdown stay on disk for the next run.
pub(super) async fn replay(
    shared: Arc<Shared>,
    sp: Arc<Spill>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    type InFlight = Pin<Box<dyn Future<Output = (Position, u64, Outcome)> + Send>>;
    let window = shared.config.workers.max(1);
    let mut inflight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut order = Replay::default();
    loop {
        if *stop.borrow() {
            break;
        }
        // An ordered queue sends what waits in memory first: it is older.
        if shared.shape.ordered && shared.stats.queued.load(Ordering::Acquire) > 0 {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        // Reads are small and hit the page cache; the lock is never held across an await.
        let mut read_failed = false;
        while inflight.len() < window {
            // File reads, off the runtime's threads (the writer may hold the lock).
            let (sh, spc) = (Arc::clone(&shared), Arc::clone(&sp));
            let next = tokio::task::spawn_blocking(move || {
                let mut spool = spc.spool.lock().ok()?;
                let r = spool.read_next();
                Spill::publish(&mut spool, &sh.stats);
                Some(r)
            })
            .await;
            let Ok(Some(next)) = next else { return };
            match next {
                Ok(Some((rec, pos))) => {
                    let (s, mut st) = (Arc::clone(&shared), stop.clone());
                    inflight.push_back(Box::pin(async move {
                        let items = rec.items;
                        let p = Payload {
                            body: rec.body,
                            items,
                            signal: rec.signal,
                            gzipped: rec.gzipped,
                        };
                        let outcome = s.deliver(&Gathered::one(p), true, &mut st).await;
                        (pos, items, outcome)
                    }));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(exporter = %shared.name, error = %e, "cannot read the spool");
                    read_failed = true;
                    break;
                }
            }
        }
        if inflight.is_empty() {
            if let Ok(spool) = sp.spool.lock() {
                if spool.is_empty() && sp.pending.load(Ordering::Acquire) == 0 {
                    sp.nonempty.store(false, Ordering::Release);
                }
            }
            let pause = if read_failed {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = sp.wake.notified() => {}
                _ = tokio::time::sleep(pause) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            continue;
        }
        let room = inflight.len() < window && !read_failed;
        let done = tokio::select! {
            done = inflight.next() => done,
            _ = sp.wake.notified(), if room => None,
            _ = stop.wait_for(|s| *s) => break,
        };
        if let Some((pos, items, outcome)) = done {
            order = settle_off_runtime(&shared, &sp, pos, items, outcome, order).await;
        }
    }
    // Stopped: let the in-flight sends see the stop and account for them.
    while let Some((pos, items, outcome)) = inflight.next().await {
        order = settle_off_runtime(&shared, &sp, pos, items, outcome, order).await;
    }
}

/// [`settle`] on the blocking pool: acknowledging can delete files and write the cursor.
async fn settle_off_runtime(
    shared: &Arc<Shared>,
    sp: &Arc<Spill>,
    pos: Position,
    items: u64,
    outcome: Outcome,
    mut order: Replay,
) -> Replay {
    let (sh, spc) = (Arc::clone(shared), Arc::clone(sp));
    tokio::task::spawn_blocking(move || {
        settle(&sh, &spc, pos, items, outcome, &mut order);
        order
    })
    .await
    // The blocking task panicked: acknowledge nothing more in this run.
    .unwrap_or_else(|_| {
        let mut held = Replay::default();
        held.settle(Outcome::Stopped, true);
        held
    })
}

/// Accounts for one replayed record, in spool order, as [`Replay::settle`] decides.
fn settle(
    shared: &Shared,
    sp: &Spill,
    pos: Position,
    items: u64,
    outcome: Outcome,
    order: &mut Replay,
) {
    let Ok(mut spool) = sp.spool.lock() else {
        return;
    };
    let settled = order.settle(outcome, spool.holds(pos));
    if let Some(reason) = settled.dropped {
        shared.stats.drop_items(reason, items);
    }
    if settled.ack {
        if let Err(e) = spool.ack(pos, items, Instant::now()) {
            tracing::warn!(exporter = %shared.name, error = %e, "cannot record spool progress; delivered records may be sent again after a restart");
        }
    }
    Spill::publish(&mut spool, &shared.stats);
}
