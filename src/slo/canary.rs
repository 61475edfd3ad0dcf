//! Canary-versus-baseline statistics: given the requests, errors and p95/p99 latency of two
//! cohorts of one service (told apart by `canary.attribute`, e.g. `service.version`), decide
//! whether the canary is worse than its baseline, per feature and overall.
//!
//! This module owns the statistics and the wording of verdicts. It is pure: no pipeline
//! state, no clock, no I/O. The `/api/v1/canary` endpoint reads the cohorts out of the series
//! windows, calls [`compare`] once for the whole service and once per feature, and merges the
//! results with [`combine`].
//!
//! # Rules
//!
//! * **Enough data.** A comparison is `inconclusive` while either cohort has fewer than
//!   `canary.min_requests` requests. The error test and the latency checks are still
//!   computed and reported, but they decide nothing.
//! * **Error ratio.** One-sided test of "the canary's error ratio is higher than the
//!   baseline's"; the comparison fails when its p-value is below `canary.significance`.
//!   * The pooled two-proportion z-test is used when every cell of the 2×2 table (errors and
//!     successes of each cohort) has an expected count of at least [`MIN_EXPECTED_COUNT`],
//!     the textbook condition for its normal approximation.
//!   * Below that (typically: few errors, where the normal approximation is unreliable and
//!     can report a difference that is not there), the one-sided Fisher exact test is used: the hypergeometric upper tail, summed from the
//!     mode outwards with the ratio of successive terms, so there are no factorials, no
//!     overflow and no loss of precision for large counts. Its cost is one multiply-add per
//!     possible error count of the canary, so it is used only while that range has at most
//!     [`FISHER_MAX_TERMS`] values; above that the z-test is used anyway.
//!   * With no errors at all, or nothing but errors, in both cohorts, there is nothing to
//!     test: p = 1.
//! * **Latency.** For p95 and p99: the comparison fails when the canary's quantile is above
//!   the baseline's × (1 + `canary.latency_tolerance`). This is a threshold on two point
//!   estimates, not a significance test, so a quantile is only compared once each cohort has
//!   at least [`MIN_TAIL_REQUESTS`] requests beyond it (200 requests for p95, 1,000 for
//!   p99): the p99 of 100 requests is just the slowest of them, and two such maxima easily
//!   differ by more than 20%. A skipped quantile leaves a note.
//! * **Combining** ([`combine`]): the verdict is `fail` when the overall comparison fails or
//!   any feature with enough data fails; otherwise `inconclusive` when the overall
//!   comparison is; otherwise `pass`. Features without enough data never make the verdict
//!   inconclusive (their requests still count in the overall comparison); they are listed
//!   in a note. Testing many features at once would make a false failure likely (20
//!   features at 0.05 give a 64% chance that one fails by luck), so the features' error
//!   p-values are Holm-adjusted over the features that have enough data before they are
//!   compared with the significance level. The overall comparison is a single test and is
//!   not adjusted.
//!
//! # Inputs
//!
//! Counts are of **received** entry spans (the windows' `requests` and `errors`), not the
//! sampling-weighted estimates: the variance of a test comes from the observations actually
//! made, and counting each of 1-in-10 sampled spans ten times would understate it tenfold.
//! With large cohorts the error test detects small differences (1.0% against 1.1% over a
//! million requests each is significant); that is the test doing its job, not noise.

use crate::slo::def::CanaryConfig;
use serde::Serialize;
use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

/// Requests each cohort needs beyond a quantile before that quantile is compared
/// (so p95 needs 200 requests and p99 needs 1,000).
pub const MIN_TAIL_REQUESTS: u64 = 10;

/// Below this expected count in any cell of the 2×2 table, errors are compared with
/// Fisher's exact test instead of the z-test.
pub const MIN_EXPECTED_COUNT: f64 = 5.0;

/// Most hypergeometric terms Fisher's exact test sums (well under a millisecond); with more
/// possible values the z-test is used.
pub const FISHER_MAX_TERMS: u64 = 100_000;

/// Most features named in the note about features without enough data.
const MAX_NAMED_FEATURES: usize = 10;

/// What one cohort did in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cohort {
    /// Entry spans received.
    pub requests: u64,
    /// Bad ones among them (by the outcome rules). Counts above `requests` are read as
    /// `requests`.
    pub errors: u64,
    /// 95th percentile duration, in nanoseconds; `None` without latency data.
    pub p95_ns: Option<u64>,
    /// 99th percentile duration, in nanoseconds; `None` without latency data.
    pub p99_ns: Option<u64>,
}

impl Cohort {
    /// Errors, never more than the requests.
    fn bad(&self) -> u64 {
        self.errors.min(self.requests)
    }

    /// Errors / requests; `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.bad() as f64 / self.requests as f64)
    }

    /// The JSON view.
    pub fn summary(&self) -> CohortSummary {
        CohortSummary {
            requests: self.requests,
            errors: self.bad(),
            error_ratio: self.error_ratio(),
            p95_seconds: self.p95_ns.map(seconds),
            p99_seconds: self.p99_ns.map(seconds),
        }
    }
}

/// A cohort as the API shows it (`null` ratio and latencies without data).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CohortSummary {
    /// Entry spans received.
    pub requests: u64,
    /// Bad ones among them.
    pub errors: u64,
    /// errors / requests.
    pub error_ratio: Option<f64>,
    /// 95th percentile duration.
    pub p95_seconds: Option<f64>,
    /// 99th percentile duration.
    pub p99_seconds: Option<f64>,
}

