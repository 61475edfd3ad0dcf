//! The decisions of delivery as plain synchronous code: what happens to a payload when a
//! worker takes it from the queue, after each attempt (delivered, dropped, spooled, or
//! retried after how long), when the queue stops, and which replayed spool records may be
//! acknowledged. The async shell (the workers and the replay task in [`super::worker`] and
//! [`super::spill`]) carries these decisions out; it makes none of its own.
//!
//! Time is passed in (`now`), and so is the jitter, so every rule is unit-tested here
//! without a runtime or a clock.

use super::stats::DropReason;
use super::{DeliveryConfig, SendError};
use std::time::{Duration, Instant};

/// How a queue is set up, as far as its decisions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// The queue has a disk spool.
    pub spool: bool,
    /// Payloads must reach the upstream in the order they were submitted (one worker:
    /// remote write, OTLP metrics). Such a queue keeps retrying a failed payload in memory
    /// and sends the spool only once memory is empty, so the spool only ever holds payloads
    /// newer than those in memory.
    pub ordered: bool,
}

impl Shape {
    /// The shape of a queue with `config` and (or without) a spool.
    pub fn new(config: &DeliveryConfig, spool: bool) -> Self {
        Shape {
            spool,
            ordered: config.workers <= 1,
        }
    }

    /// A worker took a payload from the memory queue: send it, or (while the upstream fails,
    /// in an unordered spooled queue) put it on disk untried.
    pub fn on_take(self, upstream_failing: bool) -> Take {
        if self.spool && upstream_failing && !self.ordered {
            Take::Spool
        } else {
            Take::Send
        }
    }

    /// The queue stopped before the payload was delivered: spooled (refusals counted as
    /// `shutdown`) if there is a spool, else dropped and counted.
    pub fn on_stop(self) -> Outcome {
        if self.spool {
            Outcome::Spooled
        } else {
            Outcome::Dropped(DropReason::Shutdown)
        }
    }
}

/// What a worker does with a payload it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Send it.
    Send,
    /// Hand it to the spool as it is.
    Spool,
}

/// What became of one payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream took it.
    Delivered,
    /// Dropped; counted for this reason.
    Dropped(DropReason),
    /// Handed to the spool (the upstream is failing, or retries ran out).
    Spooled,
    /// The queue stopped before it was delivered.
    Stopped,
}

/// What to do after one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The payload is settled.
    Done(Outcome),
    /// Wait this long, then try again.
    Retry(Duration),
}

/// The retries of one payload.
#[derive(Clone, Debug)]
pub struct Attempts {
    shape: Shape,
    /// The payload came from the spool: it is retried until delivered or refused.
    from_spool: bool,
    started: Instant,
    backoff: Duration,
}

impl Attempts {
    /// Before the first attempt, at `now`.
    pub fn new(config: &DeliveryConfig, shape: Shape, from_spool: bool, now: Instant) -> Self {
        Attempts {
            shape,
            from_spool,
            started: now,
            backoff: config.initial_backoff,
        }
    }

    /// The next step after an attempt answered `result` at `now`. A retryable failure waits
    /// what the upstream asked for, or else the current backoff through `jitter` (capped at
    /// `max_elapsed`); the backoff doubles each time up to `max_backoff`.
    ///
    /// - Delivered; refused for good → dropped (`rejected`).
    /// - Retryable, in an unordered spooled queue, not from the spool → spooled at once.
    /// - Retryable, where retries are bounded, once the next try would pass `max_elapsed`
    ///   → spooled if there is a spool, else dropped (`retries_exhausted`). Retries are
    ///   unbounded for spool records, and for ordered spooled queues (spooling the payload
    ///   would put it behind newer ones).
    pub fn after(
        &mut self,
        config: &DeliveryConfig,
        result: &Result<(), SendError>,
        now: Instant,
        jitter: impl FnOnce(Duration) -> Duration,
    ) -> Step {
        let retry_after = match result {
            Ok(()) => return Step::Done(Outcome::Delivered),
            Err(SendError::Permanent { .. }) => {
                return Step::Done(Outcome::Dropped(DropReason::Rejected))
            }
            Err(SendError::Retryable { retry_after, .. }) => *retry_after,
        };
        if self.shape.spool && !self.from_spool && !self.shape.ordered {
            return Step::Done(Outcome::Spooled);
        }
        let delay = retry_after
            .unwrap_or_else(|| jitter(self.backoff))
            .min(config.max_elapsed);
        let unbounded = self.from_spool || (self.shape.spool && self.shape.ordered);
        let elapsed = now.saturating_duration_since(self.started);
        if !unbounded && elapsed + delay > config.max_elapsed {
            return Step::Done(if self.shape.spool {
                Outcome::Spooled
            } else {
                Outcome::Dropped(DropReason::RetriesExhausted)
            });
        }
        self.backoff = (self.backoff * 2).min(config.max_backoff);
        Step::Retry(delay)
    }
}

