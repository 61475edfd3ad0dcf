//! What the trace tracker is given of a batch: its spans' links (span id, parent, service)
//! grouped by trace in the order they arrived, each trace's id stored once per group.
//!
//! Exporters send a trace's spans one after another, so consecutive spans of one trace
//! form one group: the receiving thread writes 24 bytes per span and 24 per group, and the
//! shard hands the groups to the tracker as they are, without regrouping or copying.

/// One span, as the tracker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLink {
    /// Span id.
    pub span_id: u64,
    /// Parent span id; 0 (never a valid span id) for a root span.
    pub parent: u64,
    /// The span's service, as an index the caller gives meaning to (see
    /// [`super::Observed::services`]).
    pub service: u32,
    /// The parent runs elsewhere (see [`super::traces`]).
    pub parent_remote: bool,
}

impl SpanLink {
    /// The parent span id, `None` for a root span.
    #[inline]
    pub fn parent(&self) -> Option<u64> {
        (self.parent != 0).then_some(self.parent)
    }
}

/// One trace's spans that arrived together: the links up to `end` after the previous
/// group's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceGroup {
    /// The trace id as two halves, so a group takes 24 bytes rather than the 32 that a
    /// `u128` field's 16-byte alignment would make it.
    id: [u64; 2],
    /// Where the group's links end in [`TraceSpans::links`].
    end: usize,
}

impl TraceGroup {
    /// The group of trace `trace_id` whose links end at `end`.
    #[inline]
    fn new(trace_id: u128, end: usize) -> Self {
        TraceGroup {
            id: [(trace_id >> 64) as u64, trace_id as u64],
            end,
        }
    }

    /// The trace id (16 bytes, big-endian).
    #[inline]
    pub fn trace_id(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }
}

/// Where a run of consecutive spans of one service starts in [`TraceSpans::links`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServiceRun {
    service: u32,
    start: u32,
}

/// A batch's spans grouped by trace.
#[derive(Clone, Debug, Default)]
pub struct TraceSpans {
    groups: Vec<TraceGroup>,
    links: Vec<SpanLink>,
    /// Runs of spans by service, so spans are counted per service without reading each.
    runs: Vec<ServiceRun>,
}

impl TraceSpans {
    /// Adds a span of trace `trace_id`: to the last group when it is of the same trace,
    /// else as a new group.
    #[inline]
    pub fn push(&mut self, trace_id: u128, link: SpanLink) {
        if self.runs.last().is_none_or(|r| r.service != link.service) {
            self.begin_service(link.service);
        }
        self.push_in_run(trace_id, link);
    }

    /// Starts a run of spans of `service`: the spans pushed next with
    /// [`Self::push_in_run`] or [`Self::push_to_last`] are of it.
    pub fn begin_service(&mut self, service: u32) {
        self.runs.push(ServiceRun {
            service,
            start: u32::try_from(self.links.len()).unwrap_or(u32::MAX),
        });
    }

    /// [`Self::push`] for a span of the service of the current run, without comparing
    /// services.
    #[inline]
    pub fn push_in_run(&mut self, trace_id: u128, link: SpanLink) {
        debug_assert_eq!(self.runs.last().map(|r| r.service), Some(link.service));
        self.links.push(link);
        let group = TraceGroup::new(trace_id, self.links.len());
        match self.groups.last_mut() {
            Some(g) if g.id == group.id => g.end = group.end,
            _ => self.groups.push(group),
        }
    }

    /// [`Self::push`] for a span of the trace and the service of the span pushed last,
    /// without comparing either: the span joins the last group.
    #[inline]
    pub fn push_to_last(&mut self, trace_id: u128, link: SpanLink) {
        debug_assert_eq!(self.runs.last().map(|r| r.service), Some(link.service));
        self.links.push(link);
        let end = self.links.len();
        match self.groups.last_mut() {
            Some(g) => g.end = end,
            None => self.groups.push(TraceGroup::new(trace_id, end)),
        }
    }

    /// Room for `spans` more spans, in traces of four spans or more and runs of a service
    /// of 32 or more.
    pub fn reserve(&mut self, spans: usize) {
        self.links.reserve(spans);
        self.groups.reserve(spans.div_ceil(4));
        self.runs.reserve(spans.div_ceil(32));
    }

