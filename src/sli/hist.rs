//! Sparse latency histograms using the HdrHistogram bucket layout.
//!
//! This module owns:
//! - [`Layout`]: the HdrHistogram bucket layout (lowest discernible value 1, precision set by
//!   significant digits), i.e. the mapping value ↔ bucket index. It mirrors the `hdrhistogram`
//!   crate's math exactly, so a value lands in the same bucket (counts index) as it would in
//!   `Histogram::<u64>::new_with_bounds(1, layout.max_value(), sigfig)`.
//! - [`SparseHist`]: counts stored sparsely as sorted parallel vectors of
//!   `(bucket index, count)`, which is far smaller than a dense HDR counts array when few
//!   buckets are populated (the usual case for one time slot of one series).
//! - Merging ([`SparseHist::merge`], [`merge_into`]) and quantile / threshold queries
//!   ([`SparseHist::value_at_quantile`], [`SparseHist::values_at_quantiles`],
//!   [`SparseHist::count_at_or_below`]). Quantiles are exactly what HdrHistogram's
//!   `value_at_quantile` returns for the same recorded values.
//!
//! It does not own time: rolling windows, time slots and their rotation live elsewhere and
//! use this module as their storage and query primitive. A [`SparseHist`] does not know its
//! [`Layout`]; callers keep one layout per configuration and pass it to the queries.

use std::cmp::Ordering;

/// Exponent of the layout's range: every layout covers values `0..=2^47 - 1`.
const RANGE_BITS: u32 = 47;

/// Error creating a [`Layout`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// Significant digits outside the supported range.
    #[error("significant digits must be 1..=3, got {0}")]
    SigFig(u8),
}

/// HdrHistogram bucket layout with lowest discernible value 1 and values in `u64` units
/// (we record nanoseconds).
///
/// Every layout covers `0..=max_value()` where `max_value() == 2^47 - 1` (≈ 140 737 s ≈ 39.1
/// hours in nanoseconds), independent of the significant digits. `2^47 - 1` is exactly the
/// top of the last HDR bucket, so the layout is identical to
/// `hdrhistogram::Histogram::<u64>::new_with_bounds(1, 2^47 - 1, sigfig)`. Values above
/// `max_value()` are clamped into the top bucket (like HDR's `saturating_record`).
///
/// Bucket indices always fit in `u16`; [`Layout::bucket_count`] is 704 (1 significant digit),
/// 5 248 (2) or 38 912 (3). The relative width of a bucket is below `2^-(m-1)` where
/// `2^m` is the smallest power of two ≥ `2 * 10^sigfig` (e.g. < 1/128 ≈ 0.78 % for 2 digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    significant_digits: u8,
    /// log2 of half the sub-bucket count (HDR `sub_bucket_half_count_magnitude`).
    sub_bucket_half_count_magnitude: u32,
    /// HDR `sub_bucket_mask` (unit magnitude is 0).
    sub_bucket_mask: u64,
    /// HDR `leading_zero_count_base`.
    leading_zero_count_base: u32,
    /// Highest valid index (`bucket_count - 1`).
    last_index: u16,
}

impl Layout {
    /// Layout for `significant_digits` in `1..=3`.
    pub fn new(significant_digits: u8) -> Result<Self, LayoutError> {
        if !(1..=3).contains(&significant_digits) {
            return Err(LayoutError::SigFig(significant_digits));
        }
        // HDR: largest value with single-unit resolution is 2 * 10^sigfig; the sub-bucket
        // count is the next power of two (computed with integers instead of HDR's float log2,
        // same result for these inputs).
        let largest = 2 * 10_u64.pow(u32::from(significant_digits));
        let sub_bucket_count_magnitude = largest.next_power_of_two().trailing_zeros();
        let sub_bucket_half_count_magnitude = sub_bucket_count_magnitude - 1;
        let sub_bucket_count = 1_u64 << sub_bucket_count_magnitude;
        // Number of HDR buckets needed so that `sub_bucket_count << (buckets - 1)` exceeds
        // 2^RANGE_BITS - 1, i.e. equals 2^RANGE_BITS.
        let buckets = RANGE_BITS - sub_bucket_count_magnitude + 1;
        // HDR `num_bins`: (buckets + 1) * sub_bucket_half_count.
        let bins = (buckets + 1) << sub_bucket_half_count_magnitude;
        let last_index = u16::try_from(bins.saturating_sub(1)).unwrap_or(u16::MAX);
        Ok(Self {
            significant_digits,
            sub_bucket_half_count_magnitude,
            sub_bucket_mask: sub_bucket_count - 1,
            leading_zero_count_base: 64 - sub_bucket_count_magnitude,
            last_index,
        })
    }

