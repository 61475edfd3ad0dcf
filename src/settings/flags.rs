//! `flags:`: which feature-flag evaluations become cohorts, and their caps. The raw section
//! is the user documentation; [`flags`] validates it into [`FlagOptions`] (the statistics
//! of verdicts and tied errors are `canary:`'s, set by the caller).

use super::invalid;
use crate::config::ConfigError;
use crate::pipeline::FlagOptions;
use crate::sli::flag::FlagRules;
use serde::Deserialize;

/// `flags:` feature-flag cohorts: SLIs per flag variant (`/api/v1/flags`), verdicts per
/// flag rollout (`/api/v1/canary?flag=`), and errors tied to a variant.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFlags {
    /// Read feature-flag evaluations (`feature_flag.evaluation` and `feature_flag` events,
    /// `feature_flag.*` span attributes) of entry spans. Default `true`.
    pub enabled: Option<bool>,
    /// Only these flag keys. Default: every key, up to `max_flags`.
    pub keys: Vec<String>,
    /// Most flags (service and flag key) tracked at once; evaluations of further flags are
    /// counted (`otel_sli_flag_evaluations_dropped_total{reason="max_flags"}`) and not kept.
    /// A flag idle for `limits.series_expiry` frees its place. Default `100`.
    pub max_flags: Option<usize>,
    /// Most variants per flag; further variants are counted under the variant
    /// `__overflow__` of their flag. Default `10`.
    pub max_variants: Option<usize>,
    /// Most flag series (service × feature × flag × variant); further ones go to one
    /// overflow series. Default `2000`.
    pub max_series: Option<usize>,
    /// Count evaluations recorded on other spans of a request (a child span of the entry
    /// span, in the same trace) toward the request, when the entry span arrives in the same
    /// export request. Default `true`.
    pub child_spans: Option<bool>,
    /// Also export the flag series on `/metrics` (`sli_flag_requests_total`,
    /// `sli_flag_errors_total` with `flag` and `variant` labels). Default `false`.
    pub metrics: Option<bool>,
}

/// Validates `flags:`; `None` when flags are off.
pub fn flags(raw: RawFlags) -> Result<Option<FlagOptions>, ConfigError> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let count = |key: &str, v: Option<usize>, default: usize, max: usize| match v {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(invalid(key, format!("must be between 1 and {max}"))),
    };
    let max_flags = count("flags.max_flags", raw.max_flags, 100, 100_000)?;
    let max_variants = count("flags.max_variants", raw.max_variants, 10, 1_000)?;
    let max_series = count("flags.max_series", raw.max_series, 2_000, 10_000_000)?;
    if let Some(i) = raw.keys.iter().position(|k| k.is_empty()) {
        return Err(invalid(&format!("flags.keys[{i}]"), "empty flag key"));
    }
    Ok(Some(FlagOptions {
        rules: FlagRules {
            allow: raw
                .keys
                .iter()
                .map(|k| k.as_bytes().to_vec().into_boxed_slice())
                .collect(),
            child_spans: raw.child_spans.unwrap_or(FlagRules::default().child_spans),
        },
        max_flags,
        max_variants,
        max_series,
        metrics: raw.metrics.unwrap_or(false),
        stats: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_off_and_bad_values() {
        let on = flags(RawFlags::default()).expect("valid").expect("on");
        assert_eq!(
            (on.max_flags, on.max_variants, on.max_series),
            (100, 10, 2000)
        );
        assert!(on.rules.child_spans && !on.metrics);
        let off = RawFlags {
            enabled: Some(false),
            ..RawFlags::default()
        };
        assert!(flags(off).expect("valid").is_none());
        let bad = RawFlags {
            max_variants: Some(0),
            ..RawFlags::default()
        };
        let e = flags(bad).expect_err("zero variants");
        assert!(e.to_string().contains("flags.max_variants"), "{e}");
        let empty = RawFlags {
            keys: vec!["a".into(), String::new()],
            ..RawFlags::default()
        };
        let e = flags(empty).expect_err("empty key");
        assert!(e.to_string().contains("flags.keys[1]"), "{e}");
    }
}
