//! Sparse latency histograms using the HdrHistogram bucket layout.
//!
//! This module owns:
//! - [`Layout`]: the HdrHistogram bucket layout (lowest discernible value 1, precision set by
//!   significant digits), i.e. the mapping value ↔ bucket index. It mirrors the `hdrhistogram`
//!   crate's math exactly, so a value lands in the same bucket (counts index) as it would in
//!   `Histogram::<u64>::new_with_bounds(1, layout.max_value(), sigfig)`.
//! - [`SparseHist`]: the counts of the populated buckets, in a sparse (index, count) or a
//!   dense (offset, counts) encoding, whichever is smaller, with counts 1 to 8 bytes wide as
//!   their size needs. One time slot of one series usually populates few buckets, or a narrow
//!   range of them, so this is far smaller than a dense HDR counts array.
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

/// Largest count a width holds, by `shift` (a count takes `1 << shift` bytes).
#[inline]
fn width_max(shift: u8) -> u64 {
    match shift {
        0 => u64::from(u8::MAX),
        1 => u64::from(u16::MAX),
        2 => u64::from(u32::MAX),
        _ => u64::MAX,
    }
}

/// The smallest `shift` whose width holds `c`.
#[inline]
fn shift_for(c: u64) -> u8 {
    if c <= u64::from(u8::MAX) {
        0
    } else if c <= u64::from(u16::MAX) {
        1
    } else if c <= u64::from(u32::MAX) {
        2
    } else {
        3
    }
}

#[inline]
fn read<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at + N)?.try_into().ok()
}

/// The little-endian count of `1 << shift` bytes at `at` (0 past the end).
#[inline]
fn get_count(buf: &[u8], at: usize, shift: u8) -> u64 {
    match shift {
        0 => buf.get(at).map_or(0, |&b| u64::from(b)),
        1 => read::<2>(buf, at).map_or(0, |b| u64::from(u16::from_le_bytes(b))),
        2 => read::<4>(buf, at).map_or(0, |b| u64::from(u32::from_le_bytes(b))),
        _ => read::<8>(buf, at).map_or(0, u64::from_le_bytes),
    }
}

#[inline]
fn write<const N: usize>(buf: &mut [u8], at: usize, bytes: [u8; N]) {
    if let Some(dst) = buf.get_mut(at..at + N) {
        dst.copy_from_slice(&bytes);
    }
}

/// Writes `c`, which fits the width, as `1 << shift` little-endian bytes at `at`.
#[inline]
fn put_count(buf: &mut [u8], at: usize, shift: u8, c: u64) {
    // The casts keep the low bytes, which hold all of `c` at a width that fits it.
    match shift {
        0 => write(buf, at, [c as u8]),
        1 => write(buf, at, (c as u16).to_le_bytes()),
        2 => write(buf, at, (c as u32).to_le_bytes()),
        _ => write(buf, at, c.to_le_bytes()),
    }
}

/// Adds `n` to the count of `W` bytes at `at`: `Ok(previous count)`, or `Err(sum)` (left
/// unwritten) when the saturating sum does not fit the width.
#[inline]
fn bump_width<const W: usize>(buf: &mut [u8], at: usize, n: u64) -> Result<u64, u64> {
    let Some(dst) = buf.get_mut(at..at + W) else {
        return Ok(0);
    };
    let mut le = [0_u8; 8];
    le[..W].copy_from_slice(dst);
    let old = u64::from_le_bytes(le);
    let c = old.saturating_add(n);
    if W < 8 && c >> (8 * W) != 0 {
        return Err(c);
    }
    dst.copy_from_slice(&c.to_le_bytes()[..W]);
    Ok(old)
}

/// [`bump_width`] for a width of `1 << shift` bytes.
#[inline]
fn bump(buf: &mut [u8], at: usize, shift: u8, n: u64) -> Result<u64, u64> {
    match shift {
        0 => bump_width::<1>(buf, at, n),
        1 => bump_width::<2>(buf, at, n),
        2 => bump_width::<4>(buf, at, n),
        _ => bump_width::<8>(buf, at, n),
    }
}

/// Appends `c`, which fits the width, as `1 << shift` little-endian bytes.
#[inline]
fn push_count(out: &mut Vec<u8>, c: u64, shift: u8) {
    match shift {
        0 => out.push(c as u8),
        1 => out.extend_from_slice(&(c as u16).to_le_bytes()),
        2 => out.extend_from_slice(&(c as u32).to_le_bytes()),
        _ => out.extend_from_slice(&c.to_le_bytes()),
    }
}

/// Entry position of `index` among sparse entries of `N` bytes (`Err`: where it would go).
#[inline]
fn find_entry<const N: usize>(buf: &[u8], index: u16) -> Result<usize, usize> {
    let (entries, _) = buf.as_chunks::<N>();
    let idx = |e: &[u8; N]| u16::from_le_bytes([e[0], e[1]]);
    // Fast paths: the last bucket again, or a new one beyond it.
    match entries.last().map(idx) {
        None => return Err(0),
        Some(last) if last < index => return Err(entries.len()),
        Some(last) if last == index => return Ok(entries.len() - 1),
        Some(_) => {}
    }
    entries.binary_search_by(|e| idx(e).cmp(&index))
}

/// Adds dense counts of `W` bytes to `dst`, one per bucket.
#[inline]
fn add_dense_counts<const W: usize>(dst: &mut [u64], buf: &[u8]) {
    let (counts, _) = buf.as_chunks::<W>();
    for (a, c) in dst.iter_mut().zip(counts) {
        let mut le = [0_u8; 8];
        le[..W].copy_from_slice(c);
        *a = a.saturating_add(u64::from_le_bytes(le));
    }
}

/// Adds sparse entries of `N` bytes (index, then count) to `acc[index - lo]`.
#[inline]
fn add_sparse_counts<const N: usize>(acc: &mut [u64], lo: u16, buf: &[u8]) {
    let (entries, _) = buf.as_chunks::<N>();
    for e in entries {
        let i = u16::from_le_bytes([e[0], e[1]]);
        let mut le = [0_u8; 8];
        le[..N - 2].copy_from_slice(&e[2..]);
        if let Some(a) = acc.get_mut(usize::from(i.wrapping_sub(lo))) {
            *a = a.saturating_add(u64::from_le_bytes(le));
        }
    }
}

