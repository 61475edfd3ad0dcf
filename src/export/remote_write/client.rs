//! One remote-write attempt: POST a snappy-compressed `WriteRequest` and classify the
//! answer as the remote-write specification says: 2xx delivered; 5xx and 429 retryable
//! (honouring `Retry-After`, in seconds or as an HTTP date); any other status permanent;
//! connection errors and timeouts retryable.
//!
//! The HTTP client is hyper with rustls (the `ring` provider, passed explicitly so nothing
//! process-wide is installed); server certificates are checked against the bundled Mozilla
//! roots unless `tls.ca_file` names others.

use super::config::{RemoteWriteConfig, TlsSettings};
use crate::export::delivery::{Payload, SendError, Upstream};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// `User-Agent` of the requests.
pub const USER_AGENT: &str = concat!("otel-sli/", env!("CARGO_PKG_VERSION"));

/// The remote-write protocol version sent in `X-Prometheus-Remote-Write-Version`.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// Most bytes of an error response kept for the log line.
const ERROR_BODY: usize = 512;

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Sends write requests to one endpoint.
pub struct RemoteWriteClient {
    uri: http::Uri,
    headers: http::HeaderMap,
    timeout: Duration,
    /// `Err` when the TLS settings could not be used (they are checked at validation, so
    /// this is unexpected): every attempt then fails permanently with that reason.
    client: Result<Client<Https, Full<Bytes>>, String>,
}

impl std::fmt::Debug for RemoteWriteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteClient")
            .field("uri", &self.uri)
            .finish()
    }
}

impl RemoteWriteClient {
    /// A client for `cfg.endpoint`; connects lazily, so a down endpoint does not stop
    /// start-up.
    pub fn new(cfg: &RemoteWriteConfig) -> Self {
        let mut headers = http::HeaderMap::new();
        let fixed = [
            (http::header::CONTENT_ENCODING, "snappy"),
            (http::header::CONTENT_TYPE, "application/x-protobuf"),
            (http::header::USER_AGENT, USER_AGENT),
        ];
        for (k, v) in fixed {
            headers.insert(k, http::HeaderValue::from_static(v));
        }
        headers.insert(
            http::HeaderName::from_static("x-prometheus-remote-write-version"),
            http::HeaderValue::from_static(PROTOCOL_VERSION),
        );
        for (k, v) in &cfg.headers {
            // Checked by validation; anything unusable is skipped rather than sent broken.
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.as_bytes()),
                http::HeaderValue::from_str(v),
            ) {
                headers.insert(k, v);
            }
        }
        let uri = cfg.endpoint.parse().unwrap_or_default();
        let client = https_client(&cfg.tls, cfg.timeout);
        Self {
            uri,
            headers,
            timeout: cfg.timeout,
            client,
        }
    }

    async fn post(&self, body: Bytes) -> Result<(), SendError> {
        let client = self.client.as_ref().map_err(|e| SendError::Permanent {
            reason: format!("TLS settings unusable: {e}"),
        })?;
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        let exchange = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| SendError::Retryable {
                    reason: format!("POST {}: {}", self.uri, error_chain(&e)),
                    retry_after: None,
                })?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = if (200..300).contains(&status) {
                String::new()
            } else {
                // Only a prefix of the error message; a failed read leaves it empty.
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let end = body.len().min(ERROR_BODY);
                String::from_utf8_lossy(&body[..end]).trim().to_string()
            };
            classify(status, retry_after.as_deref(), SystemTime::now(), &text)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Retryable {
                reason: format!("POST {}: timed out after {:?}", self.uri, self.timeout),
                retry_after: None,
            }),
        }
    }
}

impl Upstream for RemoteWriteClient {
    fn send<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(self.post(payload.body.clone()))
    }
}

/// An HTTP/1.1 and HTTP/2 client for `http://` and `https://` URLs with the TLS settings
/// `tls` (see [`tls_config`]) and a connect timeout.
pub fn https_client(
    tls: &TlsSettings,
    connect_timeout: Duration,
) -> Result<Client<Https, Full<Bytes>>, String> {
    tls_config(tls).map(|tls| {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https)
    })
}

/// The client [`https_client`] builds.
pub type HttpsClient = Client<Https, Full<Bytes>>;

/// The error and its sources, `: `-separated (hyper's own message is terse).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// How one response is taken: 2xx delivered, 429 and 5xx retryable (after `Retry-After`
/// when given), anything else refused for good. `body` is the start of the response, for
/// the reason.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    now: SystemTime,
    body: &str,
) -> Result<(), SendError> {
    let reason = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SendError::Retryable {
            reason,
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        }),
        _ => Err(SendError::Permanent { reason }),
    }
}

/// `Retry-After`: delay seconds, or an HTTP date (a date in the past means now).
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The rustls client configuration for `t`: the `ring` provider; the bundled Mozilla roots
/// or only the CA certificates of `ca_pem`; a client certificate when given; no
/// verification at all with `insecure_skip_verify`.
pub fn tls_config(t: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    match &t.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("ca_file: {e}"))?;
                roots.add(cert).map_err(|e| format!("ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("ca_file: no certificate in the file".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        builder.with_root_certificates(roots)
    };
    let config = match &t.identity_pem {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cert_file: {e}"))?;
            if chain.is_empty() {
                return Err("cert_file: no certificate in the file".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("key_file: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("cert_file/key_file: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any server certificate (`tls.insecure_skip_verify`); signatures are still
/// checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn statuses_are_classified_as_the_spec_says() {
        assert_eq!(classify(200, None, now(), ""), Ok(()));
        assert_eq!(classify(204, None, now(), ""), Ok(()));
        for s in [400, 401, 403, 404, 409, 413, 301] {
            assert!(
                matches!(
                    classify(s, None, now(), ""),
                    Err(SendError::Permanent { .. })
                ),
                "{s}"
            );
        }
        for s in [429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(s, None, now(), ""),
                    Err(SendError::Retryable { .. })
                ),
                "{s}"
            );
        }
        let Err(SendError::Permanent { reason }) =
            classify(400, None, now(), "out of order sample")
        else {
            panic!("400 is permanent");
        };
        assert_eq!(reason, "HTTP 400: out of order sample");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let r = classify(429, Some("7"), now(), "");
        assert_eq!(
            r,
            Err(SendError::Retryable {
                reason: "HTTP 429".into(),
                retry_after: Some(Duration::from_secs(7)),
            })
        );
        let later = httpdate::fmt_http_date(now() + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now()),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now() - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now()), None);
        // A 400 never waits, even with the header.
        assert!(matches!(
            classify(400, Some("5"), now(), ""),
            Err(SendError::Permanent { .. })
        ));
    }

    #[test]
    fn default_tls_uses_bundled_roots() {
        assert!(tls_config(&TlsSettings::default()).is_ok());
        assert!(tls_config(&TlsSettings {
            insecure_skip_verify: true,
            ..TlsSettings::default()
        })
        .is_ok());
    }
}
