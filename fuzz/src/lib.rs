//! Shared set-up for the fuzz targets: the default configuration's classification and
//! series settings, built once per process, so each run spends its time on the input.

use otel_sli::config::ConfigError;
use otel_sli::settings::{self, Config};
use otel_sli::sli::classify::Classifier;
use otel_sli::sli::series::SeriesSettings;
use std::sync::{Arc, OnceLock};

/// Environment the fuzzed configurations see: a few set variables, everything else unset.
pub fn env(name: &str) -> Option<String> {
    match name {
        "MY_POD_IP" => Some("10.0.0.7".into()),
        "NODE_NAME" => Some("node-1".into()),
        "EMPTY" => Some(String::new()),
        "TOKEN" => Some("s3cret-token-value".into()),
        _ => None,
    }
}

/// The configuration an empty file gives.
pub fn default_config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(Config::default)
}

/// The classifier of the default configuration.
pub fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(
        || match Classifier::new(default_config().classify.clone()) {
            Ok(c) => c,
            Err(e) => panic!("default classification rules: {e}"),
        },
    )
}

/// The series settings of the default configuration, as the service builds them.
pub fn series_settings() -> Arc<SeriesSettings> {
    static S: OnceLock<Arc<SeriesSettings>> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        let c = default_config();
        Arc::new(
            SeriesSettings::new(
                c.layout,
                &c.buckets,
                c.max_series,
                2 + c.classify.dimensions.len(),
            )
            .with_expiry(c.series_expiry)
            .with_start(0),
        )
    }))
}

/// Parses `yaml` as a configuration with [`env`] as the environment.
pub fn parse_config(yaml: &str) -> Result<Config, ConfigError> {
    settings::parse(yaml, env)
}

/// A configuration with two SLOs (availability and latency) on `checkout`/`POST /checkout`.
pub const SLO_CONFIG: &str = "slos:
  - name: checkout-availability
    service: checkout
    feature: \"POST /checkout\"
    sli: availability
    objective: 99.9
    window: 30d
  - name: checkout-latency
    service: checkout
    feature: \"POST /checkout\"
    sli: latency
    threshold: 300ms
    objective: 99
    window: 7d
";

/// The configuration of [`SLO_CONFIG`].
pub fn slo_config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| match parse_config(SLO_CONFIG) {
        Ok(c) => c,
        Err(e) => panic!("SLO configuration: {e}"),
    })
}

/// A fresh SLO engine for [`slo_config`].
pub fn slo_engine() -> otel_sli::slo::engine::SloEngine {
    let c = slo_config();
    otel_sli::slo::engine::SloEngine::new(c.slos.clone().into(), c.slo.clone())
}