/// The bucket index stored at `at` of a sparse buffer.
#[inline]
fn get_idx(buf: &[u8], at: usize) -> u16 {
    read::<2>(buf, at).map_or(u16::MAX, u16::from_le_bytes)
}

/// Bucket counts of one histogram, in whichever of two encodings is smaller, with counts as
/// narrow as the largest one allows (1, 2, 4 or 8 bytes, widened when a count outgrows them).
///
/// - **Sparse**: entries of a 2-byte bucket index and a count, sorted by index. Small when
///   few buckets are populated (a 10-second slot, or latencies far apart).
/// - **Dense**: the counts of every bucket from `lo` to the last populated one, zeros
///   included, like an OTLP exponential histogram's offset and bucket counts. Small when
///   most buckets of the range are populated (a 5-minute period, or a busy series).
///
/// A window slot of a series at 2 requests per second holds 600 latencies over a few hundred
/// buckets: 1 byte per bucket dense, against 6 bytes per populated bucket for `u16` indices
/// with `u32` counts. The histogram switches to dense when that is no larger, and back to
/// sparse when a far-off bucket would make the dense range more than twice the sparse size.
///
/// A third encoding is for histograms that are done changing (completed window slots, see
/// [`SparseHist::shrink_to_fit`]):
///
/// - **Packed**: the highest index, then one byte per populated bucket, the gap from the
///   previous bucket in its high four bits and the count in its low four; a gap of 15 or more
///   or a count of 16 or more is written as a LEB128 number after the byte (gap nibble 15,
///   count nibble 0). Latencies spread over three decades pack into about a third of their
///   dense size. Reading is sequential; recording into a packed histogram first unpacks it.
///
/// Invariants: sparse indices strictly increase and no sparse count is zero; a dense range
/// starts and ends with non-zero counts; an empty histogram is sparse with an empty buffer;
/// `nonzero` is the number of populated buckets and `total` the saturating sum of the counts.
/// Two histograms with the same recorded buckets compare equal whatever their encoding,
/// width, capacity or recording order.
///
/// Indices are those of a [`Layout`]; the histogram itself is layout-agnostic, so all parts
/// that are merged must come from the same layout.
#[derive(Clone, Default)]
pub struct SparseHist {
    buf: Vec<u8>,
    total: u64,
    /// Populated buckets.
    nonzero: u32,
    /// Dense and packed: the bucket index of the first count.
    lo: u16,
    /// A count takes `1 << shift` bytes (0..=3); packed: the width when unpacked.
    shift: u8,
    enc: Enc,
}

/// Encoding of a [`SparseHist`]'s buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Enc {
    #[default]
    Sparse,
    Dense,
    Packed,
}

/// Bytes of the LEB128 encoding of `v`.
fn leb_len(v: u64) -> usize {
    (64 - v.leading_zeros() as usize).div_ceil(7).max(1)
}

fn push_leb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Packed bytes of one bucket `gap` buckets after the previous one.
fn packed_entry_len(gap: u32, c: u64) -> usize {
    let gap_bytes = if gap >= 15 {
        leb_len(u64::from(gap))
    } else {
        0
    };
    let count_bytes = if c >= 16 { leb_len(c) } else { 0 };
    1 + gap_bytes + count_bytes
}

fn push_packed(out: &mut Vec<u8>, gap: u32, c: u64) {
    let gap_nibble = if gap >= 15 { 15 } else { gap as u8 };
    let count_nibble = if c >= 16 { 0 } else { c as u8 };
    out.push(gap_nibble << 4 | count_nibble);
    if gap >= 15 {
        push_leb(out, u64::from(gap));
    }
    if c >= 16 {
        push_leb(out, c);
    }
}

impl std::fmt::Debug for SparseHist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseHist")
            .field("total", &self.total)
            .field("encoding", &self.enc)
            .field("count_bytes", &(1_u8 << self.shift))
            .field("buckets", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for SparseHist {
    fn eq(&self, other: &Self) -> bool {
        self.total == other.total && self.nonzero == other.nonzero && self.iter().eq(other.iter())
    }
}

impl Eq for SparseHist {}

/// `(bucket index, count)` pairs of a [`SparseHist`] in ascending index order.
pub struct Iter<'a> {
    buf: &'a [u8],
    /// Unread bytes are `at..end`.
    at: usize,
    end: usize,
    lo: u16,
    shift: u8,
    enc: Enc,
    /// Packed: the index the next gap counts from.
    next_idx: u32,
}

impl Iter<'_> {
    /// Reads a LEB128 number at `at` (`None` if it runs past the end or over 64 bits).
    fn leb(&mut self) -> Option<u64> {
        let mut v = 0_u64;
        for k in 0..10 {
            let b = *self.buf.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7f).checked_shl(7 * k)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    #[inline]
    fn next_packed(&mut self) -> Option<(u16, u64)> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        let gap = match b >> 4 {
            15 => u32::try_from(self.leb()?).ok()?,
            g => u32::from(g),
        };
        let c = match b & 15 {
            0 => self.leb()?,
            c => u64::from(c),
        };
        let i = self.next_idx.checked_add(gap)?;
        self.next_idx = i.saturating_add(1);
        Some((u16::try_from(i).ok()?, c))
    }

    /// The entry before the unread ones (sparse and dense only; packed reads forward).
    fn next_back_entry(&mut self) -> Option<(u16, u64)> {
        match self.enc {
            Enc::Dense => {
                while self.end > self.at {
                    self.end -= 1 << self.shift;
                    let c = get_count(self.buf, self.end, self.shift);
                    if c != 0 {
                        return Some((self.dense_index(self.end), c));
                    }
                }
                None
            }
            Enc::Sparse if self.end > self.at => {
                self.end -= 2 + (1 << self.shift);
                let i = get_idx(self.buf, self.end);
                Some((i, get_count(self.buf, self.end + 2, self.shift)))
            }
            Enc::Sparse | Enc::Packed => None,
        }
    }

    /// The bucket index of the dense count at byte `at` (a dense range ends at or below
    /// `u16::MAX`, so the offset fits).
    #[inline]
    fn dense_index(&self, at: usize) -> u16 {
        self.lo.wrapping_add((at >> self.shift) as u16)
    }
}

