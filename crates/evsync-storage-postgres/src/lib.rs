//! PostgreSQL storage for evsync: every tenant in one database, which
//! several evsync nodes share.
//!
//! SQLite keeps one file per tenant and one writer per file; a cluster of
//! nodes behind a load balancer needs one store they all write. This crate
//! keeps the storage contract ([`AsyncStorage`], proved by the shared
//! conformance suite) on PostgreSQL with any number of writers:
//!
//! - sequences are assigned inside the append's transaction from a per-log
//!   head row that the transaction locks, so they stay gapless and in commit
//!   order when two nodes append to one log at the same moment ([`schema`]);
//! - each commit that raises a log's head also sends a `NOTIFY` (delivered
//!   only at COMMIT), which the other nodes hear through [`listen::listen`]
//!   and hand to their engines as `handle_log_advanced`; since a
//!   notification can be missed (a dropped LISTEN connection), a node
//!   re-checks [`PgDatabase::heads`] whenever it (re)starts listening.
//!
//! Connections come from a [`deadpool_postgres`] pool over
//! [`tokio_postgres`]: the rust-postgres project's client, asynchronous and
//! pipelining, and the pool most tokio services put in front of it. Nothing
//! here blocks a thread, and a database that is down turns calls into
//! errors within seconds (connect and pool-wait timeouts), never a hang.

mod config;
pub mod listen;
pub mod schema;
mod snapshot;
mod storage;
#[cfg(feature = "test-support")]
pub mod testing;

pub use config::PgConfig;
pub use snapshot::Snapshot;
pub use storage::PgStorage;

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use evsync_core::storage::StorageError;
use evsync_core::wire::RemoteId;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

/// A tenant's row in `evsync_tenants`: its remoteId, and the generation
/// that tells this row from an earlier one of the same name (a tenant
/// deleted and recreated, or replaced by an import that kept its remoteId).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantIdentity {
    pub remote_id: RemoteId,
    pub generation: i64,
}

impl TenantIdentity {
    /// From a row of `tenant, remote_id, generation`.
    fn of_row(row: &tokio_postgres::Row) -> Result<Self, StorageError> {
        let bytes: &[u8] = row.get(1);
        let id: [u8; 16] = bytes
            .try_into()
            .map_err(|_| StorageError::new(format!("stored remoteId of {} bytes", bytes.len())))?;
        Ok(TenantIdentity {
            remote_id: RemoteId(id),
            generation: row.get(2),
        })
    }
}

/// How long a call waits for a free pooled connection before failing: a
/// pool exhausted by a stuck database must not queue requests forever.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long checking a pooled connection back out may take.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The bound on [`PgDatabase::ping`]: `/readyz` must answer promptly.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// One evsync node's handle on the database: a pool of connections, from
/// which each tenant's store ([`PgDatabase::tenant`]) borrows one per call.
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgDatabase {
    pool: Pool,
    redacted: Arc<str>,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDatabase")
            .field("database", &self.redacted)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// The head of one log, as [`PgDatabase::heads`] lists them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TenantLogHead {
    pub tenant: String,
    pub public_key: String,
    pub head: u64,
}

/// One v4 store of a tenant and its head, as
/// [`PgDatabase::store_heads`] lists them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TenantStoreHead {
    pub tenant: String,
    pub store: evsync_core::storage::StoreKey,
    pub head: u64,
}

