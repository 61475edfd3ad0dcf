//! From a [`View`] (and the SLO statuses) to remote-write time series, and from those to
//! request bodies. Plain synchronous code with no I/O, so it is tested without a runtime.
//!
//! Every series carries `__name__`, its own non-empty labels and the external labels (a
//! series' own label wins over an external one of the same name, as in Prometheus), sorted
//! by name, and one sample (or one native histogram) at the export timestamp. The names and
//! values are those of `/metrics`.

use super::prom;
use crate::export::delivery::Payload;
use crate::pipeline::snapshot::View;
use crate::sli::exemplar::Exemplar;
use crate::sli::series::SeriesSnapshot;
use crate::sli::window::Window;
use crate::slo::def::{duration_name, Severity, SloDef};
use crate::slo::status::Status;
use bytes::Bytes;
use prost::Message;

/// Most series in one write request; larger exports are split into several requests, sent
/// in parallel.
pub const MAX_SERIES_PER_REQUEST: usize = 2000;

/// Native histogram schema used when converting the exported buckets: 2^8 buckets per
/// power of two, each about 0.27% wide (the finest schema Prometheus accepts).
pub const NATIVE_SCHEMA: i32 = 8;

/// What the series of a view look like: their label names and exported bucket bounds.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    /// Label names of a series' values: service, feature, then dimensions.
    pub label_names: &'a [String],
    /// Upper bounds of the exported latency buckets, nanoseconds, ascending (the series'
    /// last bucket is `+Inf`).
    pub bounds_ns: &'a [u64],
}

/// Series being built: the export timestamp and the external labels they all get.
struct Out<'a> {
    series: Vec<prom::TimeSeries>,
    external: &'a [(String, String)],
    now_ms: i64,
}

impl Out<'_> {
    fn labels(&self, name: &str, own: &[(&str, &str)]) -> Vec<prom::Label> {
        let mut labels = Vec::with_capacity(1 + own.len() + self.external.len());
        labels.push(prom::Label {
            name: "__name__".into(),
            value: name.into(),
        });
        for (n, v) in own {
            if !v.is_empty() && !labels.iter().any(|l| l.name == *n) {
                labels.push(prom::Label {
                    name: (*n).into(),
                    value: (*v).into(),
                });
            }
        }
        for (n, v) in self.external {
            if !v.is_empty() && !labels.iter().any(|l| l.name == *n) {
                labels.push(prom::Label {
                    name: n.clone(),
                    value: v.clone(),
                });
            }
        }
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels
    }

    fn sample(&mut self, name: &str, own: &[(&str, &str)], value: f64) {
        let labels = self.labels(name, own);
        self.series.push(prom::TimeSeries {
            labels,
            samples: vec![prom::Sample {
                value,
                timestamp: self.now_ms,
            }],
            ..prom::TimeSeries::default()
        });
    }

    fn histogram(&mut self, name: &str, own: &[(&str, &str)], h: prom::Histogram) {
        let labels = self.labels(name, own);
        self.series.push(prom::TimeSeries {
            labels,
            histograms: vec![h],
            ..prom::TimeSeries::default()
        });
    }

    /// Attaches `examples` (request, value) to the series written last.
    fn exemplars<'e>(&mut self, examples: impl Iterator<Item = (&'e Exemplar, f64)>) {
        if let Some(s) = self.series.last_mut() {
            s.exemplars
                .extend(examples.map(|(e, value)| exemplar(e, value)));
        }
    }
}

/// A remote-write exemplar of request `e`: its trace and span ids, `value`, its end time.
pub fn exemplar(e: &Exemplar, value: f64) -> prom::Exemplar {
    prom::Exemplar {
        labels: vec![
            prom::Label {
                name: "span_id".into(),
                value: e.span_id_hex(),
            },
            prom::Label {
                name: "trace_id".into(),
                value: e.trace_id_hex(),
            },
        ],
        value,
        timestamp: i64::try_from(e.end_unix_nanos / 1_000_000).unwrap_or(i64::MAX),
    }
}

/// A number as Prometheus writes it in a label (`0.25`, `+Inf`), as `/metrics` does.
fn le(bound_ns: Option<&u64>) -> String {
    bound_ns.map_or_else(|| "+Inf".to_string(), |b| format!("{}", *b as f64 / 1e9))
}

/// The series' own labels: name and value pairs, empty values left out.
fn own<'a>(names: &'a [String], s: &'a SeriesSnapshot) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .zip(s.labels.iter())
        .filter(|(_, v)| !v.is_empty())
        .map(|(n, v)| (n.as_str(), &**v))
        .collect()
}

