//! The telemetry-completeness gaps active now, most severe first: trace structure (orphan
//! spans, missing roots, invalid spans) per service, silent services, services with metrics
//! but no traces, requests counted by metrics but not traced, and requests named after their
//! span name. Each comes with what it affects and an explanation for the person on call.
//!
//! A gap is *active* when it was last seen within [`ACTIVE_FOR`] of the snapshot (on the
//! injected clock). Its ratio is the share it affects: of the service's tracked spans for
//! trace-structure gaps, of the series' requests for unattributed spans.

use super::quality::{
    coverage, is_active, is_silent, metrics_without_traces, unattributed_active, ACTIVE_FOR,
};
use super::{Report, Thresholds};
use crate::completeness::{GapCounts, KindCounts};
use crate::pipeline::snapshot::View;
use crate::text::{agree, counted};

/// One active gap.
#[derive(Debug, PartialEq)]
pub struct Gap<'a> {
    /// `orphan_spans`, `missing_root`, `invalid_spans`, `silent_service`,
    /// `metrics_without_traces`, `untraced_requests` or `unattributed_spans`.
    pub kind: &'static str,
    /// The service it is about.
    pub service: &'a str,
    /// The feature, for gaps of one series.
    pub feature: Option<&'a str>,
    /// Occurrences (spans, traces, requests or data points, by kind).
    pub count: u64,
    /// The share affected, in [0, 1].
    pub ratio: f64,
    /// First seen, Unix nanoseconds.
    pub since_unix_nanos: u64,
    /// Last seen, Unix nanoseconds.
    pub last_seen_unix_nanos: u64,
    /// What it means and what usually causes it.
    pub detail: String,
}

/// One kind of gap.
struct Kind {
    name: &'static str,
    of: fn(&GapCounts) -> &KindCounts,
    detail: fn(&str, &GapCounts) -> String,
}

const KINDS: [Kind; 3] = [
    Kind {
        name: "orphan_spans",
        of: |c| &c.orphans,
        detail: |service, c| {
            let n = c.orphans.count;
            format!(
                "{} of {service} {} a parent that should have been reported by this node but never arrived: \
                 the parent span was probably never ended or exported (a crash, a leaked span, an exporter dropping data), \
                 or its service sends to another collector",
                counted(n, "span", "spans"),
                agree(n, "has", "have")
            )
        },
    },
    Kind {
        name: "missing_root",
        of: |c| &c.missing_roots,
        detail: |service, c| {
            let n = c.missing_roots.count;
            format!(
                "{} starting at {service} {} no root span and no remote parent: the request's entry span \
                 was not exported, or the service that started the trace does not send to this node",
                counted(n, "trace", "traces"),
                agree(n, "has", "have")
            )
        },
    },
    Kind {
        name: "invalid_spans",
        of: |c| &c.invalid,
        detail: |service, c| {
            let n = c.invalid.count;
            format!(
                "{} of {service} {} invalid: {} with a trace or span id that is empty, all zero \
                 or of the wrong length (rejected), {} ending before they start or \
                 missing a timestamp (their latency counts as 0), {} with an end time beyond the \
                 allowed clock skew (the host clock is wrong, or timestamps are not in nanoseconds)",
                counted(n, "span", "spans"),
                agree(n, "is", "are"),
                c.invalid_ids,
                counted(c.invalid_durations, "request span", "request spans"),
                c.clock_skew
            )
        },
    },
];

impl Report<'_> {
    /// The active gaps, the largest share affected first.
    pub fn gaps(&self) -> Vec<Gap<'_>> {
        active(self.view(), self.thresholds())
    }
}

/// The gaps of `view` active at its flush time, judged by `t`, the largest share affected
/// first.
pub fn active<'v>(view: &'v View, t: &Thresholds) -> Vec<Gap<'v>> {
    let now = view.flushed_at_unix_nanos;
    let mut gaps = trace_structure(view, now);
    service_gaps(view, t, now, &mut gaps);
    untraced(view, t, now, &mut gaps);
    unattributed(view, now, &mut gaps);
    gaps.sort_by(|a, b| b.ratio.total_cmp(&a.ratio).then(b.count.cmp(&a.count)));
    gaps
}

