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
//! arrives meanwhile, behind. A writer thread appends (disk I/O never runs on the
//! submitters' threads); a replay task sends the spool oldest first, retrying until each
//! record is delivered or refused, and acknowledges records in order.
//!
//! The parts:
//! - [`policy`]: every decision (send, retry after how long, spool, drop and why, what a
//!   stop leaves, which replayed records to acknowledge) as synchronous code;
//! - `worker`: the tasks that take payloads from memory and carry the decisions out;
//! - `spill`: the writer thread and the replay task around the [`spool`] files;
//! - [`batch`]: merging queued requests into fewer upstream requests;
//! - [`stats`]: the counters, and the one place that counts payloads into and out of memory.

pub mod batch;
pub mod policy;
mod spill;
pub mod spool;
pub mod stats;
mod worker;

pub use stats::{DropReason, Stats};

use batch::{Batching, Source};
use bytes::Bytes;
use spill::{Spill, SPILL_CHANNEL};
use spool::{Spool, SpoolConfig, SpoolError};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use worker::{Shared, Worker};

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
        if !self.stats.reserve(len, self.max_bytes) {
            return self.overflow(payload);
        }
        match self.tx.try_send(payload) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p)) => {
                self.stats.release(1, len);
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
            .spawn(move || spill::write_spool(&sp2, &st2, &n2, &srx))
            .map_err(|e| tracing::error!(exporter = %name, error = %e, "cannot start the spool writer; spooled payloads will be dropped"))
            .ok();
        sp
    });
    let shared = Arc::new(Shared::new(
        Arc::clone(&name),
        upstream,
        Arc::clone(&stats),
        config,
        spill.clone(),
    ));
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
        workers.push(tokio::spawn(spill::replay(
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
        // The replay acknowledges the records (the published count drops to 0) before it
        // finds the spool empty and stops diverting new payloads to it.
        let spill = r.queue.spill.clone().expect("a spool");
        until("spool emptied", || {
            stats.spool_items.load(Ordering::Relaxed) == 0 && !spill.diverting()
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