impl Iterator for Iter<'_> {
    type Item = (u16, u64);

    #[inline]
    fn next(&mut self) -> Option<(u16, u64)> {
        match self.enc {
            Enc::Dense => {
                while self.at < self.end {
                    let (at, c) = (self.at, get_count(self.buf, self.at, self.shift));
                    self.at += 1 << self.shift;
                    if c != 0 {
                        return Some((self.dense_index(at), c));
                    }
                }
                None
            }
            Enc::Sparse if self.at < self.end => {
                let i = get_idx(self.buf, self.at);
                let c = get_count(self.buf, self.at + 2, self.shift);
                self.at += 2 + (1 << self.shift);
                Some((i, c))
            }
            Enc::Sparse => None,
            Enc::Packed => self.next_packed(),
        }
    }
}

/// An [`Iter`] of a sparse or dense histogram read backwards.
struct Rev<'a>(Iter<'a>);

impl Iterator for Rev<'_> {
    type Item = (u16, u64);

    fn next(&mut self) -> Option<(u16, u64)> {
        self.0.next_back_entry()
    }
}

/// Sums two ascending `(index, count)` streams into one.
struct MergeIter<A: Iterator<Item = (u16, u64)>, B: Iterator<Item = (u16, u64)>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = (u16, u64)>, B: Iterator<Item = (u16, u64)>> Iterator for MergeIter<A, B> {
    type Item = (u16, u64);

