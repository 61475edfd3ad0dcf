//! Reliable delivery to one upstream: a bounded queue, a few worker tasks, retries with
//! exponential backoff and jitter that honour the upstream's `RetryInfo` / `Retry-After`,
//! and counters for everything sent, retried and dropped (by reason). A slow or dead
//! upstream fills only its own queue; whoever submits never waits.
//!
//! Exporters implement [`Upstream`] (one attempt to send one payload, classified as success,
//! retryable or permanent failure) and submit payloads to the [`Queue`] that [`spawn`]
//! returns.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
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
    /// Concurrent sends.
    pub workers: usize,
    /// First retry delay; doubles per attempt, with ±50% jitter.
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Give up on a payload after this long (counted `retries_exhausted`).
    pub max_elapsed: Duration,
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
}

impl DropReason {
    /// All reasons.
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
    ];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
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
    pub dropped_items: [AtomicU64; 4],
    /// Payloads waiting or being sent.
    pub queued: AtomicU64,
    /// Bytes of the payloads waiting or being sent.
    pub queued_bytes: AtomicU64,
    /// Unix seconds of the last delivery (0: never).
    pub last_success_unix: AtomicU64,
}

impl Stats {
    fn drop_items(&self, reason: DropReason, items: u64) {
        self.dropped_items[reason as usize].fetch_add(items, Ordering::Relaxed);
    }

    /// Items dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_items[reason as usize].load(Ordering::Relaxed)
    }
}

/// Where payloads for one upstream are submitted.
#[derive(Clone, Debug)]
pub struct Queue {
    name: Arc<str>,
    tx: mpsc::Sender<Payload>,
    stats: Arc<Stats>,
    max_bytes: u64,
}

impl Queue {
    /// Queues `payload`; when the queue is full it is dropped and counted. Never waits.
    pub fn submit(&self, payload: Payload) -> bool {
        let items = payload.items;
        let len = payload.body.len() as u64;
        let reserved = self
            .stats
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + len <= self.max_bytes || b == 0).then_some(b + len)
            })
            .is_ok();
        if !reserved {
            self.stats.drop_items(DropReason::QueueFull, items);
            return false;
        }
        // Counted before sending: a worker may take it (and decrement) at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(payload) {
            Ok(()) => true,
            Err(_) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.stats.drop_items(DropReason::QueueFull, items);
                false
            }
        }
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
}

impl Running {
    /// Lets the workers deliver what is queued until `deadline`, then counts what is left
    /// as dropped (`shutdown`) and stops them. Submit nothing more once this is called.
    pub async fn shutdown(self, deadline: Instant) {
        let Running {
            queue,
            workers,
            stop,
        } = self;
        // Other handles may still hold senders, so wait for the queue to empty rather than
        // for it to close.
        while queue.stats.queued.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Workers give up their retries, count what is left, and stop.
        let _ = stop.send(true);
        for w in workers {
            let abort = w.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), w)
                .await
                .is_err()
            {
                abort.abort();
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
    let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let stats = Arc::new(Stats::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let name: Arc<str> = name.into();
    let limit = Arc::new(LogLimit {
        every: Duration::from_secs(10),
        state: Mutex::new((None, 0)),
    });
    let seed = Arc::new(AtomicU64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1,
    ));
    let workers = (0..config.workers.max(1))
        .map(|_| {
            let w = Worker {
                name: Arc::clone(&name),
                upstream: Arc::clone(&upstream),
                rx: Arc::clone(&rx),
                stats: Arc::clone(&stats),
                config,
                limit: Arc::clone(&limit),
                seed: Arc::clone(&seed),
                stop: stop_rx.clone(),
            };
            tokio::spawn(w.run())
        })
        .collect();
    Running {
        queue: Queue {
            name,
            tx,
            stats,
            max_bytes: config.max_queued_bytes,
        },
        workers,
        stop,
    }
}

struct Worker {
    name: Arc<str>,
    upstream: Arc<dyn Upstream>,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Payload>>>,
    stats: Arc<Stats>,
    config: DeliveryConfig,
    limit: Arc<LogLimit>,
    seed: Arc<AtomicU64>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            let next = {
                let mut rx = self.rx.lock().await;
                tokio::select! {
                    p = rx.recv() => p,
                    _ = self.stop.wait_for(|s| *s) => None,
                }
            };
            let Some(payload) = next else {
                self.count_leftovers().await;
                return;
            };
            let outcome = self.deliver(&payload).await;
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats
                .queued_bytes
                .fetch_sub(payload.body.len() as u64, Ordering::AcqRel);
            if let Some(reason) = outcome {
                self.stats.drop_items(reason, payload.items);
            }
            if *self.stop.borrow() {
                self.count_leftovers().await;
                return;
            }
        }
    }

    /// After the shutdown deadline: what is still queued is dropped and counted.
    async fn count_leftovers(&self) {
        let mut rx = self.rx.lock().await;
        while let Ok(p) = rx.try_recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats
                .queued_bytes
                .fetch_sub(p.body.len() as u64, Ordering::AcqRel);
            self.stats.drop_items(DropReason::Shutdown, p.items);
        }
    }

    /// Sends with retries; `None` when delivered, else why it was dropped.
    async fn deliver(&mut self, payload: &Payload) -> Option<DropReason> {
        let start = Instant::now();
        let mut backoff = self.config.initial_backoff;
        loop {
            match self.upstream.send(payload).await {
                Ok(()) => {
                    self.stats.sent_requests.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .sent_items
                        .fetch_add(payload.items, Ordering::Relaxed);
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.stats.last_success_unix.store(now, Ordering::Relaxed);
                    return None;
                }
                Err(e @ SendError::Permanent { .. }) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    self.limit.note(&self.name, &e);
                    return Some(DropReason::Rejected);
                }
                Err(SendError::Retryable {
                    reason,
                    retry_after,
                }) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    let delay = retry_after
                        .unwrap_or_else(|| jitter(&self.seed, backoff))
                        .min(self.config.max_elapsed);
                    if start.elapsed() + delay > self.config.max_elapsed {
                        tracing::warn!(exporter = %self.name, %reason, "giving up on a payload after retrying for {:?}", start.elapsed());
                        return Some(DropReason::RetriesExhausted);
                    }
                    tracing::debug!(exporter = %self.name, %reason, ?delay, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.wait_for(|s| *s) => return Some(DropReason::Shutdown),
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        }
    }

    fn payload(items: u64) -> Payload {
        Payload {
            body: Bytes::from_static(b"x"),
            items,
            signal: None,
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
}
