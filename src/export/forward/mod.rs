//! Raw pass-through: every request the receivers accepted (partial successes included) is
//! handed, as the protobuf bytes that were received, to each upstream listed under
//! `forward:` that takes its signal. Each upstream has its own delivery queue, so a slow
//! vendor never holds up ingestion or the other upstreams. Requests refused as malformed,
//! too large or for backpressure are not forwarded: the client was told and will retry.

use super::delivery::batch::Batching;
use super::delivery::spool::RawSpool;
use super::delivery::{self, DeliveryConfig, Payload, Queue};
use super::upstream::otlp_client::{ClientConfig, ClientError, OtlpClient};
use super::upstream::settings::{self, Compression, RawClientTls};
use crate::config::units::{ByteSize, HumanDuration};
use crate::config::{invalid_key, ConfigError};
use crate::telemetry::Signal;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

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

/// Validated `forward[]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Forwarded signals, indexed by [`Signal`] as `usize`.
    pub signals: [bool; 3],
    /// Also send the derived metrics here (OTLP metrics with the default interval,
    /// temporality and histogram); `None` when `include_derived` is off.
    pub derived: Option<crate::export::otlp_metrics::OtlpMetricsConfig>,
    /// Requests waiting at most.
    pub queue_size: usize,
    /// Requests sent at once.
    pub max_in_flight: usize,
    /// Disk spool (`spool:`), resolved against `storage.directory`; `None`: memory only.
    pub spool: Option<crate::export::delivery::spool::SpoolConfig>,
    /// Merging of queued requests (`batch:`); `None`: one upstream request each.
    pub batch: Option<Batching>,
}

/// Default `batch.max_bytes`.
pub const DEFAULT_BATCH_BYTES: u64 = 1 << 20;
/// Default `batch.wait`.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(5);

/// Validates `batch:` (`at` is its key path).
fn batching(raw: &RawBatch, at: &str) -> Result<Batching, ConfigError> {
    let max_bytes = raw.max_bytes.map_or(DEFAULT_BATCH_BYTES, |b| b.0);
    if !(1 << 10..=64 << 20).contains(&max_bytes) {
        return Err(invalid_key(
            &format!("{at}.max_bytes"),
            "must be between 1KiB and 64MiB",
        ));
    }
    let wait = raw.wait.map_or(DEFAULT_BATCH_WAIT, |d| d.0);
    // Well inside the shutdown grace, so a batch still waiting then is sent, not stopped.
    if wait > Duration::from_secs(1) {
        return Err(invalid_key(&format!("{at}.wait"), "must be at most 1s"));
    }
    Ok(Batching {
        max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
        wait,
    })
}

fn read_file(path: &str, at: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid_key(at, format!("cannot read {path}: {e}")))
}

/// `forward[i].headers` and `.headers_from_files`, names lower-cased, checked as header
/// names and values.
fn headers(raw: &RawForward, at: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut entries: Vec<(String, &str, String)> = Vec::new();
    for (k, v) in raw.headers.iter().flatten() {
        entries.push((format!("{at}.headers.{k}"), k, v.clone()));
    }
    for (k, path) in raw.headers_from_files.iter().flatten() {
        let key = format!("{at}.headers_from_files.{k}");
        let bytes = read_file(path, &key)?;
        let value = String::from_utf8(bytes)
            .map_err(|_| invalid_key(&key, format!("{path} is not text")))?;
        let value = value.trim_end_matches(['\n', '\r']).to_string();
        entries.push((key, k, value));
    }
    settings::headers(
        entries
            .iter()
            .map(|(key, k, v)| (key.clone(), *k, v.as_str())),
        &[],
    )
}

/// `forward[i].signals`: which of traces, metrics and logs go to the upstream (all three
/// by default).
fn signals(list: Option<&[String]>, at: &str) -> Result<[bool; 3], ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let mut signals = [false; 3];
    match list {
        None => signals = [true; 3],
        Some([]) => {
            return Err(invalid_key(
                &key("signals"),
                "must name at least one signal",
            ))
        }
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                let sig = Signal::ALL
                    .into_iter()
                    .find(|x| x.name() == s)
                    .ok_or_else(|| {
                        invalid_key(
                            &format!("{}[{i}]", key("signals")),
                            format!("unknown signal {s:?} (use traces, metrics or logs)"),
                        )
                    })?;
                signals[sig as usize] = true;
            }
        }
    }
    Ok(signals)
}

