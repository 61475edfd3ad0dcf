//! The counters of one delivery queue (sent, retried, dropped by [`DropReason`], queued,
//! spooled), read by the self-metrics, and the one place that counts payloads into and out
//! of memory ([`Stats::reserve`], [`Stats::release`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Why payloads were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full.
    QueueFull = 0,
    /// The upstream refused it for good.
    Rejected = 1,
    /// Retried until `max_elapsed`.
    RetriesExhausted = 2,
    /// Still queued when shutdown ended.
    Shutdown = 3,
    /// The oldest spooled data made room for newer (`spool.max_bytes`).
    SpoolFull = 4,
    /// A spooled record could not be written or read back (disk error, torn or corrupt).
    SpoolError = 5,
}

impl DropReason {
    /// All reasons.
    pub const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Shutdown,
        DropReason::SpoolFull,
        DropReason::SpoolError,
    ];
    /// Label value.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::SpoolFull => "spool_full",
            DropReason::SpoolError => "spool_error",
        }
    }
}

/// Counters of one upstream.
#[derive(Debug, Default)]
pub struct Stats {
    /// Payloads delivered.
    pub sent_requests: AtomicU64,
    /// Items delivered.
    pub sent_items: AtomicU64,
    /// Failed attempts (each retry follows one).
    pub failed_attempts: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
    /// Items dropped, by [`DropReason`].
    pub dropped_items: [AtomicU64; 6],
    /// Payloads waiting or being sent (in memory).
    pub queued: AtomicU64,
    /// Bytes of the payloads waiting or being sent (in memory).
    pub queued_bytes: AtomicU64,
    /// Unix seconds of the last delivery (0: never).
    pub last_success_unix: AtomicU64,
    /// Items written to the spool.
    pub spooled_items: AtomicU64,
    /// Items in the spool, not yet delivered.
    pub spool_items: AtomicU64,
    /// Bytes of the spool's segment files.
    pub spool_bytes: AtomicU64,
}

impl Stats {
    pub(super) fn drop_items(&self, reason: DropReason, items: u64) {
        self.dropped_items[reason as usize].fetch_add(items, Ordering::Relaxed);
    }

    /// Items dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped_items[reason as usize].load(Ordering::Relaxed)
    }

    pub(super) fn delivered(&self, items: u64) {
        self.sent_requests.fetch_add(1, Ordering::Relaxed);
        self.sent_items.fetch_add(items, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_success_unix.store(now, Ordering::Relaxed);
    }

    /// Counts one payload of `len` bytes into memory if the byte limit `max` allows it
    /// (an empty queue takes any one payload, however large); `false`, counting nothing,
    /// otherwise.
    pub(super) fn reserve(&self, len: u64, max: u64) -> bool {
        let reserved = self
            .queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + len <= max || b == 0).then_some(b + len)
            })
            .is_ok();
        if reserved {
            // Counted before the payload is queued: a worker may take it (and release it)
            // at once.
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        reserved
    }

    /// `requests` payloads of `bytes` in all left memory (sent, spooled, dropped or not
    /// queued after all).
    pub(super) fn release(&self, requests: u64, bytes: u64) {
        self.queued.fetch_sub(requests, Ordering::Relaxed);
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}
