//! Getting data out: reliable [`delivery`] to upstreams, used by the exporters of derived
//! metrics and by the raw pass-through forwarders.

pub mod batch;
pub mod coalesce;
pub mod delivery;
pub mod driven;
pub mod forward;
pub mod http;
pub mod http1;
pub mod http2;
pub mod otlp_client;
pub mod otlp_metrics;
pub mod remote_write;
pub mod spool;
