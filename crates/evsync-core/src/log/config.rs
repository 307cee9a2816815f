//! Limits and tunables of the log service, with production defaults.

/// Log service configuration. Every limit exists so that one hostile or
/// slow peer costs bounded memory and never disturbs the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// When a connection's unsent outbound bytes exceed this, deliveries
    /// stop being queued for it; it catches up from storage once drained.
    pub outbound_soft_limit: usize,
    /// When a connection's unsent outbound bytes exceed this, it is closed
    /// ("consumer too slow"); its replica resumes by sequence on reconnect.
    pub outbound_hard_limit: usize,
    /// Live deliveries for a subscriber whose connection has more than this
    /// many bytes queued and not yet reported sent are held back and sent
    /// together once it drains (one message per socket round trip instead
    /// of one per commit). 0: hold back whenever anything is unsent.
    pub live_coalesce_bytes: usize,
    /// Entries per catch-up read.
    pub read_max_entries: usize,
    /// Bytes per catch-up read (at least one entry is always read).
    pub read_max_bytes: usize,
    /// Most entries merged into one append transaction.
    pub append_max_entries: usize,
    /// Most bytes merged into one append transaction.
    pub append_max_bytes: usize,
    /// The adapter's storage can take an append into the transaction of the
    /// one in flight while that one still inserts, and reports it with
    /// `handle_append_joined`: the service then sends the next group
    /// without waiting for the commit (at most two appends in flight).
    /// `false`: one append in flight, the next waits for its answer.
    pub join_open_appends: bool,
    /// Subscriptions (logs) one connection may hold.
    pub max_subscriptions_per_connection: usize,
    /// Bytes of writes one connection may have waiting for their commit; a
    /// peer that floods writes faster than storage commits is closed.
    pub max_unacked_write_bytes: usize,
    /// Newest entries kept in memory per log, so that a replica reconnecting
    /// near the head catches up without a storage read.
    pub tail_cache_entries: usize,
    /// Bytes of the per-log tail cache.
    pub tail_cache_bytes: usize,
    /// Logs whose head and tail are remembered; past this, logs without a
    /// subscriber are forgotten (they are re-read from storage when needed).
    pub max_cached_logs: usize,
    /// The tenant's write rate limit (see [`super::quota`]); `None`: none.
    pub write_rate: Option<super::WriteRate>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            outbound_soft_limit: 4 * 1024 * 1024,
            outbound_hard_limit: 64 * 1024 * 1024,
            live_coalesce_bytes: 0,
            read_max_entries: 4096,
            // As large as one Changes message (`max_changes_message_bytes`):
            // a catch-up page is then one message, which Effect's client
            // handles in one piece; two messages of ~1.5 MB each can be
            // decrypted and handled in either order by it (interop S3).
            read_max_bytes: 4 * 1024 * 1024,
            append_max_entries: 10_000,
            append_max_bytes: 4 * 1024 * 1024,
            join_open_appends: false,
            max_subscriptions_per_connection: 1024,
            max_unacked_write_bytes: 64 * 1024 * 1024,
            tail_cache_entries: 1024,
            tail_cache_bytes: 256 * 1024,
            max_cached_logs: 4096,
            write_rate: None,
        }
    }
}
