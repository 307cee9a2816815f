//! Subscriptions: `RequestChanges` sends the backlog from the start sequence
//! (from the tail cache or storage reads, paced by the outbound queue) and
//! then hands over to live delivery with no gap, reorder or duplicate.
//!
//! The hand-over rule: a subscription goes live only when its next sequence
//! is past the log's head as this engine knows it. The engine is the log's
//! only writer and learns every commit, so a commit that a read missed is
//! either already reflected in the known head (and read next) or its result
//! arrives later and is pushed live from the subscription's next sequence.

use super::connection::{Sub, SubState};
use super::{ConnId, Engine, close_code, frames};
use crate::storage::{ReadLimit, RequestId, StorageError, StorageOp};
use crate::wire::{RemoteEntry, Sequence};

impl Engine {
    pub(super) fn subscribe(&mut self, conn: ConnId, public_key: String, start: Sequence) {
        let max = self.config.max_subscriptions_per_connection;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.subs.contains_key(&public_key) && c.subs.len() >= max {
            let reason = format!("more than {max} subscriptions on one connection");
            self.close(conn, close_code::POLICY_VIOLATION, reason);
            return;
        }
        // A repeated RequestChanges replaces the subscription, as Effect's
        // server does; a read in flight for the old one is then ignored.
        c.subs.insert(
            public_key.clone(),
            Sub {
                next_seq: start.max(1),
                state: SubState::Stalled,
                confirmed_through: None,
            },
        );
        self.logs
            .entry(public_key.clone())
            .or_default()
            .subscribers
            .insert(conn);
        self.catch_up(conn, &public_key, false);
    }

    pub(super) fn unsubscribe(&mut self, conn: ConnId, public_key: &str) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.subs.remove(public_key);
        }
        if let Some(log) = self.logs.get_mut(public_key) {
            log.subscribers.remove(&conn);
        }
    }

    /// Moves a subscription forward: live if it is past the known head,
    /// else from the tail cache, else with a storage read. Waits (stalled)
    /// while its connection's outbound queue is over the soft limit.
    /// `resuming` is set when a live subscription that was held back
    /// catches up: entries its own connection wrote are then left out when
    /// served from the tail cache, as they are from live `Changes`.
    pub(super) fn catch_up(&mut self, conn: ConnId, public_key: &str, resuming: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let queued = c.queued_bytes;
        let Some(sub) = c.subs.get_mut(public_key) else {
            return;
        };
        if queued > self.config.outbound_soft_limit {
            sub.state = SubState::Stalled;
            return;
        }
        let from = sub.next_seq;
        let log = self.logs.entry(public_key.to_string()).or_default();
        if let Some(head) = log.known_head {
            if from > head {
                sub.state = SubState::Live;
                return;
            }
            let cached = log.frames_from_tail(
                public_key,
                from,
                resuming.then_some(conn),
                self.config.max_changes_message_bytes,
                self.config.tail_cache_bytes,
                &mut self.next_chunk_id,
            );
            if let Some(frames) = cached {
                sub.next_seq = head + 1;
                sub.state = SubState::Live;
                self.send_frames(conn, frames);
                return;
            }
        }
        let limit = ReadLimit {
            max_entries: self.config.read_max_entries,
            max_bytes: self.config.read_max_bytes,
        };
        let op = StorageOp::Read {
            public_key: public_key.to_string(),
            from,
            limit,
        };
        let id = self.storage_request(op);
        if let Some(sub) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.subs.get_mut(public_key))
        {
            sub.state = SubState::Reading(id);
        }
        self.reads.insert(id, (conn, public_key.to_string()));
    }

    pub(super) fn on_read(
        &mut self,
        id: RequestId,
        result: Result<Vec<RemoteEntry>, StorageError>,
    ) {
        let Some((conn, public_key)) = self.reads.remove(&id) else {
            return;
        };
        let Some(sub) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.subs.get_mut(&public_key))
        else {
            return;
        };
        if sub.state != SubState::Reading(id) {
            return;
        }
        let entries = match result {
            Ok(entries) => entries,
            Err(err) => {
                self.close(
                    conn,
                    close_code::INTERNAL_ERROR,
                    format!("storage error while reading changes: {}", err.message),
                );
                return;
            }
        };
        let from = sub.next_seq;
        let entries: Vec<RemoteEntry> =
            entries.into_iter().filter(|e| e.sequence >= from).collect();
        let log = self.logs.entry(public_key.clone()).or_default();
        match entries.last() {
            Some(last) => {
                sub.next_seq = last.sequence + 1;
                sub.confirmed_through = Some(last.sequence);
                log.extend_tail(
                    &entries,
                    None,
                    self.config.tail_cache_entries,
                    self.config.tail_cache_bytes,
                );
            }
            None => {
                // Nothing at or after `from`: if the entry just before it
                // is known to exist, the head is exactly `from - 1`.
                if from <= 1 || sub.confirmed_through == Some(from - 1) {
                    log.observe_head(from - 1);
                }
                if log.known_head.is_none_or(|head| from > head) {
                    sub.state = SubState::Live;
                    return;
                }
            }
        }
        sub.state = SubState::Stalled;
        let frames = frames::changes_frames(
            &public_key,
            &entries,
            self.config.max_changes_message_bytes,
            &mut self.next_chunk_id,
        );
        if self.send_frames(conn, frames) {
            self.catch_up(conn, &public_key, false);
        }
    }

    /// Restarts catch-up of the stalled (and held back) subscriptions of
    /// `conn`.
    pub(super) fn resume_stalled(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let mut stalled: Vec<String> = c
            .subs
            .iter()
            .filter(|(_, sub)| sub.state == SubState::Stalled)
            .map(|(public_key, _)| public_key.clone())
            .collect();
        stalled.sort();
        for public_key in stalled {
            self.catch_up(conn, &public_key, true);
        }
    }
}
