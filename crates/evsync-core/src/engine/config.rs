//! Limits and tunables of the engine, with production defaults.

use crate::chunk::ChunkLimits;

/// Engine configuration. Every limit exists so that one hostile or slow peer
/// costs bounded memory and never disturbs the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Reassembly limits for incoming `ChunkedMessage` parts, per connection.
    pub chunks: ChunkLimits,
    /// Largest single frame accepted (after WebSocket reassembly).
    pub max_frame_bytes: usize,
    /// When a connection's unsent outbound bytes exceed this, live `Changes`
    /// stop being queued for it; it catches up from storage once drained.
    pub outbound_soft_limit: usize,
    /// When a connection's unsent outbound bytes exceed this, it is closed
    /// ("consumer too slow"); its replica resumes by sequence on reconnect.
    pub outbound_hard_limit: usize,
    /// Entries per catch-up read.
    pub read_max_entries: usize,
    /// Bytes per catch-up read (at least one entry is always read).
    pub read_max_bytes: usize,
    /// Most entries merged into one append transaction.
    pub append_max_entries: usize,
    /// Most bytes merged into one append transaction.
    pub append_max_bytes: usize,
    /// Subscriptions (publicKeys) one connection may hold.
    pub max_subscriptions_per_connection: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunks: ChunkLimits::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            outbound_soft_limit: 4 * 1024 * 1024,
            outbound_hard_limit: 64 * 1024 * 1024,
            read_max_entries: 4096,
            read_max_bytes: 2 * 1024 * 1024,
            append_max_entries: 10_000,
            append_max_bytes: 32 * 1024 * 1024,
            max_subscriptions_per_connection: 1024,
        }
    }
}
