//! Rolling time windows of request counts and latency histograms for one series.
//!
//! Time is cut into 10-second slots aligned to the Unix epoch. Completed slots roll up into
//! coarser rings, so one series keeps 24 small slots for all of `1m`, `5m`, `1h` and
//! `all`, instead of one slot per 10 s of the longest window:
//!
//! | window | made of                                               | covers      |
//! |--------|-------------------------------------------------------|-------------|
//! | `1m`   | current 10 s slot + last 5 completed 10 s slots        | 50–60 s     |
//! | `5m`   | current slot + this minute so far + last 4 minutes     | 4–5 min     |
//! | `1h`   | … + this 5-minute period so far + last 11 periods      | 55–60 min   |
//! | `all`  | everything since the series was created               | —           |
//!
//! Windows slide in 10-second steps, like a Prometheus range that is re-evaluated every 10 s.
//! This module owns only the slot arithmetic; the caller supplies the current slot number.

use crate::sli::hist::{merge_into, quantiles_of, Layout, SparseHist};
use std::collections::VecDeque;

/// Width of the finest slot, in seconds.
pub const SLOT_SECONDS: u64 = 10;
const SLOTS_PER_MINUTE: u64 = 6;
const SLOTS_PER_PERIOD: u64 = 30;
const RING0: usize = 5;
const RING1: usize = 4;
const RING2: usize = 11;
/// Completed slots after which everything but `all` has rotated out.
const FULL_ROTATION: u64 = 361;

/// The windows a caller can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// About the last minute.
    M1,
    /// About the last five minutes.
    M5,
    /// About the last hour.
    H1,
    /// Since the series was created.
    All,
}

impl Window {
    /// Every window, in display order.
    pub const ALL: [Window; 4] = [Window::M1, Window::M5, Window::H1, Window::All];

    /// The name used in the API and in labels (`1m`, `5m`, `1h`, `all`).
    pub fn name(self) -> &'static str {
        match self {
            Window::M1 => "1m",
            Window::M5 => "5m",
            Window::H1 => "1h",
            Window::All => "all",
        }
    }

    /// The window's nominal length in seconds; `None` for `all` (since the start).
    pub fn nominal_seconds(self) -> Option<u64> {
        match self {
            Window::M1 => Some(60),
            Window::M5 => Some(300),
            Window::H1 => Some(3600),
            Window::All => None,
        }
    }

    /// Parses a window name.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Position in [`Window::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A window read on demand (not published in snapshots): one of the standard windows, or
/// `Periods(k)` = the current 5-minute period so far plus the `k − 1` completed ones before
/// it, covering `5(k−1)` to `5k` minutes (`Periods(12)` is [`Window::H1`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    /// A standard window.
    Std(Window),
    /// `2..=12` five-minute periods.
    Periods(u8),
}

impl Span {
    /// The smallest span covering `d` (1 s to 1 h), with the longest time it may cover.
    pub fn covering(d: std::time::Duration) -> Option<(Span, std::time::Duration)> {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let min = std::time::Duration::from_secs(60);
        match secs {
            0 => None,
            1..=60 => Some((Span::Std(Window::M1), min)),
            61..=300 => Some((Span::Std(Window::M5), 5 * min)),
            301..=3600 => {
                let k = secs.div_ceil(300);
                Some((
                    Span::Periods(k as u8),
                    std::time::Duration::from_secs(k * 300),
                ))
            }
            _ => None,
        }
    }
}

/// The slot number of a Unix time in nanoseconds.
pub fn slot_of(unix_nanos: u64) -> u64 {
    unix_nanos / 1_000_000_000 / SLOT_SECONDS
}

/// Counts and latencies of one slot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slot {
    /// Requests seen (entry spans received).
    pub requests: u64,
    /// Bad requests seen.
    pub errors: u64,
    /// Requests estimated from the sampled spans (each weighted by its adjusted count);
    /// equal to `requests` when nothing is sampled.
    pub est_requests: f64,
    /// Bad requests estimated likewise.
    pub est_errors: f64,
    /// Requests counted by request metrics (for trace coverage).
    pub metric_requests: u64,
    /// Latency histogram (bucket indices of the shared layout).
    pub hist: SparseHist,
}

