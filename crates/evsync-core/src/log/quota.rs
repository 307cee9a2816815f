//! A tenant's write rate limit: a token bucket over the bytes of its
//! entries, refilled with time.
//!
//! Why throttle rather than refuse: a replica that writes too fast is
//! usually a legitimate burst (an app coming back online with a day of
//! offline work). Holding its appends back until the bucket refills slows
//! its Acks down, which Effect's client already waits for; nothing is lost
//! and nobody is disconnected. A writer that floods anyway is closed by
//! [`LogConfig::max_unacked_write_bytes`](super::LogConfig), as before.
//! While the tenant is a second or more behind, new connections are
//! refused with `429` and a `Retry-After` of the time the debt takes to pay
//! off (the adapter asks [`WriteQuota::retry_after_secs`]).

use crate::time::Timestamp;
use std::sync::{Arc, Mutex, MutexGuard};

/// The rate: `bytes_per_sec` on average, `burst_bytes` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRate {
    pub bytes_per_sec: u64,
    pub burst_bytes: u64,
}

/// The bucket. Its balance is in milli-bytes (integer arithmetic, exact at
/// millisecond steps) and may go negative: an append may take more than
/// the bucket holds (one big entry must pass eventually), the next waits
/// until the debt is paid.
#[derive(Debug)]
pub(super) struct WriteQuota {
    rate: WriteRate,
    balance_milli: i128,
    updated_at: Option<Timestamp>,
}

impl WriteQuota {
    pub fn new(rate: WriteRate) -> Self {
        WriteQuota {
            rate,
            balance_milli: i128::from(rate.burst_bytes) * 1000,
            updated_at: None,
        }
    }

    fn refill(&mut self, now: Timestamp) {
        let since = self.updated_at.map_or(0, |at| now.0.saturating_sub(at.0));
        let cap = i128::from(self.rate.burst_bytes) * 1000;
        self.balance_milli =
            (self.balance_milli + i128::from(since) * i128::from(self.rate.bytes_per_sec)).min(cap);
        if self.updated_at.is_none_or(|at| now.0 > at.0) {
            self.updated_at = Some(now);
        }
    }

    /// Whether an append may start at `now` (the bucket is not in debt).
    pub fn ready(&mut self, now: Timestamp) -> bool {
        self.refill(now);
        self.balance_milli >= 0
    }

    /// Takes `bytes` from the bucket (after [`WriteQuota::ready`]).
    pub fn charge(&mut self, bytes: usize) {
        self.balance_milli -= i128::from(bytes as u64) * 1000;
    }

    /// Gives back what [`WriteQuota::charge`] took for an append that
    /// storage handed back unstarted (it is charged again when it goes).
    pub fn refund(&mut self, bytes: usize) {
        self.balance_milli += i128::from(bytes as u64) * 1000;
    }

    /// When the debt is paid, if the bucket is in debt.
    pub fn ready_at(&self) -> Option<Timestamp> {
        if self.balance_milli >= 0 {
            return None;
        }
        let at = self.updated_at.unwrap_or(Timestamp(0));
        let rate = i128::from(self.rate.bytes_per_sec.max(1));
        let wait_ms = (-self.balance_milli + rate - 1) / rate;
        Some(Timestamp(at.0.saturating_add(wait_ms as u64)))
    }

    /// Whole seconds until the debt is paid, or `None` when the tenant is
    /// less than a second behind: a tenant writing at about its rate is in
    /// small debt most of the time, and that alone must not turn replicas
    /// away.
    pub fn retry_after_secs(&mut self, now: Timestamp) -> Option<u64> {
        self.refill(now);
        let wait_ms = self.ready_at()?.0.saturating_sub(now.0);
        (wait_ms >= 1000).then(|| wait_ms.div_ceil(1000))
    }
}

/// A tenant's one bucket, shared by the log services of its protocols (v3
/// and v4): the rate is the tenant's, whichever protocol writes. A mutex
/// because an actor moves between threads; the services of one tenant
/// never contend for it.
#[derive(Clone, Debug)]
pub struct SharedWriteQuota(Arc<Mutex<WriteQuota>>);

impl SharedWriteQuota {
    pub(super) fn new(rate: WriteRate) -> Self {
        SharedWriteQuota(Arc::new(Mutex::new(WriteQuota::new(rate))))
    }

    /// True when both are the same bucket.
    pub fn is_shared_with(&self, other: &SharedWriteQuota) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The bucket (a panic elsewhere cannot leave it inconsistent: every
    /// change is one assignment).
    pub(super) fn lock(&self) -> MutexGuard<'_, WriteQuota> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_with_time_and_allows_debt() {
        let mut q = WriteQuota::new(WriteRate {
            bytes_per_sec: 1000,
            burst_bytes: 2000,
        });
        assert!(q.ready(Timestamp(0)));
        q.charge(1500);
        assert!(q.ready(Timestamp(0)), "500 left");
        q.charge(3500); // one big write: 3,000 in debt
        assert!(!q.ready(Timestamp(0)));
        assert_eq!(q.ready_at(), Some(Timestamp(3000)));
        assert_eq!(q.retry_after_secs(Timestamp(500)), Some(3));
        assert!(!q.ready(Timestamp(2999)));
        assert_eq!(
            q.retry_after_secs(Timestamp(2001)),
            None,
            "under a second behind"
        );
        assert!(q.ready(Timestamp(3000)));
        assert_eq!(q.retry_after_secs(Timestamp(3000)), None);
        // never above the burst
        assert!(q.ready(Timestamp(1_000_000)));
        q.charge(2001);
        assert!(!q.ready(Timestamp(1_000_000)));
    }
}
