//! The settings every upstream client shares (forwarders, OTLP metrics, remote write),
//! validated in one place with one policy: the transport and compression, the per-request
//! timeout, headers, and TLS. Each refusal names the key path it is about.
//!
//! The policy, whichever section a setting is in:
//! - `timeout`: between 100ms and 5m (default 10s);
//! - `headers`: names lower-cased and valid, values valid header values, each name once;
//!   names the protocol sets itself (`content-type`, `grpc-*`, pseudo-headers, …) refused;
//! - `tls`: `cert_file` and `key_file` together or neither; any TLS setting with an
//!   `http://` endpoint refused; `insecure_skip_verify` only over HTTP (the gRPC client
//!   always verifies: trust a private CA with `ca_file`). Files are read by
//!   [`ClientTls::load`], at start-up.

use super::http::TlsSettings;
use crate::config::{invalid_key, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (unary `Export` calls).
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies (`POST …/v1/{signal}`).
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

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers every client sets itself; configuring them is refused. (`user-agent` is set
/// too, but a configured one replaces it.)
const CLIENT_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-length",
    "te",
    "host",
];

/// One of `options` by name (`default` when `value` is absent).
pub fn choice<T: Copy>(
    at: &str,
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
            invalid_key(at, format!("{v:?} is not one of {}", names.join(", ")))
        })
}

/// `protocol` (`at` is its key path): `grpc` (default) or `http`.
pub fn protocol(at: &str, value: Option<&str>) -> Result<Protocol, ConfigError> {
    choice(
        at,
        value,
        Protocol::Grpc,
        &[("grpc", Protocol::Grpc), ("http", Protocol::Http)],
    )
}

/// `compression` (`at` is its key path): `gzip` (default) or `none`.
pub fn compression(at: &str, value: Option<&str>) -> Result<Compression, ConfigError> {
    choice(
        at,
        value,
        Compression::Gzip,
        &[("none", Compression::None), ("gzip", Compression::Gzip)],
    )
}

/// `timeout` (`at` is its key path): 100ms to 5m, [`DEFAULT_TIMEOUT`] when absent.
pub fn timeout(at: &str, value: Option<Duration>) -> Result<Duration, ConfigError> {
    let t = value.unwrap_or(DEFAULT_TIMEOUT);
    if t < Duration::from_millis(100) || t > Duration::from_secs(300) {
        return Err(invalid_key(at, "must be between 100ms and 5m"));
    }
    Ok(t)
}

/// Headers, each given with its key path, as `(name, value)` with lower-case names in the
/// order given. `also_reserved` lists names (lower case) the caller's protocol sets besides
/// those every client sets.
pub fn headers<'a>(
    entries: impl IntoIterator<Item = (String, &'a str, &'a str)>,
    also_reserved: &[&str],
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (at, name, value) in entries {
        let lower = name.to_ascii_lowercase();
        if lower.is_empty() || http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(invalid_key(&at, "not a valid header name"));
        }
        if lower.starts_with(':')
            || lower.starts_with("grpc-")
            || CLIENT_HEADERS.contains(&lower.as_str())
            || also_reserved.contains(&lower.as_str())
        {
            return Err(invalid_key(
                &at,
                "set by the exporter itself (part of the protocol)",
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(invalid_key(
                &at,
                "value has characters not allowed in a header (control characters or non-ASCII)",
            ));
        }
        if out.iter().any(|(n, _)| *n == lower) {
            return Err(invalid_key(
                &at,
                "given twice (header names are case-insensitive)",
            ));
        }
        out.push((lower, value.to_string()));
    }
    Ok(out)
}

/// Validated `tls:` of a client: the files it names, read by [`ClientTls::load`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA certificates trusted instead of the bundled roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); always set together with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Skip verifying the server certificate (testing only; HTTP transports only).
    pub insecure_skip_verify: bool,
    /// The key path of this `tls:` section, for errors when its files are read.
    pub at: String,
}