    /// Significant decimal digits this layout was built with.
    pub fn significant_digits(&self) -> u8 {
        self.significant_digits
    }

    /// Bucket index of `value`: the same as HdrHistogram's counts index for that value.
    /// Values above [`Layout::max_value`] map to the top bucket.
    pub fn index_of(&self, value: u64) -> u16 {
        let value = value.min(self.max_value());
        let bucket = self
            .leading_zero_count_base
            .saturating_sub((value | self.sub_bucket_mask).leading_zeros());
        let sub_bucket = value >> bucket;
        let half = 1_u64 << self.sub_bucket_half_count_magnitude;
        // HDR: ((bucket + 1) << half_magnitude) + sub_bucket - half. For bucket 0 the sub-bucket
        // may be below `half`, which the `(bucket + 1)` base compensates for.
        let index = (u64::from(bucket + 1) << self.sub_bucket_half_count_magnitude)
            .saturating_add(sub_bucket)
            .saturating_sub(half);
        u16::try_from(index)
            .unwrap_or(self.last_index)
            .min(self.last_index)
    }

    /// HDR bucket and sub-bucket of an index (clamped to the last valid index).
    fn loc(&self, index: u16) -> (u32, u64) {
        let index = u32::from(index.min(self.last_index));
        let half_mag = self.sub_bucket_half_count_magnitude;
        let half = 1_u32 << half_mag;
        let bucket_plus_one = index >> half_mag;
        let sub = index & (half - 1);
        match bucket_plus_one.checked_sub(1) {
            // Lower half of bucket 0.
            None => (0, u64::from(sub)),
            Some(bucket) => (bucket, u64::from(sub + half)),
        }
    }

    /// Lowest value that maps to `index` (HDR `lowest_equivalent`). Indices beyond the last
    /// valid index are treated as the last one.
    pub fn lowest_equivalent(&self, index: u16) -> u64 {
        let (bucket, sub) = self.loc(index);
        sub << bucket
    }

    /// Highest value that maps to `index` (HDR `highest_equivalent`); this is what
    /// HdrHistogram's `value_at_quantile` reports for a quantile falling into the bucket.
    /// Indices beyond the last valid index are treated as the last one.
    pub fn highest_equivalent(&self, index: u16) -> u64 {
        let (bucket, sub) = self.loc(index);
        (sub << bucket).saturating_add((1_u64 << bucket) - 1)
    }

    /// Highest value that is represented without clamping: `2^47 - 1` (≈ 39.1 h in ns).
    pub fn max_value(&self) -> u64 {
        (1_u64 << RANGE_BITS) - 1
    }

    /// Number of bucket indices (valid indices are `0..bucket_count()`); equal to the length
    /// of the equivalent HdrHistogram's counts array (`distinct_values()`).
    pub fn bucket_count(&self) -> usize {
        usize::from(self.last_index) + 1
    }

    /// Count rank HdrHistogram's `value_at_quantile` looks for: `ceil(q * total)`, at least 1,
    /// with `q` capped at 1 (float-to-int conversion saturates, NaN gives 1).
    fn rank(q: f64, total: u64) -> u64 {
        let q = if q > 1.0 { 1.0 } else { q };
        let rank = (q * total as f64).ceil() as u64;
        rank.max(1)
    }

    /// Value reported for a quantile that falls into `index` (HDR rule: lowest equivalent for
    /// `q == 0`, highest equivalent otherwise).
    fn reported(&self, index: u16, q: f64) -> u64 {
        if q == 0.0 {
            self.lowest_equivalent(index)
        } else {
            self.highest_equivalent(index)
        }
    }
}

/// Bucket counts, 4 bytes each until one of them outgrows `u32`, then 8 bytes each.
///
/// Window slots (10 s to 5 min of traffic) never leave the narrow form in practice, which
/// keeps a series' many slots small; long-lived all-time histograms widen when they must.
#[derive(Clone, Debug)]
enum Counts {
    Narrow(Vec<u32>),
    Wide(Vec<u64>),
}

impl Default for Counts {
    fn default() -> Self {
        Counts::Narrow(Vec::new())
    }
}

