//! A shard's flag series: requests, errors and latency per (service, feature, flag, variant),
//! bounded by caps on flags and on variants per flag, on top of the series cap.
//!
//! Flag items are routed by (service, flag), so one shard holds every variant of a flag and
//! counts them without coordination; only the number of flags is shared between shards (one
//! atomic, touched when a flag is first seen). What a cap turns away is counted:
//!
//! * a flag beyond `max_flags` is not tracked; its evaluations count as `flags` overflow;
//! * a variant beyond `max_variants` of its flag is counted under the variant
//!   [`OVERFLOW_VARIANT`] of that flag (so the flag's totals stay whole) and as `variants`
//!   overflow;
//! * a series beyond the series cap goes to the table's overflow series and counts as
//!   `series` overflow.
//!
//! Plain synchronous code driven by the shard worker, like [`SeriesTable`].

use crate::sli::classify::{Observation, SpanIds};
use crate::sli::key;
use crate::sli::series::{SeriesSettings, SeriesSnapshot, SeriesTable};
use hashbrown::{Equivalent, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The variant under which a flag's variants beyond the cap are counted.
pub const OVERFLOW_VARIANT: &str = "__overflow__";

/// Caps shared by every shard's flag table.
#[derive(Debug)]
pub struct FlagLimits {
    /// Most flags (distinct service and flag key) tracked at once.
    pub max_flags: usize,
    /// Most variants per flag (beyond: [`OVERFLOW_VARIANT`]).
    pub max_variants: usize,
    /// Flags tracked now, across shards.
    pub active: AtomicUsize,
}

impl FlagLimits {
    /// Caps of `max_flags` flags and `max_variants` variants per flag.
    pub fn new(max_flags: usize, max_variants: usize) -> Self {
        Self {
            max_flags,
            max_variants: max_variants.max(1),
            active: AtomicUsize::new(0),
        }
    }
}

/// Evaluations a cap turned away, by cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlagOverflow {
    /// Of flags beyond `max_flags` (not counted anywhere else).
    pub flags: u64,
    /// Of variants beyond `max_variants` (counted under [`OVERFLOW_VARIANT`]).
    pub variants: u64,
    /// Folded into the overflow series by the series cap.
    pub series: u64,
}

impl FlagOverflow {
    /// Adds `o`'s counts.
    pub fn merge(&mut self, o: &FlagOverflow) {
        self.flags += o.flags;
        self.variants += o.variants;
        self.series += o.series;
    }
}

/// A flag: its service and key.
type FlagId = (Box<str>, Box<str>);

/// A (service, flag) looked up without copying it into a [`FlagId`]; it hashes as the
/// `FlagId` it equals does (a tuple's fields in order).
#[derive(Hash)]
struct FlagRef<'a>(&'a str, &'a str);

impl Equivalent<FlagId> for FlagRef<'_> {
    fn equivalent(&self, id: &FlagId) -> bool {
        *self.0 == *id.0 && *self.1 == *id.1
    }
}

/// One shard's flag series.
pub struct FlagTable {
    series: SeriesTable,
    limits: Arc<FlagLimits>,
    /// The variants of each (service, flag) tracked by this shard.
    flags: HashMap<FlagId, Vec<Box<str>>>,
    overflow: FlagOverflow,
    expired_seen: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for FlagTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagTable")
            .field("flags", &self.flags.len())
            .field("series", &self.series.len())
            .finish()
    }
}

impl FlagTable {
    /// An empty table. `settings` are those of flag series (four labels).
    pub fn new(settings: Arc<SeriesSettings>, limits: Arc<FlagLimits>) -> Self {
        Self {
            series: SeriesTable::new(settings),
            limits,
            flags: HashMap::new(),
            overflow: FlagOverflow::default(),
            expired_seen: 0,
            scratch: Vec::new(),
        }
    }

