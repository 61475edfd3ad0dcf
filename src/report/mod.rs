//! The read model: the one place that turns a pipeline snapshot ([`View`]) plus the reader's
//! thresholds ([`Thresholds`]) into domain answers: per-series SLIs with their data quality
//! ([`series`]), trace coverage and silence ([`quality`]), the active completeness gaps
//! ([`gaps`]), SLO statuses ([`slos`]), example requests ([`exemplars`]) and feature-flag cohorts ([`flags`]). Renderers (`api`: the JSON API the dashboard
//! reads, `/metrics`) and encoders (`export`: remote write, OTLP metrics) format what it
//! returns and compute no domain value of their own.
//!
//! Reads `pipeline` (snapshots, the SLO engine, the clock), `sli`, `slo` and
//! `completeness`; imports neither `api` nor `export`, so data flows one way: shards →
//! snapshots → report → renderers and encoders.

pub mod exemplars;
pub mod flags;
pub mod gaps;
pub mod quality;
pub mod series;
pub mod services;
pub mod slos;

use crate::pipeline::snapshot::View;
use crate::pipeline::Pipeline;
use std::time::Duration;

/// The thresholds readers judge data quality by (`completeness.*`); they change nothing of
/// what the pipeline records.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// A service that sent telemetry and then nothing for this long is silent
    /// (`completeness.silence_after`).
    pub silence_after: Duration,
    /// Fewer requests than this in a window make its SLI insufficient
    /// (`completeness.min_events`).
    pub min_events: u64,
    /// Trace coverage below this makes an SLI insufficient and raises an untraced-requests
    /// gap (`completeness.coverage_target`).
    pub coverage_target: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            silence_after: Duration::from_secs(300),
            min_events: 10,
            coverage_target: 0.9,
        }
    }
}

impl Thresholds {
    /// `silence_after` in nanoseconds.
    pub fn silence_after_nanos(&self) -> u64 {
        u64::try_from(self.silence_after.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What renderers and encoders hold: the pipeline they read and the thresholds they judge
/// by. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reader {
    pipeline: Pipeline,
    thresholds: Thresholds,
}

impl Reader {
    /// Reads `pipeline`, judging by `thresholds`.
    pub fn new(pipeline: Pipeline, thresholds: Thresholds) -> Self {
        Self {
            pipeline,
            thresholds,
        }
    }

    /// The pipeline read (for what is not a domain answer: settings, the classifier's label
    /// names, the clock).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The thresholds data quality is judged by.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The latest snapshot, with the thresholds: every answer comes from one report, so the
    /// figures of one response agree with each other.
    pub fn report(&self) -> Report<'_> {
        self.report_of(self.pipeline.view())
    }

    /// The answers for a given snapshot (for encoders and tests that hold one already).
    pub fn report_of(&self, view: View) -> Report<'_> {
        Report { reader: self, view }
    }
}

/// One snapshot and the thresholds: the domain answers of one moment.
#[derive(Debug)]
pub struct Report<'r> {
    reader: &'r Reader,
    view: View,
}

impl Report<'_> {
    /// The snapshot the answers come from.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The pipeline the snapshot comes from.
    pub fn pipeline(&self) -> &Pipeline {
        &self.reader.pipeline
    }

    /// The thresholds of the answers.
    pub fn thresholds(&self) -> &Thresholds {
        &self.reader.thresholds
    }

    /// When the snapshot was taken (the oldest shard flush), Unix nanoseconds.
    pub fn now(&self) -> u64 {
        self.view.flushed_at_unix_nanos
    }

    /// Every flag's variants over window `w`, with their tied-error tests; empty when
    /// flags are not read.
    pub fn flags(&self, w: crate::sli::window::Window) -> Vec<flags::Flag<'_>> {
        let pipeline = self.pipeline();
        match pipeline.flag_options() {
            Some(o) => flags::flags(&self.view, w, &pipeline.settings().layout, &o.stats),
            None => Vec::new(),
        }
    }
}
