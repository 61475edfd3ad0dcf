//! The validated configuration as a whole: the document read and expanded by `config`,
//! each section validated (the SLO sections by `slo::config`, the exporters' by their own
//! modules), defaults applied, and runtime types built once. Every error names the key path
//! and the reason.

pub mod flags;
pub mod links;
pub mod listeners;
pub mod raw;

use crate::completeness::traces::TrackerConfig;
use crate::config::{env, invalid_key as invalid, units, ConfigError};
use crate::pipeline::PipelineOptions;
use crate::sli::classify::{
    grpc_code_by_name, label_name, span_kind_by_name, ClassifyConfig, FeatureTemplate, GRPC_CODES,
    RESERVED_LABELS,
};
use crate::sli::hist::Layout;
use crate::slo::config as slos;
use crate::slo::def::{CanaryConfig, SliKind, SloDef, SloSettings};
use raw::{RawConfig, RawStorage, StatusSpec};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default OTLP/gRPC listen address.
pub const DEFAULT_GRPC: &str = "127.0.0.1:4317";
/// Default OTLP/HTTP listen address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4318";
/// Default admin listen address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9464";
/// Default exported latency bucket bounds, seconds (the OpenTelemetry HTTP semantic
/// conventions' advisory bounds).
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A listener.
#[derive(Clone, Debug)]
pub struct Listen {
    /// `host:port` to bind.
    pub endpoint: String,
    /// Largest accepted message or body, bytes, after decompression.
    pub max_bytes: usize,
}

/// Validated completeness settings.
#[derive(Clone, Copy, Debug)]
pub struct CompletenessConfig {
    /// Time after a trace's last span before it is judged.
    pub trace_timeout: Duration,
    /// Most traces tracked at once, all shards together.
    pub max_traces: usize,
    /// Most spans tracked per trace.
    pub max_spans_per_trace: usize,
    /// Bytes for trace tracking, all shards together.
    pub max_memory: u64,
}

/// Default `completeness.max_memory`.
pub const DEFAULT_TRACKING_MEMORY: u64 = 32 << 20;

/// Where the memory budget comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryLimit {
    /// 80% of the cgroup's memory limit, when there is one (the default).
    FromCgroup,
    /// No budget (`limits.memory_mib: 0`).
    Off,
    /// A budget of this many bytes.
    Bytes(u64),
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// OTLP/gRPC receiver.
    pub grpc: Listen,
    /// OTLP/HTTP receiver.
    pub http: Listen,
    /// Connection limits and TLS of the receivers and the admin server.
    pub listeners: listeners::Listeners,
    /// Admin server address.
    pub admin: String,
    /// Bearer token both OTLP receivers require; `None`: none.
    pub receivers_auth: Option<crate::auth::Token>,
    /// Bearer token `/metrics` and `/api/*` require; `None`: none.
    pub admin_auth: Option<crate::auth::Token>,
    /// Pipeline settings.
    pub pipeline: PipelineOptions,
    /// What readers judge data quality by (`completeness.silence_after`, `min_events`,
    /// `coverage_target`).
    pub thresholds: crate::report::Thresholds,
    /// Classification rules.
    pub classify: ClassifyConfig,
    /// Histogram layout.
    pub layout: Layout,
    /// Exported histogram bounds, seconds, ascending.
    pub buckets: Vec<f64>,
    /// Series limit.
    pub max_series: usize,
    /// Memory budget (`limits.memory_mib`).
    pub memory: MemoryLimit,
    /// Idle time after which a series is dropped; `None`: never.
    pub series_expiry: Option<Duration>,
    /// Keep example requests per series (`sli.exemplars.enabled`).
    pub exemplars: bool,
    /// Trace-structure tracking; `None` when disabled.
    pub completeness: Option<CompletenessConfig>,
    /// Log filter.
    pub log_level: String,
    /// Service level objectives.
    pub slos: Vec<SloDef>,
    /// Settings shared by every SLO.
    pub slo: SloSettings,
    /// Canary analysis; `None` when off.
    pub canary: Option<CanaryConfig>,
    /// Persistent state.
    pub storage: StorageConfig,
    /// Things that are valid but probably not what was meant (printed by `validate`,
    /// logged at start).
    pub warnings: Vec<String>,
    /// Raw pass-through upstreams.
    pub forward: Vec<crate::export::forward::ForwardConfig>,
    /// Prometheus remote write of the derived metrics.
    pub remote_write: Option<crate::export::remote_write::RemoteWriteConfig>,
    /// OTLP metrics export of the derived metrics.
    pub otlp_metrics: Option<crate::export::otlp_metrics::OtlpMetricsConfig>,
    /// `links.trace_url`: URL template of a trace at the user's tracing tool, holding
    /// `{trace_id}` and/or `{span_id}`; `None`: the dashboard shows ids without links.
    pub trace_url: Option<String>,
    /// Feature-flag cohorts (`flags:`); `None` when off.
    pub flags: Option<crate::pipeline::FlagOptions>,
}

