//! `exporters.otlp_metrics`: validation of the raw section into [`OtlpMetricsConfig`]. The
//! defaults live here; every refusal names the key path.

use crate::config::units::HumanDuration;
use crate::config::{invalid_key, ConfigError};
use crate::export::delivery::spool::RawSpool;
use crate::export::upstream::settings::{self, RawClientTls};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

const AT: &str = "exporters.otlp_metrics";

/// Default time between exports.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
pub use crate::export::upstream::settings::DEFAULT_TIMEOUT;

pub use crate::export::upstream::settings::{ClientTls, Compression, Protocol};

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

impl OtlpMetricsConfig {
    /// This configuration with `service.instance.id` set to `instance` unless the
    /// configuration sets it (see [`crate::identity`]).
    #[must_use]
    pub fn identified(mut self, instance: &str) -> Self {
        self.resource_attributes
            .entry(crate::identity::ATTRIBUTE.to_string())
            .or_insert_with(|| instance.to_string());
        self
    }
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
    settings::choice(&key(k), value, default, options)
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
    let protocol = settings::protocol(&key("protocol"), raw.protocol.as_deref())?;
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
    let compression = settings::compression(&key("compression"), raw.compression.as_deref())?;
    let timeout = settings::timeout(&key("timeout"), raw.timeout.map(|d| d.0))?;
    let tls = settings::tls(raw.tls.as_ref(), &key("tls"), &endpoint, protocol)?;
    let headers = settings::headers(
        raw.headers
            .iter()
            .flatten()
            .map(|(k, v)| (key(&format!("headers.{k}")), k.as_str(), v.as_str())),
        &[],
    )?;
    Ok(OtlpMetricsConfig {
        transport: Transport {
            endpoint,
            protocol,
            headers: headers.into_iter().collect(),
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
        let tls = match &self.tls {
            None => c::TlsSettings::default(),
            Some(t) => t.load().map_err(|e| c::ClientError::Tls(e.to_string()))?,
        };
        Ok(c::ClientConfig {
            endpoint: self.endpoint.clone(),
            protocol: self.protocol,
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            compression: self.compression,
            tls,
            timeout: self.timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::raw::RawConfig;
    use std::path::PathBuf;

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
    fn the_identity_attribute_is_added_unless_configured() {
        let mut c = parse(
            "exporters:\n  otlp_metrics:\n    endpoint: http://c:4317\n    resource_attributes: { k8s.node.name: node-1 }\n",
        )
        .expect("valid");
        c = c.identified("node-1:9464");
        assert_eq!(
            c.resource_attributes
                .get("service.instance.id")
                .map(String::as_str),
            Some("node-1:9464")
        );
        c.resource_attributes
            .insert("service.instance.id".into(), "mine".into());
        let c = c.identified("other");
        assert_eq!(
            c.resource_attributes
                .get("service.instance.id")
                .map(String::as_str),
            Some("mine")
        );
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
