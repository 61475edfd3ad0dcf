//! Prometheus text exposition (format 0.0.4) of the read model's answers (SLIs,
//! completeness, SLOs) and of self-telemetry, each family declared once through
//! [`super::exposition`]. Formats values; computes none of its own.

use super::exposition::{family, float, Kind};
use crate::pipeline::batch::{FLAG_OBSERVATIONS_PER_SPAN, MAX_FLAGS_PER_REQUEST};
use crate::pipeline::snapshot::View;
use crate::pipeline::Pipeline;
use crate::report::flags::dropped;
use crate::report::quality::{is_active, metrics_without_traces};
use crate::report::series::{coverage_5m, success_ratio};
use crate::report::Report;
use crate::sli::series::QUANTILES;
use crate::sli::window::Window;
use crate::telemetry::{Outcome, RefuseReason, Signal, Telemetry, Transport};

/// Renders everything; with `exemplars`, the SLI counters and buckets carry OpenMetrics
/// exemplars (for OpenMetrics output only, see [`super::exposition::open_metrics`]).
pub fn render(report: &Report<'_>, t: &Telemetry, exemplars: bool) -> String {
    let view = report.view();
    let mut out = String::with_capacity(1024 + view.series.len() * 2048);
    slis(&mut out, report, exemplars);
    completeness(&mut out, report);
    super::slos::prometheus(&mut out, report);
    flags(&mut out, report);
    self_metrics(&mut out, view, report.pipeline(), t);
    out
}

/// Feature flags, when they are read: which variants errors are tied to (over 5 minutes),
/// what became of the evaluations, and, with `flags.metrics`, the flag series.
fn flags(out: &mut String, report: &Report<'_>) {
    let pipeline = report.pipeline();
    let Some(opts) = pipeline.flag_options() else {
        return;
    };
    let mut f = family(
        out,
        "sli_flag_errors_tied",
        Kind::Gauge,
        "1 when a flag variant's error ratio over the last 5 minutes is significantly higher than that of the flag's other variants in the service (the canary error test, Holm-adjusted over the variants), else 0; absent while either side has fewer than canary.min_requests requests.",
    );
    for flag in report.flags(Window::M5) {
        for (variant, test) in &flag.tests {
            let labels = [
                ("service", flag.service),
                ("flag", flag.flag),
                ("variant", *variant),
            ];
            f.sample(&labels, u8::from(test.worse));
        }
    }
    let view = report.view();
    let counts = pipeline.flag_counts();
    single(
        out,
        "otel_sli_flag_evaluations_total",
        Kind::Counter,
        "Feature-flag observations queued for the shards (one per request and flag), including those the flags.max_flags cap then drops.",
        counts.evaluations,
    );
    let help = format!(
        "Feature-flag evaluations not counted: no_variant (neither variant nor value), unattributed (on a child span whose entry span was not in the same export request), not_listed (key outside flags.keys), request_limit (beyond {MAX_FLAGS_PER_REQUEST} flags per request or {FLAG_OBSERVATIONS_PER_SPAN} flag observations per span of the export request), max_flags (beyond flags.max_flags)."
    );
    let mut f = family(
        out,
        "otel_sli_flag_evaluations_dropped_total",
        Kind::Counter,
        &help,
    );
    for (reason, n) in dropped(&counts, view) {
        f.sample(&[("reason", reason)], n);
    }
    let mut f = family(
        out,
        "otel_sli_flag_evaluations_folded_total",
        Kind::Counter,
        "Feature-flag evaluations counted in an overflow series: max_variants (under the variant __overflow__ of their flag), max_series (in the flag overflow series).",
    );
    f.sample(&[("cap", "max_variants")], view.flag_overflow.variants);
    f.sample(&[("cap", "max_series")], view.flag_overflow.series);
    single(
        out,
        "otel_sli_flags_tracked",
        Kind::Gauge,
        "Feature flags (service and key) tracked now, of flags.max_flags.",
        view.tracked_flags,
    );
    if !opts.metrics {
        return;
    }
    let names = crate::report::flags::LABELS.map(String::from);
    let mut f = family(
        out,
        "sli_flag_requests_total",
        Kind::Counter,
        "Requests per feature and flag variant, weighted like sli_requests_total.",
    );
    for s in &view.flags {
        f.series_sample("", &names, &s.labels, &[], float(s.est_requests_total));
    }
    let mut f = family(
        out,
        "sli_flag_errors_total",
        Kind::Counter,
        "Bad requests per feature and flag variant, weighted like sli_errors_total.",
    );
    for s in &view.flags {
        f.series_sample("", &names, &s.labels, &[], float(s.est_errors_total));
    }
}

