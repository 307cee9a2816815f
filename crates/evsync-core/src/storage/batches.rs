//! The storage types of Effect v4's encrypted batches.
//!
//! Effect 4's eventlog protocol stores whole encrypted batches (one AES-GCM
//! ciphertext over up to a hundred entries), not entries: the server cannot
//! split a ciphertext, so a batch is the unit that is stored, numbered and
//! sent. A batch of `n` entries owns `n` consecutive sequences, so a
//! replica's cursor (a sequence) still counts entries, as its acks do.
//!
//! Batches live in *stores* scoped by (publicKey, storeId), apart from the
//! tenant's v3 logs: a v3 log and a v4 store of the same publicKey have
//! their own sequences, dedup and reads.

use crate::wire::Sequence;
use bytes::Bytes;

use super::StorageError;

/// A v4 store: (publicKey, storeId). Every store of a tenant has its own
/// sequences (from 1) and its own entry ids; an empty `store_id` is a
/// store like any other.
///
/// Ordered by publicKey, then storeId, both in byte order: the order in
/// which a backend with several writers locks stores, so two writers never
/// deadlock.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct StoreKey {
    pub public_key: String,
    pub store_id: String,
}

impl StoreKey {
    /// The store `store_id` of `public_key`.
    pub fn new(public_key: impl Into<String>, store_id: impl Into<String>) -> Self {
        StoreKey {
            public_key: public_key.into(),
            store_id: store_id.into(),
        }
    }
}

/// One EncryptedBatch to store, as a client wrote it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BatchWrite {
    pub store: StoreKey,
    /// The batch's AES-GCM iv (12 bytes from Effect; stored as given).
    pub iv: Bytes,
    /// The ids of the batch's entries, in batch order. Non-empty and each
    /// [`ENTRY_ID_LEN`] bytes: the protocol layer checks both, and storage
    /// refuses an id of another length ([`check_writes`]) because the ids
    /// are stored concatenated.
    pub entry_ids: Vec<Bytes>,
    /// The ciphertext, opaque to the server.
    pub encrypted_batch: Bytes,
}

/// A stored batch: it owns sequences
/// `sequence ..= sequence + entry_ids.len() - 1`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredBatch {
    /// The sequence of its first entry.
    pub sequence: Sequence,
    pub iv: Bytes,
    pub entry_ids: Vec<Bytes>,
    pub encrypted_batch: Bytes,
}

impl StoredBatch {
    /// The sequence of its last entry: what a read's `from` is compared
    /// with, since a batch that ends at or after a cursor still holds
    /// entries the replica lacks (it drops the earlier ones itself).
    pub fn last(&self) -> Sequence {
        self.sequence + (self.entry_ids.len() as Sequence).saturating_sub(1)
    }
}

/// A v4 store with batches and its head (the last sequence taken), as
/// [`Storage::stores`](super::Storage::stores) lists them for an export:
/// reading the store up to this head gives a cut that holds every batch
/// acked before the listing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoreHead {
    pub store: StoreKey,
    pub head: Sequence,
}

/// A tenant's v4 figures for the admin API, from its stores' heads: a
/// store's head is how many entries it holds (sequences count entries
/// from 1), so no batch is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct V4Figures {
    /// Stores (publicKey, storeId) with at least one batch.
    pub stores: u64,
    /// Entries stored, every store together.
    pub entries: u64,
}

impl V4Figures {
    pub fn of(heads: &[StoreHead]) -> Self {
        V4Figures {
            stores: heads.len() as u64,
            entries: heads.iter().map(|h| h.head).sum(),
        }
    }
}

/// One session-auth binding (publicKey → the Ed25519 key that signs its
/// v4 sessions), as [`Storage::bindings`](super::Storage::bindings) lists
/// them: moved with the tenant, or the first client to connect after a
/// move could claim a publicKey another already owns.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SigningKeyBinding {
    pub public_key: String,
    pub signing_key: [u8; 32],
}

