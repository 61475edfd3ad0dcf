//! Zero-copy OTLP trace scanner (being written).