/// The `sli_*` families, one sample (or bucket set) per series. With `exemplars`, each
/// `sli_errors_total` sample carries the series' latest bad request (value 1) and each
/// `sli_latency_seconds_bucket` sample its bucket's example (value: its duration).
fn slis(out: &mut String, report: &Report<'_>, exemplars: bool) {
    let (view, pipeline) = (report.view(), report.pipeline());
    let names = pipeline.classifier().label_names();
    let bounds = &pipeline.settings().bounds_ns;
    let mut f = family(
        out,
        "sli_requests_total",
        Kind::Counter,
        "Requests per feature: entry spans, each weighted by its sampling adjusted count (exact when nothing is sampled).",
    );
    for s in &view.series {
        f.series_sample("", &names, &s.labels, &[], float(s.est_requests_total));
    }
    let mut f = family(
        out,
        "sli_errors_total",
        Kind::Counter,
        "Bad requests per feature, by the outcome rules, weighted like sli_requests_total.",
    );
    for s in &view.series {
        let bad = s.exemplars.as_ref().filter(|_| exemplars);
        let bad = bad.and_then(|x| x.latest_bad()).map(|e| (e, 1.0));
        f.series_sample_with("", &names, &s.labels, &[], float(s.est_errors_total), bad);
    }
    let mut f = family(
        out,
        "sli_latency_seconds",
        Kind::Histogram,
        "Request duration (span end - start).",
    );
    for s in &view.series {
        let mut cum = 0u64;
        let mut examples = s
            .exemplars
            .as_ref()
            .filter(|_| exemplars)
            .map(|x| x.by_bucket());
        for (i, c) in s.buckets.iter().enumerate() {
            cum += c;
            let le = bounds
                .get(i)
                .map_or("+Inf".to_string(), |b| float(*b as f64 / 1e9));
            let e = examples.as_mut().and_then(|x| x.next().flatten());
            let e = e.map(|e| (e, e.duration_ns as f64 / 1e9));
            f.series_sample_with("_bucket", &names, &s.labels, &[("le", &le)], cum, e);
        }
        let sum = float(s.duration_sum_ns as f64 / 1e9);
        f.series_sample("_sum", &names, &s.labels, &[], sum);
        f.series_sample("_count", &names, &s.labels, &[], s.requests_total);
    }
    let mut f = family(
        out,
        "sli_success_ratio",
        Kind::Gauge,
        "Good requests / requests over the window; absent when the window has no requests.",
    );
    for s in &view.series {
        for w in Window::ALL {
            let ws = &s.windows[w.index()];
            if ws.requests == 0 {
                continue;
            }
            let ratio = success_ratio(ws).unwrap_or(0.0);
            f.series_sample("", &names, &s.labels, &[("window", w.name())], float(ratio));
        }
    }
    let mut f = family(
        out,
        "sli_latency_quantile_seconds",
        Kind::Gauge,
        "Latency quantile over the window, from an HDR histogram.",
    );
    for s in &view.series {
        for w in Window::ALL {
            let ws = &s.windows[w.index()];
            for (q, v) in QUANTILES.iter().zip(ws.quantiles_ns.iter()) {
                if let Some(ns) = v {
                    let extra = [("window", w.name()), ("quantile", &q.to_string())];
                    f.series_sample("", &names, &s.labels, &extra, float(*ns as f64 / 1e9));
                }
            }
        }
    }
}

