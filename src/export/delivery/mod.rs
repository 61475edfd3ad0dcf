//! Reliable delivery to one upstream: a bounded queue, a few worker tasks, retries with
//! exponential backoff and jitter that honour the upstream's `RetryInfo` / `Retry-After`,
//! and counters for everything sent, retried and dropped (by reason). A slow or dead
//! upstream fills only its own queue; whoever submits never waits.
//!
//! Exporters implement [`Upstream`] (one attempt to send one payload, classified as success,
//! retryable or permanent failure) and submit payloads to the [`Queue`] that [`spawn`]
//! returns.
//!
//! With a [`Spool`] ([`spawn_spooled`]), a payload that finds the memory queue full goes to
//! disk instead of being dropped, and so does every payload after it until the spool has
//! been delivered. While the upstream fails, a queue with several workers (forwarders)
//! moves its payloads to disk at once, so nothing waits in memory for it; a single-worker
//! queue (whose payloads must arrive in order) keeps retrying in memory and spools what
//! arrives meanwhile, behind. A writer thread appends (disk I/O never runs on the submitters' threads); a
//! replay task sends the spool oldest first, retrying until each record is delivered or
//! refused, and acknowledges records in order.

pub mod batch;
pub mod spool;

use batch::{gather, Batching, Gathered, Source};
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use spool::{Position, Record, Spool, SpoolConfig, SpoolError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// One unit of delivery: an encoded request and the items it carries (for the counters).
#[derive(Clone, Debug)]
pub struct Payload {
    /// The encoded request body.
    pub body: Bytes,
    /// Items in it (spans, data points, log records, samples).
    pub items: u64,
    /// Which OTLP signal (for upstreams serving several); `None` for others.
    pub signal: Option<crate::telemetry::Signal>,
    /// `body` is already gzip-compressed, as the upstream wants it: send it as it is.
    pub gzipped: bool,
}

/// Why one attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying (timeouts, 429/502/503/504, gRPC UNAVAILABLE, connection errors).
    #[error("{reason} (will retry)")]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay the upstream asked for.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (e.g. HTTP 400, gRPC INVALID_ARGUMENT): the payload is dropped.
    #[error("{reason} (not retryable)")]
    Permanent {
        /// What happened.
        reason: String,
    },
}

/// One attempt to deliver a payload.
pub trait Upstream: Send + Sync + 'static {
    /// Sends `payload` once.
    fn send<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;
}

/// Retry and queue settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// Payloads waiting at most; further ones are dropped and counted (`queue_full`).
    pub queue_capacity: usize,
    /// Bytes of payloads waiting at most (memory bound); further ones are dropped and
    /// counted (`queue_full`).
    pub max_queued_bytes: u64,
    /// Concurrent sends (also from the spool).
    pub workers: usize,
    /// First retry delay; doubles per attempt, with ±50% jitter.
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Give up on a payload after this long (counted `retries_exhausted`). Spooled payloads
    /// are retried until delivered, refused, or dropped for room.
    pub max_elapsed: Duration,
    /// Merge queued payloads into one send ([`batch`]); `None`: one send each.
    pub batch: Option<Batching>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1000,
            max_queued_bytes: 64 << 20,
            workers: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
            batch: None,
        }
    }
}

/// Why payloads were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full.
    QueueFull = 0,
    /// The upstream refused it for good.
    Rejected = 1,
    /// Retried until `max_elapsed`.
    RetriesExhausted = 2,
    /// Still queued when shutdown ended.
    Shutdown = 3,
    /// The oldest spooled data made room for newer (`spool.max_bytes`).
    SpoolFull = 4,
    /// A spooled record could not be written or read back (disk error, torn or corrupt).
    SpoolError = 5,
}

impl DropReason {
    /// All reasons.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
        DropReason::SpoolFull,
        DropReason::SpoolError,
    ];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolError => "spool_error",
        }
    }
}

/// Counters of one upstream.
#[derive(Debug, Default)]
pub struct Stats {
    /// Payloads delivered.
    pub sent_requests: AtomicU64,
    /// Items delivered.
    pub sent_items: AtomicU64,
    /// Failed attempts (each retry follows one).
    pub failed_attempts: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Items dropped, by [`DropReason`].
    pub dropped_items: [AtomicU64; 6],
    /// Payloads waiting or being sent (in memory).
    pub queued: AtomicU64,
    /// Bytes of the payloads waiting or being sent (in memory).
    pub queued_bytes: AtomicU64,
    /// Unix seconds of the last delivery (0: never).
    pub last_success_unix: AtomicU64,
    /// Items written to the spool.
    pub spooled_items: AtomicU64,
    /// Items in the spool, not yet delivered.
    pub spool_items: AtomicU64,
    /// Bytes of the spool's segment files.
    pub spool_bytes: AtomicU64,
}

impl Stats {
    fn drop_items(&self, reason: DropReason, items: u64) {
        self.dropped_items[reason as usize].fetch_add(items, Ordering::Relaxed);
    }

    /// Items dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_items[reason as usize].load(Ordering::Relaxed)
    }

    fn delivered(&self, items: u64) {
        self.sent_requests.fetch_add(1, Ordering::Relaxed);
        self.sent_items.fetch_add(items, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success_unix.store(now, Ordering::Relaxed);
    }
}

/// Where payloads for one upstream are submitted.
#[derive(Clone, Debug)]
pub struct Queue {
    name: Arc<str>,
    tx: mpsc::Sender<Payload>,
    stats: Arc<Stats>,
    max_bytes: u64,
    spill: Option<Arc<Spill>>,
}

