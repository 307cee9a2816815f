//! The two places a tenant's logs can live, and the choice between them.
//!
//! - [`do_sql`]: the Durable Object's own SQLite (the default): one
//!   database per tenant, synchronous calls.
//! - [`d1`]: the `SYNC_DB` D1 database, shared by all tenants (every row
//!   keyed by tenant), asynchronous calls.
//!
//! Both implement the core's storage contract and pass its conformance
//! suite (run inside workerd by the self-test route). Their tables, and
//! how a database is migrated and its remoteId made, are declared in the
//! core next to the native server's (`evsync_core::storage::schema`).

mod batch_plan;
pub mod d1;
pub mod do_sql;
mod plan;
mod values;

use crate::config::{self, StorageChoice};
use d1::D1Storage;
use do_sql::DoSqlStorage;
use evsync_core::storage::{
    AppendBatch, Appended, AsyncStorage, BatchAppended, BatchWrite, LogHead, ReadLimit,
    SigningKeyBinding, StorageError, StorageRequest, StorageResponse, StoreHead, StoreKey,
    StoreStats, StoredBatch, V4Figures,
};
use evsync_core::wire::RemoteId;
use evsync_core::wire::{RemoteEntry, Sequence};
use worker::{D1Database, Env, State};

/// The storage choice, as the original makes it: `SYNC_STORAGE` `"do"` or
/// `"d1"` forces one (`"d1"` without a `SYNC_DB` binding is an error);
/// unset means D1 when `SYNC_DB` is bound, else DO SQLite. `Some` is the D1
/// database to use, `None` Durable Object SQLite.
pub fn chosen_d1(env: &Env) -> Result<Option<D1Database>, String> {
    let choice = StorageChoice::from_env(env);
    let d1 = env.d1(config::D1_BINDING).ok();
    let use_d1 = match choice {
        StorageChoice::DurableObject => false,
        StorageChoice::D1 if d1.is_none() => {
            return Err(format!(
                "SYNC_STORAGE is \"d1\" but no D1 database is bound as {}.",
                config::D1_BINDING
            ));
        }
        StorageChoice::D1 => true,
        StorageChoice::Auto => d1.is_some(),
    };
    Ok(d1.filter(|_| use_d1))
}

/// The backend a Durable Object runs its engine's storage requests on.
#[derive(Clone)]
pub enum Backend {
    DurableObject(DoSqlStorage),
    D1(D1Storage),
}

impl Backend {
    /// Chooses ([`chosen_d1`]) and opens the backend. The error is the
    /// reason the object answers `503` with.
    pub async fn open(state: &State, env: &Env, tenant: &str) -> Result<Backend, String> {
        match chosen_d1(env)? {
            Some(db) => D1Storage::open(db, tenant)
                .await
                .map(Backend::D1)
                .map_err(|e| format!("D1 storage unavailable: {e}")),
            None => DoSqlStorage::open(&state.storage())
                .map(Backend::DurableObject)
                .map_err(|e| format!("Durable Object storage unavailable: {e}")),
        }
    }

