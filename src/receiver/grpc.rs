//! OTLP/gRPC receiver: `TraceService`, `MetricsService` and `LogsService` `Export`.
//!
//! The services are written against tonic's server plumbing with a codec that hands over the
//! request message as raw bytes (tonic has already stripped gRPC framing and gzip), so the
//! span scanner reads them without building a prost object tree. Responses are ordinary
//! prost messages.

use super::{Accepted, Ingest, Refusal};
use crate::otlp::rpc;
use crate::telemetry::{Outcome, Signal, Transport};
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

/// One OTLP signal's gRPC service description.
pub trait GrpcSignal: Send + Sync + 'static {
    /// Fully qualified service name.
    const NAME: &'static str;
    /// The signal.
    const SIGNAL: Signal;
    /// The response message.
    type Response: Message + Default + Send + 'static;
    /// Builds the response for an accepted request.
    fn response(accepted: Accepted) -> Self::Response;
}

/// `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Debug)]
pub enum Traces {}
/// `opentelemetry.proto.collector.metrics.v1.MetricsService`.
#[derive(Debug)]
pub enum Metrics {}
/// `opentelemetry.proto.collector.logs.v1.LogsService`.
#[derive(Debug)]
pub enum Logs {}

impl GrpcSignal for Traces {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const SIGNAL: Signal = Signal::Traces;
    type Response = ExportTraceServiceResponse;
    fn response(a: Accepted) -> Self::Response {
        ExportTraceServiceResponse {
            partial_success: (a.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(a.rejected).unwrap_or(i64::MAX),
                error_message: a.error_message.unwrap_or_default(),
            }),
        }
    }
}

impl GrpcSignal for Metrics {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const SIGNAL: Signal = Signal::Metrics;
    type Response = ExportMetricsServiceResponse;
    fn response(a: Accepted) -> Self::Response {
        ExportMetricsServiceResponse {
            partial_success: (a.rejected > 0).then(|| ExportMetricsPartialSuccess {
                rejected_data_points: i64::try_from(a.rejected).unwrap_or(i64::MAX),
                error_message: a.error_message.unwrap_or_default(),
            }),
        }
    }
}

impl GrpcSignal for Logs {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const SIGNAL: Signal = Signal::Logs;
    type Response = ExportLogsServiceResponse;
    fn response(a: Accepted) -> Self::Response {
        ExportLogsServiceResponse {
            partial_success: (a.rejected > 0).then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(a.rejected).unwrap_or(i64::MAX),
                error_message: a.error_message.unwrap_or_default(),
            }),
        }
    }
}

/// Codec: requests stay bytes, responses are prost messages.
struct RawCodec<R>(PhantomData<fn() -> R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

struct RawDecoder;
struct MessageEncoder<R>(PhantomData<fn() -> R>);

/// The buffer tonic gathers a request's message in, allocated when the call starts. With
/// tonic's default (8 KiB) a message that comes in one 16 KiB HTTP/2 DATA frame (most
/// gzip-compressed batches, small uncompressed ones) outgrows it twice: once when the frame
/// is put in, and again when the message's length is read and reserved on top of what is
/// there. At 32 KiB such a message is gathered without a move. Longer messages are moved
/// once, when their length is read (twice before). tonic also rounds the first reservation
/// of its decompression buffer up to a multiple of this.
const MESSAGE_BUFFER_BYTES: usize = 32 * 1024;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }

    fn buffer_settings(&self) -> tonic::codec::BufferSettings {
        // The second figure is tonic's default yield threshold, which only encoding uses.
        tonic::codec::BufferSettings::new(MESSAGE_BUFFER_BYTES, 32 * 1024)
    }
}

impl<R: Message> Encoder for MessageEncoder<R> {
    type Item = R;
    type Error = Status;
    fn encode(&mut self, item: R, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding response: {e}")))
    }
}

impl<R: Message + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = MessageEncoder<R>;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// The gRPC service for signal `S`.
pub struct OtlpGrpc<S: GrpcSignal> {
    ingest: Ingest,
    max_message_bytes: usize,
    _signal: PhantomData<fn() -> S>,
}

impl<S: GrpcSignal> Clone for OtlpGrpc<S> {
    fn clone(&self) -> Self {
        Self {
            ingest: self.ingest.clone(),
            max_message_bytes: self.max_message_bytes,
            _signal: PhantomData,
        }
    }
}

