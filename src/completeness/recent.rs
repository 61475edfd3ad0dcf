//! What the trace tracker remembers of traces it has already judged: 32-bit fingerprints of
//! their trace ids and span ids, so a span that arrives after its trace was judged (a late
//! child, or another service's spans of the same trace) finds its parent and its root
//! instead of being taken for an orphan of a rootless trace.
//!
//! Two generations of an open-addressing table of fingerprints. New fingerprints go into
//! the current one; lookups see both. The current generation is retired (the older one is
//! cleared and the roles swap) when it is half full or older than the window, so
//! a fingerprint is remembered for at least one window unless the rate fills a generation
//! sooner. A generation that filled before its window had passed makes the next one twice
//! as large, up to `max_bytes / 2` each: the memory follows the span rate and the tables
//! never exceed the budget (their filters, below, take 1/32 more). Generations retired
//! early because they were full are counted.
//!
//! The table is made of 32-byte buckets (half a cache line) of eight 32-bit fingerprints,
//! and every fingerprint of a trace starts its probe at the trace's bucket: judging a trace
//! on arrival touches one line per generation, where a probe start per span touched one
//! line per span. Tables far larger than the caches made those misses most of the tracking
//! cost. A bucket fills from its first slot and nothing is ever removed from a generation
//! (it is cleared whole), so an empty slot ends every probe.
//!
//! Each generation keeps a Bloom filter of the traces with keys in it ([`TraceFilter`],
//! 1/32 of its table). Every new trace must be looked for in the older generation, and
//! most are not there: the filter answers that from a word that stays in the caches.
//!
//! A key that was never stored is taken for a stored one only if its 32-bit fingerprint
//! equals one of the filled slots its probes read (each 2^-32). A probe reads the slots
//! from the trace's bucket to the first empty one: at half full, a bucket of eight and
//! what spills past it, so a few to about ten for 4-span traces (one lookup in several
//! hundred million matches falsely), and up to 65 in each generation for the largest
//! traces remembered (64 spans: one in 66 million, one in 33 million when the trace is in
//! both generations). A false match leaves one gap unreported: a span taken to have a
//! parent it lacks, or a new trace taken for one already judged. What it buys is twice as
//! many traces remembered in the same bytes (64-bit fingerprints before): a trace's five
//! keys (4 spans and the trace) take 20 bytes of its bucket rather than 40, so the same
//! window of judged traces takes half the memory.

/// Fingerprints per bucket: 8 × 4 bytes, half a cache line.
const SLOTS: usize = 8;

/// Buckets of a generation when it is first made.
const INITIAL_BUCKETS: usize = 1 << 9;

/// Most keys remembered together by [`Recent::insert_after`]: half of the smallest
/// generation is always free when they start, and they need no more than a quarter.
pub const MAX_GROUP: usize = 128;
const _: () = assert!(MAX_GROUP <= INITIAL_BUCKETS * SLOTS / 4);

/// One bucket, aligned so that it never straddles two cache lines.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(32))]
struct Bucket([u32; SLOTS]);

/// Where a probe ended: the position (bucket × [`SLOTS`] + slot) of the fingerprint, or of
/// the first empty slot.
#[derive(Clone, Copy, Debug)]
struct Probe {
    pos: usize,
    found: bool,
}

/// One generation: linear probing over a power-of-two array of buckets; 0 marks an empty
/// slot.
#[derive(Debug)]
struct Generation {
    buckets: Vec<Bucket>,
    /// Which traces may have keys here: see [`TraceFilter`].
    traces: TraceFilter,
    len: usize,
    /// When it became the current generation (Unix nanoseconds).
    started: u64,
}

impl Generation {
    fn new(buckets: usize, started: u64) -> Self {
        Generation {
            buckets: vec![Bucket::default(); buckets],
            traces: TraceFilter::new(buckets),
            len: 0,
            started,
        }
    }

    /// Empties it for reuse from `now`.
    fn clear(&mut self, now: u64) {
        self.buckets.fill(Bucket::default());
        self.traces.clear();
        self.len = 0;
        self.started = now;
    }

    fn full(&self) -> bool {
        self.len * 2 >= self.buckets.len() * SLOTS
    }