/// Validates `tls:` (`at` is its key path) for a client of `endpoint` over `protocol`;
/// `None` when it is absent.
pub fn tls(
    raw: Option<&RawClientTls>,
    at: &str,
    endpoint: &str,
    protocol: Protocol,
) -> Result<Option<ClientTls>, ConfigError> {
    let Some(t) = raw else {
        return Ok(None);
    };
    let path = |k: &str, v: &Option<String>| -> Result<Option<PathBuf>, ConfigError> {
        match v.as_deref() {
            Some("") => Err(invalid_key(&format!("{at}.{k}"), "empty path")),
            v => Ok(v.map(PathBuf::from)),
        }
    };
    let out = ClientTls {
        ca_file: path("ca_file", &t.ca_file)?,
        cert_file: path("cert_file", &t.cert_file)?,
        key_file: path("key_file", &t.key_file)?,
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
        at: at.to_string(),
    };
    match (&out.cert_file, &out.key_file) {
        (Some(_), None) => {
            return Err(invalid_key(
                &format!("{at}.key_file"),
                "required with cert_file (mutual TLS: cert_file and key_file go together)",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid_key(
                &format!("{at}.cert_file"),
                "required with key_file (mutual TLS: cert_file and key_file go together)",
            ))
        }
        _ => {}
    }
    let set = out.ca_file.is_some() || out.cert_file.is_some() || out.insecure_skip_verify;
    if set && !endpoint.starts_with("https://") {
        return Err(invalid_key(
            at,
            "set, but the endpoint is http:// (TLS needs an https:// endpoint)",
        ));
    }
    if out.insecure_skip_verify && protocol == Protocol::Grpc {
        return Err(invalid_key(
            &format!("{at}.insecure_skip_verify"),
            "works with protocol http only; for gRPC trust the upstream's CA with ca_file",
        ));
    }
    Ok(Some(out))
}

impl ClientTls {
    /// Reads the files: the TLS settings a client is built with. Errors name the key.
    pub fn load(&self) -> Result<TlsSettings, ConfigError> {
        let read = |k: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| {
                invalid_key(
                    &format!("{}.{k}", self.at),
                    format!("cannot read {}: {e}", p.display()),
                )
            })
        };
        Ok(TlsSettings {
            insecure_skip_verify: self.insecure_skip_verify,
            ca_pem: self
                .ca_file
                .as_ref()
                .map(|p| read("ca_file", p))
                .transpose()?,
            identity_pem: match (&self.cert_file, &self.key_file) {
                (Some(c), Some(k)) => Some((read("cert_file", c)?, read("key_file", k)?)),
                _ => None,
            },
        })
    }
}

