//! Prometheus text exposition (format 0.0.4) of the read model's answers (SLIs,
//! completeness, SLOs) and of self-telemetry. Formats values; computes none of its own.

use crate::pipeline::snapshot::View;
use crate::pipeline::Pipeline;
use crate::report::quality::{is_active, metrics_without_traces};
use crate::report::series::{coverage_5m, success_ratio};
use crate::report::Report;
use crate::sli::series::QUANTILES;
use crate::sli::window::Window;
use crate::telemetry::{Outcome, RefuseReason, Signal, Telemetry, Transport};
use std::fmt::Write;

/// Escapes a label value.
fn esc(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// An escaped copy of a label value.
pub(crate) fn escaped(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    esc(v, &mut s);
    s
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes `{a="x",b="y"` (no closing brace) for a series' labels. A dimension with an
/// empty value is left out, as Prometheus treats an empty label as an absent one.
fn labels(out: &mut String, names: &[String], values: &[Box<str>]) {
    out.push('{');
    for (i, (n, v)) in names.iter().zip(values.iter()).enumerate() {
        if i >= 2 && v.is_empty() {
            continue;
        }
        if i > 0 {
            out.push(',');
        }
        out.push_str(n);
        out.push_str("=\"");
        esc(v, out);
        out.push('"');
    }
}

pub(crate) fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Renders everything.
pub fn render(report: &Report<'_>, t: &Telemetry) -> String {
    let (view, pipeline) = (report.view(), report.pipeline());
    let mut out = String::with_capacity(1024 + view.series.len() * 2048);
    let names = pipeline.classifier().label_names();
    let settings = pipeline.settings();

    header(
        &mut out,
        "sli_requests_total",
        "counter",
        "Requests per feature: entry spans, each weighted by its sampling adjusted count (exact when nothing is sampled).",
    );
    for s in &view.series {
        out.push_str("sli_requests_total");
        labels(&mut out, &names, &s.labels);
        let _ = writeln!(out, "}} {}", float(s.est_requests_total));
    }
    header(
        &mut out,
        "sli_errors_total",
        "counter",
        "Bad requests per feature, by the outcome rules, weighted like sli_requests_total.",
    );
    for s in &view.series {
        out.push_str("sli_errors_total");
        labels(&mut out, &names, &s.labels);
        let _ = writeln!(out, "}} {}", float(s.est_errors_total));
    }
    header(
        &mut out,
        "sli_latency_seconds",
        "histogram",
        "Request duration (span end - start).",
    );
    for s in &view.series {
        let mut cum = 0u64;
        for (i, c) in s.buckets.iter().enumerate() {
            cum += c;
            let le = settings
                .bounds_ns
                .get(i)
                .map_or("+Inf".to_string(), |b| float(*b as f64 / 1e9));
            out.push_str("sli_latency_seconds_bucket");
            labels(&mut out, &names, &s.labels);
            let _ = writeln!(out, ",le=\"{le}\"}} {cum}");
        }
        out.push_str("sli_latency_seconds_sum");
        labels(&mut out, &names, &s.labels);
        let _ = writeln!(out, "}} {}", float(s.duration_sum_ns as f64 / 1e9));
        out.push_str("sli_latency_seconds_count");
        labels(&mut out, &names, &s.labels);
        let _ = writeln!(out, "}} {}", s.requests_total);
    }
    header(
        &mut out,
        "sli_success_ratio",
        "gauge",
        "Good requests / requests over the window; absent when the window has no requests.",
    );
    for s in &view.series {
        for w in Window::ALL {
            let ws = &s.windows[w.index()];
            if ws.requests == 0 {
                continue;
            }
            out.push_str("sli_success_ratio");
            labels(&mut out, &names, &s.labels);
            let ratio = success_ratio(ws).unwrap_or(0.0);
            let _ = writeln!(out, ",window=\"{}\"}} {}", w.name(), float(ratio));
        }
    }
    header(
        &mut out,
        "sli_latency_quantile_seconds",
        "gauge",
        "Latency quantile over the window, from an HDR histogram.",
    );
    for s in &view.series {
        for w in Window::ALL {
            let ws = &s.windows[w.index()];
            for (q, v) in QUANTILES.iter().zip(ws.quantiles_ns.iter()) {
                if let Some(ns) = v {
                    out.push_str("sli_latency_quantile_seconds");
                    labels(&mut out, &names, &s.labels);
                    let _ = writeln!(
                        out,
                        ",window=\"{}\",quantile=\"{q}\"}} {}",
                        w.name(),
                        float(*ns as f64 / 1e9)
                    );
                }
            }
        }
    }
    completeness(&mut out, report);
    super::slos::prometheus(&mut out, report);
    self_metrics(&mut out, view, pipeline, t);
    out
}

fn completeness(out: &mut String, report: &Report<'_>) {
    let (view, pipeline) = (report.view(), report.pipeline());
    let service = |g: &crate::completeness::ServiceGaps| escaped(&g.service);
    header(out, "telemetry_gap_spans_total", "counter", "Spans affected by telemetry gaps: orphan_spans (local parent never arrived), missing_root (in traces with no root and no remote parent), unattributed_spans (entry spans named after the span name for lack of attributes, or without service.name).");
    for g in &view.gaps {
        let svc = service(g);
        for (kind, n) in [
            ("orphan_spans", g.counts.orphans.spans),
            ("missing_root", g.counts.missing_roots.spans),
            ("invalid_spans", g.counts.invalid.spans),
        ] {
            let _ = writeln!(
                out,
                "telemetry_gap_spans_total{{service=\"{svc}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
    let mut unattributed: std::collections::BTreeMap<&str, (u64, bool)> = Default::default();
    for s in &view.series {
        let e = unattributed.entry(s.service()).or_default();
        e.0 += s.unattributed.count;
        e.1 |= s.unattributed.count > 0
            && crate::report::quality::seen_within(s.unattributed.last_unix_nanos, report.now());
    }
    for (svc, (n, _)) in &unattributed {
        let escaped = escaped(svc);
        let _ = writeln!(
            out,
            "telemetry_gap_spans_total{{service=\"{escaped}\",kind=\"unattributed_spans\"}} {n}"
        );
    }
    header(out, "telemetry_trace_coverage_ratio", "gauge", "Requests seen as spans / requests counted by request metrics over the last 5 minutes (absent without request metrics).");
    let names = pipeline.classifier().label_names();
    for s in &view.series {
        if let Some(c) = coverage_5m(s) {
            out.push_str("telemetry_trace_coverage_ratio");
            labels(out, &names, &s.labels);
            let _ = writeln!(out, "}} {}", float(c));
        }
    }
    let mut sampling: std::collections::BTreeMap<&str, (u64, f64)> = Default::default();
    for s in &view.series {
        let e = sampling.entry(s.service()).or_default();
        e.0 += s.requests_total;
        e.1 += s.est_requests_total;
    }
    header(out, "telemetry_sampling_ratio", "gauge", "Entry spans received / requests they stand for (by their tracestate adjusted counts), per service since start; 1 when nothing is sampled.");
    for (svc, (spans, est)) in &sampling {
        if *est > 0.0 {
            let escaped = escaped(svc);
            let _ = writeln!(
                out,
                "telemetry_sampling_ratio{{service=\"{escaped}\"}} {}",
                float((*spans as f64 / est).min(1.0))
            );
        }
    }
    header(out, "otel_sli_completeness_untracked_services_total", "counter", "Spans, metrics and logs whose service was not tracked for completeness because a shard already tracked 10000 services.");
    let _ = writeln!(
        out,
        "otel_sli_completeness_untracked_services_total {}",
        view.untracked_service_items
    );
    header(
        out,
        "telemetry_service_silent",
        "gauge",
        "1 when the service sent telemetry and then nothing for completeness.silence_after.",
    );
    for g in &view.gaps {
        let silent = report.is_silent(&g.counts);
        let _ = writeln!(
            out,
            "telemetry_service_silent{{service=\"{}\"}} {}",
            service(g),
            u8::from(silent)
        );
    }
    header(
        out,
        "telemetry_gap_traces_total",
        "counter",
        "Traces with no root and no remote parent, by the service of their first span.",
    );
    for g in &view.gaps {
        let _ = writeln!(
            out,
            "telemetry_gap_traces_total{{service=\"{}\",kind=\"missing_root\"}} {}",
            service(g),
            g.counts.missing_roots.count
        );
    }
    header(
        out,
        "telemetry_gap_active",
        "gauge",
        "1 while a gap of this kind was seen in the last 5 minutes (see /api/v1/gaps).",
    );
    let now = view.flushed_at_unix_nanos;
    for g in &view.gaps {
        let svc = service(g);
        for (kind, k) in [
            ("orphan_spans", &g.counts.orphans),
            ("missing_root", &g.counts.missing_roots),
            ("invalid_spans", &g.counts.invalid),
        ] {
            let active = is_active(k, now);
            let _ = writeln!(
                out,
                "telemetry_gap_active{{service=\"{svc}\",kind=\"{kind}\"}} {}",
                u8::from(active)
            );
        }
    }
    for (svc, (_, active)) in &unattributed {
        let escaped = escaped(svc);
        let _ = writeln!(
            out,
            "telemetry_gap_active{{service=\"{escaped}\",kind=\"unattributed_spans\"}} {}",
            u8::from(*active)
        );
    }
    // Untraced requests: any series of the service below the coverage target (5 minutes).
    let mut untraced: std::collections::BTreeMap<&str, bool> = Default::default();
    for s in &view.series {
        *untraced.entry(s.service()).or_default() |= report.under_covered(s);
    }
    for (svc, low) in &untraced {
        let escaped = escaped(svc);
        let _ = writeln!(
            out,
            "telemetry_gap_active{{service=\"{escaped}\",kind=\"untraced_requests\"}} {}",
            u8::from(*low)
        );
    }
    for g in &view.gaps {
        let svc = service(g);
        let silent = report.is_silent(&g.counts);
        let no_traces = metrics_without_traces(&g.counts);
        let _ = writeln!(
            out,
            "telemetry_gap_active{{service=\"{svc}\",kind=\"silent_service\"}} {}\n\
             telemetry_gap_active{{service=\"{svc}\",kind=\"metrics_without_traces\"}} {}",
            u8::from(silent),
            u8::from(no_traces)
        );
    }
}

fn self_metrics(out: &mut String, view: &View, pipeline: &Pipeline, t: &Telemetry) {
    header(
        out,
        "otel_sli_requests_total",
        "counter",
        "Export requests by transport, signal and outcome.",
    );
    for tr in Transport::ALL {
        for s in Signal::ALL {
            for o in Outcome::ALL {
                let _ = writeln!(
                    out,
                    "otel_sli_requests_total{{transport=\"{}\",signal=\"{}\",outcome=\"{}\"}} {}",
                    tr.name(),
                    s.name(),
                    o.name(),
                    t.requests_count(tr, s, o)
                );
            }
        }
    }
    listeners(out, t);
    header(
        out,
        "otel_sli_accepted_spans_total",
        "counter",
        "Spans accepted.",
    );
    for tr in Transport::ALL {
        let _ = writeln!(
            out,
            "otel_sli_accepted_spans_total{{transport=\"{}\"}} {}",
            tr.name(),
            t.accepted_spans_count(tr)
        );
    }
    header(
        out,
        "otel_sli_refused_spans_total",
        "counter",
        "Spans refused, by reason.",
    );
    for tr in Transport::ALL {
        for r in RefuseReason::ALL {
            let _ = writeln!(
                out,
                "otel_sli_refused_spans_total{{transport=\"{}\",reason=\"{}\"}} {}",
                tr.name(),
                r.name(),
                t.refused_spans_count(tr, r)
            );
        }
    }
    header(
        out,
        "otel_sli_received_items_total",
        "counter",
        "Items in accepted requests: spans, metric data points, log records.",
    );
    for tr in Transport::ALL {
        for s in Signal::ALL {
            let _ = writeln!(
                out,
                "otel_sli_received_items_total{{transport=\"{}\",signal=\"{}\"}} {}",
                tr.name(),
                s.name(),
                t.items_count(tr, s)
            );
        }
    }
    header(
        out,
        "otel_sli_entry_spans_total",
        "counter",
        "Entry spans recorded as requests.",
    );
    let _ = writeln!(out, "otel_sli_entry_spans_total {}", t.entry_spans_count());
    header(
        out,
        "otel_sli_invalid_durations_total",
        "counter",
        "Entry spans whose end was before their start (duration clamped to 0).",
    );
    let _ = writeln!(
        out,
        "otel_sli_invalid_durations_total {}",
        t.invalid_durations_count()
    );
    header(
        out,
        "otel_sli_queue_depth",
        "gauge",
        "Batches queued per shard.",
    );
    for (i, d) in pipeline.queue_depths().iter().enumerate() {
        let _ = writeln!(out, "otel_sli_queue_depth{{shard=\"{i}\"}} {d}");
    }
    header(
        out,
        "otel_sli_queue_capacity",
        "gauge",
        "Batches each shard queue holds before requests are refused.",
    );
    let _ = writeln!(out, "otel_sli_queue_capacity {}", pipeline.queue_capacity());
    header(
        out,
        "otel_sli_active_series",
        "gauge",
        "SLI series alive (overflow series not counted).",
    );
    let _ = writeln!(out, "otel_sli_active_series {}", view.active_series);
    header(out, "otel_sli_series_limit", "gauge", "limits.max_series.");
    let _ = writeln!(
        out,
        "otel_sli_series_limit {}",
        pipeline.settings().max_series
    );
    header(
        out,
        "otel_sli_overflow_spans_total",
        "counter",
        "Entry spans folded into the overflow series because of the series limit.",
    );
    let _ = writeln!(out, "otel_sli_overflow_spans_total {}", view.overflow_spans);
    header(
        out,
        "otel_sli_expired_series_total",
        "counter",
        "Series dropped after being idle past limits.series_expiry.",
    );
    let _ = writeln!(out, "otel_sli_expired_series_total {}", view.expired_series);
    header(
        out,
        "otel_sli_tracked_traces",
        "gauge",
        "Traces being tracked for completeness checks.",
    );
    let _ = writeln!(out, "otel_sli_tracked_traces {}", view.tracked_traces);
    header(
        out,
        "otel_sli_completeness_evicted_total",
        "counter",
        "Traces dropped unjudged because completeness.max_traces was reached.",
    );
    let _ = writeln!(
        out,
        "otel_sli_completeness_evicted_total {}",
        view.trace_stats.evicted_traces
    );
    header(
        out,
        "otel_sli_completeness_untracked_spans_total",
        "counter",
        "Spans not tracked because their trace reached completeness.max_spans_per_trace.",
    );
    let _ = writeln!(
        out,
        "otel_sli_completeness_untracked_spans_total {}",
        view.trace_stats.untracked_spans
    );
    header(
        out,
        "otel_sli_series_memory_bytes",
        "gauge",
        "Approximate bytes held by SLI series state.",
    );
    let _ = writeln!(out, "otel_sli_series_memory_bytes {}", view.memory_bytes);
    header(out, "otel_sli_build_info", "gauge", "Build information.");
    let _ = writeln!(
        out,
        "otel_sli_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// Connection and TLS self-telemetry of the three listeners.
fn listeners(out: &mut String, t: &Telemetry) {
    use crate::telemetry::{ConnStats, Listener};
    type Field = fn(&ConnStats) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, &str, &str, Field); 4] = [
        ("otel_sli_connections_open", "gauge", "Connections open now, TLS handshakes in progress included.", |c| &c.open),
        ("otel_sli_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out (a client without a valid certificate under mutual TLS, a plaintext client).", |c| &c.handshake_failures),
        ("otel_sli_tls_reloads_total", "counter", "Certificate files that changed and took effect for new connections.", |c| &c.reloads),
        ("otel_sli_tls_reload_failures_total", "counter", "Certificate files that changed but did not load; the previous certificate stays in use.", |c| &c.reload_failures),
    ];
    for (name, kind, help, field) in families {
        header(out, name, kind, help);
        for l in Listener::ALL {
            let v = ConnStats::read(field(t.listener(l)));
            let _ = writeln!(out, "{name}{{listener=\"{}\"}} {v}", l.name());
        }
    }
    header(
        out,
        "otel_sli_connections_refused_total",
        "counter",
        "Connections closed at once: reason max_connections (the listener's cap) or per_client (the client address's cap).",
    );
    for l in Listener::ALL {
        let c = t.listener(l);
        for (reason, v) in [
            ("max_connections", ConnStats::read(&c.refused)),
            ("per_client", ConnStats::read(&c.refused_per_client)),
        ] {
            let _ = writeln!(
                out,
                "otel_sli_connections_refused_total{{listener=\"{}\",reason=\"{reason}\"}} {v}",
                l.name()
            );
        }
    }
    header(
        out,
        "otel_sli_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the certificate a TLS listener serves expires (notAfter), Unix seconds.",
    );
    for l in Listener::ALL {
        match ConnStats::read(&t.listener(l).cert_not_after) {
            0 => {}
            v => {
                let _ = writeln!(
                    out,
                    "otel_sli_tls_certificate_expiry_timestamp_seconds{{listener=\"{}\"}} {v}",
                    l.name()
                );
            }
        }
    }
}

/// The memory budget's gauges (nothing without a budget).
pub fn memory(out: &mut String, budget: Option<&crate::memory::MemoryBudget>) {
    let Some(b) = budget else { return };
    for (name, help, value) in [
        (
            "otel_sli_memory_budget_bytes",
            "The memory budget (limits.memory_mib, or 80% of the cgroup memory limit).",
            b.budget_bytes(),
        ),
        (
            "otel_sli_memory_soft_limit_bytes",
            "Resident size at or above which receivers refuse requests (retryable): 90% of the budget.",
            b.soft_limit_bytes(),
        ),
        (
            "otel_sli_memory_resident_bytes",
            "Resident set size at the last reading (10 per second).",
            b.resident_bytes(),
        ),
        (
            "otel_sli_memory_in_flight_limit_bytes",
            "Request bytes that may be in flight (read, decompressed, converted) at once: half the budget.",
            b.in_flight().capacity(),
        ),
        (
            "otel_sli_memory_in_flight_bytes",
            "Request bytes reserved by requests in flight now.",
            b.in_flight().used(),
        ),
    ] {
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Writes the `otel_sli_exporter_*` series of every delivery queue (forwarders and
/// exporters); the headers are written even without any, so the names are always known.
pub fn exporters(out: &mut String, queues: &[crate::export::delivery::Queue]) {
    use crate::export::delivery::DropReason;
    use std::sync::atomic::Ordering::Relaxed;
    type Get = fn(&crate::export::delivery::Stats) -> u64;
    let counters: [(&str, &str, Get); 4] = [
        (
            "otel_sli_exporter_sent_items_total",
            "Items (spans, points, log records, samples) delivered upstream.",
            |s| s.sent_items.load(Relaxed),
        ),
        (
            "otel_sli_exporter_sent_requests_total",
            "Requests delivered upstream.",
            |s| s.sent_requests.load(Relaxed),
        ),
        (
            "otel_sli_exporter_failed_attempts_total",
            "Send attempts that failed (retried or not).",
            |s| s.failed_attempts.load(Relaxed),
        ),
        (
            "otel_sli_exporter_retries_total",
            "Send attempts that were retries.",
            |s| s.retries.load(Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        header(out, name, "counter", help);
        for q in queues {
            let _ = writeln!(
                out,
                "{name}{{exporter=\"{}\"}} {}",
                escaped(q.name()),
                get(q.stats())
            );
        }
    }
    header(
        out,
        "otel_sli_exporter_dropped_items_total",
        "counter",
        "Items dropped: queue_full, rejected (the upstream refused them for good), retries_exhausted, shutdown (still queued when the shutdown grace period ended), spool_full (oldest spooled data dropped for room), spool_error (spooled data that could not be written or read back).",
    );
    for q in queues {
        for r in DropReason::ALL {
            let _ = writeln!(
                out,
                "otel_sli_exporter_dropped_items_total{{exporter=\"{}\",reason=\"{}\"}} {}",
                escaped(q.name()),
                r.name(),
                q.stats().dropped(r)
            );
        }
    }
    header(
        out,
        "otel_sli_exporter_queue_size",
        "gauge",
        "Requests waiting or being sent.",
    );
    for q in queues {
        let _ = writeln!(
            out,
            "otel_sli_exporter_queue_size{{exporter=\"{}\"}} {}",
            escaped(q.name()),
            q.stats().queued.load(Relaxed)
        );
    }
    let spooled: Vec<_> = queues.iter().filter(|q| q.has_spool()).collect();
    let spool: [(&str, &str, &str, Get); 3] = [
        (
            "otel_sli_exporter_spooled_items_total",
            "counter",
            "Items written to the disk spool (the upstream was failing or its queue full).",
            |s| s.spooled_items.load(Relaxed),
        ),
        (
            "otel_sli_exporter_spool_items",
            "gauge",
            "Items in the disk spool, not yet delivered.",
            |s| s.spool_items.load(Relaxed),
        ),
        (
            "otel_sli_exporter_spool_size_bytes",
            "gauge",
            "Bytes of the disk spool's segment files.",
            |s| s.spool_bytes.load(Relaxed),
        ),
    ];
    for (name, kind, help, get) in spool {
        header(out, name, kind, help);
        for q in &spooled {
            let _ = writeln!(
                out,
                "{name}{{exporter=\"{}\"}} {}",
                escaped(q.name()),
                get(q.stats())
            );
        }
    }
    header(
        out,
        "otel_sli_exporter_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last delivery (0: none yet).",
    );
    for q in queues {
        let _ = writeln!(
            out,
            "otel_sli_exporter_last_success_timestamp_seconds{{exporter=\"{}\"}} {}",
            escaped(q.name()),
            q.stats().last_success_unix.load(Relaxed)
        );
    }
}
