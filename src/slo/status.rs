//! Evaluation of one SLO at one instant: SLI over the window, error budget, burn rates,
//! the multi-window burn-rate alert state and the projected budget exhaustion. Pure
//! arithmetic on [`Buckets`]; the formulas are explained in `docs/slo.md`.

use super::buckets::{Buckets, Counts};
use super::def::{Severity, SloDef, SloSettings};
use std::time::Duration;

/// What an SLO's alerting says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    /// Within budget, on enough data.
    Ok,
    /// A ticket rule fires.
    Ticket,
    /// A page rule fires.
    Page,
    /// No request at all in the window.
    NoData,
    /// No rule fires, but the data is too thin or incomplete to call it healthy.
    Insufficient,
}

impl AlertState {
    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Ticket => "ticket",
            AlertState::Page => "page",
            AlertState::NoData => "no_data",
            AlertState::Insufficient => "insufficient",
        }
    }
}

/// One SLO's evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Requests and bad requests over the SLO window.
    pub window: Counts,
    /// Good ÷ total over the window; `None` without requests.
    pub sli: Option<f64>,
    /// `1 − bad / ((1 − objective) × total)`; negative once overspent; `None` without
    /// requests.
    pub budget_remaining: Option<f64>,
    /// Burn rate per window (`None`: no request in that window), ascending windows.
    pub burn_rates: Vec<(Duration, Option<f64>)>,
    /// Severities whose rules fire now.
    pub firing: Vec<Severity>,
    /// The alert state.
    pub alert: AlertState,
    /// Why the data is insufficient (empty otherwise).
    pub reasons: Vec<String>,
    /// Seconds until the budget is spent at the current 1-hour burn rate; `None` when
    /// nothing is burning.
    pub exhaustion_eta_seconds: Option<f64>,
}

impl Status {
    /// Whether the SLO has data, and enough of it to be judged (no insufficiency reason).
    pub fn data_sufficient(&self) -> bool {
        self.window.total > 0 && self.reasons.is_empty()
    }

    /// Budget consumed: `1 − remaining`.
    pub fn budget_consumed(&self) -> Option<f64> {
        self.budget_remaining.map(|r| 1.0 - r)
    }

    /// The burn rate over `w`, if that window was evaluated and had requests.
    pub fn burn(&self, w: Duration) -> Option<f64> {
        self.burn_rates
            .iter()
            .find(|(d, _)| *d == w)
            .and_then(|(_, b)| *b)
    }
}

fn minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

/// Burn rate: the bad ratio divided by the ratio the objective allows.
pub fn burn_rate(c: Counts, objective: f64) -> Option<f64> {
    (c.total > 0).then(|| (c.bad as f64 / c.total as f64) / (1.0 - objective))
}