/// The `telemetry_*` families and the completeness self-telemetry.
fn completeness(out: &mut String, report: &Report<'_>) {
    let (view, pipeline) = (report.view(), report.pipeline());
    let services = report.services();
    let mut f = family(out, "telemetry_gap_spans_total", Kind::Counter, "Spans affected by telemetry gaps: orphan_spans (local parent never arrived), missing_root (in traces with no root and no remote parent), unattributed_spans (entry spans named after the span name for lack of attributes, or without service.name).");
    for g in &view.gaps {
        for (kind, n) in [
            ("orphan_spans", g.counts.orphans.spans),
            ("missing_root", g.counts.missing_roots.spans),
            ("invalid_spans", g.counts.invalid.spans),
        ] {
            f.sample(&[("service", &g.service), ("kind", kind)], n);
        }
    }
    for (svc, s) in &services {
        f.sample(
            &[("service", svc), ("kind", "unattributed_spans")],
            s.unattributed,
        );
    }
    let mut f = family(out, "telemetry_trace_coverage_ratio", Kind::Gauge, "Requests seen as spans / requests counted by request metrics over the last 5 minutes (absent without request metrics).");
    let names = pipeline.classifier().label_names();
    for s in &view.series {
        if let Some(c) = coverage_5m(s) {
            f.series_sample("", &names, &s.labels, &[], float(c));
        }
    }
    let mut f = family(out, "telemetry_sampling_ratio", Kind::Gauge, "Entry spans received / requests they stand for (by their tracestate adjusted counts), per service since start; 1 when nothing is sampled.");
    for (svc, s) in &services {
        if let Some(ratio) = s.sampling_ratio {
            f.sample(&[("service", svc)], float(ratio));
        }
    }
    family(out, "otel_sli_completeness_untracked_services_total", Kind::Counter, "Spans, metrics and logs whose service was not tracked for completeness because a shard already tracked 10000 services.")
        .sample(&[], view.untracked_service_items);
    let mut f = family(
        out,
        "telemetry_service_silent",
        Kind::Gauge,
        "1 when the service sent telemetry and then nothing for completeness.silence_after.",
    );
    for g in &view.gaps {
        let silent = report.is_silent(&g.counts);
        f.sample(&[("service", &g.service)], u8::from(silent));
    }
    let mut f = family(
        out,
        "telemetry_gap_traces_total",
        Kind::Counter,
        "Traces with no root and no remote parent, by the service of their first span.",
    );
    for g in &view.gaps {
        let n = g.counts.missing_roots.count;
        f.sample(&[("service", &g.service), ("kind", "missing_root")], n);
    }
    let mut f = family(
        out,
        "telemetry_gap_active",
        Kind::Gauge,
        "1 while a gap of this kind was seen in the last 5 minutes (see /api/v1/gaps).",
    );
    let now = report.now();
    for g in &view.gaps {
        for (kind, k) in [
            ("orphan_spans", &g.counts.orphans),
            ("missing_root", &g.counts.missing_roots),
            ("invalid_spans", &g.counts.invalid),
        ] {
            f.sample(
                &[("service", &g.service), ("kind", kind)],
                u8::from(is_active(k, now)),
            );
        }
    }
    for (svc, s) in &services {
        let active = u8::from(s.unattributed_active);
        f.sample(&[("service", svc), ("kind", "unattributed_spans")], active);
    }
    // Untraced requests: any series of the service below the coverage target (5 minutes).
    for (svc, s) in &services {
        let low = u8::from(s.under_covered);
        f.sample(&[("service", svc), ("kind", "untraced_requests")], low);
    }
    for g in &view.gaps {
        let silent = u8::from(report.is_silent(&g.counts));
        let no_traces = u8::from(metrics_without_traces(&g.counts));
        f.sample(
            &[("service", &g.service), ("kind", "silent_service")],
            silent,
        );
        f.sample(
            &[("service", &g.service), ("kind", "metrics_without_traces")],
            no_traces,
        );
    }
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: Kind, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help).sample(&[], value);
}

