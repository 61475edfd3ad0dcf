//! One remote-write attempt: POST a snappy-compressed `WriteRequest` and classify the
//! answer as the remote-write specification says: 2xx delivered; 5xx and 429 retryable
//! (honouring `Retry-After`, in seconds or as an HTTP date); any other status permanent;
//! connection errors and timeouts retryable.
//!
//! The HTTP client is the shared one of [`crate::export::upstream::http`].

use super::config::RemoteWriteConfig;
use crate::export::delivery::{Payload, SendError, Upstream};
use crate::export::upstream::http::read_prefix;
pub use crate::export::upstream::http::{
    error_chain, https_client, parse_retry_after, tls_config, HttpsClient, USER_AGENT,
};
use bytes::Bytes;
use http_body_util::Full;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// The remote-write protocol version sent in `X-Prometheus-Remote-Write-Version`.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// Most bytes of an error response kept for the log line.
const ERROR_BODY: usize = 512;

/// Sends write requests to one endpoint.
pub struct RemoteWriteClient {
    uri: http::Uri,
    headers: http::HeaderMap,
    timeout: Duration,
    /// `Err` when the TLS settings could not be used (they are checked at validation, so
    /// this is unexpected): every attempt then fails permanently with that reason.
    client: Result<HttpsClient, String>,
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
                let body = read_prefix(resp.into_body(), ERROR_BODY)
                    .await
                    .map(|(b, _)| b)
                    .unwrap_or_default();
                String::from_utf8_lossy(&body).trim().to_string()
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
}
