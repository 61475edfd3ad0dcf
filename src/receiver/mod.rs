//! OTLP receivers (gRPC and HTTP). They check transport-level limits, decompress, and hand
//! the raw request bytes to the [`Ingest`] handle; they hold nothing else.

pub mod decode;
pub mod grpc;
pub mod http;

use crate::pipeline::{IngestError, Pipeline};
use crate::telemetry::{Outcome, RefuseReason, Signal, Telemetry, Transport};
use std::sync::Arc;
use std::time::Duration;

/// What the receivers share: the pipeline, the forwarders and the self-telemetry counters.
#[derive(Clone, Debug)]
pub struct Ingest {
    /// The pipeline spans go to.
    pub pipeline: Pipeline,
    /// Self-telemetry.
    pub telemetry: Arc<Telemetry>,
    /// Upstreams accepted requests are passed on to (empty: none).
    pub forward: crate::export::forward::Forwarders,
    /// The memory budget; `None`: none.
    pub memory: Option<Arc<crate::memory::MemoryBudget>>,
    /// The bearer token requests must carry (`receivers.auth`); `None`: none.
    pub auth: Option<crate::auth::Token>,
}

/// An accepted request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items (spans, data points, log records) in the request.
    pub items: u64,
    /// Items rejected (for `partial_success`).
    pub rejected: u64,
    /// Why they were rejected.
    pub error_message: Option<String>,
}

/// A refused request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a valid OTLP message.
    Malformed(String),
    /// Queues are full; retry after the delay.
    Busy(Duration),
    /// The process is over its memory budget's soft limit; retry after the delay.
    OverMemory(Duration),
    /// The request is too large to process.
    TooLarge(String),
    /// Shutting down; retry elsewhere or later.
    ShuttingDown,
}

impl Ingest {
    /// Handles the decoded (protobuf) body of one export request and, once accepted,
    /// passes it on to the forwarders without a copy. `gzipped` is the body as it was
    /// received, when it came gzip-compressed: upstreams that want gzip get those bytes.
    pub fn export(
        &self,
        transport: Transport,
        signal: Signal,
        body: bytes::Bytes,
        gzipped: Option<bytes::Bytes>,
    ) -> Result<Accepted, Refusal> {
        if let Some(delay) = self.over_memory(transport, signal) {
            return Err(Refusal::OverMemory(delay));
        }
        let r = self.ingest(transport, signal, &body);
        if let Ok(a) = &r {
            self.forward
                .forward(signal, &body, gzipped.as_ref(), a.items);
        }
        r
    }

    fn ingest(
        &self,
        transport: Transport,
        signal: Signal,
        body: &[u8],
    ) -> Result<Accepted, Refusal> {
        let t = &self.telemetry;
        let result = match signal {
            Signal::Traces => self.traces(transport, body),
            Signal::Metrics | Signal::Logs => self.signal(transport, signal, body),
        };
        let outcome = match &result {
            Ok(a) if a.rejected > 0 => Outcome::Partial,
            Ok(_) => Outcome::Ok,
            Err(Refusal::Malformed(_)) => Outcome::Malformed,
            Err(Refusal::TooLarge(_)) => Outcome::TooLarge,
            Err(Refusal::Busy(_) | Refusal::ShuttingDown) => Outcome::Busy,
            Err(Refusal::OverMemory(_)) => Outcome::MemoryLimit,
        };
        t.request(transport, signal, outcome);
        result
    }

    fn signal(
        &self,
        transport: Transport,
        signal: Signal,
        body: &[u8],
    ) -> Result<Accepted, Refusal> {
        match self.pipeline.ingest_signal(signal, body) {
            Ok(n) => {
                self.telemetry.items(transport, signal, n);
                Ok(Accepted {
                    items: n,
                    ..Accepted::default()
                })
            }
            Err(IngestError::Malformed(e)) => Err(Refusal::Malformed(format!(
                "request is not a valid {}: {e}",
                match signal {
                    Signal::Metrics => "ExportMetricsServiceRequest",
                    _ => "ExportLogsServiceRequest",
                }
            ))),
            Err(IngestError::Busy { retry_after, .. }) => Err(Refusal::Busy(retry_after)),
            Err(e @ IngestError::TooLarge) => Err(Refusal::TooLarge(e.to_string())),
            Err(IngestError::ShuttingDown) => Err(Refusal::ShuttingDown),
        }
    }

