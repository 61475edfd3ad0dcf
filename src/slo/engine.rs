//! The SLO engine: owns every SLO's event-time buckets, absorbs what shards counted on each
//! flush, evaluates statuses for readers, and converts to and from the state file. Shared
//! behind a mutex that only flushes and readers take, never the per-span path.

use super::buckets::{Buckets, BucketsState, Counts, MINUTE_NANOS};
use super::def::{SloDef, SloSettings};
use super::status::{evaluate, Status};
use super::tally::SloTally;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every SLO's counts.
#[derive(Debug)]
pub struct SloEngine {
    defs: Arc<[SloDef]>,
    settings: SloSettings,
    buckets: Vec<Buckets>,
    late: u64,
}

/// One SLO in the state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SloState {
    /// [`SloDef::identity`] when saved: counts of a changed SLO are not reused.
    pub identity: String,
    /// The buckets.
    pub buckets: BucketsState,
}

/// The engine's persistent part.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// Per SLO name.
    pub slos: BTreeMap<String, SloState>,
    /// Late spans counted so far.
    pub late_spans: u64,
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// SLOs whose counts were restored.
    pub restored: Vec<String>,
    /// Saved SLOs whose definition changed: started afresh.
    pub changed: Vec<String>,
    /// Saved SLOs no longer configured: dropped.
    pub unknown: Vec<String>,
}

impl SloEngine {
    /// An engine for `defs`.
    pub fn new(defs: Arc<[SloDef]>, settings: SloSettings) -> Self {
        // Each SLO reads windows up to its own (longer burn and rule windows are skipped).
        let buckets = defs
            .iter()
            .map(|d| Buckets::new(d.window.as_secs().div_ceil(60)))
            .collect();
        Self {
            defs,
            settings,
            buckets,
            late: 0,
        }
    }

    /// The SLOs.
    pub fn defs(&self) -> &Arc<[SloDef]> {
        &self.defs
    }

    /// The shared settings.
    pub fn settings(&self) -> &SloSettings {
        &self.settings
    }

    /// Moves what a shard counted into the buckets; `now_nanos` is the current time.
    /// Counts too old for the minute buckets (possible only after the clock stepped back
    /// by hours) are added to the late spans.
    pub fn absorb(&mut self, tally: &mut SloTally, now_nanos: u64) {
        if tally.is_empty() {
            return;
        }
        let now = now_nanos / MINUTE_NANOS;
        let (pending, late) = tally.drain();
        self.late = self.late.saturating_add(late);
        for (b, list) in self.buckets.iter_mut().zip(pending) {
            for (minute, c) in list {
                if !b.add(minute, c, now) {
                    self.late = self.late.saturating_add(c.total);
                }
            }
        }
    }

    /// Spans that arrived later than `slo.max_lateness` after they ended.
    pub fn late_spans(&self) -> u64 {
        self.late
    }

    /// Counts of SLO `i` over the `minutes` ending at `now_nanos`.
    pub fn counts(&self, i: usize, now_nanos: u64, minutes: u64) -> Counts {
        self.buckets
            .get(i)
            .map(|b| b.sum(now_nanos / MINUTE_NANOS, minutes))
            .unwrap_or_default()
    }

    /// Evaluates every SLO at `now_nanos`; `quality(i)` gives the completeness reasons that
    /// make SLO `i`'s data insufficient.
    pub fn evaluate(
        &self,
        now_nanos: u64,
        min_events: u64,
        quality: impl Fn(usize) -> Vec<String>,
    ) -> Vec<Status> {
        let now = now_nanos / MINUTE_NANOS;
        self.defs
            .iter()
            .zip(&self.buckets)
            .enumerate()
            .map(|(i, (d, b))| evaluate(d, &self.settings, b, now, min_events, quality(i)))
            .collect()
    }