    fn next(&mut self) -> Option<(u16, u64)> {
        match (self.a.peek().copied(), self.b.peek().copied()) {
            (Some((i, c)), Some((j, d))) => match i.cmp(&j) {
                Ordering::Less => self.a.next(),
                Ordering::Greater => self.b.next(),
                Ordering::Equal => {
                    self.a.next();
                    self.b.next();
                    Some((i, c.saturating_add(d)))
                }
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

impl SparseHist {
    /// Empty histogram (no allocation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of one sparse entry.
    #[inline]
    fn stride(&self) -> usize {
        2 + (1 << self.shift)
    }

    /// Bytes the sparse encoding of `n` buckets takes at width `shift`.
    fn sparse_bytes(n: usize, shift: u8) -> usize {
        n * (2 + (1 << shift))
    }

    /// Counts in a dense buffer (its range's length).
    #[inline]
    fn dense_slots(&self) -> usize {
        self.buf.len() >> self.shift
    }

    /// Lowest and highest populated bucket.
    fn bounds(&self) -> Option<(u16, u16)> {
        if self.nonzero == 0 {
            return None;
        }
        match self.enc {
            Enc::Dense => {
                let hi = usize::from(self.lo) + self.dense_slots().saturating_sub(1);
                Some((self.lo, u16::try_from(hi).unwrap_or(u16::MAX)))
            }
            Enc::Sparse => {
                let last = self.buf.len().saturating_sub(self.stride());
                Some((get_idx(&self.buf, 0), get_idx(&self.buf, last)))
            }
            Enc::Packed => Some((self.lo, get_idx(&self.buf, 0))),
        }
    }

    /// Add `n` to the bucket `index` (saturating). `n == 0` is a no-op.
    #[inline]
    pub fn record(&mut self, index: u16, n: u64) {
        if n == 0 {
            return;
        }
        self.total = self.total.saturating_add(n);
        self.add(index, n);
    }

    /// Adds `n > 0` to a bucket (`total` already counted).
    #[inline]
    fn add(&mut self, index: u16, n: u64) {
        match self.enc {
            Enc::Dense => self.add_dense(index, n),
            Enc::Sparse => self.add_sparse(index, n),
            Enc::Packed => {
                self.unpack();
                self.add(index, n);
            }
        }
    }

    /// Turns a packed histogram back into the smaller of sparse and dense.
    #[cold]
    fn unpack(&mut self) {
        if self.enc == Enc::Packed {
            self.make_sparse();
            self.densify_if_smaller();
        }
    }

    /// Bytes of the packed encoding.
    fn packed_bytes(&self) -> usize {
        let Some((lo, _)) = self.bounds() else {
            return 0;
        };
        let mut next = u32::from(lo);
        let mut bytes = 2;
        for (i, c) in self.iter() {
            let i = u32::from(i);
            bytes += packed_entry_len(i - next.min(i), c);
            next = i + 1;
        }
        bytes
    }

    /// Switches to the packed encoding (for a histogram that is done changing).
    fn make_packed(&mut self) {
        let Some((lo, hi)) = self.bounds() else {
            return;
        };
        if self.enc == Enc::Packed {
            return;
        }
        let mut out = Vec::with_capacity(self.packed_bytes());
        out.extend_from_slice(&hi.to_le_bytes());
        let mut next = u32::from(lo);
        for (i, c) in self.iter() {
            let i = u32::from(i);
            push_packed(&mut out, i - next.min(i), c);
            next = i + 1;
        }
        self.buf = out;
        self.lo = lo;
        self.enc = Enc::Packed;
    }

    /// Record one occurrence of `value` using `layout` (clamping above `max_value`).
    pub fn record_value(&mut self, layout: &Layout, value: u64) {
        self.record(layout.index_of(value), 1);
    }

    /// Entry position of `index` in a sparse buffer (`Err`: where it would go).
    #[inline]
    fn find(&self, index: u16) -> Result<usize, usize> {
        match self.shift {
            0 => find_entry::<3>(&self.buf, index),
            1 => find_entry::<4>(&self.buf, index),
            2 => find_entry::<6>(&self.buf, index),
            _ => find_entry::<10>(&self.buf, index),
        }
    }

    /// Adds `n > 0` to a bucket of a sparse histogram (`total` already counted).
    fn add_sparse(&mut self, index: u16, n: u64) {
        match self.find(index) {
            Ok(k) => {
                let at = k * self.stride() + 2;
                if let Err(c) = bump(&mut self.buf, at, self.shift, n) {
                    self.widen(shift_for(c));
                    let at = k * self.stride() + 2;
                    put_count(&mut self.buf, at, self.shift, c);
                    self.densify_if_smaller();
                }
            }
            Err(k) => {
                if n > width_max(self.shift) {
                    self.widen(shift_for(n));
                }
                let stride = self.stride();
                let at = k * stride;
                let old = self.buf.len();
                self.buf.resize(old + stride, 0);
                self.buf.copy_within(at..old, at + stride);
                if let Some(dst) = self.buf.get_mut(at..at + 2) {
                    dst.copy_from_slice(&index.to_le_bytes());
                }
                put_count(&mut self.buf, at + 2, self.shift, n);
                self.nonzero += 1;
                self.densify_if_smaller();
            }
        }
    }

    /// Adds `n > 0` to a bucket of a dense histogram (`total` already counted), extending the
    /// range or switching to sparse when the bucket lies outside it.
    fn add_dense(&mut self, index: u16, n: u64) {
        let off = usize::from(index).wrapping_sub(usize::from(self.lo));
        if off < self.dense_slots() {
            match bump(&mut self.buf, off << self.shift, self.shift, n) {
                Ok(0) => self.nonzero += 1,
                Ok(_) => {}
                Err(c) => {
                    // The sum did not fit and was not written; the bucket may be new.
                    if get_count(&self.buf, off << self.shift, self.shift) == 0 {
                        self.nonzero += 1;
                    }
                    self.widen(shift_for(c));
                    put_count(&mut self.buf, off << self.shift, self.shift, c);
                    self.sparsify_if_larger();
                }
            }
            return;
        }
        let Some((lo, hi)) = self.bounds() else {
            return;
        };
        let (lo, hi) = (lo.min(index), hi.max(index));
        let shift = self.shift.max(shift_for(n));
        let dense = (usize::from(hi - lo) + 1) << shift;
        let sparse = Self::sparse_bytes(self.nonzero as usize + 1, shift);
        if dense <= 2 * sparse {
            self.widen(shift);
            self.extend_dense(lo, hi);
            self.add_dense(index, n);
        } else {
            self.make_sparse();
            self.add_sparse(index, n);
        }
    }

    /// Grows a dense range to cover `lo..=hi` (a superset of the current one).
    fn extend_dense(&mut self, lo: u16, hi: u16) {
        let front = usize::from(self.lo.saturating_sub(lo)) << self.shift;
        let cur_hi = usize::from(self.lo) + self.dense_slots().saturating_sub(1);
        let back = usize::from(hi).saturating_sub(cur_hi) << self.shift;
        let old = self.buf.len();
        self.buf.resize(old + front + back, 0);
        if front > 0 {
            self.buf.copy_within(0..old, front);
            if let Some(head) = self.buf.get_mut(..front) {
                head.fill(0);
            }
            self.lo = lo;
        }
    }

    /// Rewrites the counts `1 << shift` bytes wide (no-op unless wider than now).
    fn widen(&mut self, shift: u8) {
        if shift <= self.shift {
            return;
        }
        let mut out = Vec::with_capacity((self.buf.len() >> self.shift) << shift);
        if self.enc == Enc::Dense {
            for k in 0..self.dense_slots() {
                push_count(
                    &mut out,
                    get_count(&self.buf, k << self.shift, self.shift),
                    shift,
                );
            }
        } else {
            for (i, c) in self.iter() {
                out.extend_from_slice(&i.to_le_bytes());
                push_count(&mut out, c, shift);
            }
        }
        self.buf = out;
        self.shift = shift;
    }

    /// Switches a sparse histogram to dense when that takes no more bytes.
    #[inline]
    fn densify_if_smaller(&mut self) {
        if self.enc != Enc::Sparse {
            return;
        }
        if let Some((lo, hi)) = self.bounds() {
            if (usize::from(hi - lo) + 1) << self.shift <= self.buf.len() {
                self.make_dense();
            }
        }
    }

    /// Switches a dense histogram to sparse when dense takes more than twice the bytes
    /// (wider counts cost dense encoding more, since it stores every bucket of its range).
    fn sparsify_if_larger(&mut self) {
        if self.enc == Enc::Dense
            && self.buf.len() > 2 * Self::sparse_bytes(self.nonzero as usize, self.shift)
        {
            self.make_sparse();
        }
    }

    fn make_dense(&mut self) {
        let Some((lo, hi)) = self.bounds() else {
            return;
        };
        if self.enc == Enc::Dense {
            return;
        }
        let mut out = vec![0_u8; (usize::from(hi - lo) + 1) << self.shift];
        for (i, c) in self.iter() {
            put_count(&mut out, usize::from(i - lo) << self.shift, self.shift, c);
        }
        self.buf = out;
        self.lo = lo;
        self.enc = Enc::Dense;
    }

    fn make_sparse(&mut self) {
        if self.enc == Enc::Sparse {
            return;
        }
        let mut out = Vec::with_capacity(Self::sparse_bytes(self.nonzero as usize, self.shift));
        for (i, c) in self.iter() {
            out.extend_from_slice(&i.to_le_bytes());
            push_count(&mut out, c, self.shift);
        }
        self.buf = out;
        self.lo = 0;
        self.enc = Enc::Sparse;
    }

    /// Replaces the contents with the counts `acc` of the buckets from `lo` on, in the
    /// smaller encoding at the narrowest width (`total` is left to the caller).
    fn set_from_counts(&mut self, lo: u16, acc: &[u64]) {
        self.buf.clear();
        self.lo = 0;
        self.enc = Enc::Sparse;
        self.shift = 0;
        self.nonzero = 0;
        let first = acc.iter().position(|&c| c != 0);
        let last = acc.iter().rposition(|&c| c != 0);
        let (Some(first), Some(last)) = (first, last) else {
            return;
        };
        let acc = acc.get(first..=last).unwrap_or_default();
        let (nonzero, max) = acc
            .iter()
            .filter(|&&c| c != 0)
            .fold((0_usize, 0_u64), |(n, m), &c| (n + 1, m.max(c)));
        let shift = shift_for(max);
        let base = usize::from(lo) + first;
        self.shift = shift;
        self.nonzero = u32::try_from(nonzero).unwrap_or(u32::MAX);
        if acc.len() << shift <= Self::sparse_bytes(nonzero, shift) {
            self.enc = Enc::Dense;
            self.lo = u16::try_from(base).unwrap_or(u16::MAX);
            self.buf.reserve_exact(acc.len() << shift);
            for &c in acc {
                push_count(&mut self.buf, c, shift);
            }
        } else {
            self.buf.reserve_exact(Self::sparse_bytes(nonzero, shift));
            for (k, &c) in acc.iter().enumerate().filter(|(_, c)| **c != 0) {
                let i = u16::try_from(base + k).unwrap_or(u16::MAX);
                self.buf.extend_from_slice(&i.to_le_bytes());
                push_count(&mut self.buf, c, shift);
            }
        }
    }

    /// Adds every bucket's count to `acc[index - lo]` (saturating); `lo` is at or below the
    /// lowest populated bucket. One tight loop per encoding and width.
    fn add_counts_to(&self, acc: &mut [u64], lo: u16) {
        match (self.enc, self.shift) {
            (Enc::Dense, shift) => {
                let start = usize::from(self.lo.saturating_sub(lo));
                let Some(dst) = acc.get_mut(start..) else {
                    return;
                };
                match shift {
                    0 => add_dense_counts::<1>(dst, &self.buf),
                    1 => add_dense_counts::<2>(dst, &self.buf),
                    2 => add_dense_counts::<4>(dst, &self.buf),
                    _ => add_dense_counts::<8>(dst, &self.buf),
                }
            }
            (Enc::Sparse, 0) => add_sparse_counts::<3>(acc, lo, &self.buf),
            (Enc::Sparse, 1) => add_sparse_counts::<4>(acc, lo, &self.buf),
            (Enc::Sparse, 2) => add_sparse_counts::<6>(acc, lo, &self.buf),
            (Enc::Sparse, _) => add_sparse_counts::<10>(acc, lo, &self.buf),
            (Enc::Packed, _) => {
                let mut it = self.iter();
                while let Some((i, c)) = it.next_packed() {
                    if let Some(a) = acc.get_mut(usize::from(i.wrapping_sub(lo))) {
                        *a = a.saturating_add(c);
                    }
                }
            }
        }
    }

    /// Add `other`'s counts to `self` (saturating).
    pub fn merge(&mut self, other: &SparseHist) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            // Reuses self's allocation when large enough.
            self.buf.clone_from(&other.buf);
            self.total = other.total;
            self.nonzero = other.nonzero;
            self.lo = other.lo;
            self.shift = other.shift;
            self.enc = other.enc;
            return;
        }
        if other.enc == Enc::Packed {
            let mut unpacked = other.clone();
            unpacked.unpack();
            self.merge(&unpacked);
            return;
        }
        self.unpack();
        let (Some((a_lo, a_hi)), Some((b_lo, b_hi))) = (self.bounds(), other.bounds()) else {
            return;
        };
        self.total = self.total.saturating_add(other.total);
        let (lo, hi) = (a_lo.min(b_lo), a_hi.max(b_hi));
        let shift = self.shift.max(other.shift);
        let dense = (usize::from(hi - lo) + 1) << shift;
        let (mine, theirs) = (self.nonzero as usize, other.nonzero as usize);
        // The union has at least as many buckets as either side: dense when it is surely no
        // larger than sparse, or when already dense and surely within twice the sparse size.
        let sparse = Self::sparse_bytes(mine.max(theirs), shift);
        if dense <= sparse || (self.enc == Enc::Dense && dense <= 2 * sparse) {
            self.make_dense();
            self.widen(shift);
            self.extend_dense(lo, hi);
            for (i, c) in other.iter() {
                // Widening may have turned it sparse on the way.
                self.add(i, c);
            }
            self.sparsify_if_larger();
            return;
        }
        // A few buckets into many (a 10-second slot into a longer one): insert each one.
        if theirs <= 4 || theirs * 16 <= mine {
            for (i, c) in other.iter() {
                self.add(i, c);
            }
            return;
        }
        // Sparse: size and width from a first pass, then merged in place back to front, so
        // nothing unread is overwritten and nothing is allocated beyond the growth.
        let merged = MergeIter {
            a: self.iter().peekable(),
            b: other.iter().peekable(),
        };
        let (n, max) = merged.fold((0_usize, 0_u64), |(n, m), (_, c)| (n + 1, m.max(c)));
        self.make_sparse();
        self.widen(shift.max(shift_for(max)));
        let stride = self.stride();
        let mut mine = self.nonzero as usize; // unread entries of self: 0..mine
        let mut k = n; // write position (exclusive)
        self.buf.resize(n * stride, 0);
        let mut theirs = Rev(other.iter()).peekable();
        while k > 0 {
            let at = mine.checked_sub(1).map(|p| p * stride);
            let own = at.map(|a| {
                (
                    get_idx(&self.buf, a),
                    get_count(&self.buf, a + 2, self.shift),
                )
            });
            let (i, c) = match (own, theirs.peek().copied()) {
                (Some((i, c)), Some((j, d))) => match i.cmp(&j) {
                    Ordering::Greater => {
                        mine -= 1;
                        (i, c)
                    }
                    Ordering::Equal => {
                        mine -= 1;
                        theirs.next();
                        (i, c.saturating_add(d))
                    }
                    Ordering::Less => {
                        theirs.next();
                        (j, d)
                    }
                },
                (None, Some(o)) => {
                    theirs.next();
                    o
                }
                // Other is exhausted: the rest of self is already in place (k == mine).
                (_, None) => break,
            };
            k -= 1;
            if let Some(dst) = self.buf.get_mut(k * stride..k * stride + 2) {
                dst.copy_from_slice(&i.to_le_bytes());
            }
            put_count(&mut self.buf, k * stride + 2, self.shift, c);
        }
        debug_assert_eq!(k, mine);
        self.nonzero = u32::try_from(n).unwrap_or(u32::MAX);
        self.densify_if_smaller();
    }

    /// Remove all counts, keeping the allocated capacity (see [`SparseHist::shrink_to_fit`]).
    /// The histogram starts again sparse with 1-byte counts.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.total = 0;
        self.nonzero = 0;
        self.lo = 0;
        self.shift = 0;
        self.enc = Enc::Sparse;
    }

    /// Moves to the smallest of the three encodings and releases unused capacity: for a
    /// completed slot that will not change again, or after [`SparseHist::clear`] of one that
    /// held a burst. Recording into it afterwards works but first unpacks a packed one.
    pub fn shrink_to_fit(&mut self) {
        if let Some((lo, hi)) = self.bounds() {
            let sparse = Self::sparse_bytes(self.nonzero as usize, self.shift);
            let dense = (usize::from(hi - lo) + 1) << self.shift;
            let packed = self.packed_bytes();
            if packed < sparse.min(dense) {
                self.make_packed();
            } else if sparse < dense {
                self.make_sparse();
            } else {
                self.make_dense();
            }
        }
        self.buf.shrink_to_fit();
    }

    /// Total recorded count (saturating), O(1).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.nonzero == 0
    }

