//! The idle-socket timeout (`EngineConfig::idle_socket_timeout_ms` for v3,
//! `SessionConfig::idle_socket_timeout_ms` for v4, one setting:
//! `SYNC_IDLE_SOCKET_TIMEOUT`): a connection from which no frame arrived
//! for that long is closed with 1000. One clock for both protocol layers.
//!
//! Why: the agent SDK's `SyncService` opens a new socket every
//! `syncInterval` without closing the previous one, so a long-running
//! replica accumulates open sockets; their client still pings on the socket
//! it uses, and the abandoned ones go quiet. Only for clients with ping
//! enabled: Effect v3's client never reconnects, so a `disablePing: true`
//! client that merely has nothing to write would be cut off for good.
//! Effect v4's client pings every few seconds and reconnects by itself, so
//! for it the timeout only ever closes sockets nobody uses.
//!
//! Cost: a frame only overwrites its connection's last-heard time (O(1));
//! the deadlines live in an ordered set with one entry per connection, which
//! may be earlier than the true deadline (the connection was heard since).
//! [`IdleClock::expired`] re-queues such an entry at its true deadline, so
//! the timer fires at most once per connection per timeout period beyond
//! the real expiries, and [`IdleClock::next_deadline`] is the first entry,
//! without scanning connections.

use crate::log::{ConnId, ConnMap};
use crate::time::Timestamp;
use std::collections::BTreeSet;

/// Last-heard times and the queue of idle deadlines.
#[derive(Debug, Default)]
pub(crate) struct IdleClock {
    /// `None`: off (the default), and every method does nothing.
    timeout_ms: Option<u64>,
    /// Per connection: when its last frame arrived, and the deadline its
    /// entry in `queue` is filed under.
    conns: ConnMap<Heard>,
    queue: BTreeSet<(Timestamp, ConnId)>,
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    last: Timestamp,
    queued: Timestamp,
}

impl IdleClock {
    pub fn new(timeout_ms: Option<u64>) -> Self {
        IdleClock {
            timeout_ms,
            ..IdleClock::default()
        }
    }

    /// The close reason of a connection [`IdleClock::expired`] returned:
    /// `idle: no frame received for N s` (or `ms`).
    pub fn reason(&self) -> String {
        match self.timeout_ms {
            Some(ms) if ms % 1000 == 0 => format!("idle: no frame received for {} s", ms / 1000),
            Some(ms) => format!("idle: no frame received for {ms} ms"),
            None => "idle".to_owned(),
        }
    }

    /// Starts `conn`'s clock as if a frame arrived at `now`.
    pub fn open(&mut self, conn: ConnId, now: Timestamp) {
        let Some(timeout) = self.timeout_ms else {
            return;
        };
        self.forget(conn);
        let queued = now.plus_millis(timeout);
        self.conns.insert(conn, Heard { last: now, queued });
        self.queue.insert((queued, conn));
    }

    /// A frame arrived on `conn` at `now`.
    pub fn heard(&mut self, conn: ConnId, now: Timestamp) {
        if let Some(heard) = self.conns.get_mut(&conn) {
            heard.last = heard.last.max(now);
        }
    }

    /// `conn` is gone.
    pub fn forget(&mut self, conn: ConnId) {
        if let Some(heard) = self.conns.remove(&conn) {
            self.queue.remove(&(heard.queued, conn));
        }
    }

    /// When `conn` was last heard from, if tracked.
    pub fn last_heard(&self, conn: ConnId) -> Option<Timestamp> {
        self.conns.get(&conn).map(|heard| heard.last)
    }

    /// The earliest time [`IdleClock::expired`] may have work (possibly
    /// early, see the module docs).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The connections silent for the whole timeout at `now`, in deadline
    /// order; they are forgotten here. Entries filed too early are moved to
    /// their true deadline.
    pub fn expired(&mut self, now: Timestamp) -> Vec<ConnId> {
        let Some(timeout) = self.timeout_ms else {
            return Vec::new();
        };
        let mut expired = Vec::new();
        while let Some(&(at, conn)) = self.queue.first() {
            if at > now {
                break;
            }
            self.queue.pop_first();
            let Some(heard) = self.conns.get_mut(&conn) else {
                continue;
            };
            let due = heard.last.plus_millis(timeout);
            if due <= now {
                self.conns.remove(&conn);
                expired.push(conn);
            } else {
                heard.queued = due;
                self.queue.insert((due, conn));
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default() {
        let mut clock = IdleClock::default();
        clock.open(ConnId(1), Timestamp(0));
        assert_eq!(clock.next_deadline(), None);
        assert!(clock.expired(Timestamp(u64::MAX)).is_empty());
    }

    #[test]
    fn a_frame_postpones_the_deadline_without_touching_the_queue() {
        let mut clock = IdleClock::new(Some(1000));
        let (a, b) = (ConnId(1), ConnId(2));
        clock.open(a, Timestamp(0));
        clock.open(b, Timestamp(10));
        clock.heard(a, Timestamp(500));
        assert_eq!(clock.next_deadline(), Some(Timestamp(1000)), "filed early");
        assert!(clock.expired(Timestamp(1000)).is_empty(), "a was heard");
        assert_eq!(clock.next_deadline(), Some(Timestamp(1010)));
        assert_eq!(clock.expired(Timestamp(1010)), vec![b]);
        assert_eq!(clock.next_deadline(), Some(Timestamp(1500)));
        assert_eq!(clock.expired(Timestamp(2000)), vec![a]);
        assert_eq!(clock.next_deadline(), None);
    }

    #[test]
    fn forgotten_connections_leave_the_queue() {
        let mut clock = IdleClock::new(Some(1000));
        clock.open(ConnId(1), Timestamp(0));
        clock.forget(ConnId(1));
        clock.heard(ConnId(1), Timestamp(5));
        assert_eq!(clock.next_deadline(), None);
        assert!(clock.expired(Timestamp(5000)).is_empty());
    }
}
