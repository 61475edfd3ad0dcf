//! Feature flags as the read model answers them: for each (service, flag), each variant's SLIs
//! over one window, in all and per feature, and which variants the service's errors are tied
//! to.
//!
//! # Errors tied to a variant
//!
//! A variant's errors are *tied to the flag* when its error ratio is significantly higher
//! than that of the flag's other variants taken together, in the same service and window:
//! the one-sided error test of canary analysis ([`crate::slo::canary::error_test`]; z-test or
//! Fisher's exact test) with the variant as the canary and the other variants as the
//! baseline, on received (not sampling-weighted) counts. Only variants where both sides
//! have at least `canary.min_requests` requests are tested, and with several variants
//! tested the p-values are Holm-adjusted over them before they are compared with
//! `canary.significance`.

use super::series::success_ratio;
use crate::pipeline::snapshot::View;
use crate::pipeline::FlagCounts;
use crate::sli::hist::{merge_into, Layout, SparseHist};
use crate::sli::series::{SeriesSnapshot, WindowSnapshot, QUANTILES};
use crate::sli::window::Window;
use crate::slo::canary::{error_test, holm, Cohort, ErrorTest};
use crate::slo::def::CanaryConfig;
use std::collections::BTreeMap;

/// Label names of a flag series, in key order.
pub const LABELS: [&str; 4] = ["service", "feature", "flag", "variant"];

/// Position of the variant in a flag series' labels.
pub const VARIANT_LABEL: usize = 3;

/// The figures of one variant (or one variant in one feature) over the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// Requests, estimated from sampled spans (exact when nothing is sampled).
    pub requests: f64,
    /// Bad requests, estimated likewise.
    pub errors: f64,
    /// Entry spans received.
    pub sampled_requests: u64,
    /// Bad ones among them.
    pub sampled_errors: u64,
    /// Good ÷ all estimated requests; `None` without requests.
    pub success_ratio: Option<f64>,
    /// p50, p90, p95, p99 in seconds; `None` without requests.
    pub quantiles_seconds: [Option<f64>; 4],
}

impl Figures {
    fn of(w: &WindowSnapshot, quantiles_ns: [Option<u64>; 4]) -> Self {
        Figures {
            requests: w.est_requests,
            errors: w.est_errors,
            sampled_requests: w.requests,
            sampled_errors: w.errors,
            success_ratio: success_ratio(w),
            quantiles_seconds: quantiles_ns.map(|q| q.map(|n| n as f64 / 1e9)),
        }
    }

    /// The cohort the error test compares.
    fn cohort(&self) -> Cohort {
        Cohort {
            requests: self.sampled_requests,
            errors: self.sampled_errors,
            p95_ns: None,
            p99_ns: None,
        }
    }
}

/// One variant of a flag.
#[derive(Clone, Debug)]
pub struct Variant<'a> {
    /// The variant (`__overflow__` for variants beyond `flags.max_variants`).
    pub variant: &'a str,
    /// Over all features.
    pub all: Figures,
    /// Per feature, by name.
    pub features: Vec<(&'a str, Figures)>,
}

/// A variant the service's errors are tied to.
#[derive(Clone, Debug)]
pub struct Tied<'a> {
    /// The variant.
    pub variant: &'a str,
    /// Its received requests and errors.
    pub variant_cohort: Cohort,
    /// Those of the flag's other variants together.
    pub others: Cohort,
    /// The test (with its Holm adjustment when several variants were tested).
    pub test: ErrorTest,
}

/// One flag of one service.
#[derive(Clone, Debug)]
pub struct Flag<'a> {
    /// `service.name`.
    pub service: &'a str,
    /// `feature_flag.key`.
    pub flag: &'a str,
    /// Its variants, by name.
    pub variants: Vec<Variant<'a>>,
    /// The error test of every variant that had enough data, by variant name.
    pub tests: Vec<(&'a str, ErrorTest)>,
}

