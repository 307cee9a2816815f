//! Limits of the v4 session layer, with production defaults.

use crate::chunk::ChunkLimits;
use crate::log::LogConfig;

/// Configuration of a v4 engine. Every limit exists so that one hostile or
/// broken peer costs bounded memory and never disturbs the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The log service under the session layer.
    pub log: LogConfig,
    /// Reassembly of `WriteChunked` pieces, per connection (as for v3).
    pub chunks: ChunkLimits,
    /// Largest SchemaBinary frame accepted from a client. Effect's client
    /// sends at most one 512,000-byte piece per request, so a frame is a
    /// little over that; a larger declared length closes the connection
    /// before its bytes are buffered.
    pub max_frame_bytes: usize,
    /// Most encrypted-batch bytes packed into one Changes value. Effect's
    /// client refuses frames over 16 MiB and its own server sends a whole
    /// backlog as one; evsync sends values of about this size, one Chunk at
    /// a time, so any backlog syncs.
    pub changes_value_bytes: usize,
    /// Write RPCs one connection may have awaiting their commit.
    pub max_pending_writes: usize,
    /// Identities one connection may authenticate.
    pub max_identities_per_connection: usize,
    /// Close a connection with 1000 once no frame arrived from it for this
    /// long (`SYNC_IDLE_SOCKET_TIMEOUT`, shared with v3; `None`: off, the
    /// default). Effect's v4 client pings every few seconds and reconnects
    /// after a close, so only abandoned sockets reach it.
    pub idle_socket_timeout_ms: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            log: LogConfig::default(),
            chunks: ChunkLimits::default(),
            max_frame_bytes: 2 * 1024 * 1024,
            changes_value_bytes: 512_000,
            max_pending_writes: 64,
            max_identities_per_connection: 64,
            idle_socket_timeout_ms: None,
        }
    }
}
