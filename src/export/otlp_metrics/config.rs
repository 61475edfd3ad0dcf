//! `exporters.otlp_metrics`: validation of the raw section into [`OtlpMetricsConfig`]. The
//! defaults live here; every refusal names the key path.

use crate::config::raw::{RawClientTls, RawOtlpMetrics};
use crate::config::{invalid_key, ConfigError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const AT: &str = "exporters.otlp_metrics";

/// Default time between exports.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (`MetricsService/Export`).
    Grpc,
    /// OTLP/HTTP with a binary protobuf body (`POST …/v1/metrics`).
    Http,
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (`grpc-encoding: gzip` / `Content-Encoding: gzip`).
    Gzip,
}

/// Aggregation temporality of the exported sums and histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    /// Totals since a start time (Prometheus-style counters).
    Cumulative,
    /// What changed since the previous export.
    Delta,
}

/// How `sli.latency` is exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramMode {
    /// An OTLP `Histogram` with the exported bucket bounds (`sli.latency.buckets` plus SLO
    /// thresholds): the same buckets as `/metrics`.
    Explicit,
    /// An OTLP `ExponentialHistogram` derived from the explicit buckets (see
    /// `docs/otlp-metrics.md` for what that can and cannot tell).
    Exponential,
}

/// TLS settings of the client connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates trusted instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); always set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Skip verifying the server certificate (testing only).
    pub insecure_skip_verify: bool,
}

/// Everything a sender needs to reach the upstream; the exporter itself never opens a
/// connection (that is the OTLP client's job).
#[derive(Clone, PartialEq, Eq)]
pub struct Transport {
    /// `http://` or `https://` URL. For [`Protocol::Http`] it is the base URL; the sender
    /// appends `/v1/metrics`.
    pub endpoint: String,
    /// gRPC or HTTP.
    pub protocol: Protocol,
    /// Headers sent with every request; names are lower case and valid, values valid.
    pub headers: BTreeMap<String, String>,
    /// Body compression.
    pub compression: Compression,
    /// TLS for `https` endpoints; `None` uses the system roots.
    pub tls: Option<ClientTls>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for Transport {
    /// Header names only: their values are often API keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &crate::export::upstream::http::header_names(&self.headers),
            )
            .field("compression", &self.compression)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Validated `exporters.otlp_metrics`.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpMetricsConfig {
    /// Where and how to send.
    pub transport: Transport,
    /// Time between exports.
    pub interval: Duration,
    /// Cumulative or delta sums and histograms.
    pub temporality: Temporality,
    /// Explicit or exponential `sli.latency`.
    pub histogram: HistogramMode,
    /// Resource attributes added to `service.name = otel-sli` (they win on a clash).
    pub resource_attributes: BTreeMap<String, String>,
    /// Disk spool (`spool:`), resolved against `storage.directory`; `None`: memory only.
    pub spool: Option<crate::export::delivery::spool::SpoolConfig>,
}

fn key(k: &str) -> String {
    format!("{AT}.{k}")
}

fn choice<T: Copy>(
    k: &str,
    value: Option<&str>,
    default: T,
    options: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    options
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            invalid_key(&key(k), format!("{v:?} is not one of {}", names.join(", ")))
        })
}

fn headers(
    raw: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        let at = key(&format!("headers.{name}"));
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(invalid_key(&at, "not a valid header name"));
        }
        if lower.starts_with(':') || lower.starts_with("grpc-") {
            return Err(invalid_key(&at, "reserved by the protocol"));
        }
        if matches!(
            lower.as_str(),
            "content-type" | "content-encoding" | "content-length" | "te" | "host"
        ) {
            return Err(invalid_key(&at, "set by the exporter itself"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(invalid_key(
                &at,
                "value has characters not allowed in a header (control characters or non-ASCII)",
            ));
        }
        if out.insert(lower, value.clone()).is_some() {
            return Err(invalid_key(
                &at,
                "given twice (header names are case-insensitive)",
            ));
        }
    }
    Ok(out)
}

