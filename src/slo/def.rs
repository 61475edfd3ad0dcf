//! Validated SLO definitions and the settings that apply to all of them: what an SLO
//! counts (availability or latency), which series it matches, its objective and window, the
//! multi-window burn-rate alert rules, and the canary settings. Built by `config` from the
//! YAML `slos:` list (or from OpenSLO documents); read by the pipeline, the API and `rules`.

use std::collections::BTreeMap;
use std::time::Duration;

/// What makes a request good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliKind {
    /// Good when the outcome rules do not call it bad.
    Availability,
    /// Good when not bad and not slower than `threshold`.
    Latency {
        /// Slowest good duration (a request taking exactly this long is good).
        threshold: Duration,
    },
}

impl SliKind {
    /// `availability` or `latency`.
    pub fn name(self) -> &'static str {
        match self {
            SliKind::Availability => "availability",
            SliKind::Latency { .. } => "latency",
        }
    }

    /// The latency threshold in nanoseconds; `None` for availability.
    pub fn threshold_nanos(self) -> Option<u64> {
        match self {
            SliKind::Availability => None,
            SliKind::Latency { threshold } => {
                Some(u64::try_from(threshold.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }

    /// True when a request with this outcome and duration counts against the SLO.
    #[inline]
    pub fn is_bad(self, bad: bool, duration_ns: u64) -> bool {
        match self.threshold_nanos() {
            None => bad,
            Some(t) => bad || duration_ns > t,
        }
    }
}

pub use crate::sli::matcher::FeatureMatch;

/// One service level objective.
#[derive(Clone, Debug, PartialEq)]
pub struct SloDef {
    /// Unique name; the `slo` label.
    pub name: String,
    /// `service.name` of the service.
    pub service: String,
    /// Features covered.
    pub feature: FeatureMatch,
    /// What makes a request good.
    pub sli: SliKind,
    /// Target fraction of good requests, e.g. `0.999` (written `99.9` in the file).
    pub objective: f64,
    /// Rolling window the objective applies to.
    pub window: Duration,
    /// Free text for humans.
    pub description: Option<String>,
    /// Extra labels put on this SLO's metrics and generated rules.
    pub labels: BTreeMap<String, String>,
}

impl SloDef {
    /// Alert rules of `settings` that can never fire for this SLO: their factor is at or
    /// above the highest possible burn rate, `1 ÷ (1 − objective)` (every request bad).
    pub fn unreachable_rules<'a>(&self, settings: &'a SloSettings) -> Vec<&'a AlertRule> {
        let max_burn = 1.0 / self.error_budget();
        settings
            .alerts
            .iter()
            .filter(|r| r.long <= self.window && r.factor(self.window) >= max_burn)
            .collect()
    }

    /// True when the series `service`/`feature` counts toward this SLO.
    pub fn matches(&self, service: &str, feature: &str) -> bool {
        self.service == service && self.feature.matches(feature)
    }

    /// The fraction of requests that may be bad: `1 − objective`.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    /// What the counts in a state file depend on: an SLO whose identity changed (service,
    /// feature, kind, threshold) starts afresh; objective and window may change freely.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.service,
            self.feature.pattern(),
            self.sli.name(),
            self.sli.threshold_nanos().unwrap_or(0)
        )
    }
}

/// Alert severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Needs a human soon: a ticket.
    Ticket,
    /// Wake someone up.
    Page,
}

impl Severity {
    /// `page` or `ticket`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    /// Parses `page` / `ticket`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "page" => Some(Severity::Page),
            "ticket" => Some(Severity::Ticket),
            _ => None,
        }
    }
}

/// How steep a burn must be for a rule to fire.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BurnThreshold {
    /// Fire when this fraction of the whole budget would be spent within the long window:
    /// the burn-rate factor is `fraction × slo_window / long_window` (the SRE workbook's
    /// 2% in 1 h of 30 d gives 14.4), never below 1: burning at or under the sustainable
    /// rate never alerts, however short the SLO window.
    BudgetConsumed(f64),
    /// A fixed burn-rate factor, whatever the SLO window.
    BurnRate(f64),
}

/// One multi-window burn-rate rule: fires when the burn rate over both windows exceeds the
/// factor (the long window says it is significant, the short one that it is still going on).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertRule {
    /// What firing means.
    pub severity: Severity,
    /// The long window.
    pub long: Duration,
    /// The short window (typically 1/12 of the long one).
    pub short: Duration,
    /// The threshold.
    pub threshold: BurnThreshold,
}

