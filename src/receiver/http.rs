//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip-compressed.
//!
//! Errors follow the OTLP specification: 400 with a `google.rpc.Status` body for an
//! undecodable body, 413 for a body over the limit (after decompression), 415 for an
//! unsupported content type or encoding, 503 with `Retry-After` when the pipeline is full.
//! Response bodies use the request's encoding.

use super::decode::{gunzip_limited, DecompressError};
use super::{Accepted, Ingest, Refusal};
use crate::otlp::{json, rpc};
use crate::telemetry::{Outcome, Signal, Transport};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;

#[derive(Clone)]
struct HttpState {
    ingest: Ingest,
    max_body: usize,
    body_timeout: std::time::Duration,
}

/// The OTLP/HTTP routes, accepting bodies up to `max_body` bytes after decompression that
/// arrive within `body_timeout`.
pub fn router(ingest: Ingest, max_body: usize, body_timeout: std::time::Duration) -> Router {
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .with_state(HttpState {
            ingest,
            max_body,
            body_timeout,
        })
}

async fn traces(State(s): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle(s, Signal::Traces, headers, body).await
}
async fn metrics(State(s): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle(s, Signal::Metrics, headers, body).await
}
async fn logs(State(s): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    handle(s, Signal::Logs, headers, body).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

fn error(enc: Encoding, status: StatusCode, code: i32, msg: impl Into<String>) -> Response {
    let s = rpc::status(code, msg);
    let body = match enc {
        Encoding::Protobuf => s.encode_to_vec(),
        Encoding::Json => rpc::to_json(&s),
    };
    (status, [(header::CONTENT_TYPE, enc.content_type())], body).into_response()
}

/// Counts a request refused before it reached the pipeline and builds its response.
fn refuse(
    ingest: &Ingest,
    signal: Signal,
    enc: Encoding,
    outcome: Outcome,
    msg: String,
) -> Response {
    ingest.refused_early(Transport::Http, signal, outcome);
    let (status, code) = match outcome {
        Outcome::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, rpc::code::RESOURCE_EXHAUSTED),
        Outcome::Unsupported => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            rpc::code::INVALID_ARGUMENT,
        ),
        _ => (StatusCode::BAD_REQUEST, rpc::code::INVALID_ARGUMENT),
    };
    error(enc, status, code, msg)
}

async fn handle(s: HttpState, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let ingest = &s.ingest;
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !ingest.authorized(Transport::Http, signal, authorization) {
        let mut r = error(
            Encoding::Protobuf,
            StatusCode::UNAUTHORIZED,
            rpc::code::UNAUTHENTICATED,
            "missing or wrong bearer token",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let enc = match media.as_deref() {
        Some("application/x-protobuf") => Encoding::Protobuf,
        Some("application/json") => Encoding::Json,
        other => {
            let msg = format!(
                "unsupported content type {:?}; use application/x-protobuf or application/json",
                other.unwrap_or("(none)")
            );
            return refuse(
                ingest,
                signal,
                Encoding::Protobuf,
                Outcome::Unsupported,
                msg,
            );
        }
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => false,
        Some("gzip") => true,
        Some(other) => {
            let msg = format!("unsupported content encoding {other:?}; use gzip or none");
            return refuse(ingest, signal, enc, Outcome::Unsupported, msg);
        }
    };
    if let Some(delay) = ingest.over_memory(Transport::Http, signal) {
        return busy(enc, "over the memory budget", delay);
    }
    // The body's room in the in-flight pool, taken before it is read: its declared length
    // (hyper has checked `Content-Length` and exposes it as the size hint), or the most it
    // may be.
    let declared = http_body::Body::size_hint(&body).upper();
    let max = s.max_body as u64;
    let mut held = match ingest.reserve(Transport::Http, signal, declared.unwrap_or(max).min(max)) {
        Ok(r) => r,
        Err(delay) => return busy(enc, IN_FLIGHT_FULL, delay),
    };
    let collected =
        tokio::time::timeout(s.body_timeout, Limited::new(body, s.max_body).collect()).await;
    let Ok(collected) = collected else {
        ingest.refused_early(Transport::Http, signal, Outcome::Timeout);
        return error(
            enc,
            StatusCode::REQUEST_TIMEOUT,
            rpc::code::DEADLINE_EXCEEDED,
            format!("request body not received within {:?}", s.body_timeout),
        );
    };
    let raw = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(&s, signal, enc);
        }
        Err(e) => {
            let msg = format!("reading request body: {e}");
            return refuse(ingest, signal, enc, Outcome::Malformed, msg);
        }
    };
    if let Some(r) = held.as_mut() {
        r.shrink_to(raw.len() as u64);
    }
    // Decompressing, converting JSON and scanning are CPU work proportional to the body;
    // large bodies go to the blocking pool so they never stall the I/O threads.
    if raw.len() > INLINE_BODY_BYTES {
        let task =
            tokio::task::spawn_blocking(move || process(&s, signal, enc, gzip, raw, &mut held));
        return task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "request processing task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        });
    }
    process(&s, signal, enc, gzip, raw, &mut held)
}