impl Counts {
    fn len(&self) -> usize {
        match self {
            Counts::Narrow(v) => v.len(),
            Counts::Wide(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> Option<u64> {
        match self {
            Counts::Narrow(v) => v.get(i).map(|&c| u64::from(c)),
            Counts::Wide(v) => v.get(i).copied(),
        }
    }

    fn widen(&mut self) -> &mut Vec<u64> {
        if let Counts::Narrow(v) = self {
            let mut wide = Vec::with_capacity(v.capacity());
            wide.extend(v.iter().map(|&c| u64::from(c)));
            *self = Counts::Wide(wide);
        }
        match self {
            Counts::Wide(v) => v,
            Counts::Narrow(_) => unreachable!("just widened"),
        }
    }

    /// Sets entry `i` (which must exist) to `n`, widening if `n` does not fit.
    fn set(&mut self, i: usize, n: u64) {
        match self {
            Counts::Narrow(v) => match u32::try_from(n) {
                Ok(n32) => {
                    if let Some(c) = v.get_mut(i) {
                        *c = n32;
                    }
                }
                Err(_) => {
                    if let Some(c) = self.widen().get_mut(i) {
                        *c = n;
                    }
                }
            },
            Counts::Wide(v) => {
                if let Some(c) = v.get_mut(i) {
                    *c = n;
                }
            }
        }
    }

    fn add(&mut self, i: usize, n: u64) {
        if let Some(c) = self.get(i) {
            self.set(i, c.saturating_add(n));
        }
    }

    fn insert(&mut self, pos: usize, n: u64) {
        match self {
            Counts::Narrow(v) => match u32::try_from(n) {
                Ok(n32) => v.insert(pos, n32),
                Err(_) => self.widen().insert(pos, n),
            },
            Counts::Wide(v) => v.insert(pos, n),
        }
    }

    fn resize(&mut self, len: usize) {
        match self {
            Counts::Narrow(v) => v.resize(len, 0),
            Counts::Wide(v) => v.resize(len, 0),
        }
    }

    fn clear(&mut self) {
        // A cleared histogram starts narrow again (its slot gets reused for new traffic).
        match self {
            Counts::Narrow(v) => v.clear(),
            Counts::Wide(_) => *self = Counts::default(),
        }
    }

    fn shrink_to_fit(&mut self) {
        match self {
            Counts::Narrow(v) => v.shrink_to_fit(),
            Counts::Wide(v) => v.shrink_to_fit(),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Counts::Narrow(v) => v.capacity() * std::mem::size_of::<u32>(),
            Counts::Wide(v) => v.capacity() * std::mem::size_of::<u64>(),
        }
    }

    fn copy_from(&mut self, other: &Counts) {
        match (&mut *self, other) {
            (Counts::Narrow(a), Counts::Narrow(b)) => a.clone_from(b),
            (Counts::Wide(a), Counts::Wide(b)) => a.clone_from(b),
            (Counts::Wide(a), Counts::Narrow(b)) => {
                a.clear();
                a.extend(b.iter().map(|&c| u64::from(c)));
            }
            (Counts::Narrow(_), Counts::Wide(b)) => *self = Counts::Wide(b.clone()),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (narrow, wide) = match self {
            Counts::Narrow(v) => (Some(v.iter().map(|&c| u64::from(c))), None),
            Counts::Wide(v) => (None, Some(v.iter().copied())),
        };
        narrow
            .into_iter()
            .flatten()
            .chain(wide.into_iter().flatten())
    }
}

impl PartialEq for Counts {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Counts {}

/// Sparse counts keyed by bucket index, sorted by index.
///
/// Invariants: `idx` is strictly increasing, `idx` and `counts` have the same length, no
/// stored count is zero, and `total` is the saturating sum of `counts`. So two histograms with
/// the same recorded buckets compare equal regardless of recording order or capacity.
///
/// Indices are those of a [`Layout`]; the histogram itself is layout-agnostic, so all parts
/// that are merged must come from the same layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHist {
    idx: Vec<u16>,
    counts: Counts,
    total: u64,
}

impl SparseHist {
    /// Empty histogram (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `n` to the bucket `index` (saturating). `n == 0` is a no-op.
    pub fn record(&mut self, index: u16, n: u64) {
        if n == 0 {
            return;
        }
        self.total = self.total.saturating_add(n);
        // Fast path: appending beyond the current last bucket.
        let pos = match self.idx.last() {
            None => 0,
            Some(&last) if last < index => self.idx.len(),
            Some(_) => match self.idx.binary_search(&index) {
                Ok(i) => {
                    self.counts.add(i, n);
                    return;
                }
                Err(i) => i,
            },
        };
        self.idx.insert(pos, index);
        self.counts.insert(pos, n);
    }

    /// Record one occurrence of `value` using `layout` (clamping above `max_value`).
    pub fn record_value(&mut self, layout: &Layout, value: u64) {
        self.record(layout.index_of(value), 1);
    }

    /// Add `other`'s counts to `self` (saturating). Linear sorted merge done in place: no
    /// allocation beyond growing `self` by the number of buckets new to it.
    pub fn merge(&mut self, other: &SparseHist) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            // Reuses self's allocation when large enough.
            self.idx.clone_from(&other.idx);
            self.counts.copy_from(&other.counts);
            self.total = other.total;
            return;
        }
        self.total = self.total.saturating_add(other.total);

        // Pass 1: how many of other's buckets are absent from self.
        let mut new = 0_usize;
        let mut a = self.idx.iter().peekable();
        for &b in &other.idx {
            while a.next_if(|&&x| x < b).is_some() {}
            if a.next_if(|&&x| x == b).is_none() {
                new += 1;
            }
        }

        if new == 0 {
            // Every bucket already exists: forward add.
            let mut i = 0_usize;
            for (b, n) in other.iter() {
                while self.idx.get(i).is_some_and(|&x| x < b) {
                    i += 1;
                }
                self.counts.add(i, n);
                i += 1;
            }
            return;
        }

        // Pass 2: grow, then merge back to front so nothing unread is overwritten.
        let old_len = self.idx.len();
        let new_len = old_len + new;
        self.idx.resize(new_len, 0);
        self.counts.resize(new_len);
        let mut i = old_len; // unread prefix of self: 0..i
        let mut j = other.idx.len(); // unread prefix of other: 0..j
        let mut k = new_len; // write position (exclusive)
        while j > 0 && k > 0 {
            let (Some(&ob), Some(on)) = (other.idx.get(j - 1), other.counts.get(j - 1)) else {
                break;
            };
            let mine = match i.checked_sub(1) {
                Some(p) => self.idx.get(p).copied().zip(self.counts.get(p)),
                None => None,
            };
            let (b, n) = match mine {
                Some((sb, sn)) => match sb.cmp(&ob) {
                    Ordering::Greater => {
                        i -= 1;
                        (sb, sn)
                    }
                    Ordering::Equal => {
                        i -= 1;
                        j -= 1;
                        (sb, sn.saturating_add(on))
                    }
                    Ordering::Less => {
                        j -= 1;
                        (ob, on)
                    }
                },
                None => {
                    j -= 1;
                    (ob, on)
                }
            };
            k -= 1;
            if let Some(slot_b) = self.idx.get_mut(k) {
                *slot_b = b;
                self.counts.set(k, n);
            }
        }
        // When other is exhausted, the remaining self prefix 0..i is already in place (k == i).
        debug_assert_eq!(k, i);
    }

    /// Remove all counts, keeping the allocated capacity (see [`SparseHist::shrink_to_fit`]).
    pub fn clear(&mut self) {
        self.idx.clear();
        self.counts.clear();
        self.total = 0;
    }

    /// Release unused capacity (e.g. after [`SparseHist::clear`] of a slot that held a burst).
    pub fn shrink_to_fit(&mut self) {
        self.idx.shrink_to_fit();
        self.counts.shrink_to_fit();
    }

    /// Total recorded count (saturating), O(1).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// Number of distinct (non-empty) buckets.
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// `(bucket index, count)` pairs in ascending index order; counts are never zero.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.idx.iter().copied().zip(self.counts.iter())
    }

    /// Heap memory held (allocated capacity, not length), in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.idx.capacity() * std::mem::size_of::<u16>() + self.counts.heap_bytes()
    }

