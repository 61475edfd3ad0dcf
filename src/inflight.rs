//! Admission by bytes in flight: request bodies being read, decompressed, converted and
//! scanned hold a reservation against one pool (half the memory budget), taken before the
//! memory is, so a burst of large requests is refused (retryably) instead of growing the
//! process past its budget. The resident-size check in [`crate::memory`] reacts after the
//! fact, 10 times a second; this pool acts per request, before allocating.
//!
//! A request alone in the pool is always admitted, whatever its size, so a budget smaller
//! than the largest accepted request slows large requests down to one at a time instead of
//! refusing them for ever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The pool.
#[derive(Debug)]
pub struct InFlight {
    capacity: u64,
    used: AtomicU64,
}

/// Bytes held in the pool until dropped.
#[derive(Debug)]
pub struct Reservation {
    pool: Arc<InFlight>,
    bytes: u64,
}

impl InFlight {
    /// A pool of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        InFlight {
            capacity,
            used: AtomicU64::new(0),
        }
    }

    /// The pool's size, bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more when they fit, or when the pool holds nothing but `own` (the
    /// caller's earlier reservation).
    fn take(&self, bytes: u64, own: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(bytes);
                (after <= self.capacity || used == own).then_some(after)
            })
            .is_ok()
    }

    /// Reserves `bytes`; `None` when they do not fit beside what is in flight.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.take(bytes, 0).then(|| Reservation {
            pool: Arc::clone(self),
            bytes,
        })
    }
}

impl Reservation {
    /// Grows the reservation to `bytes` (no-op when it holds that much); `false` when the
    /// growth does not fit beside what others hold.
    pub fn grow_to(&mut self, bytes: u64) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let more = bytes - self.bytes;
        if !self.pool.take(more, self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    /// Shrinks the reservation to `bytes` (no-op when it holds less).
    pub fn shrink_to(&mut self, bytes: u64) {
        if bytes < self.bytes {
            self.pool
                .used
                .fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_pool_and_return_on_drop() {
        let pool = Arc::new(InFlight::new(100));
        let a = pool.try_reserve(60);
        assert!(a.is_some());
        assert!(pool.try_reserve(50).is_none(), "60 + 50 > 100");
        let b = pool.try_reserve(40);
        assert!(b.is_some());
        assert_eq!(pool.used(), 100);
        drop(a);
        assert_eq!(pool.used(), 40);
        assert!(pool.try_reserve(60).is_some());
        drop(b);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn a_request_alone_is_admitted_whatever_its_size() {
        let pool = Arc::new(InFlight::new(100));
        let mut big = pool.try_reserve(500).expect("alone: admitted");
        assert!(
            pool.try_reserve(1).is_none(),
            "the pool is over while it runs"
        );
        assert!(big.grow_to(900), "still alone: may grow");
        assert_eq!(pool.used(), 900);
        drop(big);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn growth_is_refused_beside_others_and_shrinking_returns_bytes() {
        let pool = Arc::new(InFlight::new(100));
        let mut a = pool.try_reserve(30).expect("fits");
        let _b = pool.try_reserve(30).expect("fits");
        assert!(a.grow_to(70), "30 + 40 more + 30 = 100 fits");
        assert!(
            !a.grow_to(71),
            "one byte over, with another request in the pool"
        );
        assert_eq!(a.bytes(), 70);
        a.shrink_to(10);
        assert_eq!(pool.used(), 40);
        assert!(a.grow_to(10), "no-op");
        a.shrink_to(20);
        assert_eq!(a.bytes(), 10, "shrinking never grows");
    }
}