    /// Probes for `fp` from bucket `home`.
    #[inline]
    fn probe(&self, fp: u32, home: u64) -> Probe {
        let mask = self.buckets.len().wrapping_sub(1);
        let mut bucket = (home as usize) & mask;
        // Never more than half full, so an empty slot ends the probe; the bound
        // only keeps an empty (never allocated) generation from looping.
        for _ in 0..self.buckets.len() {
            let Some(b) = self.buckets.get(bucket) else {
                break;
            };
            for (slot, &s) in b.0.iter().enumerate() {
                if s == fp || s == 0 {
                    return Probe {
                        pos: bucket * SLOTS + slot,
                        found: s != 0,
                    };
                }
            }
            bucket = (bucket + 1) & mask;
        }
        Probe {
            pos: 0,
            found: false,
        }
    }

    fn contains(&self, fp: u32, home: u64) -> bool {
        self.probe(fp, home).found
    }

    /// Whether `key` is here, asking the filter before the table.
    #[inline]
    fn holds(&self, key: Key) -> bool {
        self.traces.may_contain(key.home) && self.contains(key.fp, key.home)
    }

    /// Stores `fp` in the first empty slot at or after position `pos`, unless `fp` is met
    /// first, and returns its position. Keys of one trace are stored one after another in
    /// its probe, so a trace's keys given again in the same order are each met at once.
    #[inline]
    fn put(&mut self, pos: usize, fp: u32) -> usize {
        // The slot after the last one is the first.
        let pos = pos & (self.buckets.len() * SLOTS).wrapping_sub(1);
        // Most often the slot itself: a bucket's filled slots come first, so the slots after
        // the one a trace's previous key went to are mostly empty.
        if self.claim(pos, fp) {
            return pos;
        }
        self.put_probing(pos + 1, fp)
    }

    /// [`Self::put`] past its first slot.
    #[inline(never)]
    fn put_probing(&mut self, mut pos: usize, fp: u32) -> usize {
        let mask = (self.buckets.len() * SLOTS).wrapping_sub(1);
        pos &= mask;
        for _ in 0..self.buckets.len() * SLOTS {
            if self.claim(pos, fp) {
                return pos;
            }
            pos = (pos + 1) & mask;
        }
        pos
    }

    /// Stores `fp` at position `pos` (in range) if that slot is empty; true when `fp` is
    /// there now.
    #[inline(always)]
    fn claim(&mut self, pos: usize, fp: u32) -> bool {
        let slot = self
            .buckets
            .get_mut(pos / SLOTS)
            .and_then(|b| b.0.get_mut(pos % SLOTS));
        match slot {
            Some(s) if *s == 0 => {
                *s = fp;
                self.len += 1;
                true
            }
            Some(s) => *s == fp,
            None => false,
        }
    }
}

/// Bits of a [`TraceFilter`] per bucket of its generation.
const FILTER_BITS_PER_BUCKET: usize = 8;

/// A Bloom filter of the traces with keys in a generation, one 64-bit word per lookup with
/// two bits set per trace. A trace it has not seen is not looked for in the generation's
/// table: a lookup of a new trace in the older generation (every new trace's) then reads a
/// word of a table 32 times smaller than the generation, which stays in the caches,
/// instead of a bucket that mostly does not. No false negatives; a false positive costs
/// the probe that would have happened anyway. At half full a generation holds about 0.8
/// 4-span traces per bucket: 10 bits per trace, a few false positives in a hundred.
#[derive(Debug)]
struct TraceFilter {
    words: Vec<u64>,
}

impl TraceFilter {
    fn new(buckets: usize) -> Self {
        let words = (buckets * FILTER_BITS_PER_BUCKET / 64).max(1);
        debug_assert!(words.is_power_of_two());
        TraceFilter {
            words: vec![0; words],
        }
    }

    /// The word and the bits of trace `home` (its hash): the word from the high bits,
    /// the bits from the low ones, so they are independent of each other.
    #[inline]
    fn place(&self, home: u64) -> (usize, u64) {
        let word = ((home >> 32) as usize) & self.words.len().wrapping_sub(1);
        let bits = (1u64 << (home & 63)) | (1u64 << ((home >> 6) & 63));
        (word, bits)
    }

    #[inline]
    fn add(&mut self, home: u64) {
        let (word, bits) = self.place(home);
        if let Some(w) = self.words.get_mut(word) {
            *w |= bits;
        }
    }

    /// Whether trace `home` may have keys in the generation (false: it has none).
    #[inline]
    fn may_contain(&self, home: u64) -> bool {
        let (word, bits) = self.place(home);
        self.words.get(word).is_some_and(|w| w & bits == bits)
    }

    fn clear(&mut self) {
        self.words.fill(0);
    }

    fn bytes(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }
}

/// What [`Recent::find`] found of a key, and where it would go.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    key: Key,
    /// Where the probe of the current generation ended.
    current: Probe,
    /// The key is remembered.
    pub known: bool,
}

