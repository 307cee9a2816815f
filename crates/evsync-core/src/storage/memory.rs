//! A store that lives in memory: the engine's test double and the server's
//! `SYNC_STORAGE=memory` mode.

use super::{
    AppendBatch, Appended, BatchAppended, BatchWrite, LogHead, ReadLimit, SigningKeyBinding,
    Storage, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch, batch_bytes,
    check_tokens_not_before, check_writes, entry_bytes, owned_batch, owned_entry, remote_id_taken,
};
use crate::hash::HashMap;
use crate::wire::{RemoteEntry, RemoteId, Sequence};
use bytes::Bytes;

/// One tenant's logs in memory. Lost when dropped.
#[derive(Debug)]
pub struct MemoryStorage {
    remote_id: RemoteId,
    /// Set once the remoteId was handed out (or adopted): like a SQL
    /// store's, it exists from then on and never changes. Before that,
    /// [`Storage::adopt_remote_id`] may replace the one given to `new`.
    remote_id_fixed: bool,
    logs: HashMap<String, MemoryLog>,
    tokens_not_before: Option<u64>,
    /// Effect v4's batch stores, apart from the v3 `logs`.
    stores: HashMap<StoreKey, MemoryStore>,
    /// Effect v4 session auth: publicKey → the first signing key offered.
    signing_keys: HashMap<String, [u8; 32]>,
    /// When set, the next call fails with this message (for failure tests).
    #[cfg(any(test, feature = "test-support"))]
    fail_next: Option<String>,
}

/// One v4 store: its batches in sequence order, and where each entry id
/// was first stored.
#[derive(Debug, Default)]
struct MemoryStore {
    batches: Vec<StoredBatch>,
    /// The last sequence taken (0 when empty).
    head: Sequence,
    by_entry_id: HashMap<Bytes, Sequence>,
}

#[derive(Debug, Default)]
struct MemoryLog {
    /// `entries[i]` has sequence `i + 1`.
    entries: Vec<RemoteEntry>,
    by_entry_id: HashMap<Bytes, Sequence>,
}

impl MemoryStorage {
    /// An empty store whose remoteId will be `remote_id` (unless another
    /// is adopted before it is first asked for).
    pub fn new(remote_id: RemoteId) -> Self {
        MemoryStorage {
            remote_id,
            remote_id_fixed: false,
            logs: HashMap::default(),
            tokens_not_before: None,
            stores: HashMap::default(),
            signing_keys: HashMap::default(),
            #[cfg(any(test, feature = "test-support"))]
            fail_next: None,
        }
    }

    /// Makes the next call fail, to test how callers survive storage errors.
    /// Test machinery: only with the `test-support` feature.
    #[cfg(any(test, feature = "test-support"))]
    pub fn fail_next_call(&mut self, message: impl Into<String>) {
        self.fail_next = Some(message.into());
    }

    /// The highest sequence of `public_key`'s log (0 when empty).
    pub fn head(&self, public_key: &str) -> Sequence {
        self.logs
            .get(public_key)
            .map_or(0, |log| log.entries.len() as Sequence)
    }

    #[cfg(any(test, feature = "test-support"))]
    fn check_failure(&mut self) -> Result<(), StorageError> {
        match self.fail_next.take() {
            Some(message) => Err(StorageError::new(message)),
            None => Ok(()),
        }
    }

    /// Without the test hook, no call is made to fail.
    #[cfg(not(any(test, feature = "test-support")))]
    fn check_failure(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        self.check_failure()?;
        self.remote_id_fixed = true;
        Ok(self.remote_id)
    }