    /// The value HdrHistogram's `value_at_quantile(q)` returns for the same recorded values:
    /// with `rank = max(1, ceil(min(q, 1) * total))`, the first bucket whose cumulative count
    /// reaches `rank`, reported as its highest equivalent value (lowest equivalent when
    /// `q == 0`). `None` when empty.
    ///
    /// Deviation: if float rounding makes `rank` exceed the total (only possible for totals
    /// above 2^53), HDR returns 0; this returns the top recorded bucket instead.
    pub fn value_at_quantile(&self, layout: &Layout, q: f64) -> Option<u64> {
        let rank = Layout::rank(q, self.total);
        let mut cum = 0_u64;
        let mut last = None;
        for (i, n) in self.iter() {
            cum = cum.saturating_add(n);
            last = Some(i);
            if cum >= rank {
                break;
            }
        }
        last.map(|i| layout.reported(i, q))
    }

    /// Several quantiles in one pass: `out[k]` is `value_at_quantile(layout, qs[k])`.
    /// `qs` should be ascending for a single pass; out-of-order entries are still answered
    /// correctly (the scan restarts). Only `min(qs.len(), out.len())` entries are written.
    pub fn values_at_quantiles(&self, layout: &Layout, qs: &[f64], out: &mut [Option<u64>]) {
        let total = self.total;
        // Cursor: `pos` is the next entry to consume, `cum` the count of entries before it,
        // `cur` the last consumed entry (where the previous rank was reached).
        let mut pos = 0_usize;
        let mut cum = 0_u64;
        let mut cur: Option<u16> = None;
        let mut prev_rank = 0_u64;
        for (&q, slot) in qs.iter().zip(out.iter_mut()) {
            if self.is_empty() {
                *slot = None;
                continue;
            }
            let rank = Layout::rank(q, total);
            if rank < prev_rank {
                pos = 0;
                cum = 0;
                cur = None;
            }
            prev_rank = rank;
            while cum < rank {
                let (Some(&i), Some(n)) = (self.idx.get(pos), self.counts.get(pos)) else {
                    break;
                };
                cum = cum.saturating_add(n);
                cur = Some(i);
                pos += 1;
            }
            *slot = cur.map(|i| layout.reported(i, q));
        }
    }

