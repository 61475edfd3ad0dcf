//! Compact event-time counts of one SLO: good/total per minute for the last six hours and
//! per hour for the rest of the window. A 30-day SLO costs about 26 KiB whatever the
//! traffic. Buckets are tagged with the minute or hour they hold, so a ring slot holding an
//! older period is simply reset, and time jumps of any size need no catch-up work.

use serde::{Deserialize, Serialize};

/// Nanoseconds per minute.
pub const MINUTE_NANOS: u64 = 60_000_000_000;
/// Minutes held at one-minute resolution.
pub const FINE_MINUTES: u64 = 360;
const EMPTY: u64 = u64::MAX;

/// Requests and bad requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Requests counted.
    pub total: u64,
    /// Of which bad.
    pub bad: u64,
}

impl Counts {
    /// Adds `o`.
    pub fn add(&mut self, o: Counts) {
        self.total = self.total.saturating_add(o.total);
        self.bad = self.bad.saturating_add(o.bad);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    /// Minute or hour number held; [`EMPTY`] when unused.
    id: u64,
    counts: Counts,
}

const UNUSED: Bucket = Bucket {
    id: EMPTY,
    counts: Counts { total: 0, bad: 0 },
};

/// A ring of tagged buckets, one per period.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ring(Box<[Bucket]>);

impl Ring {
    fn new(len: u64) -> Self {
        Ring(vec![UNUSED; len.max(1) as usize].into_boxed_slice())
    }

    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    /// Adds to period `id` unless the ring already holds a newer period in its place. A
    /// period after `latest` (written while the clock was ahead, or restored from such a
    /// state) is stale and gives way.
    fn add(&mut self, id: u64, c: Counts, latest: u64) -> bool {
        let i = (id % self.len()) as usize;
        let Some(b) = self.0.get_mut(i) else {
            return false;
        };
        if b.id == id {
            b.counts.add(c);
        } else if b.id == EMPTY || b.id < id || b.id > latest {
            *b = Bucket { id, counts: c };
        } else {
            return false;
        }
        true
    }

    /// Sum over periods `from..=to`.
    fn sum(&self, from: u64, to: u64) -> Counts {
        let mut out = Counts::default();
        for b in self.0.iter() {
            if b.id != EMPTY && b.id >= from && b.id <= to {
                out.add(b.counts);
            }
        }
        out
    }

    fn used(&self) -> impl Iterator<Item = (u64, Counts)> + '_ {
        self.0
            .iter()
            .filter(|b| b.id != EMPTY && b.counts.total > 0)
            .map(|b| (b.id, b.counts))
    }
}

/// One SLO's event-time counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    fine: Ring,
    coarse: Ring,
}

/// Serialized form: only the used buckets, as `[period, total, bad]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketsState {
    /// Minute buckets.
    pub minutes: Vec<(u64, u64, u64)>,
    /// Hour buckets.
    pub hours: Vec<(u64, u64, u64)>,
}

impl Buckets {
    /// Buckets able to answer windows up to `longest_minutes`.
    pub fn new(longest_minutes: u64) -> Self {
        Self {
            fine: Ring::new(FINE_MINUTES),
            coarse: Ring::new(longest_minutes.div_ceil(60) + 1),
        }
    }

    /// Counts `c` at `minute` (Unix minutes) when the current minute is `now`. Returns
    /// false when the minute is too old for the minute buckets (it may still be counted in
    /// its hour, but short windows will not see it).
    pub fn add(&mut self, minute: u64, c: Counts, now: u64) -> bool {
        let latest = now.max(minute);
        let fine = self.fine.add(minute, c, latest);
        self.coarse.add(minute / 60, c, latest / 60);
        fine
    }

    /// Counts of the `window` minutes ending with minute `now` (inclusive). Windows up to six
    /// hours are exact to the minute; longer ones use whole hours for their part older than
    /// the minute buckets, so their old end is aligned to an hour (up to an hour shorter).
    pub fn sum(&self, now: u64, window: u64) -> Counts {
        let start = (now + 1).saturating_sub(window);
        if window <= FINE_MINUTES {
            return self.fine.sum(start, now);
        }
        // Minute buckets cover whole hours from `boundary` on; older hours come from the
        // hour buckets.
        let oldest_fine = (now + 1).saturating_sub(FINE_MINUTES);
        let boundary = oldest_fine.div_ceil(60) * 60;
        let mut c = self.fine.sum(boundary, now);
        let first_hour = start.div_ceil(60);
        let last_hour = boundary / 60;
        if last_hour > first_hour {
            c.add(self.coarse.sum(first_hour, last_hour - 1));
        }
        c
    }

    /// The used buckets, for the state file.
    pub fn state(&self) -> BucketsState {
        let flat = |r: &Ring| r.used().map(|(id, c)| (id, c.total, c.bad)).collect();
        BucketsState {
            minutes: flat(&self.fine),
            hours: flat(&self.coarse),
        }
    }

