//! Validation of the listeners' connection settings: timeouts, connection caps and TLS.
//! TLS files are loaded once here, so `otel-sli validate` reports a bad certificate or a
//! key that does not fit it by key path.

use super::invalid;
use super::raw::{RawAdmin, RawReceivers, RawServerTls};
use crate::config::ConfigError;
use crate::net::tls::TlsFiles;
use crate::net::ConnLimits;
use std::path::PathBuf;
use std::time::Duration;

/// Validated connection settings of the three listeners.
#[derive(Clone, Debug)]
pub struct Listeners {
    /// OTLP/gRPC connection limits; the read timeout bounds the TLS handshake.
    pub grpc_conn: ConnLimits,
    /// Longest an OTLP/gRPC Export call may take.
    pub grpc_request_timeout: Duration,
    /// OTLP/HTTP connection limits.
    pub http_conn: ConnLimits,
    /// TLS of the OTLP/gRPC receiver; `None`: plaintext.
    pub grpc_tls: Option<TlsFiles>,
    /// TLS of the OTLP/HTTP receiver; `None`: plaintext.
    pub http_tls: Option<TlsFiles>,
    /// TLS of the admin server; `None`: plaintext.
    pub admin_tls: Option<TlsFiles>,
}

/// Connection limits of the admin server (probes, scrapes and the API; not configurable).
pub const ADMIN_LIMITS: ConnLimits = ConnLimits {
    read_timeout: Duration::from_secs(30),
    max_connections: 256,
    max_connections_per_client: None,
};

fn timeout(at: &str, d: Option<Duration>) -> Result<Duration, ConfigError> {
    let d = d.unwrap_or(Duration::from_secs(30));
    if d < Duration::from_secs(1) || d > Duration::from_secs(600) {
        return Err(invalid(at, "must be between 1s and 10m"));
    }
    Ok(d)
}

fn cap(at: &str, n: Option<usize>) -> Result<usize, ConfigError> {
    match n.unwrap_or(4096) {
        0 => Err(invalid(at, "must be at least 1")),
        n => Ok(n),
    }
}

/// `max_connections_per_client` (default 256, or `max_connections` when that is lower; 0:
/// no such limit), at most `max_connections`.
fn per_client(at: &str, n: Option<usize>, max: usize) -> Result<Option<usize>, ConfigError> {
    match n.unwrap_or(256.min(max)) {
        0 => Ok(None),
        n if n > max => Err(invalid(
            at,
            format!("must not exceed max_connections ({max})"),
        )),
        n => Ok(Some(n)),
    }
}

/// The TLS files of `raw` (at key path `at`), checked to load.
pub fn tls(at: &str, raw: Option<&RawServerTls>) -> Result<Option<TlsFiles>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let file = |key: &str, v: &Option<String>| -> Result<PathBuf, ConfigError> {
        match v.as_deref() {
            Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
            _ => Err(invalid(&format!("{at}.{key}"), "required with tls")),
        }
    };
    let reload_interval = raw.reload_interval.map_or(Duration::from_secs(30), |d| d.0);
    if reload_interval < Duration::from_secs(1) || reload_interval > Duration::from_secs(3600) {
        return Err(invalid(
            &format!("{at}.reload_interval"),
            "must be between 1s and 1h",
        ));
    }
    let files = TlsFiles {
        cert_file: file("cert_file", &raw.cert_file)?,
        key_file: file("key_file", &raw.key_file)?,
        client_ca_file: raw
            .client_ca_file
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
        reload_interval,
    };
    crate::net::tls::check(&files).map_err(|e| invalid(at, e.to_string()))?;
    Ok(Some(files))
}

/// Validates the receivers' and the admin server's connection settings.
pub fn listeners(r: &RawReceivers, admin: &RawAdmin) -> Result<Listeners, ConfigError> {
    let grpc_request_timeout = timeout(
        "receivers.otlp_grpc.request_timeout",
        r.otlp_grpc.request_timeout.map(|d| d.0),
    )?;
    let grpc_max = cap(
        "receivers.otlp_grpc.max_connections",
        r.otlp_grpc.max_connections,
    )?;
    let http_max = cap(
        "receivers.otlp_http.max_connections",
        r.otlp_http.max_connections,
    )?;
    Ok(Listeners {
        grpc_conn: ConnLimits {
            read_timeout: grpc_request_timeout,
            max_connections: grpc_max,
            max_connections_per_client: per_client(
                "receivers.otlp_grpc.max_connections_per_client",
                r.otlp_grpc.max_connections_per_client,
                grpc_max,
            )?,
        },
        grpc_request_timeout,
        http_conn: ConnLimits {
            read_timeout: timeout(
                "receivers.otlp_http.read_timeout",
                r.otlp_http.read_timeout.map(|d| d.0),
            )?,
            max_connections: http_max,
            max_connections_per_client: per_client(
                "receivers.otlp_http.max_connections_per_client",
                r.otlp_http.max_connections_per_client,
                http_max,
            )?,
        },
        grpc_tls: tls("receivers.otlp_grpc.tls", r.otlp_grpc.tls.as_ref())?,
        http_tls: tls("receivers.otlp_http.tls", r.otlp_http.tls.as_ref())?,
        admin_tls: tls("admin.tls", admin.tls.as_ref())?,
    })
}
