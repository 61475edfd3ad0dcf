//! The configuration file as users write it, at its top level and in the sections
//! `settings` validates itself: plain serde structs, unknown keys rejected, every field
//! documented with its default. A component's own section is defined beside its validator
//! (`forward:` in `export::forward`, `exporters.*` in their exporters, `slos:`/`slo:`/
//! `canary:` in `slo::config`, `spool:` in `export::delivery::spool`, a client's `tls:` in
//! `export::upstream::settings`). `docs/configuration.md` mirrors these comments. Nothing
//! here is interpreted; `settings::from_raw` turns it into runtime settings.

use crate::config::units::{ByteSize, HumanDuration};
use crate::export::forward::RawForward;
use crate::export::otlp_metrics::config::RawOtlpMetrics;
use crate::export::remote_write::config::RawRemoteWrite;
use crate::slo::config::{RawCanary, RawSlo, RawSloSettings};
use serde::Deserialize;

/// Top level of `otel-sli.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// OTLP receivers.
    pub receivers: RawReceivers,
    /// Admin HTTP server: `/metrics`, `/api/v1/*`, `/healthz`, `/readyz`.
    pub admin: RawAdmin,
    /// Sharded processing pipeline.
    pub pipeline: RawPipeline,
    /// How spans become SLIs.
    pub sli: RawSli,
    /// Telemetry-completeness checks.
    pub completeness: RawCompleteness,
    /// Resource limits.
    pub limits: RawLimits,
    /// Log output.
    pub log: RawLog,
    /// Service level objectives, evaluated on the spans received.
    pub slos: Vec<RawSlo>,
    /// Settings shared by every SLO.
    pub slo: RawSloSettings,
    /// Canary-versus-baseline analysis (`/api/v1/canary`).
    pub canary: RawCanary,
    /// Where state that must survive a restart (SLO windows) is kept.
    pub storage: RawStorage,
    /// Raw pass-through: every accepted request is forwarded unchanged to these upstreams.
    pub forward: Vec<RawForward>,
    /// Exporters of the derived SLI/SLO metrics.
    pub exporters: RawExporters,
    /// Links from the dashboard to other tools (a trace at the tracing vendor).
    pub links: RawLinks,
    /// Feature-flag cohorts: SLIs per flag variant and verdicts per flag rollout.
    pub flags: super::flags::RawFlags,
}

/// `receivers:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReceivers {
    /// `receivers.otlp_grpc`: OTLP over gRPC.
    pub otlp_grpc: RawGrpc,
    /// `receivers.otlp_http`: OTLP over HTTP (protobuf and JSON).
    pub otlp_http: RawHttp,
    /// `receivers.auth`: a bearer token both receivers require. Unset: none.
    pub auth: Option<RawAuth>,
}

/// `receivers.auth:` and `admin.auth:`: requests must carry `Authorization: Bearer <token>`.
/// Give exactly one of the two keys. Refused requests get HTTP 401 / gRPC `UNAUTHENTICATED`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// The token, usually from the environment: `"${env:OTEL_SLI_TOKEN}"`.
    pub bearer_token: Option<String>,
    /// A file holding the token (e.g. a mounted Secret); a final newline is ignored.
    pub bearer_token_file: Option<String>,
}

/// `receivers.otlp_grpc:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGrpc {
    /// Listen address. Default `127.0.0.1:4317`. In a pod: `0.0.0.0:4317`.
    pub endpoint: Option<String>,
    /// Largest accepted gRPC message after decompression. Default `4MiB`.
    /// Larger messages get `RESOURCE_EXHAUSTED`.
    pub max_recv_msg_size: Option<ByteSize>,
    /// Time an Export call may take from its headers to its answer; a client that has not
    /// sent its whole message by then gets `CANCELLED` (retryable). Default `30s`; `1s` to
    /// `10m`.
    pub request_timeout: Option<HumanDuration>,
    /// Open connections at most; beyond it new connections are closed at once and counted
    /// in `otel_sli_connections_refused_total{listener="otlp_grpc"}`. Default `4096`.
    pub max_connections: Option<usize>,
    /// Open connections at most from one client address (one pod, or a whole node's
    /// host-network pods); beyond it its new connections are closed at once and counted.
    /// Default `256` (or `max_connections` when lower); `0`: no such limit.
    pub max_connections_per_client: Option<usize>,
    /// Serve TLS. Unset: plaintext (h2c).
    pub tls: Option<RawServerTls>,
}