fn tls(raw: Option<&RawClientTls>, endpoint: &str) -> Result<Option<ClientTls>, ConfigError> {
    let Some(t) = raw else {
        return Ok(None);
    };
    let path = |k: &str, v: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
        match v.as_deref() {
            Some("") => Err(invalid_key(&key(&format!("tls.{k}")), "empty path")),
            v => Ok(v.map(PathBuf::from)),
        }
    };
    let out = ClientTls {
        ca_file: path("ca_file", &t.ca_file)?,
        cert_file: path("cert_file", &t.cert_file)?,
        key_file: path("key_file", &t.key_file)?,
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    };
    match (&out.cert_file, &out.key_file) {
        (Some(_), None) => {
            return Err(invalid_key(
                &key("tls.key_file"),
                "required with tls.cert_file",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid_key(
                &key("tls.cert_file"),
                "required with tls.key_file",
            ))
        }
        _ => {}
    }
    if endpoint.starts_with("http://") && out != ClientTls::default() {
        return Err(invalid_key(
            &key("tls"),
            "set, but the endpoint is http:// (use https:// for TLS)",
        ));
    }
    Ok(Some(out))
}

fn resource_attributes(
    raw: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let out = raw.cloned().unwrap_or_default();
    if out.keys().any(String::is_empty) {
        return Err(invalid_key(
            &key("resource_attributes"),
            "attribute names must not be empty",
        ));
    }
    Ok(out)
}

/// Validates `exporters.otlp_metrics`.
pub fn validate(raw: &RawOtlpMetrics) -> Result<OtlpMetricsConfig, ConfigError> {
    let endpoint = crate::export::upstream::http::endpoint_url(
        raw.endpoint.as_deref(),
        &key("endpoint"),
        "http://collector:4317",
        false,
    )?;
    let protocol = choice(
        "protocol",
        raw.protocol.as_deref(),
        Protocol::Grpc,
        &[("grpc", Protocol::Grpc), ("http", Protocol::Http)],
    )?;
    let interval = raw.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
        return Err(invalid_key(&key("interval"), "must be between 1s and 1h"));
    }
    let temporality = choice(
        "temporality",
        raw.temporality.as_deref(),
        Temporality::Cumulative,
        &[
            ("cumulative", Temporality::Cumulative),
            ("delta", Temporality::Delta),
        ],
    )?;
    let histogram = choice(
        "histogram",
        raw.histogram.as_deref(),
        HistogramMode::Explicit,
        &[
            ("explicit", HistogramMode::Explicit),
            ("exponential", HistogramMode::Exponential),
        ],
    )?;
    let compression = choice(
        "compression",
        raw.compression.as_deref(),
        Compression::Gzip,
        &[("none", Compression::None), ("gzip", Compression::Gzip)],
    )?;
    let timeout = raw.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(300) {
        return Err(invalid_key(&key("timeout"), "must be between 100ms and 5m"));
    }
    let tls = tls(raw.tls.as_ref(), &endpoint)?;
    Ok(OtlpMetricsConfig {
        transport: Transport {
            endpoint,
            protocol,
            headers: headers(raw.headers.as_ref())?,
            compression,
            tls,
            timeout,
        },
        interval,
        temporality,
        histogram,
        resource_attributes: resource_attributes(raw.resource_attributes.as_ref())?,
        spool: None,
    })
}