impl AlertRule {
    /// The burn-rate factor this rule uses for an SLO with rolling `window`.
    pub fn factor(&self, window: Duration) -> f64 {
        match self.threshold {
            BurnThreshold::BurnRate(f) => f,
            BurnThreshold::BudgetConsumed(fraction) => {
                (fraction * window.as_secs_f64() / self.long.as_secs_f64()).max(1.0)
            }
        }
    }

    /// The SRE workbook's recommended rules for a 30-day window: page on 2% of the budget
    /// in 1 h (checked over 5 m too) or 5% in 6 h (30 m); ticket on 10% in 1 d (2 h) or 10%
    /// in 3 d (6 h). For 30 d these are burn rates 14.4, 6, 3 and 1.
    pub fn workbook_defaults() -> Vec<AlertRule> {
        const H: u64 = 3600;
        let rule = |severity, long, short, fraction| AlertRule {
            severity,
            long: Duration::from_secs(long),
            short: Duration::from_secs(short),
            threshold: BurnThreshold::BudgetConsumed(fraction),
        };
        vec![
            rule(Severity::Page, H, 300, 0.02),
            rule(Severity::Page, 6 * H, 1800, 0.05),
            rule(Severity::Ticket, 24 * H, 2 * H, 0.10),
            rule(Severity::Ticket, 72 * H, 6 * H, 0.10),
        ]
    }
}

/// The burn-rate windows always reported.
pub const BURN_WINDOWS: [Duration; 7] = [
    Duration::from_secs(300),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(72 * 3600),
];

/// Settings shared by every SLO.
#[derive(Clone, Debug, PartialEq)]
pub struct SloSettings {
    /// Spans that end longer ago than this when they arrive are counted as late and left
    /// out of the windows.
    pub max_lateness: Duration,
    /// Burn-rate alert rules.
    pub alerts: Vec<AlertRule>,
}

impl Default for SloSettings {
    fn default() -> Self {
        Self {
            max_lateness: Duration::from_secs(3600),
            alerts: AlertRule::workbook_defaults(),
        }
    }
}

impl SloSettings {
    /// Every window a status needs: [`BURN_WINDOWS`] and the rules' windows, ascending.
    pub fn windows(&self) -> Vec<Duration> {
        let mut w: Vec<Duration> = BURN_WINDOWS
            .iter()
            .copied()
            .chain(self.alerts.iter().flat_map(|r| [r.long, r.short]))
            .collect();
        w.sort();
        w.dedup();
        w
    }
}

/// Canary analysis settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryConfig {
    /// Attribute telling cohorts apart (span, then resource attribute); it is recorded as a
    /// series dimension.
    pub attribute: String,
    /// Fewest requests each cohort needs before a verdict other than `inconclusive`.
    pub min_requests: u64,
    /// Significance level of the error-ratio test (probability of failing a canary that is
    /// in truth no worse).
    pub significance: f64,
    /// Tolerated relative latency regression of p95/p99 (0.2: the canary may be 20% slower).
    pub latency_tolerance: f64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            attribute: "service.version".into(),
            min_requests: 100,
            significance: 0.05,
            latency_tolerance: 0.2,
        }
    }
}

/// Renders a duration the way the configuration accepts it (`30d`, `6h`, `5m`, `90s`).
pub fn duration_name(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_nanos() != 0 || s == 0 {
        return format!("{}ms", d.as_millis());
    }
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbook_factors_for_30_days() {
        let w = Duration::from_secs(30 * 86_400);
        let f: Vec<f64> = AlertRule::workbook_defaults()
            .iter()
            .map(|r| r.factor(w))
            .collect();
        for (got, want) in f.iter().zip([14.4, 6.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        // A 7-day window scales them down by 30/7 (workbook: 3.36 for the 1 h page).
        let p = AlertRule::workbook_defaults()[0].factor(Duration::from_secs(7 * 86_400));
        assert!((p - 3.36).abs() < 1e-9, "{p}");
        // A 1-day window would give 0.48: clamped to the sustainable rate, 1.
        let d = AlertRule::workbook_defaults()[0].factor(Duration::from_secs(86_400));
        assert_eq!(d, 1.0);
    }

    #[test]
    fn latency_kind_counts_slow_and_failed() {
        let k = SliKind::Latency {
            threshold: Duration::from_millis(300),
        };
        assert!(!k.is_bad(false, 300_000_000));
        assert!(k.is_bad(false, 300_000_001));
        assert!(k.is_bad(true, 1));
        assert!(!SliKind::Availability.is_bad(false, u64::MAX));
    }

    #[test]
    fn duration_names() {
        assert_eq!(duration_name(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(duration_name(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_name(Duration::from_secs(300)), "5m");
        assert_eq!(duration_name(Duration::from_secs(90)), "90s");
        assert_eq!(duration_name(Duration::from_millis(300)), "300ms");
    }
}
