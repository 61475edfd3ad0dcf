//! The client stack that talks to upstreams: HTTPS/TLS settings and connectors ([`http`]),
//! HTTP/1.1 and HTTP/2 connection pools driven by the task that sends on them ([`http1`],
//! [`http2`], [`driven`]), frame coalescing for HTTP/2 writes ([`coalesce`]), and the OTLP
//! client built on them ([`otlp_client`]), an [`Upstream`](crate::export::delivery::Upstream)
//! for OTLP/gRPC and OTLP/HTTP. It knows nothing of queues or retries: one call is one
//! attempt, classified for [`delivery`](crate::export::delivery). [`settings`] validates what
//! every client is configured with (transport, compression, timeout, headers, TLS).

pub mod coalesce;
pub mod driven;
pub mod http;
pub mod http1;
pub mod http2;
pub mod otlp_client;
pub mod settings;
