//! An OTLP client that sends already-encoded request bodies: over gRPC (unary calls framed
//! here on an HTTP/2 connection, so a body received gzip-compressed is passed on as it came)
//! or over HTTP (`POST {endpoint}/v1/{signal}`), with headers, gzip and TLS. Each attempt is classified as the OTLP specification says:
//! gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `CANCELLED`,
//! `DATA_LOSS` (and `RESOURCE_EXHAUSTED` with `RetryInfo`) and HTTP 429/502/503/504 are
//! retried, honouring `RetryInfo` / `Retry-After`; anything else is permanent.

use super::http::{parse_retry_after, USER_AGENT};
use super::http1::H1Pool;
use super::http2::H2Pool;
use crate::export::delivery::{Payload, SendError, Upstream};
use crate::telemetry::Signal;
use bytes::{BufMut, Bytes};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::time::Duration;
use thiserror::Error;

pub use super::http::TlsSettings;
pub use super::settings::{Compression, Protocol};

/// Everything needed to reach one upstream. Its `Debug` output names the headers but not
/// their values.
#[derive(Clone, PartialEq)]
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

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &super::http::header_names(self.headers.iter().map(|(k, v)| (k, v))),
            )
            .field("compression", &self.compression)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
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
    /// Where each signal's requests go, by [`Signal`] as `usize`.
    uris: [http::Uri; 3],
    /// Headers of every request (the compression header is added per request).
    headers: http::HeaderMap,
}

enum Inner {
    Grpc(Box<H2Pool>),
    Http(Box<H1Pool>),
}

/// Idle connections kept per upstream (one per request in flight at most).
const IDLE_CONNECTIONS: usize = 1024;

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

/// The gRPC method of each signal's `Export`.
const GRPC_PATHS: [&str; 3] = [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
];

