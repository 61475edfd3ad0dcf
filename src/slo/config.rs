//! Validation of the `slos:`, `slo:` and `canary:` sections, for the configuration file and
//! for OpenSLO documents alike. Every error names the SLO (by position and name) and the key.

use crate::config::units::HumanDuration;
use crate::config::{invalid_key as invalid, ConfigError};
use crate::sli::classify::{label_name, RESERVED_LABELS};
use crate::slo::def::{
    AlertRule, BurnThreshold, CanaryConfig, FeatureMatch, Severity, SliKind, SloDef, SloSettings,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// One entry of `slos:`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlo {
    /// Unique name, used as the `slo` label. Letters, digits, `.`, `_`, `:` and `-`. Required.
    pub name: Option<String>,
    /// `service.name` of the service. Required.
    pub service: Option<String>,
    /// Feature covered: an exact feature name or a glob (`*`, `?`). Required.
    pub feature: Option<String>,
    /// `availability` (good = not bad by the outcome rules) or `latency` (good = not bad
    /// and not slower than `threshold`). Default `availability`.
    pub sli: Option<String>,
    /// Latency SLOs only: the slowest good duration, e.g. `300ms`. Also added to the
    /// exported `sli_latency_seconds` bucket bounds so rules computed from it are exact.
    pub threshold: Option<HumanDuration>,
    /// Target percentage of good requests, e.g. `99.9`. Required; above 0 and below 100.
    pub objective: Option<f64>,
    /// Rolling window of the objective, `1h` to `90d`. Default `30d`.
    pub window: Option<HumanDuration>,
    /// Free text shown in the API and put on generated alerts.
    pub description: Option<String>,
    /// Extra labels for this SLO's metrics and generated rules.
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// `slo:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSloSettings {
    /// Spans that end longer ago than this when they arrive are counted in
    /// `otel_sli_late_spans_total` and not placed into SLO windows. `1m` to `6h`.
    /// Default `1h`.
    pub max_lateness: Option<HumanDuration>,
    /// Multi-window burn-rate alert rules. Default: the SRE workbook's four rules (page: 2%
    /// of the budget in `1h` checked over `5m`, 5% in `6h` over `30m`; ticket: 10% in `1d`
    /// over `2h`, 10% in `3d` over `6h`), which are burn rates 14.4, 6, 3 and 1 for a
    /// 30-day window and scale with other windows.
    pub alerts: Option<Vec<RawAlertRule>>,
}

/// One entry of `slo.alerts:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlertRule {
    /// `page` or `ticket`. Required.
    pub severity: Option<String>,
    /// Long window, e.g. `1h`. Required.
    pub long_window: Option<HumanDuration>,
    /// Short window, e.g. `5m`. Required; shorter than `long_window`.
    pub short_window: Option<HumanDuration>,
    /// Fraction of the whole error budget that, spent within `long_window`, fires the
    /// rule (`0.02`). The burn-rate factor is `budget_consumed × slo window ÷ long_window`.
    /// Give this or `burn_rate`.
    pub budget_consumed: Option<f64>,
    /// A fixed burn-rate factor, the same for every SLO window. Give this or
    /// `budget_consumed`.
    pub burn_rate: Option<f64>,
}

/// `canary:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCanary {
    /// Attribute that tells a canary from its baseline (span attribute, then resource
    /// attribute). It is recorded as a series dimension (label with `.` → `_`). `""`
    /// turns canary analysis off. Default `service.version`.
    pub attribute: Option<String>,
    /// Fewest requests each cohort needs before the verdict can be other than
    /// `inconclusive`. Default `100`.
    pub min_requests: Option<u64>,
    /// Significance level of the one-sided error-ratio test, between 0 and 0.5.
    /// Default `0.05`.
    pub significance: Option<f64>,
    /// Tolerated relative p95/p99 latency regression (`0.2`: up to 20% slower passes).
    /// Default `0.2`.
    pub latency_tolerance: Option<f64>,
}

/// Labels the SLO metrics and rules use themselves.
const SLO_RESERVED: [&str; 6] = ["slo", "severity", "window", "service", "feature", "sli"];
/// Most SLOs (configuration and OpenSLO files together).
pub const MAX_SLOS: usize = 10_000;
const MIN_WINDOW: Duration = Duration::from_secs(3600);
const MAX_WINDOW: Duration = Duration::from_secs(90 * 86_400);

