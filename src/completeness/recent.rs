//! What the trace tracker remembers of traces it has already judged: 64-bit fingerprints of
//! their trace ids and span ids, so a span that arrives after its trace was judged (a late
//! child, or another service's spans of the same trace) finds its parent and its root
//! instead of being taken for an orphan of a rootless trace.
//!
//! Two generations of an open-addressing table of fingerprints. New fingerprints go into
//! the current one; lookups see both. The current generation is retired (the older one is
//! cleared and the roles swap) when it is three quarters full or older than the window, so
//! a fingerprint is remembered for at least one window unless the rate fills a generation
//! sooner. A generation that filled before its window had passed makes the next one twice
//! as large, up to `max_bytes / 2` each: the memory follows the span rate and never exceeds
//! the budget. Generations retired early because they were full are counted.
//!
//! Exact for what is stored (a false match needs two 64-bit fingerprints to collide).

/// Slots of a generation when it is first made.
const INITIAL_SLOTS: usize = 1 << 12;

/// One generation: linear probing over a power-of-two array; 0 marks an empty slot.
#[derive(Debug)]
struct Generation {
    slots: Vec<u64>,
    len: usize,
    /// When it became the current generation (Unix nanoseconds).
    started: u64,
}

impl Generation {
    fn new(slots: usize, started: u64) -> Self {
        Generation {
            slots: vec![0; slots],
            len: 0,
            started,
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn full(&self) -> bool {
        self.len * 4 >= self.slots.len() * 3
    }

    #[inline]
    fn insert(&mut self, fp: u64, home: u64) {
        let mask = self.mask();
        let mut i = (home as usize) & mask;
        loop {
            match self.slots.get_mut(i) {
                Some(s) if *s == fp => return,
                Some(s) if *s == 0 => {
                    *s = fp;
                    self.len += 1;
                    return;
                }
                Some(_) => i = (i + 1) & mask,
                None => return,
            }
        }
    }

    fn contains(&self, fp: u64, home: u64) -> bool {
        let mask = self.mask();
        let mut i = (home as usize) & mask;
        // Never full (retired at 3/4), so an empty slot ends every probe.
        loop {
            match self.slots.get(i) {
                Some(&s) if s == fp => return true,
                Some(&0) | None => return false,
                Some(_) => i = (i + 1) & mask,
            }
        }
    }
}

/// A remembered span (or trace): see [`Recent::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    fp: u64,
    home: u64,
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fingerprints of recently judged traces and their spans.
#[derive(Debug)]
pub struct Recent {
    current: Generation,
    previous: Generation,
    window: u64,
    max_slots: usize,
    retired_full: u64,
}

impl Recent {
    /// Remembers for at least `window` nanoseconds, in at most `max_bytes`.
    pub fn new(window: u64, max_bytes: usize, now: u64) -> Self {
        // Two generations of 8-byte slots.
        let max_slots = (max_bytes / 16).max(INITIAL_SLOTS);
        let max_slots = if max_slots.is_power_of_two() {
            max_slots
        } else {
            max_slots.next_power_of_two() / 2
        };
        let first = INITIAL_SLOTS.min(max_slots);
        Recent {
            current: Generation::new(first, now),
            previous: Generation::new(first, now),
            window,
            max_slots,
            retired_full: 0,
        }
    }

    /// The key of span `span_id` of trace `trace_id` (span id 0, never a valid span id,
    /// stands for the trace itself): its fingerprint, and where its probe starts.
    ///
    /// Each key probes from a place of its own. Starting all of a trace's keys at one place
    /// (one cache line for a small trace) was measured too: it lengthened the probes by 58
    /// instructions per span (`track` 210 → 268) and showed no gain beyond the noise end
    /// to end.
    pub fn key(trace_id: u128, span_id: u64) -> Key {
        let x = (trace_id as u64)
            ^ ((trace_id >> 64) as u64).rotate_left(29)
            ^ span_id.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // 0 marks an empty slot.
        let fp = mix(x).max(1);
        Key { fp, home: fp }
    }

    /// Remembers `key` at `now`.
    #[inline]
    pub fn insert(&mut self, now: u64, key: Key) {
        let aged = now.saturating_sub(self.current.started) >= self.window;
        if aged || self.current.full() {
            self.retire(now, !aged);
        }
        self.current.insert(key.fp, key.home);
    }

    /// Whether `key` was remembered and not yet forgotten.
    pub fn contains(&self, key: Key) -> bool {
        self.current.contains(key.fp, key.home) || self.previous.contains(key.fp, key.home)
    }

    /// Generations retired early because they filled before their window passed.
    pub fn retired_full(&self) -> u64 {
        self.retired_full
    }

    /// Bytes of both generations' tables.
    pub fn bytes(&self) -> usize {
        (self.current.slots.len() + self.previous.slots.len()) * 8
    }

    #[cold]
    #[inline(never)]
    fn retire(&mut self, now: u64, full: bool) {
        let slots = if full {
            self.retired_full += 1;
            (self.current.slots.len() * 2).min(self.max_slots)
        } else {
            self.current.slots.len()
        };
        let mut next = std::mem::replace(&mut self.previous, Generation::new(0, 0));
        if next.slots.len() == slots {
            next.slots.fill(0);
            next.len = 0;
            next.started = now;
        } else {
            next = Generation::new(slots, now);
        }
        self.previous = std::mem::replace(&mut self.current, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn remembers_what_was_inserted_and_nothing_else() {
        let mut r = Recent::new(30 * SEC, 1 << 20, 0);
        for i in 1..=1000u64 {
            r.insert(0, Recent::key(u128::from(i), i));
        }
        for i in 1..=1000u64 {
            assert!(r.contains(Recent::key(u128::from(i), i)));
            assert!(!r.contains(Recent::key(u128::from(i), i + 1)));
        }
        // The trace itself is told apart from its spans.
        assert_ne!(Recent::key(7, 0), Recent::key(7, 1));
    }

    #[test]
    fn forgets_after_two_windows_and_remembers_for_one() {
        let mut r = Recent::new(10 * SEC, 1 << 20, 0);
        let fp = Recent::key(1, 1);
        r.insert(0, fp);
        r.insert(10 * SEC, Recent::key(2, 2));
        assert!(
            r.contains(fp),
            "one window later: in the previous generation"
        );
        r.insert(20 * SEC, Recent::key(3, 3));
        assert!(!r.contains(fp), "two windows later: forgotten");
        assert_eq!(r.retired_full(), 0);
    }

    #[test]
    fn a_high_rate_grows_the_generations_up_to_the_budget_and_no_further() {
        let budget = 1 << 20; // 64 Ki slots per generation.
        let mut r = Recent::new(30 * SEC, budget, 0);
        let start = r.bytes();
        for i in 0..200_000u64 {
            r.insert(0, Recent::key(u128::from(i), 1));
        }
        assert!(r.bytes() > start);
        assert!(r.bytes() <= budget, "{} > {budget}", r.bytes());
        assert!(r.retired_full() > 0);
        // The most recent ones are still there.
        for i in 199_000..200_000u64 {
            assert!(r.contains(Recent::key(u128::from(i), 1)));
        }
    }
}