impl OtlpClient {
    /// A client; connections are made lazily, so a down upstream does not stop start-up.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        install_crypto_provider();
        let base = cfg.endpoint.trim_end_matches('/');
        let uri = |suffix: &str| {
            format!("{base}{suffix}")
                .parse::<http::Uri>()
                .map_err(|e| ClientError::Endpoint(cfg.endpoint.clone(), e.to_string()))
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        );
        let connect_timeout = cfg.timeout.min(Duration::from_secs(10));
        let (inner, uris) = match cfg.protocol {
            Protocol::Grpc => {
                if cfg.tls.insecure_skip_verify {
                    return Err(ClientError::Tls(
                        "insecure_skip_verify works with protocol http only; for gRPC trust the CA with ca_file".into(),
                    ));
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
                // The per-attempt deadline, for the server (gRPC's `grpc-timeout`, in ms).
                let ms = cfg.timeout.as_millis().clamp(1, 99_999_999);
                headers.insert(
                    "grpc-timeout",
                    http::HeaderValue::from_str(&format!("{ms}m"))
                        .map_err(|_| ClientError::Header("grpc-timeout".into()))?,
                );
                let pool = H2Pool::new(&cfg.tls, connect_timeout, IDLE_CONNECTIONS)
                    .map_err(ClientError::Tls)?;
                let uris = [
                    uri(GRPC_PATHS[0])?,
                    uri(GRPC_PATHS[1])?,
                    uri(GRPC_PATHS[2])?,
                ];
                (Inner::Grpc(Box::new(pool)), uris)
            }
            Protocol::Http => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                let client = H1Pool::new(&cfg.tls, connect_timeout, IDLE_CONNECTIONS)
                    .map_err(ClientError::Tls)?;
                let uris = [uri("/v1/traces")?, uri("/v1/metrics")?, uri("/v1/logs")?];
                (Inner::Http(Box::new(client)), uris)
            }
        };
        for (k, v) in &cfg.headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ClientError::Header(k.clone()))?;
            let value =
                http::HeaderValue::from_str(v).map_err(|_| ClientError::Header(k.clone()))?;
            headers.insert(name, value);
        }
        Ok(Self {
            cfg,
            inner,
            uris,
            headers,
        })
    }

    /// The body as it goes on the wire: compressed as configured, or as it is when it was
    /// received compressed (an upstream must accept gzip either way).
    fn wire_body(&self, payload: &Payload) -> (Bytes, bool) {
        match (payload.gzipped, self.cfg.compression) {
            (true, _) => (payload.body.clone(), true),
            (false, Compression::Gzip) => (Bytes::from(gzip(&payload.body)), true),
            (false, Compression::None) => (payload.body.clone(), false),
        }
    }

    /// A request for `payload`'s signal with the common headers.
    fn request<B>(&self, payload: &Payload, body: B) -> http::Request<B> {
        let signal = payload.signal.unwrap_or(Signal::Traces);
        let mut req = http::Request::new(body);
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uris[signal as usize].clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// One unary gRPC call: the message framed by hand (so a message received
    /// gzip-compressed goes out as it came), the status read from the trailers (or from the
    /// headers of a trailers-only answer).
    async fn send_grpc(&self, pool: &H2Pool, payload: &Payload) -> Result<(), SendError> {
        let (msg, gzipped) = self.wire_body(payload);
        let len = u32::try_from(msg.len()).map_err(|_| SendError::Permanent {
            reason: format!("message of {} bytes is too large for gRPC", msg.len()),
        })?;
        let mut prefix = bytes::BytesMut::with_capacity(5);
        prefix.put_u8(u8::from(gzipped));
        prefix.put_u32(len);
        let mut req = self.request(payload, ());
        if gzipped {
            req.headers_mut()
                .insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        }
        let what = req.uri().to_string();
        let answer =
            match tokio::time::timeout(self.cfg.timeout, pool.request(req, [prefix.freeze(), msg]))
                .await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    return Err(SendError::Retryable {
                        reason: format!("gRPC {what}: {e}"),
                        retry_after: None,
                    })
                }
                Err(_) => {
                    return Err(SendError::Retryable {
                        reason: format!("gRPC {what}: timed out after {:?}", self.cfg.timeout),
                        retry_after: None,
                    })
                }
            };
        if answer.status != http::StatusCode::OK {
            return Err(classify_grpc(&tonic::Status::new(
                http_to_grpc(answer.status.as_u16()),
                format!("HTTP {} from {what}", answer.status),
            )));
        }
        // A trailers-only answer carries the status in its headers.
        let status = tonic::Status::from_header_map(&answer.headers)
            .or_else(|| {
                answer
                    .trailers
                    .as_ref()
                    .and_then(tonic::Status::from_header_map)
            })
            .unwrap_or_else(|| {
                tonic::Status::unknown(format!("{what} answered without a grpc-status"))
            });
        match status.code() {
            tonic::Code::Ok => Ok(()),
            _ => Err(classify_grpc(&status)),
        }
    }

    async fn send_http(&self, client: &H1Pool, payload: &Payload) -> Result<(), SendError> {
        let (body, gzipped) = self.wire_body(payload);
        let mut req = self.request(payload, http_body_util::Full::new(body));
        if gzipped {
            req.headers_mut().insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        let url = req.uri().to_string();
        match tokio::time::timeout(self.cfg.timeout, client.request(req)).await {
            Ok(Ok(answer)) => {
                let retry_after = answer
                    .retry_after
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                classify_http(answer.status.as_u16(), retry_after, &url)
            }
            Ok(Err(e)) => Err(SendError::Retryable {
                reason: format!("POST {url}: {e}"),
                retry_after: None,
            }),
            Err(_) => Err(SendError::Retryable {
                reason: format!("POST {url}: timed out after {:?}", self.cfg.timeout),
                retry_after: None,
            }),
        }
    }
}

/// The gRPC code of an answer that is not HTTP 200, as gRPC's HTTP mapping says.
fn http_to_grpc(status: u16) -> tonic::Code {
    use tonic::Code;
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

impl Upstream for OtlpClient {
    fn send<'a>(
        &'a self,
        payload: &'a Payload,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move {
            match &self.inner {
                Inner::Grpc(pool) => self.send_grpc(pool, payload).await,
                Inner::Http(client) => self.send_http(client, payload).await,
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