/// Self-telemetry: what the receivers took in, then what the pipeline holds.
fn self_metrics(out: &mut String, view: &View, pipeline: &Pipeline, t: &Telemetry) {
    let mut f = family(
        out,
        "otel_sli_requests_total",
        Kind::Counter,
        "Export requests by transport, signal and outcome.",
    );
    for tr in Transport::ALL {
        for s in Signal::ALL {
            for o in Outcome::ALL {
                let labels = [
                    ("transport", tr.name()),
                    ("signal", s.name()),
                    ("outcome", o.name()),
                ];
                f.sample(&labels, t.requests_count(tr, s, o));
            }
        }
    }
    listeners(out, t);
    let mut f = family(
        out,
        "otel_sli_accepted_spans_total",
        Kind::Counter,
        "Spans accepted.",
    );
    for tr in Transport::ALL {
        f.sample(&[("transport", tr.name())], t.accepted_spans_count(tr));
    }
    let mut f = family(
        out,
        "otel_sli_refused_spans_total",
        Kind::Counter,
        "Spans refused, by reason.",
    );
    for tr in Transport::ALL {
        for r in RefuseReason::ALL {
            let labels = [("transport", tr.name()), ("reason", r.name())];
            f.sample(&labels, t.refused_spans_count(tr, r));
        }
    }
    let mut f = family(
        out,
        "otel_sli_received_items_total",
        Kind::Counter,
        "Items in accepted requests: spans, metric data points, log records.",
    );
    for tr in Transport::ALL {
        for s in Signal::ALL {
            let labels = [("transport", tr.name()), ("signal", s.name())];
            f.sample(&labels, t.items_count(tr, s));
        }
    }
    pipeline_families(out, view, pipeline, t);
    process(out, &crate::process::read());
}

