//! Limits of the v3 session layer, with production defaults; the log
//! service's own limits are nested in [`EngineConfig::log`].

use crate::chunk::ChunkLimits;
use crate::log::LogConfig;

/// Configuration of a v3 [`super::Engine`]. Every limit exists so that one
/// hostile or slow peer costs bounded memory and never disturbs the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Reassembly limits for incoming `ChunkedMessage` parts, per connection.
    pub chunks: ChunkLimits,
    /// Largest single frame accepted (after WebSocket reassembly).
    pub max_frame_bytes: usize,
    /// Most encoded bytes of one `Changes` message. Entries available
    /// together (one read, one commit) go out in one message up to this
    /// size, chunked when over 512,000 bytes, because Effect's client
    /// handles frames concurrently and would let a later, smaller message
    /// overtake an earlier one. Keep it at least `log.read_max_bytes` and
    /// well under clients' reassembly limits.
    pub max_changes_message_bytes: usize,
    /// The log service's limits (writes, subscriptions, cache, backpressure).
    pub log: LogConfig,
    /// Close a socket with 1000 after this long without a frame from it
    /// (`SYNC_IDLE_SOCKET_TIMEOUT`). `None`, the default: never. Only for
    /// clients that ping (see `idle.rs`): Effect v3's client never
    /// reconnects, so a quiet `disablePing: true` client would be cut off.
    pub idle_socket_timeout_ms: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            chunks: ChunkLimits::default(),
            max_frame_bytes: 16 * 1024 * 1024,
            max_changes_message_bytes: 4 * 1024 * 1024,
            log: LogConfig::default(),
            idle_socket_timeout_ms: None,
        }
    }
}