/// `receivers.otlp_http:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    /// Listen address. Default `127.0.0.1:4318`.
    pub endpoint: Option<String>,
    /// Largest accepted request body after decompression. Default `20MiB`. Larger bodies get 413.
    pub max_request_body_size: Option<ByteSize>,
    /// Time a request's headers may take to arrive (the connection is closed after it), and
    /// separately its body (answered 408). Default `30s`; `1s` to `10m`.
    pub read_timeout: Option<HumanDuration>,
    /// Open connections at most; beyond it new connections are closed at once and counted
    /// in `otel_sli_connections_refused_total{listener="otlp_http"}`. Default `4096`.
    pub max_connections: Option<usize>,
    /// Open connections at most from one client address (one pod, or a whole node's
    /// host-network pods); beyond it its new connections are closed at once and counted.
    /// Default `256` (or `max_connections` when lower); `0`: no such limit.
    pub max_connections_per_client: Option<usize>,
    /// Serve TLS (HTTPS). Unset: plaintext.
    pub tls: Option<RawServerTls>,
}

/// `admin:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Listen address of the admin server. Default `127.0.0.1:9464`.
    pub endpoint: Option<String>,
    /// `admin.auth`: a bearer token `/metrics` and `/api/*` require (`/healthz` and
    /// `/readyz` stay open for probes). Unset: none.
    pub auth: Option<RawAuth>,
    /// Serve TLS (HTTPS). Unset: plaintext.
    pub tls: Option<RawServerTls>,
}

/// `tls:` of a receiver or the admin server. The files are read again every
/// `reload_interval`; a change takes effect for new connections, and a change that does
/// not load is logged and the previous certificate kept.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServerTls {
    /// PEM certificate chain, leaf first. Required.
    pub cert_file: Option<String>,
    /// PEM private key of the certificate. Required.
    pub key_file: Option<String>,
    /// PEM CA certificates; when set, clients must present a certificate that chains to
    /// one of them (mutual TLS). Unset: no client certificate asked for.
    pub client_ca_file: Option<String>,
    /// How often the files are read for changes. Default `30s`; `1s` to `1h`.
    pub reload_interval: Option<HumanDuration>,
}

/// `pipeline:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPipeline {
    /// Number of shard workers, each owning a disjoint set of series. Default: number of CPUs.
    pub shards: Option<usize>,
    /// Batches each shard queue holds before receivers answer "retry later"
    /// (gRPC `UNAVAILABLE`, HTTP 503). Default `1024`.
    pub queue_capacity: Option<usize>,
    /// How often shards publish snapshots read by `/metrics` and the API. Default `1s`.
    pub flush_interval: Option<HumanDuration>,
    /// Delay suggested to clients in `RetryInfo` / `Retry-After` when queues are full. Default `1s`.
    pub retry_after: Option<HumanDuration>,
}

/// `sli:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSli {
    /// Span kinds that count as requests (entry spans). Default `[server, consumer]`.
    /// Values: `server`, `consumer`, `client`, `producer`, `internal`.
    pub entry_span_kinds: Option<Vec<String>>,
    /// Feature key rules, first match wins. Each is a template of `{attribute}` references
    /// and literal text; a rule matches when every referenced attribute is present (span
    /// attributes first, then resource attributes). `{span.name}` is the span name.
    /// Default:
    /// `["{feature.name}", "{http.request.method} {http.route}", "{http.method} {http.route}",
    ///   "{rpc.service}/{rpc.method}", "{messaging.operation.type} {messaging.destination.name}",
    ///   "{span.name}"]`.
    pub feature_rules: Option<Vec<String>>,
    /// Extra series dimensions (attribute names, looked up in span then resource attributes),
    /// exported as labels with `.` replaced by `_`. Default `[]`.
    /// Example: `[service.version, deployment.environment.name]`.
    pub dimensions: Option<Vec<String>>,
    /// Which requests are bad.
    pub outcome: RawOutcome,
    /// Latency histogram settings.
    pub latency: RawLatency,
    /// Example requests kept per series (docs/exemplars.md).
    pub exemplars: RawExemplars,
}

/// `sli.exemplars:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExemplars {
    /// Keep example requests per series: the latest sampled request of each latency bucket
    /// and the last 4 bad ones (trace id, span id, duration, outcome reason, end time),
    /// under 1 KiB per series with the default buckets. Default `true`.
    pub enabled: Option<bool>,
}

/// `sli.outcome:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOutcome {
    /// A span with status `ERROR` is bad. Default `true`.
    pub status_error_is_bad: Option<bool>,
    /// HTTP response status codes that make a SERVER span bad: integers (`429`), ranges
    /// (`"500-599"`) or classes (`"5xx"`). Read from `http.response.status_code` and the
    /// older `http.status_code`. Default `["5xx"]`.
    pub http_bad_status: Option<Vec<StatusSpec>>,
    /// gRPC status codes that make a server span bad, by name. Read from the integer
    /// `rpc.grpc.status_code` and the string `rpc.status_code` / `rpc.response.status_code`.
    /// Default `[UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS]`.
    pub grpc_bad_codes: Option<Vec<String>>,
}

