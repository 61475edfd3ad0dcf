//! The configuration file as users write it: plain serde structs, unknown keys rejected,
//! every field documented with its default. `docs/configuration.md` mirrors these comments.
//! Nothing here is interpreted; `super::validate` turns it into runtime settings.

use super::units::{ByteSize, HumanDuration};
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

/// One entry of `slos:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlo {
    /// Unique name, used as the `slo` label. Letters, digits, `.`, `_`, `:` and `-`. Required.
    pub name: Option<String>,
    /// `service.name` of the service. Required.
    pub service: Option<String>,
    /// Feature covered: an exact feature name or a glob (`*`, `?`). Required.
    pub feature: Option<String>,
    /// `availability` (good = not bad by the outcome rules) or `latency` (good = not bad
    /// and not slower than `threshold`). Default `availability`.
    pub sli: Option<String>,
    /// Latency SLOs only: the slowest good duration, e.g. `300ms`. Also added to the
    /// exported `sli_latency_seconds` bucket bounds so rules computed from it are exact.
    pub threshold: Option<HumanDuration>,
    /// Target percentage of good requests, e.g. `99.9`. Required; above 0 and below 100.
    pub objective: Option<f64>,
    /// Rolling window of the objective, `1h` to `90d`. Default `30d`.
    pub window: Option<HumanDuration>,
    /// Free text shown in the API and put on generated alerts.
    pub description: Option<String>,
    /// Extra labels for this SLO's metrics and generated rules.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `slo:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSloSettings {
    /// Spans that end longer ago than this when they arrive are counted in
    /// `otel_sli_late_spans_total` and not placed into SLO windows. `1m` to `6h`.
    /// Default `1h`.
    pub max_lateness: Option<HumanDuration>,
    /// Multi-window burn-rate alert rules. Default: the SRE workbook's four rules (page: 2%
    /// of the budget in `1h` checked over `5m`, 5% in `6h` over `30m`; ticket: 10% in `1d`
    /// over `2h`, 10% in `3d` over `6h`), which are burn rates 14.4, 6, 3 and 1 for a
    /// 30-day window and scale with other windows.
    pub alerts: Option<Vec<RawAlertRule>>,
}

/// One entry of `slo.alerts:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlertRule {
    /// `page` or `ticket`. Required.
    pub severity: Option<String>,
    /// Long window, e.g. `1h`. Required.
    pub long_window: Option<HumanDuration>,
    /// Short window, e.g. `5m`. Required; shorter than `long_window`.
    pub short_window: Option<HumanDuration>,
    /// Fraction of the whole error budget that, spent within `long_window`, fires the
    /// rule (`0.02`). The burn-rate factor is `budget_consumed × slo window ÷ long_window`.
    /// Give this or `burn_rate`.
    pub budget_consumed: Option<f64>,
    /// A fixed burn-rate factor, the same for every SLO window. Give this or
    /// `budget_consumed`.
    pub burn_rate: Option<f64>,
}

/// `canary:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCanary {
    /// Attribute that tells a canary from its baseline (span attribute, then resource
    /// attribute). It is recorded as a series dimension (label with `.` → `_`). `""`
    /// turns canary analysis off. Default `service.version`.
    pub attribute: Option<String>,
    /// Fewest requests each cohort needs before the verdict can be other than
    /// `inconclusive`. Default `100`.
    pub min_requests: Option<u64>,
    /// Significance level of the one-sided error-ratio test, between 0 and 0.5.
    /// Default `0.05`.
    pub significance: Option<f64>,
    /// Tolerated relative p95/p99 latency regression (`0.2`: up to 20% slower passes).
    /// Default `0.2`.
    pub latency_tolerance: Option<f64>,
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

/// `spool:` of a forwarder or exporter: payloads that cannot be delivered now are kept on
/// disk under `storage.directory/spool/` and sent when the upstream takes them again, also
/// after a restart.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSpool {
    /// Disk space at most; when it is reached the oldest spooled data is dropped (and
    /// counted). At least `1MiB`. Default `1GiB`.
    pub max_bytes: Option<ByteSize>,
}

/// TLS settings of a client connection (`forward[].tls`, `exporters.*.tls`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClientTls {
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<String>,
    /// PEM client certificate for mutual TLS (with `key_file`).
    pub cert_file: Option<String>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<String>,
    /// Skip verifying the server certificate. Default `false`. For testing only.
    pub insecure_skip_verify: Option<bool>,
}