/// Encodes the SLI series of `view` and the `slo_*` gauges of `slos`, every one with one
/// sample (or histogram) at `now_ms` and the `external` labels (sorted by name).
/// `native` sends each latency histogram as one native histogram (see
/// [`native_histogram`]) instead of classic `_bucket`/`_sum`/`_count` series.
pub fn encode(
    view: &View,
    shape: Shape<'_>,
    slos: &[(SloDef, Status)],
    now_ms: i64,
    external: &[(String, String)],
    native: bool,
) -> Vec<prom::TimeSeries> {
    encode_with(view, shape, slos, now_ms, external, native, false)
}

/// [`encode`], with `exemplars`: each `sli_errors_total` series carries the latest bad
/// request (value 1), each `_bucket` series its bucket's example (value: its duration),
/// and a native histogram every bucket's example.
pub fn encode_with(
    view: &View,
    shape: Shape<'_>,
    slos: &[(SloDef, Status)],
    now_ms: i64,
    external: &[(String, String)],
    native: bool,
    exemplars: bool,
) -> Vec<prom::TimeSeries> {
    let per_series = if native { 4 } else { shape.bounds_ns.len() + 8 };
    let mut out = Out {
        series: Vec::with_capacity(view.series.len() * per_series + slos.len() * 12),
        external,
        now_ms,
    };
    for s in &view.series {
        let labels = own(shape.label_names, s);
        out.sample("sli_requests_total", &labels, s.est_requests_total);
        out.sample("sli_errors_total", &labels, s.est_errors_total);
        let examples = s.exemplars.as_ref().filter(|_| exemplars);
        out.exemplars(
            examples
                .and_then(|x| x.latest_bad())
                .map(|e| (e, 1.0))
                .into_iter(),
        );
        let sum = s.duration_sum_ns as f64 / 1e9;
        let duration = |e: &Exemplar| e.duration_ns as f64 / 1e9;
        if native {
            let h = native_histogram(&s.buckets, shape.bounds_ns, sum, now_ms);
            out.histogram("sli_latency_seconds", &labels, h);
            let all = examples.into_iter().flat_map(|x| x.by_bucket().flatten());
            out.exemplars(all.map(|e| (e, duration(e))));
        } else {
            let mut cum = 0u64;
            let mut by_bucket = examples.map(|x| x.by_bucket());
            for (i, c) in s.buckets.iter().enumerate() {
                cum += c;
                let le = le(shape.bounds_ns.get(i));
                let mut with_le = labels.clone();
                with_le.push(("le", &le));
                out.sample("sli_latency_seconds_bucket", &with_le, cum as f64);
                let e = by_bucket.as_mut().and_then(|x| x.next().flatten());
                out.exemplars(e.map(|e| (e, duration(e))).into_iter());
            }
            out.sample("sli_latency_seconds_sum", &labels, sum);
            out.sample(
                "sli_latency_seconds_count",
                &labels,
                s.requests_total as f64,
            );
        }
        for w in Window::ALL {
            let ws = &s.windows[w.index()];
            if ws.requests == 0 {
                continue;
            }
            let ratio = if ws.est_requests > 0.0 {
                ((ws.est_requests - ws.est_errors) / ws.est_requests).clamp(0.0, 1.0)
            } else {
                0.0
            };
            let mut l = labels.clone();
            l.push(("window", w.name()));
            out.sample("sli_success_ratio", &l, ratio);
        }
    }
    slo_gauges(&mut out, slos);
    out.series
}

