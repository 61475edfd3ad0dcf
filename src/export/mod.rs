//! Getting data out, in three layers that depend downwards only:
//!
//! - [`upstream`]: the client stack (HTTP/1.1, HTTP/2, TLS, the OTLP client); one call is
//!   one attempt to send one payload.
//! - [`delivery`]: reliable delivery to one upstream (queue, retries, disk spool, counters),
//!   a synchronous decision core ([`delivery::policy`]) in a thin async shell.
//! - The exporters: [`remote_write`] and [`otlp_metrics`] encode the read model every
//!   interval through the shared [`periodic`] loop; [`forward`] passes raw telemetry on.

pub mod delivery;
pub mod forward;
pub mod otlp_metrics;
pub mod periodic;
pub mod remote_write;
pub mod upstream;
