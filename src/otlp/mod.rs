//! OTLP wire handling: the zero-copy scanner and helpers shared by the receivers.

pub mod scan;
