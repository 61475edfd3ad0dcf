//! Per-service figures, summed over the service's series: requests named after their span
//! name (and whether that was recent), the sampling ratio since start, and whether any of
//! its series is short of the trace-coverage target.

use super::quality::unattributed_active;
use super::Report;
use std::collections::BTreeMap;

/// What the completeness checks say about one service.
#[derive(Debug, Default, PartialEq)]
pub struct ServiceFigures {
    /// Requests named after their span name since start.
    pub unattributed: u64,
    /// Whether one of them arrived in the last 5 minutes.
    pub unattributed_active: bool,
    /// Entry spans received ÷ the requests they stand for, since start; `None` without any.
    pub sampling_ratio: Option<f64>,
    /// Whether a series of the service has its 5-minute trace coverage below the target.
    pub under_covered: bool,
}

impl Report<'_> {
    /// Every service with series, by name.
    pub fn services(&self) -> BTreeMap<&str, ServiceFigures> {
        let mut sums: BTreeMap<&str, (ServiceFigures, u64, f64)> = BTreeMap::new();
        for s in &self.view().series {
            let (f, spans, est) = sums.entry(s.service()).or_default();
            f.unattributed += s.unattributed.count;
            f.unattributed_active |= unattributed_active(&s.unattributed, self.now());
            f.under_covered |= self.under_covered(s);
            *spans += s.requests_total;
            *est += s.est_requests_total;
        }
        sums.into_iter()
            .map(|(name, (mut f, spans, est))| {
                f.sampling_ratio = (est > 0.0).then(|| (spans as f64 / est).min(1.0));
                (name, f)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::otlp::synth::{traces_request, Rng, Workload};
    use prost::Message;

    #[test]
    fn sampling_ratio_is_spans_over_the_requests_they_stand_for() {
        let t0 = 1_796_000_000_000_000_000;
        let c = crate::settings::parse("", |_| None).expect("config");
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new(t0));
        let p = crate::app::build_pipeline(&c, clock).expect("pipeline");
        let w = Workload {
            services: 2,
            features: 1,
            children_per_trace: 0,
            error_every: 0,
            seed: 1,
            ..Workload::default()
        };
        let (mut req, _, _) = traces_request(&w, &mut Rng::new(7), 40, t0);
        // The first service's spans were sampled at 50% (each stands for two requests).
        for rs in req.resource_spans.iter_mut().take(1) {
            for span in rs.scope_spans.iter_mut().flat_map(|s| s.spans.iter_mut()) {
                span.trace_state = "ot=th:8".into();
            }
        }
        p.ingest_traces(&req.encode_to_vec()).expect("accepted");
        p.flush_now();
        let reader = crate::report::Reader::new(p.clone(), crate::report::Thresholds::default());
        let report = reader.report();
        let services = report.services();
        let ratios: Vec<Option<f64>> = services.values().map(|f| f.sampling_ratio).collect();
        assert_eq!(services.len(), 2, "{services:?}");
        assert!(
            ratios.contains(&Some(0.5)) && ratios.contains(&Some(1.0)),
            "{ratios:?}"
        );
        assert!(services
            .values()
            .all(|f| !f.under_covered && f.unattributed == 0));
        p.shutdown();
    }
}