impl Slot {
    fn is_empty(&self) -> bool {
        self.requests == 0 && self.metric_requests == 0
    }

    fn clear(&mut self) {
        self.requests = 0;
        self.errors = 0;
        self.est_requests = 0.0;
        self.est_errors = 0.0;
        self.metric_requests = 0;
        self.hist.clear();
    }

    /// Adds `other`'s counts and histogram.
    pub fn add(&mut self, other: &Slot) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.est_requests += other.est_requests;
        self.est_errors += other.est_errors;
        self.metric_requests = self.metric_requests.saturating_add(other.metric_requests);
        self.hist.merge(&other.hist);
    }

    /// Bytes allocated on the heap by this slot.
    pub fn heap_bytes(&self) -> usize {
        self.hist.heap_bytes()
    }
}

/// All windows of one series.
#[derive(Clone, Debug)]
pub struct Windows {
    cur_slot: u64,
    cur: Slot,
    ring0: VecDeque<Slot>,
    acc1: Slot,
    ring1: VecDeque<Slot>,
    acc2: Slot,
    ring2: VecDeque<Slot>,
    all: Slot,
    /// Last slot in which data was recorded; windows only change on rotation while data
    /// from the last hour is still inside them.
    last_data_slot: Option<u64>,
}

fn ring(n: usize) -> VecDeque<Slot> {
    (0..n).map(|_| Slot::default()).collect()
}

/// Moves the completed `slot` into the front of `ring` and gives `slot` the evicted slot's
/// allocation to fill next. Completed slots never change again, so they are trimmed to size.
fn push(ring: &mut VecDeque<Slot>, slot: &mut Slot) {
    if let Some(mut oldest) = ring.pop_back() {
        oldest.clear();
        std::mem::swap(&mut oldest, slot);
        oldest.hist.shrink_to_fit();
        ring.push_front(oldest);
    }
}

impl Windows {
    /// Empty windows whose current slot is `slot`.
    pub fn new(slot: u64) -> Self {
        Self {
            cur_slot: slot,
            cur: Slot::default(),
            ring0: ring(RING0),
            acc1: Slot::default(),
            ring1: ring(RING1),
            acc2: Slot::default(),
            ring2: ring(RING2),
            all: Slot::default(),
            last_data_slot: None,
        }
    }

    /// Records one request standing for `weight` requests (its adjusted count) in the
    /// current slot. The caller has advanced to the current slot.
    #[inline]
    pub fn record(&mut self, bad: bool, hist_index: u16, weight: f64) {
        self.cur.requests += 1;
        self.cur.errors += u64::from(bad);
        self.cur.est_requests += weight;
        if bad {
            self.cur.est_errors += weight;
        }
        self.cur.hist.record(hist_index, 1);
        self.last_data_slot = Some(self.cur_slot);
    }

    /// Adds requests counted by request metrics to the current slot.
    pub fn record_metric(&mut self, requests: u64) {
        self.cur.metric_requests = self.cur.metric_requests.saturating_add(requests);
        self.last_data_slot = Some(self.cur_slot);
    }

    /// Rotates up to `slot`. Returns whether any window's contents changed.
    pub fn advance(&mut self, slot: u64) -> bool {
        if slot <= self.cur_slot {
            return false;
        }
        let had_data = self
            .last_data_slot
            .is_some_and(|d| self.cur_slot.saturating_sub(d) < FULL_ROTATION);
        let steps = (slot - self.cur_slot).min(FULL_ROTATION);
        for _ in 0..steps {
            self.rotate_one();
        }
        self.cur_slot = slot;
        had_data
    }

    fn rotate_one(&mut self) {
        if !self.cur.is_empty() {
            self.acc1.add(&self.cur);
            self.all.add(&self.cur);
        }
        push(&mut self.ring0, &mut self.cur);
        self.cur_slot += 1;
        if self.cur_slot.is_multiple_of(SLOTS_PER_MINUTE) {
            if !self.acc1.is_empty() {
                self.acc2.add(&self.acc1);
            }
            push(&mut self.ring1, &mut self.acc1);
        }
        if self.cur_slot.is_multiple_of(SLOTS_PER_PERIOD) {
            push(&mut self.ring2, &mut self.acc2);
        }
    }

