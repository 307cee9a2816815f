//! Who is subscribed to which log, from which sequence, and in what state
//! of the catch-up → live hand-over each subscription is.

use super::{ConnId, ConnMap};
use crate::hash::HashMap;
use crate::storage::RequestId;
use crate::wire::Sequence;
use std::collections::BTreeMap;

/// One subscription of a connection to a log.
#[derive(Debug)]
pub(super) struct Sub {
    /// The next sequence this subscriber must receive; everything before it
    /// (from its start sequence) has been delivered to it, without a gap.
    pub next_seq: Sequence,
    pub state: SubState,
    /// When it was made, among all subscriptions of this service: a log's
    /// subscribers are served in this order.
    pub order: u64,
    /// The last sequence a read of this catch-up returned, so that an empty
    /// read right after it proves where the head is.
    pub confirmed_through: Option<Sequence>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SubState {
    /// Caught up: new commits are delivered to it as they happen.
    Live,
    /// A catch-up read is in flight.
    Reading(RequestId),
    /// Its outbound queue is too full; it resumes catch-up once drained.
    Stalled,
}

/// The subscribers of one log: their subscriptions and the order they
/// subscribed in. Effect's own server delivers a commit in that order, and
/// clients depend on it: a replica that reconnects without closing its old
/// socket (the agent SDK's SyncService) has two subscriptions, and the
/// socket that gets an entry first decides whether the replica applies it.
#[derive(Debug, Default)]
pub(super) struct LogSubscribers {
    pub order: BTreeMap<u64, ConnId>,
    pub subs: ConnMap<Sub>,
}

/// Every subscription, indexed by log (whom a commit goes to: one lookup
/// of the log's name per commit, then one of each subscriber's id) and by
/// connection (what a connection holds).
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    by_log: HashMap<String, LogSubscribers>,
    /// The logs each connection subscribes to (few, usually one).
    by_conn: ConnMap<Vec<String>>,
    next_order: u64,
    /// Catch-up reads in flight: which subscription each one serves.
    reads: HashMap<RequestId, (ConnId, String)>,
}

impl Subscriptions {
    /// Logs `conn` subscribes to.
    pub fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, Vec::len)
    }

    pub fn has(&self, conn: ConnId, log: &str) -> bool {
        self.get(conn, log).is_some()
    }

    pub fn get(&self, conn: ConnId, log: &str) -> Option<&Sub> {
        self.by_log.get(log)?.subs.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId, log: &str) -> Option<&mut Sub> {
        self.by_log.get_mut(log)?.subs.get_mut(&conn)
    }

    /// The subscribers of `log`, to serve a commit in one pass.
    pub fn of_log_mut(&mut self, log: &str) -> Option<&mut LogSubscribers> {
        self.by_log.get_mut(log)
    }

    /// Adds or replaces `conn`'s subscription to `log`, starting (stalled,
    /// to be caught up) at `next_seq`. A replaced subscription moves to the
    /// end of the log's order, as a new subscription does in Effect's server.
    pub fn insert(&mut self, conn: ConnId, log: &str, next_seq: Sequence) {
        let order = self.next_order;
        self.next_order += 1;
        let subscribers = self.by_log.entry(log.to_string()).or_default();
        let sub = Sub {
            next_seq,
            state: SubState::Stalled,
            order,
            confirmed_through: None,
        };
        match subscribers.subs.insert(conn, sub) {
            Some(old) => {
                subscribers.order.remove(&old.order);
            }
            None => self.by_conn.entry(conn).or_default().push(log.to_string()),
        }
        subscribers.order.insert(order, conn);
    }

    pub fn remove(&mut self, conn: ConnId, log: &str) {
        if self.unlink(conn, log)
            && let Some(logs) = self.by_conn.get_mut(&conn)
        {
            logs.retain(|l| l != log);
        }
    }

    /// Forgets every subscription of `conn`.
    pub fn forget(&mut self, conn: ConnId) {
        for log in self.by_conn.remove(&conn).unwrap_or_default() {
            self.unlink(conn, &log);
        }
    }

    /// Removes `conn` from `log`'s subscribers; false if it was not one.
    fn unlink(&mut self, conn: ConnId, log: &str) -> bool {
        let Some(subscribers) = self.by_log.get_mut(log) else {
            return false;
        };
        let Some(sub) = subscribers.subs.remove(&conn) else {
            return false;
        };
        subscribers.order.remove(&sub.order);
        if subscribers.subs.is_empty() {
            self.by_log.remove(log);
        }
        true
    }

    /// Subscribers of `log` in delivery order.
    pub fn subscribers(&self, log: &str) -> Vec<ConnId> {
        self.by_log
            .get(log)
            .map(|subscribers| subscribers.order.values().copied().collect())
            .unwrap_or_default()
    }

    pub fn has_subscribers(&self, log: &str) -> bool {
        self.by_log.contains_key(log)
    }

    /// `conn`'s logs with the next sequence each is owed, sorted.
    pub fn positions(&self, conn: ConnId) -> Vec<(String, Sequence)> {
        let mut positions: Vec<(String, Sequence)> = self
            .logs_of(conn)
            .filter_map(|log| Some((log.clone(), self.get(conn, log)?.next_seq)))
            .collect();
        positions.sort();
        positions
    }

    /// `conn`'s stalled subscriptions, sorted by log.
    pub fn stalled(&self, conn: ConnId) -> Vec<String> {
        let mut stalled: Vec<String> = self
            .logs_of(conn)
            .filter(|log| {
                self.get(conn, log)
                    .is_some_and(|sub| sub.state == SubState::Stalled)
            })
            .cloned()
            .collect();
        stalled.sort();
        stalled
    }

    fn logs_of(&self, conn: ConnId) -> impl Iterator<Item = &String> {
        self.by_conn.get(&conn).into_iter().flatten()
    }

    /// Records that read `id` serves `conn`'s subscription to `log`.
    pub fn start_read(&mut self, id: RequestId, conn: ConnId, log: &str) {
        if let Some(sub) = self.get_mut(conn, log) {
            sub.state = SubState::Reading(id);
        }
        self.reads.insert(id, (conn, log.to_string()));
    }

    /// The subscription read `id` was for, if the read is still awaited.
    pub fn finish_read(&mut self, id: RequestId) -> Option<(ConnId, String)> {
        self.reads.remove(&id)
    }

    pub fn reads_in_flight(&self) -> usize {
        self.reads.len()
    }
}