impl Queue {
    /// Queues `payload`; when the queue is full it is spooled, or else dropped and counted.
    /// Never waits.
    pub fn submit(&self, payload: Payload) -> bool {
        if let Some(sp) = &self.spill {
            if sp.diverting() {
                return sp.offer(payload, &self.stats);
            }
        }
        let len = payload.body.len() as u64;
        let reserved = self
            .stats
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + len <= self.max_bytes || b == 0).then_some(b + len)
            })
            .is_ok();
        if !reserved {
            return self.overflow(payload);
        }
        // Counted before sending: a worker may take it (and decrement) at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(payload) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.overflow(p)
            }
        }
    }

    /// A payload the memory queue has no room for: spooled, or dropped and counted.
    fn overflow(&self, payload: Payload) -> bool {
        match &self.spill {
            Some(sp) => sp.offer(payload, &self.stats),
            None => {
                self.stats.drop_items(DropReason::QueueFull, payload.items);
                false
            }
        }
    }

    /// True when the queue has a disk spool.
    pub fn has_spool(&self) -> bool {
        self.spill.is_some()
    }

    /// The upstream's name (the `exporter` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }
}

/// Messages (one or more payloads each) on their way to the spool writer, at least.
const SPILL_CHANNEL: usize = 4096;

/// The disk side of a spooled queue.
struct Spill {
    /// Records to append, a received request each; a merged request's come as one message.
    tx: crossbeam::channel::Sender<Vec<Payload>>,
    /// Bytes of payloads on their way to the writer (memory bound).
    pending_bytes: AtomicU64,
    max_pending_bytes: u64,
    /// Payloads handed to the writer and not yet appended: they count as spooled, so what
    /// comes after them is spooled too, behind them.
    pending: AtomicU64,
    /// Shutdown: the writer appends what it holds, syncs and stops.
    closing: AtomicBool,
    /// The spool holds undelivered records.
    nonempty: AtomicBool,
    /// The last attempt failed (retryably).
    failing: AtomicBool,
    spool: Mutex<Spool>,
    /// Records were appended.
    wake: Notify,
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
    /// New payloads go to disk: the upstream is failing, or older ones wait there (or are
    /// on their way there).
    fn diverting(&self) -> bool {
        self.nonempty.load(Ordering::Acquire)
            || self.pending.load(Ordering::Acquire) > 0
            || self.failing.load(Ordering::Acquire)
    }

    /// Hands `payload` to the writer thread; never waits.
    fn offer(&self, payload: Payload, stats: &Stats) -> bool {
        self.offer_all(vec![payload], stats, DropReason::QueueFull)
    }

    /// Offers the requests `g` holds, as they were received: one record each (a merged
    /// request is not spooled merged, so replayed, each is judged on its own), handed over
    /// together. Counts a refusal as `reason`.
    fn offer_received(&self, g: &Gathered, stats: &Stats, reason: DropReason) {
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
    fn publish(spool: &mut Spool, stats: &Stats) {
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        stats.spool_items.store(spool.items(), Ordering::Relaxed);
        let lost = spool.take_lost();
        stats.drop_items(DropReason::SpoolFull, lost.full);
        stats.drop_items(DropReason::SpoolError, lost.corrupt);
    }
}

/// A running delivery: the queue and the worker tasks to wait for at shutdown.
#[derive(Debug)]
pub struct Running {
    /// Where payloads go.
    pub queue: Queue,
    workers: Vec<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Lets the workers deliver what is queued until `deadline`, then stops them: without a
    /// spool, what is left is counted as dropped (`shutdown`); with one, it is written to
    /// the spool, which is synced. Submit nothing more once this is called.
    pub async fn shutdown(self, deadline: Instant) {
        let Running {
            queue,
            workers,
            stop,
            writer,
        } = self;
        // Other handles may still hold senders, so wait for the queue to empty rather than
        // for it to close. With a spool there is no point waiting for a failing upstream.
        loop {
            let busy = queue.stats.queued.load(Ordering::Relaxed) > 0
                || queue
                    .spill
                    .as_ref()
                    .is_some_and(|s| s.nonempty.load(Ordering::Acquire));
            let give_up = queue
                .spill
                .as_ref()
                .is_some_and(|s| s.failing.load(Ordering::Acquire));
            if !busy || give_up || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Workers give up their retries, count (or spool) what is left, and stop.
        let _ = stop.send(true);
        for w in workers {
            let abort = w.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), w)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if let (Some(sp), Some(writer)) = (&queue.spill, writer) {
            // The writer appends what it was handed, syncs, writes the cursor and stops.
            sp.closing.store(true, Ordering::Release);
            let join = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout(Duration::from_secs(30), join)
                .await
                .is_err()
            {
                tracing::error!(exporter = %queue.name, "the spool writer did not finish within 30s");
            }
        }
    }
}

/// Rate-limits the log line for permanent failures to one per interval.
#[derive(Debug)]
struct LogLimit {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    fn note(&self, name: &str, err: &SendError) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => s.1 += 1,
            _ => {
                tracing::warn!(
                    exporter = name,
                    error = %err,
                    suppressed = s.1,
                    "upstream refused a payload; it is dropped (further refusals are logged at most every {:?})",
                    self.every
                );
                *s = (Some(now), 0);
            }
        }
    }
}

/// A small xorshift generator for jitter: no need for cryptographic randomness here.
fn jitter(seed: &AtomicU64, d: Duration) -> Duration {
    let mut x = seed.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    seed.store(x, Ordering::Relaxed);
    // Between 0.5 and 1.5 times `d`.
    let f = 0.5 + (x % 1_000_001) as f64 / 1_000_000.0;
    d.mul_f64(f)
}