/// A remembered span (or trace): see [`TraceRef::key`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    fp: u32,
    home: u64,
}

/// splitmix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A trace as the table sees it: its id hashed to 64 bits, whose low bits choose its bucket
/// and whose high half is the trace's own fingerprint (its key for span id 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRef {
    home: u64,
}

impl TraceRef {
    /// The trace `trace_id`.
    pub fn new(trace_id: u128) -> Self {
        let folded = (trace_id as u64) ^ ((trace_id >> 64) as u64).rotate_left(29);
        TraceRef { home: mix(folded) }
    }

    /// The trace id's 64-bit hash (also a key for other tables of traces).
    #[inline]
    pub fn hash(self) -> u64 {
        self.home
    }

    /// The key of span `span_id` of this trace (span id 0, never a valid span id, stands
    /// for the trace itself).
    ///
    /// The fingerprint is the high half of the trace's hash with the span id multiplied
    /// in by an odd constant (whose high half depends on every bit of the span id), while
    /// the bucket comes from the hash's low bits: two keys share a fingerprint with the
    /// chance of two random 32-bit values. The span id needs no mixing of its own, as every
    /// key of a trace probes from the trace's bucket.
    #[inline]
    pub fn key(self, span_id: u64) -> Key {
        let fp = ((self.home ^ span_id.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 32) as u32;
        // 0 marks an empty slot.
        Key {
            fp: fp.max(1),
            home: self.home,
        }
    }
}

/// Fingerprints of recently judged traces and their spans.
#[derive(Debug)]
pub struct Recent {
    current: Generation,
    previous: Generation,
    window: u64,
    max_buckets: usize,
    retired_full: u64,
}

impl Recent {
    /// Remembers for at least `window` nanoseconds, in tables of at most `max_bytes`
    /// (their filters take 1/32 more: [`Self::max_bytes`]).
    pub fn new(window: u64, max_bytes: usize, now: u64) -> Self {
        // Two generations of 32-byte buckets.
        let max_buckets = (max_bytes / (2 * std::mem::size_of::<Bucket>())).max(INITIAL_BUCKETS);
        let max_buckets = if max_buckets.is_power_of_two() {
            max_buckets
        } else {
            max_buckets.next_power_of_two() / 2
        };
        let first = INITIAL_BUCKETS.min(max_buckets);
        Recent {
            current: Generation::new(first, now),
            previous: Generation::new(first, now),
            window,
            max_buckets,
            retired_full: 0,
        }
    }

    /// Looks for `key`; what [`Self::insert_after`] starts from.
    #[inline]
    pub fn find(&self, key: Key) -> Found {
        let current = self.current.probe(key.fp, key.home);
        let known = current.found || self.previous.holds(key);
        Found {
            key,
            current,
            known,
        }
    }

    /// Remembers at `now` the key that `found` looked for, then the keys `more` (of the
    /// same trace) after it in its probe. Nothing may have been inserted since `found`.
    #[inline]
    pub fn insert_after(&mut self, now: u64, found: Found, more: impl Iterator<Item = Key>) {
        let aged = now.saturating_sub(self.current.started) >= self.window;
        let mut at = found.current.pos;
        if aged || self.current.full() {
            self.retire(now, !aged);
            at = self.current.probe(found.key.fp, found.key.home).pos;
        }
        self.current.traces.add(found.key.home);
        at = self.current.put(at, found.key.fp);
        // At most [`MAX_GROUP`] keys past half of the table: it never fills.
        for key in more.take(MAX_GROUP - 1) {
            debug_assert_eq!(key.home, found.key.home);
            at = self.current.put(at + 1, key.fp);
        }
    }

    /// Whether `key` was remembered and not yet forgotten.
    #[inline]
    pub fn contains(&self, key: Key) -> bool {
        self.current.holds(key) || self.previous.holds(key)
    }

    /// Reads the first slot of each trace's bucket in the current generation, and in the
    /// older one when its filter lets the trace be there, one independent load after
    /// another, so the lines of all of them are on their way into the cache together; the
    /// misses then overlap instead of each waiting for the one before.
    #[inline]
    pub fn warm(&self, traces: impl Iterator<Item = TraceRef>) {
        let (cur, prev) = (&self.current.buckets, &self.previous.buckets);
        let (cur_mask, prev_mask) = (cur.len().wrapping_sub(1), prev.len().wrapping_sub(1));
        let mut acc = 0u32;
        for t in traces {
            let home = t.home as usize;
            acc ^= cur.get(home & cur_mask).map_or(0, |b| b.0[0]);
            if self.previous.traces.may_contain(t.home) {
                acc ^= prev.get(home & prev_mask).map_or(0, |b| b.0[0]);
            }
        }
        std::hint::black_box(acc);
    }