/// Decompressed-to-compressed size reserved for a gzip body before it is decompressed.
const GZIP_RATIO: usize = 8;

/// Why a request was refused for the in-flight pool.
const IN_FLIGHT_FULL: &str = "over the memory budget: too many request bytes in flight";

/// Bodies up to this size are processed on the I/O thread that read them.
const INLINE_BODY_BYTES: usize = 256 << 10;

fn too_large(s: &HttpState, signal: Signal, enc: Encoding) -> Response {
    let msg = format!("request body exceeds {} bytes", s.max_body);
    refuse(&s.ingest, signal, enc, Outcome::TooLarge, msg)
}

/// Decompresses, converts and ingests a body that was read completely. The protobuf body
/// is handed on without a copy; a gzip-compressed protobuf body also as received, for
/// upstreams that take gzip. Each step first grows the request's in-flight reservation by
/// what it will allocate.
fn process(
    s: &HttpState,
    signal: Signal,
    enc: Encoding,
    gzip: bool,
    raw: Bytes,
    held: &mut Option<crate::inflight::Reservation>,
) -> Response {
    let ingest = &s.ingest;
    let grow = |held: &mut Option<crate::inflight::Reservation>, bytes: usize| {
        let total = held.as_ref().map_or(0, |r| r.bytes()) + bytes as u64;
        ingest.grow(Transport::Http, signal, held, total)
    };
    let mut received_gzip = None;
    let mut bytes = raw;
    if gzip {
        // Room for a typical ratio first; what the output really takes is reserved once
        // it is known (decompression stops at the body limit either way).
        let wire = bytes.len();
        if let Err(delay) = grow(held, wire.saturating_mul(GZIP_RATIO).min(s.max_body)) {
            return busy(enc, IN_FLIGHT_FULL, delay);
        }
        let plain = match gunzip_limited(&bytes, s.max_body) {
            Ok(d) => d,
            Err(DecompressError::TooLarge { .. }) => return too_large(s, signal, enc),
            Err(e @ DecompressError::Corrupt(_)) => {
                return refuse(ingest, signal, enc, Outcome::Malformed, e.to_string());
            }
        };
        if enc == Encoding::Protobuf {
            received_gzip = Some(bytes);
        }
        let total = (wire + plain.len()) as u64;
        if let Err(delay) = ingest.resize(Transport::Http, signal, held, total) {
            return busy(enc, IN_FLIGHT_FULL, delay);
        }
        bytes = Bytes::from(plain);
    }
    if enc == Encoding::Json {
        let conversion = match json::check_expansion(&bytes) {
            Ok(c) => c,
            Err(msg) => return refuse(ingest, signal, enc, Outcome::TooLarge, msg),
        };
        if let Err(delay) = grow(held, conversion) {
            return busy(enc, IN_FLIGHT_FULL, delay);
        }
        bytes = match json::to_protobuf(signal, &bytes) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                let msg = format!("request is not valid OTLP/JSON: {e}");
                return refuse(ingest, signal, enc, Outcome::Malformed, msg);
            }
        };
    }
    match ingest.export(Transport::Http, signal, bytes, received_gzip) {
        Ok(accepted) => success(enc, signal, accepted),
        Err(Refusal::Malformed(msg)) => error(
            enc,
            StatusCode::BAD_REQUEST,
            rpc::code::INVALID_ARGUMENT,
            msg,
        ),
        Err(Refusal::TooLarge(msg)) => error(
            enc,
            StatusCode::PAYLOAD_TOO_LARGE,
            rpc::code::RESOURCE_EXHAUSTED,
            msg,
        ),
        Err(Refusal::Busy(delay)) => busy(enc, "pipeline queues are full", delay),
        Err(Refusal::OverMemory(delay)) => busy(enc, "over the memory budget", delay),
        Err(Refusal::ShuttingDown) => busy(enc, "shutting down", std::time::Duration::from_secs(1)),
    }
}

fn busy(enc: Encoding, msg: &str, delay: std::time::Duration) -> Response {
    let mut r = error(
        enc,
        StatusCode::SERVICE_UNAVAILABLE,
        rpc::code::UNAVAILABLE,
        msg,
    );
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

fn success(enc: Encoding, signal: Signal, a: Accepted) -> Response {
    use super::grpc::{GrpcSignal, Logs, Metrics, Traces};
    let body = match enc {
        Encoding::Protobuf => match signal {
            Signal::Traces => Traces::response(a).encode_to_vec(),
            Signal::Metrics => Metrics::response(a).encode_to_vec(),
            Signal::Logs => Logs::response(a).encode_to_vec(),
        },
        Encoding::Json => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            let v = if a.rejected > 0 {
                serde_json::json!({ "partialSuccess": {
                    field: a.rejected.to_string(),
                    "errorMessage": a.error_message.unwrap_or_default(),
                }})
            } else {
                serde_json::json!({})
            };
            serde_json::to_vec(&v).unwrap_or_default()
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, enc.content_type())],
        body,
    )
        .into_response()
}
