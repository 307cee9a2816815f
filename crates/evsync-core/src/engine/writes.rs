//! The write path: `WriteEntries` queue up, at most one append per tenant
//! is in flight, and the writes that arrive meanwhile are merged into the
//! next transaction (group commit). After a commit: Acks to the writers,
//! then the new entries to live subscribers.

use super::connection::SubState;
use super::{ConnId, Engine, Event, close_code, frames};
use crate::storage::{AppendBatch, Appended, RequestId, StorageError, StorageOp};
use crate::wire::{EncryptedEntry, MessageId, RemoteEntry, Response};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// One `WriteEntries` waiting for, or riding in, an append.
#[derive(Debug)]
pub(super) struct PendingWrite {
    conn: ConnId,
    id: MessageId,
    batch: AppendBatch,
    bytes: usize,
}

/// Writes waiting for the next append, and the append in flight.
#[derive(Debug, Default)]
pub(super) struct WritePipeline {
    queue: VecDeque<PendingWrite>,
    in_flight: Option<(RequestId, Vec<PendingWrite>)>,
}

impl WritePipeline {
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }
}

/// A committed new entry and the connection that wrote it.
struct Committed {
    entry: RemoteEntry,
    writer: ConnId,
}

impl Engine {
    pub(super) fn write_entries(
        &mut self,
        conn: ConnId,
        public_key: String,
        id: MessageId,
        iv: Bytes,
        entries: Vec<EncryptedEntry>,
    ) {
        if entries.is_empty() {
            let ack = Response::Ack {
                id,
                sequence_numbers: Vec::new(),
            };
            self.send_response(conn, &ack);
            return;
        }
        let bytes = iv.len()
            + entries
                .iter()
                .map(|e| e.entry_id.len() + e.encrypted_entry.len())
                .sum::<usize>();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.unacked_write_bytes += bytes;
        if c.unacked_write_bytes > self.config.max_unacked_write_bytes {
            let reason = format!(
                "over {} bytes of writes awaiting their Ack",
                self.config.max_unacked_write_bytes
            );
            self.close(conn, close_code::POLICY_VIOLATION, reason);
            return;
        }
        self.writes.queue.push_back(PendingWrite {
            conn,
            id,
            batch: AppendBatch {
                public_key,
                iv,
                entries,
            },
            bytes,
        });
        self.maybe_start_append();
    }

    /// Starts the next append if none is in flight, merging queued writes
    /// up to the configured transaction size.
    fn maybe_start_append(&mut self) {
        if self.writes.in_flight.is_some() || self.writes.queue.is_empty() {
            return;
        }
        let mut taken = Vec::new();
        let (mut entries, mut bytes) = (0usize, 0usize);
        while let Some(next) = self.writes.queue.front() {
            let n = next.batch.entries.len();
            if !taken.is_empty()
                && (entries + n > self.config.append_max_entries
                    || bytes + next.bytes > self.config.append_max_bytes)
            {
                break;
            }
            entries += n;
            bytes += next.bytes;
            taken.push(self.writes.queue.pop_front().expect("front exists"));
        }
        let batches = taken.iter().map(|w| w.batch.clone()).collect();
        let id = self.storage_request(StorageOp::Append(batches));
        self.writes.in_flight = Some((id, taken));
    }

    pub(super) fn on_appended(
        &mut self,
        id: RequestId,
        result: Result<Vec<Vec<Appended>>, StorageError>,
    ) {
        let writes = match self.writes.in_flight.take() {
            Some((in_flight, writes)) if in_flight == id => writes,
            other => {
                self.writes.in_flight = other;
                return;
            }
        };
        let result = result.and_then(|outcomes| {
            let shaped = outcomes.len() == writes.len()
                && outcomes
                    .iter()
                    .zip(&writes)
                    .all(|(o, w)| o.len() == w.batch.entries.len());
            if shaped {
                Ok(outcomes)
            } else {
                Err(StorageError::new(
                    "storage returned a result of the wrong shape",
                ))
            }
        });
        match result {
            Ok(outcomes) => self.commit_succeeded(writes, outcomes),
            Err(err) => self.commit_failed(writes, err),
        }
        self.maybe_start_append();
        self.maybe_finish_shutdown();
    }

    fn commit_failed(&mut self, writes: Vec<PendingWrite>, err: StorageError) {
        self.events.push_back(Event::StorageFailed {
            message: err.message.clone(),
        });
        for write in writes {
            self.close(
                write.conn,
                close_code::INTERNAL_ERROR,
                format!("storage error, nothing acknowledged: {}", err.message),
            );
        }
    }