/// What a worker does once a payload taken from memory has its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Nothing more: delivered or spooled.
    Nothing,
    /// Count its items as dropped for this reason.
    Count(DropReason),
    /// A merged request was refused as a whole: send its requests one by one, so each is
    /// judged on its own and a bad one costs only its own items.
    Split,
    /// The queue stopped: [`Shape::on_stop`].
    Stop,
}

/// See [`Then`]; `merged`: the payload is several requests merged into one.
pub fn then(outcome: Outcome, merged: bool) -> Then {
    match outcome {
        Outcome::Delivered | Outcome::Spooled => Then::Nothing,
        Outcome::Dropped(DropReason::Rejected) if merged => Then::Split,
        Outcome::Dropped(reason) => Then::Count(reason),
        Outcome::Stopped => Then::Stop,
    }
}

/// Replayed spool records are settled in spool order, and an acknowledgement covers every
/// record before it. So once one record was not delivered (the queue stopped while it was
/// being sent), no later one is acknowledged either: those are sent again after a restart
/// (at least once, never lost).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    held_back: bool,
}

/// What settling one replayed record means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settle {
    /// Move the spool's delivered position past it.
    pub ack: bool,
    /// Count its items as dropped for this reason.
    pub dropped: Option<DropReason>,
}

impl Replay {
    /// Settles the next record in spool order. `on_disk`: the spool still holds it (it may
    /// have been dropped for room while it was being sent).
    pub fn settle(&mut self, outcome: Outcome, on_disk: bool) -> Settle {
        let (ack, dropped) = match outcome {
            Outcome::Delivered | Outcome::Spooled => (true, None),
            // Refused or given up: settled, so it does not come back.
            Outcome::Dropped(reason) => (true, Some(reason)),
            Outcome::Stopped => {
                self.held_back = true;
                (false, (!on_disk).then_some(DropReason::SpoolFull))
            }
        };
        Settle {
            ack: ack && !self.held_back,
            dropped,
        }
    }
}