    /// A name for the log line that reports the choice.
    pub fn describe(&self) -> &'static str {
        match self {
            Backend::DurableObject(_) => "Durable Object SQLite",
            Backend::D1(_) => "D1 (SYNC_DB)",
        }
    }

    /// The tenant's remoteId, created on first use.
    pub async fn remote_id(&self) -> Result<RemoteId, String> {
        let result = match self.clone() {
            Backend::DurableObject(mut s) => AsyncStorage::remote_id(&mut s).await,
            Backend::D1(mut s) => s.remote_id().await,
        };
        result.map_err(|e| e.message)
    }

    /// The tenant's tokens' "not before" (Unix ms; signed tokens minted
    /// before it are refused), if it was ever revoked.
    pub async fn tokens_not_before(&self) -> Result<Option<u64>, String> {
        let result = match self.clone() {
            Backend::DurableObject(mut s) => AsyncStorage::tokens_not_before(&mut s).await,
            Backend::D1(mut s) => s.tokens_not_before().await,
        };
        result.map_err(|e| e.message)
    }

    /// Raises the tenant's tokens' "not before" to `at_ms`, durably; the
    /// instant now stored.
    pub async fn set_tokens_not_before(&self, at_ms: u64) -> Result<u64, String> {
        let result = match self.clone() {
            Backend::DurableObject(mut s) => {
                AsyncStorage::set_tokens_not_before(&mut s, at_ms).await
            }
            Backend::D1(mut s) => s.set_tokens_not_before(at_ms).await,
        };
        result.map_err(|e| e.message)
    }

    /// What the tenant's store holds (the admin figures).
    pub async fn stats(&self) -> Result<StoreStats, String> {
        let result = match self.clone() {
            Backend::DurableObject(mut s) => AsyncStorage::stats(&mut s).await,
            Backend::D1(mut s) => s.stats().await,
        };
        result.map_err(|e| e.message)
    }

    /// The tenant's Effect v4 figures (the admin figures), from its
    /// stores' heads.
    pub async fn v4_figures(&self) -> Result<V4Figures, String> {
        let result = match self.clone() {
            Backend::DurableObject(mut s) => AsyncStorage::stores(&mut s).await,
            Backend::D1(mut s) => s.stores().await,
        };
        result
            .map(|heads| V4Figures::of(&heads))
            .map_err(|e| e.message)
    }

    /// The tenant's remoteId if it has one, creating none.
    pub async fn stored_remote_id(&self) -> Result<Option<RemoteId>, String> {
        let result = match self {
            Backend::DurableObject(s) => s.stored_remote_id(),
            Backend::D1(s) => s.stored_remote_id().await,
        };
        result.map_err(|e| e.message)
    }

    /// Whether the tenant has anything stored: a remoteId (every tenant
    /// that had a connection or an import has one) or a revocation. Creates
    /// nothing.
    pub async fn has_data(&self) -> Result<bool, String> {
        match self {
            Backend::DurableObject(s) => s.has_data().map_err(|e| e.message),
            Backend::D1(_) => Ok(self.stored_remote_id().await?.is_some()
                || self.tokens_not_before().await?.is_some()),
        }
    }

    /// Runs one engine storage request: synchronously on DO SQLite, so no
    /// other event interleaves; asynchronously on D1.
    pub async fn execute(&self, request: &StorageRequest) -> StorageResponse {
        match self.clone() {
            Backend::DurableObject(mut s) => request.execute(&mut s),
            Backend::D1(mut s) => request.execute_async(&mut s).await,
        }
    }
}

/// Either backend through the storage contract, for the code that works on
/// any store (the export and import loops of `evsync_core::export`).
impl AsyncStorage for Backend {
    async fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::remote_id(s).await,
            Backend::D1(s) => s.remote_id().await,
        }
    }

    async fn append(
        &mut self,
        batches: &[AppendBatch],
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::append(s, batches).await,
            Backend::D1(s) => s.append(batches).await,
        }
    }

    async fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::read(s, public_key, from, limit).await,
            Backend::D1(s) => s.read(public_key, from, limit).await,
        }
    }

    async fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::tokens_not_before(s).await,
            Backend::D1(s) => s.tokens_not_before().await,
        }
    }

    async fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        match self {
            Backend::DurableObject(s) => {
                AsyncStorage::set_tokens_not_before(s, not_before_ms).await
            }
            Backend::D1(s) => s.set_tokens_not_before(not_before_ms).await,
        }
    }

    async fn stats(&mut self) -> Result<StoreStats, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::stats(s).await,
            Backend::D1(s) => s.stats().await,
        }
    }

    async fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::logs(s).await,
            Backend::D1(s) => s.logs().await,
        }
    }

    async fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::adopt_remote_id(s, remote_id).await,
            Backend::D1(s) => s.adopt_remote_id(remote_id).await,
        }
    }
    async fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::append_batches(s, writes).await,
            Backend::D1(s) => s.append_batches(writes).await,
        }
    }

    async fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::read_batches(s, store, from, limit).await,
            Backend::D1(s) => s.read_batches(store, from, limit).await,
        }
    }

    async fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        match self {
            Backend::DurableObject(s) => {
                AsyncStorage::bind_signing_key(s, public_key, signing_key).await
            }
            Backend::D1(s) => s.bind_signing_key(public_key, signing_key).await,
        }
    }

    async fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::stores(s).await,
            Backend::D1(s) => s.stores().await,
        }
    }

    async fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        match self {
            Backend::DurableObject(s) => AsyncStorage::bindings(s).await,
            Backend::D1(s) => s.bindings().await,
        }
    }
}