    fn append(&mut self, batches: &[AppendBatch]) -> Result<Vec<Vec<Appended>>, StorageError> {
        self.check_failure()?;
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let log = self.logs.entry(batch.public_key.clone()).or_default();
            let mut outcome = Vec::with_capacity(batch.entries.len());
            for entry in &batch.entries {
                if let Some(&sequence) = log.by_entry_id.get(&entry.entry_id) {
                    outcome.push(Appended {
                        sequence,
                        inserted: false,
                    });
                    continue;
                }
                let sequence = log.entries.len() as Sequence + 1;
                // A copy, and the index keyed by the copy's id: the
                // request's bytes are slices of a whole received frame (or
                // reassembled message), which a kept slice would pin in
                // memory for as long as the entry lives.
                let stored =
                    owned_entry(sequence, &batch.iv, &entry.entry_id, &entry.encrypted_entry);
                log.by_entry_id.insert(stored.entry_id.clone(), sequence);
                log.entries.push(stored);
                outcome.push(Appended {
                    sequence,
                    inserted: true,
                });
            }
            results.push(outcome);
        }
        Ok(results)
    }

    fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        self.check_failure()?;
        let Some(log) = self.logs.get(public_key) else {
            return Ok(Vec::new());
        };
        let start = from.saturating_sub(1).min(log.entries.len() as u64) as usize;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in &log.entries[start..] {
            let size = entry_bytes(entry);
            if out.len() >= limit.max_entries || (!out.is_empty() && bytes + size > limit.max_bytes)
            {
                break;
            }
            bytes += size;
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        self.check_failure()?;
        Ok(self.tokens_not_before)
    }

    fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        self.check_failure()?;
        let not_before_ms = check_tokens_not_before(not_before_ms)?;
        let stored = self
            .tokens_not_before
            .map_or(not_before_ms, |s| s.max(not_before_ms));
        self.tokens_not_before = Some(stored);
        Ok(stored)
    }

    /// Counted from the logs; no clock here, so no last write time.
    fn stats(&mut self) -> Result<StoreStats, StorageError> {
        self.check_failure()?;
        let mut stats = StoreStats::default();
        for log in self.logs.values().filter(|log| !log.entries.is_empty()) {
            stats.logs += 1;
            stats.entries += log.entries.len() as u64;
            stats.bytes += log
                .entries
                .iter()
                .map(|entry| entry_bytes(entry) as u64)
                .sum::<u64>();
        }
        Ok(stats)
    }

    fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        self.check_failure()?;
        let mut heads: Vec<LogHead> = self
            .logs
            .iter()
            .filter(|(_, log)| !log.entries.is_empty())
            .map(|(public_key, log)| LogHead {
                public_key: public_key.clone(),
                head: log.entries.len() as Sequence,
            })
            .collect();
        heads.sort_by(|a, b| a.public_key.as_bytes().cmp(b.public_key.as_bytes()));
        Ok(heads)
    }

    fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        self.check_failure()?;
        if self.remote_id_fixed && self.remote_id != remote_id {
            return Err(remote_id_taken(self.remote_id, remote_id));
        }
        self.remote_id = remote_id;
        self.remote_id_fixed = true;
        Ok(())
    }

    /// Nothing fails once the writes are checked, so applying them one by
    /// one is all-or-nothing.
    fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        self.check_failure()?;
        check_writes(writes)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            // Known ids are looked up without creating the store, so a
            // skipped write leaves nothing behind.
            let known: Option<Vec<Sequence>> = match self.stores.get(&write.store) {
                Some(store) => write
                    .entry_ids
                    .iter()
                    .map(|id| store.by_entry_id.get(id).copied())
                    .collect(),
                None if write.entry_ids.is_empty() => Some(Vec::new()),
                None => None,
            };
            if let Some(sequences) = known {
                results.push(BatchAppended {
                    stored_at: None,
                    sequences,
                });
                continue;
            }
            let store = self.stores.entry(write.store.clone()).or_default();
            let first = store.head + 1;
            store.head += write.entry_ids.len() as Sequence;
            // A copy, as `append` makes: the request's bytes are slices of
            // a whole received frame.
            let stored = owned_batch(first, &write.iv, &write.entry_ids, &write.encrypted_batch);
            for (i, id) in stored.entry_ids.iter().enumerate() {
                store
                    .by_entry_id
                    .entry(id.clone())
                    .or_insert(first + i as Sequence);
            }
            store.batches.push(stored);
            results.push(BatchAppended {
                stored_at: Some(first),
                sequences: (0..write.entry_ids.len() as Sequence)
                    .map(|i| first + i)
                    .collect(),
            });
        }
        Ok(results)
    }

    fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        self.check_failure()?;
        let Some(store) = self.stores.get(store) else {
            return Ok(Vec::new());
        };
        let start = store.batches.partition_point(|batch| batch.last() < from);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for batch in &store.batches[start..] {
            let size = batch_bytes(batch);
            if out.len() >= limit.max_entries
                || (!out.is_empty() && bytes.saturating_add(size) > limit.max_bytes)
            {
                break;
            }
            bytes += size;
            out.push(batch.clone());
        }
        Ok(out)
    }

    fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        self.check_failure()?;
        Ok(*self
            .signing_keys
            .entry(public_key.to_string())
            .or_insert(*signing_key))
    }

    fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        self.check_failure()?;
        let mut heads: Vec<StoreHead> = self
            .stores
            .iter()
            .filter(|(_, store)| store.head > 0)
            .map(|(key, store)| StoreHead {
                store: key.clone(),
                head: store.head,
            })
            .collect();
        heads.sort_by(|a, b| a.store.cmp(&b.store));
        Ok(heads)
    }

    fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        self.check_failure()?;
        let mut bindings: Vec<SigningKeyBinding> = self
            .signing_keys
            .iter()
            .map(|(public_key, key)| SigningKeyBinding {
                public_key: public_key.clone(),
                signing_key: *key,
            })
            .collect();
        bindings.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        Ok(bindings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::{block_on, run_all, run_joins};
    use crate::wire::EncryptedEntry;

    fn fresh() -> MemoryStorage {
        MemoryStorage::new(RemoteId::from_random_bytes([7; 16]))
    }

    #[test]
    fn conformance_suite() {
        // Memory keeps nothing across a drop, so run_persistence does not
        // apply; every other rule does.
        block_on(run_all(|| async { fresh() }));
        run_joins(fresh);
    }

    /// What a store keeps must not pin the frame its request was decoded
    /// from: the v3 index once kept the request's entry id, a slice of it.
    #[test]
    fn stored_entries_and_batches_hold_no_slice_of_the_request_frame() {
        // Distinct bytes, so that the four entry ids differ.
        let frame = Bytes::from((0..4096).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let mut store = fresh();
        let entries = (0..4)
            .map(|i| EncryptedEntry {
                entry_id: frame.slice(i * 16..i * 16 + 16),
                encrypted_entry: frame.slice(1024 + i * 100..1124 + i * 100),
            })
            .collect();
        let append = AppendBatch {
            public_key: "pk".into(),
            iv: frame.slice(100..112),
            entries,
        };
        store.append(core::slice::from_ref(&append)).unwrap();
        drop(append);
        assert!(frame.is_unique(), "the v3 log pins the request's frame");
        assert_eq!(store.head("pk"), 4, "and it stored every entry");
        let write = BatchWrite {
            store: StoreKey::new("pk", "s"),
            iv: frame.slice(200..212),
            entry_ids: vec![frame.slice(300..316), frame.slice(316..332)],
            encrypted_batch: frame.slice(2048..3000),
        };
        store.append_batches(core::slice::from_ref(&write)).unwrap();
        drop(write);
        assert!(frame.is_unique(), "the v4 store pins the request's frame");
        let limit = ReadLimit {
            max_entries: 10,
            max_bytes: 1 << 20,
        };
        let stored = store
            .read_batches(&StoreKey::new("pk", "s"), 1, limit)
            .unwrap();
        let second_id: Vec<u8> = (316..332).map(|i| (i % 251) as u8).collect();
        assert_eq!(stored[0].entry_ids[1], second_id, "and reads it back");
    }

    #[test]
    fn a_failed_call_changes_nothing() {
        let mut store = fresh();
        store.set_tokens_not_before(1_000).unwrap();
        store.fail_next_call("disk full");
        assert_eq!(
            store.set_tokens_not_before(2_000).unwrap_err().message,
            "disk full"
        );
        assert_eq!(store.tokens_not_before().unwrap(), Some(1_000));
        store.fail_next_call("disk full");
        assert!(store.tokens_not_before().is_err());
        assert_eq!(
            store.tokens_not_before().unwrap(),
            Some(1_000),
            "one call only"
        );
    }
}