impl<S: GrpcSignal> OtlpGrpc<S> {
    /// A service accepting messages up to `max_message_bytes` after decompression.
    pub fn new(ingest: Ingest, max_message_bytes: usize) -> Self {
        Self {
            ingest,
            max_message_bytes,
            _signal: PhantomData,
        }
    }
}

impl<S: GrpcSignal> NamedService for OtlpGrpc<S> {
    const NAME: &'static str = S::NAME;
}

struct Export<S: GrpcSignal> {
    ingest: Ingest,
    /// The request's frames as received, when its gzip-compressed message is wanted.
    kept: Option<Arc<Mutex<Kept>>>,
    /// The request's room in the in-flight pool, set to the message's size once it is read
    /// and given back when the call ends. `None` without a memory budget.
    held: Option<crate::inflight::Reservation>,
    _signal: PhantomData<fn() -> S>,
}

/// The data chunks of a request body, as received (cheap `Bytes` clones).
#[derive(Default)]
struct Kept {
    chunks: Vec<Bytes>,
    len: usize,
    /// A chunk was left out (over the limit): later ones are not kept either.
    over: bool,
}

impl Kept {
    /// The first gRPC message if it was sent compressed: the gzip stream as received.
    fn compressed_message(&self) -> Option<Bytes> {
        let all = match self.chunks.as_slice() {
            [one] => one.clone(),
            many => {
                let mut b = bytes::BytesMut::with_capacity(self.len);
                for c in many {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        };
        let (&flag, rest) = all.split_first()?;
        let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        (flag == 1 && all.len() >= 5 + len).then(|| all.slice(5..5 + len))
    }
}

/// Passes a request body on to tonic while keeping its data chunks (up to `limit` bytes;
/// beyond it tonic refuses the message anyway), so a gzip-compressed message can be
/// forwarded without compressing it again.
struct Tee<B> {
    inner: std::pin::Pin<Box<B>>,
    kept: Arc<Mutex<Kept>>,
    limit: usize,
}

impl<B> http_body::Body for Tee<B>
where
    B: http_body::Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let polled = std::task::ready!(self.inner.as_mut().poll_frame(cx))
            .map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))));
        if let Some(d) = polled.as_ref().and_then(|r| r.as_ref().ok()?.data_ref()) {
            if let Ok(mut k) = self.kept.lock() {
                // Contiguous from the start or nothing: once a chunk is left out, no later
                // one may fill its place.
                if !k.over && k.len + d.len() <= self.limit {
                    k.len += d.len();
                    k.chunks.push(d.clone());
                } else {
                    k.over = true;
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S: GrpcSignal> UnaryService<Bytes> for Export<S> {
    type Response = S::Response;
    type Future = BoxFuture<tonic::Response<S::Response>, Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        let kept = self.kept.take();
        let mut held = self.held.take();
        Box::pin(async move {
            let body = request.into_inner();
            let gzipped = kept.and_then(|k| k.lock().ok().and_then(|k| k.compressed_message()));
            // The message is read: its real size replaces the entry reservation.
            let size = (body.len() + gzipped.as_ref().map_or(0, Bytes::len)) as u64;
            if let Err(delay) = ingest.resize(Transport::Grpc, S::SIGNAL, &mut held, size) {
                return Err(retryable(IN_FLIGHT_FULL, delay));
            }
            match ingest.export(Transport::Grpc, S::SIGNAL, body, gzipped) {
                Ok(accepted) => Ok(tonic::Response::new(S::response(accepted))),
                Err(refusal) => Err(to_status(refusal)),
            }
        })
    }
}

/// In-flight bytes a gRPC call reserves before its message is read.
const GRPC_ENTRY_RESERVE: usize = 1 << 20;

/// Why a call was refused for the in-flight pool.
const IN_FLIGHT_FULL: &str = "over the memory budget: too many request bytes in flight";

fn to_status(r: Refusal) -> Status {
    match r {
        Refusal::Malformed(msg) => Status::invalid_argument(msg),
        Refusal::TooLarge(msg) => Status::resource_exhausted(msg),
        Refusal::Busy(delay) => retryable("pipeline queues are full", delay),
        Refusal::OverMemory(delay) => retryable("over the memory budget", delay),
        Refusal::ShuttingDown => retryable("shutting down", std::time::Duration::from_secs(1)),
    }
}

fn retryable(msg: &str, delay: std::time::Duration) -> Status {
    let details = rpc::unavailable_with_retry(msg, delay).encode_to_vec();
    Status::with_details(Code::Unavailable, msg, Bytes::from(details))
}

impl<S, B> Service<http::Request<B>> for OtlpGrpc<S>
where
    S: GrpcSignal,
    B: http_body::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let ingest = self.ingest.clone();
        let max = self.max_message_bytes;
        let is_export = req
            .uri()
            .path()
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(S::NAME))
            == Some("/Export");
        Box::pin(async move {
            if !is_export {
                return Ok(Status::unimplemented("only Export is implemented").into_http());
            }
            let authorization = req.headers().get(http::header::AUTHORIZATION);
            if !ingest.authorized(
                Transport::Grpc,
                S::SIGNAL,
                authorization.map(|v| v.as_bytes()),
            ) {
                return Ok(Status::unauthenticated("missing or wrong bearer token").into_http());
            }
            if let Some(delay) = ingest.over_memory(Transport::Grpc, S::SIGNAL) {
                return Ok(retryable("over the memory budget", delay).into_http());
            }
            // Room in the in-flight pool before tonic reads the message: a typical message's
            // worth (the size is not known before it arrives), set to the real size once read.
            let entry = max.min(GRPC_ENTRY_RESERVE) as u64;
            let held = match ingest.reserve(Transport::Grpc, S::SIGNAL, entry) {
                Ok(r) => r,
                Err(delay) => return Ok(retryable(IN_FLIGHT_FULL, delay).into_http()),
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec::<S::Response>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            // Keep the compressed message only when some upstream will take it as it is.
            let gzip = req
                .headers()
                .get("grpc-encoding")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            let kept = (gzip && ingest.forward.takes_gzip(S::SIGNAL))
                .then(|| Arc::new(Mutex::new(Kept::default())));
            let svc = Export::<S> {
                ingest: ingest.clone(),
                kept: kept.clone(),
                held,
                _signal: PhantomData,
            };
            let mut response = match kept {
                Some(kept) => {
                    let req = req.map(|b| Tee {
                        inner: Box::pin(b),
                        kept,
                        // The frame header and a message at the limit.
                        limit: max.saturating_add(5),
                    });
                    grpc.unary(svc, req).await
                }
                None => grpc.unary(svc, req).await,
            };
            match normalize_transport_errors(&mut response) {
                Some(TransportRefusal::TooLarge) => {
                    ingest.refused_early(Transport::Grpc, S::SIGNAL, Outcome::TooLarge)
                }
                Some(TransportRefusal::Undecodable) => {
                    ingest.refused_early(Transport::Grpc, S::SIGNAL, Outcome::Malformed)
                }
                None => {}
            }
            Ok(response)
        })
    }
}