/// Validates `forward[i]` (`at` is its key path).
pub fn validate(raw: &RawForward, at: &str) -> Result<ForwardConfig, ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let endpoint = crate::export::upstream::http::endpoint_url(
        raw.endpoint.as_deref(),
        &key("endpoint"),
        "https://otlp.vendor.example:4317",
        true,
    )?;
    let protocol = settings::protocol(&key("protocol"), raw.protocol.as_deref())?;
    let compression = settings::compression(&key("compression"), raw.compression.as_deref())?;
    let tls = settings::tls_loaded(raw.tls.as_ref(), &key("tls"), &endpoint, protocol)?;
    let headers = headers(raw, at)?;
    let signals = signals(raw.signals.as_deref(), at)?;
    let derived = if raw.include_derived == Some(true) {
        let metrics = crate::export::otlp_metrics::config::RawOtlpMetrics {
            endpoint: raw.endpoint.clone(),
            protocol: raw.protocol.clone(),
            headers: None,
            compression: raw.compression.clone(),
            tls: raw.tls.clone(),
            timeout: raw.timeout,
            ..Default::default()
        };
        let mut c = crate::export::otlp_metrics::validate(&metrics)
            .map_err(|e| invalid_key(&key("include_derived"), e.to_string()))?;
        // The same headers as the raw requests, those read from files included.
        c.transport.headers = headers.iter().cloned().collect();
        // Errors reading its TLS files at start name this forwarder's key.
        if let Some(t) = c.transport.tls.as_mut() {
            t.at = key("tls");
        }
        Some(c)
    } else {
        None
    };
    let timeout = settings::timeout(&key("timeout"), raw.timeout.map(|d| d.0))?;
    let queue_size = raw.queue_size.unwrap_or(1000);
    if queue_size == 0 {
        return Err(invalid_key(&key("queue_size"), "must be at least 1"));
    }
    // Each request in flight has a connection of its own, for gRPC as for HTTP.
    let max_in_flight = raw.max_in_flight.unwrap_or(16);
    if !(1..=1024).contains(&max_in_flight) {
        return Err(invalid_key(
            &key("max_in_flight"),
            "must be between 1 and 1024",
        ));
    }
    Ok(ForwardConfig {
        client: ClientConfig {
            endpoint,
            protocol,
            headers,
            compression,
            tls,
            timeout,
        },
        signals,
        derived,
        queue_size,
        max_in_flight,
        spool: None,
        batch: raw
            .batch
            .as_ref()
            .map(|b| batching(b, &key("batch")))
            .transpose()?,
    })
}

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An upstream client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A spool could not be opened.
    #[error(transparent)]
    Spool(#[from] crate::export::delivery::spool::SpoolError),
}

struct Target {
    signals: [bool; 3],
    /// gzip: a body received gzip-compressed is sent as it came.
    takes_gzip: bool,
    queue: Queue,
}

/// The forwarding side of the receivers: cheap to clone, empty when nothing is configured.
#[derive(Clone, Default)]
pub struct Forwarders {
    targets: Arc<[Target]>,
}

impl std::fmt::Debug for Forwarders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarders")
            .field("upstreams", &self.targets.len())
            .finish()
    }
}

impl Forwarders {
    /// Starts one delivery queue per upstream (on the current runtime). The returned
    /// handles are for shutdown; their queues are also in [`Forwarders::queues`].
    pub fn start(cfgs: &[ForwardConfig]) -> Result<(Self, Vec<delivery::Running>), StartError> {
        let mut targets = Vec::with_capacity(cfgs.len());
        let mut running = Vec::with_capacity(cfgs.len());
        for (i, c) in cfgs.iter().enumerate() {
            let client = Arc::new(OtlpClient::new(c.client.clone())?);
            let r = delivery::spawn_spooled(
                &format!("forward_{i}"),
                client,
                DeliveryConfig {
                    queue_capacity: c.queue_size,
                    workers: c.max_in_flight,
                    batch: c.batch,
                    ..DeliveryConfig::default()
                },
                c.spool.clone(),
            )?;
            targets.push(Target {
                signals: c.signals,
                takes_gzip: c.client.compression == Compression::Gzip,
                queue: r.queue.clone(),
            });
            running.push(r);
        }
        Ok((
            Self {
                targets: targets.into(),
            },
            running,
        ))
    }

    /// True when nothing is forwarded.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// True when some upstream that takes `signal` wants gzip: a body received compressed is
    /// then worth keeping as it came.
    pub fn takes_gzip(&self, signal: Signal) -> bool {
        self.targets
            .iter()
            .any(|t| t.takes_gzip && t.signals[signal as usize])
    }

    /// True when some upstream takes `signal`.
    pub fn wants(&self, signal: Signal) -> bool {
        self.targets.iter().any(|t| t.signals[signal as usize])
    }