    /// Number of distinct (non-empty) buckets.
    pub fn len(&self) -> usize {
        self.nonzero as usize
    }

    /// `(bucket index, count)` pairs in ascending index order; counts are never zero.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            buf: &self.buf,
            // A packed buffer starts with the highest index.
            at: if self.enc == Enc::Packed { 2 } else { 0 },
            end: self.buf.len(),
            lo: self.lo,
            shift: self.shift,
            enc: self.enc,
            next_idx: u32::from(self.lo),
        }
    }

    /// Heap memory held (allocated capacity, not length), in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
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
        quantiles_over(|| self.iter(), self.total, layout, qs, out);
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

/// [`SparseHist::values_at_quantiles`] over the ascending `(index, count)` entries that
/// `entries` yields afresh at each call, whose counts sum to `total` (saturating).
fn quantiles_over<I: Iterator<Item = (u16, u64)>>(
    entries: impl Fn() -> I,
    total: u64,
    layout: &Layout,
    qs: &[f64],
    out: &mut [Option<u64>],
) {
    // Cursor: `it` yields the entries not yet consumed, `cum` the count of those before
    // them, `cur` the last consumed entry (where the previous rank was reached).
    let mut it = entries();
    let mut cum = 0_u64;
    let mut cur: Option<u16> = None;
    let mut prev_rank = 0_u64;
    for (&q, slot) in qs.iter().zip(out.iter_mut()) {
        if total == 0 {
            *slot = None;
            continue;
        }
        let rank = Layout::rank(q, total);
        if rank < prev_rank {
            it = entries();
            cum = 0;
            cur = None;
        }
        prev_rank = rank;
        while cum < rank {
            let Some((i, n)) = it.next() else {
                break;
            };
            cum = cum.saturating_add(n);
            cur = Some(i);
        }
        *slot = cur.map(|i| layout.reported(i, q));
    }
}

