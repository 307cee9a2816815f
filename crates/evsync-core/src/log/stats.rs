//! What a log service did, counted for operators (metrics, dashboards).
//!
//! Plain counters bumped where the work happens (a few additions per
//! commit or read, none per subscriber beyond one per delivery) and taken
//! by the adapter after each batch of inputs ([`super::LogService::take_stats`]),
//! which adds them to whatever metrics it exports. The service owns no
//! metrics library and reads no clock: timings are the adapter's.

/// Counters since the last take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Commits that succeeded (one storage transaction each).
    pub commits: u64,
    /// Entries stored by those commits (duplicates not counted).
    pub entries_appended: u64,
    /// Storage reads issued to catch a subscriber up (not served from the
    /// tail cache).
    pub catchup_reads: u64,
    /// Storage requests (appends or reads) that failed.
    pub storage_errors: u64,
    /// Live deliveries of fresh commits to subscribers.
    pub live_deliveries: u64,
}

impl LogStats {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &LogStats) {
        self.commits += other.commits;
        self.entries_appended += other.entries_appended;
        self.catchup_reads += other.catchup_reads;
        self.storage_errors += other.storage_errors;
        self.live_deliveries += other.live_deliveries;
    }
}