    /// The slots that make up `span`.
    fn parts(&self, span: Span) -> impl Iterator<Item = &Slot> {
        let (r0, a1, r1, a2, r2, all) = match span {
            Span::Std(Window::M1) => (RING0, false, 0, false, 0, false),
            Span::Std(Window::M5) => (0, true, RING1, false, 0, false),
            Span::Std(Window::H1) => (0, true, 0, true, RING2, false),
            Span::Std(Window::All) => (0, false, 0, false, 0, true),
            Span::Periods(k) => (0, true, 0, true, usize::from(k.max(1)) - 1, false),
        };
        std::iter::once(&self.cur)
            .chain(self.ring0.iter().take(r0))
            .chain(a1.then_some(&self.acc1))
            .chain(self.ring1.iter().take(r1))
            .chain(a2.then_some(&self.acc2))
            .chain(self.ring2.iter().take(r2))
            .chain(all.then_some(&self.all))
    }

    /// Sums `window` into `out` (cleared first).
    pub fn read(&self, window: Window, out: &mut Slot) {
        self.read_span(Span::Std(window), out);
    }

    /// Sums `span` into `out` (cleared first).
    pub fn read_span(&self, span: Span, out: &mut Slot) {
        let hists = self.sum_counts(span, out);
        merge_into(&mut out.hist, &hists);
    }

    /// Sums `window`'s counts into `out` (its histogram cleared, not filled) and writes the
    /// latency quantiles `qs` of the window to `q`: what [`Windows::read`] and then
    /// [`SparseHist::values_at_quantiles`] give, without building the merged histogram.
    pub fn read_quantiles(
        &self,
        window: Window,
        layout: &Layout,
        qs: &[f64],
        out: &mut Slot,
        q: &mut [Option<u64>],
    ) {
        let hists = self.sum_counts(Span::Std(window), out);
        out.hist.clear();
        quantiles_of(&hists, layout, qs, q);
    }

    /// Sums the counts of `span`'s slots into `out` and returns their histograms.
    fn sum_counts(&self, span: Span, out: &mut Slot) -> Vec<&SparseHist> {
        out.requests = 0;
        out.errors = 0;
        out.est_requests = 0.0;
        out.est_errors = 0.0;
        out.metric_requests = 0;
        let mut hists: Vec<&SparseHist> = Vec::with_capacity(24);
        for s in self.parts(span).filter(|s| !s.is_empty()) {
            out.requests = out.requests.saturating_add(s.requests);
            out.errors = out.errors.saturating_add(s.errors);
            out.est_requests += s.est_requests;
            out.est_errors += s.est_errors;
            out.metric_requests += s.metric_requests;
            hists.push(&s.hist);
        }
        hists
    }

