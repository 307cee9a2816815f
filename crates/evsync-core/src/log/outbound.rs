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
    queued: ConnMap<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    bytes: usize,
    /// Some subscription of the connection may be held back (stalled)
    /// until its queue drains. Set whenever one is; cleared when the
    /// drained queue resumes them. Without it every report of written
    /// bytes would look through the connection's subscriptions, which at
    /// 1,000 subscribers is thousands of lookups per commit for nothing.
    held: bool,
}

impl Outbound {
    pub fn open(&mut self, conn: ConnId) {
        self.queued.entry(conn).or_default();
    }

    /// Marks `conn` as having a held-back subscription.
    pub fn hold(&mut self, conn: ConnId) {
        if let Some(queue) = self.queued.get_mut(&conn) {
            queue.held = true;
        }
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
        self.queued.get(&conn).map_or(0, |queue| queue.bytes)
    }

    /// Adds `bytes` to `conn`'s queue; returns the new total, or `None` if
    /// the connection is not open.
    pub fn add(&mut self, conn: ConnId, bytes: usize) -> Option<usize> {
        let queue = self.queued.get_mut(&conn)?;
        queue.bytes += bytes;
        Some(queue.bytes)
    }

    /// `bytes` were written. Returns true, and forgets the mark, if a
    /// subscription was held back ([`Outbound::hold`]) and the queue is
    /// now at most `resume_at`: the caller resumes them (marking again
    /// those it holds back anew).
    pub fn sent(&mut self, conn: ConnId, bytes: usize, resume_at: usize) -> bool {
        let Some(queue) = self.queued.get_mut(&conn) else {
            return false;
        };
        queue.bytes = queue.bytes.saturating_sub(bytes);
        let resume = queue.held && queue.bytes <= resume_at;
        if resume {
            queue.held = false;
        }
        resume
    }
}
