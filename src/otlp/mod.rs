//! OTLP wire handling: the zero-copy span scanner, OTLP/JSON conversion, metrics and logs
//! counting, and the `google.rpc` error payloads.

pub mod json;
pub mod rpc;
pub mod scan;
pub mod signals;
pub mod synth;
pub mod tracestate;