    /// Forgets every span, keeping the memory.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.links.clear();
        self.runs.clear();
    }

    /// (service, spans) for each run of consecutive spans of one service, in arrival
    /// order; a service may have several runs.
    pub fn service_counts(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        let ends = self
            .runs
            .iter()
            .skip(1)
            .map(|r| r.start as usize)
            .chain(std::iter::once(self.links.len()));
        self.runs
            .iter()
            .zip(ends)
            .map(|(r, end)| (r.service, end.saturating_sub(r.start as usize) as u64))
    }

    /// Spans held.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when no span is held.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Every span, in arrival order.
    pub fn links(&self) -> &[SpanLink] {
        &self.links
    }

    /// The groups, each with its spans, in arrival order.
    pub fn groups(&self) -> impl Iterator<Item = (&TraceGroup, &[SpanLink])> + '_ {
        let mut start = 0;
        self.groups.iter().map(move |g| {
            let spans = self.links.get(start..g.end).unwrap_or(&[]);
            start = g.end;
            (g, spans)
        })
    }

    /// Bytes of capacity held.
    pub fn capacity_bytes(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<TraceGroup>()
            + self.links.capacity() * std::mem::size_of::<SpanLink>()
            + self.runs.capacity() * std::mem::size_of::<ServiceRun>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(span_id: u64, parent: u64) -> SpanLink {
        SpanLink {
            span_id,
            parent,
            service: 0,
            parent_remote: false,
        }
    }

    #[test]
    fn consecutive_spans_of_a_trace_form_one_group() {
        let mut s = TraceSpans::default();
        let big = u128::MAX - 5;
        s.push(1, link(10, 0));
        s.push(1, link(11, 10));
        s.push(big, link(20, 0));
        s.push(1, link(12, 10));
        let groups: Vec<(u128, Vec<u64>)> = s
            .groups()
            .map(|(g, l)| (g.trace_id(), l.iter().map(|l| l.span_id).collect()))
            .collect();
        assert_eq!(
            groups,
            vec![(1, vec![10, 11]), (big, vec![20]), (1, vec![12])]
        );
        assert_eq!((s.len(), s.groups().count()), (4, 3));
        assert_eq!(s.links()[1].parent(), Some(10));
        assert_eq!(s.links()[0].parent(), None);
        assert_eq!(std::mem::size_of::<SpanLink>(), 24);
        assert_eq!(std::mem::size_of::<TraceGroup>(), 24);
        s.clear();
        assert!(s.is_empty());
        assert_eq!(s.groups().count(), 0);
        assert_eq!(s.service_counts().count(), 0);
    }

    fn link_of(service: u32, span_id: u64) -> SpanLink {
        SpanLink {
            service,
            ..link(span_id, 0)
        }
    }

    #[test]
    fn spans_are_counted_per_run_of_a_service_whichever_way_they_were_pushed() {
        let mut s = TraceSpans::default();
        s.push(1, link_of(0, 10));
        s.push(1, link_of(0, 11));
        s.push(2, link_of(1, 20));
        // A run started for a service whose spans all went elsewhere holds none.
        s.begin_service(2);
        s.begin_service(3);
        s.push_in_run(3, link_of(3, 30));
        s.push_to_last(3, link_of(3, 31));
        s.push_in_run(4, link_of(3, 40));
        s.push(5, link_of(0, 50));
        let counts: Vec<(u32, u64)> = s.service_counts().collect();
        assert_eq!(counts, vec![(0, 2), (1, 1), (2, 0), (3, 3), (0, 1)]);
        let groups: Vec<(u128, usize)> = s.groups().map(|(g, l)| (g.trace_id(), l.len())).collect();
        assert_eq!(groups, vec![(1, 2), (2, 1), (3, 2), (4, 1), (5, 1)]);
        // The first span of an empty batch starts its group even through `push_to_last`.
        let mut e = TraceSpans::default();
        e.begin_service(7);
        e.push_to_last(9, link_of(7, 1));
        assert_eq!(
            e.groups().map(|(g, _)| g.trace_id()).collect::<Vec<_>>(),
            vec![9]
        );
        assert_eq!(e.service_counts().collect::<Vec<_>>(), vec![(7, 1)]);
    }
}