/// Outcome of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The canary is not measurably worse than the baseline.
    Pass,
    /// The canary is worse: a higher error ratio (significantly) or slower beyond tolerance.
    Fail,
    /// Too little data to tell.
    Inconclusive,
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`, as in the API.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// How the error ratios were compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestMethod {
    /// One-sided pooled two-proportion z-test.
    ZTest,
    /// One-sided Fisher exact test (hypergeometric upper tail).
    FisherExact,
}

impl TestMethod {
    /// The name used in reasons.
    pub fn description(self) -> &'static str {
        match self {
            TestMethod::ZTest => "one-sided two-proportion z-test",
            TestMethod::FisherExact => "one-sided Fisher exact test",
        }
    }
}

/// A p-value corrected for testing several features at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Adjustment {
    /// Always `holm` (Holm–Bonferroni step-down).
    pub method: &'static str,
    /// How many tests the correction is over.
    pub tests: usize,
    /// The adjusted p-value; it, not the raw one, is compared with the significance level.
    pub p_value: f64,
}

/// The error-ratio test of one comparison.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ErrorTest {
    /// Which test was used.
    pub method: TestMethod,
    /// The z statistic (z-test only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// Probability of a canary error ratio at least this much above the baseline's if the
    /// two were in truth equally good.
    pub p_value: f64,
    /// Set on features by [`combine`] when several features were tested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjusted: Option<Adjustment>,
    /// `canary.significance`.
    pub significance: f64,
    /// The canary's error ratio is significantly higher.
    pub worse: bool,
}

impl ErrorTest {
    /// The p-value the decision rests on: adjusted if there is one.
    pub fn deciding_p_value(&self) -> f64 {
        self.adjusted.map_or(self.p_value, |a| a.p_value)
    }
}

/// A latency quantile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
}

impl Quantile {
    /// `p95` or `p99`.
    pub fn name(self) -> &'static str {
        match self {
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
        }
    }

    /// Requests each cohort needs before this quantile is compared: [`MIN_TAIL_REQUESTS`]
    /// beyond it.
    pub fn min_requests(self) -> u64 {
        match self {
            Quantile::P95 => MIN_TAIL_REQUESTS * 20,
            Quantile::P99 => MIN_TAIL_REQUESTS * 100,
        }
    }

    fn of(self, c: &Cohort) -> Option<u64> {
        match self {
            Quantile::P95 => c.p95_ns,
            Quantile::P99 => c.p99_ns,
        }
    }
}

/// One latency quantile compared.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyCheck {
    /// Which quantile.
    pub quantile: Quantile,
    /// The baseline's value.
    pub baseline_seconds: f64,
    /// The canary's value.
    pub canary_seconds: f64,
    /// canary / baseline − 1 (0.5: the canary is 50% slower; negative: faster).
    pub change: f64,
    /// `canary.latency_tolerance`.
    pub tolerance: f64,
    /// The canary is slower than tolerated.
    pub regressed: bool,
}

/// The canary compared with its baseline over one scope (the whole service or a feature).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    /// What was compared, as named in reasons: a feature, or e.g. `overall`.
    #[serde(rename = "feature")]
    pub scope: String,
    /// The outcome.
    pub verdict: Verdict,
    /// Why the verdict is not `pass` (empty on `pass`); each starts with the scope.
    pub reasons: Vec<String>,
    /// Information that does not affect the verdict (e.g. a quantile not compared).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The baseline cohort.
    pub baseline: CohortSummary,
    /// The canary cohort.
    pub canary: CohortSummary,
    /// The error-ratio test; `None` when a cohort has no requests.
    pub errors: Option<ErrorTest>,
    /// The quantiles compared (those with data on both sides and enough requests).
    pub latency: Vec<LatencyCheck>,
    /// `canary.min_requests`, kept to word the reasons when [`combine`] judges again.
    #[serde(skip)]
    min_requests: u64,
}

impl Comparison {
    /// Both cohorts have `canary.min_requests`.
    pub fn has_enough_data(&self) -> bool {
        self.baseline.requests >= self.min_requests && self.canary.requests >= self.min_requests
    }

    /// Sets the verdict and the reasons from the tests.
    fn judge(&mut self) {
        self.reasons.clear();
        if !self.has_enough_data() {
            for (who, n) in [
                ("baseline", self.baseline.requests),
                ("canary", self.canary.requests),
            ] {
                if n < self.min_requests {
                    self.reasons.push(format!(
                        "{}: {who} has {}, fewer than the {} needed (canary.min_requests)",
                        self.scope,
                        crate::text::counted(n, "request", "requests"),
                        self.min_requests
                    ));
                }
            }
            self.verdict = Verdict::Inconclusive;
            return;
        }
        if let Some(e) = self.errors.filter(|e| e.worse) {
            let test = match e.adjusted {
                Some(a) => format!(
                    "{} p={}; Holm-adjusted over {} features p={} < {}",
                    e.method.description(),
                    p_text(e.p_value),
                    a.tests,
                    p_text(a.p_value),
                    e.significance
                ),
                None => format!(
                    "{} p={} < {}",
                    e.method.description(),
                    p_text(e.p_value),
                    e.significance
                ),
            };
            self.reasons.push(format!(
                "{}: canary error ratio {} vs baseline {} ({test})",
                self.scope,
                percent(self.canary.error_ratio.unwrap_or(0.0)),
                percent(self.baseline.error_ratio.unwrap_or(0.0)),
            ));
        }
        for l in self.latency.iter().filter(|l| l.regressed) {
            self.reasons.push(format!(
                "{}: {} latency {} vs baseline {} ({}, tolerated +{})",
                self.scope,
                l.quantile.name(),
                seconds_text(l.canary_seconds),
                seconds_text(l.baseline_seconds),
                change_text(l.change),
                tolerance_text(l.tolerance)
            ));
        }
        self.verdict = if self.reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
    }
}

/// Compares `canary` with `baseline` over `scope` (named at the start of every reason).
pub fn compare(scope: &str, baseline: &Cohort, canary: &Cohort, cfg: &CanaryConfig) -> Comparison {
    let errors = (baseline.requests > 0 && canary.requests > 0)
        .then(|| error_test(baseline, canary, cfg.significance));
    let enough = baseline.requests >= cfg.min_requests && canary.requests >= cfg.min_requests;
    let mut latency = Vec::new();
    let mut notes = Vec::new();
    for q in [Quantile::P95, Quantile::P99] {
        let (Some(b), Some(c)) = (q.of(baseline), q.of(canary)) else {
            continue;
        };
        let fewest = baseline.requests.min(canary.requests);
        if fewest < q.min_requests() {
            // Below min_requests the reasons already say the data is too thin.
            if enough {
                notes.push(format!(
                    "{scope}: {} latency not compared: it needs {} requests per cohort ({MIN_TAIL_REQUESTS} beyond the {}), the smaller cohort has {fewest}",
                    q.name(),
                    q.min_requests(),
                    q.name()
                ));
            }
            continue;
        }
        if b == 0 {
            notes.push(format!(
                "{scope}: {} latency not compared: the baseline's is 0 s",
                q.name()
            ));
            continue;
        }
        let (b, c) = (seconds(b), seconds(c));
        latency.push(LatencyCheck {
            quantile: q,
            baseline_seconds: b,
            canary_seconds: c,
            change: c / b - 1.0,
            tolerance: cfg.latency_tolerance,
            regressed: regressed(b, c, cfg.latency_tolerance),
        });
    }
    let mut out = Comparison {
        scope: scope.to_string(),
        verdict: Verdict::Inconclusive,
        reasons: Vec::new(),
        notes,
        baseline: baseline.summary(),
        canary: canary.summary(),
        errors,
        latency,
        min_requests: cfg.min_requests,
    };
    out.judge();
    out
}

/// The service-wide verdict: the overall comparison and the features' merged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// `fail` if the overall comparison or any feature with enough data fails; else
    /// `inconclusive` if the overall comparison is; else `pass`.
    pub verdict: Verdict,
    /// Why the verdict is not `pass`: every failing comparison's reasons (overall first),
    /// or the overall comparison's reasons when it is inconclusive.
    pub reasons: Vec<String>,
    /// The overall comparison's notes, and which features had too few requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The baseline over all features.
    pub baseline: CohortSummary,
    /// The canary over all features.
    pub canary: CohortSummary,
    /// The overall error test.
    pub errors: Option<ErrorTest>,
    /// The overall latency checks.
    pub latency: Vec<LatencyCheck>,
    /// Per feature, in the order given; error tests Holm-adjusted.
    pub features: Vec<Comparison>,
}

/// Merges the overall comparison with the per-feature ones (see the module doc for the rules).
///
/// The features' error tests are Holm-adjusted over the features that have enough data and
/// an error test, and the features are judged again with the adjusted p-values, so a
/// feature's verdict can turn from `fail` to `pass` here (never the other way).
pub fn combine(overall: Comparison, mut features: Vec<Comparison>) -> Analysis {
    holm_adjust(&mut features);

    let mut reasons = Vec::new();
    if overall.verdict == Verdict::Fail {
        reasons.extend(overall.reasons.iter().cloned());
    }
    for f in features.iter().filter(|f| f.verdict == Verdict::Fail) {
        reasons.extend(f.reasons.iter().cloned());
    }
    let verdict = if !reasons.is_empty() {
        Verdict::Fail
    } else if overall.verdict == Verdict::Inconclusive {
        reasons.extend(overall.reasons.iter().cloned());
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };

    let mut notes = overall.notes;
    let thin: Vec<&str> = features
        .iter()
        .filter(|f| f.verdict == Verdict::Inconclusive)
        .map(|f| f.scope.as_str())
        .collect();
    if !thin.is_empty() {
        let mut names = thin
            .iter()
            .take(MAX_NAMED_FEATURES)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if thin.len() > MAX_NAMED_FEATURES {
            names.push_str(&format!(" and {} more", thin.len() - MAX_NAMED_FEATURES));
        }
        let (count, verb) = if thin.len() == 1 {
            ("1 feature".to_string(), "has")
        } else {
            (format!("{} features", thin.len()), "have")
        };
        notes.push(format!(
            "{count} {verb} too few requests to be judged alone and count only in the overall comparison: {names}"
        ));
    }

    Analysis {
        verdict,
        reasons,
        notes,
        baseline: overall.baseline,
        canary: overall.canary,
        errors: overall.errors,
        latency: overall.latency,
        features,
    }
}

/// Holm–Bonferroni over the error tests of the features with enough data: the i-th smallest
/// of m p-values becomes max over j ≤ i of min(1, (m − j + 1) · p_(j)).
fn holm_adjust(features: &mut [Comparison]) {
    let tested: Vec<(usize, f64)> = features
        .iter()
        .enumerate()
        .filter(|(_, f)| f.has_enough_data())
        .filter_map(|(i, f)| f.errors.map(|e| (i, e.p_value)))
        .collect();
    let m = tested.len();
    if m < 2 {
        return;
    }
    let ps: Vec<f64> = tested.iter().map(|(_, p)| *p).collect();
    for ((i, _), adjusted) in tested.into_iter().zip(holm(&ps)) {
        let f = &mut features[i];
        if let Some(e) = f.errors.as_mut() {
            e.adjusted = Some(Adjustment {
                method: "holm",
                tests: m,
                p_value: adjusted,
            });
            e.worse = adjusted < e.significance;
        }
        f.judge();
    }
}

/// Holm–Bonferroni step-down adjustment of `p_values`, in their order: the i-th smallest of
/// m becomes max over j ≤ i of min(1, (m − j + 1) · p_(j)).
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut out = vec![1.0; m];
    let mut running = 0.0f64;
    for (rank, i) in order.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Tests whether the canary's error ratio is higher than the baseline's (one-sided), with
/// the z-test or Fisher's exact test as the module doc describes.
pub fn error_test(baseline: &Cohort, canary: &Cohort, significance: f64) -> ErrorTest {
    let (method, z, p) = one_sided_p(
        baseline.bad(),
        baseline.requests,
        canary.bad(),
        canary.requests,
    );
    ErrorTest {
        method,
        z,
        p_value: p,
        adjusted: None,
        significance,
        worse: p < significance,
    }
}

/// p-value of "canary error ratio > baseline error ratio" from `xb` errors of `nb` and `xc`
/// errors of `nc` (errors ≤ requests).
fn one_sided_p(xb: u64, nb: u64, xc: u64, nc: u64) -> (TestMethod, Option<f64>, f64) {
    let (xb, nb, xc, nc) = (xb as u128, nb as u128, xc as u128, nc as u128);
    let n = nb + nc;
    let errors = xb + xc;
    let successes = n - errors;
    if errors == 0 || successes == 0 {
        // Nothing but one outcome on both sides: no difference to find.
        return (TestMethod::FisherExact, None, 1.0);
    }
    let share = |cohort: u128, margin: u128| cohort as f64 * margin as f64 / n as f64;
    let fewest_expected = share(nb.min(nc), errors.min(successes));
    if fewest_expected < MIN_EXPECTED_COUNT {
        if let Some(p) = fisher_upper_tail(xc, nc, errors, successes) {
            return (TestMethod::FisherExact, None, p);
        }
    }
    let (z, p) = two_proportion_z(xb, nb, xc, nc);
    (TestMethod::ZTest, z, p)
}

/// Pooled two-proportion z-test, one-sided (canary worse): z and P(Z ≥ z).
fn two_proportion_z(xb: u128, nb: u128, xc: u128, nc: u128) -> (Option<f64>, f64) {
    let (xb, nb, xc, nc) = (xb as f64, nb as f64, xc as f64, nc as f64);
    let pooled = (xb + xc) / (nb + nc);
    let variance = pooled * (1.0 - pooled) * (1.0 / nb + 1.0 / nc);
    if !(variance > 0.0 && variance.is_finite()) {
        return (None, 1.0);
    }
    let z = (xc / nc - xb / nb) / variance.sqrt();
    (Some(z), normal_upper_tail(z).clamp(0.0, 1.0))
}

/// One-sided Fisher exact test: P(X ≥ `xc`) for X ~ Hypergeometric(population `errors` +
/// `successes`, `errors` marked, `nc` drawn); `None` when the support has more than
/// [`FISHER_MAX_TERMS`] values.
///
/// Terms are computed relative to the mode with the ratio of successive probabilities,
///   P(k+1)/P(k) = (K−k)(n−k) / ((k+1)(S−n+k+1)),
/// and the tail is divided by the sum of all terms, so no factorial is ever formed. Terms
/// only shrink away from the mode; once one underflows to 0 the rest are 0 too.
fn fisher_upper_tail(xc: u128, nc: u128, errors: u128, successes: u128) -> Option<f64> {
    let (k, s) = (errors, successes);
    let lo = nc.saturating_sub(s);
    let hi = k.min(nc);
    if hi < lo || hi - lo >= FISHER_MAX_TERMS as u128 {
        return None;
    }
    let n = k + s;
    let mode_f = ((nc as f64 + 1.0) * (k as f64 + 1.0) / (n as f64 + 2.0)).floor();
    let mode = (mode_f as u128).clamp(lo, hi);
    let mut total = 1.0f64;
    let mut tail = if mode >= xc { 1.0f64 } else { 0.0 };

    let mut term = 1.0f64;
    let mut i = mode;
    while i < hi {
        term *= ((k - i) as f64 * (nc - i) as f64) / ((i + 1) as f64 * (s + i + 1 - nc) as f64);
        i += 1;
        if term == 0.0 {
            break;
        }
        total += term;
        if i >= xc {
            tail += term;
        }
    }
    let mut term = 1.0f64;
    let mut i = mode;
    while i > lo {
        term *= (i as f64 * (s + i - nc) as f64) / ((k - i + 1) as f64 * (nc - i + 1) as f64);
        i -= 1;
        if term == 0.0 {
            break;
        }
        total += term;
        if i >= xc {
            tail += term;
        }
    }
    let p = tail / total;
    p.is_finite().then(|| p.clamp(0.0, 1.0))
}

/// Standard normal cumulative distribution function Φ(x).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / SQRT_2)
}

/// P(Z ≥ z) = 1 − Φ(z), accurate in the far tail (no cancellation).
pub fn normal_upper_tail(z: f64) -> f64 {
    0.5 * erfc(z / SQRT_2)
}

/// 1/√π.
const FRAC_1_SQRT_PI: f64 = FRAC_2_SQRT_PI / 2.0;

// W. J. Cody, "Rational Chebyshev approximations for the error function", Mathematics of
// Computation 23 (1969) 631–637, as in his SPECFUN routine CALERF: erf on [0, 0.46875]
// (A/B), erfc on (0.46875, 4] (C/D) and erfc on (4, 26.543) (P/Q). The coefficients keep
// their published digits.
#[allow(clippy::excessive_precision)]
const CODY_A: [f64; 5] = [
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
];
#[allow(clippy::excessive_precision)]
const CODY_B: [f64; 4] = [
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
];
#[allow(clippy::excessive_precision)]
const CODY_C: [f64; 9] = [
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
];
#[allow(clippy::excessive_precision)]
const CODY_D: [f64; 8] = [
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
];
#[allow(clippy::excessive_precision)]
const CODY_P: [f64; 6] = [
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
];
#[allow(clippy::excessive_precision)]
const CODY_Q: [f64; 5] = [
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
];
/// Above this, erfc(x) underflows to 0.
const ERFC_XBIG: f64 = 26.543;

/// Complementary error function erfc(x) = 1 − erf(x), by Cody's rational approximations;
/// relative error within 1e-14 (tested against 40-digit values), also far in the tails.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let y = x.abs();
    if y <= 0.46875 {
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        let mut num = CODY_A[4] * ysq;
        let mut den = ysq;
        for i in 0..3 {
            num = (num + CODY_A[i]) * ysq;
            den = (den + CODY_B[i]) * ysq;
        }
        return 1.0 - x * (num + CODY_A[3]) / (den + CODY_B[3]);
    }
    let upper = if y <= 4.0 {
        let mut num = CODY_C[8] * y;
        let mut den = y;
        for i in 0..7 {
            num = (num + CODY_C[i]) * y;
            den = (den + CODY_D[i]) * y;
        }
        exp_neg_square(y) * (num + CODY_C[7]) / (den + CODY_D[7])
    } else if y < ERFC_XBIG {
        let inv = 1.0 / (y * y);
        let mut num = CODY_P[5] * inv;
        let mut den = inv;
        for i in 0..4 {
            num = (num + CODY_P[i]) * inv;
            den = (den + CODY_Q[i]) * inv;
        }
        let r = inv * (num + CODY_P[4]) / (den + CODY_Q[4]);
        exp_neg_square(y) * (FRAC_1_SQRT_PI - r) / y
    } else {
        0.0
    };
    if x < 0.0 {
        2.0 - upper
    } else {
        upper
    }
}

/// exp(−y²), with y² split as a multiple of 1/16 plus a small rest so the rounding of y²
/// is not magnified by the exponential.
fn exp_neg_square(y: f64) -> f64 {
    let head = (y * 16.0).trunc() / 16.0;
    let rest = (y - head) * (y + head);
    (-head * head).exp() * (-rest).exp()
}

/// The canary's `c` is above the baseline's `b` × (1 + `tolerance`); a tie, up to rounding
/// (one part in 10⁹), is not.
fn regressed(b: f64, c: f64, tolerance: f64) -> bool {
    c > b * (1.0 + tolerance) * (1.0 + 1e-9)
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// `12.3%`, or two decimals below 1% (`0.25%`), `0%` for none.
fn percent(ratio: f64) -> String {
    let pct = ratio * 100.0;
    if pct == 0.0 {
        "0%".into()
    } else if pct < 1.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// `20%`, `2.5%`.
fn tolerance_text(tolerance: f64) -> String {
    let pct = tolerance * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{:.0}%", pct.round())
    } else {
        format!("{pct:.1}%")
    }
}

/// `0.0123`, or `3.2e-7` below 0.0001.
fn p_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// `0.420 s`; sub-10 ms values with microseconds (`0.004200 s`).
fn seconds_text(s: f64) -> String {
    if s < 0.01 {
        format!("{s:.6} s")
    } else {
        format!("{s:.3} s")
    }
}

/// `+110%`, `-5%`.
fn change_text(change: f64) -> String {
    format!("{:+.0}%", change * 100.0)
}

#[cfg(test)]
// Reference values keep all the digits they were computed with.
#[allow(clippy::excessive_precision)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> CanaryConfig {
        CanaryConfig::default()
    }

    fn cohort(requests: u64, errors: u64) -> Cohort {
        Cohort {
            requests,
            errors,
            p95_ns: None,
            p99_ns: None,
        }
    }

    fn timed(requests: u64, errors: u64, p95_ms: u64, p99_ms: u64) -> Cohort {
        Cohort {
            requests,
            errors,
            p95_ns: Some(p95_ms * 1_000_000),
            p99_ns: Some(p99_ms * 1_000_000),
        }
    }

    fn close(actual: f64, expected: f64, rel: f64) -> bool {
        (actual - expected).abs() <= rel * expected.abs()
    }

    /// Exact one-sided Fisher p-value from whole-number binomials, for small tables.
    fn fisher_brute(xb: u64, nb: u64, xc: u64, nc: u64) -> f64 {
        fn choose(n: u64, k: u64) -> u128 {
            if k > n {
                return 0;
            }
            let k = k.min(n - k);
            let mut c: u128 = 1;
            for i in 0..k {
                c = c * (n - i) as u128 / (i + 1) as u128;
            }
            c
        }
        let (n, k) = (nb + nc, xb + xc);
        let tail: u128 = (xc..=k.min(nc))
            .map(|i| choose(k, i) * choose(n - k, nc - i))
            .sum();
        tail as f64 / choose(n, nc) as f64
    }

    // Reference values computed with 40-digit arithmetic (mpmath).
    #[test]
    fn erfc_matches_reference_values() {
        let cases = [
            (0.0, 1.0),
            (0.1, 0.8875370839817151016),
            (0.3, 0.67137324054087258381),
            (0.46875, 0.50738652678206200841),
            (0.5, 0.47950012218695346232),
            (1.0, 0.15729920705028513066),
            (1.5, 0.033894853524689272933),
            (2.0, 0.0046777349810472658379),
            (3.0, 0.000022090496998585441373),
            (3.99, 1.6739211364520814057e-8),
            (4.0, 1.5417257900280018852e-8),
            (4.5, 1.9661604415428874763e-10),
            (5.0, 1.5374597944280348502e-12),
            (6.0, 2.1519736712498913117e-17),
            (8.0, 1.122429717298292708e-29),
            (10.0, 2.088487583762544757e-45),
            (15.0, 7.2129941724512066666e-100),
            (26.0, 5.6631924088561428465e-296),
            (-0.2, 1.2227025892104784662),
            (-1.0, 1.8427007929497148693),
            (-3.0, 1.9999779095030014146),
            (-6.0, 2.0),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                close(got, want, 1e-14),
                "erfc({x}) = {got:e}, want {want:e}"
            );
        }
        assert_eq!(erfc(27.0), 0.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert!(erfc(f64::NAN).is_nan());
    }

    #[test]
    fn normal_cdf_matches_tables() {
        // Φ(1.6449) = 0.95 to four places; Φ(1.6448536269514722) is the 0.95 quantile.
        assert!(close(normal_cdf(1.6449), 0.95000478253165370026, 1e-14));
        assert!(close(normal_cdf(1.6448536269514722), 0.95, 1e-14));
        assert!(close(normal_cdf(1.96), 0.97500210485177956379, 1e-14));
        assert!(close(normal_cdf(-1.96), 0.024997895148220436213, 1e-13));
        assert!(close(normal_cdf(-3.0), 0.0013498980316300945267, 1e-13));
        assert!(close(normal_cdf(3.0), 0.99865010196836990547, 1e-14));
        assert!(close(normal_cdf(-8.0), 6.2209605742717841235e-16, 1e-13));
        assert_eq!(normal_cdf(0.0), 0.5);
        // The upper tail keeps its precision where 1 − Φ would cancel to 0.
        assert!(close(
            normal_upper_tail(8.8273482950474953),
            5.3593306556314479e-19,
            1e-12
        ));
        for x in [-5.0, -1.0, -0.3, 0.2, 1.7, 4.2] {
            assert!((normal_cdf(x) + normal_cdf(-x) - 1.0).abs() < 1e-15);
        }
    }

    #[test]
    fn z_test_p_values_by_hand() {
        // Baseline 10/1000 errors, canary 100/1000:
        //   pooled = 110 / 2000 = 0.055
        //   var    = 0.055 × 0.945 × (1/1000 + 1/1000) = 1.0395e-4, se = 0.0101956
        //   z      = (0.100 − 0.010) / 0.0101956 = 8.8273
        //   p      = 1 − Φ(8.8273) = 5.36e-19
        // Every expected cell count is at least 55, so the z-test is used.
        let t = error_test(&cohort(1000, 10), &cohort(1000, 100), 0.05);
        assert_eq!(t.method, TestMethod::ZTest);
        assert!(close(t.z.unwrap(), 8.8273482950474953, 1e-12));
        assert!(close(t.p_value, 5.3593306556314479e-19, 1e-10));
        assert!(t.worse);

        // Baseline 20/1000, canary 30/1000:
        //   pooled = 50 / 2000 = 0.025
        //   var    = 0.025 × 0.975 × 0.002 = 4.875e-5, se = 0.0069821
        //   z      = 0.010 / 0.0069821 = 1.43223
        //   p      = 1 − Φ(1.43223) = 0.07604 ≥ 0.05: not significant.
        let t = error_test(&cohort(1000, 20), &cohort(1000, 30), 0.05);
        assert_eq!(t.method, TestMethod::ZTest);
        assert!(close(t.z.unwrap(), 1.4322297480788658, 1e-12));
        assert!(close(t.p_value, 0.076039040396487594, 1e-12));
        assert!(!t.worse);

        // Baseline 50/5000 (1.0%), canary 12/1000 (1.2%):
        //   pooled = 62 / 6000, var = pooled × (1 − pooled) × (1/5000 + 1/1000)
        //   z = 0.002 / 0.0035031 = 0.57092, p = 0.28403
        let t = error_test(&cohort(5000, 50), &cohort(1000, 12), 0.05);
        assert!(close(t.z.unwrap(), 0.57091924348483565, 1e-12));
        assert!(close(t.p_value, 0.28402719293092813, 1e-12));
    }

    #[test]
    fn fisher_p_values_by_hand() {
        // Baseline 1/4, canary 3/4: K = 4 errors among N = 8, the canary draws 4.
        //   P(X ≥ 3) = [C(4,3)·C(4,1) + C(4,4)·C(4,0)] / C(8,4) = (16 + 1) / 70 = 0.242857
        let t = error_test(&cohort(4, 1), &cohort(4, 3), 0.05);
        assert_eq!(t.method, TestMethod::FisherExact);
        assert!(close(t.p_value, 17.0 / 70.0, 1e-14));

        // Baseline 0/200, canary 3/100: all K = 3 errors fell on the canary.
        //   P(X = 3) = C(100,3) / C(300,3) = 161700 / 4455100 = 0.036295
        let t = error_test(&cohort(200, 0), &cohort(100, 3), 0.05);
        assert_eq!(t.method, TestMethod::FisherExact);
        assert!(close(t.p_value, 161_700.0 / 4_455_100.0, 1e-13));
        assert!(t.worse);

        // More references (mpmath, exact binomial sums).
        for ((xb, nb, xc, nc), want) in [
            ((1, 1000, 4, 1000), 0.18718710882732303),
            ((2, 100_000, 3, 100), 9.6591864867260243e-9),
            ((5, 400, 1, 100), 0.73983097433131455),
            ((1, 120, 6, 130), 0.073811722034679666),
        ] {
            let t = error_test(&cohort(nb, xb), &cohort(nc, xc), 0.05);
            assert_eq!(t.method, TestMethod::FisherExact, "{xb}/{nb} vs {xc}/{nc}");
            assert!(
                close(t.p_value, want, 1e-12),
                "{xb}/{nb} vs {xc}/{nc}: {} want {want}",
                t.p_value
            );
        }
    }

    #[test]
    fn ten_times_the_errors_fails() {
        let c = compare(
            "POST /checkout",
            &cohort(1000, 10),
            &cohort(1000, 100),
            &cfg(),
        );
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(
            c.reasons,
            ["POST /checkout: canary error ratio 10.0% vs baseline 1.0% (one-sided two-proportion z-test p=5.4e-19 < 0.05)"]
        );
    }

    #[test]
    fn equal_cohorts_pass() {
        let c = compare("overall", &cohort(1000, 10), &cohort(1000, 10), &cfg());
        assert_eq!(c.verdict, Verdict::Pass);
        assert!(c.reasons.is_empty());
        let e = c.errors.unwrap();
        assert_eq!(e.z, Some(0.0));
        assert_eq!(e.p_value, 0.5);
        // A better canary passes too.
        let c = compare("overall", &cohort(1000, 50), &cohort(1000, 5), &cfg());
        assert_eq!(c.verdict, Verdict::Pass);
        assert!(c.errors.unwrap().p_value > 0.99);
    }

    #[test]
    fn degenerate_counts_pass_without_dividing_by_zero() {
        for (b, c) in [
            (cohort(1000, 0), cohort(1000, 0)),
            (cohort(1000, 1000), cohort(1000, 1000)),
            (cohort(100, 0), cohort(5000, 0)),
        ] {
            let out = compare("overall", &b, &c, &cfg());
            assert_eq!(out.verdict, Verdict::Pass, "{b:?} {c:?}");
            assert_eq!(out.errors.unwrap().p_value, 1.0);
        }
        // Every canary request failing, none of the baseline's: far from chance.
        let out = compare("overall", &cohort(100, 0), &cohort(100, 100), &cfg());
        assert_eq!(out.verdict, Verdict::Fail);
        assert!(out.errors.unwrap().p_value < 1e-20);
        // Errors above requests are read as requests.
        let out = compare("overall", &cohort(1000, 5000), &cohort(1000, 1000), &cfg());
        assert_eq!(out.baseline.errors, 1000);
        assert_eq!(out.verdict, Verdict::Pass);
    }

    #[test]
    fn too_few_requests_is_inconclusive() {
        let c = compare("GET /cart", &cohort(1000, 10), &cohort(20, 0), &cfg());
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(
            c.reasons,
            ["GET /cart: canary has 20 requests, fewer than the 100 needed (canary.min_requests)"]
        );
        // Even an alarming canary stays inconclusive below min_requests; the test is shown.
        let c = compare("GET /cart", &cohort(50, 0), &cohort(50, 50), &cfg());
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(c.reasons.len(), 2);
        assert!(c.errors.unwrap().worse);
        // No requests at all: no error test.
        let c = compare("GET /cart", &cohort(0, 0), &cohort(0, 0), &cfg());
        assert_eq!(c.verdict, Verdict::Inconclusive);
        assert_eq!(c.errors, None);
    }

    #[test]
    fn latency_beyond_tolerance_fails_and_within_passes() {
        let base = timed(10_000, 10, 150, 200);
        let slow = timed(10_000, 10, 160, 420);
        let c = compare("POST /checkout", &base, &slow, &cfg());
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(
            c.reasons,
            ["POST /checkout: p99 latency 0.420 s vs baseline 0.200 s (+110%, tolerated +20%)"]
        );
        let p99 = c.latency[1];
        assert_eq!(p99.quantile, Quantile::P99);
        assert!(close(p99.change, 1.1, 1e-12));

        let c = compare(
            "POST /checkout",
            &base,
            &timed(10_000, 10, 170, 230),
            &cfg(),
        );
        assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.reasons);
        assert_eq!(c.latency.len(), 2);
        // Exactly at the tolerance passes.
        let c = compare(
            "POST /checkout",
            &base,
            &timed(10_000, 10, 180, 240),
            &cfg(),
        );
        assert_eq!(c.verdict, Verdict::Pass, "{:?}", c.reasons);
        // A zero tolerance fails on any slowdown.
        let strict = CanaryConfig {
            latency_tolerance: 0.0,
            ..cfg()
        };
        let c = compare(
            "POST /checkout",
            &base,
            &timed(10_000, 10, 151, 200),
            &strict,
        );
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(
            c.reasons,
            ["POST /checkout: p95 latency 0.151 s vs baseline 0.150 s (+1%, tolerated +0%)"]
        );
        let loose = CanaryConfig {
            latency_tolerance: 0.025,
            ..cfg()
        };
        let c = compare("GET /", &base, &timed(10_000, 10, 150, 206), &loose);
        assert_eq!(
            c.reasons,
            ["GET /: p99 latency 0.206 s vs baseline 0.200 s (+3%, tolerated +2.5%)"]
        );
    }

    #[test]
    fn quantiles_need_requests_beyond_them() {
        // 300 requests each: enough for the verdict and for p95 (200), not for p99 (1,000).
        let c = compare(
            "GET /",
            &timed(300, 3, 100, 200),
            &timed(300, 3, 300, 600),
            &cfg(),
        );
        assert_eq!(c.verdict, Verdict::Fail);
        assert_eq!(c.latency.len(), 1);
        assert_eq!(c.latency[0].quantile, Quantile::P95);
        assert_eq!(
            c.notes,
            ["GET /: p99 latency not compared: it needs 1000 requests per cohort (10 beyond the p99), the smaller cohort has 300"]
        );
        // Missing latency data on one side: nothing compared, nothing noted.
        let c = compare("GET /", &cohort(5000, 3), &timed(5000, 3, 300, 600), &cfg());
        assert!(c.latency.is_empty() && c.notes.is_empty());
        assert_eq!(c.verdict, Verdict::Pass);
        // A zero baseline is not compared (any canary value would be "infinitely" slower).
        let zero = Cohort {
            p95_ns: Some(0),
            p99_ns: Some(0),
            ..cohort(5000, 3)
        };
        let c = compare("GET /", &zero, &timed(5000, 3, 1, 1), &cfg());
        assert_eq!(c.verdict, Verdict::Pass);
        assert_eq!(c.notes.len(), 2);
    }

    #[test]
    fn combine_fails_on_any_judged_feature() {
        let overall = compare("overall", &cohort(3000, 30), &cohort(3000, 40), &cfg());
        assert_eq!(overall.verdict, Verdict::Pass);
        let features = vec![
            compare("GET /", &cohort(2000, 20), &cohort(2000, 20), &cfg()),
            compare(
                "POST /checkout",
                &cohort(1000, 10),
                &cohort(1000, 100),
                &cfg(),
            ),
        ];
        let a = combine(overall, features);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(a.reasons.len(), 1);
        assert!(
            a.reasons[0].starts_with("POST /checkout: canary error ratio 10.0% vs baseline 1.0% (one-sided two-proportion z-test p=5.4e-19; Holm-adjusted over 2 features p=1.1e-18 < 0.05)"),
            "{:?}",
            a.reasons
        );
        assert_eq!(a.features[0].verdict, Verdict::Pass);
        assert_eq!(a.features[1].verdict, Verdict::Fail);
    }

    #[test]
    fn combine_overall_failure_and_inconclusive() {
        let fail = compare("overall", &cohort(1000, 10), &cohort(1000, 100), &cfg());
        let a = combine(fail, vec![]);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(a.reasons.len(), 1);

        let thin = compare("overall", &cohort(1000, 10), &cohort(40, 0), &cfg());
        let a = combine(
            thin,
            vec![compare("GET /", &cohort(900, 9), &cohort(30, 0), &cfg())],
        );
        assert_eq!(a.verdict, Verdict::Inconclusive);
        assert_eq!(
            a.reasons,
            ["overall: canary has 40 requests, fewer than the 100 needed (canary.min_requests)"]
        );
    }

    #[test]
    fn features_without_enough_data_only_add_a_note() {
        let overall = compare("overall", &cohort(5000, 50), &cohort(5000, 50), &cfg());
        let mut features = vec![compare(
            "GET /",
            &cohort(4000, 40),
            &cohort(4000, 40),
            &cfg(),
        )];
        for i in 0..12 {
            // Each thin feature looks terrible, but 10 requests decide nothing.
            features.push(compare(
                &format!("GET /f{i}"),
                &cohort(10, 0),
                &cohort(10, 10),
                &cfg(),
            ));
        }
        let a = combine(overall, features);
        assert_eq!(a.verdict, Verdict::Pass);
        assert!(a.reasons.is_empty());
        assert_eq!(
            a.notes,
            ["12 features have too few requests to be judged alone and count only in the overall comparison: GET /f0, GET /f1, GET /f2, GET /f3, GET /f4, GET /f5, GET /f6, GET /f7, GET /f8, GET /f9 and 2 more"]
        );
        // Thin features are not part of the Holm family.
        assert_eq!(a.features[0].errors.unwrap().adjusted, None);
        assert_eq!(a.features[1].errors.unwrap().adjusted, None);
    }

    #[test]
    fn holm_keeps_many_features_from_failing_by_chance() {
        // Baseline 20/1000, canary 35/1000: z = 0.015 / 0.0073135 = 2.051, p = 0.0201.
        // Alone that fails at 0.05; among 10 features Holm makes it 10 × 0.0201 = 0.201.
        let alone = compare("GET /a", &cohort(1000, 20), &cohort(1000, 35), &cfg());
        assert_eq!(alone.verdict, Verdict::Fail);
        let raw = alone.errors.unwrap().p_value;
        assert!(raw > 0.005 && raw < 0.05, "{raw}");

        let overall = compare(
            "overall",
            &cohort(10_000, 200),
            &cohort(10_000, 215),
            &cfg(),
        );
        let mut features = vec![alone];
        for i in 0..9 {
            features.push(compare(
                &format!("GET /{i}"),
                &cohort(1000, 20),
                &cohort(1000, 20),
                &cfg(),
            ));
        }
        let a = combine(overall.clone(), features.clone());
        assert_eq!(a.verdict, Verdict::Pass, "{:?}", a.reasons);
        let adj = a.features[0].errors.unwrap().adjusted.unwrap();
        assert_eq!(adj.tests, 10);
        assert!(close(adj.p_value, 10.0 * raw, 1e-12));
        assert_eq!(a.features[0].verdict, Verdict::Pass);
        assert!(a.features[0].reasons.is_empty());

        // A real regression still fails after the adjustment.
        features[1] = compare("GET /b", &cohort(1000, 10), &cohort(1000, 100), &cfg());
        let a = combine(overall, features);
        assert_eq!(a.verdict, Verdict::Fail);
        assert_eq!(a.reasons.len(), 1);
        assert!(a.reasons[0].starts_with("GET /b: "), "{:?}", a.reasons);
        // Adjusted p-values never decrease with the raw ones.
        let mut by_raw: Vec<_> = a
            .features
            .iter()
            .map(|f| {
                let e = f.errors.unwrap();
                (e.p_value, e.adjusted.unwrap().p_value)
            })
            .collect();
        by_raw.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(by_raw.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_string(&Verdict::Inconclusive).unwrap(),
            "\"inconclusive\""
        );
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Inconclusive] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
        }
        let c = compare(
            "POST /checkout",
            &timed(2000, 20, 100, 200),
            &timed(2000, 200, 100, 500),
            &cfg(),
        );
        let a = combine(c.clone(), vec![c]);
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["verdict"], "fail");
        assert_eq!(
            v["baseline"],
            serde_json::json!({"requests": 2000, "errors": 20, "error_ratio": 0.01,
                "p95_seconds": 0.1, "p99_seconds": 0.2})
        );
        assert_eq!(v["errors"]["method"], "z_test");
        assert_eq!(v["latency"][1]["quantile"], "p99");
        assert_eq!(v["features"][0]["feature"], "POST /checkout");
        assert_eq!(v["features"][0]["verdict"], "fail");
        assert!(v["features"][0].get("min_requests").is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn p_values_are_probabilities(
            nb in prop_oneof![0u64..60, 0u64..5000, 0u64..10_000_000, any::<u64>()],
            nc in prop_oneof![0u64..60, 0u64..5000, 0u64..10_000_000, any::<u64>()],
            eb in any::<u64>(),
            ec in any::<u64>(),
            few in any::<bool>(),
            min_requests in 0u64..500,
            significance in 1e-6f64..0.5,
            tolerance in 0f64..3.0,
            p95 in proptest::option::of(0u64..10_000_000_000),
            p99 in proptest::option::of(0u64..10_000_000_000),
        ) {
            // Errors either anywhere up to the requests (and beyond, which reads as all),
            // or a handful, where Fisher's test is used.
            let pick = |n: u64, e: u64| if few { e % 8 } else if n == 0 { e } else { e % n.saturating_add(n / 4).saturating_add(1) };
            let b = Cohort { requests: nb, errors: pick(nb, eb), p95_ns: p95, p99_ns: p99 };
            let c = Cohort { requests: nc, errors: pick(nc, ec), p95_ns: p99, p99_ns: p95 };
            let cfg = CanaryConfig { min_requests, significance, latency_tolerance: tolerance, ..CanaryConfig::default() };
            let out = compare("f", &b, &c, &cfg);
            if let Some(e) = out.errors {
                prop_assert!((0.0..=1.0).contains(&e.p_value), "p = {}", e.p_value);
                prop_assert!(e.z.is_none_or(f64::is_finite));
                prop_assert_eq!(e.worse, e.p_value < significance);
            }
            for l in &out.latency {
                prop_assert!(l.change.is_finite() && l.baseline_seconds > 0.0);
            }
            for s in [out.baseline, out.canary] {
                prop_assert!(s.error_ratio.is_none_or(|r| (0.0..=1.0).contains(&r)));
            }
            prop_assert_eq!(out.verdict == Verdict::Inconclusive, !out.has_enough_data());
            prop_assert_eq!(out.verdict == Verdict::Pass, out.reasons.is_empty());
            let a = combine(out.clone(), vec![out.clone(), out]);
            for f in &a.features {
                if let Some(adj) = f.errors.and_then(|e| e.adjusted) {
                    prop_assert!((0.0..=1.0).contains(&adj.p_value));
                }
            }
            let json = serde_json::to_string(&a).unwrap();
            prop_assert!(!json.contains("NaN") && !json.contains("inf"));
        }

        #[test]
        fn fisher_matches_exact_binomial_sums(
            nb in 1u64..30, nc in 1u64..30, eb in 0u64..30, ec in 0u64..30,
        ) {
            let (xb, xc) = (eb % (nb + 1), ec % (nc + 1));
            let (k, n) = ((xb + xc) as u128, (nb + nc) as u128);
            let got = if k == 0 || k == n {
                1.0
            } else {
                fisher_upper_tail(xc as u128, nc as u128, k, n - k).unwrap()
            };
            let want = fisher_brute(xb, nb, xc, nc);
            prop_assert!((got - want).abs() <= 1e-12 * want.max(1e-300) + 1e-300,
                "{}/{} vs {}/{}: {} want {}", xb, nb, xc, nc, got, want);
        }

        #[test]
        fn more_canary_errors_never_raise_p(
            nb in 1u64..100_000, nc in 1u64..100_000, xb_seed in any::<u64>(), xc_seed in any::<u64>(),
        ) {
            let xb = xb_seed % (nb + 1);
            let xc = xc_seed % nc; // leaves room for one more
            let (k, s) = ((xb + xc) as u128, (nb + nc - xb - xc) as u128);
            // Within one method the p-value falls as the canary's errors rise.
            if let (Some(p0), Some(p1)) = (
                fisher_upper_tail(xc as u128, nc as u128, k, s),
                fisher_upper_tail(xc as u128 + 1, nc as u128, k + 1, s - 1),
            ) {
                prop_assert!(p1 <= p0 * (1.0 + 1e-9) + 1e-300, "fisher {} -> {}", p0, p1);
            }
            let (_, z0) = two_proportion_z(xb as u128, nb as u128, xc as u128, nc as u128);
            let (_, z1) = two_proportion_z(xb as u128, nb as u128, xc as u128 + 1, nc as u128);
            prop_assert!(z1 <= z0 * (1.0 + 1e-9) + 1e-300, "z {} -> {}", z0, z1);
        }
    }
}
