//! `GET /api/v1/canary?service=S&baseline=A&canary=B[&window=10m][&feature=F][&flag=K]`:
//! compares the canary cohort with its baseline over a window read live from the shards, and
//! returns a verdict a progressive-delivery controller or a flag platform can act on. Cohorts
//! are values of `canary.attribute` (recorded as a series label), or with `flag`, variants of
//! that feature flag (from the flag series).

use crate::pipeline::query::{CohortQuery, CohortSlots, QueryError};
use crate::pipeline::Pipeline;
use crate::report::exemplars::{failing_in, FAILING_LISTED};
use crate::sli::classify::label_name;
use crate::sli::series::QUANTILES;
use crate::sli::window::{Slot, Span};
use crate::slo::canary::{combine, compare, Analysis, Cohort};
use crate::slo::def::{duration_name, CanaryConfig};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// How long the shards get to answer.
const SHARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a canary query cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub enum CanaryError {
    /// The request is wrong (HTTP 400).
    BadRequest(String),
    /// Canary analysis is turned off (HTTP 404).
    Disabled,
    /// A flag was asked for, but flag evaluations are not read (HTTP 404).
    FlagsOff,
    /// The shards did not answer in time (HTTP 503).
    Unavailable,
    /// Too many queries at once (HTTP 429).
    Busy,
}

#[derive(Serialize)]
struct Query<'a> {
    service: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    feature: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<&'a str>,
    attribute: &'a str,
    baseline: &'a str,
    canary: &'a str,
    window: String,
    /// The longest time the window may cover (it slides in 10 s steps up to 5 m and in
    /// 5-minute steps beyond).
    window_covers_up_to: String,
}

#[derive(Serialize)]
struct Response<'a> {
    #[serde(flatten)]
    analysis: Analysis,
    query: Query<'a>,
    /// Failing requests of the canary cohort in the window, newest first.
    canary_examples: Vec<super::exemplars::FailingRequest<'a>>,
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Result<&'a str, CanaryError> {
    q.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| CanaryError::BadRequest(format!("query parameter {name:?} is required")))
}

/// Cohort figures of a summed window: raw counts (the test needs observed events, not
/// sampling estimates) and p95/p99 from the merged histogram.
fn cohort(slot: &Slot, pipeline: &Pipeline) -> Cohort {
    let mut q = [None; 4];
    slot.hist
        .values_at_quantiles(&pipeline.settings().layout, &QUANTILES, &mut q);
    Cohort {
        requests: slot.requests,
        errors: slot.errors,
        p95_ns: q[2],
        p99_ns: q[3],
    }
}

/// Answers one canary query (blocking: it waits for the shards).
pub fn render(
    pipeline: &Pipeline,
    cfg: Option<&CanaryConfig>,
    q: &HashMap<String, String>,
) -> Result<Vec<u8>, CanaryError> {
    let flag = q.get("flag").map(String::as_str).filter(|f| !f.is_empty());
    if flag.is_some() && !pipeline.reads_flags() {
        return Err(CanaryError::FlagsOff);
    }
    // A flag's variants are compared with the canary statistics even when versions are not.
    let default = CanaryConfig::default();
    let cfg = match (cfg, flag) {
        (Some(c), _) => c,
        (None, Some(_)) => &default,
        (None, None) => return Err(CanaryError::Disabled),
    };
    let service = param(q, "service")?;
    let baseline = param(q, "baseline")?;
    let canary = param(q, "canary")?;
    if baseline == canary {
        return Err(CanaryError::BadRequest(
            "baseline and canary name the same cohort".into(),
        ));
    }
    let feature = q
        .get("feature")
        .map(String::as_str)
        .filter(|f| !f.is_empty());
    let window_text = q.get("window").map_or("10m", String::as_str);
    let window =
        crate::config::units::parse_duration(window_text).map_err(CanaryError::BadRequest)?;
    let (span, covers) = Some(window)
        .filter(|w| *w >= Duration::from_secs(60))
        .and_then(Span::covering)
        .ok_or_else(|| {
            CanaryError::BadRequest(format!(
                "window {window_text:?} is out of range; use 1m to 1h"
            ))
        })?;
    let names = match flag {
        Some(_) => crate::report::flags::LABELS.map(String::from).to_vec(),
        None => pipeline.classifier().label_names(),
    };
    let position = match flag {
        Some(_) => crate::report::flags::VARIANT_LABEL,
        None => {
            let label = label_name(&cfg.attribute);
            names
                .iter()
                .position(|n| *n == label)
                .ok_or(CanaryError::Disabled)?
        }
    };
    let slots = pipeline
        .query_cohorts(CohortQuery {
            service: service.to_string(),
            feature: feature.map(str::to_string),
            flag: flag.map(str::to_string),
            label: position,
            cohorts: [baseline.to_string(), canary.to_string()],
            span,
            deadline: std::time::Instant::now() + SHARD_TIMEOUT,
        })
        .map_err(|e| match e {
            QueryError::Busy => CanaryError::Busy,
            QueryError::Unavailable => CanaryError::Unavailable,
        })?;
    let analysis = analyse(&slots, pipeline, cfg);
    let since = pipeline
        .now_unix_nanos()
        .saturating_sub(u64::try_from(covers.as_nanos()).unwrap_or(u64::MAX));
    let view = pipeline.view();
    let series = if flag.is_some() {
        &view.flags
    } else {
        &view.series
    };
    let examples = failing_in(series, since, None, FAILING_LISTED, |s| {
        s.service() == service
            && feature.is_none_or(|f| s.feature() == f)
            && flag.is_none_or(|f| s.labels.get(2).is_some_and(|v| **v == *f))
            && s.labels.get(position).is_some_and(|v| **v == *canary)
    });
    serde_json::to_vec(&Response {
        analysis,
        canary_examples: super::exemplars::failing_requests(&names, &examples),
        query: Query {
            service,
            feature,
            flag,
            attribute: if flag.is_some() {
                crate::sli::flag::VARIANT[0]
            } else {
                &cfg.attribute
            },
            baseline,
            canary,
            window: duration_name(window),
            window_covers_up_to: duration_name(covers),
        },
    })
    .map_err(|e| CanaryError::BadRequest(e.to_string()))
}

/// Compares the cohorts per feature and over all features.
fn analyse(slots: &CohortSlots, pipeline: &Pipeline, cfg: &CanaryConfig) -> Analysis {
    let mut per_feature: BTreeMap<&str, [Slot; 2]> = BTreeMap::new();
    let mut overall: [Slot; 2] = Default::default();
    for ((cohort, feature), slot) in slots {
        if let (Some(f), Some(o)) = (
            per_feature.entry(feature).or_default().get_mut(*cohort),
            overall.get_mut(*cohort),
        ) {
            f.add(slot);
            o.add(slot);
        }
    }
    let features = per_feature
        .iter()
        .map(|(name, [b, c])| compare(name, &cohort(b, pipeline), &cohort(c, pipeline), cfg))
        .collect();
    let [b, c] = &overall;
    combine(
        compare("overall", &cohort(b, pipeline), &cohort(c, pipeline), cfg),
        features,
    )
}
