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

pub mod d1;
pub mod do_sql;
mod plan;
mod values;

use crate::config::{self, StorageChoice};
use d1::D1Storage;
use do_sql::DoSqlStorage;
use evsync_core::storage::{AsyncStorage, StorageRequest, StorageResponse, StoreStats};
use evsync_core::wire::RemoteId;
use worker::{Env, State};

/// The backend a Durable Object runs its engine's storage requests on.
#[derive(Clone)]
pub enum Backend {
    DurableObject(DoSqlStorage),
    D1(D1Storage),
}

impl Backend {
    /// Chooses and opens the backend as the original does: `SYNC_STORAGE`
    /// `"do"` or `"d1"` forces one (`"d1"` without a `SYNC_DB` binding is an
    /// error); unset means D1 when `SYNC_DB` is bound, else DO SQLite.
    /// The error is the reason the object answers `503` with.
    pub async fn open(state: &State, env: &Env, tenant: &str) -> Result<Backend, String> {
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
        match d1.filter(|_| use_d1) {
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

    /// The tenant's remoteId if it has one, creating none.
    pub async fn stored_remote_id(&self) -> Result<Option<RemoteId>, String> {
        let result = match self {
            Backend::DurableObject(s) => s.stored_remote_id(),
            Backend::D1(s) => s.stored_remote_id().await,
        };
        result.map_err(|e| e.message)
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
