//! Service level objectives computed from the spans the pipeline sees: definitions
//! ([`def`]), event-time count buckets ([`buckets`]), budget, burn-rate and alert
//! evaluation ([`status`]), the engine that merges what shards counted ([`engine`]) and
//! keeps it across restarts ([`state`]), Prometheus rule generation ([`rules`]), OpenSLO
//! import ([`openslo`]) and canary-versus-baseline verdicts ([`canary`]).

pub mod canary;
pub mod def;
pub mod openslo;
pub mod rules;