/// Orphan spans, missing roots and invalid spans, per service.
fn trace_structure(view: &View, now: u64) -> Vec<Gap<'_>> {
    view.gaps
        .iter()
        .flat_map(|g| KINDS.iter().map(move |kind| (kind, g)))
        .filter(|(kind, g)| is_active((kind.of)(&g.counts), now))
        .map(|(kind, g)| {
            let k = (kind.of)(&g.counts);
            Gap {
                kind: kind.name,
                service: &g.service,
                feature: None,
                count: k.count,
                ratio: if g.counts.spans == 0 {
                    1.0
                } else {
                    (k.spans as f64 / g.counts.spans as f64).min(1.0)
                },
                since_unix_nanos: k.first_unix_nanos,
                last_seen_unix_nanos: k.last_unix_nanos,
                detail: (kind.detail)(&g.service, &g.counts),
            }
        })
        .collect()
}

/// Silent services, and services with metrics but no traces.
fn service_gaps<'v>(view: &'v View, t: &Thresholds, now: u64, gaps: &mut Vec<Gap<'v>>) {
    let silence_after = t.silence_after_nanos();
    for g in &view.gaps {
        let c = &g.counts;
        if is_silent(c, now, silence_after) {
            let last = c.last_seen_unix_nanos();
            gaps.push(Gap {
                kind: "silent_service",
                service: &g.service,
                feature: None,
                count: 1,
                ratio: 1.0,
                since_unix_nanos: last,
                last_seen_unix_nanos: last,
                detail: format!(
                    "{} sent spans, metrics or logs until {} and nothing since: the service or its \
                     exporter stopped, or its telemetry now goes elsewhere; its SLIs are not current",
                    g.service,
                    rfc3339(last)
                ),
            });
        }
        if metrics_without_traces(c) && now.saturating_sub(c.last_signal_unix_nanos) <= ACTIVE_FOR {
            gaps.push(Gap {
                kind: "metrics_without_traces",
                service: &g.service,
                feature: None,
                count: c.metric_points,
                ratio: 1.0,
                since_unix_nanos: c.last_signal_unix_nanos,
                last_seen_unix_nanos: c.last_signal_unix_nanos,
                detail: format!(
                    "{} sends metrics ({}) but none of its spans arrive: tracing is off, \
                     sampled to nothing, or exported elsewhere, so it has no SLIs here",
                    g.service,
                    counted(c.metric_points, "data point", "data points")
                ),
            });
        }
    }
}

/// Series whose request metrics count more requests than arrived as spans.
fn untraced<'v>(view: &'v View, t: &Thresholds, now: u64, gaps: &mut Vec<Gap<'v>>) {
    let target = t.coverage_target;
    let m5 = crate::sli::window::Window::M5.index();
    for series in &view.series {
        let w = &series.windows[m5];
        let Some(coverage) = coverage(w.est_requests, w.metric_requests) else {
            continue;
        };
        if coverage >= target {
            continue;
        }
        let missing = (w.metric_requests as f64 - w.est_requests).max(0.0).round() as u64;
        gaps.push(Gap {
            kind: "untraced_requests",
            service: series.service(),
            feature: Some(series.feature()),
            count: missing,
            ratio: 1.0 - coverage,
            since_unix_nanos: now,
            last_seen_unix_nanos: now,
            detail: format!(
                "request metrics count {} of {} {} in the last 5 minutes but only {:.0} \
                 arrived as spans (trace coverage {coverage:.2}): spans are dropped on the way \
                 (exporter queues, a sampler that does not record its probability), or part of \
                 the service's instances do not send traces here",
                counted(w.metric_requests, "request", "requests"),
                series.service(),
                series.feature(),
                w.est_requests
            ),
        });
    }
}