/// Starts `config.workers` tasks delivering to `upstream` on the current runtime.
pub fn spawn(name: &str, upstream: Arc<dyn Upstream>, config: DeliveryConfig) -> Running {
    start(name, upstream, config, None)
}

/// Like [`spawn`], with a disk spool when `spool` is given: opened here (what an earlier
/// run left in it is sent first), so a spool that cannot be used fails the start.
pub fn spawn_spooled(
    name: &str,
    upstream: Arc<dyn Upstream>,
    config: DeliveryConfig,
    spool: Option<SpoolConfig>,
) -> Result<Running, SpoolError> {
    let spool = spool.map(Spool::open).transpose()?;
    Ok(start(name, upstream, config, spool))
}

fn start(
    name: &str,
    upstream: Arc<dyn Upstream>,
    config: DeliveryConfig,
    spool: Option<Spool>,
) -> Running {
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let src = Arc::new(tokio::sync::Mutex::new(Source::new(rx)));
    let stats = Arc::new(Stats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let name: Arc<str> = name.into();
    let mut writer = None;
    let spill = spool.map(|mut spool| {
        Spill::publish(&mut spool, &stats);
        // Bursts larger than the memory queue pass through here: bounded by the byte limit
        // more than by this count.
        let (stx, srx) = crossbeam::channel::bounded(config.queue_capacity.max(SPILL_CHANNEL));
        let sp = Arc::new(Spill {
            tx: stx,
            pending_bytes: AtomicU64::new(0),
            max_pending_bytes: config.max_queued_bytes,
            pending: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            nonempty: AtomicBool::new(!spool.is_empty()),
            failing: AtomicBool::new(false),
            spool: Mutex::new(spool),
            wake: Notify::new(),
        });
        let (sp2, st2, n2) = (Arc::clone(&sp), Arc::clone(&stats), Arc::clone(&name));
        writer = std::thread::Builder::new()
            .name(format!("spool-{name}"))
            .spawn(move || write_spool(&sp2, &st2, &n2, &srx))
            .map_err(|e| tracing::error!(exporter = %name, error = %e, "cannot start the spool writer; spooled payloads will be dropped"))
            .ok();
        sp
    });
    let shared = Arc::new(Shared {
        name: Arc::clone(&name),
        upstream,
        stats: Arc::clone(&stats),
        config,
        limit: LogLimit {
            every: Duration::from_secs(10),
            state: Mutex::new((None, 0)),
        },
        seed: AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1,
        ),
        spill: spill.clone(),
    });
    let mut workers: Vec<JoinHandle<()>> = (0..config.workers.max(1))
        .map(|_| {
            let w = Worker {
                shared: Arc::clone(&shared),
                src: Arc::clone(&src),
                stop: stop_rx.clone(),
            };
            tokio::spawn(w.run())
        })
        .collect();
    if let Some(sp) = &spill {
        workers.push(tokio::spawn(replay(
            Arc::clone(&shared),
            Arc::clone(sp),
            stop_rx.clone(),
        )));
    }
    Running {
        queue: Queue {
            name,
            tx,
            stats,
            max_bytes: config.max_queued_bytes,
            spill,
        },
        workers,
        stop,
        writer,
    }
}

