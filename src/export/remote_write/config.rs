//! `exporters.prometheus_remote_write`: checks the raw section and builds the settings the
//! exporter runs with. TLS files are read (and parsed) here, so a bad certificate stops
//! start-up instead of every write failing later.

use crate::config::units::HumanDuration;
use crate::config::{invalid_key, ConfigError};
use crate::export::delivery::spool::RawSpool;
use crate::export::delivery::DeliveryConfig;
use crate::export::upstream::settings::{self, RawClientTls};
use serde::Deserialize;
use std::time::Duration;

const AT: &str = "exporters.prometheus_remote_write";

/// Default time between writes.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
/// The default per-request timeout, shared by every upstream client.
pub use settings::DEFAULT_TIMEOUT;

/// Headers the remote-write protocol sets besides those every client sets; configuring
/// them is refused.
const PROTOCOL_HEADERS: [&str; 1] = ["x-prometheus-remote-write-version"];

pub use crate::export::upstream::http::TlsSettings;

/// `exporters.prometheus_remote_write:`
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRemoteWrite {
    /// Remote-write URL, e.g. `http://prometheus:9090/api/v1/write`. Required.
    pub endpoint: Option<String>,
    /// Time between writes. Default `15s`.
    pub interval: Option<HumanDuration>,
    /// Labels added to every series (e.g. `cluster: prod`). `otel_sli_instance` is added
    /// with the agent's identity (pod name, node name, else `<host>:<admin port>`) unless
    /// set here, so agents never collide. Prometheus label names, not `__*` nor `le`;
    /// values not empty. A series' own label of the same name wins.
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

/// Validated `exporters.prometheus_remote_write`. Its `Debug` output names the headers but
/// not their values.
#[derive(Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// `http(s)://host[:port]/path` the write requests are POSTed to.
    pub endpoint: String,
    /// Time between writes.
    pub interval: Duration,
    /// Labels added to every series, sorted by name.
    pub external_labels: Vec<(String, String)>,
    /// Native histograms instead of classic `_bucket`/`_sum`/`_count` series.
    pub native_histograms: bool,
    /// Extra request headers, in configuration order.
    pub headers: Vec<(String, String)>,
    /// TLS for `https` endpoints.
    pub tls: TlsSettings,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Queue and retry settings (derived from `interval`; not configurable in the file).
    pub delivery: DeliveryConfig,
    /// Disk spool (`spool:`), resolved against `storage.directory`; `None`: memory only.
    pub spool: Option<crate::export::delivery::spool::SpoolConfig>,
}

impl std::fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("endpoint", &self.endpoint)
            .field("interval", &self.interval)
            .field("external_labels", &self.external_labels)
            .field("native_histograms", &self.native_histograms)
            .field(
                "headers",
                &crate::export::upstream::http::header_names(
                    self.headers.iter().map(|(k, v)| (k, v)),
                ),
            )
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("delivery", &self.delivery)
            .field("spool", &self.spool)
            .finish()
    }
}

impl RemoteWriteConfig {
    /// This configuration with the `otel_sli_instance` external label set to `instance`
    /// unless the configuration sets it (see [`crate::identity`]).
    #[must_use]
    pub fn identified(mut self, instance: &str) -> Self {
        let label = crate::identity::LABEL;
        if !self.external_labels.iter().any(|(n, _)| n == label) {
            self.external_labels
                .push((label.to_string(), instance.to_string()));
            self.external_labels.sort();
        }
        self
    }
}

/// True for a valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Queue and retry settings for a given interval. A later write carries newer cumulative
/// values of the same series, so a payload is retried for four intervals at most (at least
/// 30 s, at most 5 min), and the queue holds about that much. One sender, so the writes of
/// a series reach the receiver in timestamp order (a receiver refuses an older sample that
/// arrives after a newer one).
pub fn delivery_for(interval: Duration) -> DeliveryConfig {
    DeliveryConfig {
        queue_capacity: 256,
        max_queued_bytes: DeliveryConfig::default().max_queued_bytes,
        workers: 1,
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(30),
        max_elapsed: (interval * 4).clamp(Duration::from_secs(30), Duration::from_secs(300)),
        batch: None,
    }
}

