//! Turning one scanned trace request into per-shard batches: the scanner's sink.
//!
//! Each entry span is classified, its series key is written into the batch of the shard that
//! owns the key (`hash % shards`), and invalid spans are counted for `partial_success`.
//! Nothing is sent from here; the caller sends the batches only after the whole request
//! scanned cleanly, so a malformed request never counts partially.

use crate::otlp::scan::{ResourceView, SpanSink, SpanView};
use crate::sli::classify::{Classifier, Observation, Reject, ResourceValues, Verdict};
use crate::sli::key;

/// One observation waiting for its shard.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    /// Hash of the series key.
    pub hash: u64,
    /// Start of the key in [`Batch::keys`].
    pub key_start: u32,
    /// Length of the key.
    pub key_len: u32,
    /// The observation.
    pub obs: Observation,
}

/// Observations for one shard from one request.
#[derive(Debug, Default)]
pub struct Batch {
    /// Concatenated series keys of the items.
    pub keys: Vec<u8>,
    /// The observations.
    pub items: Vec<Item>,
}

impl Batch {
    /// The key of `item`.
    #[inline]
    pub fn key(&self, item: &Item) -> &[u8] {
        let start = item.key_start as usize;
        self.keys
            .get(start..start + item.key_len as usize)
            .unwrap_or(&[])
    }
}

/// What a request contained, for the response and self-telemetry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Spans in the request.
    pub spans: u64,
    /// Spans rejected because of an invalid trace id.
    pub bad_trace_id: u64,
    /// Spans rejected because of an invalid span id.
    pub bad_span_id: u64,
    /// Entry spans turned into observations.
    pub entries: u64,
    /// Entry spans whose end was before their start.
    pub invalid_durations: u64,
}

impl Tally {
    /// Spans rejected for any reason.
    pub fn rejected(&self) -> u64 {
        self.bad_trace_id + self.bad_span_id
    }

    /// The `partial_success.error_message`, or `None` when nothing was rejected.
    pub fn error_message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.bad_trace_id > 0 {
            parts.push(format!(
                "{} spans rejected: {}",
                self.bad_trace_id,
                Reject::TraceId.message()
            ));
        }
        if self.bad_span_id > 0 {
            parts.push(format!(
                "{} spans rejected: {}",
                self.bad_span_id,
                Reject::SpanId.message()
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The scanner sink that builds per-shard batches.
pub struct Collector<'a, 'c> {
    classifier: &'c Classifier,
    resource: Option<ResourceValues<'a>>,
    scratch: Vec<u8>,
    /// One batch per shard.
    pub batches: Vec<Batch>,
    /// Counts for the response.
    pub tally: Tally,
}

impl<'a, 'c> Collector<'a, 'c> {
    /// A collector for `shards` shards.
    pub fn new(classifier: &'c Classifier, shards: usize) -> Self {
        Self {
            classifier,
            resource: None,
            scratch: Vec::with_capacity(128),
            batches: (0..shards.max(1)).map(|_| Batch::default()).collect(),
            tally: Tally::default(),
        }
    }
}

/// The shard that owns a key hash.
#[inline]
pub fn shard_of(hash: u64, shards: usize) -> usize {
    // Multiply-shift: uses the high bits, which foldhash mixes well, and avoids a division.
    ((u128::from(hash >> 32) * shards as u128) >> 32) as usize
}

impl<'a> SpanSink<'a> for Collector<'a, '_> {
    fn resource(&mut self, resource: ResourceView<'a>) {
        self.resource = Some(self.classifier.resource(resource.attributes));
    }

    fn span(&mut self, span: SpanView<'a>) {
        self.tally.spans += 1;
        let resource = match &self.resource {
            Some(r) => r,
            None => {
                let r = self
                    .classifier
                    .resource(crate::otlp::scan::AttrsRef::empty());
                self.resource.insert(r)
            }
        };
        self.scratch.clear();
        match self.classifier.classify(&span, resource, &mut self.scratch) {
            Verdict::NotEntry => {}
            Verdict::Rejected(Reject::TraceId) => self.tally.bad_trace_id += 1,
            Verdict::Rejected(Reject::SpanId) => self.tally.bad_span_id += 1,
            Verdict::Entry(obs) => {
                self.tally.entries += 1;
                self.tally.invalid_durations += u64::from(obs.invalid_duration);
                let hash = key::hash_key(&self.scratch);
                let n = self.batches.len();
                if let Some(batch) = self.batches.get_mut(shard_of(hash, n)) {
                    let key_start = batch.keys.len() as u32;
                    batch.keys.extend_from_slice(&self.scratch);
                    batch.items.push(Item {
                        hash,
                        key_start,
                        key_len: self.scratch.len() as u32,
                        obs,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn shard_of_stays_in_range_and_spreads() {
        let mut seen = [0usize; 4];
        for i in 0..10_000u64 {
            let h = crate::sli::key::hash_key(&i.to_le_bytes());
            let s = shard_of(h, 4);
            assert!(s < 4);
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 2000), "{seen:?}");
        assert_eq!(shard_of(u64::MAX, 1), 0);
    }
}