impl Config {
    /// Adds SLOs defined elsewhere (OpenSLO documents): names must stay unique, and latency
    /// thresholds become exported bucket bounds like those of the file's own SLOs.
    pub fn add_slos(&mut self, extra: Vec<SloDef>, source: &str) -> Result<(), ConfigError> {
        if self.slos.len() + extra.len() > slos::MAX_SLOS {
            return Err(invalid(
                source,
                format!("more than {} SLOs in all", slos::MAX_SLOS),
            ));
        }
        for s in extra {
            if self.slos.iter().any(|o| o.name == s.name) {
                return Err(invalid(
                    source,
                    format!("SLO name {:?} is already defined", s.name),
                ));
            }
            self.slos.push(s);
        }
        add_thresholds(&mut self.buckets, &self.slos);
        self.warnings = slos::warnings(&self.slos, &self.slo);
        Ok(())
    }
}

/// Makes every latency SLO threshold an exact bucket bound.
fn add_thresholds(buckets: &mut Vec<f64>, slos: &[SloDef]) {
    for t in slos.iter().filter_map(|s| match s.sli {
        SliKind::Latency { threshold } => Some(threshold.as_secs_f64()),
        SliKind::Availability => None,
    }) {
        if !buckets.contains(&t) {
            buckets.push(t);
        }
    }
    buckets.sort_by(f64::total_cmp);
}

impl Default for Config {
    fn default() -> Self {
        // The empty document is valid by construction; this cannot fail.
        match from_raw(RawConfig::default()) {
            Ok(c) => c,
            Err(e) => unreachable!("embedded defaults are invalid: {e}"),
        }
    }
}

/// Reads, expands and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, |k| std::env::var(k).ok())
}

/// Expands and validates configuration text.
pub fn parse(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let expanded = env::expand(text, lookup)?;
    let raw: RawConfig = if expanded.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_norway::Deserializer::from_str(&expanded);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::Parse {
                path: if path == "." {
                    "(document)".into()
                } else {
                    path
                },
                reason: e.into_inner().to_string(),
            }
        })?
    };
    from_raw(raw)
}

/// A bearer token from `receivers.auth` or `admin.auth` (at `at`). Errors name the key and
/// the file, never the token.
fn auth(at: &str, raw: Option<raw::RawAuth>) -> Result<Option<crate::auth::Token>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let secret = match (raw.bearer_token, raw.bearer_token_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                at,
                "give bearer_token or bearer_token_file, not both",
            ))
        }
        (None, None) => {
            return Err(invalid(at, "needs bearer_token or bearer_token_file"));
        }
        (Some(t), None) => t,
        (None, Some(f)) => std::fs::read_to_string(&f).map_err(|e| {
            invalid(
                &format!("{at}.bearer_token_file"),
                format!("cannot read {f:?}: {e}"),
            )
        })?,
    };
    crate::auth::Token::new(&secret)
        .map(Some)
        .ok_or_else(|| invalid(at, "the token is empty"))
}

fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
    let listeners = listeners::listeners(&raw.receivers, &raw.admin)?;
    let (grpc, http) = receivers(&raw.receivers)?;
    let admin = endpoint("admin.endpoint", raw.admin.endpoint, DEFAULT_ADMIN)?;
    let receivers_auth = auth("receivers.auth", raw.receivers.auth)?;
    let admin_auth = auth("admin.auth", raw.admin.auth)?;
    let mut pipeline = pipeline_options(raw.pipeline)?;
    let sli = raw.sli;
    let mut classify = classify_config(
        sli.entry_span_kinds,
        sli.feature_rules,
        sli.dimensions,
        sli.outcome,
    )?;
    let limits = limits(raw.limits, &mut classify)?;
    let (completeness, thresholds) = completeness(raw.completeness, &mut pipeline)?;
    let (layout, mut buckets) = latency(sli.latency)?;
    let slos = slos::slos(&raw.slos, "slos")?;
    add_thresholds(&mut buckets, &slos);
    let slo = slos::settings(raw.slo)?;
    pipeline.slo = slo.clone();
    let canary = slos::canary(raw.canary)?;
    if let Some(c) = &canary {
        canary_dimension(c, &mut classify)?;
    }
    let storage = storage(raw.storage)?;
    let (forward, remote_write, otlp_metrics) = exporters(&raw.forward, &raw.exporters, &storage)?;
    let trace_url = links::trace_url(raw.links)?;
    let mut flags = flags::flags(raw.flags)?;
    if let Some(f) = &mut flags {
        f.stats = canary.clone().unwrap_or_default();
    }
    classify.flags = flags.is_some();
    pipeline.flags = flags.clone();

    // Check the rules compile (attribute count) now rather than at start-up.
    crate::sli::classify::Classifier::new(classify.clone())
        .map_err(|e| invalid("sli.feature_rules", e))?;

    Ok(Config {
        grpc,
        http,
        listeners,
        admin,
        receivers_auth,
        admin_auth,
        pipeline,
        thresholds,
        classify,
        layout,
        buckets,
        max_series: limits.max_series,
        memory: limits.memory,
        series_expiry: limits.series_expiry,
        exemplars: sli.exemplars.enabled.unwrap_or(true),
        completeness,
        log_level: raw.log.level.unwrap_or_else(|| "info".into()),
        warnings: slos::warnings(&slos, &slo),
        forward,
        remote_write,
        otlp_metrics,
        slos,
        slo,
        canary,
        storage,
        trace_url,
        flags,
    })
}