impl Flag<'_> {
    /// The variants whose errors the test ties to the flag.
    pub fn tied(&self) -> impl Iterator<Item = &(&str, ErrorTest)> {
        self.tests.iter().filter(|(_, t)| t.worse)
    }
}

/// Every flag of `view` over window `w`, by service and flag; the flag overflow series (of
/// the series cap) are left out (their requests are in [`View::flag_overflow`]).
pub fn flags<'v>(view: &'v View, w: Window, layout: &Layout, cfg: &CanaryConfig) -> Vec<Flag<'v>> {
    type Parts<'v> = BTreeMap<&'v str, BTreeMap<&'v str, Vec<&'v SeriesSnapshot>>>;
    let mut by_flag: BTreeMap<(&str, &str), Parts<'v>> = BTreeMap::new();
    for s in view.flags.iter().filter(|s| !s.is_overflow()) {
        let label = |i: usize| s.labels.get(i).map_or("", |l| &**l);
        by_flag
            .entry((label(0), label(2)))
            .or_default()
            .entry(label(VARIANT_LABEL))
            .or_default()
            .entry(label(1))
            .or_default()
            .push(s);
    }
    by_flag
        .into_iter()
        .map(|((service, flag), variants)| {
            let variants: Vec<Variant<'v>> = variants
                .into_iter()
                .map(|(variant, features)| {
                    let all: Vec<&SeriesSnapshot> = features.values().flatten().copied().collect();
                    Variant {
                        variant,
                        all: merged(&all, w, layout),
                        features: features
                            .into_iter()
                            .map(|(f, series)| (f, merged(&series, w, layout)))
                            .collect(),
                    }
                })
                .collect();
            let tests = tied_tests(&variants, cfg);
            Flag {
                service,
                flag,
                variants,
                tests,
            }
        })
        .collect()
}

/// The figures of `series` added up over window `w` (quantiles from their merged
/// histograms).
fn merged(series: &[&SeriesSnapshot], w: Window, layout: &Layout) -> Figures {
    let i = w.index();
    if let [one] = series {
        return Figures::of(&one.windows[i], one.windows[i].quantiles_ns);
    }
    let mut sum = WindowSnapshot::default();
    for s in series {
        let x = &s.windows[i];
        sum.requests += x.requests;
        sum.errors += x.errors;
        sum.est_requests += x.est_requests;
        sum.est_errors += x.est_errors;
    }
    let hists: Vec<&SparseHist> = series
        .iter()
        .filter_map(|s| s.window_hists.as_ref().and_then(|h| h.get(i)))
        .collect();
    let mut hist = SparseHist::default();
    merge_into(&mut hist, &hists);
    let mut q = [None; 4];
    hist.values_at_quantiles(layout, &QUANTILES, &mut q);
    Figures::of(&sum, q)
}

/// Each variant with enough data against the others together, Holm-adjusted over the
/// variants tested.
fn tied_tests<'v>(variants: &[Variant<'v>], cfg: &CanaryConfig) -> Vec<(&'v str, ErrorTest)> {
    if variants.len() < 2 {
        return Vec::new();
    }
    let total = variants.iter().fold(Cohort::default(), |mut t, v| {
        t.requests += v.all.sampled_requests;
        t.errors += v.all.sampled_errors;
        t
    });
    let mut tests: Vec<(&str, ErrorTest)> = variants
        .iter()
        .filter_map(|v| {
            let this = v.all.cohort();
            let others = Cohort {
                requests: total.requests - this.requests,
                errors: total.errors - this.errors,
                ..Cohort::default()
            };
            (this.requests >= cfg.min_requests && others.requests >= cfg.min_requests)
                .then(|| (v.variant, error_test(&others, &this, cfg.significance)))
        })
        .collect();
    if tests.len() > 1 {
        let ps: Vec<f64> = tests.iter().map(|(_, t)| t.p_value).collect();
        for ((_, t), adjusted) in tests.iter_mut().zip(holm(&ps)) {
            t.adjusted = Some(crate::slo::canary::Adjustment {
                method: "holm",
                tests: ps.len(),
                p_value: adjusted,
            });
            t.worse = adjusted < t.significance;
        }
    }
    tests
}