/// The spool writer thread: appends what it is handed until shutdown, then syncs. Segments
/// filled meanwhile are synced outside the spool's lock.
fn write_spool(
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

/// What became of one payload.
enum Outcome {
    Delivered,
    Dropped(DropReason),
    /// Handed to the spool (the upstream is failing, or retries ran out).
    Spooled,
    /// Stopped before it was delivered.
    Stopped,
}

/// What the workers and the replay task share.
struct Shared {
    name: Arc<str>,
    upstream: Arc<dyn Upstream>,
    stats: Arc<Stats>,
    config: DeliveryConfig,
    limit: LogLimit,
    seed: AtomicU64,
    spill: Option<Arc<Spill>>,
}

impl Shared {
    /// One worker: payloads must reach the upstream in the order they were submitted
    /// (remote write, OTLP metrics). Such a queue keeps retrying a failed payload in memory
    /// and sends the spool only once the memory queue is empty, so the spool only ever
    /// holds payloads newer than those in memory.
    fn ordered(&self) -> bool {
        self.config.workers <= 1
    }

    /// Sends with retries. `spooled`: the payload came from the spool, so it is retried
    /// until delivered or refused. Otherwise `max_elapsed` bounds the retries, after which
    /// it goes to the spool (if there is one) or is dropped; a queue that is not
    /// [`Shared::ordered`] spools it at the first retryable failure.
    async fn deliver(
        &self,
        g: &Gathered,
        spooled: bool,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Outcome {
        let payload = &g.payload;
        let start = Instant::now();
        let mut backoff = self.config.initial_backoff;
        loop {
            let attempt = tokio::select! {
                r = self.upstream.send(payload) => r,
                // Past the shutdown deadline an attempt that hangs is given up: the payload
                // is then spooled or counted, never lost with an aborted task.
                _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
            };
            match attempt {
                Ok(()) => {
                    self.stats.delivered(payload.items);
                    if let Some(sp) = &self.spill {
                        sp.failing.store(false, Ordering::Release);
                    }
                    return Outcome::Delivered;
                }
                Err(e @ SendError::Permanent { .. }) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.limit.note(&self.name, &e);
                    return Outcome::Dropped(DropReason::Rejected);
                }
                Err(SendError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if let Some(sp) = &self.spill {
                        sp.failing.store(true, Ordering::Release);
                        if !spooled && !self.ordered() {
                            tracing::debug!(exporter = %self.name, %reason, "upstream failing; spooling");
                            sp.offer_received(g, &self.stats, DropReason::QueueFull);
                            return Outcome::Spooled;
                        }
                    }
                    let delay = retry_after
                        .unwrap_or_else(|| jitter(&self.seed, backoff))
                        .min(self.config.max_elapsed);
                    // With a spool an ordered queue keeps retrying: spooling the payload would
                    // put it behind newer ones.
                    let unlimited = spooled || (self.spill.is_some() && self.ordered());
                    if !unlimited && start.elapsed() + delay > self.config.max_elapsed {
                        if let Some(sp) = &self.spill {
                            sp.offer_received(g, &self.stats, DropReason::QueueFull);
                            return Outcome::Spooled;
                        }
                        tracing::warn!(exporter = %self.name, %reason, "giving up on a payload after retrying for {:?}", start.elapsed());
                        return Outcome::Dropped(DropReason::RetriesExhausted);
                    }
                    tracing::debug!(exporter = %self.name, %reason, ?delay, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    src: Arc<tokio::sync::Mutex<Source>>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    /// The next payload to send (several merged, with batching: see [`Gathered`]); `None`
    /// at shutdown.
    async fn take(&mut self) -> Option<Gathered> {
        let mut src = self.src.lock().await;
        let first = tokio::select! {
            p = src.next() => p?,
            _ = self.stop.wait_for(|s| *s) => return None,
        };
        let Some(b) = self.shared.config.batch else {
            return Some(Gathered::one(first));
        };
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        Some(gather(first, &mut src, &b, stopped).await)
    }

    async fn run(mut self) {
        loop {
            let Some(g) = self.take().await else {
                self.leftovers().await;
                return;
            };
            let s = Arc::clone(&self.shared);
            let payload = &g.payload;
            // While the upstream fails, what was queued in memory goes to disk untried.
            let outcome = match &s.spill {
                Some(sp) if sp.failing.load(Ordering::Acquire) && !s.ordered() => {
                    sp.offer_received(&g, &s.stats, DropReason::QueueFull);
                    Outcome::Spooled
                }
                _ => s.deliver(&g, false, &mut self.stop).await,
            };
            s.stats.queued.fetch_sub(g.requests(), Ordering::Relaxed);
            s.stats
                .queued_bytes
                .fetch_sub(payload.body.len() as u64, Ordering::AcqRel);
            match outcome {
                Outcome::Delivered | Outcome::Spooled => {}
                // A merged request refused as a whole: its requests are sent one by one, so
                // each is judged on its own and a bad one costs only its own items.
                Outcome::Dropped(DropReason::Rejected) if !g.parts.is_empty() => {
                    for part in &g.parts {
                        let one = Gathered::one(part.clone());
                        match s.deliver(&one, false, &mut self.stop).await {
                            Outcome::Delivered | Outcome::Spooled => {}
                            Outcome::Dropped(reason) => s.stats.drop_items(reason, part.items),
                            Outcome::Stopped => self.keep_or_drop(&one),
                        }
                    }
                }
                Outcome::Dropped(reason) => s.stats.drop_items(reason, payload.items),
                Outcome::Stopped => self.keep_or_drop(&g),
            }
            if *self.stop.borrow() {
                self.leftovers().await;
                return;
            }
        }
    }

    /// At shutdown: spooled if there is a spool, else dropped and counted.
    fn keep_or_drop(&self, g: &Gathered) {
        let s = &self.shared;
        match &s.spill {
            Some(sp) => sp.offer_received(g, &s.stats, DropReason::Shutdown),
            None => s.stats.drop_items(DropReason::Shutdown, g.payload.items),
        }
    }

    /// After the shutdown deadline: what is still queued is spooled or dropped and counted.
    async fn leftovers(&self) {
        let mut src = self.src.lock().await;
        while let Some(p) = src.try_next() {
            let s = &self.shared;
            s.stats.queued.fetch_sub(1, Ordering::Relaxed);
            s.stats
                .queued_bytes
                .fetch_sub(p.body.len() as u64, Ordering::AcqRel);
            self.keep_or_drop(&Gathered::one(p));
        }
    }
}

/// Sends the spool, oldest first, up to `workers` records at once, acknowledging them in
/// order. Records still unacknowledged at shutdown stay on disk for the next run.
async fn replay(shared: Arc<Shared>, sp: Arc<Spill>, mut stop: tokio::sync::watch::Receiver<bool>) {
    type InFlight = Pin<Box<dyn Future<Output = (Position, u64, Outcome)> + Send>>;
    let window = shared.config.workers.max(1);
    let mut inflight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut held_back = false;
    loop {
        if *stop.borrow() {
            break;
        }
        // An ordered queue sends what waits in memory first: it is older.
        if shared.ordered() && shared.stats.queued.load(Ordering::Acquire) > 0 {
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
            held_back = settle_off_runtime(&shared, &sp, pos, items, outcome, held_back).await;
        }
    }
    // Stopped: let the in-flight sends see the stop and account for them.
    while let Some((pos, items, outcome)) = inflight.next().await {
        held_back = settle_off_runtime(&shared, &sp, pos, items, outcome, held_back).await;
    }
}

/// [`settle`] on the blocking pool: acknowledging can delete files and write the cursor.
async fn settle_off_runtime(
    shared: &Arc<Shared>,
    sp: &Arc<Spill>,
    pos: Position,
    items: u64,
    outcome: Outcome,
    mut held_back: bool,
) -> bool {
    let (sh, spc) = (Arc::clone(shared), Arc::clone(sp));
    tokio::task::spawn_blocking(move || {
        settle(&sh, &spc, pos, items, outcome, &mut held_back);
        held_back
    })
    .await
    .unwrap_or(true)
}

/// Accounts for one replayed record, in spool order. Once one was not delivered
/// (`held_back`), no later one is acknowledged either, since an acknowledgement covers
/// everything before it: those are sent again after a restart.
fn settle(
    shared: &Shared,
    sp: &Spill,
    pos: Position,
    items: u64,
    outcome: Outcome,
    held_back: &mut bool,
) {
    let Ok(mut spool) = sp.spool.lock() else {
        return;
    };
    let ack = match outcome {
        Outcome::Delivered | Outcome::Spooled => true,
        Outcome::Dropped(reason) => {
            shared.stats.drop_items(reason, items);
            true
        }
        Outcome::Stopped => {
            if !spool.holds(pos) {
                // Dropped from disk for room while it was being sent.
                shared.stats.drop_items(DropReason::SpoolFull, items);
            }
            *held_back = true;
            false
        }
    };
    if ack && !*held_back {
        if let Err(e) = spool.ack(pos, items, Instant::now()) {
            tracing::warn!(exporter = %shared.name, error = %e, "cannot record spool progress; delivered records may be sent again after a restart");
        }
    }
    Spill::publish(&mut spool, &shared.stats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Signal;
    use std::sync::atomic::AtomicUsize;

    /// Fails the first `fail` attempts with `err`, then succeeds; records attempt times.
    struct Flaky {
        fail: usize,
        err: SendError,
        attempts: AtomicUsize,
        times: Mutex<Vec<Instant>>,
    }

    impl Upstream for Flaky {
        fn send<'a>(
            &'a self,
            _: &'a Payload,
        ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
            Box::pin(async move {
                if let Ok(mut t) = self.times.lock() {
                    t.push(Instant::now());
                }
                if self.attempts.fetch_add(1, Ordering::SeqCst) < self.fail {
                    Err(self.err.clone())
                } else {
                    Ok(())
                }
            })
        }
    }

    fn flaky(fail: usize, err: SendError) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail,
            err,
            attempts: AtomicUsize::new(0),
            times: Mutex::new(Vec::new()),
        })
    }

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            queue_capacity: 4,
            max_queued_bytes: 1 << 20,
            workers: 1,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_secs(5),
            batch: None,
        }
    }

    fn payload(items: u64) -> Payload {
        Payload {
            body: Bytes::from_static(b"x"),
            items,
            signal: None,
            gzipped: false,
        }
    }

    async fn settle(s: &Stats) {
        for _ in 0..500 {
            if s.queued.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_until_delivered() {
        let up = flaky(
            3,
            SendError::Retryable {
                reason: "503".into(),
                retry_after: None,
            },
        );
        let r = spawn("t", up.clone(), cfg());
        assert!(r.queue.submit(payload(7)));
        let stats = Arc::clone(r.queue.stats());
        settle(&stats).await;
        assert_eq!(stats.sent_items.load(Ordering::Relaxed), 7);
        assert_eq!(stats.retries.load(Ordering::Relaxed), 3);
        assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 3);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let up = flaky(
            1,
            SendError::Retryable {
                reason: "429".into(),
                retry_after: Some(Duration::from_millis(300)),
            },
        );
        let r = spawn("t", up.clone(), cfg());
        r.queue.submit(payload(1));
        settle(r.queue.stats()).await;
        let t = up.times.lock().expect("times").clone();
        assert_eq!(t.len(), 2);
        assert!(
            t[1] - t[0] >= Duration::from_millis(300),
            "{:?}",
            t[1] - t[0]
        );
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn permanent_failures_are_dropped_without_retry() {
        let up = flaky(
            usize::MAX,
            SendError::Permanent {
                reason: "400".into(),
            },
        );
        let r = spawn("t", up.clone(), cfg());
        for _ in 0..3 {
            r.queue.submit(payload(2));
        }
        settle(r.queue.stats()).await;
        let s = r.queue.stats();
        assert_eq!(s.dropped(DropReason::Rejected), 6);
        assert_eq!(up.attempts.load(Ordering::SeqCst), 3, "one attempt each");
        assert_eq!(s.retries.load(Ordering::Relaxed), 0);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn full_queue_drops_and_shutdown_counts_leftovers() {
        let up = flaky(
            usize::MAX,
            SendError::Retryable {
                reason: "down".into(),
                retry_after: None,
            },
        );
        let r = spawn("t", up, cfg());
        // One in flight (retrying forever) plus 4 queued; the 6th is refused.
        let accepted = (0..6).filter(|_| r.queue.submit(payload(1))).count();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let accepted = accepted + usize::from(r.queue.submit(payload(1)));
        let stats = Arc::clone(r.queue.stats());
        assert!(stats.dropped(DropReason::QueueFull) >= 1);
        r.shutdown(Instant::now() + Duration::from_millis(100))
            .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            stats.dropped(DropReason::Shutdown) as usize,
            accepted,
            "everything accepted is delivered or counted"
        );
    }

    /// Fails (retryably) while `down`; refuses for good any body holding `refuse` (when
    /// not empty); records the sizes of all bodies tried and the bodies it accepted, in
    /// order.
    #[derive(Default)]
    struct Switch {
        down: AtomicBool,
        delay: Duration,
        refuse: &'static [u8],
        tried: Mutex<Vec<usize>>,
        got: Mutex<Vec<Bytes>>,
    }

    impl Upstream for Switch {
        fn send<'a>(
            &'a self,
            p: &'a Payload,
        ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
            Box::pin(async move {
                if !self.delay.is_zero() {
                    tokio::time::sleep(self.delay).await;
                }
                if let Ok(mut t) = self.tried.lock() {
                    t.push(p.body.len());
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err(SendError::Retryable {
                        reason: "down".into(),
                        retry_after: None,
                    });
                }
                let r = self.refuse;
                if !r.is_empty() && p.body.windows(r.len()).any(|w| w == r) {
                    return Err(SendError::Permanent {
                        reason: "400".into(),
                    });
                }
                if let Ok(mut g) = self.got.lock() {
                    g.push(p.body.clone());
                }
                Ok(())
            })
        }
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp(name: &str) -> TempDir {
        let d =
            std::env::temp_dir().join(format!("otel-sli-delivery-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        TempDir(d)
    }

    fn numbered(i: u64, size: usize) -> Payload {
        let mut body = format!("{i:08}").into_bytes();
        body.resize(size.max(8), b'.');
        Payload {
            body: Bytes::from(body),
            items: 1,
            signal: None,
            gzipped: false,
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn several_workers() -> DeliveryConfig {
        DeliveryConfig {
            workers: 4,
            ..cfg()
        }
    }

    fn sorted(mut v: Vec<Bytes>) -> Vec<Bytes> {
        v.sort();
        v
    }

    /// A spooled queue (1 MiB spool in `dir`) in front of a `Switch` that starts `down`.
    fn spooled_switch(
        dir: &TempDir,
        config: DeliveryConfig,
        down: bool,
    ) -> (Arc<Switch>, Running, Arc<Stats>) {
        let up = Arc::new(Switch::default());
        up.down.store(down, Ordering::SeqCst);
        let r = spawn_spooled(
            "t",
            up.clone(),
            config,
            Some(SpoolConfig::new(dir.0.clone(), 1 << 20)),
        )
        .expect("spool");
        let stats = Arc::clone(r.queue.stats());
        (up, r, stats)
    }

    #[tokio::test]
    async fn batched_payloads_arrive_merged_in_order_and_none_is_held_back() {
        let up = Arc::new(Switch {
            delay: Duration::from_millis(2),
            ..Switch::default()
        });
        let r = spawn(
            "batched",
            Arc::clone(&up) as Arc<dyn Upstream>,
            DeliveryConfig {
                queue_capacity: 1000,
                batch: Some(Batching {
                    max_bytes: 100,
                    wait: Duration::from_millis(1),
                }),
                ..several_workers()
            },
        );
        // 16-byte bodies, the signal changing every 7: batches end at a signal change
        // (the payload that ended one starts the next) or at 6 payloads (100 bytes).
        let signal = |i: u64| [Signal::Traces, Signal::Logs][(i / 7 % 2) as usize];
        for i in 0..200 {
            let mut p = numbered(i, 16);
            p.signal = Some(signal(i));
            assert!(r.queue.submit(p));
        }
        let stats = Arc::clone(r.queue.stats());
        until("all delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 200
        })
        .await;
        until("queue empty", || stats.queued.load(Ordering::Relaxed) == 0).await;
        let got = up.got.lock().expect("got").clone();
        assert!(got.len() < 200, "{} sends for 200 payloads", got.len());
        let mut pieces = Vec::new();
        for body in &got {
            assert!(body.len() <= 100 && body.len() % 16 == 0, "{}", body.len());
            let ids: Vec<u64> = body
                .chunks(16)
                .map(|c| {
                    std::str::from_utf8(&c[..8])
                        .expect("id")
                        .parse()
                        .expect("id")
                })
                .collect();
            // Queue order within a send, one signal per send.
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
            assert!(ids.iter().all(|&i| signal(i) == signal(ids[0])), "{ids:?}");
            pieces.extend(body.chunks(16).map(Bytes::copy_from_slice));
        }
        let want: Vec<Bytes> = (0..200).map(|i| numbered(i, 16).body).collect();
        assert_eq!(sorted(pieces), want, "every payload exactly once");
        // A payload that ends a batch while another worker waits on the empty queue is
        // sent all the same, not when the next one arrives.
        let before = got.len();
        for (i, sig) in [(500, Signal::Traces), (501, Signal::Metrics)] {
            let mut p = numbered(i, 16);
            p.signal = Some(sig);
            assert!(r.queue.submit(p));
        }
        until("both sent", || {
            stats.sent_items.load(Ordering::Relaxed) == 202
        })
        .await;
        assert_eq!(up.got.lock().expect("got").len(), before + 2);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    /// A body holding it is refused for good by a `Switch` told to.
    const BAD: &[u8] = b"BAD!";

    #[tokio::test]
    async fn a_merged_payload_refused_whole_is_sent_again_one_by_one() {
        let up = Arc::new(Switch {
            refuse: BAD,
            ..Switch::default()
        });
        let r = spawn(
            "picky",
            Arc::clone(&up) as Arc<dyn Upstream>,
            DeliveryConfig {
                queue_capacity: 100,
                workers: 1,
                batch: Some(Batching {
                    max_bytes: 1 << 10,
                    wait: Duration::from_millis(200),
                }),
                ..cfg()
            },
        );
        for i in 0..6 {
            let mut p = numbered(i, 16);
            if i == 2 {
                p.body = Bytes::from_static(b"00000002BAD!....");
            }
            assert!(r.queue.submit(p));
        }
        let stats = Arc::clone(r.queue.stats());
        until("all judged", || {
            stats.sent_items.load(Ordering::Relaxed) + stats.dropped(DropReason::Rejected) == 6
        })
        .await;
        assert_eq!(stats.dropped(DropReason::Rejected), 1, "only the bad one");
        // Refused twice: merged, then on its own.
        assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 2);
        let got = up.got.lock().expect("got").clone();
        let want: Vec<Bytes> = [0, 1, 3, 4, 5]
            .iter()
            .map(|&i| numbered(i, 16).body)
            .collect();
        assert_eq!(got, want, "the others one by one, in order");
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_failing_upstream_is_spooled_whole_and_replayed_when_back() {
        let dir = temp("replay");
        let (up, r, stats) = spooled_switch(&dir, several_workers(), true);
        for i in 0..20 {
            assert!(r.queue.submit(numbered(i, 100)));
        }
        until("all spooled", || {
            stats.spool_items.load(Ordering::Relaxed) == 20
                && stats.queued.load(Ordering::Relaxed) == 0
        })
        .await;
        assert!(stats.spool_bytes.load(Ordering::Relaxed) > 20 * 100);
        up.down.store(false, Ordering::SeqCst);
        until("all delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 20
        })
        .await;
        let got = up.got.lock().expect("got").clone();
        let want: Vec<Bytes> = (0..20).map(|i| numbered(i, 100).body).collect();
        assert_eq!(sorted(got), want, "each once");
        until("spool emptied", || {
            stats.spool_items.load(Ordering::Relaxed) == 0
        })
        .await;
        assert_eq!(stats.spool_bytes.load(Ordering::Relaxed), 0);
        // Healthy again: new payloads go through memory.
        r.queue.submit(numbered(20, 100));
        until("delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 21
        })
        .await;
        assert_eq!(stats.spooled_items.load(Ordering::Relaxed), 20);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
        assert!(DropReason::ALL.iter().all(|r| stats.dropped(*r) == 0));
    }

    #[tokio::test]
    async fn a_merged_payload_is_spooled_as_the_requests_it_holds() {
        let dir = temp("merged");
        let up = Arc::new(Switch {
            refuse: BAD,
            ..Switch::default()
        });
        up.down.store(true, Ordering::SeqCst);
        let config = DeliveryConfig {
            queue_capacity: 100,
            batch: Some(Batching {
                max_bytes: 1 << 20,
                wait: Duration::from_millis(200),
            }),
            ..several_workers()
        };
        let r = spawn_spooled(
            "t",
            Arc::clone(&up) as Arc<dyn Upstream>,
            config,
            Some(SpoolConfig::new(dir.0.clone(), 1 << 20)),
        )
        .expect("spool");
        let stats = Arc::clone(r.queue.stats());
        let body = |i: u64| {
            let mut p = numbered(i, 100);
            if i == 7 {
                p.body = Bytes::from([&b"00000007"[..], BAD, &[b'.'; 88]].concat());
            }
            p
        };
        for i in 0..20 {
            assert!(r.queue.submit(body(i)));
        }
        until("all spooled", || {
            stats.spool_items.load(Ordering::Relaxed) == 20
                && stats.queued.load(Ordering::Relaxed) == 0
        })
        .await;
        // Tried merged first; what the spool's replay tried since were single requests.
        let tried = up.tried.lock().expect("tried").clone();
        assert_eq!(tried.first(), Some(&2000), "{tried:?}");
        assert!(tried[1..].iter().all(|&n| n == 100), "{tried:?}");
        up.down.store(false, Ordering::SeqCst);
        until("all judged", || {
            stats.sent_items.load(Ordering::Relaxed) + stats.dropped(DropReason::Rejected) == 20
        })
        .await;
        // Replayed record by record, each its own request: the refused one costs only itself.
        assert_eq!(stats.dropped(DropReason::Rejected), 1);
        assert_eq!(stats.sent_requests.load(Ordering::Relaxed), 19);
        let got = up.got.lock().expect("got").clone();
        let want: Vec<Bytes> = (0..20).filter(|&i| i != 7).map(|i| body(i).body).collect();
        assert_eq!(sorted(got), want);
        assert_eq!(stats.spooled_items.load(Ordering::Relaxed), 20);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
        let mut others = DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::Rejected);
        assert!(others.all(|r| stats.dropped(*r) == 0));
    }

    #[tokio::test]
    async fn a_single_worker_queue_delivers_memory_then_spool_in_order() {
        let dir = temp("ordered");
        let (up, r, stats) = spooled_switch(&dir, cfg(), true);
        for i in 0..20 {
            assert!(r.queue.submit(numbered(i, 100)));
        }
        // 4 fit in memory (one of them retrying), the rest wait on disk behind them.
        until("overflow spooled", || {
            stats.spool_items.load(Ordering::Relaxed) == 16
        })
        .await;
        assert_eq!(stats.queued.load(Ordering::Relaxed), 4);
        assert!(stats.failed_attempts.load(Ordering::Relaxed) >= 1);
        // Still failing: what arrives now goes behind.
        for i in 20..25 {
            assert!(r.queue.submit(numbered(i, 100)));
        }
        until("new spooled", || {
            stats.spool_items.load(Ordering::Relaxed) == 21
        })
        .await;
        up.down.store(false, Ordering::SeqCst);
        until("all delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 25
        })
        .await;
        let want: Vec<Bytes> = (0..25).map(|i| numbered(i, 100).body).collect();
        assert_eq!(
            *up.got.lock().expect("got"),
            want,
            "in submission order, each once"
        );
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn what_is_spooled_at_shutdown_is_delivered_by_the_next_run() {
        let dir = temp("restart");
        let spool = || Some(SpoolConfig::new(dir.0.clone(), 1 << 20));
        let down = Arc::new(Switch::default());
        down.down.store(true, Ordering::SeqCst);
        let r = spawn_spooled("t", down.clone(), several_workers(), spool()).expect("spool");
        for i in 0..10 {
            r.queue.submit(numbered(i, 1000));
        }
        let stats = Arc::clone(r.queue.stats());
        until("spooled", || {
            stats.spool_items.load(Ordering::Relaxed) == 10
        })
        .await;
        r.shutdown(Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(
            stats.dropped(DropReason::Shutdown),
            0,
            "kept on disk, not dropped"
        );

        let up = Arc::new(Switch::default());
        let r = spawn_spooled("t", up.clone(), cfg(), spool()).expect("reopen");
        let stats = Arc::clone(r.queue.stats());
        until("replayed", || {
            stats.sent_items.load(Ordering::Relaxed) == 10
        })
        .await;
        let want: Vec<Bytes> = (0..10).map(|i| numbered(i, 1000).body).collect();
        assert_eq!(sorted(up.got.lock().expect("got").clone()), want);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_full_memory_queue_spills_to_disk_instead_of_dropping() {
        let dir = temp("spill");
        let up = Arc::new(Switch {
            delay: Duration::from_millis(20),
            ..Switch::default()
        });
        let config = DeliveryConfig {
            queue_capacity: 2,
            ..cfg()
        };
        let r = spawn_spooled(
            "t",
            up.clone(),
            config,
            Some(SpoolConfig::new(dir.0.clone(), 1 << 20)),
        )
        .expect("spool");
        let stats = Arc::clone(r.queue.stats());
        for i in 0..30 {
            assert!(r.queue.submit(numbered(i, 64)));
        }
        until("all delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 30
        })
        .await;
        assert!(stats.spooled_items.load(Ordering::Relaxed) > 0);
        assert_eq!(stats.dropped(DropReason::QueueFull), 0);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn at_the_spool_cap_the_oldest_are_dropped_and_counted() {
        let dir = temp("cap");
        let up = Arc::new(Switch::default());
        up.down.store(true, Ordering::SeqCst);
        let r = spawn_spooled(
            "t",
            up.clone(),
            several_workers(),
            Some(SpoolConfig {
                dir: dir.0.clone(),
                max_bytes: 64 << 10,
                segment_bytes: 16 << 10,
            }),
        )
        .expect("spool");
        let stats = Arc::clone(r.queue.stats());
        for i in 0..100 {
            r.queue.submit(numbered(i, 2000));
            // Stay within the writer's channel: this test is about the disk cap.
            until("written", || {
                stats.spooled_items.load(Ordering::Relaxed) > i
            })
            .await;
        }
        until("all accounted", || {
            stats.spooled_items.load(Ordering::Relaxed) == 100
        })
        .await;
        assert!(stats.spool_bytes.load(Ordering::Relaxed) <= 64 << 10);
        let full = stats.dropped(DropReason::SpoolFull);
        assert!(full > 50, "{full}");
        up.down.store(false, Ordering::SeqCst);
        until("rest delivered", || {
            stats.sent_items.load(Ordering::Relaxed) + stats.dropped(DropReason::SpoolFull) == 100
        })
        .await;
        let got = up.got.lock().expect("got").clone();
        let mut idx: Vec<u64> = got
            .iter()
            .filter_map(|b| std::str::from_utf8(&b[..8]).ok()?.parse().ok())
            .collect();
        idx.sort_unstable();
        // The first few were being sent when their segment was dropped: they are delivered
        // from memory. Of the rest, the newest survive.
        let later: Vec<u64> = idx.into_iter().filter(|i| *i >= 4).collect();
        let n = later.len() as u64;
        assert_eq!(
            later,
            (100 - n..100).collect::<Vec<_>>(),
            "a contiguous newest tail"
        );
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }

    /// Never answers.
    struct Hang;

    impl Upstream for Hang {
        fn send<'a>(
            &'a self,
            _: &'a Payload,
        ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_send_that_hangs_at_shutdown_is_counted_or_spooled_not_lost() {
        let r = spawn("t", Arc::new(Hang), cfg());
        r.queue.submit(payload(3));
        let stats = Arc::clone(r.queue.stats());
        r.shutdown(Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(stats.dropped(DropReason::Shutdown), 3);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);

        let dir = temp("hang");
        let spool = || Some(SpoolConfig::new(dir.0.clone(), 1 << 20));
        let r = spawn_spooled("t", Arc::new(Hang), cfg(), spool()).expect("spool");
        r.queue.submit(numbered(7, 100));
        let stats = Arc::clone(r.queue.stats());
        r.shutdown(Instant::now() + Duration::from_millis(50)).await;
        assert_eq!(stats.dropped(DropReason::Shutdown), 0);
        assert_eq!(stats.spool_items.load(Ordering::Relaxed), 1, "kept on disk");
        let up = Arc::new(Switch::default());
        let r = spawn_spooled("t", up.clone(), cfg(), spool()).expect("reopen");
        let stats = Arc::clone(r.queue.stats());
        until("delivered", || {
            stats.sent_items.load(Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(*up.got.lock().expect("got"), vec![numbered(7, 100).body]);
        r.shutdown(Instant::now() + Duration::from_secs(1)).await;
    }
}