/// The range, populated buckets and total of the non-empty `parts`.
fn extent(parts: &[&SparseHist]) -> Option<(u16, u16, usize, u64)> {
    let mut range: Option<(u16, u16)> = None;
    let mut buckets = 0_usize;
    let mut total = 0_u64;
    for (lo, hi, p) in parts
        .iter()
        .filter_map(|p| p.bounds().map(|(a, b)| (a, b, p)))
    {
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        buckets += p.len();
        total = total.saturating_add(p.total);
    }
    range.map(|(lo, hi)| (lo, hi, buckets, total))
}

/// Per-bucket sums of `parts` over `lo..=hi`, when that is cheap: the range is at most four
/// times the parts' populated buckets, so the sums cost about what reading the parts does.
fn summed(parts: &[&SparseHist], lo: u16, hi: u16, buckets: usize) -> Option<Vec<u64>> {
    let span = usize::from(hi - lo) + 1;
    if span > 4 * buckets {
        return None;
    }
    let mut acc = vec![0_u64; span];
    for p in parts {
        p.add_counts_to(&mut acc, lo);
    }
    Some(acc)
}

/// The quantiles `qs` of everything recorded in `parts` together: what [`merge_into`] and
/// then [`SparseHist::values_at_quantiles`] give, without building the merged histogram.
pub fn quantiles_of(parts: &[&SparseHist], layout: &Layout, qs: &[f64], out: &mut [Option<u64>]) {
    let Some((lo, hi, buckets, total)) = extent(parts) else {
        out.iter_mut().for_each(|q| *q = None);
        return;
    };
    match summed(parts, lo, hi, buckets) {
        Some(acc) => {
            let entries = || {
                acc.iter()
                    .enumerate()
                    .filter(|(_, c)| **c != 0)
                    .map(|(k, &c)| (lo.wrapping_add(k as u16), c))
            };
            quantiles_over(entries, total, layout, qs, out);
        }
        None => {
            let mut merged = SparseHist::new();
            merge_into(&mut merged, parts);
            merged.values_at_quantiles(layout, qs, out);
        }
    }
}

