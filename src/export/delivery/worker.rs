//! The async shell of delivery: worker tasks that take payloads from the memory queue (merged,
//! with batching) and send them, retrying, spooling or dropping each as [`super::policy`]
//! decides, and [`Shared::deliver`], the retry loop the spool's replay uses too.

use super::batch::{gather, Gathered, Source};
use super::policy::{self, Attempts, Outcome, Shape, Step, Take, Then};
use super::spill::Spill;
use super::stats::{DropReason, Stats};
use super::{DeliveryConfig, SendError, Upstream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// What the workers and the replay task share.
pub(super) struct Shared {
    pub(super) name: Arc<str>,
    upstream: Arc<dyn Upstream>,
    pub(super) stats: Arc<Stats>,
    pub(super) config: DeliveryConfig,
    pub(super) shape: Shape,
    limit: LogLimit,
    seed: AtomicU64,
    pub(super) spill: Option<Arc<Spill>>,
}

impl Shared {
    pub(super) fn new(
        name: Arc<str>,
        upstream: Arc<dyn Upstream>,
        stats: Arc<Stats>,
        config: DeliveryConfig,
        spill: Option<Arc<Spill>>,
    ) -> Self {
        Shared {
            name,
            upstream,
            stats,
            shape: Shape::new(&config, spill.is_some()),
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
            spill,
        }
    }

    fn jitter(&self, d: Duration) -> Duration {
        let mut seed = self.seed.load(Ordering::Relaxed);
        let j = policy::jitter(&mut seed, d);
        self.seed.store(seed, Ordering::Relaxed);
        j
    }

    /// Sends `g` until [`Attempts::after`] settles it. `from_spool`: the payload came from
    /// the spool. Carries out the spooling itself; the caller counts drops.
    pub(super) async fn deliver(
        &self,
        g: &Gathered,
        from_spool: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let payload = &g.payload;
        let started = Instant::now();
        let mut attempts = Attempts::new(&self.config, self.shape, from_spool, started);
        loop {
            let result = tokio::select! {
                r = self.upstream.send(payload) => r,
                // Past the shutdown deadline an attempt that hangs is given up: the payload
                // is then spooled or counted, never lost with an aborted task.
                _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
            };
            match &result {
                Ok(()) => self.stats.delivered(payload.items),
                Err(e) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, SendError::Permanent { .. }) {
                        self.limit.note(&self.name, e);
                    }
                }
            }
            if let Some(sp) = &self.spill {
                match &result {
                    Ok(()) => sp.set_failing(false),
                    Err(SendError::Retryable { .. }) => sp.set_failing(true),
                    Err(SendError::Permanent { .. }) => {}
                }
            }
            let step = attempts.after(&self.config, &result, Instant::now(), |d| self.jitter(d));
            let reason = match &result {
                Err(SendError::Retryable { reason, .. }) => reason.as_str(),
                _ => "",
            };
            match step {
                Step::Done(Outcome::Spooled) => {
                    if let Some(sp) = &self.spill {
                        tracing::debug!(exporter = %self.name, %reason, "upstream failing; spooling");
                        sp.offer_received(g, &self.stats, DropReason::QueueFull);
                    }
                    return Outcome::Spooled;
                }
                Step::Done(outcome @ Outcome::Dropped(DropReason::RetriesExhausted)) => {
                    tracing::warn!(exporter = %self.name, %reason, "giving up on a payload after retrying for {:?}", started.elapsed());
                    return outcome;
                }
                Step::Done(outcome) => return outcome,
                Step::Retry(delay) => {
                    tracing::debug!(exporter = %self.name, %reason, ?delay, "retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return Outcome::Stopped,
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A payload the queue stopped before delivering ([`Shape::on_stop`]).
    fn on_stop(&self, g: &Gathered) {
        match (self.shape.on_stop(), &self.spill) {
            (Outcome::Spooled, Some(sp)) => {
                sp.offer_received(g, &self.stats, DropReason::Shutdown);
            }
            _ => self.stats.drop_items(DropReason::Shutdown, g.payload.items),
        }
    }
}

/// One worker task taking payloads from the memory queue.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) src: Arc<tokio::sync::Mutex<Source>>,
    pub(super) stop: watch::Receiver<bool>,
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

    pub(super) async fn run(mut self) {
        loop {
            let Some(g) = self.take().await else {
                self.leftovers().await;
                return;
            };
            let s = Arc::clone(&self.shared);
            let failing = s.spill.as_ref().is_some_and(|sp| sp.failing());
            let outcome = match (s.shape.on_take(failing), &s.spill) {
                // While the upstream fails, what was queued in memory goes to disk untried.
                (Take::Spool, Some(sp)) => {
                    sp.offer_received(&g, &s.stats, DropReason::QueueFull);
                    Outcome::Spooled
                }
                _ => s.deliver(&g, false, &mut self.stop).await,
            };
            s.stats.release(g.requests(), g.payload.body.len() as u64);
            match policy::then(outcome, !g.parts.is_empty()) {
                Then::Nothing => {}
                Then::Split => {
                    for part in &g.parts {
                        let one = Gathered::one(part.clone());
                        let outcome = s.deliver(&one, false, &mut self.stop).await;
                        match policy::then(outcome, false) {
                            Then::Nothing | Then::Split => {}
                            Then::Count(reason) => s.stats.drop_items(reason, part.items),
                            Then::Stop => s.on_stop(&one),
                        }
                    }
                }
                Then::Count(reason) => s.stats.drop_items(reason, g.payload.items),
                Then::Stop => s.on_stop(&g),
            }
            if *self.stop.borrow() {
                self.leftovers().await;
                return;
            }
        }
    }

    /// After the shutdown deadline: what is still queued is spooled or dropped and counted.
    async fn leftovers(&self) {
        let mut src = self.src.lock().await;
        while let Some(p) = src.try_next() {
            let s = &self.shared;
            s.stats.release(1, p.body.len() as u64);
            s.on_stop(&Gathered::one(p));
        }
    }
}
