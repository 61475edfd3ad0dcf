//! otel-sli: receives OTLP, derives per-feature SLIs from entry spans, and serves them.
//!
//! Data flows one way: `receiver` → `otlp::scan` → `pipeline` shards → `sli` state →
//! snapshots read by `api`. See `docs/architecture.md`.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod clock;
pub mod completeness;
pub mod config;
pub mod export;
pub mod identity;
pub mod inflight;
pub mod memory;
pub mod net;
pub mod otlp;
pub mod pipeline;
pub mod process;
pub mod receiver;
pub mod report;
pub mod settings;
pub mod sli;
pub mod slo;
pub mod telemetry;
pub mod text;
pub mod ticker;