    /// Bytes allocated on the heap by these windows.
    pub fn heap_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Slot>();
        let rings = (self.ring0.capacity() + self.ring1.capacity() + self.ring2.capacity()) * slot;
        rings
            + std::iter::once(&self.cur)
                .chain(&self.ring0)
                .chain(std::iter::once(&self.acc1))
                .chain(&self.ring1)
                .chain(std::iter::once(&self.acc2))
                .chain(&self.ring2)
                .chain(std::iter::once(&self.all))
                .map(Slot::heap_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(w: &Windows, window: Window) -> u64 {
        let mut s = Slot::default();
        w.read(window, &mut s);
        assert_eq!(
            s.hist.total(),
            s.requests,
            "histogram total matches requests"
        );
        s.requests
    }

    /// Records one request per slot for `n` slots starting at `start`, returning the end slot.
    fn one_per_slot(w: &mut Windows, start: u64, n: u64) -> u64 {
        for s in start..start + n {
            w.advance(s);
            w.record(false, 10, 1.0);
        }
        start + n - 1
    }

    #[test]
    fn windows_hold_what_they_promise() {
        // Start on a period boundary so the arithmetic is easy to follow.
        let start = 30 * 1000;
        let mut w = Windows::new(start);
        let last = one_per_slot(&mut w, start, 400);
        // 1m: current + 5 completed slots.
        assert_eq!(count(&w, Window::M1), 6);
        // 5m: current + completed slots of this minute + 4 completed minutes.
        let in_minute = (last % SLOTS_PER_MINUTE) + 1;
        assert_eq!(count(&w, Window::M5), in_minute + 4 * 6);
        // 1h: + this period's completed minutes + 11 completed periods.
        let in_period = (last % SLOTS_PER_PERIOD) + 1;
        assert_eq!(count(&w, Window::H1), in_period + 11 * 30);
        assert_eq!(count(&w, Window::All), 400);
    }

    #[test]
    fn idle_series_drains_except_all() {
        let mut w = Windows::new(100);
        w.record(true, 3, 1.0);
        assert_eq!(count(&w, Window::M1), 1);
        assert!(w.advance(106));
        assert_eq!(count(&w, Window::M1), 0, "gone from 1m after 60 s");
        assert_eq!(count(&w, Window::M5), 1);
        w.advance(100 + 400);
        assert_eq!(count(&w, Window::H1), 0);
        assert_eq!(count(&w, Window::All), 1);
        assert!(!w.advance(100 + 5000), "nothing left to change");
        let mut s = Slot::default();
        w.read(Window::All, &mut s);
        assert_eq!((s.requests, s.errors), (1, 1));
    }

    #[test]
    fn long_gap_is_bounded_work() {
        let mut w = Windows::new(0);
        w.record(false, 1, 1.0);
        w.advance(u64::MAX / 2);
        assert_eq!(count(&w, Window::H1), 0);
        assert_eq!(count(&w, Window::All), 1);
        w.record(false, 1, 1.0);
        assert_eq!(count(&w, Window::M1), 1);
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let mut w = Windows::new(50);
        assert!(!w.advance(40));
        w.record(false, 1, 1.0);
        assert_eq!(count(&w, Window::M1), 1);
    }

    #[test]
    fn periods_compose_like_the_hour() {
        let start = 30 * 1000;
        let mut w = Windows::new(start);
        let last = one_per_slot(&mut w, start, 400);
        let span = |k| {
            let mut s = Slot::default();
            w.read_span(Span::Periods(k), &mut s);
            s.requests
        };
        let in_period = (last % SLOTS_PER_PERIOD) + 1;
        assert_eq!(span(2), in_period + 30, "this period + one completed");
        assert_eq!(span(12), count(&w, Window::H1));
        let d = |s| std::time::Duration::from_secs(s);
        assert_eq!(Span::covering(d(600)), Some((Span::Periods(2), d(600))));
        assert_eq!(Span::covering(d(601)), Some((Span::Periods(3), d(900))));
        assert_eq!(
            Span::covering(d(300)),
            Some((Span::Std(Window::M5), d(300)))
        );
        assert_eq!(Span::covering(d(3600)), Some((Span::Periods(12), d(3600))));
        assert_eq!(Span::covering(d(3601)), None);
    }

    #[test]
    fn quantiles_read_straight_from_the_slots_match_the_merged_histogram() {
        let layout = Layout::new(2).unwrap();
        let qs = [0.0, 0.5, 0.9, 0.99, 1.0];
        let start = 30 * 1000;
        let mut w = Windows::new(start);
        // Clustered and far-off latencies, so both ways of summing are taken.
        let mut v = 12_345_u64;
        for slot in start..start + 400 {
            w.advance(slot);
            for k in 0..(slot % 7) * 5 {
                v = v
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let ns = if k == 0 {
                    1 + (v >> 20)
                } else {
                    40_000_000 + (v >> 40)
                };
                w.record(false, layout.index_of(ns), 1.0);
            }
        }
        for window in Window::ALL {
            let mut merged = Slot::default();
            w.read(window, &mut merged);
            let mut want = [None; 5];
            merged.hist.values_at_quantiles(&layout, &qs, &mut want);
            let (mut counts, mut got) = (Slot::default(), [None; 5]);
            w.read_quantiles(window, &layout, &qs, &mut counts, &mut got);
            assert_eq!(got, want, "{window:?}");
            assert!(want[0].is_some());
            assert_eq!(counts.requests, merged.requests);
            assert!(counts.hist.is_empty());
        }
    }

    #[test]
    fn window_names_round_trip() {
        for w in Window::ALL {
            assert_eq!(Window::parse(w.name()), Some(w));
        }
        assert_eq!(Window::parse("2h"), None);
    }
}