impl PgDatabase {
    /// Builds the pool. No connection is opened until the first call, so a
    /// node starts (and answers `/readyz` with the reason) while the
    /// database is still down.
    pub fn new(config: &PgConfig) -> Result<PgDatabase, String> {
        let manager = Manager::from_config(
            config.pg.clone(),
            NoTls,
            ManagerConfig {
                // A closed connection is noticed without a round trip; a
                // broken one fails its next query, and the caller retries.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size())
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(config::CONNECT_TIMEOUT + Duration::from_secs(1)))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(config::SESSION_SETUP)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .map_err(|e| format!("cannot build the PostgreSQL pool: {e}"))?;
        Ok(PgDatabase {
            pool,
            redacted: config.redacted().into(),
        })
    }

    /// Brings the schema up to the version this build writes and returns
    /// the version now in place. Versioned steps ([`schema::SCHEMA`]) run
    /// in one transaction under `pg_advisory_xact_lock`, so several nodes
    /// starting at once are safe (the first migrates, the others then find
    /// nothing to do). A database whose version is newer than this build
    /// knows is refused, not written into.
    pub async fn migrate(&self) -> Result<u32, StorageError> {
        let mut client = self.client().await?;
        schema::migrate(&mut client).await
    }

    /// `SELECT 1` on a pooled connection within 2 s: for `/readyz`, which
    /// must say promptly whether this node can reach its storage.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let check = async {
            let client = self.client().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(pg_error("ping"))?;
            Ok(())
        };
        match tokio::time::timeout(PING_TIMEOUT, check).await {
            Ok(result) => result,
            Err(_) => Err(StorageError::new(format!(
                "postgres: ping: no answer from {} within {} s",
                self.redacted,
                PING_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The store of `tenant`. Tenants are isolated: the same publicKey in
    /// two tenants is two logs. Creates nothing until it is written.
    pub fn tenant(&self, tenant: &str) -> PgStorage {
        PgStorage::new(self.clone(), tenant)
    }

    /// Every tenant that has a row (a remoteId, a log with entries, or a
    /// revocation), in byte order.
    pub async fn tenants(&self) -> Result<Vec<String>, StorageError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_TENANTS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[])
            .await
            .map_err(pg_error("list tenants"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Whether `tenant` has a row ([`PgDatabase::tenants`]'s rule).
    pub async fn tenant_exists(&self, tenant: &str) -> Result<bool, StorageError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::TENANT_EXISTS)
            .await
            .map_err(pg_error("prepare"))?;
        let row = client
            .query_one(&stmt, &[&tenant])
            .await
            .map_err(pg_error("find tenant"))?;
        Ok(row.get(0))
    }

    /// The heads of every log with entries of `tenants`, in one query: a
    /// node re-checks these for the tenants it serves whenever a
    /// notification may have been missed (it just started listening).
    pub async fn heads(&self, tenants: &[String]) -> Result<Vec<TenantLogHead>, StorageError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_HEADS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&tenants])
            .await
            .map_err(pg_error("read heads"))?;
        rows.iter()
            .map(|row| {
                Ok(TenantLogHead {
                    tenant: row.get(0),
                    public_key: storage::decode_public_key(row.get(1))?,
                    head: storage::decode_sequence(row.get(2))?,
                })
            })
            .collect()
    }

    /// The heads of every v4 store with batches of `tenants`, in one query
    /// (re-checked with [`PgDatabase::heads`]).
    pub async fn store_heads(
        &self,
        tenants: &[String],
    ) -> Result<Vec<TenantStoreHead>, StorageError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_STORE_HEADS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&tenants])
            .await
            .map_err(pg_error("read store heads"))?;
        rows.iter()
            .map(|row| {
                let store = evsync_core::storage::StoreKey::new(
                    storage::decode_public_key(row.get(1))?,
                    storage::decode_public_key(row.get(2))?,
                );
                Ok(TenantStoreHead {
                    tenant: row.get(0),
                    store,
                    head: storage::decode_sequence(row.get(3))?,
                })
            })
            .collect()
    }

    /// The stored "tokens not before" instants (Unix ms) of those of
    /// `tenants` whose tokens were ever revoked, in one query: nodes
    /// re-check them with the heads, so a revocation ordered on another
    /// node closes this node's sockets even if its notification was lost.
    pub async fn revocations(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, u64)>, StorageError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_REVOCATIONS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&tenants])
            .await
            .map_err(pg_error("read revocations"))?;
        rows.iter()
            .map(|row| {
                let at =
                    evsync_core::storage::decode_tokens_not_before(row.get::<_, i64>(1) as f64)?;
                Ok((row.get(0), at))
            })
            .collect()
    }

    /// Removes every row of `tenant` (entries, logs, remoteId, settings, v4
    /// stores, batches and signing keys) in
    /// one transaction; true if there was any. Its logs are locked first in
    /// the order appends lock them, so a deletion racing an append waits
    /// for it instead of deadlocking. A log created by an append that
    /// commits while the deletion runs is not seen by it and stays. Every
    /// node is told at COMMIT (`{"t": tenant, "d": true}`), and finds out
    /// at its next re-check anyway (the remoteId is gone).
    pub async fn delete_tenant(&self, tenant: &str) -> Result<bool, StorageError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error("begin"))?;
        let removed = delete_rows(&tx, tenant).await?;
        if removed {
            // Delivered at COMMIT: every node closes the tenant's sockets.
            tx.execute(schema::NOTIFY_DROPPED, &[&tenant])
                .await
                .map_err(pg_error("notify"))?;
        }
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(removed)
    }

    /// Puts the tenant an import built under the name `staged` in
    /// `tenant`'s place, in one transaction: `tenant`'s rows (if any) are
    /// deleted first when `replace`, and every node is told, as for a
    /// deletion. `Ok(None)` when `tenant` has rows and `replace` is false
    /// (nothing changed); else whether rows were replaced.
    pub async fn install_tenant(
        &self,
        staged: &str,
        tenant: &str,
        replace: bool,
    ) -> Result<Option<bool>, StorageError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error("begin"))?;
        let exists: bool = tx
            .query_one(schema::TENANT_EXISTS, &[&tenant])
            .await
            .map_err(pg_error("find the tenant"))?
            .get(0);
        if exists && !replace {
            return Ok(None);
        }
        let replaced = delete_rows(&tx, tenant).await?;
        for sql in schema::RENAME_TENANT {
            tx.execute(sql, &[&staged, &tenant])
                .await
                .map_err(pg_error("install the import"))?;
        }
        tx.execute(schema::NOTIFY_DROPPED, &[&tenant])
            .await
            .map_err(pg_error("notify"))?;
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(Some(replaced))
    }

    /// The rows of those of `tenants` that have one, in one query: nodes
    /// re-check them with the heads, so a tenant deleted or replaced
    /// through another node is dropped here even if its notification was
    /// lost.
    pub async fn identities(
        &self,
        tenants: &[String],
    ) -> Result<Vec<(String, TenantIdentity)>, StorageError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_IDENTITIES)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&tenants])
            .await
            .map_err(pg_error("read tenant rows"))?;
        rows.iter()
            .map(|row| Ok((row.get(0), TenantIdentity::of_row(row)?)))
            .collect()
    }

    /// `tenant`'s row, if it has one.
    pub async fn identity(&self, tenant: &str) -> Result<Option<TenantIdentity>, StorageError> {
        let found = self.identities(&[tenant.to_owned()]).await?;
        Ok(found.into_iter().next().map(|(_, identity)| identity))
    }

    /// The value of a setting (`SHOW`) in a pooled session: what the
    /// tests check the pool's sessions with. Test machinery.
    #[cfg(feature = "test-support")]
    pub async fn show(&self, setting: &str) -> Result<String, StorageError> {
        let client = self.client().await?;
        let rows = client
            .simple_query(&format!("SHOW {setting}"))
            .await
            .map_err(pg_error("show"))?;
        rows.iter()
            .find_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| StorageError::new(format!("postgres: SHOW {setting}: no value")))
    }

    /// A pooled connection, or why there is none (no password in it).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Client, StorageError> {
        self.pool.get().await.map_err(|e| {
            let why = match e {
                PoolError::Timeout(_) => format!(
                    "no connection free within {} s (pool of {})",
                    POOL_WAIT_TIMEOUT.as_secs(),
                    self.pool.status().max_size
                ),
                PoolError::Backend(e) => PgError(&e).to_string(),
                PoolError::PostCreateHook(HookError::Backend(e)) => {
                    format!("setting up the session: {}", PgError(&e))
                }
                PoolError::Closed => "the pool is closed".into(),
                other => other.to_string(),
            };
            StorageError::new(format!(
                "postgres: cannot connect to {}: {why}",
                self.redacted
            ))
        })
    }
}

