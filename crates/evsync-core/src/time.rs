//! Time as the caller tells it.

/// Milliseconds since an epoch of the caller's choosing (process start,
/// Unix epoch, ...). The core never reads a clock: `std::time::Instant` is
/// not available on `wasm32-unknown-unknown`, and tests pass time explicitly.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This time plus `millis`, saturating.
    pub fn plus_millis(self, millis: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