    fn traces(&self, transport: Transport, body: &[u8]) -> Result<Accepted, Refusal> {
        let t = &self.telemetry;
        match self.pipeline.ingest_traces(body) {
            Ok(tally) => {
                t.items(transport, Signal::Traces, tally.spans);
                t.accepted_spans(transport, tally.spans - tally.rejected());
                t.refused_spans(transport, RefuseReason::InvalidTraceId, tally.bad_trace_id);
                t.refused_spans(transport, RefuseReason::InvalidSpanId, tally.bad_span_id);
                t.entry_spans(tally.entries);
                t.invalid_durations(tally.invalid_durations);
                Ok(Accepted {
                    items: tally.spans,
                    rejected: tally.rejected(),
                    error_message: tally.error_message(),
                })
            }
            Err(IngestError::Malformed(e)) => Err(Refusal::Malformed(format!(
                "request is not a valid ExportTraceServiceRequest: {e}"
            ))),
            Err(IngestError::Busy { retry_after, spans }) => {
                t.refused_spans(transport, RefuseReason::Busy, spans);
                Err(Refusal::Busy(retry_after))
            }
            Err(e @ IngestError::TooLarge) => Err(Refusal::TooLarge(e.to_string())),
            Err(IngestError::ShuttingDown) => Err(Refusal::ShuttingDown),
        }
    }

    /// While the process is over its memory budget's soft limit: counts the request as
    /// refused for it and returns the delay to suggest. Receivers ask before reading a body,
    /// so refusing costs no memory, and [`Ingest::export`] asks again.
    pub fn over_memory(&self, transport: Transport, signal: Signal) -> Option<Duration> {
        let m = self.memory.as_ref().filter(|m| m.over_soft_limit())?;
        Some(self.refused_for_memory(transport, signal, m))
    }

    /// Counts a request refused for the memory budget; the delay to suggest.
    fn refused_for_memory(
        &self,
        transport: Transport,
        signal: Signal,
        m: &crate::memory::MemoryBudget,
    ) -> Duration {
        self.telemetry
            .request(transport, signal, Outcome::MemoryLimit);
        m.retry_after()
    }

    /// Reserves `bytes` of the in-flight pool for a request about to read, decompress or
    /// convert that much; `Ok(None)` without a memory budget. A refusal is counted, and
    /// carries the delay to suggest.
    pub fn reserve(
        &self,
        transport: Transport,
        signal: Signal,
        bytes: u64,
    ) -> Result<Option<crate::inflight::Reservation>, Duration> {
        let Some(m) = self.memory.as_ref() else {
            return Ok(None);
        };
        match m.in_flight().try_reserve(bytes) {
            Some(r) => Ok(Some(r)),
            None => Err(self.refused_for_memory(transport, signal, m)),
        }
    }

    /// Grows a request's reservation to `bytes`; a refusal is counted, as in
    /// [`Ingest::reserve`].
    pub fn grow(
        &self,
        transport: Transport,
        signal: Signal,
        reservation: &mut Option<crate::inflight::Reservation>,
        bytes: u64,
    ) -> Result<(), Duration> {
        let (Some(r), Some(m)) = (reservation.as_mut(), self.memory.as_ref()) else {
            return Ok(());
        };
        if r.grow_to(bytes) {
            return Ok(());
        }
        Err(self.refused_for_memory(transport, signal, m))
    }

    /// Sets a request's reservation to `bytes` (what it really holds, once known): shrinks
    /// it, or grows it as [`Ingest::grow`] does.
    pub fn resize(
        &self,
        transport: Transport,
        signal: Signal,
        reservation: &mut Option<crate::inflight::Reservation>,
        bytes: u64,
    ) -> Result<(), Duration> {
        if let Some(r) = reservation.as_mut() {
            r.shrink_to(bytes);
        }
        self.grow(transport, signal, reservation, bytes)
    }

    /// Whether a request with this `Authorization` header value may be received; a refusal
    /// is counted. Receivers ask before reading the body.
    pub fn authorized(
        &self,
        transport: Transport,
        signal: Signal,
        authorization: Option<&[u8]>,
    ) -> bool {
        let ok = crate::auth::allowed(self.auth.as_ref(), authorization);
        if !ok {
            self.telemetry
                .request(transport, signal, Outcome::Unauthenticated);
        }
        ok
    }

    /// Counts a request refused before its body could be read (too large, wrong type).
    pub fn refused_early(&self, transport: Transport, signal: Signal, outcome: Outcome) {
        self.telemetry.request(transport, signal, outcome);
    }
}