    fn commit_succeeded(&mut self, writes: Vec<PendingWrite>, outcomes: Vec<Vec<Appended>>) {
        let mut committed: BTreeMap<String, Vec<Committed>> = BTreeMap::new();
        for (write, outcome) in writes.into_iter().zip(outcomes) {
            let new = committed.entry(write.batch.public_key.clone()).or_default();
            for (entry, appended) in write.batch.entries.iter().zip(&outcome) {
                if appended.inserted {
                    new.push(Committed {
                        entry: RemoteEntry {
                            sequence: appended.sequence,
                            iv: write.batch.iv.clone(),
                            entry_id: entry.entry_id.clone(),
                            encrypted_entry: entry.encrypted_entry.clone(),
                        },
                        writer: write.conn,
                    });
                }
            }
            if let Some(c) = self.conns.get_mut(&write.conn) {
                c.unacked_write_bytes = c.unacked_write_bytes.saturating_sub(write.bytes);
                let ack = Response::Ack {
                    id: write.id,
                    sequence_numbers: outcome.iter().map(|a| a.sequence).collect(),
                };
                self.send_response(write.conn, &ack);
            }
        }
        for (public_key, mut new) in committed {
            if new.is_empty() {
                continue;
            }
            new.sort_by_key(|c| c.entry.sequence);
            self.publish(&public_key, &new);
        }
        self.evict_cached_logs();
    }

    /// Pushes newly committed entries of one log to its live subscribers.
    ///
    /// A subscriber whose connection still has more than
    /// `live_coalesce_bytes` unsent is held back (stalled) instead: once
    /// its socket reports the queue written, it gets everything committed
    /// meanwhile in one `Changes` (from the tail cache, frames shared by
    /// the subscribers resuming from the same place). Under load this turns
    /// one frame per commit per subscriber into one per socket round trip.
    fn publish(&mut self, public_key: &str, new: &[Committed]) {
        let entries: Vec<RemoteEntry> = new.iter().map(|c| c.entry.clone()).collect();
        let writers: Vec<ConnId> = new.iter().map(|c| c.writer).collect();
        let (first, last) = (entries[0].sequence, entries[entries.len() - 1].sequence);
        let log = self.logs.entry(public_key.to_string()).or_default();
        log.record_commit(
            &entries,
            &writers,
            self.config.tail_cache_entries,
            self.config.tail_cache_bytes,
        );
        let subscribers: Vec<ConnId> = log.subscribers.iter().copied().collect();
        // Frames of the whole commit, encoded once and shared by every
        // subscriber that needs exactly that (the common case).
        let mut shared: Option<Vec<Bytes>> = None;
        for conn in subscribers {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            let hold_back = c.queued_bytes
                > (self.config.live_coalesce_bytes).min(self.config.outbound_soft_limit);
            let Some(sub) = c.subs.get_mut(public_key) else {
                continue;
            };
            if sub.state != SubState::Live || sub.next_seq > last {
                continue;
            }
            if sub.next_seq < first {
                // A gap this engine did not see commit: read it.
                self.catch_up(conn, public_key, false);
                continue;
            }
            if hold_back {
                sub.state = SubState::Stalled;
                continue;
            }
            let from = sub.next_seq;
            sub.next_seq = last + 1;
            let own = new
                .iter()
                .any(|c| c.writer == conn && c.entry.sequence >= from);
            let frames = if from == first && !own {
                shared
                    .get_or_insert_with(|| {
                        frames::changes_frames(
                            public_key,
                            &entries,
                            self.config.max_changes_message_bytes,
                            &mut self.next_chunk_id,
                        )
                    })
                    .clone()
            } else {
                let mine = new
                    .iter()
                    .filter(|c| c.entry.sequence >= from && c.writer != conn)
                    .map(|c| &c.entry);
                frames::changes_frames(
                    public_key,
                    mine,
                    self.config.max_changes_message_bytes,
                    &mut self.next_chunk_id,
                )
            };
            self.send_frames(conn, frames);
        }
    }

    /// Forgets logs nobody subscribes to once too many are remembered.
    fn evict_cached_logs(&mut self) {
        if self.logs.len() <= self.config.max_cached_logs {
            return;
        }
        self.logs.retain(|_, log| !log.subscribers.is_empty());
    }
}