/// [`tls`] and then [`ClientTls::load`]: the settings for a client whose files are read
/// while the configuration is validated. No `tls:` gives the defaults.
pub fn tls_loaded(
    raw: Option<&RawClientTls>,
    at: &str,
    endpoint: &str,
    protocol: Protocol,
) -> Result<TlsSettings, ConfigError> {
    tls(raw, at, endpoint, protocol)?
        .map(|t| t.load())
        .transpose()
        .map(Option::unwrap_or_default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawClientTls)) -> RawClientTls {
        let mut r = RawClientTls::default();
        f(&mut r);
        r
    }

    fn tls_err(r: &RawClientTls, endpoint: &str, p: Protocol) -> String {
        tls(Some(r), "x.tls", endpoint, p)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn cert_and_key_go_together_and_paths_are_not_empty() {
        let cert = raw(|r| r.cert_file = Some("/c.pem".into()));
        let e = tls_err(&cert, "https://u", Protocol::Http);
        assert!(e.starts_with("x.tls.key_file: required"), "{e}");
        let key = raw(|r| r.key_file = Some("/k.pem".into()));
        let e = tls_err(&key, "https://u", Protocol::Http);
        assert!(e.starts_with("x.tls.cert_file: required"), "{e}");
        let empty = raw(|r| r.ca_file = Some(String::new()));
        let e = tls_err(&empty, "https://u", Protocol::Http);
        assert!(e.starts_with("x.tls.ca_file: empty path"), "{e}");
    }

    #[test]
    fn tls_needs_https_and_skipping_verification_needs_http_transport() {
        let ca = raw(|r| r.ca_file = Some("/ca.pem".into()));
        let e = tls_err(&ca, "http://u", Protocol::Grpc);
        assert!(
            e.starts_with("x.tls: set, but the endpoint is http://"),
            "{e}"
        );
        let skip = raw(|r| r.insecure_skip_verify = Some(true));
        let e = tls_err(&skip, "https://u", Protocol::Grpc);
        assert!(
            e.starts_with("x.tls.insecure_skip_verify: works with protocol http only"),
            "{e}"
        );
        let ok = tls(Some(&skip), "x.tls", "https://u", Protocol::Http).expect("valid");
        assert!(ok.is_some_and(|t| t.insecure_skip_verify));
        // An empty section, or one saying false, is no TLS setting at all.
        let off = raw(|r| r.insecure_skip_verify = Some(false));
        assert!(tls(Some(&off), "x.tls", "http://u", Protocol::Grpc).is_ok());
    }

    #[test]
    fn files_are_read_by_load_and_a_missing_one_names_its_key() {
        let dir = std::env::temp_dir().join(format!("otel-sli-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "PEM").expect("write");
        let r = raw(|r| r.ca_file = Some(ca.to_string_lossy().into_owned()));
        let loaded = tls_loaded(Some(&r), "x.tls", "https://u", Protocol::Grpc).expect("read");
        assert_eq!(loaded.ca_pem.as_deref(), Some(&b"PEM"[..]));
        let _ = std::fs::remove_dir_all(&dir);
        let gone = raw(|r| {
            r.cert_file = Some("/nonexistent/c.pem".into());
            r.key_file = Some("/nonexistent/k.pem".into());
        });
        let e = tls_loaded(Some(&gone), "x.tls", "https://u", Protocol::Grpc)
            .expect_err("missing")
            .to_string();
        assert!(
            e.starts_with("x.tls.cert_file: cannot read /nonexistent/c.pem"),
            "{e}"
        );
        assert_eq!(
            tls_loaded(None, "x.tls", "http://u", Protocol::Grpc).expect("none"),
            TlsSettings::default()
        );
    }

    #[test]
    fn headers_are_lower_cased_checked_and_unique() {
        let at = |n: &str| format!("h.{n}");
        let ok = headers(
            [(at("X-Api-Key"), "X-Api-Key", "k"), (at("b"), "b", "v w")],
            &[],
        )
        .expect("valid");
        assert_eq!(
            ok,
            vec![("x-api-key".into(), "k".into()), ("b".into(), "v w".into())]
        );
        for (name, value, also, why) in [
            ("bad name", "x", &[][..], "not a valid header name"),
            ("", "x", &[][..], "not a valid header name"),
            ("Content-Type", "x", &[][..], "exporter itself"),
            ("grpc-timeout", "1S", &[][..], "exporter itself"),
            ("X-Prom-Version", "1", &["x-prom-version"][..], "protocol"),
            ("k", "a\nb", &[][..], "not allowed"),
        ] {
            let e = headers([(at(name), name, value)], also)
                .expect_err("refused")
                .to_string();
            assert!(
                e.starts_with(&format!("h.{name}: ")) && e.contains(why),
                "{e}"
            );
        }
        let e = headers([(at("A"), "A", "x"), (at("a"), "a", "y")], &[])
            .expect_err("twice")
            .to_string();
        assert!(e.starts_with("h.a: given twice"), "{e}");
    }

    #[test]
    fn choices_and_timeouts() {
        assert_eq!(protocol("p", None).expect("default"), Protocol::Grpc);
        assert_eq!(protocol("p", Some("http")).expect("http"), Protocol::Http);
        let e = protocol("p", Some("thrift"))
            .expect_err("refused")
            .to_string();
        assert_eq!(e, "p: \"thrift\" is not one of grpc, http");
        assert_eq!(compression("c", None).expect("default"), Compression::Gzip);
        assert!(compression("c", Some("zstd")).is_err());
        assert_eq!(timeout("t", None).expect("default"), DEFAULT_TIMEOUT);
        for bad in [
            Duration::ZERO,
            Duration::from_millis(99),
            Duration::from_secs(301),
        ] {
            let e = timeout("t", Some(bad)).expect_err("refused").to_string();
            assert_eq!(e, "t: must be between 100ms and 5m");
        }
    }
}