    /// Generations retired early because they filled before their window passed.
    pub fn retired_full(&self) -> u64 {
        self.retired_full
    }

    /// The most [`Self::bytes`] can reach.
    pub fn max_bytes(&self) -> usize {
        2 * self.max_buckets * std::mem::size_of::<Bucket>() + self.max_filter_bytes()
    }

    /// The most the generations' filters can hold.
    pub fn max_filter_bytes(&self) -> usize {
        2 * self.max_buckets * FILTER_BITS_PER_BUCKET / 8
    }

    /// Bytes of both generations' tables and filters.
    pub fn bytes(&self) -> usize {
        [&self.current, &self.previous]
            .iter()
            .map(|g| g.buckets.len() * std::mem::size_of::<Bucket>() + g.traces.bytes())
            .sum()
    }

    #[cold]
    #[inline(never)]
    fn retire(&mut self, now: u64, full: bool) {
        let buckets = if full {
            self.retired_full += 1;
            (self.current.buckets.len() * 2).min(self.max_buckets)
        } else {
            self.current.buckets.len()
        };
        let mut next = std::mem::replace(&mut self.previous, Generation::new(0, 0));
        if next.buckets.len() == buckets {
            next.clear(now);
        } else {
            next = Generation::new(buckets, now);
        }
        self.previous = std::mem::replace(&mut self.current, next);
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// The key of span `span_id` of trace `trace_id` (span id 0 stands for the trace).
    fn key(trace_id: u128, span_id: u64) -> Key {
        TraceRef::new(trace_id).key(span_id)
    }

    /// Remembers `key` at `now`.
    fn insert(r: &mut Recent, now: u64, key: Key) {
        let found = r.find(key);
        r.insert_after(now, found, std::iter::empty());
    }

    #[test]
    fn remembers_what_was_inserted_and_nothing_else() {
        let mut r = Recent::new(30 * SEC, 1 << 20, 0);
        for i in 1..=1000u64 {
            insert(&mut r, 0, key(u128::from(i), i));
        }
        for i in 1..=1000u64 {
            assert!(r.contains(key(u128::from(i), i)));
            assert!(!r.contains(key(u128::from(i), i + 1)));
        }
        // The trace itself is told apart from its spans.
        assert_ne!(key(7, 0), key(7, 1));
    }

    /// Remembers trace `t` and its spans `1..=spans` as the tracker does.
    fn remember(r: &mut Recent, now: u64, t: u128, spans: u64) {
        let trace = TraceRef::new(t);
        let found = r.find(trace.key(0));
        r.insert_after(now, found, (1..=spans).map(|s| trace.key(s)));
    }

    #[test]
    fn a_trace_given_again_takes_no_more_room_and_big_traces_spill_into_later_buckets() {
        let mut r = Recent::new(30 * SEC, 1 << 20, 0);
        // 30 traces of 1 + 60 keys in 512 buckets of 8: most spill over several buckets.
        for t in 1..=30u128 {
            remember(&mut r, 0, t, 60);
        }
        let len = r.current.len;
        assert_eq!(len, 30 * 61);
        for t in 1..=30u128 {
            remember(&mut r, 0, t, 60);
            for s in 0..=60u64 {
                assert!(r.contains(key(t, s)), "trace {t} span {s}");
            }
            assert!(!r.contains(key(t, 61)));
        }
        assert_eq!(r.current.len, len, "the same keys again take no slot");
        // A trace's keys probe from its bucket: a span of another trace is not found there.
        assert!(!r.contains(key(31, 1)));
    }

    #[test]
    fn a_probe_that_runs_off_the_last_bucket_goes_on_at_the_first() {
        let mut g = Generation::new(4, 0);
        let mut at = g.probe(1, 3).pos;
        assert_eq!(at, 3 * SLOTS);
        for fp in 1..=SLOTS as u32 {
            at = g.put(at, fp) + 1;
        }
        // The last bucket is full: the next key of its probe goes to the first slot, and
        // is found from the last bucket.
        assert_eq!(g.put(at, 99), 0);
        assert!((1..=SLOTS as u32).all(|fp| g.contains(fp, 3)));
        assert!(g.contains(99, 3));
        assert!(!g.contains(100, 3));
        assert_eq!(g.len, SLOTS + 1);
    }

    #[test]
    fn the_trace_filter_never_forgets_a_trace_and_turns_most_others_away() {
        // A generation of 4,096 buckets at half full with 4-span traces: 16,384 keys,
        // 3,276 traces of 5 keys.
        let mut r = Recent::new(30 * SEC, 1 << 30, 0);
        r.current = Generation::new(4096, 0);
        for t in 1..=3276u128 {
            remember(&mut r, 0, t, 4);
        }
        assert!(!r.current.full());
        for t in 1..=3276u128 {
            assert!(
                r.current.traces.may_contain(TraceRef::new(t).home),
                "trace {t}"
            );
        }
        let others = 100_000u128;
        let passed = (1_000_000..1_000_000 + others)
            .filter(|&t| r.current.traces.may_contain(TraceRef::new(t).home))
            .count();
        // About 10 bits per trace and two bits set: 3-4% pass.
        assert!(
            passed < 6_000,
            "{passed} of {others} unknown traces passed the filter"
        );
        // Retired, the generation keeps its filter: every trace and span is still found.
        r.retire(0, false);
        for t in 1..=3276u128 {
            assert!((0..=4).all(|s| r.contains(key(t, s))), "trace {t}");
        }
    }

    #[test]
    fn a_generation_made_current_again_starts_with_an_empty_filter() {
        let mut r = Recent::new(30 * SEC, 1 << 20, 0);
        for t in 1..=500u128 {
            remember(&mut r, 0, t, 4);
        }
        // Twice: the generation that held them is cleared and current again.
        r.retire(0, false);
        r.retire(0, false);
        assert!(r.current.traces.words.iter().all(|&w| w == 0));
        assert!((1..=500u128).all(|t| !r.contains(key(t, 0))));
    }

    #[test]
    fn warming_reads_without_changing_anything() {
        let mut r = Recent::new(30 * SEC, 1 << 20, 0);
        remember(&mut r, 0, 9, 3);
        r.warm((1..100u128).map(TraceRef::new));
        assert_eq!(r.current.len, 4);
        assert!(r.contains(key(9, 3)));
    }

    #[test]
    fn forgets_after_two_windows_and_remembers_for_one() {
        let mut r = Recent::new(10 * SEC, 1 << 20, 0);
        let fp = key(1, 1);
        insert(&mut r, 0, fp);
        insert(&mut r, 10 * SEC, key(2, 2));
        assert!(
            r.contains(fp),
            "one window later: in the previous generation"
        );
        insert(&mut r, 20 * SEC, key(3, 3));
        assert!(!r.contains(fp), "two windows later: forgotten");
        assert_eq!(r.retired_full(), 0);
    }

    #[test]
    fn keys_never_stored_are_not_found_in_a_half_full_generation() {
        // 13,107 traces of 5 keys fill 16,384 buckets of 8 to half. Look for keys that
        // were never stored: spans of these traces that never came (each lookup reads
        // their bucket's filled slots, all 32-bit fingerprints of other keys), and spans
        // of traces never seen. About 4 million slot comparisons at 2^-32 each: a false
        // match would be a one-in-a-thousand event, and fingerprints sharing bits with the
        // bucket would produce hundreds.
        let mut r = Recent::new(30 * SEC, 1 << 30, 0);
        r.current = Generation::new(1 << 14, 0);
        let traces = (1u128 << 14) * SLOTS as u128 / 2 / 5;
        for t in 1..=traces {
            remember(&mut r, 0, t, 4);
        }
        assert!(!r.current.full());
        assert!((1..=traces).all(|t| r.contains(key(t, 4))));
        let mut matched = 0usize;
        for t in 1..=traces {
            matched += (5..=40u64).filter(|&s| r.contains(key(t, s))).count();
        }
        matched += (traces + 1..=traces + 200_000)
            .filter(|&t| r.contains(key(t, 1)))
            .count();
        assert_eq!(matched, 0);
    }

    #[test]
    fn a_high_rate_grows_the_generations_up_to_the_budget_and_no_further() {
        let budget = 1 << 20; // 128 Ki slots per generation.
        let mut r = Recent::new(30 * SEC, budget, 0);
        let start = r.bytes();
        for i in 0..200_000u64 {
            insert(&mut r, 0, key(u128::from(i), 1));
        }
        assert!(r.bytes() > start);
        // The tables fill the budget; their filters take 1/32 more, and no more.
        assert_eq!(r.bytes(), r.max_bytes());
        assert_eq!(r.max_bytes(), budget + budget / 32);
        assert!(r.retired_full() > 0);
        // The most recent ones are still there.
        for i in 199_000..200_000u64 {
            assert!(r.contains(key(u128::from(i), 1)));
        }
    }
}