fn slo_gauges(out: &mut Out<'_>, slos: &[(SloDef, Status)]) {
    for (d, s) in slos {
        let mut l: Vec<(&str, &str)> = vec![("slo", &d.name)];
        l.extend(d.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out.sample("slo_objective_ratio", &l, d.objective);
        if let Some(v) = s.sli {
            out.sample("slo_sli_ratio", &l, v);
        }
        if let Some(v) = s.budget_remaining {
            out.sample("slo_error_budget_remaining_ratio", &l, v);
        }
        out.sample("slo_window_requests", &l, s.window.total as f64);
        out.sample("slo_window_bad_requests", &l, s.window.bad as f64);
        for (w, b) in &s.burn_rates {
            if let Some(b) = b {
                let name = duration_name(*w);
                let mut lw = l.clone();
                lw.push(("window", &name));
                out.sample("slo_burn_rate", &lw, *b);
            }
        }
        for sev in [Severity::Page, Severity::Ticket] {
            let mut ls = l.clone();
            ls.push(("severity", sev.name()));
            let firing = s.firing.contains(&sev);
            out.sample("slo_alert_active", &ls, f64::from(u8::from(firing)));
        }
        let ok = s.data_sufficient();
        out.sample("slo_data_sufficient", &l, f64::from(u8::from(ok)));
    }
}

/// Index of the exponential bucket (schema [`NATIVE_SCHEMA`]) holding `v` > 0: bucket `k`
/// spans `(2^((k-1)/2^schema), 2^(k/2^schema)]`.
fn bucket_index(v: f64) -> i32 {
    let scale = f64::from(1u32 << NATIVE_SCHEMA);
    (v.log2() * scale).ceil() as i32
}

/// A native histogram from the exported buckets (non-cumulative counts, the last one
/// `+Inf`): each bucket's count goes into the exponential bucket holding its upper bound,
/// so every observation reads as its bucket's upper bound rounded up by less than 0.27%
/// (schema 8); observations above the largest bound go into the exponential bucket just
/// above it (a classic histogram cannot place them either). A bound of 0 maps to the zero
/// bucket. Count and sum are exact.
pub fn native_histogram(
    buckets: &[u64],
    bounds_ns: &[u64],
    sum: f64,
    now_ms: i64,
) -> prom::Histogram {
    let mut zero = 0u64;
    // (index, count), ascending index.
    let mut cells: Vec<(i32, u64)> = Vec::with_capacity(buckets.len());
    let mut last: Option<i32> = None;
    for (i, &c) in buckets.iter().enumerate() {
        let idx = match bounds_ns.get(i) {
            Some(0) => {
                zero += c;
                continue;
            }
            Some(&b) => bucket_index(b as f64 / 1e9),
            // +Inf: just above the largest finite bound.
            None => last.map_or(0, |l| l + 1),
        };
        let idx = last.map_or(idx, |l| idx.max(l));
        last = Some(idx);
        if c == 0 {
            continue;
        }
        match cells.last_mut() {
            Some((k, n)) if *k == idx => *n += c,
            _ => cells.push((idx, c)),
        }
    }
    let mut spans: Vec<prom::BucketSpan> = Vec::new();
    let mut deltas = Vec::with_capacity(cells.len());
    let (mut prev_idx, mut prev_count): (Option<i32>, i64) = (None, 0);
    for (idx, c) in &cells {
        match (prev_idx, spans.last_mut()) {
            (Some(p), Some(span)) if *idx == p + 1 => span.length += 1,
            (Some(p), _) => spans.push(prom::BucketSpan {
                offset: idx - p - 1,
                length: 1,
            }),
            (None, _) => spans.push(prom::BucketSpan {
                offset: *idx,
                length: 1,
            }),
        }
        let c = i64::try_from(*c).unwrap_or(i64::MAX);
        deltas.push(c - prev_count);
        prev_count = c;
        prev_idx = Some(*idx);
    }
    let count = zero + cells.iter().map(|(_, c)| c).sum::<u64>();
    prom::Histogram {
        count: Some(prom::histogram::Count::CountInt(count)),
        sum,
        schema: NATIVE_SCHEMA,
        zero_threshold: 0.0,
        zero_count: Some(prom::histogram::ZeroCount::ZeroCountInt(zero)),
        positive_spans: spans,
        positive_deltas: deltas,
        reset_hint: prom::histogram::ResetHint::Unknown as i32,
        timestamp: now_ms,
        ..prom::Histogram::default()
    }
}

/// Splits `series` into write requests of at most [`MAX_SERIES_PER_REQUEST`] series, each
/// protobuf-encoded and snappy-compressed (block format) into one payload whose items are
/// its samples and histograms.
pub fn payloads(series: Vec<prom::TimeSeries>) -> Vec<Payload> {
    let mut out = Vec::with_capacity(series.len().div_ceil(MAX_SERIES_PER_REQUEST));
    let mut it = series.into_iter().peekable();
    while it.peek().is_some() {
        let chunk: Vec<prom::TimeSeries> = it.by_ref().take(MAX_SERIES_PER_REQUEST).collect();
        let items = chunk
            .iter()
            .map(|s| (s.samples.len() + s.histograms.len()) as u64)
            .sum();
        let req = prom::WriteRequest {
            timeseries: chunk,
            metadata: Vec::new(),
        };
        out.push(Payload {
            body: Bytes::from(compress(&req.encode_to_vec())),
            items,
            signal: None,
            gzipped: false,
        });
    }
    out
}

/// Snappy block format, as remote write uses (not the framed stream format).
pub fn compress(raw: &[u8]) -> Vec<u8> {
    // Compressing into a buffer of `max_compress_len` bytes cannot fail, but keep the data
    // uncompressed-but-framed-correctly path out: an empty body is refused upstream.
    let mut body = snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default();
    // The encoder allocates for the worst case (about the input's size) and only shortens
    // the vector: a queued body would otherwise hold ~10× the bytes it sends.
    body.shrink_to_fit();
    body
}

/// Decodes a request body (for tests and debugging).
pub fn decode(body: &[u8]) -> Result<prom::WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("snappy: {e}"))?;
    prom::WriteRequest::decode(raw.as_slice()).map_err(|e| format!("protobuf: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sli::series::WindowSnapshot;
    use std::sync::Arc;

    fn series(labels: &[&str], buckets: &[u64], errors: u64) -> Arc<SeriesSnapshot> {
        let n: u64 = buckets.iter().sum();
        Arc::new(SeriesSnapshot {
            labels: labels.iter().map(|l| Box::from(*l)).collect(),
            requests_total: n,
            errors_total: errors,
            est_requests_total: n as f64,
            est_errors_total: errors as f64,
            duration_sum_ns: 1_500_000_000,
            buckets: buckets.into(),
            windows: [
                WindowSnapshot {
                    requests: n,
                    errors,
                    est_requests: n as f64,
                    est_errors: errors as f64,
                    ..WindowSnapshot::default()
                },
                WindowSnapshot::default(),
                WindowSnapshot::default(),
                WindowSnapshot::default(),
            ],
            unattributed: Default::default(),
            metric_requests_total: 0,
            window_hists: None,
            overflow: false,
            exemplars: None,
        })
    }

    fn names() -> Vec<String> {
        ["service", "feature", "region"].map(String::from).to_vec()
    }

    const BOUNDS: [u64; 3] = [100_000_000, 250_000_000, 1_000_000_000];

    fn view() -> View {
        View {
            series: vec![
                series(&["cart", "GET /cart", ""], &[1, 2, 0, 1], 1),
                series(&["pay", "POST /pay", "eu"], &[0, 0, 3, 0], 0),
            ],
            ..View::default()
        }
    }

    fn external() -> Vec<(String, String)> {
        vec![("node".into(), "n1".into())]
    }

    fn encoded(native: bool) -> Vec<prom::TimeSeries> {
        let names = names();
        let shape = Shape {
            label_names: &names,
            bounds_ns: &BOUNDS,
        };
        encode(&view(), shape, &[], 1_700_000_000_000, &external(), native)
    }

    fn label<'a>(s: &'a prom::TimeSeries, name: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    fn find<'a>(
        all: &'a [prom::TimeSeries],
        name: &str,
        extra: &[(&str, &str)],
    ) -> Vec<&'a prom::TimeSeries> {
        all.iter()
            .filter(|s| label(s, "__name__") == Some(name))
            .filter(|s| extra.iter().all(|(k, v)| label(s, k) == Some(*v)))
            .collect()
    }

    #[test]
    fn labels_are_sorted_named_and_carry_external_labels() {
        let all = encoded(false);
        assert!(!all.is_empty());
        for s in &all {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "sorted");
            assert_eq!(names[0], "__name__");
            assert_eq!(label(s, "node"), Some("n1"), "external label on {names:?}");
            assert!(
                s.labels.iter().all(|l| !l.value.is_empty()),
                "no empty label"
            );
            assert_eq!(s.samples.len(), 1);
            assert_eq!(s.samples[0].timestamp, 1_700_000_000_000);
        }
        let cart = find(&all, "sli_requests_total", &[("service", "cart")]);
        assert_eq!(cart.len(), 1);
        assert_eq!(label(cart[0], "region"), None, "empty dimension dropped");
        assert_eq!(cart[0].samples[0].value, 4.0);
        let pay = find(&all, "sli_requests_total", &[("region", "eu")]);
        assert_eq!(label(pay[0], "feature"), Some("POST /pay"));
        let errs = find(&all, "sli_errors_total", &[("service", "cart")]);
        assert_eq!(errs[0].samples[0].value, 1.0);
        let ratio = find(
            &all,
            "sli_success_ratio",
            &[("service", "cart"), ("window", "1m")],
        );
        assert_eq!(ratio[0].samples[0].value, 0.75);
    }

    #[test]
    fn a_series_label_wins_over_an_external_one() {
        let names = names();
        let shape = Shape {
            label_names: &names,
            bounds_ns: &BOUNDS,
        };
        let ext = vec![("region".to_string(), "ext".to_string())];
        let all = encode(&view(), shape, &[], 0, &ext, false);
        let pay = find(&all, "sli_requests_total", &[("service", "pay")]);
        assert_eq!(label(pay[0], "region"), Some("eu"));
        let cart = find(&all, "sli_requests_total", &[("service", "cart")]);
        assert_eq!(label(cart[0], "region"), Some("ext"));
    }

    #[test]
    fn classic_buckets_are_cumulative() {
        let all = encoded(false);
        let buckets = find(&all, "sli_latency_seconds_bucket", &[("service", "cart")]);
        let got: Vec<(&str, f64)> = buckets
            .iter()
            .map(|s| (label(s, "le").expect("le"), s.samples[0].value))
            .collect();
        assert_eq!(
            got,
            vec![("0.1", 1.0), ("0.25", 3.0), ("1", 3.0), ("+Inf", 4.0)]
        );
        let count = find(&all, "sli_latency_seconds_count", &[("service", "cart")]);
        assert_eq!(count[0].samples[0].value, 4.0);
        let sum = find(&all, "sli_latency_seconds_sum", &[("service", "cart")]);
        assert_eq!(sum[0].samples[0].value, 1.5);
        assert!(find(&all, "sli_latency_seconds", &[]).is_empty());
    }

    #[test]
    fn native_mode_sends_one_histogram_per_series() {
        let all = encoded(true);
        assert!(find(&all, "sli_latency_seconds_bucket", &[]).is_empty());
        let h = find(&all, "sli_latency_seconds", &[("service", "cart")]);
        assert_eq!(h.len(), 1);
        assert!(h[0].samples.is_empty());
        let h = &h[0].histograms[0];
        assert_eq!(h.count, Some(prom::histogram::Count::CountInt(4)));
        assert_eq!(h.sum, 1.5);
        assert_eq!(h.schema, NATIVE_SCHEMA);
        assert_eq!(h.timestamp, 1_700_000_000_000);
    }

    /// Expands spans and deltas into (upper bound, count) pairs.
    fn expand(h: &prom::Histogram) -> Vec<(f64, i64)> {
        let mut out = Vec::new();
        let mut idx = 0i32;
        let mut count = 0i64;
        let mut d = h.positive_deltas.iter();
        // The first offset is an index; later ones count from the bucket after the
        // previous span.
        for span in &h.positive_spans {
            idx += span.offset;
            for _ in 0..span.length {
                count += d.next().expect("delta");
                let upper = 2f64.powf(f64::from(idx) / f64::from(1u32 << h.schema));
                out.push((upper, count));
                idx += 1;
            }
        }
        out
    }

    #[test]
    fn native_buckets_sit_just_above_the_exported_bounds() {
        let h = native_histogram(&[1, 2, 0, 1], &BOUNDS, 1.5, 0);
        let cells = expand(&h);
        assert_eq!(cells.len(), 3, "{cells:?}");
        let bounds = [0.1, 0.25];
        for ((upper, _), b) in cells.iter().zip(bounds) {
            assert!(*upper >= b && *upper < b * 1.003, "{upper} vs {b}");
        }
        assert_eq!(cells.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1, 2, 1]);
        // The +Inf bucket sits just above the largest bound (1s).
        assert!(cells[2].0 > 1.0 && cells[2].0 < 1.003, "{cells:?}");
        // 1 is an exact boundary: index 0.
        assert_eq!(bucket_index(1.0), 0);
        assert_eq!(bucket_index(0.5), -256);
    }

    #[test]
    fn native_zero_bound_and_empty_histograms() {
        let h = native_histogram(&[2, 0, 0], &[0, 1_000_000_000], 0.0, 0);
        assert_eq!(
            h.zero_count,
            Some(prom::histogram::ZeroCount::ZeroCountInt(2))
        );
        assert_eq!(h.count, Some(prom::histogram::Count::CountInt(2)));
        assert!(h.positive_spans.is_empty());
        let h = native_histogram(&[0, 0, 0, 0], &BOUNDS, 0.0, 0);
        assert_eq!(h.count, Some(prom::histogram::Count::CountInt(0)));
        assert!(h.positive_deltas.is_empty());
    }

    #[test]
    fn large_exports_are_split_and_round_trip_through_snappy() {
        let n = MAX_SERIES_PER_REQUEST * 2 + 5;
        let series: Vec<prom::TimeSeries> = (0..n)
            .map(|i| prom::TimeSeries {
                labels: vec![prom::Label {
                    name: "__name__".into(),
                    value: format!("m{i}"),
                }],
                samples: vec![prom::Sample {
                    value: i as f64,
                    timestamp: 1,
                }],
                ..prom::TimeSeries::default()
            })
            .collect();
        let payloads = payloads(series.clone());
        assert_eq!(payloads.len(), 3);
        assert_eq!(payloads.iter().map(|p| p.items).sum::<u64>(), n as u64);
        let mut back = Vec::new();
        for p in &payloads {
            let req = decode(&p.body).expect("decodes");
            assert!(req.timeseries.len() <= MAX_SERIES_PER_REQUEST);
            back.extend(req.timeseries);
        }
        assert_eq!(back, series);
        // Snappy block format: the body starts with the uncompressed length as a varint.
        let raw = prom::WriteRequest {
            timeseries: series[..1].to_vec(),
            metadata: Vec::new(),
        }
        .encode_to_vec();
        let body = compress(&raw);
        assert_eq!(usize::from(body[0]), raw.len());
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy"),
            raw
        );
    }

    #[test]
    fn exemplars_on_errors_buckets_and_native_histograms() {
        use crate::sli::classify::Reason;
        use crate::sli::exemplar::Exemplars;
        let ex = |n: u8, ms: u64, reason: Reason| Exemplar {
            trace_id: [n; 16],
            span_id: [n; 8],
            duration_ns: ms * 1_000_000,
            end_unix_nanos: 1_700_000_000_123_000_000,
            reason,
        };
        let mut x = Exemplars::new(4);
        x.record(0, ex(1, 50, Reason::NONE));
        x.record(2, ex(2, 600, Reason::http(503)));
        let mut s = (*series(&["cart", "GET /cart", ""], &[1, 0, 1, 0], 1)).clone();
        s.exemplars = Some(Arc::new(x));
        let view = View {
            series: vec![Arc::new(s)],
            ..View::default()
        };
        let names = names();
        let shape = Shape {
            label_names: &names,
            bounds_ns: &BOUNDS,
        };
        let name = |t: &prom::TimeSeries| {
            t.labels
                .iter()
                .find(|l| l.name == "__name__")
                .map(|l| l.value.clone())
                .unwrap_or_default()
        };
        type Ids = Vec<(String, f64, i64)>;
        let ids = |t: &prom::TimeSeries| -> Ids {
            t.exemplars
                .iter()
                .map(|e| (e.labels[1].value.clone(), e.value, e.timestamp))
                .collect()
        };
        let classic = encode_with(&view, shape, &[], 1, &[], false, true);
        let with: Vec<(String, Ids)> = classic
            .iter()
            .filter(|t| !t.exemplars.is_empty())
            .map(|t| (name(t), ids(t)))
            .collect();
        let t = 1_700_000_000_123;
        assert_eq!(
            with,
            vec![
                (
                    "sli_errors_total".to_string(),
                    vec![("02".repeat(16), 1.0, t)]
                ),
                (
                    "sli_latency_seconds_bucket".to_string(),
                    vec![("01".repeat(16), 0.05, t)]
                ),
                (
                    "sli_latency_seconds_bucket".to_string(),
                    vec![("02".repeat(16), 0.6, t)]
                ),
            ]
        );
        assert_eq!(classic[0].exemplars.len(), 0, "none on sli_requests_total");
        let native = encode_with(&view, shape, &[], 1, &[], true, true);
        let h = native
            .iter()
            .find(|t| name(t) == "sli_latency_seconds")
            .expect("native histogram");
        assert_eq!(ids(h).len(), 2);
        // Without the flag, nothing.
        let off = encode(&view, shape, &[], 1, &[], false);
        assert!(off.iter().all(|t| t.exemplars.is_empty()));
    }

    #[test]
    fn a_compressed_body_holds_no_more_than_it_sends() {
        let raw = vec![7u8; 100_000];
        let body = compress(&raw);
        assert!(body.len() < 10_000);
        assert_eq!(body.capacity(), body.len());
        assert_eq!(
            snap::raw::Decoder::new()
                .decompress_vec(&body)
                .expect("snappy"),
            raw
        );
    }
}
