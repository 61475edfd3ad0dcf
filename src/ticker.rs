//! Periodic background work that ends when the process stops: one tick per interval (late
//! ticks delayed, not bunched), until a stop signal turns true.
//!
//! It owns only the waiting. What runs at each tick (sampling, saving, reloading) belongs to
//! its caller, which loops `while ticker.next().await { … }`.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Interval, MissedTickBehavior};

/// Ticks every `interval` until `stop` turns true.
pub struct Ticker {
    tick: Interval,
    stop: watch::Receiver<bool>,
}

impl Ticker {
    /// The first tick is due at once.
    pub fn now(interval: Duration, stop: watch::Receiver<bool>) -> Self {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// The first tick is due one `interval` from now.
    pub fn after(interval: Duration, stop: watch::Receiver<bool>) -> Self {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { tick, stop }
    }

    /// Waits for the next tick: `true`, or `false` once the stop signal is true (at once if
    /// it already is).
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.stop.wait_for(|v| *v) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ticks_until_stopped() {
        let (tx, rx) = watch::channel(false);
        // An hour-long interval whose first tick is still at once.
        let mut now = Ticker::now(Duration::from_secs(3600), rx.clone());
        let first = tokio::time::timeout(Duration::from_secs(10), now.next()).await;
        assert_eq!(first.ok(), Some(true), "the first tick is at once");
        let every = Duration::from_millis(50);
        let start = tokio::time::Instant::now();
        let mut after = Ticker::after(every, rx);
        assert!(after.next().await);
        assert!(
            start.elapsed() >= every,
            "the first tick is one interval on"
        );
        tx.send_replace(true);
        assert!(
            !now.next().await,
            "stopped, although its next tick is an hour away"
        );
        assert!(!after.next().await);
    }
}
