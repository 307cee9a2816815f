//! The write pipeline: writes queue up, one append per log service is
//! committing at a time, and the writes that arrive meanwhile are merged
//! into the next transaction (group commit). It also bounds, per
//! connection, the bytes of writes waiting for their commit.
//!
//! An adapter whose storage can take a later append into the transaction
//! still inserting (see [`super::LogConfig::join_open_appends`]) lets a
//! second append go out while one is in flight and reports it *joined*:
//! its writes then ride in the first one's transaction, and its slot is
//! free again. A transaction that takes in what arrived during its inserts
//! holds a writer's whole window, not the half that came back before it
//! began. An append that came too late (the first one's commit had begun)
//! is *put back*: its writes return to the head of the queue and wait for
//! the next transaction with everything arriving meanwhile, instead of
//! becoming a transaction of their own.

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
    /// Appends sent to storage and not answered, oldest first.
    in_flight: VecDeque<InFlight<W>>,
    /// An append was put back: no second one goes out until the one in
    /// flight is answered.
    held: bool,
    unacked: ConnMap<usize>,
}

/// One append sent to storage: its writes, including those of appends
/// that joined its transaction, and their size.
#[derive(Debug)]
struct InFlight<W> {
    id: RequestId,
    writes: Vec<PendingWrite<W>>,
    entries: usize,
    bytes: usize,
}

impl<W> Default for WritePipeline<W> {
    fn default() -> Self {
        WritePipeline {
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            held: false,
            unacked: ConnMap::default(),
        }
    }
}

impl<W: Clone> WritePipeline<W> {
    /// True when nothing is queued or being committed.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
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
    /// and `max_bytes` bytes (at least one write), if fewer than
    /// `max_in_flight` appends are in flight. The caller sends them as one
    /// append with request id `id`.
    ///
    /// A group sent while another append is in flight may join that one's
    /// transaction ([`WritePipeline::join`]), so together they stay within
    /// the bounds: it is cut to the room the oldest append has left, and
    /// not sent at all when its first write does not fit there (it then
    /// waits for the next transaction).
    pub fn next_group(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        max_in_flight: usize,
        id: impl FnOnce() -> RequestId,
    ) -> Option<Vec<W>> {
        let max_in_flight = if self.held { 1 } else { max_in_flight.max(1) };
        if self.in_flight.len() >= max_in_flight || self.queue.is_empty() {
            return None;
        }
        // A joining group counts the room the oldest append has left.
        let (held_entries, held_bytes) = match self.in_flight.front() {
            Some(open) => (open.entries, open.bytes),
            None => (0, 0),
        };
        let joining = !self.in_flight.is_empty();
        let (mut entries, mut bytes) = (held_entries, held_bytes);
        let mut taken = Vec::new();
        while let Some(next) = self.queue.front() {
            let n = next.entries;
            let over = entries + n > max_entries || bytes + next.bytes > max_bytes;
            if over && (joining || !taken.is_empty()) {
                break;
            }
            entries += n;
            bytes += next.bytes;
            taken.push(self.queue.pop_front().expect("front exists"));
        }
        if taken.is_empty() {
            return None;
        }
        let batches = taken.iter().map(|w| w.batch.clone()).collect();
        self.in_flight.push_back(InFlight {
            id: id(),
            writes: taken,
            entries: entries - held_entries,
            bytes: bytes - held_bytes,
        });
        Some(batches)
    }

    /// Storage took append `id` into the transaction of append `into`,
    /// still inserting: `id`'s writes are answered with `into`'s result,
    /// after its own writes, and `id` no longer counts as in flight. False
    /// (nothing changes) unless both are in flight and `id` is the newer.
    pub fn join(&mut self, id: RequestId, into: RequestId) -> bool {
        let find = |id| self.in_flight.iter().position(|a| a.id == id);
        let (Some(from), Some(to)) = (find(id), find(into)) else {
            return false;
        };
        if from <= to {
            return false;
        }
        let joined = self.in_flight.remove(from).expect("found above");
        let open = &mut self.in_flight[to];
        open.entries += joined.entries;
        open.bytes += joined.bytes;
        open.writes.extend(joined.writes);
        true
    }

    /// Storage did not start append `id`: it came after the running
    /// append's commit had begun. Its writes go back to the head of the
    /// queue, in order, and no second append goes out until the running
    /// one is answered. Returns the put-back batches' bytes; `None` (nothing
    /// changes) unless `id` is in flight behind another append.
    pub fn put_back(&mut self, id: RequestId) -> Option<usize> {
        let at = self.in_flight.iter().position(|a| a.id == id)?;
        if at == 0 {
            return None;
        }
        let back = self.in_flight.remove(at).expect("found above");
        for write in back.writes.into_iter().rev() {
            self.queue.push_front(write);
        }
        self.held = true;
        Some(back.bytes)
    }

    /// The writes append `id` carried (with those that joined it), if it
    /// is in flight.
    pub fn take_in_flight(&mut self, id: RequestId) -> Option<Vec<PendingWrite<W>>> {
        let at = self.in_flight.iter().position(|a| a.id == id)?;
        self.held = false;
        self.in_flight.remove(at).map(|a| a.writes)
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
