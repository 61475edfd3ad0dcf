//! The loop both exporters of derived metrics (remote write, OTLP metrics) run: every
//! `interval` it asks an [`Encode`] for the requests that describe what the read model
//! reports now and submits them to the exporter's own delivery queue; at shutdown it
//! encodes once more (call it after the pipeline's final flush) and gives the queue the
//! rest of the deadline. Encoding runs on a blocking thread: large views take a while, and
//! the SLO evaluation takes the engine's lock. The loop never waits on the network.
//!
//! One failure policy for both: an encoding that panics is logged, that export is lost
//! (nothing was queued for it), and the next tick starts from a fresh encoder (for OTLP,
//! cumulative series then begin again with a new start time, which backends read as a
//! reset). The exporter keeps running.

use crate::export::delivery::{Payload, Queue, Running};
use crate::report::Reader;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Turns what the read model reports now into request bodies for one exporter.
pub trait Encode: Send + 'static {
    /// The requests for the report `reader` gives now (none when there is nothing to send).
    fn payloads(&mut self, reader: &Reader) -> Vec<Payload>;
}

/// Makes a fresh encoder: at the start, and after an encoding panicked.
type Fresh = Box<dyn Fn() -> Box<dyn Encode> + Send + Sync>;

/// What every export needs.
struct Job {
    reader: Reader,
    encoder: Mutex<Box<dyn Encode>>,
    fresh: Fresh,
    queue: Queue,
}

impl Job {
    /// Encodes with the current encoder; one left poisoned by a panic is replaced first.
    fn payloads(&self) -> Vec<Payload> {
        let mut encoder = match self.encoder.lock() {
            Ok(e) => e,
            Err(poisoned) => {
                let mut e = poisoned.into_inner();
                *e = (self.fresh)();
                self.encoder.clear_poison();
                e
            }
        };
        encoder.payloads(&self.reader)
    }

    /// Encodes on a blocking thread and queues the requests.
    async fn export(self: &Arc<Self>) {
        let job = Arc::clone(self);
        match tokio::task::spawn_blocking(move || job.payloads()).await {
            Ok(payloads) => {
                for p in payloads {
                    let items = p.items;
                    if !self.queue.submit(p) {
                        tracing::debug!(exporter = %self.queue.name(), items, "queue full; this request is dropped");
                    }
                }
            }
            Err(e) => tracing::error!(
                exporter = %self.queue.name(),
                error = %e,
                "encoding failed; this export is lost and the next one starts from a fresh encoder"
            ),
        }
    }
}

/// A running periodic exporter: the ticker task and the delivery queue it feeds.
pub struct Periodic {
    delivery: Running,
    job: Arc<Job>,
    stop: tokio::sync::watch::Sender<bool>,
    ticker: JoinHandle<()>,
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("exporter", &self.job.queue.name())
            .finish_non_exhaustive()
    }
}

impl Periodic {
    /// Starts the ticker on the current runtime: the first export one `interval` from now,
    /// then one every `interval` (a late tick is delayed, never doubled). `fresh` makes the
    /// encoder, now and after a panic.
    pub fn start(
        reader: Reader,
        interval: Duration,
        delivery: Running,
        fresh: impl Fn() -> Box<dyn Encode> + Send + Sync + 'static,
    ) -> Self {
        let job = Arc::new(Job {
            reader,
            encoder: Mutex::new(fresh()),
            fresh: Box::new(fresh),
            queue: delivery.queue.clone(),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let ticking = Arc::clone(&job);
        let ticker = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Any change (or the exporter going away) means stop.
                tokio::select! {
                    _ = tick.tick() => ticking.export().await,
                    _ = stopped.changed() => return,
                }
            }
        });
        Self {
            delivery,
            job,
            stop,
            ticker,
        }
    }

    /// The delivery queue (its counters feed the self-metrics).
    pub fn queue(&self) -> &Queue {
        &self.delivery.queue
    }

    /// Encodes what is reported now and queues it, besides the regular ticks.
    pub async fn export_now(&self) {
        self.job.export().await;
    }

    /// Stops the ticker, exports once more (flush the pipeline first) and gives the queue
    /// until `deadline` to deliver; what is left then is spooled or counted as dropped.
    pub async fn shutdown(self, deadline: Instant) {
        let Self {
            delivery,
            job,
            stop,
            ticker,
        } = self;
        let _ = stop.send(true);
        let left = deadline.saturating_duration_since(Instant::now());
        let abort = ticker.abort_handle();
        if tokio::time::timeout(left, ticker).await.is_err() {
            abort.abort();
            tracing::warn!(
                exporter = %job.queue.name(),
                "the export ticker did not stop before the shutdown deadline"
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if !left.is_zero() && tokio::time::timeout(left, job.export()).await.is_err() {
            tracing::warn!(
                exporter = %job.queue.name(),
                "the final export did not finish before the shutdown deadline"
            );
        }
        delivery.shutdown(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::delivery::{spawn, DeliveryConfig, SendError, Upstream};
    use bytes::Bytes;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Records the items of every payload it is sent.
    #[derive(Default)]
    struct Sink(Mutex<Vec<u64>>);

    impl Upstream for Sink {
        fn send<'a>(
            &'a self,
            p: &'a Payload,
        ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
            if let Ok(mut v) = self.0.lock() {
                v.push(p.items);
            }
            Box::pin(async { Ok(()) })
        }
    }

    /// Sends one payload per call whose item count says which encoder made it (how many
    /// existed before it) and which call of that encoder it was; the first encoder panics
    /// on its second call.
    struct Counting {
        generation: u64,
        calls: u64,
    }

    impl Encode for Counting {
        fn payloads(&mut self, _: &Reader) -> Vec<Payload> {
            self.calls += 1;
            assert!(!(self.generation == 0 && self.calls == 2), "encoding bug");
            vec![Payload {
                body: Bytes::from_static(b"x"),
                items: self.generation * 100 + self.calls,
                signal: None,
                gzipped: false,
            }]
        }
    }

    fn reader() -> Reader {
        let c = crate::settings::parse("", |_| None).expect("config");
        let clock = Arc::new(crate::clock::ManualClock::new(1_796_000_000_000_000_000));
        let p = crate::app::build_pipeline(&c, clock).expect("pipeline");
        Reader::new(p, crate::report::Thresholds::default())
    }

    #[tokio::test]
    async fn a_panicking_encoding_loses_that_export_only_and_the_next_starts_afresh() {
        let sink = Arc::new(Sink::default());
        let delivery = spawn("test", sink.clone(), DeliveryConfig::default());
        let made = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&made);
        let periodic = Periodic::start(reader(), Duration::from_secs(3600), delivery, move || {
            let generation = m.fetch_add(1, Ordering::SeqCst);
            Box::new(Counting {
                generation,
                calls: 0,
            })
        });
        for _ in 0..4 {
            periodic.export_now().await;
        }
        periodic
            .shutdown(Instant::now() + Duration::from_secs(5))
            .await;
        let sent = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        // Call 1 of encoder 0; call 2 panicked (nothing sent); encoder 1 took over for the
        // two remaining ticks and the final export at shutdown.
        assert_eq!(sent, vec![1, 101, 102, 103]);
        assert_eq!(made.load(Ordering::SeqCst), 2);
    }
}
