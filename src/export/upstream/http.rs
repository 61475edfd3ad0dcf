//! The HTTP client every upstream uses (OTLP/HTTP and OTLP/gRPC forwarders and exporters,
//! remote write): hyper with rustls and the `ring` provider passed explicitly, so nothing
//! process-wide is installed; server certificates are checked against the bundled Mozilla
//! roots unless a CA file names others. Also the `Retry-After` parsing they share.

use super::coalesce::CoalescingConnector;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Validates an upstream URL at key `at`: present (else the reason shows `example`),
/// `http://` or `https://`, with a host, and without a query string unless `allow_query`
/// (OTLP endpoints get the signal path appended, so a query cannot be kept).
pub fn endpoint_url(
    raw: Option<&str>,
    at: &str,
    example: &str,
    allow_query: bool,
) -> Result<String, crate::config::ConfigError> {
    use crate::config::invalid_key;
    let Some(e) = raw.map(str::trim).filter(|e| !e.is_empty()) else {
        return Err(invalid_key(at, format!("required (e.g. {example})")));
    };
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or_else(|| invalid_key(at, format!("{e:?} is not an http:// or https:// URL")))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid_key(at, format!("{e:?} has no host")));
    }
    let uri: http::Uri = e
        .parse()
        .map_err(|err| invalid_key(at, format!("{e:?} is not a URL: {err}")))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid_key(at, format!("{e:?} has no host")));
    }
    if !allow_query && uri.query().is_some() {
        return Err(invalid_key(
            at,
            format!("{e:?} has a query string, which OTLP endpoints do not take"),
        ));
    }
    Ok(e.to_string())
}

/// `User-Agent` of the requests.
pub const USER_AGENT: &str = concat!("otel-sli/", env!("CARGO_PKG_VERSION"));

/// The connector every client here uses: TCP (no Nagle), then TLS for `https://`.
pub type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Header names only, for `Debug` output: values are often API keys.
pub fn header_names<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<&'a str> {
    headers.into_iter().map(|(k, _)| k.as_str()).collect()
}

/// TLS material of the connection, read from the configured files.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM CA certificates to trust instead of the bundled public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate chain and private key, for mutual TLS.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Do not verify the server certificate (testing only).
    pub insecure_skip_verify: bool,
}

impl std::fmt::Debug for TlsSettings {
    /// Whether there is material, never the material (the key is a secret).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity_pem.is_some())
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// An HTTP/1.1 and HTTP/2 client for `http://` and `https://` URLs with the TLS settings
/// `tls` (see [`tls_config`]) and a connect timeout.
pub fn https_client(
    tls: &TlsSettings,
    connect_timeout: Duration,
) -> Result<Client<Https, Full<Bytes>>, String> {
    https_connector(tls, connect_timeout, Alpn::Both).map(client)
}

/// A connector for HTTP/2 upstreams (gRPC): TLS offering only `h2`, writes coalesced
/// ([`super::coalesce`]).
pub fn http2_connector(
    tls: &TlsSettings,
    connect_timeout: Duration,
) -> Result<Http2Connector, String> {
    let tls = tls_config(tls)?;
    Ok(wrap_tls(
        tls,
        Alpn::Http2,
        CoalescingConnector(tcp_connector(connect_timeout)),
    ))
}

/// The connector [`http2_connector`] builds.
pub type Http2Connector = hyper_rustls::HttpsConnector<CoalescingConnector>;

fn client<C, B>(connector: C) -> Client<C, B>
where
    C: hyper_util::client::legacy::connect::Connect + Clone,
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        // Room for a few large requests' answers before a window update.
        .http2_initial_stream_window_size(1 << 20)
        .http2_initial_connection_window_size(4 << 20)
        .build(connector)
}

/// Which HTTP versions a TLS connection offers (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` only, for a connection that will speak HTTP/1.1 whatever the server likes.
    Http1,
    /// `h2` only (gRPC).
    Http2,
    /// Both; the pooled client speaks what was agreed.
    Both,
}

/// A connector for `http://` and `https://` with the TLS settings `tls`, offering `alpn`.
pub fn https_connector(
    tls: &TlsSettings,
    connect_timeout: Duration,
    alpn: Alpn,
) -> Result<Https, String> {
    tls_config(tls).map(|tls| wrap_tls(tls, alpn, tcp_connector(connect_timeout)))
}

/// TCP without Nagle, with a connect timeout.
fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http
}

/// `tcp` with TLS for `https://` URLs, offering `alpn`.
fn wrap_tls<H>(tls: rustls::ClientConfig, alpn: Alpn, tcp: H) -> hyper_rustls::HttpsConnector<H> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    match alpn {
        Alpn::Http1 => https.enable_http1().wrap_connector(tcp),
        Alpn::Http2 => https.enable_http2().wrap_connector(tcp),
        Alpn::Both => https.enable_http1().enable_http2().wrap_connector(tcp),
    }
}

/// The client [`https_client`] builds.
pub type HttpsClient = Client<Https, Full<Bytes>>;

/// Answer bodies read at most from an upstream. OTLP answers are a few bytes (a
/// partial-success count and message) and error pages a few KB; what is longer is not read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Reads `body` up to `max` bytes: what was read, and whether that was all of it. The rest
/// of a longer body is left unread (its connection is then not worth reusing).
pub async fn read_prefix<B>(body: B, max: usize) -> Result<(Bytes, bool), B::Error>
where
    B: http_body::Body<Data = Bytes>,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = max - read.len();
            if data.len() > room {
                read.extend_from_slice(&data[..room]);
                return Ok((read.freeze(), false));
            }
            read.extend_from_slice(&data);
        }
    }
    Ok((read.freeze(), true))
}

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

    #[tokio::test]
    async fn a_body_is_read_up_to_the_limit() {
        let chunks = |parts: &[&'static [u8]]| {
            http_body_util::StreamBody::new(futures_util::stream::iter(
                parts
                    .iter()
                    .map(|p| {
                        Ok::<_, std::convert::Infallible>(http_body::Frame::data(
                            Bytes::from_static(p),
                        ))
                    })
                    .collect::<Vec<_>>(),
            ))
        };
        let (got, all) = read_prefix(chunks(&[b"abc", b"def"]), 6).await.unwrap();
        assert_eq!((&got[..], all), (&b"abcdef"[..], true));
        let (got, all) = read_prefix(chunks(&[b"abc", b"defg", b"h"]), 6)
            .await
            .unwrap();
        assert_eq!((&got[..], all), (&b"abcdef"[..], false));
        let (got, all) = read_prefix(chunks(&[]), 6).await.unwrap();
        assert_eq!((&got[..], all), (&b""[..], true));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", std::time::UNIX_EPOCH),
            Some(Duration::from_secs(784_111_777))
        );
        assert_eq!(parse_retry_after("soon", now), None);
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