    /// Queues the request `body` (protobuf, uncompressed) carrying `items` for every
    /// upstream taking `signal`; `gzipped`, the same request as received gzip-compressed,
    /// goes as it is to upstreams with gzip (gRPC or HTTP), so it is not compressed again.
    /// Never waits; a full queue spools or drops and counts.
    pub fn forward(&self, signal: Signal, body: &Bytes, gzipped: Option<&Bytes>, items: u64) {
        for t in self.targets.iter().filter(|t| t.signals[signal as usize]) {
            let (body, gzipped) = match gzipped {
                Some(gz) if t.takes_gzip => (gz.clone(), true),
                _ => (body.clone(), false),
            };
            t.queue.submit(Payload {
                body,
                items,
                signal: Some(signal),
                gzipped,
            });
        }
    }

    /// The queues, for self-telemetry.
    pub fn queues(&self) -> Vec<Queue> {
        self.targets.iter().map(|t| t.queue.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::upstream::settings::Protocol;

    fn v(yaml: &str) -> Result<ForwardConfig, String> {
        let raw: RawForward = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        validate(&raw, "forward[0]").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_errors() {
        let c = v("endpoint: https://otlp.example:4317\nheaders: {X-Api-Key: k}\n").expect("valid");
        assert_eq!(c.client.protocol, Protocol::Grpc);
        assert_eq!(c.client.compression, Compression::Gzip);
        assert_eq!(c.signals, [true; 3]);
        assert_eq!(c.client.headers, vec![("x-api-key".into(), "k".into())]);
        assert_eq!(c.client.timeout, Duration::from_secs(10));
        assert_eq!(c.max_in_flight, 16);
        let h = v("endpoint: http://a:1\nprotocol: http\n").expect("valid");
        assert_eq!(h.max_in_flight, 16);
        let e = v("endpoint: http://a:1\nmax_in_flight: 0\n").unwrap_err();
        assert!(e.starts_with("forward[0].max_in_flight"), "{e}");
        let e = v("protocol: http\n").unwrap_err();
        assert!(e.starts_with("forward[0].endpoint: required"), "{e}");
        let e = v("endpoint: otlp.example:4317\n").unwrap_err();
        assert!(e.contains("not an http:// or https:// URL"), "{e}");
        let e = v("endpoint: http://a:1\nsignals: [traces, profiles]\n").unwrap_err();
        assert!(e.starts_with("forward[0].signals[1]"), "{e}");
        let e = v("endpoint: http://a:1\ncompression: zstd\n").unwrap_err();
        assert!(e.starts_with("forward[0].compression"), "{e}");
        let e =
            v("endpoint: http://a:1\nheaders_from_files: {x-key: /nonexistent/key}\n").unwrap_err();
        assert!(e.contains("cannot read /nonexistent/key"), "{e}");
        let e = v("endpoint: http://a:1\ntls: {cert_file: /x}\n").unwrap_err();
        assert!(e.contains("go together"), "{e}");
        let c = v("endpoint: http://a:1\nsignals: [logs]\nprotocol: http\ncompression: none\n")
            .expect("valid");
        assert_eq!(c.signals, [false, false, true]);
    }

    #[test]
    fn batching_is_off_unless_asked_for_and_checked_when_it_is() {
        assert_eq!(v("endpoint: http://a:1\n").expect("valid").batch, None);
        assert_eq!(
            v("endpoint: http://a:1\nbatch:\n").expect("valid").batch,
            None
        );
        let c = v("endpoint: http://a:1\nbatch: {}\n").expect("valid");
        assert_eq!(
            c.batch,
            Some(Batching {
                max_bytes: 1 << 20,
                wait: Duration::from_millis(5)
            })
        );
        let c = v("endpoint: http://a:1\nbatch: {max_bytes: 256KiB, wait: 0s}\n").expect("valid");
        assert_eq!(
            c.batch,
            Some(Batching {
                max_bytes: 256 << 10,
                wait: Duration::ZERO
            })
        );
        let e = v("endpoint: http://a:1\nbatch: {max_bytes: 100}\n").unwrap_err();
        assert!(e.starts_with("forward[0].batch.max_bytes"), "{e}");
        let e = v("endpoint: http://a:1\nbatch: {wait: 2s}\n").unwrap_err();
        assert!(e.starts_with("forward[0].batch.wait"), "{e}");
        let e = v("endpoint: http://a:1\nbatch: {max_items: 5}\n").unwrap_err();
        assert!(e.contains("max_items"), "{e}");
    }

    #[test]
    fn header_values_from_files() {
        let dir = std::env::temp_dir().join(format!("otel-sli-fwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("key");
        std::fs::write(&f, "s3cret\n").expect("write");
        let c = v(&format!(
            "endpoint: http://a:1\nheaders_from_files: {{x-api-key: {}}}\n",
            f.display()
        ))
        .expect("valid");
        assert_eq!(
            c.client.headers,
            vec![("x-api-key".into(), "s3cret".into())]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
