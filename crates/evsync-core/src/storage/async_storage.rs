//! The asynchronous face of the storage contract.

use super::{
    AppendBatch, Appended, BatchAppended, BatchWrite, LogHead, ReadLimit, SigningKeyBinding,
    Storage, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch,
};
use crate::wire::{RemoteEntry, RemoteId, Sequence};

/// A tenant's log store whose calls complete later (D1, Postgres). Same
/// contract as [`Storage`]; the futures need not be `Send`, because a
/// Durable Object's are not.
#[allow(async_fn_in_trait)]
pub trait AsyncStorage {
    /// See [`Storage::remote_id`].
    async fn remote_id(&mut self) -> Result<RemoteId, StorageError>;
    /// See [`Storage::append`].
    async fn append(&mut self, batches: &[AppendBatch])
    -> Result<Vec<Vec<Appended>>, StorageError>;
    /// See [`Storage::read`].
    async fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError>;
    /// See [`Storage::tokens_not_before`].
    async fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError>;
    /// See [`Storage::set_tokens_not_before`].
    async fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError>;
    /// See [`Storage::stats`].
    async fn stats(&mut self) -> Result<StoreStats, StorageError>;
    /// See [`Storage::logs`].
    async fn logs(&mut self) -> Result<Vec<LogHead>, StorageError>;
    /// See [`Storage::adopt_remote_id`].
    async fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError>;
    /// See [`Storage::append_batches`].
    async fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError>;
    /// See [`Storage::read_batches`].
    async fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError>;
    /// See [`Storage::bind_signing_key`].
    async fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError>;
    /// See [`Storage::stores`].
    async fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError>;
    /// See [`Storage::bindings`].
    async fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError>;
}

impl<S: Storage> AsyncStorage for S {
    async fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        Storage::remote_id(self)
    }

    async fn append(
        &mut self,
        batches: &[AppendBatch],
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        Storage::append(self, batches)
    }

    async fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        Storage::read(self, public_key, from, limit)
    }

    async fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        Storage::tokens_not_before(self)
    }

    async fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        Storage::set_tokens_not_before(self, not_before_ms)
    }

    async fn stats(&mut self) -> Result<StoreStats, StorageError> {
        Storage::stats(self)
    }

    async fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        Storage::logs(self)
    }

    async fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        Storage::adopt_remote_id(self, remote_id)
    }

    async fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        Storage::append_batches(self, writes)
    }

    async fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        Storage::read_batches(self, store, from, limit)
    }

    async fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        Storage::bind_signing_key(self, public_key, signing_key)
    }

    async fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        Storage::stores(self)
    }

    async fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        Storage::bindings(self)
    }
}