    /// Number of recorded values known to be `<= v`: the sum of the counts of all buckets whose
    /// highest equivalent value is `<= v`. The bucket containing `v` is therefore included only
    /// when `v` is its highest equivalent value; otherwise its values are counted as above `v`
    /// (conservative for "fraction faster than threshold": the result is never larger than
    /// the exact count, and smaller by at most the count of that one bucket).
    ///
    /// Values recorded above `layout.max_value()` were clamped into the top bucket, so for
    /// `v >= max_value()` every recorded value counts.
    pub fn count_at_or_below(&self, layout: &Layout, v: u64) -> u64 {
        let bi = layout.index_of(v);
        let include_own = layout.highest_equivalent(bi) <= v;
        let mut sum = 0_u64;
        for (i, n) in self.iter() {
            if i < bi || (i == bi && include_own) {
                sum = sum.saturating_add(n);
            } else {
                break;
            }
        }
        sum
    }
}

/// Merge several histograms into `out` (cleared first; its capacity is reused). Equivalent
/// to recording everything recorded in `parts` into one histogram.
pub fn merge_into(out: &mut SparseHist, parts: &[&SparseHist]) {
    out.clear();
    // Start from the largest part so later merges mostly hit existing buckets (forward-add
    // fast path) instead of shifting entries.
    let first = parts
        .iter()
        .enumerate()
        .max_by_key(|(_, p)| p.len())
        .map(|(k, _)| k);
    let Some(first) = first else {
        return;
    };
    if let Some(p) = parts.get(first) {
        out.merge(p);
    }
    for (k, p) in parts.iter().enumerate() {
        if k != first {
            out.merge(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;
    use proptest::prelude::*;

    const QS: [f64; 7] = [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

    fn layout(sf: u8) -> Layout {
        Layout::new(sf).unwrap()
    }

    fn hdr(l: &Layout) -> Histogram<u64> {
        Histogram::<u64>::new_with_bounds(1, l.max_value(), l.significant_digits()).unwrap()
    }

    /// Log-uniform-ish values over 0..2^50 (so some exceed the layout maximum).
    fn value() -> impl Strategy<Value = u64> {
        (0_u32..=50, any::<u64>())
            .prop_map(|(bits, r)| if bits == 0 { 0 } else { r >> (64 - bits) })
    }

    fn sparse_of(l: &Layout, values: &[u64]) -> SparseHist {
        let mut s = SparseHist::new();
        for &v in values {
            s.record_value(l, v);
        }
        s
    }

    #[test]
    fn sigfig_bounds() {
        assert_eq!(Layout::new(0).unwrap_err(), LayoutError::SigFig(0));
        assert_eq!(Layout::new(4).unwrap_err(), LayoutError::SigFig(4));
        assert_eq!(
            LayoutError::SigFig(4).to_string(),
            "significant digits must be 1..=3, got 4"
        );
        for sf in 1..=3 {
            assert_eq!(layout(sf).significant_digits(), sf);
        }
    }

    #[test]
    fn bucket_counts_and_max() {
        assert_eq!(layout(1).bucket_count(), 704);
        assert_eq!(layout(2).bucket_count(), 5248);
        assert_eq!(layout(3).bucket_count(), 38912);
        for sf in 1..=3 {
            let l = layout(sf);
            assert_eq!(l.max_value(), (1 << 47) - 1);
            let last = u16::try_from(l.bucket_count() - 1).unwrap();
            assert_eq!(l.highest_equivalent(last), l.max_value());
            assert_eq!(l.index_of(l.max_value()), last);
            assert_eq!(l.index_of(u64::MAX), last);
            // Out-of-range indices behave as the last one.
            assert_eq!(l.lowest_equivalent(u16::MAX), l.lowest_equivalent(last));
            assert_eq!(l.highest_equivalent(u16::MAX), l.max_value());
        }
    }

    /// Exhaustive: every index maps to the value HDR reports for its counts index, and back.
    #[test]
    fn every_index_matches_hdr() {
        for sf in 1..=3 {
            let l = layout(sf);
            let h = hdr(&l);
            assert_eq!(h.distinct_values(), l.bucket_count());
            let mut n = 0_usize;
            for (i, it) in h.iter_all().enumerate() {
                let i = u16::try_from(i).unwrap();
                assert_eq!(
                    l.highest_equivalent(i),
                    it.value_iterated_to(),
                    "sf {sf} i {i}"
                );
                assert_eq!(l.index_of(l.lowest_equivalent(i)), i);
                assert_eq!(l.index_of(l.highest_equivalent(i)), i);
                if i > 0 {
                    assert_eq!(l.lowest_equivalent(i), l.highest_equivalent(i - 1) + 1);
                }
                n += 1;
            }
            assert_eq!(n, l.bucket_count());
        }
    }

    #[test]
    fn empty_behaviour() {
        let l = layout(2);
        let s = SparseHist::new();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert_eq!(s.total(), 0);
        assert_eq!(s.heap_bytes(), 0);
        assert_eq!(s.iter().count(), 0);
        for q in QS {
            assert_eq!(s.value_at_quantile(&l, q), None);
        }
        let mut out = [Some(1); 3];
        s.values_at_quantiles(&l, &[0.0, 0.5, 1.0], &mut out);
        assert_eq!(out, [None; 3]);
        assert_eq!(s.count_at_or_below(&l, u64::MAX), 0);
        let mut m = SparseHist::new();
        merge_into(&mut m, &[]);
        assert!(m.is_empty());
        merge_into(&mut m, &[&s, &s]);
        assert!(m.is_empty());
        let mut r = SparseHist::new();
        r.record(5, 0);
        assert!(r.is_empty());
    }

    #[test]
    fn saturation() {
        let l = layout(2);
        let mut s = SparseHist::new();
        s.record(3, u64::MAX - 1);
        s.record(3, 5);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![(3, u64::MAX)]);
        assert_eq!(s.total(), u64::MAX);
        s.record(7, 10);
        assert_eq!(s.total(), u64::MAX);
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![(3, u64::MAX), (7, 20)]);
        assert_eq!(m.total(), u64::MAX);
        // The saturated total is reached within bucket 3 already (as in HDR).
        assert_eq!(m.value_at_quantile(&l, 1.0), Some(l.highest_equivalent(3)));
        assert_eq!(m.value_at_quantile(&l, 0.5), Some(l.highest_equivalent(3)));
        assert_eq!(m.count_at_or_below(&l, u64::MAX), u64::MAX);
    }

    #[test]
    fn counts_widen_past_u32_and_narrow_again_when_cleared() {
        let small = u64::from(u32::MAX) - 1;
        let mut narrow = SparseHist::new();
        narrow.record(5, small);
        narrow.record(9, 1);
        // Recording past u32::MAX widens; counts stay exact.
        let mut wide = narrow.clone();
        wide.record(5, 10);
        assert_eq!(
            wide.iter().collect::<Vec<_>>(),
            vec![(5, small + 10), (9, 1)]
        );
        // A clone allocates exactly its length: 2 + 4 bytes per entry narrow, 2 + 8 wide.
        assert_eq!(narrow.clone().heap_bytes(), 2 * 6);
        assert_eq!(wide.clone().heap_bytes(), 2 * 10);
        // Merging narrow into wide, wide into narrow, and inserting a huge new bucket.
        let mut m = narrow.clone();
        m.merge(&wide);
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![(5, 2 * small + 10), (9, 2)]
        );
        let mut w = wide.clone();
        w.merge(&narrow);
        assert_eq!(w, m, "equality is by value, whatever the width");
        let mut big_insert = narrow.clone();
        big_insert.record(7, u64::from(u32::MAX) + 1);
        assert_eq!(
            big_insert.iter().collect::<Vec<_>>(),
            vec![(5, small), (7, u64::from(u32::MAX) + 1), (9, 1)]
        );
        let mut merged = SparseHist::new();
        merge_into(&mut merged, &[&narrow, &big_insert]);
        assert_eq!(merged.total(), 2 * small + u64::from(u32::MAX) + 3);
        w.clear();
        w.record(1, 1);
        assert_eq!(w.clone().heap_bytes(), 6, "cleared histograms start narrow");
    }

    #[test]
    fn clamps_above_max() {
        for sf in 1..=3 {
            let l = layout(sf);
            let mut h = hdr(&l);
            let s = sparse_of(&l, &[u64::MAX, 1 << 50, l.max_value() + 1]);
            for v in [u64::MAX, 1 << 50, l.max_value() + 1] {
                h.saturating_record(v);
            }
            assert_eq!(s.len(), 1);
            assert_eq!(s.value_at_quantile(&l, 0.5), Some(l.max_value()));
            assert_eq!(s.value_at_quantile(&l, 0.5), Some(h.value_at_quantile(0.5)));
            assert_eq!(s.count_at_or_below(&l, l.max_value()), 3);
            assert_eq!(s.count_at_or_below(&l, l.max_value() - 1), 0);
        }
    }

    #[test]
    fn count_at_or_below_rule() {
        let l = layout(2);
        // Bucket of 1000 at 2 digits: [1000, 1003] (width 4).
        let i = l.index_of(1000);
        assert_eq!(
            (l.lowest_equivalent(i), l.highest_equivalent(i)),
            (1000, 1003)
        );
        let s = sparse_of(&l, &[5, 999, 1000, 1002, 2000]);
        assert_eq!(s.count_at_or_below(&l, 0), 0);
        assert_eq!(s.count_at_or_below(&l, 5), 1);
        assert_eq!(s.count_at_or_below(&l, 999), 2);
        assert_eq!(s.count_at_or_below(&l, 1000), 2);
        assert_eq!(s.count_at_or_below(&l, 1002), 2);
        assert_eq!(s.count_at_or_below(&l, 1003), 4);
        assert_eq!(s.count_at_or_below(&l, 1_999), 4);
        assert_eq!(s.count_at_or_below(&l, u64::MAX), 5);
    }

    #[test]
    fn merge_shapes_and_capacity() {
        let mut a = SparseHist::new();
        for (i, n) in [(2, 1), (5, 2), (9, 3)] {
            a.record(i, n);
        }
        let mut b = SparseHist::new();
        for (i, n) in [(1, 10), (5, 20), (7, 30), (12, 40)] {
            b.record(i, n);
        }
        let mut m = a.clone();
        m.merge(&b);
        let expect = vec![(1, 10), (2, 1), (5, 22), (7, 30), (9, 3), (12, 40)];
        assert_eq!(m.iter().collect::<Vec<_>>(), expect);
        assert_eq!(m.total(), 106);
        // All buckets already present: forward-add path.
        m.merge(&a);
        assert_eq!(m.iter().find(|&(i, _)| i == 9), Some((9, 6)));
        assert_eq!(m.total(), 112);
        // clear keeps capacity; shrink releases it.
        let cap = m.heap_bytes();
        m.clear();
        assert!(m.is_empty() && m.total() == 0);
        assert_eq!(m.heap_bytes(), cap);
        m.shrink_to_fit();
        assert_eq!(m.heap_bytes(), 0);
        // Record in any order gives canonical content.
        let mut r = SparseHist::new();
        for i in [9_u16, 1, 5, 1, 12, 3] {
            r.record(i, 1);
        }
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            vec![(1, 2), (3, 1), (5, 1), (9, 1), (12, 1)]
        );
    }

    #[test]
    fn quantiles_out_of_order_and_lengths() {
        let l = layout(2);
        let s = sparse_of(&l, &(1..=1000).collect::<Vec<_>>());
        let qs = [0.9, 0.1, 1.0, 0.0, f64::NAN, -1.0, 2.0];
        let mut out = [None; 7];
        s.values_at_quantiles(&l, &qs, &mut out);
        for (q, o) in qs.iter().zip(out) {
            assert_eq!(o, s.value_at_quantile(&l, *q), "q {q}");
        }
        let mut h = hdr(&l);
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        for q in qs {
            assert_eq!(
                s.value_at_quantile(&l, q),
                Some(h.value_at_quantile(q)),
                "q {q}"
            );
        }
        let mut short = [None; 2];
        s.values_at_quantiles(&l, &qs, &mut short);
        assert_eq!(short, [out[0], out[1]]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn equivalents_match_hdr(sf in 1_u8..=3, values in proptest::collection::vec(value(), 1..64)) {
            let l = layout(sf);
            let h = hdr(&l);
            for v in values {
                let i = l.index_of(v);
                let c = v.min(l.max_value());
                prop_assert_eq!(l.lowest_equivalent(i), h.lowest_equivalent(c));
                prop_assert_eq!(l.highest_equivalent(i), h.highest_equivalent(c));
                prop_assert!(l.lowest_equivalent(i) <= c && c <= l.highest_equivalent(i));
            }
        }

        #[test]
        fn quantiles_match_hdr(
            sf in 1_u8..=3,
            values in proptest::collection::vec(value(), 1..300),
            splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
            counts in proptest::collection::vec(1_u64..4, 300),
            rq in proptest::collection::vec(0.0_f64..=1.0, 4),
        ) {
            let l = layout(sf);
            let mut h = hdr(&l);
            // Split the values into parts at random cut points.
            let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(values.len() + 1)).collect();
            cuts.push(0);
            cuts.push(values.len());
            cuts.sort_unstable();
            let mut parts = Vec::new();
            for w in cuts.windows(2) {
                let mut p = SparseHist::new();
                for (k, &v) in values.iter().enumerate().take(w[1]).skip(w[0]) {
                    p.record(l.index_of(v), counts[k]);
                    h.saturating_record_n(v, counts[k]);
                }
                parts.push(p);
            }
            let refs: Vec<&SparseHist> = parts.iter().collect();
            let mut k_way = SparseHist::new();
            k_way.record(0, 99); // must be cleared by merge_into
            merge_into(&mut k_way, &refs);
            let mut seq = SparseHist::new();
            for p in &parts {
                seq.merge(p);
            }
            let mut one = SparseHist::new();
            for (k, &v) in values.iter().enumerate() {
                one.record(l.index_of(v), counts[k]);
            }
            prop_assert_eq!(&k_way, &one);
            prop_assert_eq!(&seq, &one);
            prop_assert_eq!(one.total(), h.len());
            prop_assert!(one.idx.windows(2).all(|w| w[0] < w[1]));

            let mut qs: Vec<f64> = QS.iter().copied().chain(rq).collect();
            qs.sort_by(f64::total_cmp);
            let mut out = vec![None; qs.len()];
            one.values_at_quantiles(&l, &qs, &mut out);
            for (q, o) in qs.iter().zip(&out) {
                let want = h.value_at_quantile(*q);
                prop_assert_eq!(one.value_at_quantile(&l, *q), Some(want), "q {}", q);
                prop_assert_eq!(*o, Some(want), "q {}", q);
            }
            // count_at_or_below: exact for bucket tops, never above HDR's inclusive count.
            for &v in values.iter().take(8) {
                let c = one.count_at_or_below(&l, v);
                let top = l.highest_equivalent(l.index_of(v));
                prop_assert_eq!(one.count_at_or_below(&l, top), h.count_between(0, top));
                prop_assert!(c <= h.count_between(0, v));
            }
        }

        /// Precision contract: with 2 significant digits the reported quantile is within 1 %
        /// of the exact sample quantile (same rank rule as HDR).
        #[test]
        fn relative_error_sigfig2(
            values in proptest::collection::vec(0_u64..(1 << 47), 1..500),
            rq in proptest::collection::vec(0.0_f64..=1.0, 4),
        ) {
            let l = layout(2);
            let s = sparse_of(&l, &values);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for q in QS.iter().copied().chain(rq) {
                let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
                let exact = sorted[rank - 1];
                let got = s.value_at_quantile(&l, q).unwrap();
                prop_assert!(got.abs_diff(exact) as f64 <= exact as f64 * 0.01,
                    "q {} exact {} got {}", q, exact, got);
            }
        }
    }
}
