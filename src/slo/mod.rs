//! Service level objectives computed from the spans the pipeline sees: definitions
//! ([`def`]), event-time count buckets ([`buckets`]) filled by each shard's [`tally`],
//! budget, burn-rate and alert evaluation ([`status`]), the [`engine`] that merges what
//! shards counted and keeps it across restarts ([`state`], [`persist`]), Prometheus rule
//! generation ([`rules`]), OpenSLO import ([`openslo`]) and canary-versus-baseline verdicts
//! ([`canary`]).

pub mod buckets;
pub mod canary;
pub mod config;
pub mod def;
pub mod engine;
pub mod openslo;
pub mod persist;
pub mod rules;
pub mod state;
pub mod status;
pub mod tally;
