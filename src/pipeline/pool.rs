//! Batch buffers handed back by the shards for the next requests to fill.
//!
//! A request's batches are built on a receiving thread and applied on shard threads. Made
//! fresh for every request, their vectors were allocated on one thread, grown span by span
//! and freed on another, and the allocator's work for that (growing, freeing across
//! arenas, consolidating) cost more than some of the pipeline's own steps. A shard now
//! gives an applied batch back, emptied but with its memory, and the next request takes
//! it. The pool is bounded in batches and in the memory a kept batch may hold, so an
//! unusually large request's buffers are freed rather than kept.

use super::batch::Batch;
use crossbeam::queue::ArrayQueue;

/// Most memory a batch may hold to be kept for reuse, in bytes.
pub const MAX_KEPT_BATCH_BYTES: usize = 256 << 10;

/// Emptied batches waiting for reuse.
#[derive(Debug)]
pub struct BatchPool {
    free: ArrayQueue<Batch>,
}

impl BatchPool {
    /// A pool keeping at most `batches` batches (at least one).
    pub fn new(batches: usize) -> Self {
        Self {
            free: ArrayQueue::new(batches.max(1)),
        }
    }

    /// An empty batch: one given back earlier when there is one.
    #[inline]
    pub fn take(&self) -> Batch {
        self.free.pop().unwrap_or_default()
    }

    /// Empties `batch` and keeps it for reuse, unless the pool is full or the batch holds
    /// more than [`MAX_KEPT_BATCH_BYTES`] (it is then freed).
    pub fn give(&self, mut batch: Batch) {
        if batch.capacity_bytes() > MAX_KEPT_BATCH_BYTES || self.free.is_full() {
            return;
        }
        batch.clear();
        // Full meanwhile: the batch is dropped, as above.
        let _ = self.free.push(batch);
    }

    /// Batches waiting for reuse.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.free.len()
    }

    /// True when no batch waits for reuse.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completeness::spans::SpanLink;

    fn link() -> SpanLink {
        SpanLink {
            span_id: 1,
            parent: 0,
            service: 0,
            parent_remote: false,
        }
    }

    #[test]
    fn a_batch_given_back_comes_back_empty_with_its_memory() {
        let pool = BatchPool::new(2);
        let mut b = pool.take();
        b.keys.extend_from_slice(b"key");
        b.spans.push(7, link());
        b.services.push("checkout".into());
        let keys = b.keys.capacity();
        pool.give(b);
        assert_eq!(pool.len(), 1);
        let b = pool.take();
        assert!(b.is_empty() && b.keys.is_empty() && b.services.is_empty());
        assert_eq!(b.keys.capacity(), keys);
        assert!(pool.is_empty());
    }

    #[test]
    fn the_pool_is_bounded_in_batches_and_in_bytes() {
        let pool = BatchPool::new(2);
        for _ in 0..3 {
            let mut b = Batch::default();
            b.keys.reserve(16);
            pool.give(b);
        }
        assert_eq!(pool.len(), 2, "the third was freed");
        let pool = BatchPool::new(2);
        let mut big = Batch::default();
        big.keys.reserve(MAX_KEPT_BATCH_BYTES + 1);
        pool.give(big);
        assert!(pool.is_empty(), "too large to keep");
    }
}
