//! `GET /api/v1/flags?window=1m|5m|1h|all[&service=S]`: the read model's feature flags
//! ([`crate::report::flags`]) as JSON: each flag's variants with their SLIs, in all and per
//! feature, the tied-error test of each variant, and what the caps turned away.

use super::slis::{count, Latency};
use crate::report::flags::{Figures, Flag};
use crate::report::Report;
use crate::sli::window::Window;
use crate::slo::canary::ErrorTest;
use serde::Serialize;

#[derive(Serialize)]
struct Response<'a> {
    window: &'a str,
    window_seconds: f64,
    flushed_at_unix_nano: u64,
    flags: Vec<FlagJson<'a>>,
    limits: Limits,
    dropped: Dropped,
    folded: Folded,
}

#[derive(Serialize)]
struct FlagJson<'a> {
    service: &'a str,
    flag: &'a str,
    /// Variants whose errors the test ties to the flag.
    errors_tied_to: Vec<&'a str>,
    variants: Vec<VariantJson<'a>>,
}

#[derive(Serialize)]
struct VariantJson<'a> {
    variant: &'a str,
    #[serde(flatten)]
    figures: FiguresJson,
    /// This variant against the flag's other variants; `null` while either side has too
    /// few requests.
    error_test: Option<ErrorTest>,
    features: Vec<FeatureJson<'a>>,
}

#[derive(Serialize)]
struct FeatureJson<'a> {
    feature: &'a str,
    #[serde(flatten)]
    figures: FiguresJson,
}

#[derive(Serialize)]
struct FiguresJson {
    requests: serde_json::Value,
    errors: serde_json::Value,
    sampled_requests: u64,
    sampled_errors: u64,
    success_ratio: Option<f64>,
    latency_seconds: Latency,
}

#[derive(Serialize)]
struct Limits {
    max_flags: usize,
    max_variants: usize,
    max_series: usize,
    tracked_flags: usize,
}

/// Evaluations not counted, since start, by reason ([`crate::report::flags::dropped`]).
struct Dropped([(&'static str, u64); 5]);

impl Serialize for Dropped {
    /// An object of the reasons in their order, each with its count.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().copied())
    }
}

/// Evaluations counted elsewhere than their own series, since start.
#[derive(Serialize)]
struct Folded {
    max_variants: u64,
    max_series: u64,
}

fn figures(f: &Figures) -> FiguresJson {
    FiguresJson {
        requests: count(f.requests),
        errors: count(f.errors),
        sampled_requests: f.sampled_requests,
        sampled_errors: f.sampled_errors,
        success_ratio: f.success_ratio,
        latency_seconds: Latency::from(f.quantiles_seconds),
    }
}

fn flag<'a>(f: &'a Flag<'a>) -> FlagJson<'a> {
    FlagJson {
        service: f.service,
        flag: f.flag,
        errors_tied_to: f.tied().map(|(v, _)| *v).collect(),
        variants: f
            .variants
            .iter()
            .map(|v| VariantJson {
                variant: v.variant,
                figures: figures(&v.all),
                error_test: f
                    .tests
                    .iter()
                    .find(|(name, _)| *name == v.variant)
                    .map(|(_, t)| *t),
                features: v
                    .features
                    .iter()
                    .map(|(feature, x)| FeatureJson {
                        feature,
                        figures: figures(x),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Why `/api/v1/flags` cannot answer.
#[derive(Debug, PartialEq, Eq)]
pub enum FlagsError {
    /// A wrong parameter (HTTP 400).
    BadRequest(String),
    /// Flags are not read (HTTP 404).
    Off,
}

/// Renders the flags of `window`, of one service when `service` is set.
pub fn render(
    report: &Report<'_>,
    window: &str,
    service: Option<&str>,
) -> Result<Vec<u8>, FlagsError> {
    let Some(opts) = report.pipeline().flag_options() else {
        return Err(FlagsError::Off);
    };
    let w = Window::parse(window).ok_or_else(|| {
        FlagsError::BadRequest(format!("unknown window {window:?}; use 1m, 5m, 1h or all"))
    })?;
    let all = report.flags(w);
    let view = report.view();
    let counts = report.pipeline().flag_counts();
    let body = Response {
        window: w.name(),
        window_seconds: report.window_seconds(w),
        flushed_at_unix_nano: report.now(),
        flags: all
            .iter()
            .filter(|f| service.is_none_or(|s| s == f.service))
            .map(flag)
            .collect(),
        limits: Limits {
            max_flags: opts.max_flags,
            max_variants: opts.max_variants,
            max_series: opts.max_series,
            tracked_flags: view.tracked_flags,
        },
        dropped: Dropped(crate::report::flags::dropped(&counts, view)),
        folded: Folded {
            max_variants: view.flag_overflow.variants,
            max_series: view.flag_overflow.series,
        },
    };
    serde_json::to_vec(&body).map_err(|e| FlagsError::BadRequest(e.to_string()))
}
