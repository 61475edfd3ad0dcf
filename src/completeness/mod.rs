//! Telemetry completeness: finding where the telemetry under an SLI is missing.

pub mod traces;