/// Jitter by a small xorshift generator (no need for cryptographic randomness here):
/// between 0.5 and 1.5 times `d`. `seed` must not be 0.
pub fn jitter(seed: &mut u64, d: Duration) -> Duration {
    let mut x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    let f = 0.5 + (x % 1_000_001) as f64 / 1_000_000.0;
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            workers: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
            max_elapsed: Duration::from_secs(10),
            ..DeliveryConfig::default()
        }
    }

    const UNORDERED: Shape = Shape {
        spool: false,
        ordered: false,
    };
    const SPOOLED: Shape = Shape {
        spool: true,
        ordered: false,
    };
    const ORDERED_SPOOLED: Shape = Shape {
        spool: true,
        ordered: true,
    };

    fn retryable(after: Option<Duration>) -> Result<(), SendError> {
        Err(SendError::Retryable {
            reason: "503".into(),
            retry_after: after,
        })
    }

    fn same(d: Duration) -> Duration {
        d
    }

    #[test]
    fn one_worker_means_ordered() {
        let one = DeliveryConfig {
            workers: 1,
            ..config()
        };
        assert!(Shape::new(&one, false).ordered);
        assert!(!Shape::new(&config(), true).ordered);
    }

    #[test]
    fn success_delivers_and_a_refusal_drops_as_rejected_at_once() {
        let c = config();
        let t0 = Instant::now();
        for shape in [UNORDERED, SPOOLED, ORDERED_SPOOLED] {
            let mut a = Attempts::new(&c, shape, false, t0);
            assert_eq!(
                a.after(&c, &Ok(()), t0, same),
                Step::Done(Outcome::Delivered)
            );
            let refused = Err(SendError::Permanent {
                reason: "400".into(),
            });
            assert_eq!(
                a.after(&c, &refused, t0, same),
                Step::Done(Outcome::Dropped(DropReason::Rejected))
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_the_upstreams_delay_wins() {
        let c = config();
        let t0 = Instant::now();
        let mut a = Attempts::new(&c, UNORDERED, false, t0);
        let delays: Vec<Step> = (0..4)
            .map(|_| a.after(&c, &retryable(None), t0, same))
            .collect();
        let secs = |s| Step::Retry(Duration::from_secs(s));
        assert_eq!(delays, vec![secs(1), secs(2), secs(4), secs(4)]);
        assert_eq!(
            a.after(&c, &retryable(Some(Duration::from_secs(7))), t0, same),
            secs(7)
        );
        // Never longer than max_elapsed, whatever the upstream asks.
        let mut b = Attempts::new(&c, ORDERED_SPOOLED, false, t0);
        assert_eq!(
            b.after(&c, &retryable(Some(Duration::from_secs(3600))), t0, same),
            secs(10)
        );
        // The jitter applies to the backoff, not to the upstream's delay.
        let mut j = Attempts::new(&c, UNORDERED, false, t0);
        assert_eq!(
            j.after(&c, &retryable(None), t0, |d| d * 3),
            Step::Retry(Duration::from_secs(3))
        );
    }

    #[test]
    fn without_a_spool_retries_end_at_max_elapsed_as_retries_exhausted() {
        let c = config();
        let t0 = Instant::now();
        let mut a = Attempts::new(&c, UNORDERED, false, t0);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(matches!(
            a.after(&c, &retryable(None), at(8), same),
            Step::Retry(_)
        ));
        // 9 s elapsed + a 2 s backoff would pass 10 s.
        assert_eq!(
            a.after(&c, &retryable(None), at(9), same),
            Step::Done(Outcome::Dropped(DropReason::RetriesExhausted))
        );
    }

    #[test]
    fn an_unordered_spooled_queue_spools_at_the_first_retryable_failure() {
        let c = config();
        let t0 = Instant::now();
        let mut a = Attempts::new(&c, SPOOLED, false, t0);
        assert_eq!(
            a.after(&c, &retryable(None), t0, same),
            Step::Done(Outcome::Spooled)
        );
    }

    #[test]
    fn an_ordered_spooled_queue_and_spool_records_retry_without_end() {
        let c = config();
        let t0 = Instant::now();
        let late = t0 + Duration::from_secs(3600);
        let mut ordered = Attempts::new(&c, ORDERED_SPOOLED, false, t0);
        assert_eq!(
            ordered.after(&c, &retryable(None), late, same),
            Step::Retry(Duration::from_secs(1))
        );
        for shape in [SPOOLED, ORDERED_SPOOLED] {
            let mut record = Attempts::new(&c, shape, true, t0);
            assert!(matches!(
                record.after(&c, &retryable(None), late, same),
                Step::Retry(_)
            ));
        }
    }

    #[test]
    fn an_ordered_queue_without_a_spool_is_bounded_like_any_other() {
        let c = config();
        let t0 = Instant::now();
        let ordered = Shape {
            spool: false,
            ordered: true,
        };
        let mut a = Attempts::new(&c, ordered, false, t0);
        assert_eq!(
            a.after(&c, &retryable(None), t0 + Duration::from_secs(10), same),
            Step::Done(Outcome::Dropped(DropReason::RetriesExhausted))
        );
    }

    #[test]
    fn a_taken_payload_goes_to_disk_untried_only_while_an_unordered_spooled_upstream_fails() {
        assert_eq!(SPOOLED.on_take(true), Take::Spool);
        assert_eq!(SPOOLED.on_take(false), Take::Send);
        assert_eq!(ORDERED_SPOOLED.on_take(true), Take::Send);
        assert_eq!(UNORDERED.on_take(true), Take::Send);
    }

    #[test]
    fn at_stop_what_is_left_is_spooled_or_dropped_as_shutdown() {
        assert_eq!(SPOOLED.on_stop(), Outcome::Spooled);
        assert_eq!(ORDERED_SPOOLED.on_stop(), Outcome::Spooled);
        assert_eq!(UNORDERED.on_stop(), Outcome::Dropped(DropReason::Shutdown));
    }

    #[test]
    fn a_merged_request_refused_as_a_whole_is_split() {
        let rejected = Outcome::Dropped(DropReason::Rejected);
        assert_eq!(then(rejected, true), Then::Split);
        assert_eq!(then(rejected, false), Then::Count(DropReason::Rejected));
        let exhausted = Outcome::Dropped(DropReason::RetriesExhausted);
        assert_eq!(
            then(exhausted, true),
            Then::Count(DropReason::RetriesExhausted)
        );
        assert_eq!(then(Outcome::Delivered, true), Then::Nothing);
        assert_eq!(then(Outcome::Spooled, false), Then::Nothing);
        assert_eq!(then(Outcome::Stopped, true), Then::Stop);
    }

    #[test]
    fn replay_acknowledges_in_order_and_never_past_a_record_left_unsent() {
        let mut r = Replay::default();
        let ok = Settle {
            ack: true,
            dropped: None,
        };
        assert_eq!(r.settle(Outcome::Delivered, true), ok);
        assert_eq!(
            r.settle(Outcome::Dropped(DropReason::Rejected), true),
            Settle {
                ack: true,
                dropped: Some(DropReason::Rejected)
            }
        );
        // Stopped while being sent: stays on disk for the next run...
        assert_eq!(
            r.settle(Outcome::Stopped, true),
            Settle {
                ack: false,
                dropped: None
            }
        );
        // ... and so does every later record, delivered or not.
        assert_eq!(
            r.settle(Outcome::Delivered, true),
            Settle {
                ack: false,
                dropped: None
            }
        );
        // Stopped after it was dropped from disk for room: that loss is counted.
        assert_eq!(
            Replay::default().settle(Outcome::Stopped, false),
            Settle {
                ack: false,
                dropped: Some(DropReason::SpoolFull)
            }
        );
    }

    #[test]
    fn jitter_stays_within_half_and_one_and_a_half_times() {
        let mut seed = 0x9e37_79b9_u64;
        let d = Duration::from_millis(1000);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let j = jitter(&mut seed, d);
            assert!(j >= d / 2 && j <= d * 3 / 2, "{j:?}");
            seen.insert(j.as_millis());
        }
        assert!(seen.len() > 500, "too few distinct delays: {}", seen.len());
    }
}