enum TransportRefusal {
    TooLarge,
    Undecodable,
}

/// Brings the codes of requests tonic refuses before our service runs in line with the
/// OTLP specification, and says which refusal it was (those requests never reach
/// [`Ingest::export`], so they are counted here):
/// - an over-limit uncompressed message comes back from tonic as `OUT_OF_RANGE`; the
///   specification (and gRPC's own servers) say `RESOURCE_EXHAUSTED`. Over-limit compressed
///   messages already are `RESOURCE_EXHAUSTED`.
/// - a message tonic cannot decode (corrupt gzip, missing message) comes back as `INTERNAL`;
///   for the client that is a bad request: `INVALID_ARGUMENT`.
///
/// Our services never return `OUT_OF_RANGE` or `INTERNAL` themselves (the one `INTERNAL` they
/// could produce, a response that fails to encode, cannot happen for these messages).
fn normalize_transport_errors(
    resp: &mut http::Response<tonic::body::Body>,
) -> Option<TransportRefusal> {
    let headers = resp.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())?;
    let (refusal, replacement) = match Code::from_i32(code) {
        Code::OutOfRange => (TransportRefusal::TooLarge, Some(Code::ResourceExhausted)),
        Code::ResourceExhausted => (TransportRefusal::TooLarge, None),
        Code::Internal => (TransportRefusal::Undecodable, Some(Code::InvalidArgument)),
        _ => return None,
    };
    if let Some(c) = replacement {
        headers.insert("grpc-status", http::HeaderValue::from(c as i32));
    }
    Some(refusal)
}
