//! What a log holds, as the log service needs to know it: its records, the
//! writes that add them, and the storage requests that store and read them.
//!
//! The service's rules (group commit, the catch-up → live hand-over, the
//! tail cache, backpressure) do not depend on what a record is, only on the
//! sequences it covers. Two data models use them:
//! - [`EntryLog`]: Effect v3's logs, one record per entry and one sequence
//!   per record, named by publicKey;
//! - [`BatchLog`]: Effect v4's stores, one record per encrypted batch,
//!   owning one sequence per entry id it carries, named by (publicKey,
//!   storeId) ([`batch_log_name`]).
//!
//! A record covers `first(r) ..= last(r)`; the records of a log are
//! contiguous (the next one starts at `last + 1`). A read from sequence `s`
//! returns every record whose *last* sequence is at or past `s`, so a
//! subscriber whose cursor falls inside a record gets that record whole
//! (Effect's v4 client drops the entries it already has).

use super::ConnId;
use crate::storage::{
    AppendBatch, Appended, BatchAppended, BatchWrite, ReadLimit, RequestId, StorageError,
    StorageOp, StorageResponse, StoreKey, StoredBatch,
};
use crate::wire::{RemoteEntry, Sequence};
use bytes::Bytes;
use core::fmt::Debug;

/// A data model the log service can run: see the module docs.
pub trait LogKind {
    /// One stored record.
    type Record: Debug;
    /// One write of a connection, for one log.
    type Write: Clone + Debug;
    /// What storage did with one write.
    type Outcome: Debug;

    /// The first sequence `record` covers.
    fn first(record: &Self::Record) -> Sequence;
    /// The last sequence `record` covers.
    fn last(record: &Self::Record) -> Sequence;
    /// Bytes of a record as caches and reads count them.
    fn record_bytes(record: &Self::Record) -> usize;
    /// A copy of `record` that owns its bytes (a slice would pin the whole
    /// frame it arrived in for as long as the copy is cached).
    fn detach(record: &Self::Record) -> Self::Record;

    /// The log `write` goes to.
    fn write_log(write: &Self::Write) -> String;
    /// Bytes of a write as unacked bytes and the write rate count them.
    fn write_bytes(write: &Self::Write) -> usize;
    /// Entries in a write (the bound on one append transaction).
    fn write_entries(write: &Self::Write) -> usize;

    /// True when `outcome` has the shape storage owes for `write` (a store
    /// answering otherwise is treated as failed, never trusted).
    fn outcome_fits(write: &Self::Write, outcome: &Self::Outcome) -> bool;
    /// The records `write` stored, given what storage did with it, in
    /// sequence order (none when every entry was stored already).
    fn stored(write: &Self::Write, outcome: &Self::Outcome, into: &mut Vec<Self::Record>);
    /// The sequences the writer is told, one per entry, in request order.
    fn ack_sequences(outcome: &Self::Outcome) -> Vec<Sequence>;

    /// The storage request that appends `writes` in one transaction.
    fn append_op(writes: Vec<Self::Write>) -> StorageOp;
    /// The storage request that reads `log` from `from`.
    fn read_op(log: &str, from: Sequence, limit: ReadLimit) -> StorageOp;
    /// Sorts a storage response of this kind (`None`: not of this kind).
    fn response(response: StorageResponse) -> Option<KindResponse<Self>>;
}

/// A storage answer, as the log service of kind `K` takes it.
pub enum KindResponse<K: LogKind + ?Sized> {
    Appended {
        id: RequestId,
        result: Result<Vec<K::Outcome>, StorageError>,
    },
    Read {
        id: RequestId,
        result: Result<Vec<K::Record>, StorageError>,
    },
}

/// Effect v3's logs: a record is one entry at one sequence; a log is named
/// by its publicKey; a write is one `WriteEntries` (its entries share an iv).
#[derive(Debug)]
pub enum EntryLog {}

impl LogKind for EntryLog {
    type Record = RemoteEntry;
    type Write = AppendBatch;
    type Outcome = Vec<Appended>;

    fn first(record: &RemoteEntry) -> Sequence {
        record.sequence
    }

    fn last(record: &RemoteEntry) -> Sequence {
        record.sequence
    }

    fn record_bytes(record: &RemoteEntry) -> usize {
        crate::storage::entry_bytes(record)
    }

    fn detach(record: &RemoteEntry) -> RemoteEntry {
        crate::storage::owned_entry(
            record.sequence,
            &record.iv,
            &record.entry_id,
            &record.encrypted_entry,
        )
    }

    fn write_log(write: &AppendBatch) -> String {
        write.public_key.clone()
    }

    fn write_bytes(write: &AppendBatch) -> usize {
        write.iv.len()
            + write
                .entries
                .iter()
                .map(|e| e.entry_id.len() + e.encrypted_entry.len())
                .sum::<usize>()
    }

    fn write_entries(write: &AppendBatch) -> usize {
        write.entries.len()
    }

    fn outcome_fits(write: &AppendBatch, outcome: &Vec<Appended>) -> bool {
        outcome.len() == write.entries.len()
    }

    fn stored(write: &AppendBatch, outcome: &Vec<Appended>, into: &mut Vec<RemoteEntry>) {
        for (entry, appended) in write.entries.iter().zip(outcome) {
            if appended.inserted {
                into.push(RemoteEntry {
                    sequence: appended.sequence,
                    iv: write.iv.clone(),
                    entry_id: entry.entry_id.clone(),
                    encrypted_entry: entry.encrypted_entry.clone(),
                });
            }
        }
    }