/// What happened to one [`BatchWrite`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BatchAppended {
    /// The batch's first sequence when this call stored it; `None` when it
    /// was skipped because every one of its entry ids was already stored.
    pub stored_at: Option<Sequence>,
    /// One per entry id, in request order: the sequence the client is
    /// acked with. For a stored batch its position (`first + i`, even for
    /// an id stored earlier, as Effect's `toWriteAcks` does); for a skipped
    /// one the sequence where each id was first stored.
    pub sequences: Vec<Sequence>,
}

/// The length of an entry id (a UUID v7's bytes).
pub const ENTRY_ID_LEN: usize = 16;

/// Size of a batch as counted against
/// [`ReadLimit::max_bytes`](super::ReadLimit::max_bytes): iv + entry ids +
/// ciphertext.
pub fn batch_bytes(batch: &StoredBatch) -> usize {
    batch.iv.len() + batch.entry_ids.len() * ENTRY_ID_LEN + batch.encrypted_batch.len()
}

/// Refuses writes whose entry ids a store cannot hold: every id must be
/// [`ENTRY_ID_LEN`] bytes, because a stored batch keeps its ids
/// concatenated (as Effect's SQL storage does) and splits them by length.
/// The protocol layer refuses such requests first; this keeps a slip there
/// from storing a batch that reads back wrong. Backends call it before
/// writing anything, so a refused call stores nothing.
pub fn check_writes(writes: &[BatchWrite]) -> Result<(), StorageError> {
    for write in writes {
        if let Some(id) = write.entry_ids.iter().find(|id| id.len() != ENTRY_ID_LEN) {
            return Err(StorageError::new(format!(
                "an entry id of {} bytes (entry ids are {ENTRY_ID_LEN} bytes)",
                id.len()
            )));
        }
    }
    Ok(())
}

/// The ids of a batch as one column value: concatenated, in batch order.
pub fn join_entry_ids(ids: &[Bytes]) -> Vec<u8> {
    let mut joined = Vec::with_capacity(ids.len() * ENTRY_ID_LEN);
    for id in ids {
        joined.extend_from_slice(id);
    }
    joined
}

/// The ids of a stored batch back from [`join_entry_ids`]'s column value.
pub fn split_entry_ids(joined: &[u8]) -> Result<Vec<Bytes>, StorageError> {
    if joined.is_empty() || !joined.len().is_multiple_of(ENTRY_ID_LEN) {
        return Err(StorageError::new(format!(
            "a stored batch's entry ids are {} bytes, not a positive multiple of {ENTRY_ID_LEN}",
            joined.len()
        )));
    }
    Ok(joined
        .chunks_exact(ENTRY_ID_LEN)
        .map(Bytes::copy_from_slice)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_is_the_last_entrys_sequence() {
        let batch = StoredBatch {
            sequence: 4,
            iv: Bytes::new(),
            entry_ids: vec![Bytes::from(vec![0; 16]); 3],
            encrypted_batch: Bytes::new(),
        };
        assert_eq!(batch.last(), 6);
        assert_eq!(batch_bytes(&batch), 48);
    }

    #[test]
    fn entry_ids_round_trip_through_one_column() {
        let ids = vec![Bytes::from(vec![1; 16]), Bytes::from(vec![2; 16])];
        assert_eq!(split_entry_ids(&join_entry_ids(&ids)).unwrap(), ids);
        assert!(split_entry_ids(&[0; 17]).is_err());
        assert!(split_entry_ids(&[]).is_err());
    }

    #[test]
    fn keys_order_by_public_key_then_store_id() {
        let mut keys = vec![
            StoreKey::new("b", "a"),
            StoreKey::new("a", "z"),
            StoreKey::new("a", ""),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                StoreKey::new("a", ""),
                StoreKey::new("a", "z"),
                StoreKey::new("b", "a")
            ]
        );
    }
}