/// The OTLP receivers' addresses and size limits (`receivers.otlp_grpc`, `.otlp_http`).
fn receivers(r: &raw::RawReceivers) -> Result<(Listen, Listen), ConfigError> {
    let grpc = Listen {
        endpoint: endpoint(
            "receivers.otlp_grpc.endpoint",
            r.otlp_grpc.endpoint.clone(),
            DEFAULT_GRPC,
        )?,
        max_bytes: size(
            "receivers.otlp_grpc.max_recv_msg_size",
            r.otlp_grpc.max_recv_msg_size,
            4 << 20,
        )?,
    };
    let http = Listen {
        endpoint: endpoint(
            "receivers.otlp_http.endpoint",
            r.otlp_http.endpoint.clone(),
            DEFAULT_HTTP,
        )?,
        max_bytes: size(
            "receivers.otlp_http.max_request_body_size",
            r.otlp_http.max_request_body_size,
            20 << 20,
        )?,
    };
    Ok((grpc, http))
}

/// `pipeline:`. Trace tracking, clock skew and the SLO settings are filled in later by
/// their own sections.
fn pipeline_options(p: raw::RawPipeline) -> Result<PipelineOptions, ConfigError> {
    let shards = match p.shards {
        None | Some(0) => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(n) if n > 1024 => return Err(invalid("pipeline.shards", "at most 1024")),
        Some(n) => n,
    };
    let queue_capacity = p.queue_capacity.unwrap_or(1024);
    if queue_capacity == 0 {
        return Err(invalid("pipeline.queue_capacity", "must be at least 1"));
    }
    let flush_interval = p.flush_interval.map_or(Duration::from_secs(1), |d| d.0);
    if flush_interval < Duration::from_millis(10) || flush_interval > Duration::from_secs(60) {
        return Err(invalid(
            "pipeline.flush_interval",
            "must be between 10ms and 60s",
        ));
    }
    let retry_after = p.retry_after.map_or(Duration::from_secs(1), |d| d.0);
    Ok(PipelineOptions {
        shards,
        queue_capacity,
        flush_interval,
        retry_after,
        traces: None,
        max_clock_skew: Duration::from_secs(3600),
        slo: SloSettings::default(),
        flags: None,
    })
}