/// Flag evaluations not counted since start, by reason, as `/metrics` (`reason`) and the
/// API (`dropped`) name them: the receiving side's counts, then the evaluations the
/// `flags.max_flags` cap turned away on the shards.
pub fn dropped(counts: &FlagCounts, view: &View) -> [(&'static str, u64); 5] {
    [
        ("no_variant", counts.no_variant),
        ("unattributed", counts.unattributed),
        ("not_listed", counts.not_listed),
        ("request_limit", counts.request_limit),
        ("max_flags", view.flag_overflow.flags),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn series(labels: [&str; 4], requests: u64, errors: u64) -> Arc<SeriesSnapshot> {
        let w = WindowSnapshot {
            requests,
            errors,
            est_requests: requests as f64,
            est_errors: errors as f64,
            ..WindowSnapshot::default()
        };
        Arc::new(SeriesSnapshot {
            labels: labels.map(Box::from).to_vec().into(),
            requests_total: requests,
            errors_total: errors,
            est_requests_total: requests as f64,
            est_errors_total: errors as f64,
            duration_sum_ns: 0,
            buckets: Box::new([]),
            windows: [w.clone(), w.clone(), w.clone(), w],
            unattributed: Default::default(),
            metric_requests_total: 0,
            window_hists: None,
            overflow: false,
            exemplars: None,
        })
    }

    fn view(parts: &[([&str; 4], u64, u64)]) -> View {
        View {
            flags: parts.iter().map(|&(l, r, e)| series(l, r, e)).collect(),
            ..View::default()
        }
    }

    fn layout() -> Layout {
        Layout::new(2).expect("layout")
    }

    #[test]
    fn variants_add_up_over_features_and_a_worse_variant_is_tied() {
        let v = view(&[
            (["checkout", "POST /pay", "new-flow", "on"], 300, 30),
            (["checkout", "GET /cart", "new-flow", "on"], 200, 0),
            (["checkout", "POST /pay", "new-flow", "off"], 1000, 5),
            (["checkout", "POST /pay", "other", "a"], 1000, 10),
            (["checkout", "POST /pay", "other", "b"], 1000, 10),
        ]);
        let cfg = CanaryConfig::default();
        let flags = flags(&v, Window::M5, &layout(), &cfg);
        assert_eq!(flags.len(), 2);
        let f = &flags[0];
        assert_eq!((f.service, f.flag), ("checkout", "new-flow"));
        let on = f.variants.iter().find(|v| v.variant == "on").expect("on");
        assert_eq!((on.all.sampled_requests, on.all.sampled_errors), (500, 30));
        assert_eq!(on.features.len(), 2);
        assert_eq!(on.all.success_ratio, Some(470.0 / 500.0));
        let tied: Vec<&str> = f.tied().map(|(v, _)| *v).collect();
        assert_eq!(tied, ["on"], "{:?}", f.tests);
        // Two equal variants: nothing tied.
        assert_eq!(flags[1].tied().count(), 0);
        assert_eq!(flags[1].tests.len(), 2);
        assert!(flags[1].tests.iter().all(|(_, t)| t.adjusted.is_some()));
    }

    #[test]
    fn too_little_traffic_is_not_tested() {
        let v = view(&[
            (["s", "f", "k", "on"], 50, 25),
            (["s", "f", "k", "off"], 1000, 0),
        ]);
        let flags = flags(&v, Window::M1, &layout(), &CanaryConfig::default());
        assert!(flags[0].tests.is_empty(), "{:?}", flags[0].tests);
    }
}
