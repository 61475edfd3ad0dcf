//! On-demand reads of live shard state that snapshots do not carry: counts and latency
//! histograms of any window from 1 m to 1 h, split by cohort (the canary attribute's
//! value, or a flag's variant), for canary analysis of versions and of flag rollouts. Each shard answers from its own series; the caller merges.

use crate::sli::series::SeriesTable;
use crate::sli::window::{Slot, Span};
use std::collections::BTreeMap;

/// Which series to read and how to split them.
#[derive(Clone, Debug)]
pub struct CohortQuery {
    /// `service` label.
    pub service: String,
    /// Only this feature when set.
    pub feature: Option<String>,
    /// Position of the cohort label in a series' labels.
    pub label: usize,
    /// Read the flag series of this flag (label 2) instead of the SLI series; the cohort
    /// label is then the variant.
    pub flag: Option<String>,
    /// Cohort label values: baseline first, canary second.
    pub cohorts: [String; 2],
    /// The window.
    pub span: Span,
    /// After this the asker has given up: a shard that gets to the query later skips it.
    pub deadline: std::time::Instant,
}

/// Why a query got no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// As many queries as allowed are already running; retry later.
    #[error("too many queries at once")]
    Busy,
    /// A shard did not answer before the deadline, or the pipeline is stopped.
    #[error("the shards did not answer in time")]
    Unavailable,
}

/// Most cohort queries in progress at once; more are refused ([`QueryError::Busy`]), so
/// queries can never crowd out the batches in the shard queues.
pub const MAX_CONCURRENT_QUERIES: usize = 4;

/// Per `(cohort index, feature)`, the summed window.
pub type CohortSlots = BTreeMap<(usize, Box<str>), Slot>;

impl CohortQuery {
    /// Reads the matching series of one shard (nothing once the deadline has passed).
    pub fn run(&self, table: &SeriesTable) -> CohortSlots {
        let mut out = CohortSlots::new();
        if std::time::Instant::now() > self.deadline {
            return out;
        }
        let mut scratch = Slot::default();
        for (labels, windows) in table.each() {
            let (Some(service), Some(feature), Some(value)) =
                (labels.first(), labels.get(1), labels.get(self.label))
            else {
                continue;
            };
            if **service != *self.service
                || self.feature.as_deref().is_some_and(|f| f != &**feature)
                || self
                    .flag
                    .as_deref()
                    .is_some_and(|f| labels.get(2).is_none_or(|l| **l != *f))
            {
                continue;
            }
            let Some(cohort) = self.cohorts.iter().position(|c| **c == **value) else {
                continue;
            };
            windows.read_span(self.span, &mut scratch);
            if scratch.requests == 0 {
                continue;
            }
            out.entry((cohort, feature.clone()))
                .or_default()
                .add(&scratch);
        }
        out
    }
}

/// Merges shard answers.
pub fn merge(parts: impl IntoIterator<Item = CohortSlots>) -> CohortSlots {
    let mut out = CohortSlots::new();
    for part in parts {
        for (k, slot) in part {
            out.entry(k).or_default().add(&slot);
        }
    }
    out
}
