//! Self-telemetry: counters the receivers and pipeline bump (per request, never per span),
//! rendered by the admin server as `otel_sli_*` metrics. Owns no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc = 0,
    /// OTLP/HTTP.
    Http = 1,
}

impl Transport {
    /// All transports.
    pub const ALL: [Transport; 2] = [Transport::Grpc, Transport::Http];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Which OTLP signal a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces = 0,
    /// Metric data points.
    Metrics = 1,
    /// Log records.
    Logs = 2,
}

impl Signal {
    /// All signals.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything accepted.
    Ok = 0,
    /// Accepted with some items rejected (`partial_success`).
    Partial = 1,
    /// Body could not be decoded.
    Malformed = 2,
    /// Body over the size limit.
    TooLarge = 3,
    /// Pipeline queues full, or shutting down; the client was told to retry.
    Busy = 4,
    /// Unsupported HTTP content type or content encoding.
    Unsupported = 5,
    /// Refused because the process was over its memory budget's soft limit; the client was
    /// told to retry.
    MemoryLimit = 6,
    /// Refused for a missing or wrong bearer token (`receivers.auth`).
    Unauthenticated = 7,
    /// The body did not arrive within `receivers.otlp_http.read_timeout`.
    Timeout = 8,
}

impl Outcome {
    /// All outcomes.
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::Partial,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Busy,
        Outcome::Unsupported,
        Outcome::MemoryLimit,
        Outcome::Unauthenticated,
        Outcome::Timeout,
    ];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Busy => "busy",
            Outcome::Unsupported => "unsupported",
            Outcome::MemoryLimit => "memory_limit",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Why spans were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// Invalid trace id.
    InvalidTraceId = 0,
    /// Invalid span id.
    InvalidSpanId = 1,
    /// Queues full; the whole request was refused and may be retried.
    Busy = 2,
}

impl RefuseReason {
    /// All reasons.
    pub const ALL: [RefuseReason; 3] = [
        RefuseReason::InvalidTraceId,
        RefuseReason::InvalidSpanId,
        RefuseReason::Busy,
    ];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            RefuseReason::InvalidTraceId => "invalid_trace_id",
            RefuseReason::InvalidSpanId => "invalid_span_id",
            RefuseReason::Busy => "busy",
        }
    }
}

const T: usize = 2;
const S: usize = 3;
const O: usize = 9;
const R: usize = 3;

/// A listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// The OTLP/gRPC receiver.
    OtlpGrpc = 0,
    /// The OTLP/HTTP receiver.
    OtlpHttp = 1,
    /// The admin server.
    Admin = 2,
}

impl Listener {
    /// All listeners.
    pub const ALL: [Listener; 3] = [Listener::OtlpGrpc, Listener::OtlpHttp, Listener::Admin];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            Listener::OtlpGrpc => "otlp_grpc",
            Listener::OtlpHttp => "otlp_http",
            Listener::Admin => "admin",
        }
    }
}

/// Connection counters of one listener.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Connections open now (TLS handshakes included).
    pub open: AtomicU64,
    /// Connections closed at once because `max_connections` were open.
    pub refused: AtomicU64,
    /// Connections closed at once because their client had `max_connections_per_client`
    /// open.
    pub refused_per_client: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Certificate reloads that took effect.
    pub reloads: AtomicU64,
    /// Certificate reloads refused (the previous certificate stays in use).
    pub reload_failures: AtomicU64,
    /// Expiry (`notAfter`) of the served certificate, Unix seconds; 0: no TLS or unknown.
    pub cert_not_after: AtomicU64,
}

impl ConnStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    /// Reads a counter.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Process-wide counters.
#[derive(Debug, Default)]
pub struct Telemetry {
    requests: [[[AtomicU64; O]; S]; T],
    accepted_spans: [AtomicU64; T],
    refused_spans: [[AtomicU64; R]; T],
    items: [[AtomicU64; S]; T],
    entry_spans: AtomicU64,
    listeners: [ConnStats; 3],
    invalid_durations: AtomicU64,
}

fn get<const N: usize>(a: &[AtomicU64; N], i: usize) -> u64 {
    a.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
}

impl Telemetry {
    /// Counts one request.
    pub fn request(&self, t: Transport, s: Signal, o: Outcome) {
        self.requests[t as usize][s as usize][o as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// Counts accepted spans.
    pub fn accepted_spans(&self, t: Transport, n: u64) {
        self.accepted_spans[t as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// The connection counters of listener `l`.
    pub fn listener(&self, l: Listener) -> &ConnStats {
        &self.listeners[l as usize]
    }
    /// Counts refused spans.
    pub fn refused_spans(&self, t: Transport, r: RefuseReason, n: u64) {
        if n > 0 {
            self.refused_spans[t as usize][r as usize].fetch_add(n, Ordering::Relaxed);
        }
    }
    /// Counts received items (spans, metric data points, log records).
    pub fn items(&self, t: Transport, s: Signal, n: u64) {
        self.items[t as usize][s as usize].fetch_add(n, Ordering::Relaxed);
    }
    /// Counts entry spans that became SLI observations.
    pub fn entry_spans(&self, n: u64) {
        self.entry_spans.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts spans whose end was before their start.
    pub fn invalid_durations(&self, n: u64) {
        if n > 0 {
            self.invalid_durations.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Requests by transport, signal and outcome.
    pub fn requests_count(&self, t: Transport, s: Signal, o: Outcome) -> u64 {
        get(&self.requests[t as usize][s as usize], o as usize)
    }
    /// Accepted spans by transport.
    pub fn accepted_spans_count(&self, t: Transport) -> u64 {
        get(&self.accepted_spans, t as usize)
    }
    /// Refused spans by transport and reason.
    pub fn refused_spans_count(&self, t: Transport, r: RefuseReason) -> u64 {
        get(&self.refused_spans[t as usize], r as usize)
    }
    /// Received items by transport and signal.
    pub fn items_count(&self, t: Transport, s: Signal) -> u64 {
        get(&self.items[t as usize], s as usize)
    }
    /// Entry spans recorded.
    pub fn entry_spans_count(&self) -> u64 {
        self.entry_spans.load(Ordering::Relaxed)
    }
    /// Spans with end before start.
    pub fn invalid_durations_count(&self) -> u64 {
        self.invalid_durations.load(Ordering::Relaxed)
    }
}