/// Merge several histograms into `out` (cleared first; its capacity is reused). Equivalent
/// to recording everything recorded in `parts` into one histogram, and encoded as compactly.
pub fn merge_into(out: &mut SparseHist, parts: &[&SparseHist]) {
    out.clear();
    let Some((lo, hi, buckets, total)) = extent(parts) else {
        return;
    };
    if let Some(acc) = summed(parts, lo, hi, buckets) {
        out.set_from_counts(lo, &acc);
        out.total = total;
        return;
    }
    // Start from the largest part so later merges mostly hit existing buckets.
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
        let mut q = [Some(1); 2];
        quantiles_of(&[&s], &l, &[0.5, 1.0], &mut q);
        assert_eq!(q, [None; 2]);
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
        // Sparse, two buckets take 2 + 4 bytes each while the counts fit u32, 2 + 8 once one
        // does not.
        let sparse_len = |h: &SparseHist| {
            let mut h = h.clone();
            h.make_sparse();
            h.buf.len()
        };
        assert_eq!(sparse_len(&narrow), 2 * 6);
        assert_eq!(sparse_len(&wide), 2 * 10);
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
        assert_eq!(sparse_len(&w), 3, "cleared histograms start 1 byte wide");
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
    fn encoding_follows_the_smaller_size() {
        // 600 requests over ~100 neighbouring buckets: dense, 1 byte per bucket.
        let mut busy = SparseHist::new();
        for k in 0..600_u16 {
            busy.record(1000 + (k * 7) % 100, 1);
        }
        busy.shrink_to_fit();
        assert_eq!(busy.enc, Enc::Dense);
        assert_eq!(busy.heap_bytes(), 100);
        assert_eq!(busy.len(), 100);
        assert_eq!(busy.total(), 600);
        // Two buckets far apart: sparse, 3 bytes each.
        let mut far = SparseHist::new();
        far.record(10, 1);
        far.record(4000, 2);
        far.shrink_to_fit();
        assert_eq!(far.enc, Enc::Sparse);
        assert_eq!(far.heap_bytes(), 6);
        // A far-off bucket turns the busy range sparse only when dense would be more than
        // twice the sparse size: 101 buckets sparse is 303 bytes, a range of 3001 is not.
        let mut spread = busy.clone();
        spread.record(4000, 1);
        assert_eq!(spread.enc, Enc::Sparse);
        assert_eq!(spread.len(), 101);
        let mut near = busy.clone();
        near.record(1150, 1);
        assert_eq!(near.enc, Enc::Dense, "151 bytes dense against 303 sparse");
        let want: Vec<_> = busy.iter().chain([(4000, 1)]).collect();
        assert_eq!(spread.iter().collect::<Vec<_>>(), want);
        // Merging chooses likewise, and equality ignores the encoding.
        let mut m = far.clone();
        m.merge(&busy);
        let mut r = busy.clone();
        r.merge(&far);
        assert_eq!(m, r);
        assert_eq!(m.total(), 603);
        let mut k = SparseHist::new();
        merge_into(&mut k, &[&far, &busy]);
        assert_eq!(k, m);
    }

    #[test]
    fn dense_counts_widen_through_every_width() {
        let mut h = SparseHist::new();
        for i in 0..4 {
            h.record(i, 1);
        }
        assert_eq!(h.enc, Enc::Dense);
        h.shrink_to_fit();
        assert_eq!(h.heap_bytes(), 4);
        for (n, bytes) in [(300, 2), (70_000, 4), (u64::from(u32::MAX), 8)] {
            h.record(2, n);
            assert_eq!(h.shift, shift_for(n + 1), "{n}");
            assert_eq!((h.enc, h.buf.len()), (Enc::Dense, 4 * bytes), "{n}");
        }
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            vec![
                (0, 1),
                (1, 1),
                (2, 1 + 300 + 70_000 + u64::from(u32::MAX)),
                (3, 1)
            ]
        );
        // Extending a dense range at both ends keeps every count in place.
        h.record(0, u64::MAX);
        let mut e = h.clone();
        e.record(7, 1);
        assert_eq!(e.iter().next_back_entry(), Some((7, 1)));
        assert_eq!(e.iter().next(), Some((0, u64::MAX)));
        assert_eq!(e.total(), u64::MAX);
    }

    #[test]
    fn packed_encoding_bytes_and_escapes() {
        let mut h = SparseHist::new();
        for (i, n) in [
            (100, 1),
            (101, 15),
            (103, 16),
            (200, 300),
            (u16::MAX, u64::MAX / 2),
        ] {
            h.record(i, n);
        }
        let want: Vec<_> = h.iter().collect();
        let total = h.total();
        h.make_packed();
        assert_eq!(h.enc, Enc::Packed);
        assert_eq!(
            h.buf,
            [
                vec![0xff, 0xff],        // highest index
                vec![0x01],              // gap 0, count 1
                vec![0x0f],              // gap 0, count 15
                vec![0x10, 16],          // gap 1, count 16 in LEB128
                vec![0xf0, 96, 0xac, 2], // gap 96 in LEB128, count 300 in LEB128
                // gap 65,334, count 2^63 - 1 in nine LEB128 bytes
                vec![0xf0, 0xb6, 0xfe, 3],
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            ]
            .concat()
        );
        assert_eq!(h.buf.len(), h.packed_bytes());
        assert_eq!(h.iter().collect::<Vec<_>>(), want);
        assert_eq!(h.bounds(), Some((100, u16::MAX)));
        // Recording into it unpacks first; merging from and into it keeps every count.
        let packed = h.clone();
        h.record(102, 1);
        assert_ne!(h.enc, Enc::Packed);
        assert_eq!(h.total(), total.saturating_add(1));
        assert_eq!(h.len(), 6);
        let mut m = SparseHist::new();
        m.record(50, 2);
        m.merge(&packed);
        assert_eq!(m.iter().next(), Some((50, 2)));
        assert_eq!(m.iter().skip(1).collect::<Vec<_>>(), want);
        let mut p = packed.clone();
        p.merge(&m);
        assert_eq!(p.total(), total.saturating_mul(2).saturating_add(2));
        let mut k = SparseHist::new();
        merge_into(&mut k, &[&packed, &packed]);
        assert_eq!(
            k.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            [100, 101, 103, 200, u16::MAX]
        );
    }

    #[test]
    fn completed_slots_shrink_to_the_smallest_encoding() {
        // Latencies over three decades, 600 of them: packed beats dense and sparse.
        let l = layout(2);
        let mut wide = SparseHist::new();
        let mut v = 1_000_000_f64;
        for _ in 0..600 {
            wide.record_value(&l, v as u64);
            v *= 1.0116; // 1 ms to about 1 s
        }
        let want: Vec<_> = wide.iter().collect();
        let (lo, hi) = wide.bounds().unwrap();
        let dense = usize::from(hi - lo) + 1;
        wide.shrink_to_fit();
        assert_eq!(wide.enc, Enc::Packed);
        assert!(
            wide.heap_bytes() * 2 < dense,
            "{} vs {dense}",
            wide.heap_bytes()
        );
        assert_eq!(wide.iter().collect::<Vec<_>>(), want);
        // Busy neighbouring buckets with counts above 15: dense stays smallest.
        let mut busy = SparseHist::new();
        for k in 0..2_000_u16 {
            busy.record(1000 + k % 50, 1);
        }
        busy.shrink_to_fit();
        assert_eq!((busy.enc, busy.heap_bytes()), (Enc::Dense, 50));
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
            let idx: Vec<u16> = one.iter().map(|(i, _)| i).collect();
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));

            let mut qs: Vec<f64> = QS.iter().copied().chain(rq).collect();
            qs.sort_by(f64::total_cmp);
            let mut out = vec![None; qs.len()];
            one.values_at_quantiles(&l, &qs, &mut out);
            // Straight from the parts, with and without packing them first.
            let mut from_parts = vec![None; qs.len()];
            quantiles_of(&refs, &l, &qs, &mut from_parts);
            let mut packed: Vec<SparseHist> = parts.clone();
            packed.iter_mut().for_each(SparseHist::make_packed);
            let packed_refs: Vec<&SparseHist> = packed.iter().collect();
            let mut from_packed = vec![None; qs.len()];
            quantiles_of(&packed_refs, &l, &qs, &mut from_packed);
            for (k, q) in qs.iter().enumerate() {
                let want = Some(h.value_at_quantile(*q));
                prop_assert_eq!(one.value_at_quantile(&l, *q), want, "q {}", q);
                prop_assert_eq!(out[k], want, "q {}", q);
                prop_assert_eq!(from_parts[k], want, "q {}", q);
                prop_assert_eq!(from_packed[k], want, "q {}", q);
            }
            // count_at_or_below: exact for bucket tops, never above HDR's inclusive count.
            for &v in values.iter().take(8) {
                let c = one.count_at_or_below(&l, v);
                let top = l.highest_equivalent(l.index_of(v));
                prop_assert_eq!(one.count_at_or_below(&l, top), h.count_between(0, top));
                prop_assert!(c <= h.count_between(0, v));
            }
        }

        /// Any sequence of records, merges, clears and shrinks gives exactly the counts of
        /// a plain map with saturating sums, in whichever encoding and width it ends up.
        #[test]
        fn behaves_like_a_map(
            ops in proptest::collection::vec(
                (0_u8..6, 0_u16..4, 0_u16..40, prop_oneof![1_u64..4, 1_u64..400, Just(u64::MAX / 3)]),
                1..200,
            ),
        ) {
            use std::collections::BTreeMap;
            fn add(m: &mut BTreeMap<u16, u64>, i: u16, n: u64) {
                let c = m.entry(i).or_insert(0);
                *c = c.saturating_add(n);
            }
            let (mut h, mut model) = (SparseHist::new(), BTreeMap::new());
            let mut model_total = 0_u64;
            let (mut other, mut other_model) = (SparseHist::new(), BTreeMap::new());
            let mut other_total = 0_u64;
            for (op, spread, i, n) in ops {
                // Clustered, spread, far apart or at the top of the index range.
                let i = match spread {
                    0 => 500 + i,
                    1 => i * 97,
                    2 => i * 1600,
                    _ => u16::MAX - i,
                };
                match op {
                    0 | 1 => {
                        h.record(i, n);
                        add(&mut model, i, n);
                        model_total = model_total.saturating_add(n);
                    }
                    2 => {
                        other.record(i, n);
                        add(&mut other_model, i, n);
                        other_total = other_total.saturating_add(n);
                    }
                    3 => {
                        h.merge(&other);
                        for (&i, &n) in &other_model {
                            add(&mut model, i, n);
                        }
                        model_total = model_total.saturating_add(other_total);
                    }
                    4 => {
                        let mut k = SparseHist::new();
                        merge_into(&mut k, &[&h, &other, &h]);
                        let mut seq = h.clone();
                        seq.merge(&other);
                        seq.merge(&h);
                        prop_assert_eq!(k, seq);
                        h.shrink_to_fit();
                        if i % 2 == 0 {
                            h.make_packed();
                            other.make_packed();
                        }
                    }
                    _ => {
                        if i % 7 == 0 {
                            h.clear();
                            model.clear();
                            model_total = 0;
                        }
                    }
                }
                let got: Vec<(u16, u64)> = h.iter().collect();
                let want: Vec<(u16, u64)> = model.iter().map(|(&i, &n)| (i, n)).collect();
                prop_assert_eq!(&got, &want);
                if h.enc != Enc::Packed {
                    let back: Vec<(u16, u64)> = Rev(h.iter()).collect();
                    prop_assert!(back.iter().rev().eq(want.iter()));
                }
                prop_assert_eq!(h.total(), model_total);
                prop_assert_eq!(h.len(), model.len());
                prop_assert_eq!(h.is_empty(), model.is_empty());
                // Sparse or dense: never more than twice the smaller of the two at the width
                // in use. Packed: exactly its computed size.
                let sparse = SparseHist::sparse_bytes(h.len(), h.shift);
                let dense = h.bounds().map_or(0, |(a, b)| (usize::from(b - a) + 1) << h.shift);
                if h.enc == Enc::Packed {
                    prop_assert_eq!(h.buf.len(), h.packed_bytes());
                } else {
                    prop_assert!(h.buf.len() <= 2 * sparse.min(dense), "{:?}", h);
                }
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
