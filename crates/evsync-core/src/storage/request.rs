//! Storage work the engine asks for, and the answers it takes back.

use super::{AppendBatch, Appended, AsyncStorage, ReadLimit, Storage, StorageError};
use crate::wire::{RemoteEntry, Sequence};

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
        }
    }
}
