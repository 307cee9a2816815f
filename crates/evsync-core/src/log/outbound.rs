//! Outbound backpressure: how many bytes each open connection has queued
//! and not yet written to its socket.
//!
//! The protocol layer reports the exact bytes of everything it queues (the
//! log service's deliveries and commits as it encodes them, its own
//! messages such as pongs) and the adapter reports what the socket wrote.
//! The log service reads the difference to pace catch-up (soft limit) and
//! to close a consumer that stopped reading (hard limit).

use super::{ConnId, ConnMap};

/// The open connections and their unsent bytes.
#[derive(Debug, Default)]
pub(super) struct Outbound {
    queued: ConnMap<usize>,
}

impl Outbound {
    pub fn open(&mut self, conn: ConnId) {
        self.queued.entry(conn).or_insert(0);
    }

    /// Forgets `conn`; false if it was not open.
    pub fn forget(&mut self, conn: ConnId) -> bool {
        self.queued.remove(&conn).is_some()
    }

    pub fn is_open(&self, conn: ConnId) -> bool {
        self.queued.contains_key(&conn)
    }

    pub fn count(&self) -> usize {
        self.queued.len()
    }

    /// Open connections in id order (deterministic closes).
    pub fn conns_sorted(&self) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self.queued.keys().copied().collect();
        conns.sort();
        conns
    }

    /// Bytes queued for `conn` and not yet reported written.
    pub fn queued(&self, conn: ConnId) -> usize {
        self.queued.get(&conn).copied().unwrap_or(0)
    }

    /// Adds `bytes` to `conn`'s queue; returns the new total, or `None` if
    /// the connection is not open.
    pub fn add(&mut self, conn: ConnId, bytes: usize) -> Option<usize> {
        let queued = self.queued.get_mut(&conn)?;
        *queued += bytes;
        Some(*queued)
    }

    /// `bytes` were written; returns what is still queued.
    pub fn sent(&mut self, conn: ConnId, bytes: usize) -> Option<usize> {
        let queued = self.queued.get_mut(&conn)?;
        *queued = queued.saturating_sub(bytes);
        Some(*queued)
    }
}
