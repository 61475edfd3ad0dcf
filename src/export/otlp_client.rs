//! An OTLP client that sends already-encoded request bodies: over gRPC (tonic, the bytes
//! passed through a pass-through codec) or over HTTP (`POST {endpoint}/v1/{signal}`), with
//! headers, gzip and TLS. Each attempt is classified as the OTLP specification says:
//! gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `CANCELLED`,
//! `DATA_LOSS` (and `RESOURCE_EXHAUSTED` with `RetryInfo`) and HTTP 429/502/503/504 are
//! retried, honouring `RetryInfo` / `Retry-After`; anything else is permanent.

use super::delivery::{Payload, SendError, Upstream};
use super::http::{error_chain, https_client, parse_retry_after, HttpsClient, USER_AGENT};
use crate::telemetry::Signal;
use bytes::{Buf, BufMut, Bytes};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// Body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
}

pub use super::http::TlsSettings;

/// Everything needed to reach one upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientConfig {
    /// `http(s)://host:port[/base]`.
    pub endpoint: String,
    /// gRPC or HTTP.
    pub protocol: Protocol,
    /// Headers (gRPC metadata) added to every request, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Compression of request bodies.
    pub compression: Compression,
    /// TLS, for `https` endpoints.
    pub tls: TlsSettings,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

/// Why a client could not be built.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint {0:?}: {1}")]
    Endpoint(String, String),
    /// A header name or value is not valid.
    #[error("invalid header {0:?}")]
    Header(String),
    /// TLS material could not be used.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A client for one upstream.
pub struct OtlpClient {
    cfg: ClientConfig,
    inner: Inner,
}

enum Inner {
    Grpc(
        tonic::transport::Channel,
        Vec<(
            tonic::metadata::AsciiMetadataKey,
            tonic::metadata::AsciiMetadataValue,
        )>,
    ),
    Http(Box<HttpsClient>, http::HeaderMap),
}

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpClient")
            .field("endpoint", &self.cfg.endpoint)
            .field("protocol", &self.cfg.protocol)
            .finish()
    }
}

/// Makes `ring` the process-wide TLS crypto provider (once; later calls do nothing). The
/// clients here pass their provider explicitly; this is for any other TLS user.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl OtlpClient {
    /// A client; connections are made lazily, so a down upstream does not stop start-up.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        install_crypto_provider();
        let inner = match cfg.protocol {
            Protocol::Grpc => {
                let mut ep = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| ClientError::Endpoint(cfg.endpoint.clone(), e.to_string()))?
                    .timeout(cfg.timeout)
                    .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
                    .tcp_nodelay(true);
                if cfg.tls.insecure_skip_verify {
                    return Err(ClientError::Tls(
                        "insecure_skip_verify works with protocol http only; for gRPC trust the CA with ca_file".into(),
                    ));
                }
                if cfg.endpoint.starts_with("https://") {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
                    if let Some(ca) = &cfg.tls.ca_pem {
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(ca));
                    }
                    if let Some((cert, key)) = &cfg.tls.identity_pem {
                        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
                    }
                    ep = ep
                        .tls_config(tls)
                        .map_err(|e| ClientError::Tls(e.to_string()))?;
                }
                let headers = cfg
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        let key = k
                            .parse::<tonic::metadata::AsciiMetadataKey>()
                            .map_err(|_| ClientError::Header(k.clone()))?;
                        let value = v
                            .parse::<tonic::metadata::AsciiMetadataValue>()
                            .map_err(|_| ClientError::Header(k.clone()))?;
                        Ok((key, value))
                    })
                    .collect::<Result<Vec<_>, ClientError>>()?;
                Inner::Grpc(ep.connect_lazy(), headers)
            }
            Protocol::Http => {
                let mut headers = http::HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                headers.insert(
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(USER_AGENT),
                );
                if cfg.compression == Compression::Gzip {
                    headers.insert(
                        http::header::CONTENT_ENCODING,
                        http::HeaderValue::from_static("gzip"),
                    );
                }
                for (k, v) in &cfg.headers {
                    let name = http::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|_| ClientError::Header(k.clone()))?;
                    let value = http::HeaderValue::from_str(v)
                        .map_err(|_| ClientError::Header(k.clone()))?;
                    headers.insert(name, value);
                }
                let tls = crate::export::remote_write::TlsSettings {
                    ca_pem: cfg.tls.ca_pem.clone(),
                    identity_pem: cfg.tls.identity_pem.clone(),
                    insecure_skip_verify: false,
                };
                let client = https_client(&tls, cfg.timeout.min(Duration::from_secs(10)))
                    .map_err(ClientError::Tls)?;
                Inner::Http(Box::new(client), headers)
            }
        };
        Ok(Self { cfg, inner })
    }

    async fn send_grpc(
        &self,
        channel: &tonic::transport::Channel,
        headers: &[(
            tonic::metadata::AsciiMetadataKey,
            tonic::metadata::AsciiMetadataValue,
        )],
        payload: &Payload,
    ) -> Result<(), SendError> {
        let path = match payload.signal.unwrap_or(Signal::Traces) {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        };
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        if self.cfg.compression == Compression::Gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        grpc.ready().await.map_err(|e| SendError::Retryable {
            reason: format!("connecting to {}: {e}", self.cfg.endpoint),
            retry_after: None,
        })?;
        let mut req = tonic::Request::new(payload.body.clone());
        req.set_timeout(self.cfg.timeout);
        for (k, v) in headers {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        match grpc
            .unary(req, http::uri::PathAndQuery::from_static(path), PassThrough)
            .await
        {
            Ok(_) => Ok(()),
            Err(status) => Err(classify_grpc(&status)),
        }
    }

    async fn send_http(
        &self,
        client: &HttpsClient,
        headers: &http::HeaderMap,
        payload: &Payload,
    ) -> Result<(), SendError> {
        let signal = payload.signal.unwrap_or(Signal::Traces).name();
        let url = format!("{}/v1/{signal}", self.cfg.endpoint.trim_end_matches('/'));
        let uri: http::Uri = url.parse().map_err(|e| SendError::Permanent {
            reason: format!("invalid URL {url}: {e}"),
        })?;
        let body = match self.cfg.compression {
            Compression::None => payload.body.clone(),
            // Received gzip-compressed and passed on as it came.
            Compression::Gzip if payload.gzipped => payload.body.clone(),
            Compression::Gzip => Bytes::from(gzip(&payload.body)),
        };
        let mut req = http::Request::new(http_body_util::Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers.clone();
        let exchange = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| SendError::Retryable {
                    reason: format!("POST {url}: {}", error_chain(&e)),
                    retry_after: None,
                })?;
            let retry_after = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            let status = resp.status().as_u16();
            // Read the (small) answer so the connection can be reused.
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            classify_http(status, retry_after, &url)
        };
        match tokio::time::timeout(self.cfg.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Retryable {
                reason: format!("POST {url}: timed out after {:?}", self.cfg.timeout),
                retry_after: None,
            }),
        }
    }
}