    /// The persistent state.
    pub fn state(&self) -> EngineState {
        EngineState {
            slos: self
                .defs
                .iter()
                .zip(&self.buckets)
                .map(|(d, b)| {
                    (
                        d.name.clone(),
                        SloState {
                            identity: d.identity(),
                            buckets: b.state(),
                        },
                    )
                })
                .collect(),
            late_spans: self.late,
        }
    }

    /// Adds saved counts to the SLOs of the same name and definition; counts from after
    /// `now_nanos` (saved while the clock was ahead) are skipped.
    pub fn restore(&mut self, state: &EngineState, now_nanos: u64) -> Restored {
        let now = now_nanos / MINUTE_NANOS;
        let mut r = Restored::default();
        for (name, saved) in &state.slos {
            match self.defs.iter().position(|d| d.name == *name) {
                Some(i) if self.defs[i].identity() == saved.identity => {
                    if let Some(b) = self.buckets.get_mut(i) {
                        b.restore(&saved.buckets, now);
                    }
                    r.restored.push(name.clone());
                }
                Some(_) => r.changed.push(name.clone()),
                None => r.unknown.push(name.clone()),
            }
        }
        self.late = self.late.saturating_add(state.late_spans);
        r
    }

    /// Bytes held by the buckets.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.iter().map(Buckets::heap_bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::classify::Observation;
    use crate::slo::def::{FeatureMatch, SliKind};
    use std::time::Duration;

    fn defs() -> Arc<[SloDef]> {
        let d = |name: &str, sli| SloDef {
            name: name.into(),
            service: "s".into(),
            feature: FeatureMatch::new("f"),
            sli,
            objective: 0.99,
            window: Duration::from_secs(30 * 86_400),
            description: None,
            labels: Default::default(),
        };
        vec![
            d("avail", SliKind::Availability),
            d(
                "fast",
                SliKind::Latency {
                    threshold: Duration::from_millis(100),
                },
            ),
        ]
        .into()
    }

    #[test]
    fn absorbs_shards_and_restores_by_identity() {
        let defs = defs();
        let mut e = SloEngine::new(Arc::clone(&defs), SloSettings::default());
        let mut t1 = SloTally::new(&defs, Duration::from_secs(3600));
        let mut t2 = SloTally::new(&defs, Duration::from_secs(3600));
        let now = 30_000_000 * MINUTE_NANOS;
        let o = |bad, ms: u64| Observation {
            bad,
            duration_ns: ms * 1_000_000,
            invalid_duration: false,
            unattributed: false,
            weight: 1.0,
            end_unix_nanos: now,
            ..Observation::default()
        };
        t1.record(&[0, 1], &o(true, 5), now);
        t2.record(&[0, 1], &o(false, 500), now);
        t2.record(&[0, 1], &o(false, 5), now);
        e.absorb(&mut t1, now);
        e.absorb(&mut t2, now);
        assert_eq!(e.counts(0, now, 60), Counts { total: 3, bad: 1 });
        assert_eq!(e.counts(1, now, 60), Counts { total: 3, bad: 2 });

        let saved = e.state();
        let json = serde_json::to_string(&saved).unwrap();
        let back: EngineState = serde_json::from_str(&json).unwrap();
        // A restart where "fast" changed its threshold and "old" was removed.
        let mut changed: Vec<SloDef> = defs.to_vec();
        changed[1].sli = SliKind::Latency {
            threshold: Duration::from_millis(200),
        };
        let mut e2 = SloEngine::new(changed.into(), SloSettings::default());
        let mut extra = back.clone();
        extra.slos.insert("old".into(), back.slos["avail"].clone());
        let r = e2.restore(&extra, now);
        assert_eq!(r.restored, vec!["avail".to_string()]);
        assert_eq!(r.changed, vec!["fast".to_string()]);
        assert_eq!(r.unknown, vec!["old".to_string()]);
        assert_eq!(e2.counts(0, now, 60), Counts { total: 3, bad: 1 });
        assert_eq!(e2.counts(1, now, 60), Counts::default());
    }
}
