//! Per-feature SLI derivation: classification, series state, histograms.

pub mod hist;