    fn ack_sequences(outcome: &Vec<Appended>) -> Vec<Sequence> {
        outcome.iter().map(|a| a.sequence).collect()
    }

    fn append_op(writes: Vec<AppendBatch>) -> StorageOp {
        StorageOp::Append(writes)
    }

    fn read_op(log: &str, from: Sequence, limit: ReadLimit) -> StorageOp {
        StorageOp::Read {
            public_key: log.to_string(),
            from,
            limit,
        }
    }

    fn response(response: StorageResponse) -> Option<KindResponse<Self>> {
        match response {
            StorageResponse::Appended { id, result } => Some(KindResponse::Appended { id, result }),
            StorageResponse::Read { id, result } => Some(KindResponse::Read { id, result }),
            _ => None,
        }
    }
}

/// Effect v4's stores: a record is one encrypted batch owning one sequence
/// per entry id; a log is a store named by [`batch_log_name`]; a write is
/// one batch (a `WriteEntries` of several batches is several writes, which
/// group commit stores in one transaction when they arrive together).
#[derive(Debug)]
pub enum BatchLog {}

/// The log name of a v4 store: the publicKey's length, `:`, the publicKey,
/// then the storeId, so that no two (publicKey, storeId) pairs share a
/// name whatever characters they hold.
pub fn batch_log_name(store: &StoreKey) -> String {
    format!(
        "{}:{}{}",
        store.public_key.len(),
        store.public_key,
        store.store_id
    )
}

/// The store a [`batch_log_name`] names; `None` for any other string.
pub fn parse_batch_log_name(name: &str) -> Option<StoreKey> {
    let (len, rest) = name.split_once(':')?;
    let len: usize = len.parse().ok()?;
    if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
        return None;
    }
    let (public_key, store_id) = rest.split_at(len);
    Some(StoreKey::new(public_key, store_id))
}

impl LogKind for BatchLog {
    type Record = StoredBatch;
    type Write = BatchWrite;
    type Outcome = BatchAppended;

    fn first(record: &StoredBatch) -> Sequence {
        record.sequence
    }

    fn last(record: &StoredBatch) -> Sequence {
        record.last()
    }

    fn record_bytes(record: &StoredBatch) -> usize {
        crate::storage::batch_bytes(record)
    }

    fn detach(record: &StoredBatch) -> StoredBatch {
        crate::storage::owned_batch(
            record.sequence,
            &record.iv,
            &record.entry_ids,
            &record.encrypted_batch,
        )
    }

    fn write_log(write: &BatchWrite) -> String {
        batch_log_name(&write.store)
    }

    fn write_bytes(write: &BatchWrite) -> usize {
        write.iv.len()
            + write.entry_ids.iter().map(Bytes::len).sum::<usize>()
            + write.encrypted_batch.len()
    }

    fn write_entries(write: &BatchWrite) -> usize {
        write.entry_ids.len()
    }

    fn outcome_fits(write: &BatchWrite, outcome: &BatchAppended) -> bool {
        outcome.sequences.len() == write.entry_ids.len()
    }

    fn stored(write: &BatchWrite, outcome: &BatchAppended, into: &mut Vec<StoredBatch>) {
        if let Some(sequence) = outcome.stored_at {
            into.push(StoredBatch {
                sequence,
                iv: write.iv.clone(),
                entry_ids: write.entry_ids.clone(),
                encrypted_batch: write.encrypted_batch.clone(),
            });
        }
    }

    fn ack_sequences(outcome: &BatchAppended) -> Vec<Sequence> {
        outcome.sequences.clone()
    }

    fn append_op(writes: Vec<BatchWrite>) -> StorageOp {
        StorageOp::AppendBatches(writes)
    }

    fn read_op(log: &str, from: Sequence, limit: ReadLimit) -> StorageOp {
        // Only names made by `batch_log_name` reach here (the v4 layer
        // names its subscriptions and writes); anything else reads an
        // empty store rather than another store.
        let store = parse_batch_log_name(log).unwrap_or_else(|| StoreKey::new(log, "\0invalid"));
        StorageOp::ReadBatches { store, from, limit }
    }

    fn response(response: StorageResponse) -> Option<KindResponse<Self>> {
        match response {
            StorageResponse::BatchesAppended { id, result } => {
                Some(KindResponse::Appended { id, result })
            }
            StorageResponse::BatchesRead { id, result } => Some(KindResponse::Read { id, result }),
            _ => None,
        }
    }
}

/// A record the service committed, with the connection that wrote it (so
/// that a connection's own writes can be left out of what it is sent).
#[derive(Debug)]
pub struct Cached<R> {
    pub entry: R,
    pub writer: Option<ConnId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_log_names_are_unambiguous_and_parse_back() {
        let pairs = [
            ("pk", "default"),
            ("pk:", "x"),
            ("p", "k:x"),
            ("", ""),
            ("é", "ü"),
        ];
        let mut names = std::collections::HashSet::new();
        for (pk, store) in pairs {
            let key = StoreKey::new(pk, store);
            let name = batch_log_name(&key);
            assert!(names.insert(name.clone()), "{name} named twice");
            assert_eq!(parse_batch_log_name(&name), Some(key));
        }
        assert_eq!(parse_batch_log_name("pk"), None);
        assert_eq!(parse_batch_log_name("9:pk"), None);
        assert_eq!(parse_batch_log_name("1:é"), None, "not a char boundary");
    }
}