/// One entry of `forward:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForward {
    /// Upstream URL: `https://host:4317` (gRPC) or `https://host:4318` (HTTP; the
    /// `/v1/{signal}` path is appended unless the URL already has a path). Required.
    pub endpoint: Option<String>,
    /// `grpc` or `http`. Default `grpc`.
    pub protocol: Option<String>,
    /// Headers sent with every request (API keys). Values may use `${ENV}`.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// Headers whose values are read from files (e.g. mounted secrets), trailing newline
    /// removed: `{ x-api-key: /var/run/secrets/vendor/key }`.
    pub headers_from_files: Option<std::collections::BTreeMap<String, String>>,
    /// `none` or `gzip`. Default `gzip`.
    pub compression: Option<String>,
    /// TLS settings for `https` endpoints.
    pub tls: Option<RawClientTls>,
    /// Signals forwarded. Default `[traces, metrics, logs]`.
    pub signals: Option<Vec<String>>,
    /// Also send the derived SLI/SLO metrics to this upstream as OTLP metrics.
    /// Default `false`.
    pub include_derived: Option<bool>,
    /// Per-request timeout. Default `10s`.
    pub timeout: Option<HumanDuration>,
    /// Requests waiting to be forwarded before new ones are dropped (and counted).
    /// Default `1000`.
    pub queue_size: Option<usize>,
    /// Requests sent to this upstream at once, 1 to 1024, each on a connection of its own
    /// (kept open for the next). Default `16`.
    pub max_in_flight: Option<usize>,
    /// Disk spool for when the upstream fails or falls behind (needs `storage.directory`).
    /// Unset: queued data is kept in memory only.
    pub spool: Option<RawSpool>,
    /// Merge queued requests of one signal into fewer, larger ones (each received request's
    /// bytes unchanged, back to back); `batch: {}` for the defaults. Unset (or `batch:`
    /// with no value): one upstream request per received request.
    pub batch: Option<RawBatch>,
}

/// `forward[].batch`: how received requests are merged for the upstream.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBatch {
    /// A merged request's size at most, before compression (a larger received request
    /// goes alone). Keep it under what the upstream accepts (gRPC servers commonly take
    /// 4 MiB). 1KiB to 64MiB. Default `1MiB`.
    pub max_bytes: Option<ByteSize>,
    /// How long a request waits for others to merge with. `0s`: merge only what is
    /// already queued. At most `1s`. Default `5ms`.
    pub wait: Option<HumanDuration>,
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

/// `exporters.prometheus_remote_write:`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteWrite {
    /// Remote-write URL, e.g. `http://prometheus:9090/api/v1/write`. Required.
    pub endpoint: Option<String>,
    /// Time between writes. Default `15s`.
    pub interval: Option<HumanDuration>,
    /// Labels added to every series (e.g. `node: ${K8S_NODE_NAME}`), so agents never
    /// collide. Prometheus label names, not `__*` nor `le`; values not empty. A series' own
    /// label of the same name wins.
    pub external_labels: Option<std::collections::BTreeMap<String, String>>,
    /// Send Prometheus native histograms instead of classic `_bucket` series: the exported
    /// buckets converted to exponential schema 8 (each request reads as its bucket's upper
    /// bound, within 0.27%; count and sum exact). Default `false`.
    pub native_histograms: Option<bool>,
    /// Extra headers (e.g. `X-Scope-OrgID` for Mimir, `Authorization`).
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// TLS settings for `https` endpoints.
    pub tls: Option<RawClientTls>,
    /// Per-request timeout. Default `10s`.
    pub timeout: Option<HumanDuration>,
    /// Disk spool for when the upstream fails or falls behind (needs `storage.directory`).
    /// Unset: queued data is kept in memory only.
    pub spool: Option<RawSpool>,
}

/// `exporters.otlp_metrics:`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOtlpMetrics {
    /// Upstream URL. Required.
    pub endpoint: Option<String>,
    /// `grpc` or `http`. Default `grpc`.
    pub protocol: Option<String>,
    /// Time between exports. Default `15s`.
    pub interval: Option<HumanDuration>,
    /// `cumulative` or `delta`. Default `cumulative`.
    pub temporality: Option<String>,
    /// `explicit` (the exported bucket bounds) or `exponential`. Default `explicit`.
    pub histogram: Option<String>,
    /// Resource attributes added to the exported metrics (e.g. `k8s.node.name`).
    pub resource_attributes: Option<std::collections::BTreeMap<String, String>>,
    /// Extra headers.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// `none` or `gzip`. Default `gzip`.
    pub compression: Option<String>,
    /// TLS settings for `https` endpoints.
    pub tls: Option<RawClientTls>,
    /// Per-request timeout. Default `10s`.
    pub timeout: Option<HumanDuration>,
    /// Disk spool for when the upstream fails or falls behind (needs `storage.directory`).
    /// Unset: queued data is kept in memory only.
    pub spool: Option<RawSpool>,
}