impl Transport {
    /// The OTLP client settings for this transport (reads the TLS files).
    pub fn client_config(
        &self,
    ) -> Result<
        crate::export::upstream::otlp_client::ClientConfig,
        crate::export::upstream::otlp_client::ClientError,
    > {
        use crate::export::upstream::otlp_client as c;
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| c::ClientError::Tls(format!("{}: {e}", p.display())))
        };
        let tls = match &self.tls {
            None => c::TlsSettings::default(),
            Some(t) => c::TlsSettings {
                insecure_skip_verify: t.insecure_skip_verify,
                ca_pem: t.ca_file.as_ref().map(read).transpose()?,
                identity_pem: match (&t.cert_file, &t.key_file) {
                    (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                    _ => None,
                },
            },
        };
        Ok(c::ClientConfig {
            endpoint: self.endpoint.clone(),
            protocol: match self.protocol {
                Protocol::Grpc => c::Protocol::Grpc,
                Protocol::Http => c::Protocol::Http,
            },
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            compression: match self.compression {
                Compression::None => c::Compression::None,
                Compression::Gzip => c::Compression::Gzip,
            },
            tls,
            timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    fn parse(yaml: &str) -> Result<OtlpMetricsConfig, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(yaml).expect("yaml");
        validate(&raw.exporters.otlp_metrics.expect("section"))
    }

    fn err(yaml: &str) -> String {
        match parse(yaml) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let c = parse("exporters:\n  otlp_metrics:\n    endpoint: http://collector:4317\n")
            .expect("valid");
        assert_eq!(
            c,
            OtlpMetricsConfig {
                transport: Transport {
                    endpoint: "http://collector:4317".into(),
                    protocol: Protocol::Grpc,
                    headers: BTreeMap::new(),
                    compression: Compression::Gzip,
                    tls: None,
                    timeout: Duration::from_secs(10),
                },
                interval: Duration::from_secs(15),
                temporality: Temporality::Cumulative,
                histogram: HistogramMode::Explicit,
                resource_attributes: BTreeMap::new(),
                spool: None,
            }
        );
    }

    #[test]
    fn every_key() {
        let c = parse(
            r#"
exporters:
  otlp_metrics:
    endpoint: https://otlp.vendor.example/otlp
    protocol: http
    interval: 30s
    temporality: delta
    histogram: exponential
    resource_attributes: { k8s.node.name: node-1, service.name: sli-agent }
    headers: { X-Api-Key: secret }
    compression: none
    tls: { ca_file: /etc/ca.pem, cert_file: /etc/c.pem, key_file: /etc/k.pem }
    timeout: 2s
"#,
        )
        .expect("valid");
        let t = &c.transport;
        assert_eq!(t.protocol, Protocol::Http);
        assert_eq!(t.compression, Compression::None);
        assert_eq!(t.timeout, Duration::from_secs(2));
        assert_eq!(
            t.headers.get("x-api-key").map(String::as_str),
            Some("secret"),
            "names are lower-cased"
        );
        let tls = t.tls.as_ref().expect("tls");
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert!(!tls.insecure_skip_verify);
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.temporality, Temporality::Delta);
        assert_eq!(c.histogram, HistogramMode::Exponential);
        assert_eq!(c.resource_attributes.len(), 2);
    }

    #[test]
    fn refusals_name_the_key() {
        let base = "exporters:\n  otlp_metrics:\n    endpoint: http://c:4317\n";
        for (extra, path, reason) in [
            (
                "    protocol: thrift\n",
                "protocol",
                "not one of grpc, http",
            ),
            ("    interval: 500ms\n", "interval", "between 1s and 1h"),
            ("    interval: 2h\n", "interval", "between 1s and 1h"),
            (
                "    temporality: both\n",
                "temporality",
                "cumulative, delta",
            ),
            (
                "    histogram: native\n",
                "histogram",
                "explicit, exponential",
            ),
            ("    compression: zstd\n", "compression", "none, gzip"),
            ("    timeout: 0s\n", "timeout", "between"),
            (
                "    headers: { \"bad name\": x }\n",
                "headers.bad name",
                "header name",
            ),
            (
                "    headers: { x-key: \"a\\nb\" }\n",
                "headers.x-key",
                "not allowed",
            ),
            (
                "    headers: { Content-Type: x }\n",
                "headers.Content-Type",
                "exporter itself",
            ),
            ("    headers: { A: x, a: y }\n", "headers.a", "twice"),
            (
                "    tls: { cert_file: /c.pem }\n",
                "tls.key_file",
                "required",
            ),
            ("    tls: { ca_file: /ca.pem }\n", "tls", "http://"),
            (
                "    resource_attributes: { \"\": x }\n",
                "resource_attributes",
                "empty",
            ),
        ] {
            let e = err(&format!("{base}{extra}"));
            assert!(
                e.starts_with(&format!("exporters.otlp_metrics.{path}: ")) && e.contains(reason),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn endpoint_is_required_and_a_url() {
        for (endpoint, reason) in [
            ("", "required"),
            ("    endpoint: collector:4317\n", "http:// or https://"),
            ("    endpoint: http://\n", "no host"),
            ("    endpoint: http://c:4317/?x=1\n", "query"),
        ] {
            let e = err(&format!(
                "exporters:\n  otlp_metrics:\n    protocol: grpc\n{endpoint}"
            ));
            assert!(
                e.starts_with("exporters.otlp_metrics.endpoint: ") && e.contains(reason),
                "{endpoint}: {e}"
            );
        }
    }

    #[test]
    fn whole_config_accepts_the_section() {
        let c = crate::settings::parse(
            "exporters:\n  otlp_metrics:\n    endpoint: http://c:4317\n",
            |_| None,
        )
        .expect("valid");
        assert!(c.otlp_metrics.is_some());
    }
}