/// `sli.entry_span_kinds`, `sli.feature_rules`, `sli.dimensions` and `sli.outcome`: the
/// classification rules.
fn classify_config(
    kinds: Option<Vec<String>>,
    rules: Option<Vec<String>>,
    dims: Option<Vec<String>>,
    o: raw::RawOutcome,
) -> Result<ClassifyConfig, ConfigError> {
    let mut classify = ClassifyConfig::default();
    if let Some(kinds) = kinds {
        if kinds.is_empty() {
            return Err(invalid(
                "sli.entry_span_kinds",
                "must name at least one kind",
            ));
        }
        classify.entry_kinds = 0;
        for (i, k) in kinds.iter().enumerate() {
            let kind = span_kind_by_name(k).ok_or_else(|| {
                invalid(
                    &format!("sli.entry_span_kinds[{i}]"),
                    format!("unknown span kind {k:?} (use server, consumer, client, producer or internal)"),
                )
            })?;
            classify.entry_kinds |= 1 << kind;
        }
    }
    if let Some(rules) = rules {
        if rules.is_empty() {
            return Err(invalid("sli.feature_rules", "must have at least one rule"));
        }
        classify.feature_rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                FeatureTemplate::parse(r)
                    .map_err(|e| invalid(&format!("sli.feature_rules[{i}]"), e))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(dims) = dims {
        for (i, d) in dims.iter().enumerate() {
            if d.is_empty() {
                return Err(invalid(
                    &format!("sli.dimensions[{i}]"),
                    "empty attribute name",
                ));
            }
            if d == "service.name" {
                return Err(invalid(
                    &format!("sli.dimensions[{i}]"),
                    "service.name is always a dimension (label `service`)",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in dims.iter().enumerate() {
            let label = label_name(d);
            let path = format!("sli.dimensions[{i}]");
            if RESERVED_LABELS.contains(&label.as_str()) || label.starts_with("__") {
                return Err(invalid(
                    &path,
                    format!("{d:?} would be exported as label {label:?}, which is reserved"),
                ));
            }
            if !seen.insert(label.clone()) {
                return Err(invalid(
                    &path,
                    format!("{d:?} would be exported as label {label:?}, like another dimension"),
                ));
            }
        }
        classify.dimensions = dims;
    }
    if let Some(b) = o.status_error_is_bad {
        classify.status_error_is_bad = b;
    }
    if let Some(specs) = o.http_bad_status {
        classify.http_bad = Box::new([false; 1000]);
        for (i, s) in specs.iter().enumerate() {
            let (lo, hi) = status_range(s)
                .map_err(|e| invalid(&format!("sli.outcome.http_bad_status[{i}]"), e))?;
            for c in lo..=hi {
                if let Some(b) = classify.http_bad.get_mut(usize::from(c)) {
                    *b = true;
                }
            }
        }
    }
    if let Some(codes) = o.grpc_bad_codes {
        classify.grpc_bad = 0;
        for (i, c) in codes.iter().enumerate() {
            let code = grpc_code_by_name(c).ok_or_else(|| {
                invalid(
                    &format!("sli.outcome.grpc_bad_codes[{i}]"),
                    format!("unknown gRPC code {c:?} (one of {})", GRPC_CODES.join(", ")),
                )
            })?;
            classify.grpc_bad |= 1 << code;
        }
    }
    Ok(classify)
}

/// What `limits:` sets besides the label length (which goes into the classification rules).
struct Limits {
    memory: MemoryLimit,
    max_series: usize,
    series_expiry: Option<Duration>,
}

/// `limits:`.
fn limits(limits: raw::RawLimits, classify: &mut ClassifyConfig) -> Result<Limits, ConfigError> {
    classify.max_label_bytes = limits.max_label_bytes.unwrap_or(256);
    if classify.max_label_bytes < 16 || classify.max_label_bytes > 4096 {
        return Err(invalid(
            "limits.max_label_bytes",
            "must be between 16 and 4096",
        ));
    }
    let memory = match limits.memory_mib {
        None => MemoryLimit::FromCgroup,
        Some(0) => MemoryLimit::Off,
        Some(mib) if mib < 16 => {
            return Err(invalid(
                "limits.memory_mib",
                "must be 0 (no budget) or at least 16",
            ))
        }
        Some(mib) => MemoryLimit::Bytes(
            mib.checked_mul(1 << 20)
                .ok_or_else(|| invalid("limits.memory_mib", "too large"))?,
        ),
    };
    let max_series = limits.max_series.unwrap_or(10_000);
    if max_series == 0 {
        return Err(invalid("limits.max_series", "must be at least 1"));
    }
    let series_expiry = limits
        .series_expiry
        .map_or(Some(Duration::from_secs(3600)), |d| {
            (!d.0.is_zero()).then_some(d.0)
        });
    if series_expiry.is_some_and(|d| d < Duration::from_secs(60)) {
        return Err(invalid(
            "limits.series_expiry",
            "must be 0s (never) or at least 1m",
        ));
    }

    Ok(Limits {
        memory,
        max_series,
        series_expiry,
    })
}

/// `completeness:`: trace tracking (into the pipeline options), the clock skew allowed, and
/// the thresholds readers judge data quality by.
fn completeness(
    c: raw::RawCompleteness,
    pipeline: &mut PipelineOptions,
) -> Result<(Option<CompletenessConfig>, crate::report::Thresholds), ConfigError> {
    let completeness = if c.enabled.unwrap_or(true) {
        let trace_timeout = c.trace_timeout.map_or(Duration::from_secs(30), |d| d.0);
        if trace_timeout < Duration::from_secs(1) || trace_timeout > Duration::from_secs(3600) {
            return Err(invalid(
                "completeness.trace_timeout",
                "must be between 1s and 1h",
            ));
        }
        let max_traces = c.max_traces.unwrap_or(200_000);
        if max_traces == 0 {
            return Err(invalid("completeness.max_traces", "must be at least 1"));
        }
        let max_spans_per_trace = c.max_spans_per_trace.unwrap_or(1000);
        if max_spans_per_trace == 0 {
            return Err(invalid(
                "completeness.max_spans_per_trace",
                "must be at least 1",
            ));
        }
        let max_memory = c.max_memory.map_or(DEFAULT_TRACKING_MEMORY, |b| b.0);
        if max_memory < 1 << 20 {
            return Err(invalid("completeness.max_memory", "must be at least 1MiB"));
        }
        Some(CompletenessConfig {
            trace_timeout,
            max_traces,
            max_spans_per_trace,
            max_memory,
        })
    } else {
        None
    };

    let mut thresholds = crate::report::Thresholds::default();
    if let Some(d) = c.silence_after {
        if d.0 < Duration::from_secs(10) {
            return Err(invalid(
                "completeness.silence_after",
                "must be at least 10s",
            ));
        }
        thresholds.silence_after = d.0;
    }
    if let Some(t) = c.coverage_target {
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid(
                "completeness.coverage_target",
                "must be between 0 and 1",
            ));
        }
        thresholds.coverage_target = t;
    }
    if let Some(n) = c.min_events {
        thresholds.min_events = n;
    }
    if let Some(d) = c.max_clock_skew {
        if d.0 < Duration::from_secs(1) {
            return Err(invalid(
                "completeness.max_clock_skew",
                "must be at least 1s",
            ));
        }
        pipeline.max_clock_skew = d.0;
    }
    pipeline.traces = completeness.map(|c| TrackerConfig {
        timeout_nanos: u64::try_from(c.trace_timeout.as_nanos()).unwrap_or(u64::MAX),
        max_traces: c.max_traces.div_ceil(pipeline.shards).max(1),
        max_spans_per_trace: c.max_spans_per_trace,
        max_bytes: usize::try_from(c.max_memory.div_ceil(pipeline.shards as u64))
            .unwrap_or(usize::MAX),
    });

    Ok((completeness, thresholds))
}

/// `sli.latency`: the histogram layout and the exported bucket bounds.
fn latency(l: raw::RawLatency) -> Result<(Layout, Vec<f64>), ConfigError> {
    let digits = l.significant_digits.unwrap_or(2);
    let layout = Layout::new(digits)
        .map_err(|e| invalid("sli.latency.significant_digits", e.to_string()))?;
    let buckets = l.buckets.unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
    if buckets.is_empty() {
        return Err(invalid(
            "sli.latency.buckets",
            "must have at least one bound",
        ));
    }
    for (i, w) in buckets.windows(2).enumerate() {
        if w[0] >= w[1] {
            return Err(invalid(
                &format!("sli.latency.buckets[{}]", i + 1),
                "bounds must be strictly increasing",
            ));
        }
    }
    if let Some((i, b)) = buckets
        .iter()
        .enumerate()
        .find(|(_, b)| !b.is_finite() || **b <= 0.0)
    {
        return Err(invalid(
            &format!("sli.latency.buckets[{i}]"),
            format!("{b} is not a positive number of seconds"),
        ));
    }

    Ok((layout, buckets))
}

/// Makes the canary's attribute a series dimension, unless its label would clash.
fn canary_dimension(c: &CanaryConfig, classify: &mut ClassifyConfig) -> Result<(), ConfigError> {
    // Cohorts are told apart by a series dimension.
    if !classify.dimensions.contains(&c.attribute) {
        let label = label_name(&c.attribute);
        if RESERVED_LABELS.contains(&label.as_str())
            || label.starts_with("__")
            || classify.dimensions.iter().any(|d| label_name(d) == label)
        {
            return Err(invalid(
                "canary.attribute",
                format!(
                    "{:?} would be exported as label {label:?}, which is reserved or taken by a dimension",
                    c.attribute
                ),
            ));
        }
        classify.dimensions.push(c.attribute.clone());
    }
    Ok(())
}

type Exporters = (
    Vec<crate::export::forward::ForwardConfig>,
    Option<crate::export::remote_write::RemoteWriteConfig>,
    Option<crate::export::otlp_metrics::OtlpMetricsConfig>,
);

/// Validates `forward:` and `exporters:`, with their spools under `storage.directory`.
fn exporters(
    forward: &[crate::export::forward::RawForward],
    raw: &raw::RawExporters,
    storage: &StorageConfig,
) -> Result<Exporters, ConfigError> {
    use crate::export::delivery::spool;
    let dir = storage.directory.as_deref();
    let mut spool_dirs = std::collections::HashMap::new();
    let mut fwd = Vec::with_capacity(forward.len());
    for (i, f) in forward.iter().enumerate() {
        let at = format!("forward[{i}]");
        let mut c = crate::export::forward::validate(f, &at)?;
        let protocol = f.protocol.as_deref().unwrap_or("grpc");
        let name = spool::forward_dir_name(&c.client.endpoint, protocol);
        c.spool = spool::validate(f.spool.as_ref(), &format!("{at}.spool"), dir, &name)?;
        if c.spool.is_some() {
            if let Some(other) = spool_dirs.insert(name, i) {
                return Err(invalid(
                    &format!("{at}.spool"),
                    format!("forward[{other}] has the same endpoint and protocol and a spool too; their spools would mix"),
                ));
            }
        }
        fwd.push(c);
    }
    // An exporter's spool folder is named like its key under `exporters:`.
    let spool_of = |raw: Option<&crate::export::delivery::spool::RawSpool>, name: &str| {
        spool::validate(raw, &format!("exporters.{name}.spool"), dir, name)
    };
    let remote_write = raw
        .prometheus_remote_write
        .as_ref()
        .map(|r| {
            let mut c = crate::export::remote_write::validate(r)?;
            c.spool = spool_of(r.spool.as_ref(), crate::export::remote_write::QUEUE_NAME)?;
            Ok::<_, ConfigError>(c)
        })
        .transpose()?;
    let otlp_metrics = raw
        .otlp_metrics
        .as_ref()
        .map(|r| {
            let mut c = crate::export::otlp_metrics::validate(r)?;
            c.spool = spool_of(
                r.spool.as_ref(),
                crate::export::otlp_metrics::exporter::NAME,
            )?;
            Ok::<_, ConfigError>(c)
        })
        .transpose()?;
    Ok((fwd, remote_write, otlp_metrics))
}

fn endpoint(path: &str, value: Option<String>, default: &str) -> Result<String, ConfigError> {
    let v = value.unwrap_or_else(|| default.to_string());
    match v.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(v),
        _ => Err(invalid(
            path,
            format!("{v:?} is not host:port (for example 0.0.0.0:4317)"),
        )),
    }
}

fn size(path: &str, value: Option<units::ByteSize>, default: u64) -> Result<usize, ConfigError> {
    let v = value.map_or(default, |b| b.0);
    if v < 1024 {
        return Err(invalid(path, "must be at least 1KiB"));
    }
    usize::try_from(v).map_err(|_| invalid(path, "too large"))
}

fn status_range(s: &StatusSpec) -> Result<(u16, u16), String> {
    let check = |c: u16| {
        if (100..=999).contains(&c) {
            Ok(c)
        } else {
            Err(format!("{c} is not an HTTP status code"))
        }
    };
    match s {
        StatusSpec::Code(c) => check(*c).map(|c| (c, c)),
        StatusSpec::Text(t) => {
            let t = t.trim();
            if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
                let d: u16 = class
                    .parse()
                    .ok()
                    .filter(|d| (1..=9).contains(d))
                    .ok_or_else(|| format!("{t:?} is not a status class like 5xx"))?;
                return Ok((d * 100, d * 100 + 99));
            }
            if let Some((a, b)) = t.split_once('-') {
                let a = a
                    .trim()
                    .parse()
                    .map_err(|_| format!("{t:?} is not a range like 500-599"))?;
                let b = b
                    .trim()
                    .parse()
                    .map_err(|_| format!("{t:?} is not a range like 500-599"))?;
                let (a, b) = (check(a)?, check(b)?);
                if a > b {
                    return Err(format!("{t:?}: range is reversed"));
                }
                return Ok((a, b));
            }
            let c = t
                .parse()
                .map_err(|_| format!("{t:?} is not a status code, range or class"))?;
            check(c).map(|c| (c, c))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Config, ConfigError> {
        parse(text, |k| (k == "POD_IP").then(|| "10.1.2.3".to_string()))
    }

    #[test]
    fn empty_config_gives_defaults() {
        let c = p("").expect("defaults");
        assert_eq!(c.grpc.endpoint, DEFAULT_GRPC);
        assert_eq!(c.grpc.max_bytes, 4 << 20);
        assert_eq!(c.http.max_bytes, 20 << 20);
        assert_eq!(c.max_series, 10_000);
        assert_eq!(c.layout.significant_digits(), 2);
        assert!(c.pipeline.shards >= 1);
    }

    #[test]
    fn spools_live_under_storage_and_are_checked() {
        let c = p("storage: {directory: /var/lib/otel-sli}\nforward:\n  - endpoint: http://a:4317\n    spool: {}\n  - endpoint: http://b:4318\n    protocol: http\nexporters:\n  prometheus_remote_write:\n    endpoint: http://p:9090/api/v1/write\n    spool: {max_bytes: 2MiB}\n")
            .expect("valid");
        let fwd = c.forward[0].spool.as_ref().expect("forward spool");
        assert_eq!(
            fwd.max_bytes,
            crate::export::delivery::spool::DEFAULT_MAX_BYTES
        );
        assert!(
            fwd.dir
                .to_string_lossy()
                .starts_with("/var/lib/otel-sli/spool/forward-"),
            "{:?}",
            fwd.dir
        );
        assert!(c.forward[1].spool.is_none());
        let rw = c
            .remote_write
            .as_ref()
            .and_then(|r| r.spool.as_ref())
            .expect("rw spool");
        assert_eq!(rw.max_bytes, 2 << 20);
        assert_eq!(
            rw.dir,
            std::path::Path::new("/var/lib/otel-sli/spool/prometheus_remote_write")
        );
        // The folder follows the upstream, not its place in the list.
        let swapped = p("storage: {directory: /s}\nforward:\n  - endpoint: http://b:4318\n    protocol: http\n  - endpoint: http://a:4317\n    spool: {}\n")
            .expect("valid");
        let again =
            p("storage: {directory: /s}\nforward:\n  - endpoint: http://a:4317\n    spool: {}\n")
                .expect("valid");
        assert_eq!(
            swapped.forward[1].spool.as_ref().map(|s| &s.dir),
            again.forward[0].spool.as_ref().map(|s| &s.dir)
        );
        let cases = [
            ("forward:\n  - endpoint: http://a:4317\n    spool: {}\n", "forward[0].spool: needs storage.directory"),
            ("storage: {directory: /s}\nforward:\n  - endpoint: http://a:4317\n    spool: {max_bytes: 1KiB}\n", "forward[0].spool.max_bytes"),
            ("storage: {directory: /s}\nforward:\n  - endpoint: http://a:4317\n    spool: {}\n  - endpoint: http://a:4317\n    spool: {}\n", "forward[1].spool: forward[0] has the same endpoint"),
            ("storage: {directory: /s}\nforward:\n  - endpoint: http://a:4317\n    spool: {max_size: 1GiB}\n", "forward[0].spool"),
            ("exporters:\n  otlp_metrics:\n    endpoint: http://c:4317\n    spool: {}\n", "exporters.otlp_metrics.spool: needs storage.directory"),
        ];
        for (yaml, want) in cases {
            let msg = p(yaml).unwrap_err().to_string();
            assert!(msg.starts_with(want), "{yaml}: {msg}");
        }
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e = p("sli:\n  latency:\n    signifcant_digits: 2\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("sli.latency"), "{msg}");
        assert!(msg.contains("signifcant_digits"), "{msg}");
    }

    #[test]
    fn the_memory_budget_defaults_to_the_cgroup_and_is_checked() {
        assert_eq!(p("").unwrap().memory, MemoryLimit::FromCgroup);
        assert_eq!(
            p("limits: {memory_mib: 0}").unwrap().memory,
            MemoryLimit::Off
        );
        assert_eq!(
            p("limits: {memory_mib: 400}").unwrap().memory,
            MemoryLimit::Bytes(400 << 20)
        );
        let msg = p("limits: {memory_mib: 8}").unwrap_err().to_string();
        assert!(msg.starts_with("limits.memory_mib"), "{msg}");
        let msg = p("limits: {memory_mib: -1}").unwrap_err().to_string();
        assert!(msg.starts_with("limits.memory_mib"), "{msg}");
    }

    #[test]
    fn wrong_type_names_its_path() {
        let msg = p("limits:\n  max_series: lots\n").unwrap_err().to_string();
        assert!(msg.starts_with("limits.max_series"), "{msg}");
    }

    #[test]
    fn invalid_values_name_their_path() {
        let cases = [
            (
                "sli:\n  latency:\n    significant_digits: 7\n",
                "sli.latency.significant_digits",
            ),
            (
                "sli:\n  latency:\n    buckets: [1, 0.5]\n",
                "sli.latency.buckets[1]",
            ),
            (
                "sli:\n  entry_span_kinds: [server, sideways]\n",
                "sli.entry_span_kinds[1]",
            ),
            (
                "sli:\n  feature_rules: ['{http.route']\n",
                "sli.feature_rules[0]",
            ),
            (
                "sli:\n  outcome:\n    grpc_bad_codes: [BROKEN]\n",
                "sli.outcome.grpc_bad_codes[0]",
            ),
            (
                "sli:\n  outcome:\n    http_bad_status: ['6xx-']\n",
                "sli.outcome.http_bad_status[0]",
            ),
            (
                "receivers:\n  otlp_grpc:\n    endpoint: nowhere\n",
                "receivers.otlp_grpc.endpoint",
            ),
            (
                "receivers:\n  otlp_http:\n    max_request_body_size: 10\n",
                "receivers.otlp_http.max_request_body_size",
            ),
            (
                "pipeline:\n  flush_interval: 1h\n",
                "pipeline.flush_interval",
            ),
            ("sli:\n  dimensions: [quantile]\n", "sli.dimensions[0]"),
            ("sli:\n  dimensions: [a.b, a-b]\n", "sli.dimensions[1]"),
            ("sli:\n  dimensions: [__name__]\n", "sli.dimensions[0]"),
        ];
        for (text, path) in cases {
            let msg = p(text).unwrap_err().to_string();
            assert!(msg.starts_with(path), "{text:?} gave {msg}");
        }
    }

    #[test]
    fn env_expansion_and_overrides() {
        let c = p(
            "receivers:\n  otlp_grpc:\n    endpoint: ${env:POD_IP}:4317\n    max_recv_msg_size: 8MiB\n\
             sli:\n  outcome:\n    http_bad_status: [429, '5xx']\n  dimensions: [service.version]\n",
        )
        .expect("valid");
        assert_eq!(c.grpc.endpoint, "10.1.2.3:4317");
        assert_eq!(c.grpc.max_bytes, 8 << 20);
        assert!(c.classify.http_bad[429] && c.classify.http_bad[503] && !c.classify.http_bad[404]);
        assert_eq!(c.classify.dimensions, ["service.version"]);
        assert!(p("admin:\n  endpoint: ${MISSING}\n").is_err());
    }

    #[test]
    fn slo_errors_name_the_slo_and_key_and_unreachable_rules_warn() {
        let err = |t: &str| p(t).unwrap_err().to_string();
        let e =
            err("slos:\n  - {name: lat, service: s, feature: f, sli: latency, objective: 99}\n");
        assert!(e.starts_with("slos[0](lat).threshold: required"), "{e}");
        let e = err("slos:\n  - {name: a, service: s, feature: f, objective: 100}\n");
        assert!(e.starts_with("slos[0](a).objective"), "{e}");
        let e = err("slos:\n  - {name: a, service: s, feature: f, objective: 99, window: 5m}\n");
        assert!(e.starts_with("slos[0](a).window"), "{e}");
        let e = err("slos:\n  - {name: a, service: s, feature: f, objective: 99}\n  - {name: a, service: s, feature: g, objective: 99}\n");
        assert!(e.starts_with("slos[1].name") && e.contains("twice"), "{e}");
        let e = err("slo:\n  alerts:\n    - {severity: page, long_window: 1h, short_window: 2h, burn_rate: 2}\n");
        assert!(e.starts_with("slo.alerts[0].short_window"), "{e}");
        let e =
            err("slos:\n  - {name: a, service: s, feature: f, objective: 99, labels: {slo: x}}\n");
        assert!(e.contains("labels.slo"), "{e}");

        let c = p("slos:\n  - {name: lat, service: s, feature: f, sli: latency, threshold: 300ms, objective: 99.9}\n").unwrap();
        assert!(c.buckets.contains(&0.3), "threshold is a bucket bound");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert!((c.slos[0].objective - 0.999).abs() == 0.0);
        // At 90% the highest burn rate is 10: the 14.4 page rule can never fire.
        let c = p("slos:\n  - {name: a, service: s, feature: f, objective: 90}\n").unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("can never fire"));
    }

    #[test]
    fn links_hold_a_checked_trace_url_template() {
        assert_eq!(p("").unwrap().trace_url, None);
        let c = p(
            "links:\n  trace_url: \"https://tracing.example/trace/{trace_id}?span={span_id}\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.trace_url.as_deref(),
            Some("https://tracing.example/trace/{trace_id}?span={span_id}")
        );
        for (yaml, want) in [
            (
                "links:\n  trace_url: \"javascript:alert('{trace_id}')\"\n",
                "links.trace_url: ",
            ),
            (
                "links:\n  trace_url: \"https://tracing.example/\"\n",
                "links.trace_url: ",
            ),
            ("links:\n  trace_url: 42\n", "links.trace_url"),
            (
                "links:\n  span_url: \"https://t.example/{span_id}\"\n",
                "links",
            ),
        ] {
            let msg = p(yaml).unwrap_err().to_string();
            assert!(msg.starts_with(want), "{yaml}: {msg}");
        }
        let msg = p("links:\n  span_url: x\n").unwrap_err().to_string();
        assert!(msg.contains("span_url"), "{msg}");
    }

    #[test]
    fn status_specs() {
        assert_eq!(status_range(&StatusSpec::Code(429)), Ok((429, 429)));
        assert_eq!(
            status_range(&StatusSpec::Text("5xx".into())),
            Ok((500, 599))
        );
        assert_eq!(
            status_range(&StatusSpec::Text("500-504".into())),
            Ok((500, 504))
        );
        assert!(status_range(&StatusSpec::Text("504-500".into())).is_err());
        assert!(status_range(&StatusSpec::Code(42)).is_err());
    }
}

/// Validated `storage:`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageConfig {
    /// Directory of the state file; `None`: state is not persisted.
    pub directory: Option<PathBuf>,
    /// Time between state-file writes.
    pub interval: Duration,
}

/// Validates `storage:`.
pub fn storage(raw: RawStorage) -> Result<StorageConfig, ConfigError> {
    let interval = raw.interval.map_or(Duration::from_secs(60), |d| d.0);
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
        return Err(invalid("storage.interval", "must be between 1s and 1h"));
    }
    let directory = match raw.directory {
        Some(d) if d.is_empty() => {
            return Err(invalid(
                "storage.directory",
                "empty; remove the key to keep state in memory only",
            ))
        }
        d => d.map(PathBuf::from),
    };
    Ok(StorageConfig {
        directory,
        interval,
    })
}