    /// Records one request under the flag series `key` (service, feature, flag, variant;
    /// hash `hash`) at slot `slot`.
    pub fn record(&mut self, hash: u64, key: &[u8], obs: &Observation, ids: &SpanIds, slot: u64) {
        if self.series.contains(hash, key) {
            self.series.record_with(hash, key, obs, Some(ids), slot);
            return;
        }
        let mut labels = key::labels(key);
        let (Some(service), Some(feature), Some(flag), Some(variant)) =
            (labels.next(), labels.next(), labels.next(), labels.next())
        else {
            return;
        };
        let limits = &*self.limits;
        let id = FlagRef(service, flag);
        let new_flag = !self.flags.contains_key(&id);
        if new_flag {
            let admitted = limits
                .active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < limits.max_flags).then_some(n + 1)
                })
                .is_ok();
            if !admitted {
                self.overflow.flags += 1;
                return;
            }
            self.flags.insert((service.into(), flag.into()), Vec::new());
        }
        let Some(variants) = self.flags.get_mut(&id) else {
            return;
        };
        let before = self.series.overflow_spans();
        let mut new_variant = false;
        if variants.iter().any(|v| **v == *variant) || variant == OVERFLOW_VARIANT {
            self.series.record_with(hash, key, obs, Some(ids), slot);
        } else if variants.len() < limits.max_variants {
            variants.push(variant.into());
            new_variant = true;
            self.series.record_with(hash, key, obs, Some(ids), slot);
        } else {
            self.overflow.variants += 1;
            self.scratch.clear();
            for label in [service, feature, flag, OVERFLOW_VARIANT] {
                key::push_label(&mut self.scratch, label, usize::MAX);
            }
            let hash = key::hash_key(&self.scratch);
            self.series
                .record_with(hash, &self.scratch, obs, Some(ids), slot);
        }
        let folded = self.series.overflow_spans() - before;
        self.overflow.series += folded;
        if folded > 0 {
            // The series cap turned it away: a flag or variant that owns no series holds
            // no place.
            if new_flag {
                self.flags.remove(&id);
                limits.active.fetch_sub(1, Ordering::Relaxed);
            } else if new_variant {
                variants.pop();
            }
        }
    }

    /// Moves the windows to `slot`, drops idle series, and forgets flags none of whose
    /// series is left (freeing their place under `max_flags`).
    pub fn advance(&mut self, slot: u64) {
        self.series.advance(slot);
        if self.series.expired() == self.expired_seen {
            return;
        }
        self.expired_seen = self.series.expired();
        let mut alive: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
        for (labels, _) in self.series.each() {
            if let (Some(s), Some(f), Some(v)) = (labels.first(), labels.get(2), labels.get(3)) {
                alive.entry((s, f)).or_default().push(v);
            }
        }
        let before = self.flags.len();
        self.flags
            .retain(|(s, f), variants| match alive.get(&(&**s, &**f)) {
                Some(live) => {
                    variants.retain(|v| live.contains(&&**v));
                    true
                }
                None => false,
            });
        let removed = before - self.flags.len();
        if removed > 0 {
            self.limits.active.fetch_sub(removed, Ordering::Relaxed);
        }
    }

    /// Snapshots of the flag series.
    pub fn snapshot(&mut self) -> Vec<Arc<SeriesSnapshot>> {
        self.series.snapshot()
    }

    /// The live series, for cohort queries.
    pub fn series(&self) -> &SeriesTable {
        &self.series
    }

    /// Evaluations turned away by the caps so far.
    pub fn overflow(&self) -> FlagOverflow {
        self.overflow
    }

    /// Flags this shard tracks.
    pub fn flags(&self) -> usize {
        self.flags.len()
    }

    /// Approximate bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.series.memory_bytes()
            + self
                .flags
                .iter()
                .map(|((s, f), v)| {
                    64 + s.len() + f.len() + v.iter().map(|x| x.len() + 16).sum::<usize>()
                })
                .sum::<usize>()
    }
}

impl Drop for FlagTable {
    fn drop(&mut self) {
        self.limits
            .active
            .fetch_sub(self.flags.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::hist::Layout;

    fn table(max_flags: usize, max_variants: usize, max_series: usize) -> FlagTable {
        let settings =
            SeriesSettings::new(Layout::new(2).expect("layout"), &[0.1, 1.0], max_series, 4)
                .with_window_hists(true)
                .with_expiry(Some(std::time::Duration::from_secs(60)));
        FlagTable::new(
            Arc::new(settings),
            Arc::new(FlagLimits::new(max_flags, max_variants)),
        )
    }

    fn record(t: &mut FlagTable, labels: [&str; 4], slot: u64) {
        let k = key::encode(labels, 256);
        let obs = Observation {
            duration_ns: 1_000_000,
            weight: 1.0,
            ..Observation::default()
        };
        t.record(key::hash_key(&k), &k, &obs, &SpanIds::default(), slot);
    }

    fn requests(t: &mut FlagTable) -> Vec<(Vec<String>, u64)> {
        let mut out: Vec<_> = t
            .snapshot()
            .iter()
            .map(|s| {
                let labels = s.labels.iter().map(|l| l.to_string()).collect();
                (labels, s.requests_total)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn variants_beyond_the_cap_count_under_the_overflow_variant() {
        let mut t = table(10, 2, 100);
        for v in ["a", "b", "c", "d", "a"] {
            record(&mut t, ["svc", "GET /", "f", v], 1);
        }
        let row = |v: &str, n| (["svc", "GET /", "f", v].map(String::from).to_vec(), n);
        assert_eq!(
            requests(&mut t),
            [row("__overflow__", 2), row("a", 2), row("b", 1)]
        );
        assert_eq!(
            t.overflow(),
            FlagOverflow {
                variants: 2,
                ..FlagOverflow::default()
            }
        );
    }

    #[test]
    fn flags_beyond_the_cap_are_counted_and_their_place_freed_when_they_expire() {
        let mut t = table(2, 5, 100);
        for f in ["f1", "f2", "f3", "f3"] {
            record(&mut t, ["svc", "GET /", f, "on"], 1);
        }
        assert_eq!(t.flags(), 2);
        assert_eq!(t.overflow().flags, 2);
        // f1 and f2 go idle past the expiry; a new flag then gets a place.
        t.advance(100);
        assert_eq!(t.flags(), 0);
        record(&mut t, ["svc", "GET /", "f3", "on"], 100);
        assert_eq!(requests(&mut t).len(), 1);
        assert_eq!(t.overflow().flags, 2);
    }

    #[test]
    fn the_series_cap_folds_into_the_overflow_series() {
        let mut t = table(10, 10, 2);
        for feature in ["a", "b", "c"] {
            record(&mut t, ["svc", feature, "f", "on"], 1);
        }
        assert_eq!(t.overflow().series, 1);
        let rows = requests(&mut t);
        assert_eq!(
            rows.len(),
            3,
            "two series and the overflow series: {rows:?}"
        );
    }
}