    /// Restores saved buckets when the current minute is `now`. Buckets from after `now`
    /// (saved while the clock was ahead) are skipped, as are those that no longer fit. A
    /// bucket claiming more bad requests than requests (a damaged or edited file) is read
    /// as all bad, so an SLI never leaves [0, 1].
    pub fn restore(&mut self, s: &BucketsState, now: u64) {
        let counts = |total: u64, bad: u64| Counts {
            total,
            bad: bad.min(total),
        };
        for &(id, total, bad) in s.minutes.iter().filter(|b| b.0 <= now) {
            self.fine.add(id, counts(total, bad), now);
        }
        for &(id, total, bad) in s.hours.iter().filter(|b| b.0 <= now / 60) {
            self.coarse.add(id, counts(total, bad), now / 60);
        }
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        (self.fine.0.len() + self.coarse.0.len()) * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(total: u64, bad: u64) -> Counts {
        Counts { total, bad }
    }

    #[test]
    fn restored_buckets_never_hold_more_bad_than_total_requests() {
        // Found by the `state` fuzz target: a state-file body (its header made right) whose
        // hour bucket claims 4 bad requests out of 0.
        let body: &[u8] = br#"{"slos":{"checkout-availability":{"identity":"checkout\u001fPOST /checkout\u001favailability\u001f0","buckets":{"minutes":[[2833,50,1]],"hours":[[472152,0,4]]}}},"late_spans":2}"#;
        let state: crate::slo::engine::EngineState =
            serde_json::from_slice(body).expect("a state body");
        let saved = &state.slos["checkout-availability"].buckets;
        let month = 30 * 24 * 60;
        let now = 1_700_000_000_000_000_000 / MINUTE_NANOS;
        let mut b = Buckets::new(month);
        b.restore(saved, now);
        assert_eq!(b.sum(now, month), c(0, 0));
        let mut b = Buckets::new(month);
        b.restore(
            &BucketsState {
                minutes: vec![(now, 10, 25)],
                hours: vec![],
            },
            now,
        );
        assert_eq!(b.sum(now, 5), c(10, 10));
    }

    #[test]
    fn short_windows_are_exact_to_the_minute() {
        let mut b = Buckets::new(30 * 24 * 60);
        let now = 1_000_000;
        for m in now - 100..=now {
            b.add(m, c(10, 1), now);
        }
        assert_eq!(b.sum(now, 5), c(50, 5));
        assert_eq!(b.sum(now, 60), c(600, 60));
        assert_eq!(
            b.sum(now + 3, 5),
            c(20, 2),
            "two minutes of data left in 5m"
        );
    }

    #[test]
    fn long_windows_combine_minutes_and_hours() {
        let mut b = Buckets::new(3 * 24 * 60);
        // One request per minute for two days, aligned so the arithmetic is visible.
        let start = 24 * 60 * 1000;
        let now = start + 2 * 24 * 60 - 1;
        for m in start..=now {
            b.add(m, c(1, u64::from(m % 10 == 0)), m);
        }
        // A day: every minute of it is held (the oldest partial hour is left out; here the
        // day starts on an hour, so nothing is).
        assert_eq!(b.sum(now, 24 * 60).total, 24 * 60);
        assert_eq!(b.sum(now, 24 * 60).bad, 24 * 6);
        // Three days: only two days have data.
        assert_eq!(b.sum(now, 3 * 24 * 60).total, 2 * 24 * 60);
        // Seven hours, starting mid-hour: hour-aligned at the old end.
        let seven = b.sum(now - 30, 7 * 60).total;
        assert!((6 * 60..=7 * 60).contains(&seven), "{seven}");
    }

    #[test]
    fn old_and_stale_buckets_do_not_count() {
        let mut b = Buckets::new(120);
        let later = 100 + FINE_MINUTES;
        b.add(100, c(5, 5), 100);
        // 360 minutes later the slot is reused for the new minute.
        b.add(later, c(1, 0), later);
        assert_eq!(b.sum(later, 60), c(1, 0));
        // A minute older than what the slot holds is refused by the minute ring.
        assert!(!b.add(100, c(7, 7), later));
        assert_eq!(b.sum(later, 5), c(1, 0));
    }

    #[test]
    fn a_clock_that_was_ahead_does_not_blank_the_windows() {
        // Counted while the clock was a day ahead, then the clock is corrected.
        let mut b = Buckets::new(3 * 24 * 60);
        let ahead = 2_000_000 + 24 * 60;
        for m in ahead - 400..=ahead {
            b.add(m, c(1, 1), m);
        }
        let now = 2_000_000;
        for m in now - 59..=now {
            b.add(m, c(10, 0), now);
        }
        assert_eq!(b.sum(now, 60), c(600, 0), "the future minutes gave way");
        // Restoring a state saved while ahead skips the future buckets.
        let mut r = Buckets::new(3 * 24 * 60);
        r.restore(&b.state(), now);
        assert_eq!(r.sum(now, 60), c(600, 0));
        assert_eq!(
            r.sum(now + 24 * 60, 24 * 60).bad,
            0,
            "nothing from the future"
        );
    }

    #[test]
    fn state_round_trips() {
        let mut b = Buckets::new(30 * 24 * 60);
        for m in [4_990_000, 5_000_000, 5_000_001, 5_000_200] {
            b.add(m, c(3, 1), m);
        }
        let s = b.state();
        let mut r = Buckets::new(30 * 24 * 60);
        r.restore(&s, 5_000_200);
        assert_eq!(r, b);
        assert!(b.heap_bytes() < 32 * 1024, "{} bytes", b.heap_bytes());
    }
}