/// Requests named after their span name, or without a service name.
fn unattributed<'v>(view: &'v View, now: u64, gaps: &mut Vec<Gap<'v>>) {
    for series in &view.series {
        let u = &series.unattributed;
        if !unattributed_active(u, now) {
            continue;
        }
        let service = series.service();
        let detail = if service.starts_with("unknown_service") {
            format!(
                "{} {} from spans with no service.name: set OTEL_SERVICE_NAME (or the \
                 service.name resource attribute) in the application",
                counted(u.count, "request", "requests"),
                agree(u.count, "comes", "come")
            )
        } else {
            format!(
                "{} of {service} {} named after their span name \"{}\" because the \
                 attributes the feature rules need (for example http.route) are missing: the \
                 instrumentation does not record the route, or the rules do not fit this service",
                counted(u.count, "request", "requests"),
                agree(u.count, "was", "were"),
                series.feature()
            )
        };
        gaps.push(Gap {
            kind: "unattributed_spans",
            service,
            feature: Some(series.feature()),
            count: u.count,
            ratio: if series.requests_total == 0 {
                1.0
            } else {
                (u.count as f64 / series.requests_total as f64).min(1.0)
            },
            since_unix_nanos: u.first_unix_nanos,
            last_seen_unix_nanos: u.last_unix_nanos,
            detail,
        });
    }
}

/// Unix nanoseconds as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(unix_nanos: u64) -> String {
    let secs = unix_nanos / 1_000_000_000;
    let millis = (unix_nanos / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completeness::ServiceGaps;
    use std::sync::Arc;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_317_199_565_551_962),
            "2026-11-22T03:13:19.565Z"
        );
        assert_eq!(
            rfc3339(4_107_542_399_999_000_000),
            "2100-02-28T23:59:59.999Z"
        );
    }

    #[test]
    fn details_agree_with_their_counts() {
        let one = KindCounts {
            count: 1,
            spans: 1,
            ..KindCounts::default()
        };
        let c = GapCounts {
            orphans: one,
            missing_roots: one,
            invalid: one,
            invalid_durations: 1,
            ..GapCounts::default()
        };
        let details: Vec<String> = KINDS.iter().map(|k| (k.detail)("cart", &c)).collect();
        assert!(
            details[0].starts_with("1 span of cart has a parent"),
            "{}",
            details[0]
        );
        assert!(
            details[1].starts_with("1 trace starting at cart has no root"),
            "{}",
            details[1]
        );
        assert!(
            details[2].starts_with("1 span of cart is invalid"),
            "{}",
            details[2]
        );
        assert!(
            details[2].contains(", 1 request span ending before"),
            "{}",
            details[2]
        );
        let two = GapCounts {
            orphans: KindCounts {
                count: 2,
                ..KindCounts::default()
            },
            ..GapCounts::default()
        };
        assert!((KINDS[0].detail)("cart", &two).starts_with("2 spans of cart have a parent"));
    }

    #[test]
    fn only_active_gaps_most_severe_first() {
        let min = 60 * 1_000_000_000;
        let counts = |spans, orphans, last| GapCounts {
            spans,
            orphans: KindCounts {
                count: orphans,
                spans: orphans,
                first_unix_nanos: last,
                last_unix_nanos: last,
            },
            missing_roots: KindCounts::default(),
            ..GapCounts::default()
        };
        let view = View {
            flushed_at_unix_nanos: 100 * min,
            gaps: vec![
                ServiceGaps {
                    service: Arc::from("a"),
                    counts: counts(100, 10, 99 * min),
                },
                ServiceGaps {
                    service: Arc::from("b"),
                    counts: counts(100, 50, 98 * min),
                },
                ServiceGaps {
                    service: Arc::from("stale"),
                    counts: counts(100, 90, 90 * min),
                },
                ServiceGaps {
                    service: Arc::from("clean"),
                    counts: counts(100, 0, 0),
                },
            ],
            ..View::default()
        };
        let thresholds = Thresholds {
            silence_after: std::time::Duration::from_secs(3600),
            ..Thresholds::default()
        };
        let gaps = active(&view, &thresholds);
        let services: Vec<&str> = gaps.iter().map(|g| g.service).collect();
        assert_eq!(
            services,
            ["b", "a"],
            "stale and clean services are not listed"
        );
        assert_eq!(gaps[0].kind, "orphan_spans");
        assert_eq!(gaps[0].ratio, 0.5);
        assert_eq!(gaps[0].count, 50);
        assert!(gaps[0].feature.is_none());
        assert!(gaps[0].detail.contains("never arrived"));
    }
}