/// The standard `process_*` families, with the names, types and help of the Prometheus
/// Go client's process collector; a family whose figure is unknown is left out.
fn process(out: &mut String, p: &crate::process::ProcessStats) {
    if let Some(v) = p.cpu_seconds {
        let help = "Total user and system CPU time spent in seconds.";
        single(
            out,
            "process_cpu_seconds_total",
            Kind::Counter,
            help,
            float(v),
        );
    }
    let gauges = [
        (
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        if let Some(v) = value {
            single(out, name, Kind::Gauge, help, v);
        }
    }
    if let Some(v) = p.start_time_seconds {
        let help = "Start time of the process since unix epoch in seconds.";
        single(
            out,
            "process_start_time_seconds",
            Kind::Gauge,
            help,
            float(v),
        );
    }
}

/// What the pipeline holds and did: entry spans, queues, series, trace tracking, build.
fn pipeline_families(out: &mut String, view: &View, pipeline: &Pipeline, t: &Telemetry) {
    single(
        out,
        "otel_sli_entry_spans_total",
        Kind::Counter,
        "Entry spans recorded as requests.",
        t.entry_spans_count(),
    );
    single(
        out,
        "otel_sli_invalid_durations_total",
        Kind::Counter,
        "Entry spans whose end was before their start (duration clamped to 0).",
        t.invalid_durations_count(),
    );
    let mut f = family(
        out,
        "otel_sli_queue_depth",
        Kind::Gauge,
        "Batches queued per shard.",
    );
    for (i, d) in pipeline.queue_depths().iter().enumerate() {
        f.sample(&[("shard", &i.to_string())], d);
    }
    let settings = pipeline.settings();
    let stats = &view.trace_stats;
    let singles: [(&str, Kind, &str, u64); 14] = [
        (
            "otel_sli_queue_capacity",
            Kind::Gauge,
            "Batches each shard queue holds before requests are refused.",
            pipeline.queue_capacity() as u64,
        ),
        (
            "otel_sli_active_series",
            Kind::Gauge,
            "SLI series alive (overflow series not counted).",
            view.active_series as u64,
        ),
        (
            "otel_sli_series_limit",
            Kind::Gauge,
            "limits.max_series.",
            settings.max_series as u64,
        ),
        (
            "otel_sli_overflow_spans_total",
            Kind::Counter,
            "Entry spans folded into the overflow series because of the series limit.",
            view.overflow_spans,
        ),
        (
            "otel_sli_expired_series_total",
            Kind::Counter,
            "Series dropped after being idle past limits.series_expiry.",
            view.expired_series,
        ),
        (
            "otel_sli_tracked_traces",
            Kind::Gauge,
            "Traces being tracked for completeness checks.",
            view.tracked_traces as u64,
        ),
        (
            "otel_sli_completeness_evicted_total",
            Kind::Counter,
            "Traces dropped unjudged because completeness.max_traces or completeness.max_memory was reached.",
            stats.evicted_traces,
        ),
        (
            "otel_sli_completeness_untracked_spans_total",
            Kind::Counter,
            "Spans not tracked because their trace reached completeness.max_spans_per_trace.",
            stats.untracked_spans,
        ),
        (
            "otel_sli_completeness_judged_traces_total",
            Kind::Counter,
            "Traces judged for completeness, on arrival or at their timeout.",
            stats.judged_traces,
        ),
        (
            "otel_sli_completeness_judged_on_arrival_total",
            Kind::Counter,
            "Traces judged complete on arrival, without waiting in the tracker's table.",
            stats.judged_on_arrival,
        ),
        (
            "otel_sli_completeness_forgotten_early_total",
            Kind::Counter,
            "Generations of judged traces forgotten before completeness.trace_timeout because completeness.max_memory filled.",
            stats.forgotten_early,
        ),
        (
            "otel_sli_completeness_memory_bytes",
            Kind::Gauge,
            "Approximate bytes held by trace tracking (waiting traces and judged traces' fingerprints).",
            view.tracker_bytes as u64,
        ),
        (
            "otel_sli_series_memory_bytes",
            Kind::Gauge,
            "Approximate bytes held by SLI series state.",
            view.memory_bytes as u64,
        ),
        ("otel_sli_build_info", Kind::Gauge, "Build information.", 1),
    ];
    for (name, kind, help, value) in singles {
        let mut f = family(out, name, kind, help);
        if name == "otel_sli_build_info" {
            f.sample(&[("version", env!("CARGO_PKG_VERSION"))], value);
        } else {
            f.sample(&[], value);
        }
    }
}

/// Connection and TLS self-telemetry of the three listeners.
fn listeners(out: &mut String, t: &Telemetry) {
    use crate::telemetry::{ConnStats, Listener};
    type Field = fn(&ConnStats) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, Kind, &str, Field); 4] = [
        ("otel_sli_connections_open", Kind::Gauge, "Connections open now, TLS handshakes in progress included.", |c| &c.open),
        ("otel_sli_tls_handshake_failures_total", Kind::Counter, "TLS handshakes that failed or timed out (a client without a valid certificate under mutual TLS, a plaintext client).", |c| &c.handshake_failures),
        ("otel_sli_tls_reloads_total", Kind::Counter, "Certificate files that changed and took effect for new connections.", |c| &c.reloads),
        ("otel_sli_tls_reload_failures_total", Kind::Counter, "Certificate files that changed but did not load; the previous certificate stays in use.", |c| &c.reload_failures),
    ];
    for (name, kind, help, field) in families {
        let mut f = family(out, name, kind, help);
        for l in Listener::ALL {
            f.sample(
                &[("listener", l.name())],
                ConnStats::read(field(t.listener(l))),
            );
        }
    }
    let mut f = family(
        out,
        "otel_sli_connections_refused_total",
        Kind::Counter,
        "Connections closed at once: reason max_connections (the listener's cap) or per_client (the client address's cap).",
    );
    for l in Listener::ALL {
        let c = t.listener(l);
        for (reason, v) in [
            ("max_connections", ConnStats::read(&c.refused)),
            ("per_client", ConnStats::read(&c.refused_per_client)),
        ] {
            f.sample(&[("listener", l.name()), ("reason", reason)], v);
        }
    }
    let mut f = family(
        out,
        "otel_sli_tls_certificate_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the certificate a TLS listener serves expires (notAfter), Unix seconds.",
    );
    for l in Listener::ALL {
        match ConnStats::read(&t.listener(l).cert_not_after) {
            0 => {}
            v => f.sample(&[("listener", l.name())], v),
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
        single(out, name, Kind::Gauge, help, value);
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
        let mut f = family(out, name, Kind::Counter, help);
        for q in queues {
            f.sample(&[("exporter", q.name())], get(q.stats()));
        }
    }
    let mut f = family(
        out,
        "otel_sli_exporter_dropped_items_total",
        Kind::Counter,
        "Items dropped: queue_full, rejected (the upstream refused them for good), retries_exhausted, shutdown (still queued when the shutdown grace period ended), spool_full (oldest spooled data dropped for room), spool_error (spooled data that could not be written or read back).",
    );
    for q in queues {
        for r in DropReason::ALL {
            let labels = [("exporter", q.name()), ("reason", r.name())];
            f.sample(&labels, q.stats().dropped(r));
        }
    }
    let mut f = family(
        out,
        "otel_sli_exporter_queue_size",
        Kind::Gauge,
        "Requests waiting or being sent.",
    );
    for q in queues {
        f.sample(&[("exporter", q.name())], q.stats().queued.load(Relaxed));
    }
    let spooled: Vec<_> = queues.iter().filter(|q| q.has_spool()).collect();
    let spool: [(&str, Kind, &str, Get); 3] = [
        (
            "otel_sli_exporter_spooled_items_total",
            Kind::Counter,
            "Items written to the disk spool (the upstream was failing or its queue full).",
            |s| s.spooled_items.load(Relaxed),
        ),
        (
            "otel_sli_exporter_spool_items",
            Kind::Gauge,
            "Items in the disk spool, not yet delivered.",
            |s| s.spool_items.load(Relaxed),
        ),
        (
            "otel_sli_exporter_spool_size_bytes",
            Kind::Gauge,
            "Bytes of the disk spool's segment files.",
            |s| s.spool_bytes.load(Relaxed),
        ),
    ];
    for (name, kind, help, get) in spool {
        let mut f = family(out, name, kind, help);
        for q in &spooled {
            f.sample(&[("exporter", q.name())], get(q.stats()));
        }
    }
    let mut f = family(
        out,
        "otel_sli_exporter_last_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last delivery (0: none yet).",
    );
    for q in queues {
        let last = q.stats().last_success_unix.load(Relaxed);
        f.sample(&[("exporter", q.name())], last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessStats;

    #[test]
    fn process_families_are_written_and_unknown_ones_left_out() {
        let mut out = String::new();
        process(
            &mut out,
            &ProcessStats {
                cpu_seconds: Some(18.01),
                resident_bytes: Some(49_369_088),
                virtual_bytes: None,
                open_fds: Some(12),
                max_fds: Some(1024),
                start_time_seconds: Some(1_700_050_484.41),
            },
        );
        assert_eq!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 18.01\n\
             # HELP process_open_fds Number of open file descriptors.\n\
             # TYPE process_open_fds gauge\nprocess_open_fds 12\n\
             # HELP process_max_fds Maximum number of open file descriptors.\n\
             # TYPE process_max_fds gauge\nprocess_max_fds 1024\n\
             # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 49369088\n\
             # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
             # TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1700050484.41\n"
        );
        let mut out = String::new();
        process(&mut out, &ProcessStats::default());
        assert_eq!(out, "", "nothing known, nothing written");
    }
}
