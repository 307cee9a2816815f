//! The write pipeline: writes queue up, at most one append per log service
//! is in flight, and the writes that arrive meanwhile are merged into the
//! next transaction (group commit). It also bounds, per connection, the
//! bytes of writes waiting for their commit.

use super::{ConnId, ConnMap, WriteToken};
use crate::storage::RequestId;
use std::collections::VecDeque;

/// One write (`W`: the log kind's write) waiting for, or riding in, an
/// append.
#[derive(Debug)]
pub(super) struct PendingWrite<W> {
    pub conn: ConnId,
    pub token: WriteToken,
    pub batch: W,
    pub bytes: usize,
    /// Entries in the write (an append carries a bounded number).
    pub entries: usize,
}

/// Writes waiting for the next append, the append in flight, and what each
/// connection has waiting.
#[derive(Debug)]
pub(super) struct WritePipeline<W> {
    queue: VecDeque<PendingWrite<W>>,
    in_flight: Option<(RequestId, Vec<PendingWrite<W>>)>,
    unacked: ConnMap<usize>,
}

impl<W> Default for WritePipeline<W> {
    fn default() -> Self {
        WritePipeline {
            queue: VecDeque::new(),
            in_flight: None,
            unacked: ConnMap::default(),
        }
    }
}

impl<W: Clone> WritePipeline<W> {
    /// True when nothing is queued or being committed.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_none()
    }

    /// Queues a write, unless it would take its connection past
    /// `max_unacked` bytes awaiting commit (then it is refused: `false`).
    pub fn push(&mut self, write: PendingWrite<W>, max_unacked: usize) -> bool {
        let unacked = self.unacked.entry(write.conn).or_default();
        *unacked += write.bytes;
        if *unacked > max_unacked {
            return false;
        }
        self.queue.push_back(write);
        true
    }

    /// Stops counting `conn`'s unacked bytes (it closed). Its writes still
    /// commit; their results are dropped.
    pub fn forget(&mut self, conn: ConnId) {
        self.unacked.remove(&conn);
    }

    /// Takes the next group of queued writes, at most `max_entries` entries
    /// and `max_bytes` bytes (at least one write), if no append is in
    /// flight. The caller sends them as one append with request id `id`.
    pub fn next_group(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        id: impl FnOnce() -> RequestId,
    ) -> Option<Vec<W>> {
        if self.in_flight.is_some() || self.queue.is_empty() {
            return None;
        }
        let mut taken = Vec::new();
        let (mut entries, mut bytes) = (0usize, 0usize);
        while let Some(next) = self.queue.front() {
            let n = next.entries;
            if !taken.is_empty() && (entries + n > max_entries || bytes + next.bytes > max_bytes) {
                break;
            }
            entries += n;
            bytes += next.bytes;
            taken.push(self.queue.pop_front().expect("front exists"));
        }
        let batches = taken.iter().map(|w| w.batch.clone()).collect();
        self.in_flight = Some((id(), taken));
        Some(batches)
    }

    /// The writes append `id` carried, if it is the one in flight.
    pub fn take_in_flight(&mut self, id: RequestId) -> Option<Vec<PendingWrite<W>>> {
        match self.in_flight.take() {
            Some((in_flight, writes)) if in_flight == id => Some(writes),
            other => {
                self.in_flight = other;
                None
            }
        }
    }

    /// `write` committed (or failed): it no longer counts against its
    /// connection's unacked bytes. False if the connection is gone.
    pub fn settle(&mut self, write: &PendingWrite<W>) -> bool {
        match self.unacked.get_mut(&write.conn) {
            Some(unacked) => {
                *unacked = unacked.saturating_sub(write.bytes);
                true
            }
            None => false,
        }
    }
}
