//! Sparse HDR-layout latency histograms (being written).
