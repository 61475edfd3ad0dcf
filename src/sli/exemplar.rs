//! Example requests of one series, kept so that a burning SLI leads to the traces behind
//! it: at most one per exported latency bucket (the latest sampled request that fell in it,
//! as the Prometheus client libraries keep theirs) and the last few bad requests. Only
//! requests whose span was sampled are kept: their traces can be found at the vendor.
//!
//! Memory is fixed per series once the first example arrives: 48 bytes per example, one
//! per bucket plus [`BAD_KEPT`] (912 bytes with the default 14 bucket bounds). Plain data,
//! written by the shard that owns the series; readers get a copy with each snapshot.

use crate::sli::classify::Reason;

/// Bad requests kept per series, newest first when read.
pub const BAD_KEPT: usize = 4;

/// One example request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exemplar {
    /// The trace id; all zero marks an empty place (a real span never has it).
    pub trace_id: [u8; 16],
    /// The entry span's id.
    pub span_id: [u8; 8],
    /// Duration, nanoseconds.
    pub duration_ns: u64,
    /// End of the span, Unix nanoseconds.
    pub end_unix_nanos: u64,
    /// Why the request was bad ([`Reason::NONE`] for a good one).
    pub reason: Reason,
}

impl Exemplar {
    /// True for an empty place.
    pub fn is_empty(&self) -> bool {
        self.trace_id == [0; 16]
    }

    /// True for a bad request.
    pub fn is_bad(&self) -> bool {
        self.reason != Reason::NONE
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lower-case hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The examples of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplars {
    /// One place per exported bucket (the last is `+Inf`).
    by_bucket: Box<[Exemplar]>,
    /// The last bad requests, a ring; `next_bad` is where the next one goes.
    bad: [Exemplar; BAD_KEPT],
    next_bad: usize,
}

impl Exemplars {
    /// Empty places for `buckets` exported buckets.
    pub fn new(buckets: usize) -> Self {
        Self {
            by_bucket: vec![Exemplar::default(); buckets].into_boxed_slice(),
            bad: [Exemplar::default(); BAD_KEPT],
            next_bad: 0,
        }
    }

    /// Keeps `e`, which fell in exported bucket `bucket`: it replaces that bucket's example,
    /// and when bad, the oldest of the bad ones. (Replacing always costs fewer instructions
    /// than comparing times first.)
    #[inline]
    pub fn record(&mut self, bucket: usize, e: Exemplar) {
        if let Some(place) = self.by_bucket.get_mut(bucket) {
            *place = e;
        }
        if e.is_bad() {
            if let Some(place) = self.bad.get_mut(self.next_bad) {
                *place = e;
            }
            self.next_bad = (self.next_bad + 1) % BAD_KEPT;
        }
    }

    /// Each bucket's example (`None` where there is none yet), in bucket order.
    pub fn by_bucket(&self) -> impl Iterator<Item = Option<&Exemplar>> + '_ {
        self.by_bucket.iter().map(|e| (!e.is_empty()).then_some(e))
    }

    /// The kept bad requests, newest first.
    pub fn bad(&self) -> impl Iterator<Item = &Exemplar> + '_ {
        (1..=BAD_KEPT)
            .map(move |back| &self.bad[(self.next_bad + BAD_KEPT - back) % BAD_KEPT])
            .filter(|e| !e.is_empty())
    }

    /// The newest bad request.
    pub fn latest_bad(&self) -> Option<&Exemplar> {
        self.bad().next()
    }

    /// Up to `n` of the slowest requests that ended at or after `since_unix_nanos`, slowest
    /// first (from the bucket examples, so one per bucket).
    pub fn slowest_since(&self, since_unix_nanos: u64, n: usize) -> Vec<&Exemplar> {
        let mut out: Vec<&Exemplar> = self
            .by_bucket
            .iter()
            .filter(|e| !e.is_empty() && e.end_unix_nanos >= since_unix_nanos)
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.duration_ns));
        out.truncate(n);
        out
    }

    /// Bytes held, for the series memory gauge.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.by_bucket.len() * std::mem::size_of::<Exemplar>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: u8, duration_ns: u64, end: u64, reason: Reason) -> Exemplar {
        Exemplar {
            trace_id: [n; 16],
            span_id: [n; 8],
            duration_ns,
            end_unix_nanos: end,
            reason,
        }
    }

    #[test]
    fn one_per_bucket_the_latest_wins() {
        let mut x = Exemplars::new(3);
        x.record(0, ex(1, 10, 100, Reason::NONE));
        x.record(0, ex(2, 12, 200, Reason::NONE));
        x.record(2, ex(3, 900, 150, Reason::NONE));
        let b: Vec<Option<u8>> = x.by_bucket().map(|e| e.map(|e| e.trace_id[0])).collect();
        assert_eq!(b, vec![Some(2), None, Some(3)]);
        // Out of range buckets are ignored, not a panic.
        x.record(7, ex(4, 1, 1, Reason::NONE));
        assert_eq!(x.by_bucket().count(), 3);
    }

    #[test]
    fn the_last_bad_requests_newest_first() {
        let mut x = Exemplars::new(2);
        assert!(x.latest_bad().is_none());
        for n in 1..=6u8 {
            let reason = if n % 2 == 0 {
                Reason::http(503)
            } else {
                Reason::NONE
            };
            x.record(0, ex(n, 5, u64::from(n), reason));
        }
        let bad: Vec<u8> = x.bad().map(|e| e.trace_id[0]).collect();
        assert_eq!(bad, vec![6, 4, 2]);
        for n in 7..=12u8 {
            x.record(1, ex(n, 5, u64::from(n), Reason::grpc(14)));
        }
        let bad: Vec<u8> = x.bad().map(|e| e.trace_id[0]).collect();
        assert_eq!(bad, vec![12, 11, 10, 9]);
        assert_eq!(x.latest_bad().map(|e| e.trace_id[0]), Some(12));
    }

    #[test]
    fn slowest_within_a_window() {
        let mut x = Exemplars::new(4);
        x.record(0, ex(1, 10, 1_000, Reason::NONE));
        x.record(1, ex(2, 100, 500, Reason::NONE));
        x.record(3, ex(3, 5_000, 2_000, Reason::NONE));
        let ids = |v: Vec<&Exemplar>| v.iter().map(|e| e.trace_id[0]).collect::<Vec<_>>();
        assert_eq!(ids(x.slowest_since(0, 10)), vec![3, 2, 1]);
        assert_eq!(ids(x.slowest_since(900, 10)), vec![3, 1]);
        assert_eq!(ids(x.slowest_since(0, 1)), vec![3]);
    }

    #[test]
    fn hex_ids_and_memory() {
        let e = ex(0xab, 1, 1, Reason::NONE);
        assert_eq!(e.trace_id_hex(), "ab".repeat(16));
        assert_eq!(e.span_id_hex(), "ab".repeat(8));
        assert_eq!(std::mem::size_of::<Exemplar>(), 48);
        // The default layout: 14 bounds + `+Inf`, under 1 KiB.
        assert!(Exemplars::new(15).memory_bytes() <= 1024);
    }
}