/// Evaluates `def` at minute `now`. `quality` lists reasons the data cannot be trusted
/// (from completeness checks); `min_events` is the fewest requests in the window for an
/// `ok` verdict.
pub fn evaluate(
    def: &SloDef,
    settings: &SloSettings,
    buckets: &Buckets,
    now: u64,
    min_events: u64,
    mut quality: Vec<String>,
) -> Status {
    let window = buckets.sum(now, minutes(def.window));
    let burn_rates: Vec<(Duration, Option<f64>)> = settings
        .windows()
        .into_iter()
        .filter(|w| *w <= def.window)
        .map(|w| (w, burn_rate(buckets.sum(now, minutes(w)), def.objective)))
        .collect();
    let burn = |w: Duration| {
        burn_rates
            .iter()
            .find(|(d, _)| *d == w)
            .and_then(|(_, b)| *b)
    };
    let mut firing: Vec<Severity> = settings
        .alerts
        .iter()
        .filter(|r| r.long <= def.window)
        .filter(|r| {
            let f = r.factor(def.window);
            burn(r.long).is_some_and(|b| b > f) && burn(r.short).is_some_and(|b| b > f)
        })
        .map(|r| r.severity)
        .collect();
    firing.sort();
    firing.dedup();
    let (sli, budget_remaining) = if window.total > 0 {
        let bad = window.bad as f64;
        let total = window.total as f64;
        (
            Some((total - bad) / total),
            Some(1.0 - bad / (def.error_budget() * total)),
        )
    } else {
        (None, None)
    };
    if window.total > 0 && window.total < min_events {
        quality.push(format!(
            "{} in the {} window, fewer than completeness.min_events ({min_events})",
            crate::text::counted(window.total, "request", "requests"),
            super::def::duration_name(def.window)
        ));
    }
    let alert = if firing.contains(&Severity::Page) {
        AlertState::Page
    } else if firing.contains(&Severity::Ticket) {
        AlertState::Ticket
    } else if window.total == 0 {
        AlertState::NoData
    } else if !quality.is_empty() {
        AlertState::Insufficient
    } else {
        AlertState::Ok
    };
    let exhaustion_eta_seconds = match (burn(Duration::from_secs(3600)), budget_remaining) {
        (Some(b), Some(r)) if b > 0.0 => Some((r.max(0.0)) * def.window.as_secs_f64() / b),
        _ => None,
    };
    Status {
        window,
        sli,
        budget_remaining,
        burn_rates,
        firing,
        alert,
        reasons: quality,
        exhaustion_eta_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slo::def::{FeatureMatch, SliKind};

    fn slo(objective: f64, days: u64) -> SloDef {
        SloDef {
            name: "s".into(),
            service: "svc".into(),
            feature: FeatureMatch::new("f"),
            sli: SliKind::Availability,
            objective,
            window: Duration::from_secs(days * 86_400),
            description: None,
            labels: Default::default(),
        }
    }

    /// Fills `minutes` minutes ending at `now` with `per_minute` requests of which `bad` fail.
    fn fill(b: &mut Buckets, now: u64, minutes: u64, per_minute: u64, bad: u64) {
        for m in now + 1 - minutes..=now {
            b.add(
                m,
                Counts {
                    total: per_minute,
                    bad,
                },
                now,
            );
        }
    }

    const NOW: u64 = 29_000_000; // a Unix minute in 2025, hour-aligned + 20 min
    const MONTH: u64 = 30 * 24 * 60;

    #[test]
    fn budget_and_burn_by_hand() {
        let def = slo(0.999, 30);
        let s = SloSettings::default();
        let mut b = Buckets::new(MONTH);
        // 30 days of 100 rpm with 0.05% errors would be 1 bad per 2000; simpler: 10 days of
        // 1000 requests per minute, 0 bad, then the last hour at 1000/min with 20 bad/min.
        fill(&mut b, NOW - 60, 10 * 24 * 60 - 60, 1000, 0);
        fill(&mut b, NOW, 60, 1000, 20);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        // Window: 14,400,000 requests, 1,200 bad.
        assert_eq!(
            st.window,
            Counts {
                total: 14_400_000,
                bad: 1_200
            }
        );
        // SLI = 1 − 1200/14.4e6 = 0.9999166…
        assert!((st.sli.unwrap() - (1.0 - 1200.0 / 14.4e6)).abs() < 1e-12);
        // Budget: 1 − 1200 / (0.001 × 14.4e6) = 1 − 1200/14400 = 0.916666…
        assert!((st.budget_remaining.unwrap() - (1.0 - 1200.0 / 14_400.0)).abs() < 1e-12);
        // 1 h burn: (20/1000)/0.001 = 20; 5 m likewise; 6 h: 1200/360000/0.001 = 3.33…
        let h1 = st.burn(Duration::from_secs(3600)).unwrap();
        assert!((h1 - 20.0).abs() < 1e-9, "{h1}");
        let h6 = st.burn(Duration::from_secs(6 * 3600)).unwrap();
        assert!((h6 - 1200.0 / 360_000.0 / 0.001).abs() < 1e-9, "{h6}");
        // 20 > 14.4 over 1 h and 5 m: page. Ticket 1d/2h: 1d burn = 1200/1.44e6/0.001 =
        // 0.83 < 3, so no ticket from that rule; 3d/6h: 3d burn 0.277 < 1: none.
        assert_eq!(st.firing, vec![Severity::Page]);
        assert_eq!(st.alert, AlertState::Page);
        // ETA: remaining 0.91666 × 30 d / 20 = 118,800 s.
        let eta = st.exhaustion_eta_seconds.unwrap();
        assert!((eta - (1.0 - 1200.0 / 14_400.0) * 2_592_000.0 / 20.0).abs() < 1e-6);
    }

    #[test]
    fn each_rule_fires_alone() {
        let def = slo(0.999, 30);
        let s = SloSettings::default();
        // Page by 6h/30m: 7/1000 bad for 6 h → burn 7 > 6 (but < 14.4 on 1h).
        let mut b = Buckets::new(MONTH);
        fill(&mut b, NOW, 6 * 60, 1000, 7);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert!(st.firing.contains(&Severity::Page), "{st:?}");
        // Ticket by 1d/2h: 4/1000 for a day → burn 4: > 3, < 6.
        let mut b = Buckets::new(MONTH);
        fill(&mut b, NOW, 24 * 60, 1000, 4);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert_eq!(
            (st.firing.clone(), st.alert),
            (vec![Severity::Ticket], AlertState::Ticket)
        );
        // Ticket by 3d/6h: 1.5/1000 for three days → burn 1.5.
        let mut b = Buckets::new(MONTH);
        fill(&mut b, NOW, 3 * 24 * 60, 1000, 1);
        fill(&mut b, NOW, 3 * 24 * 60, 1000, 2);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert_eq!(st.alert, AlertState::Ticket, "{st:?}");
        // A short spike alone does not page: 5 minutes at 100% errors after a clean day.
        let mut b = Buckets::new(MONTH);
        fill(&mut b, NOW - 5, 24 * 60, 1000, 0);
        fill(&mut b, NOW, 5, 1000, 1000);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        // 1 h burn = 5000/60000/0.001 = 83 > 14.4 and 5 m burn = 1000: page. (The workbook
        // pages on this: 5 minutes of total outage spend 0.7 % of a month's budget in 1 h.)
        assert_eq!(st.alert, AlertState::Page);
        // Once it recovers, the 5 m window alone does not clear the page: the 6 h / 30 m rule
        // still holds (6 h burn 13.9 > 6, 30 m burn 167 > 6).
        let mut later = b.clone();
        fill(&mut later, NOW + 6, 6, 1000, 0);
        let st = evaluate(&def, &s, &later, NOW + 6, 10, vec![]);
        assert_eq!(st.alert, AlertState::Page, "{st:?}");
        // After 31 clean minutes both short windows are clean: the page resolves, and the
        // ticket rule 1 d / 2 h (1 d burn 3.5 > 3, 2 h burn 41 > 3) remains.
        fill(&mut later, NOW + 31, 25, 1000, 0);
        let st = evaluate(&def, &s, &later, NOW + 31, 10, vec![]);
        assert_eq!(
            (st.alert, st.firing.clone()),
            (AlertState::Ticket, vec![Severity::Ticket])
        );
    }

    #[test]
    fn no_data_and_insufficient() {
        let def = slo(0.99, 30);
        let s = SloSettings::default();
        let b = Buckets::new(MONTH);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert_eq!(st.alert, AlertState::NoData);
        assert_eq!(
            (st.sli, st.budget_remaining, st.exhaustion_eta_seconds),
            (None, None, None)
        );
        let mut b = Buckets::new(MONTH);
        fill(&mut b, NOW, 1, 5, 0);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert_eq!(st.alert, AlertState::Insufficient);
        assert!(st.reasons[0].contains("fewer than"), "{:?}", st.reasons);
        fill(&mut b, NOW, 1, 100, 0);
        let st = evaluate(&def, &s, &b, NOW, 10, vec!["coverage".into()]);
        assert_eq!(st.alert, AlertState::Insufficient);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        assert_eq!(st.alert, AlertState::Ok);
    }

    #[test]
    fn overspent_budget_goes_negative() {
        let def = slo(0.99, 1);
        let s = SloSettings::default();
        let mut b = Buckets::new(24 * 60);
        fill(&mut b, NOW, 60, 100, 5);
        let st = evaluate(&def, &s, &b, NOW, 10, vec![]);
        // 5% bad against a 1% budget: remaining 1 − 0.05/0.01 = −4.
        assert!((st.budget_remaining.unwrap() + 4.0).abs() < 1e-9);
        assert_eq!(st.exhaustion_eta_seconds, Some(0.0));
        // A 1-day SLO has no 3d burn rate, and its rules scale: 1h page factor
        // 0.02 × 24 = 0.48.
        assert!(st.burn(Duration::from_secs(3 * 86_400)).is_none());
        assert_eq!(st.alert, AlertState::Page);
    }
}
