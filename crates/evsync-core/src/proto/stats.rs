//! What a protocol engine did, for operators: the log service's counters
//! ([`LogStats`]) plus the session layer's (frames and bytes in and out,
//! closes by kind). Taken by the adapter after each batch of inputs with
//! the engine's `take_stats` and added to its metrics.

use super::close::CloseKind;
use crate::log::LogStats;

/// Counters since the last take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub log: LogStats,
    /// Frames received (each WebSocket message, chunk parts included).
    pub frames_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Payload bytes the adapter reported written to sockets.
    pub bytes_sent: u64,
    /// Connections that ended, by [`CloseKind::index`].
    pub closes: [u64; CloseKind::ALL.len()],
}

impl EngineStats {
    /// Counts one ended connection.
    pub fn closed(&mut self, kind: CloseKind) {
        self.closes[kind.index()] += 1;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &EngineStats) {
        self.log.add(&other.log);
        self.frames_received += other.frames_received;
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        for (mine, theirs) in self.closes.iter_mut().zip(other.closes) {
            *mine += theirs;
        }
    }
}
