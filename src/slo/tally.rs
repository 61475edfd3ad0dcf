//! What one shard counted for the SLOs since its last flush: per SLO, good/total per
//! event-time minute. The shard's only writer fills it on the hot path without locks; on
//! each flush the [`super::engine::SloEngine`] takes it whole.

use super::buckets::{Counts, MINUTE_NANOS};
use super::def::{SliKind, SloDef};
use crate::sli::classify::Observation;
use std::time::Duration;

/// One shard's pending SLO counts.
#[derive(Clone, Debug, Default)]
pub struct SloTally {
    kinds: Vec<SliKind>,
    /// Per SLO, `(minute, counts)` sorted by minute: at most `max_lateness` in minutes + 1
    /// entries between flushes.
    pending: Vec<Vec<(u64, Counts)>>,
    late: u64,
    max_lateness_nanos: u64,
}

impl SloTally {
    /// A tally for `slos`.
    pub fn new(slos: &[SloDef], max_lateness: Duration) -> Self {
        Self {
            kinds: slos.iter().map(|s| s.sli).collect(),
            pending: vec![Vec::new(); slos.len()],
            late: 0,
            max_lateness_nanos: u64::try_from(max_lateness.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Counts one request for the SLOs at `matches` (indices into the SLO list), in the
    /// minute the span ended. `now` is the arrival time: a span ending after it counts
    /// now; one ending more than `max_lateness` before it counts as late.
    #[inline]
    pub fn record(&mut self, matches: &[u16], obs: &Observation, now: u64) {
        if matches.is_empty() {
            return;
        }
        let end = match obs.end_unix_nanos {
            0 => now,
            e => e.min(now),
        };
        if end.saturating_add(self.max_lateness_nanos) < now {
            self.late += 1;
            return;
        }
        let minute = end / MINUTE_NANOS;
        for &i in matches {
            let i = usize::from(i);
            let (Some(kind), Some(list)) = (self.kinds.get(i), self.pending.get_mut(i)) else {
                continue;
            };
            let bad = u64::from(kind.is_bad(obs.bad, obs.duration_ns));
            // Nearly every span ends in the newest minute; others are found by bisection.
            let at = match list.last() {
                Some((m, _)) if *m == minute => Ok(list.len() - 1),
                _ => list.binary_search_by_key(&minute, |(m, _)| *m),
            };
            match at {
                Ok(i) => {
                    if let Some((_, c)) = list.get_mut(i) {
                        c.total += 1;
                        c.bad += bad;
                    }
                }
                Err(i) => list.insert(i, (minute, Counts { total: 1, bad })),
            }
        }
    }

    /// Takes the pending counts per SLO and the late-span count, leaving the tally empty.
    pub fn drain(&mut self) -> (Vec<Vec<(u64, Counts)>>, u64) {
        let empty = vec![Vec::new(); self.pending.len()];
        (
            std::mem::replace(&mut self.pending, empty),
            std::mem::take(&mut self.late),
        )
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.late == 0 && self.pending.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::def::FeatureMatch;

    fn slo(sli: SliKind) -> SloDef {
        SloDef {
            name: "x".into(),
            service: "s".into(),
            feature: FeatureMatch::new("*"),
            sli,
            objective: 0.99,
            window: Duration::from_secs(86_400),
            description: None,
            labels: Default::default(),
        }
    }

    fn obs(bad: bool, ms: u64, end: u64) -> Observation {
        Observation {
            bad,
            duration_ns: ms * 1_000_000,
            invalid_duration: false,
            unattributed: false,
            weight: 1.0,
            end_unix_nanos: end,
            ..Observation::default()
        }
    }

    #[test]
    fn counts_by_event_minute_and_kind() {
        let slos = [
            slo(SliKind::Availability),
            slo(SliKind::Latency {
                threshold: Duration::from_millis(300),
            }),
        ];
        let mut t = SloTally::new(&slos, Duration::from_secs(3600));
        let now = 1000 * MINUTE_NANOS + 5;
        t.record(&[0, 1], &obs(false, 500, now - MINUTE_NANOS), now);
        t.record(&[0, 1], &obs(true, 10, now), now);
        t.record(&[1], &obs(false, 10, now + 10 * MINUTE_NANOS), now);
        // Ended 2 h before arrival: late.
        t.record(&[0, 1], &obs(false, 10, now - 120 * MINUTE_NANOS), now);
        t.record(&[], &obs(true, 10, now), now);
        let (pending, late) = t.drain();
        assert_eq!(late, 1);
        assert_eq!(
            pending[0],
            vec![
                (999, Counts { total: 1, bad: 0 }),
                (1000, Counts { total: 1, bad: 1 })
            ]
        );
        // Slow counts bad for latency; the future span counts in the arrival minute.
        assert_eq!(
            pending[1],
            vec![
                (999, Counts { total: 1, bad: 1 }),
                (1000, Counts { total: 2, bad: 1 })
            ]
        );
        assert!(t.is_empty());
    }
}