/// A tokio-postgres error as an operator wants to read it: for an error
/// the database reported, its severity, SQLSTATE and message (and detail);
/// otherwise the error and its cause (`error connecting to server:
/// Connection refused`). tokio-postgres never puts the password in either.
pub(crate) struct PgError<'a>(pub(crate) &'a tokio_postgres::Error);

impl std::fmt::Display for PgError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(
                f,
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            )?;
            if let Some(detail) = db.detail() {
                write!(f, " ({detail})")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(self.0);
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// Maps a tokio-postgres error to a [`StorageError`] naming what was done.
pub(crate) fn pg_error(context: &str) -> impl FnOnce(tokio_postgres::Error) -> StorageError + '_ {
    move |e| StorageError::new(format!("postgres: {context}: {}", PgError(&e)))
}

/// Deletes every row of `tenant` in `tx` (its logs locked first in the
/// order appends lock them, so a deletion racing an append waits for it
/// instead of deadlocking); true if there was any.
async fn delete_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
) -> Result<bool, StorageError> {
    let lock = tx
        .prepare_cached(schema::LOCK_TENANT_LOGS)
        .await
        .map_err(pg_error("prepare"))?;
    let ids: Vec<i64> = tx
        .query(&lock, &[&tenant])
        .await
        .map_err(pg_error("lock logs"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let delete_entries = tx
        .prepare_cached(schema::DELETE_ENTRIES)
        .await
        .map_err(pg_error("prepare"))?;
    let statement = &delete_entries;
    let deleted = futures_util::future::try_join_all(
        ids.iter()
            .map(|id| async move { tx.execute(statement, &[id]).await }),
    )
    .await
    .map_err(pg_error("delete entries"))?;
    let mut removed: u64 = deleted.iter().sum();
    let stores: Vec<i64> = tx
        .query(schema::LOCK_TENANT_STORES, &[&tenant])
        .await
        .map_err(pg_error("lock v4 stores"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for id in &stores {
        for sql in schema::DELETE_STORE_ROWS {
            removed += tx
                .execute(sql, &[id])
                .await
                .map_err(pg_error("delete v4 batches"))?;
        }
    }
    for sql in [
        schema::DELETE_LOGS,
        schema::DELETE_REMOTE_ID,
        schema::DELETE_SETTINGS,
        schema::DELETE_V4[0],
        schema::DELETE_V4[1],
    ] {
        removed += tx
            .execute(sql, &[&tenant])
            .await
            .map_err(pg_error("delete tenant"))?;
    }
    Ok(removed > 0)
}
