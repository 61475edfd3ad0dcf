//! Listening sockets, shared by the OTLP receivers and the admin server: accepting under a
//! connection cap, optional TLS (with mutual TLS and certificate reload), and serving HTTP
//! on what was accepted.

pub mod accept;
pub mod conn;
pub mod expiry;
pub mod serve;
pub mod tls;

pub use accept::{Acceptor, ConnLimits};

/// ALPN protocols a gRPC listener offers.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN protocols an HTTP listener offers.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];