impl Upstream for OtlpClient {
    fn send<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move {
            match &self.inner {
                Inner::Grpc(channel, headers) => self.send_grpc(channel, headers, payload).await,
                Inner::Http(client, headers) => self.send_http(client, headers, payload).await,
            }
        })
    }
}

/// gzip at the fastest level: the upstream link, not the ratio, is what it is for.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = e.write_all(body);
    e.finish().unwrap_or_default()
}

/// OTLP/HTTP response classification.
pub fn classify_http(
    status: u16,
    retry_after: Option<Duration>,
    url: &str,
) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        429 | 502 | 503 | 504 => Err(SendError::Retryable {
            reason: format!("POST {url}: HTTP {status}"),
            retry_after,
        }),
        _ => Err(SendError::Permanent {
            reason: format!("POST {url}: HTTP {status}"),
        }),
    }
}

/// OTLP/gRPC status classification.
pub fn classify_grpc(status: &tonic::Status) -> SendError {
    use tonic::Code;
    let retry_after = retry_info(status.details());
    let reason = format!("gRPC {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable {
            reason,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => SendError::Retryable {
            reason,
            retry_after,
        },
        _ => SendError::Permanent { reason },
    }
}

/// The delay of a `google.rpc.RetryInfo` in `grpc-status-details-bin`.
fn retry_info(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    let status = crate::otlp::rpc::Status::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|a| a.type_url.ends_with("google.rpc.RetryInfo"))
        .find_map(|a| crate::otlp::rpc::RetryInfo::decode(a.value.as_slice()).ok())
        .and_then(|r| r.retry_delay)
        .map(|d| {
            Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
                + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
        })
}

/// Codec sending the body as is and ignoring the response body.
#[derive(Clone, Copy, Debug, Default)]
struct PassThrough;

struct BytesEncoder;
struct BytesDecoder;

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put(item);
        Ok(())
    }
}

impl Decoder for BytesDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

impl Codec for PassThrough {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesEncoder;
    type Decoder = BytesDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        BytesDecoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_classification() {
        assert!(classify_http(200, None, "u").is_ok());
        for s in [429, 502, 503, 504] {
            assert!(matches!(
                classify_http(s, Some(Duration::from_secs(2)), "u"),
                Err(SendError::Retryable { retry_after: Some(d), .. }) if d == Duration::from_secs(2)
            ));
        }
        for s in [400, 401, 403, 404, 413, 500] {
            assert!(matches!(
                classify_http(s, None, "u"),
                Err(SendError::Permanent { .. })
            ));
        }
    }

    #[test]
    fn grpc_classification() {
        assert!(matches!(
            classify_grpc(&tonic::Status::unavailable("x")),
            SendError::Retryable { .. }
        ));
        assert!(matches!(
            classify_grpc(&tonic::Status::invalid_argument("x")),
            SendError::Permanent { .. }
        ));
        assert!(matches!(
            classify_grpc(&tonic::Status::resource_exhausted("x")),
            SendError::Permanent { .. }
        ));
        use prost::Message;
        let details = crate::otlp::rpc::unavailable_with_retry("busy", Duration::from_secs(3));
        let s = tonic::Status::with_details(
            tonic::Code::ResourceExhausted,
            "busy",
            details.encode_to_vec().into(),
        );
        assert_eq!(
            classify_grpc(&s),
            SendError::Retryable {
                reason: "gRPC ResourceExhausted: busy".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let body = b"hello hello hello hello".repeat(100);
        let z = gzip(&body);
        assert!(z.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        assert_eq!(out, body);
    }
}