/// Validates `exporters.prometheus_remote_write`.
pub fn validate(raw: &RawRemoteWrite) -> Result<RemoteWriteConfig, ConfigError> {
    let endpoint = crate::export::upstream::http::endpoint_url(
        raw.endpoint.as_deref(),
        &format!("{AT}.endpoint"),
        "http://prometheus:9090/api/v1/write",
        true,
    )?;
    let interval = raw.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
        return Err(invalid_key(
            &format!("{AT}.interval"),
            format!("{interval:?} is outside 1s..1h"),
        ));
    }
    let timeout = settings::timeout(&format!("{AT}.timeout"), raw.timeout.map(|d| d.0))?;
    let mut external_labels = Vec::new();
    for (name, value) in raw.external_labels.iter().flatten() {
        let at = format!("{AT}.external_labels.{name}");
        if !is_label_name(name) {
            return Err(invalid_key(
                &at,
                "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
            ));
        }
        if name.starts_with("__") {
            return Err(invalid_key(
                &at,
                "names starting with __ are reserved by Prometheus",
            ));
        }
        if name == "le" {
            return Err(invalid_key(&at, "`le` is the histogram bucket label"));
        }
        if value.is_empty() {
            return Err(invalid_key(
                &at,
                "empty value (Prometheus drops empty labels; did an environment variable expand to nothing?)",
            ));
        }
        external_labels.push((name.clone(), value.clone()));
    }
    external_labels.sort();
    let headers = settings::headers(
        raw.headers
            .iter()
            .flatten()
            .map(|(k, v)| (format!("{AT}.headers.{k}"), k.as_str(), v.as_str())),
        &PROTOCOL_HEADERS,
    )?;
    let at = format!("{AT}.tls");
    let tls = settings::tls_loaded(raw.tls.as_ref(), &at, &endpoint, settings::Protocol::Http)?;
    // Parse now so a bad file is reported at start-up.
    super::client::tls_config(&tls).map_err(|e| invalid_key(&at, e))?;
    Ok(RemoteWriteConfig {
        endpoint,
        interval,
        external_labels,
        native_histograms: raw.native_histograms.unwrap_or(false),
        headers,
        tls,
        timeout,
        delivery: delivery_for(interval),
        spool: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::units::HumanDuration;

    fn raw(endpoint: &str) -> RawRemoteWrite {
        RawRemoteWrite {
            endpoint: Some(endpoint.into()),
            ..RawRemoteWrite::default()
        }
    }

    fn err(r: &RawRemoteWrite) -> String {
        validate(r).expect_err("refused").to_string()
    }

    #[test]
    fn defaults() {
        let c = validate(&raw("http://prom:9090/api/v1/write")).expect("valid");
        assert_eq!(c.interval, DEFAULT_INTERVAL);
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(!c.native_histograms);
        assert!(c.external_labels.is_empty());
        assert_eq!(c.delivery.max_elapsed, Duration::from_secs(60));
    }

    #[test]
    fn endpoint_is_required_and_http() {
        assert!(err(&RawRemoteWrite::default()).contains("endpoint"));
        assert!(err(&raw("prom:9090")).contains("http://"));
        assert!(err(&raw("ftp://prom/x")).contains("http://"));
        assert!(validate(&raw("https://mimir.example/api/v1/push")).is_ok());
    }

    #[test]
    fn interval_bounds() {
        let mut r = raw("http://p/w");
        r.interval = Some(HumanDuration(Duration::from_millis(500)));
        assert!(err(&r).contains("exporters.prometheus_remote_write.interval"));
        r.interval = Some(HumanDuration(Duration::from_secs(7200)));
        assert!(err(&r).contains("interval"));
        r.interval = Some(HumanDuration(Duration::from_secs(30)));
        assert_eq!(
            validate(&r).expect("valid").interval,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn external_labels_are_checked_and_sorted() {
        let mut r = raw("http://p/w");
        r.external_labels = Some(
            [("node", "n1"), ("cluster", "c")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let c = validate(&r).expect("valid");
        assert_eq!(
            c.external_labels,
            vec![("cluster".into(), "c".into()), ("node".into(), "n1".into())]
        );
        for (bad, why) in [
            ("__name__", "reserved"),
            ("1node", "label name"),
            ("k8s.node", "label name"),
            ("le", "bucket"),
        ] {
            r.external_labels = Some([(bad.to_string(), "x".to_string())].into());
            let e = err(&r);
            assert!(
                e.contains(&format!("external_labels.{bad}")) && e.contains(why),
                "{e}"
            );
        }
        r.external_labels = Some([("node".to_string(), String::new())].into());
        assert!(err(&r).contains("empty"));
    }

    #[test]
    fn the_identity_label_is_added_unless_configured() {
        let c = validate(&raw("http://p/w"))
            .expect("valid")
            .identified("node-1");
        assert_eq!(
            c.external_labels,
            vec![("otel_sli_instance".into(), "node-1".into())]
        );
        let mut r = raw("http://p/w");
        r.external_labels = Some(
            [("otel_sli_instance", "mine"), ("cluster", "c")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let c = validate(&r).expect("valid").identified("node-1");
        assert_eq!(
            c.external_labels,
            vec![
                ("cluster".into(), "c".into()),
                ("otel_sli_instance".into(), "mine".into())
            ]
        );
    }

    #[test]
    fn headers_are_checked() {
        let mut r = raw("http://p/w");
        r.headers = Some([("X-Scope-OrgID".to_string(), "tenant".to_string())].into());
        assert_eq!(validate(&r).expect("valid").headers.len(), 1);
        r.headers = Some([("Content-Encoding".to_string(), "gzip".to_string())].into());
        assert!(err(&r).contains("protocol"));
        r.headers = Some([("bad header".to_string(), "x".to_string())].into());
        assert!(err(&r).contains("header name"));
    }

    #[test]
    fn tls_files_are_read_at_start_up() {
        let mut r = raw("https://p/w");
        r.tls = Some(RawClientTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RawClientTls::default()
        });
        assert!(err(&r).contains("tls.ca_file"));
        r.tls = Some(RawClientTls {
            cert_file: Some("/x.pem".into()),
            ..RawClientTls::default()
        });
        assert!(err(&r).contains("key_file"));
        r.tls = Some(RawClientTls {
            insecure_skip_verify: Some(true),
            ..RawClientTls::default()
        });
        assert!(validate(&r).expect("valid").tls.insecure_skip_verify);
        let mut plain = raw("http://p/w");
        plain.tls = r.tls.clone();
        assert!(err(&plain).contains("https://"));
    }

    #[test]
    fn garbage_ca_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("otel-sli-rw-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "not a certificate").expect("write");
        let mut r = raw("https://p/w");
        r.tls = Some(RawClientTls {
            ca_file: Some(ca.to_string_lossy().into_owned()),
            ..RawClientTls::default()
        });
        let e = err(&r);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(e.contains("no certificate"), "{e}");
    }
}
