//! Makes every start of a cumulative series visible to the receiver: the first time this
//! process writes a counter or histogram series, its samples are preceded by a zero at the
//! time the series was last known not to exist here (the previous export, or the process
//! start). This is what Prometheus itself does for created timestamps.
//!
//! Without it, a restarted agent whose counter climbs past its value before the restart
//! (50 before, 51 after) shows Prometheus no reset, and `rate()`/`increase()` drop the
//! first life's requests; a series that appears mid-run starts at its first value, which
//! `increase()` never counts. With the zero, `increase()` over any range holding both
//! lives equals the requests of both, and Prometheus extrapolates no further back than the
//! zero.
//!
//! Owns only that bookkeeping: the set of series written by the previous export.

use super::prom;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Remembers which cumulative series the previous export wrote, and when it ran.
#[derive(Clone, Debug)]
pub struct Starts {
    written: HashSet<u64>,
    last_ms: i64,
    /// False for bookkeeping resumed mid-run: the next export only records.
    zeros: bool,
}

/// True for a series whose value only grows while the process runs: a `_total` counter,
/// the parts of a classic histogram (`_bucket`, `_sum`, `_count`), or a native histogram.
pub fn is_cumulative(series: &prom::TimeSeries) -> bool {
    if !series.histograms.is_empty() {
        return true;
    }
    let name = series
        .labels
        .iter()
        .find(|l| l.name == "__name__")
        .map_or("", |l| l.value.as_str());
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn key(labels: &[prom::Label]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for l in labels {
        l.name.hash(&mut h);
        l.value.hash(&mut h);
    }
    h.finish()
}

impl Starts {
    /// Nothing written yet by a process that started at `started_ms` (Unix milliseconds).
    pub fn new(started_ms: i64) -> Self {
        Self {
            written: HashSet::new(),
            last_ms: started_ms,
            zeros: true,
        }
    }

    /// Nothing written yet by a process whose pipeline started at `started_unix_nanos`
    /// (0: unknown, taken as `now_ms`), at most `now_ms`.
    pub fn since_start(started_unix_nanos: u64, now_ms: i64) -> Self {
        let started_ms = match started_unix_nanos {
            0 => now_ms,
            s => i64::try_from(s / 1_000_000).unwrap_or(i64::MAX).min(now_ms),
        };
        Self::new(started_ms)
    }

    /// Bookkeeping begun again mid-run (after an encoding failed), when what was written
    /// before is unknown: the next export puts no zeros (they could fall before samples
    /// already written, which the receiver refuses) and only records its series.
    pub fn resumed() -> Self {
        Self {
            written: HashSet::new(),
            last_ms: i64::MIN,
            zeros: false,
        }
    }

    /// Puts a zero sample (or an empty native histogram) before the samples of every
    /// cumulative series in `series` that the previous export did not write, at the
    /// previous export's time (at least 1 ms before `now_ms`), and remembers this export.
    /// A series that disappears (expired) and comes back gets a zero again: it starts
    /// again from nothing.
    pub fn mark(&mut self, series: &mut [prom::TimeSeries], now_ms: i64) {
        let at = self.last_ms.min(now_ms - 1);
        let mut written = HashSet::with_capacity(self.written.len().max(series.len()));
        for s in series.iter_mut().filter(|s| is_cumulative(s)) {
            let k = key(&s.labels);
            written.insert(k);
            if !self.zeros || self.written.contains(&k) {
                continue;
            }
            if let Some(first) = s.histograms.first() {
                let zero = prom::Histogram {
                    count: Some(prom::histogram::Count::CountInt(0)),
                    sum: 0.0,
                    schema: first.schema,
                    zero_threshold: first.zero_threshold,
                    zero_count: Some(prom::histogram::ZeroCount::ZeroCountInt(0)),
                    timestamp: at,
                    ..prom::Histogram::default()
                };
                s.histograms.insert(0, zero);
            } else {
                s.samples.insert(
                    0,
                    prom::Sample {
                        value: 0.0,
                        timestamp: at,
                    },
                );
            }
        }
        self.written = written;
        self.last_ms = now_ms;
        self.zeros = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, node: &str, value: f64, at: i64) -> prom::TimeSeries {
        prom::TimeSeries {
            labels: vec![
                prom::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                prom::Label {
                    name: "node".into(),
                    value: node.into(),
                },
            ],
            samples: vec![prom::Sample {
                value,
                timestamp: at,
            }],
            ..prom::TimeSeries::default()
        }
    }

    fn samples(s: &prom::TimeSeries) -> Vec<(f64, i64)> {
        s.samples.iter().map(|p| (p.value, p.timestamp)).collect()
    }

    #[test]
    fn counters_get_a_zero_at_their_start_and_gauges_do_not() {
        let mut starts = Starts::new(1_000);
        let mut first = vec![
            series("sli_requests_total", "a", 50.0, 16_000),
            series("sli_latency_seconds_bucket", "a", 3.0, 16_000),
            series("sli_latency_seconds_sum", "a", 0.5, 16_000),
            series("sli_latency_seconds_count", "a", 3.0, 16_000),
            series("sli_success_ratio", "a", 0.9, 16_000),
        ];
        starts.mark(&mut first, 16_000);
        for s in &first[..4] {
            assert_eq!(samples(s)[0], (0.0, 1_000), "{:?}", s.labels);
            assert_eq!(s.samples.len(), 2);
        }
        assert_eq!(samples(&first[4]), vec![(0.9, 16_000)]);

        // The next export: the same series go as they are; a new one starts at the
        // previous export's time.
        let mut second = vec![
            series("sli_requests_total", "a", 60.0, 31_000),
            series("sli_requests_total", "b", 7.0, 31_000),
        ];
        starts.mark(&mut second, 31_000);
        assert_eq!(samples(&second[0]), vec![(60.0, 31_000)]);
        assert_eq!(samples(&second[1]), vec![(0.0, 16_000), (7.0, 31_000)]);

        // "a" is gone for one export (expired) and comes back: it starts again.
        let mut third = vec![series("sli_requests_total", "b", 9.0, 46_000)];
        starts.mark(&mut third, 46_000);
        assert_eq!(samples(&third[0]), vec![(9.0, 46_000)]);
        let mut fourth = vec![series("sli_requests_total", "a", 2.0, 61_000)];
        starts.mark(&mut fourth, 61_000);
        assert_eq!(samples(&fourth[0]), vec![(0.0, 46_000), (2.0, 61_000)]);
    }

    #[test]
    fn the_start_comes_from_the_pipeline_clock_or_now() {
        let mut a = Starts::since_start(3_000_000_000, 9_000);
        let mut s = vec![series("sli_requests_total", "a", 1.0, 9_000)];
        a.mark(&mut s, 9_000);
        assert_eq!(samples(&s[0])[0], (0.0, 3_000));
        // Unknown (0): as late as possible, still before the value.
        let mut b = Starts::since_start(0, 9_000);
        let mut s = vec![series("sli_requests_total", "a", 1.0, 9_000)];
        b.mark(&mut s, 9_000);
        assert_eq!(samples(&s[0])[0], (0.0, 8_999));
    }

    #[test]
    fn the_zero_is_always_before_the_value() {
        let mut starts = Starts::new(5_000);
        let mut s = vec![series("sli_errors_total", "a", 1.0, 5_000)];
        starts.mark(&mut s, 5_000);
        assert_eq!(samples(&s[0]), vec![(0.0, 4_999), (1.0, 5_000)]);
    }

    #[test]
    fn resumed_bookkeeping_records_first_and_marks_only_new_series_after() {
        let mut starts = Starts::resumed();
        let mut s = vec![series("sli_requests_total", "a", 50.0, 16_000)];
        starts.mark(&mut s, 16_000);
        assert_eq!(samples(&s[0]), vec![(50.0, 16_000)]);
        let mut s = vec![
            series("sli_requests_total", "a", 51.0, 31_000),
            series("sli_requests_total", "b", 1.0, 31_000),
        ];
        starts.mark(&mut s, 31_000);
        assert_eq!(samples(&s[0]), vec![(51.0, 31_000)]);
        assert_eq!(samples(&s[1]), vec![(0.0, 16_000), (1.0, 31_000)]);
    }

    #[test]
    fn native_histograms_start_with_an_empty_one() {
        let mut starts = Starts::new(1_000);
        let mut s = vec![prom::TimeSeries {
            labels: vec![prom::Label {
                name: "__name__".into(),
                value: "sli_latency_seconds".into(),
            }],
            histograms: vec![prom::Histogram {
                count: Some(prom::histogram::Count::CountInt(4)),
                schema: 8,
                timestamp: 16_000,
                ..prom::Histogram::default()
            }],
            ..prom::TimeSeries::default()
        }];
        starts.mark(&mut s, 16_000);
        let h = &s[0].histograms;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].timestamp, 1_000);
        assert_eq!(h[0].schema, 8);
        assert_eq!(h[0].count, Some(prom::histogram::Count::CountInt(0)));
        assert_eq!(h[1].timestamp, 16_000);
    }
}