/// One entry of `sli.outcome.http_bad_status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatusSpec {
    /// A single status code.
    Code(u16),
    /// `"5xx"` or `"500-599"` or `"429"`.
    Text(String),
}

/// `sli.latency:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLatency {
    /// HDR histogram precision in significant digits, 1 to 3. Default `2` (≤ 1% relative error).
    pub significant_digits: Option<u8>,
    /// Upper bounds in seconds of the exported `sli_latency_seconds` histogram buckets.
    /// Default: `[0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]`.
    pub buckets: Option<Vec<f64>>,
}

/// `completeness:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCompleteness {
    /// Track trace structure (orphan spans, missing roots). Default `true`.
    pub enabled: Option<bool>,
    /// How long after a trace's last span it is judged (late parents are normal: parents
    /// end, and are exported, after their children). Default `30s`.
    pub trace_timeout: Option<HumanDuration>,
    /// Most traces tracked at once across all shards; when full, the oldest is dropped
    /// unjudged and counted in `otel_sli_completeness_evicted_total`. Default `200000`.
    pub max_traces: Option<usize>,
    /// Most spans tracked per trace; further spans of a huge trace are counted, not
    /// tracked. Default `1000`.
    pub max_spans_per_trace: Option<usize>,
    /// Memory for trace tracking, all shards together: half for traces still waiting for a
    /// parent or root (the oldest is dropped unjudged, and counted, when it is spent), half
    /// for remembering judged traces so their late spans are not misjudged. At least
    /// `1MiB`. Default `32MiB`.
    pub max_memory: Option<ByteSize>,
    /// A service that sent spans, metrics or logs and then nothing for this long is
    /// reported silent. Default `5m`.
    pub silence_after: Option<HumanDuration>,
    /// Trace coverage (requests seen as spans ÷ requests counted by request metrics) below
    /// which a series has an `untraced_requests` gap and insufficient data. Default `0.9`.
    pub coverage_target: Option<f64>,
    /// An SLI whose window holds fewer requests than this reports `data_quality:
    /// "insufficient"` instead of `"ok"`. Default `10`.
    pub min_events: Option<u64>,
    /// A span whose end time is further than this from the time it arrives (in the future
    /// or the past) counts as an invalid span (clock skew). Default `1h`.
    pub max_clock_skew: Option<HumanDuration>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Most series kept at once. Spans of new keys beyond it are folded into one overflow
    /// series (`service="__overflow__", feature="__overflow__"`) and counted in
    /// `otel_sli_overflow_spans_total`. Default `10000`.
    pub max_series: Option<usize>,
    /// Longest kept label value in bytes; longer values are cut at a character boundary.
    /// Default `256`.
    pub max_label_bytes: Option<usize>,
    /// A series that received no request for this long is dropped (its counters start from
    /// zero if it comes back), freeing its place under `max_series`. `0s`: never.
    /// Default `1h`.
    pub series_expiry: Option<HumanDuration>,
    /// Memory budget in MiB. Above 90% of it (resident set size, read 10 times a second)
    /// receivers refuse new requests with the retryable answers (gRPC `UNAVAILABLE` +
    /// `RetryInfo`, HTTP 503 + `Retry-After`) until memory is back under it. Default: 80%
    /// of the memory limit of the process's cgroup (a container's limit), none without one.
    /// `0`: no budget.
    pub memory_mib: Option<u64>,
}

/// `log:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    /// Log filter (`error`, `warn`, `info`, `debug`, `trace`, or a `tracing` filter such as
    /// `otel_sli=debug`). Default `info`. `--log-level` and `RUST_LOG` override it.
    pub level: Option<String>,
}

/// `storage:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStorage {
    /// Directory for the SLO state file (`slo-state.json`), created if missing. Unset:
    /// SLO windows live in memory only and start empty after a restart. Default unset.
    pub directory: Option<String>,
    /// How often the state file is written (it is also written on shutdown). `1s` to `1h`.
    /// Default `1m`.
    pub interval: Option<HumanDuration>,
}

/// `links:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLinks {
    /// URL template of a trace at the tracing tool or vendor the traces go to; the dashboard
    /// links each example request's trace id to it. `http://` or `https://` and a host,
    /// holding `{trace_id}` and/or `{span_id}` (32 and 16 lower-case hex digits); any other
    /// brace must be written `%7B` / `%7D`. Example:
    /// `"http://jaeger:16686/trace/{trace_id}"`. Unset: the ids are shown with a copy button.
    pub trace_url: Option<String>,
}

/// `exporters:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawExporters {
    /// Prometheus remote write 1.0.
    pub prometheus_remote_write: Option<RawRemoteWrite>,
    /// OTLP metrics.
    pub otlp_metrics: Option<RawOtlpMetrics>,
}
