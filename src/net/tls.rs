//! Server-side TLS of a listener: the certificate, key and optional client CA (mutual TLS)
//! read from PEM files, and reloaded when the files change. Every new connection takes the
//! configuration current at its handshake; connections already open keep theirs. A change
//! that does not load (a half-written pair, a key that does not match) is logged and counted,
//! and the previous certificate stays in use.

use crate::telemetry::{ConnStats, Listener, Telemetry};
use crate::ticker::Ticker;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// Where a listener's TLS material is, and how often to look for changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates client certificates must chain to; `None`: no client
    /// certificates asked for.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are read again; a change takes effect for new connections.
    pub reload_interval: Duration,
}

/// Why TLS material could not be loaded.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file's contents are not usable.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The bytes of the files, as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Contents {
            cert: read(&files.cert_file)?,
            key: read(&files.key_file)?,
            client_ca: files.client_ca_file.as_deref().map(read).transpose()?,
        })
    }
}

/// A loaded configuration and the leaf certificate's expiry.
struct Loaded {
    config: Arc<ServerConfig>,
    not_after: Option<u64>,
}

fn build(files: &TlsFiles, c: &Contents, alpn: &[&[u8]]) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&c.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&files.cert_file, e))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(&files.cert_file, "no certificate in the file"));
    };
    let not_after = super::expiry::not_after(leaf);
    let key = PrivateKeyDer::from_pem_slice(&c.key).map_err(|e| invalid(&files.key_file, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.cert_file, e))?;
    let builder = match (&files.client_ca_file, &c.client_ca) {
        (Some(path), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| invalid(path, e))?;
                roots.add(cert).map_err(|e| invalid(path, e))?;
            }
            if roots.is_empty() {
                return Err(invalid(path, "no certificate in the file"));
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| invalid(path, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        invalid(
            &files.key_file,
            format!("does not fit {}: {e}", files.cert_file.display()),
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

/// Checks that `files` load (for `otel-sli validate`).
pub fn check(files: &TlsFiles) -> Result<(), TlsError> {
    build(files, &Contents::read(files)?, &[]).map(|_| ())
}

/// What [`ServerTls::reload`] did.
#[derive(Debug)]
pub enum Reload {
    /// The files are as last read.
    Unchanged,
    /// The new files took effect.
    Reloaded,
    /// The files changed but do not load; the previous configuration stays.
    Refused(TlsError),
}

/// A listener's TLS configuration, replaced when its files change.
pub struct ServerTls {
    files: TlsFiles,
    alpn: &'static [&'static [u8]],
    current: ArcSwap<ServerConfig>,
    seen: Mutex<Contents>,
    telemetry: Arc<Telemetry>,
    listener: Listener,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key's bytes stay out of logs.
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `files`, offering the ALPN protocols `alpn` (e.g. `h2`).
    pub fn new(
        files: TlsFiles,
        alpn: &'static [&'static [u8]],
        listener: Listener,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, TlsError> {
        let contents = Contents::read(&files)?;
        let loaded = build(&files, &contents, alpn)?;
        let tls = ServerTls {
            current: ArcSwap::new(loaded.config),
            files,
            alpn,
            seen: Mutex::new(contents),
            telemetry,
            listener,
        };
        tls.stats().cert_not_after.store(
            loaded.not_after.unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        Ok(tls)
    }

    fn stats(&self) -> &ConnStats {
        self.telemetry.listener(self.listener)
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// The files this listener serves.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and, when they changed and load, puts them in effect. A change
    /// that does not load is reported once, not again until the files change once more.
    pub fn reload(&self) -> Reload {
        let contents = match Contents::read(&self.files) {
            Ok(c) => c,
            // A file missing for a moment (a Secret being swapped) is not yet a change.
            Err(_) => return Reload::Unchanged,
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == contents {
            return Reload::Unchanged;
        }
        let result = build(&self.files, &contents, self.alpn);
        *seen = contents;
        drop(seen);
        match result {
            Ok(loaded) => {
                self.current.store(loaded.config);
                let stats = self.stats();
                stats.cert_not_after.store(
                    loaded.not_after.unwrap_or(0),
                    std::sync::atomic::Ordering::Relaxed,
                );
                ConnStats::bump(&stats.reloads);
                Reload::Reloaded
            }
            Err(e) => {
                ConnStats::bump(&self.stats().reload_failures);
                Reload::Refused(e)
            }
        }
    }
}

/// Reloads `tls` every `reload_interval` until `stop` turns true, logging what changed.
pub async fn watch_files(tls: Arc<ServerTls>, stop: watch::Receiver<bool>) {
    let mut ticker = Ticker::after(tls.files.reload_interval, stop);
    while ticker.next().await {
        let t = Arc::clone(&tls);
        let listener = tls.listener.name();
        match tokio::task::spawn_blocking(move || t.reload()).await {
            Ok(Reload::Unchanged) => {}
            Ok(Reload::Reloaded) => tracing::info!(
                listener,
                cert_file = %tls.files.cert_file.display(),
                "TLS certificate reloaded; new connections use it"
            ),
            Ok(Reload::Refused(e)) => tracing::error!(
                listener,
                error = %e,
                "TLS files changed but do not load; still serving the previous certificate"
            ),
            Err(e) => tracing::error!(listener, error = %e, "TLS reload failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA and a `localhost` certificate it signed, as PEM (cert, key, ca).
    fn issue(not_after_year: i32) -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params
            .self_signed(&ca_key)
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
        let cert = params
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        (cert.pem(), key.serialize_pem(), ca.pem())
    }

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Self {
            let d =
                std::env::temp_dir().join(format!("otel-sli-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
            Dir(d)
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
            p
        }
        fn files(&self, client_ca: bool) -> TlsFiles {
            TlsFiles {
                cert_file: self.0.join("cert.pem"),
                key_file: self.0.join("key.pem"),
                client_ca_file: client_ca.then(|| self.0.join("ca.pem")),
                reload_interval: Duration::from_secs(1),
            }
        }
        fn put(&self, (cert, key, ca): &(String, String, String)) {
            self.write("cert.pem", cert);
            self.write("key.pem", key);
            self.write("ca.pem", ca);
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn not_after(t: &Telemetry) -> u64 {
        ConnStats::read(&t.listener(Listener::OtlpGrpc).cert_not_after)
    }

    #[test]
    fn loads_offers_alpn_and_reads_expiry() {
        let dir = Dir::new("load");
        dir.put(&issue(2040));
        let t = Arc::new(Telemetry::default());
        let tls = ServerTls::new(
            dir.files(true),
            &[b"h2"],
            Listener::OtlpGrpc,
            Arc::clone(&t),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tls.config().alpn_protocols, vec![b"h2".to_vec()]);
        // 2040-01-01T00:00:00Z
        assert_eq!(not_after(&t), 2_208_988_800);
        assert!(matches!(tls.reload(), Reload::Unchanged));
    }

    #[test]
    fn a_changed_pair_takes_effect_and_a_bad_one_is_refused_once() {
        let dir = Dir::new("reload");
        dir.put(&issue(2040));
        let t = Arc::new(Telemetry::default());
        let tls = ServerTls::new(dir.files(false), &[], Listener::OtlpGrpc, Arc::clone(&t))
            .unwrap_or_else(|e| panic!("{e}"));
        let first = tls.config();

        dir.put(&issue(2041));
        assert!(matches!(tls.reload(), Reload::Reloaded));
        let second = tls.config();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(not_after(&t), 2_240_611_200);

        // A certificate whose key has not been replaced yet: refused, old pair kept.
        let (cert, _, _) = issue(2042);
        dir.write("cert.pem", &cert);
        match tls.reload() {
            Reload::Refused(e) => assert!(e.to_string().contains("does not fit"), "{e}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(Arc::ptr_eq(&second, &tls.config()));
        assert_eq!(not_after(&t), 2_240_611_200);
        // Reported once, not at every look.
        assert!(matches!(tls.reload(), Reload::Unchanged));
        let stats = t.listener(Listener::OtlpGrpc);
        assert_eq!(ConnStats::read(&stats.reloads), 1);
        assert_eq!(ConnStats::read(&stats.reload_failures), 1);

        // A missing file (a Secret mid-swap) is not a change.
        let _ = std::fs::remove_file(dir.0.join("key.pem"));
        assert!(matches!(tls.reload(), Reload::Unchanged));
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = Dir::new("bad");
        let files = dir.files(true);
        let e = check(&files)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("cert.pem"), "{e}");

        dir.put(&issue(2040));
        dir.write("ca.pem", "not a certificate\n");
        let e = check(&files)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");

        dir.put(&issue(2040));
        dir.write(
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        assert!(check(&files).is_err());
        assert!(check(&dir.files(false)).is_err());
    }
}
