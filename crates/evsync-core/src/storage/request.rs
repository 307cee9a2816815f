//! Storage work the engine asks for, and the answers it takes back.

use super::{
    AppendBatch, Appended, AsyncStorage, BatchAppended, BatchWrite, ReadLimit, Storage,
    StorageError, StoreKey, StoredBatch,
};
use crate::wire::{RemoteEntry, Sequence};
use core::mem::discriminant;

/// Matches a [`StorageResponse`] to the [`StorageRequest`] it answers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the engine wants storage to do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StorageOp {
    /// Append in one transaction (see [`Storage::append`]). The engine has at
    /// most one append in flight per tenant and merges the writes that
    /// arrive meanwhile into the next one (group commit).
    Append(Vec<AppendBatch>),
    /// Read a range of one log (see [`Storage::read`]).
    Read {
        public_key: String,
        from: Sequence,
        limit: ReadLimit,
    },
    /// Store Effect v4 batches in one transaction (see
    /// [`Storage::append_batches`]).
    AppendBatches(Vec<BatchWrite>),
    /// Read a range of one v4 store (see [`Storage::read_batches`]).
    ReadBatches {
        store: StoreKey,
        from: Sequence,
        limit: ReadLimit,
    },
    /// Get or create a publicKey's session-auth signing key (see
    /// [`Storage::bind_signing_key`]).
    BindSigningKey {
        public_key: String,
        signing_key: [u8; 32],
    },
}

/// A unit of storage work emitted by the engine.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StorageRequest {
    pub id: RequestId,
    pub op: StorageOp,
}

/// The outcome of a [`StorageRequest`], fed back with
/// `Engine::handle_storage_response`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StorageResponse {
    Appended {
        id: RequestId,
        result: Result<Vec<Vec<Appended>>, StorageError>,
    },
    Read {
        id: RequestId,
        result: Result<Vec<RemoteEntry>, StorageError>,
    },
    BatchesAppended {
        id: RequestId,
        result: Result<Vec<BatchAppended>, StorageError>,
    },
    BatchesRead {
        id: RequestId,
        result: Result<Vec<StoredBatch>, StorageError>,
    },
    SigningKeyBound {
        id: RequestId,
        result: Result<[u8; 32], StorageError>,
    },
}

impl StorageResponse {
    /// The request this answers.
    pub fn id(&self) -> RequestId {
        match self {
            StorageResponse::Appended { id, .. }
            | StorageResponse::Read { id, .. }
            | StorageResponse::BatchesAppended { id, .. }
            | StorageResponse::BatchesRead { id, .. }
            | StorageResponse::SigningKeyBound { id, .. } => *id,
        }
    }
}

impl StorageRequest {
    /// Runs this request against a synchronous store.
    pub fn execute<S: Storage + ?Sized>(&self, storage: &mut S) -> StorageResponse {
        match &self.op {
            StorageOp::Append(batches) => StorageResponse::Appended {
                id: self.id,
                result: Storage::append(storage, batches),
            },
            StorageOp::Read {
                public_key,
                from,
                limit,
            } => StorageResponse::Read {
                id: self.id,
                result: Storage::read(storage, public_key, *from, *limit),
            },
            StorageOp::AppendBatches(writes) => StorageResponse::BatchesAppended {
                id: self.id,
                result: Storage::append_batches(storage, writes),
            },
            StorageOp::ReadBatches { store, from, limit } => StorageResponse::BatchesRead {
                id: self.id,
                result: Storage::read_batches(storage, store, *from, *limit),
            },
            StorageOp::BindSigningKey {
                public_key,
                signing_key,
            } => StorageResponse::SigningKeyBound {
                id: self.id,
                result: Storage::bind_signing_key(storage, public_key, signing_key),
            },
        }
    }

    /// True when `other` may join this request's transaction: both append
    /// the same kind of data (v3 entries, or v4 batches).
    pub fn takes_joins_of(&self, other: &StorageOp) -> bool {
        matches!(self.op, StorageOp::Append(_) | StorageOp::AppendBatches(_))
            && discriminant(&self.op) == discriminant(other)
    }

    /// [`StorageRequest::execute`], for an append whose transaction also
    /// takes in the ops `joins` yields before it commits (each one that
    /// [`StorageRequest::takes_joins_of`] accepts; see
    /// [`super::Joins`]). Any other request ignores `joins`.
    pub fn execute_with_joins<S: Storage + ?Sized>(
        &self,
        storage: &mut S,
        joins: &mut dyn FnMut() -> Option<StorageOp>,
    ) -> StorageResponse {
        match &self.op {
            StorageOp::Append(batches) => {
                let mut more = || match joins()? {
                    StorageOp::Append(more) => Some(more),
                    _ => None,
                };
                StorageResponse::Appended {
                    id: self.id,
                    result: storage.append_with_joins(batches, &mut more),
                }
            }
            StorageOp::AppendBatches(writes) => {
                let mut more = || match joins()? {
                    StorageOp::AppendBatches(more) => Some(more),
                    _ => None,
                };
                StorageResponse::BatchesAppended {
                    id: self.id,
                    result: storage.append_batches_with_joins(writes, &mut more),
                }
            }
            _ => self.execute(storage),
        }
    }

    /// Runs this request against an asynchronous store.
    pub async fn execute_async<S: AsyncStorage + ?Sized>(
        &self,
        storage: &mut S,
    ) -> StorageResponse {
        match &self.op {
            StorageOp::Append(batches) => StorageResponse::Appended {
                id: self.id,
                result: AsyncStorage::append(storage, batches).await,
            },
            StorageOp::Read {
                public_key,
                from,
                limit,
            } => StorageResponse::Read {
                id: self.id,
                result: AsyncStorage::read(storage, public_key, *from, *limit).await,
            },
            StorageOp::AppendBatches(writes) => StorageResponse::BatchesAppended {
                id: self.id,
                result: AsyncStorage::append_batches(storage, writes).await,
            },
            StorageOp::ReadBatches { store, from, limit } => StorageResponse::BatchesRead {
                id: self.id,
                result: AsyncStorage::read_batches(storage, store, *from, *limit).await,
            },
            StorageOp::BindSigningKey {
                public_key,
                signing_key,
            } => StorageResponse::SigningKeyBound {
                id: self.id,
                result: AsyncStorage::bind_signing_key(storage, public_key, signing_key).await,
            },
        }
    }
}