/// Validates the SLO list. `what` prefixes the path (`slos`, or the OpenSLO file name).
pub fn slos(raw: &[RawSlo], what: &str) -> Result<Vec<SloDef>, ConfigError> {
    if raw.len() > MAX_SLOS {
        return Err(invalid(
            what,
            format!("{} SLOs; at most {MAX_SLOS} are supported", raw.len()),
        ));
    }
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let slo = one(r, &format!("{what}[{i}]"))?;
            if !names.insert(slo.name.clone()) {
                return Err(invalid(
                    &format!("{what}[{i}].name"),
                    format!("SLO name {:?} is used twice", slo.name),
                ));
            }
            Ok(slo)
        })
        .collect()
}

fn one(r: &RawSlo, at: &str) -> Result<SloDef, ConfigError> {
    let name = r
        .name
        .clone()
        .ok_or_else(|| invalid(&format!("{at}.name"), "required"))?;
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    {
        return Err(invalid(
            &format!("{at}.name"),
            format!("{name:?}: use 1 to 128 letters, digits, '.', '_', ':' or '-'"),
        ));
    }
    let at = format!("{at}({name})");
    let key = |k: &str| format!("{at}.{k}");
    let service = r
        .service
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(&key("service"), "required"))?;
    let feature = r
        .feature
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(&key("feature"), "required (an exact feature or a glob)"))?;
    let sli = match (r.sli.as_deref().unwrap_or("availability"), r.threshold) {
        ("availability", None) => SliKind::Availability,
        ("availability", Some(_)) => {
            return Err(invalid(
                &key("threshold"),
                "only latency SLOs have a threshold",
            ))
        }
        ("latency", Some(t)) if !t.0.is_zero() && t.0 <= Duration::from_secs(3600) => {
            SliKind::Latency { threshold: t.0 }
        }
        ("latency", Some(_)) => {
            return Err(invalid(&key("threshold"), "must be above 0 and at most 1h"))
        }
        ("latency", None) => {
            return Err(invalid(
                &key("threshold"),
                "required for a latency SLO (e.g. 300ms)",
            ))
        }
        (other, _) => {
            return Err(invalid(
                &key("sli"),
                format!("unknown SLI {other:?} (use availability or latency)"),
            ))
        }
    };
    let objective = r
        .objective
        .ok_or_else(|| invalid(&key("objective"), "required (a percentage such as 99.9)"))?;
    if !(objective > 0.0 && objective < 100.0) {
        return Err(invalid(
            &key("objective"),
            format!("{objective} is not a percentage above 0 and below 100 (e.g. 99.9)"),
        ));
    }
    let window = r.window.map_or(Duration::from_secs(30 * 86_400), |d| d.0);
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        return Err(invalid(&key("window"), "must be between 1h and 90d"));
    }
    let labels = r.labels.clone().unwrap_or_default();
    for k in labels.keys() {
        if label_name(k) != *k || k.starts_with("__") {
            return Err(invalid(
                &format!("{}.{k}", key("labels")),
                "not a valid Prometheus label name",
            ));
        }
        if SLO_RESERVED.contains(&k.as_str()) || RESERVED_LABELS.contains(&k.as_str()) {
            return Err(invalid(
                &format!("{}.{k}", key("labels")),
                "reserved label name",
            ));
        }
    }
    Ok(SloDef {
        name,
        service,
        feature: FeatureMatch::new(&feature),
        sli,
        // `99.9e-2` parses to the double nearest 0.999; `99.9 / 100` would be 0.9990000000000001.
        objective: format!("{objective}e-2")
            .parse()
            .unwrap_or(objective / 100.0),
        window,
        description: r.description.clone(),
        labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

/// SLOs whose alert rules can never fire: the rule's burn-rate factor is at or above the
/// highest burn rate the objective allows (all requests bad).
pub fn warnings(slos: &[SloDef], settings: &SloSettings) -> Vec<String> {
    let mut out = Vec::new();
    for s in slos {
        for r in s.unreachable_rules(settings) {
            out.push(format!(
                "SLO {:?}: the {} rule over {} and {} needs a burn rate above {:.3}, but at objective {}% the highest possible is {:.3} (every request bad), so it can never fire; raise the objective or adjust slo.alerts",
                s.name,
                r.severity.name(),
                crate::slo::def::duration_name(r.long),
                crate::slo::def::duration_name(r.short),
                r.factor(s.window),
                s.objective * 100.0,
                1.0 / s.error_budget(),
            ));
        }
    }
    out
}

/// Validates `slo:`.
pub fn settings(raw: RawSloSettings) -> Result<SloSettings, ConfigError> {
    let mut s = SloSettings::default();
    if let Some(d) = raw.max_lateness {
        if d.0 < Duration::from_secs(60) || d.0 > Duration::from_secs(6 * 3600) {
            return Err(invalid("slo.max_lateness", "must be between 1m and 6h"));
        }
        s.max_lateness = d.0;
    }
    if let Some(rules) = raw.alerts {
        s.alerts = rules
            .iter()
            .enumerate()
            .map(|(i, r)| alert_rule(r, &format!("slo.alerts[{i}]")))
            .collect::<Result<_, _>>()?;
    }
    Ok(s)
}

fn alert_rule(r: &RawAlertRule, at: &str) -> Result<AlertRule, ConfigError> {
    let key = |k: &str| format!("{at}.{k}");
    let severity = r
        .severity
        .as_deref()
        .ok_or_else(|| invalid(&key("severity"), "required (page or ticket)"))?;
    let severity = Severity::parse(severity).ok_or_else(|| {
        invalid(
            &key("severity"),
            format!("unknown severity {severity:?} (use page or ticket)"),
        )
    })?;
    let long = r
        .long_window
        .ok_or_else(|| invalid(&key("long_window"), "required"))?
        .0;
    let short = r
        .short_window
        .ok_or_else(|| invalid(&key("short_window"), "required"))?
        .0;
    if long < Duration::from_secs(60) || long > MAX_WINDOW {
        return Err(invalid(&key("long_window"), "must be between 1m and 90d"));
    }
    if short < Duration::from_secs(60) || short >= long {
        return Err(invalid(
            &key("short_window"),
            "must be at least 1m and shorter than long_window",
        ));
    }
    let threshold = match (r.budget_consumed, r.burn_rate) {
        (Some(f), None) if f > 0.0 && f <= 1.0 => BurnThreshold::BudgetConsumed(f),
        (Some(_), None) => {
            return Err(invalid(
                &key("budget_consumed"),
                "must be a fraction above 0 and at most 1 (e.g. 0.02)",
            ))
        }
        (None, Some(b)) if b > 0.0 && b.is_finite() => BurnThreshold::BurnRate(b),
        (None, Some(_)) => return Err(invalid(&key("burn_rate"), "must be above 0")),
        (Some(_), Some(_)) => {
            return Err(invalid(at, "give budget_consumed or burn_rate, not both"))
        }
        (None, None) => {
            return Err(invalid(
                at,
                "give budget_consumed (e.g. 0.02) or burn_rate (e.g. 14.4)",
            ))
        }
    };
    Ok(AlertRule {
        severity,
        long,
        short,
        threshold,
    })
}

/// Validates `canary:`; `None` when canary analysis is off.
pub fn canary(raw: RawCanary) -> Result<Option<CanaryConfig>, ConfigError> {
    let mut c = CanaryConfig::default();
    if let Some(a) = raw.attribute {
        if a.is_empty() {
            return Ok(None);
        }
        if a == "service.name" {
            return Err(invalid(
                "canary.attribute",
                "service.name names the service; cohorts need another attribute",
            ));
        }
        c.attribute = a;
    }
    if let Some(n) = raw.min_requests {
        if n == 0 {
            return Err(invalid("canary.min_requests", "must be at least 1"));
        }
        c.min_requests = n;
    }
    if let Some(s) = raw.significance {
        if !(s > 0.0 && s <= 0.5) {
            return Err(invalid(
                "canary.significance",
                "must be above 0 and at most 0.5 (e.g. 0.05)",
            ));
        }
        c.significance = s;
    }
    if let Some(t) = raw.latency_tolerance {
        if !(t >= 0.0 && t.is_finite()) {
            return Err(invalid(
                "canary.latency_tolerance",
                "must be 0 or more (0.2 tolerates 20% slower)",
            ));
        }
        c.latency_tolerance = t;
    }
    Ok(Some(c))
}
