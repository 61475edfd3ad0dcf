//! Per-feature SLI derivation: classification, series keys, histograms, windows, series.

pub mod attr_keys;
pub mod classify;
pub mod exemplar;
pub mod flag;
pub mod flag_table;
pub mod hist;
pub mod key;
pub mod matcher;
pub mod series;
pub mod window;
