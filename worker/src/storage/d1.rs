//! The D1 backend (`SYNC_DB`), for deployments that want every tenant's logs
//! in one queryable database.
//!
//! Tenant isolation: the original kept all tenants in the same tables
//! without a tenant key, so tenants saw each other's logs. Here every row is
//! keyed by tenant (`tenant` leads every primary key and unique index, and
//! every statement filters on it). One fixed set of tables rather than a
//! table set per tenant because D1 schema changes are slow and serialised,
//! a database has a bounded number of tables, and a fixed schema migrates
//! with one statement list; deleting a tenant is one `batch()` of
//! `DELETE … WHERE tenant = ?`, and an import stages its rows under another
//! key and renames them in one `batch()` (`crate::tenant_ops`). The
//! tenant's Durable Object is its only writer, so sequences are computed
//! from the head it reads; should a second writer ever race it,
//! the primary key and unique index make the losing transaction fail (and
//! its replica retry) rather than corrupt the log.
//!
//! D1 is reached over the network: calls are asynchronous, and the engine's
//! requests run with
//! [`StorageRequest::execute_async`](evsync_core::storage::StorageRequest::execute_async).
//! An append is one read round trip (heads and duplicates) and one `batch()`
//! of inserts, which D1 runs as a single transaction.
//!
//! The tables and their versions are declared in the core
//! ([`evsync_core::storage::schema::d1`]) next to the other SQL backends';
//! this file runs them, recording the version in `evsync_schema`.

mod batches;

use super::plan::{self, Existing};
use super::values::MAX_SAFE_INTEGER;
use crate::js;
use evsync_core::storage::schema::{d1 as layout, remote_id};
use evsync_core::storage::{
    AppendBatch, Appended, AsyncStorage, BatchAppended, BatchWrite, LogHead, ReadLimit,
    SigningKeyBinding, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch,
    check_tokens_not_before, decode_tokens_not_before, remote_id_taken,
};
use evsync_core::wire::{RemoteEntry, RemoteId, Sequence};
use js_sys::{Array, ArrayBuffer, Uint8Array};
use serde::Deserialize;
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::{D1Database, D1PreparedStatement};

thread_local! {
    /// Set once this wasm instance has checked the schema: every Durable
    /// Object of the isolate shares the database.
    static MIGRATED: Cell<bool> = const { Cell::new(false) };
}

/// One tenant's logs in the shared D1 database.
#[derive(Clone)]
pub struct D1Storage {
    db: Rc<D1Database>,
    tenant: String,
}

/// Every table with rows of a tenant, keyed by its `tenant` column.
const TENANT_TABLES: [&str; 6] = [
    "evsync_entries",
    "evsync_tenants",
    "evsync_tenant_settings",
    "evsync_v4_batches",
    "evsync_v4_entry_ids",
    "evsync_v4_signing_keys",
];

/// Where an import into `tenant` stages its rows until the whole file was
/// read and checked. `~` is not allowed in tenant names, so no tenant has
/// this key; it is listed by nobody and emptied before each import (the
/// tenant's object runs one import at a time).
pub fn staging_key(tenant: &str) -> String {
    format!("~import~{tenant}")
}

/// One tenant in the admin API's list, as the database has it.
#[derive(Deserialize)]
pub struct TenantRow {
    pub tenant: String,
    /// The remoteId as hex (uppercase, 32 digits).
    pub hex: String,
    pub logs: f64,
    pub entries: f64,
    pub bytes: f64,
    /// Its Effect v4 stores and the entries in them.
    pub v4_stores: f64,
    pub v4_entries: f64,
}

/// Every tenant with a remoteId, by name, with its figures
/// (`GET /admin/tenants` in D1 mode). One statement: one scan of
/// `evsync_entries` (every entry of every tenant counts as a row read), of
/// `evsync_v4_batches` (every batch) and of `evsync_tenants`. Staging keys
/// of imports under way are left out.
pub async fn list_tenants(db: D1Database) -> Result<Vec<TenantRow>, StorageError> {
    let store = D1Storage::open(db, "").await?;
    let rows = store
        .db
        .prepare(
            "SELECT t.tenant AS tenant, hex(t.remote_id) AS hex,
                coalesce(s.logs, 0) AS logs, coalesce(s.entries, 0) AS entries,
                coalesce(s.bytes, 0) AS bytes,
                coalesce(v.stores, 0) AS v4_stores, coalesce(v.entries, 0) AS v4_entries
            FROM evsync_tenants t LEFT JOIN (
                SELECT tenant, count(DISTINCT public_key) AS logs, count(*) AS entries,
                    sum(length(iv) + length(entry_id) + length(encrypted_entry)) AS bytes
                FROM evsync_entries GROUP BY tenant
            ) s ON s.tenant = t.tenant
            LEFT JOIN (
                SELECT tenant, count(*) AS stores, sum(head) AS entries FROM (
                    SELECT tenant, MAX(last_sequence) AS head FROM evsync_v4_batches
                    GROUP BY tenant, public_key, store_id
                ) GROUP BY tenant
            ) v ON v.tenant = t.tenant
            ORDER BY t.tenant",
        )
        .all()
        .await
        .map_err(d1_error)?
        .results::<TenantRow>()
        .map_err(d1_error)?;
    Ok(rows
        .into_iter()
        .filter(|row| evsync_core::access::is_valid_tenant(&row.tenant))
        .collect())
}

/// A remoteId as [`list_tenants`] gives it.
pub fn remote_id_from_hex(hex: &str) -> Result<RemoteId, StorageError> {
    remote_id::decode(&from_hex(hex)?)
}

#[derive(Deserialize)]
struct VersionRow {
    version: f64,
}

#[derive(Deserialize)]
struct HexRow {
    hex: String,
}

#[derive(Deserialize)]
struct MsRow {
    ms: f64,
}

#[derive(Deserialize)]
struct StatsRow {
    logs: f64,
    entries: f64,
    bytes: f64,
}

#[derive(Deserialize)]
struct HeadRow {
    head: f64,
}

#[derive(Deserialize)]
struct LogHeadRow {
    public_key: String,
    head: f64,
}

#[derive(Deserialize)]
struct ExistingRow {
    id: String,
    seq: f64,
}

impl D1Storage {
    /// Opens `tenant`'s store, creating or upgrading the shared schema.
    pub async fn open(db: D1Database, tenant: &str) -> Result<Self, StorageError> {
        let store = D1Storage {
            db: Rc::new(db),
            tenant: tenant.to_string(),
        };
        if !MIGRATED.with(Cell::get) {
            store.migrate().await?;
            MIGRATED.with(|m| m.set(true));
        }
        Ok(store)
    }

    /// The store of another key in the same database: an import's staging
    /// key ([`staging_key`]).
    pub fn for_key(&self, key: &str) -> D1Storage {
        D1Storage {
            db: Rc::clone(&self.db),
            tenant: key.to_string(),
        }
    }

    /// Deletes every row of this tenant (entries, remoteId, settings, v4
    /// batches and signing keys) in one
    /// `batch()`: one transaction, so all of them or none. The admin API's
    /// delete, an import's clean-up of its staging key, the self-test's
    /// clean-up.
    pub async fn delete_tenant(&self) -> Result<(), StorageError> {
        let statements = TENANT_TABLES
            .iter()
            .map(|table| self.statement(&format!("DELETE FROM {table} WHERE tenant = ?1"), &[]))
            .collect::<Result<Vec<_>, _>>()?;
        self.db.batch(statements).await.map_err(d1_error)?;
        Ok(())
    }

    /// Puts `staged`'s rows (an import, complete and checked) in this
    /// tenant's place in one `batch()`, one transaction: this tenant's rows
    /// are deleted and the staged rows renamed to it, so the tenant is
    /// either wholly replaced or, on failure, untouched. Rows written for
    /// the tenant while the import was staged are replaced with the rest.
    pub async fn replace_with(&self, staged: &D1Storage) -> Result<(), StorageError> {
        let mut statements = Vec::with_capacity(2 * TENANT_TABLES.len());
        for table in TENANT_TABLES {
            statements
                .push(self.statement(&format!("DELETE FROM {table} WHERE tenant = ?1"), &[])?);
        }
        for table in TENANT_TABLES {
            statements.push(self.statement(
                &format!("UPDATE {table} SET tenant = ?1 WHERE tenant = ?2"),
                &[JsValue::from_str(&staged.tenant)],
            )?);
        }
        self.db.batch(statements).await.map_err(d1_error)?;
        Ok(())
    }

    /// Records schema version `version` (lower than the current one) and
    /// migrates again, as the first open in a new isolate would; returns
    /// the version recorded afterwards. The self-test's check that a D1
    /// database at an older version is brought up to date, and that every
    /// step can run again over tables that exist (isolates of one deploy
    /// migrate concurrently). Nothing is dropped: other tenants keep their
    /// rows, and an isolate that opens meanwhile only migrates too.
    #[cfg(feature = "selftest")]
    pub async fn remigrate_from(&self, version: i64) -> Result<i64, StorageError> {
        self.db
            .prepare("UPDATE evsync_schema SET version = ?1 WHERE id = 1")
            .bind(&[JsValue::from_f64(version as f64)])
            .map_err(d1_error)?
            .run()
            .await
            .map_err(d1_error)?;
        self.migrate().await?;
        let row = self
            .db
            .prepare(layout::SELECT_VERSION)
            .first::<VersionRow>(None)
            .await
            .map_err(d1_error)?
            .ok_or_else(|| StorageError::new("no schema version recorded"))?;
        Ok(row.version as i64)
    }

    /// Runs the core's pending steps and records the new version in one
    /// `batch()` (one transaction).
    async fn migrate(&self) -> Result<(), StorageError> {
        let results = self
            .db
            .batch(vec![
                self.db.prepare(layout::CREATE_VERSION_TABLE),
                self.db.prepare(layout::SELECT_VERSION),
            ])
            .await
            .map_err(d1_error)?;
        let stored = results
            .get(1)
            .map(|r| r.results::<VersionRow>())
            .transpose()
            .map_err(d1_error)?
            .and_then(|rows| rows.into_iter().next())
            .map_or(0, |row| row.version as i64);
        let steps = layout::SCHEMA.pending(stored)?;
        let Some(last) = steps.last() else {
            return Ok(());
        };
        let mut statements: Vec<D1PreparedStatement> = steps
            .iter()
            .flat_map(|step| step.statements.iter())
            .map(|statement| self.db.prepare(*statement))
            .collect();
        statements.push(
            self.db
                .prepare(layout::RECORD_VERSION)
                .bind(&[JsValue::from_f64(layout::SCHEMA.version() as f64)])
                .map_err(d1_error)?,
        );
        // One batch for every step: D1 does not say which statement
        // failed, so the error names the version being reached.
        self.db
            .batch(statements)
            .await
            .map_err(|e| layout::SCHEMA.step_failed(last, e))?;
        Ok(())
    }

    /// The tenant's stored remoteId, if one was ever created; creates none
    /// (the admin figures read it).
    pub async fn stored_remote_id(&self) -> Result<Option<RemoteId>, StorageError> {
        self.statement(layout::SELECT_REMOTE_ID, &[])?
            .first::<HexRow>(None)
            .await
            .map_err(d1_error)?
            .map(|row| remote_id::decode(&from_hex(&row.hex)?))
            .transpose()
    }

    /// Stores `candidate` as the tenant's remoteId unless one is stored,
    /// and reads back whichever is, in one `batch()` (one round trip, one
    /// transaction): when two isolates race, both answer with the first.
    async fn store_remote_id(&self, candidate: &RemoteId) -> Result<RemoteId, StorageError> {
        let results = self
            .db
            .batch(vec![
                self.statement(layout::INSERT_REMOTE_ID, &[bytes_param(&candidate.0)])?,
                self.statement(layout::SELECT_REMOTE_ID, &[])?,
            ])
            .await
            .map_err(d1_error)?;
        let row = results
            .get(1)
            .map(|r| r.results::<HexRow>())
            .transpose()
            .map_err(d1_error)?
            .and_then(|rows| rows.into_iter().next())
            .ok_or_else(|| StorageError::new("remoteId was not stored"))?;
        remote_id::decode(&from_hex(&row.hex)?)
    }

    /// A statement whose `?1` is this tenant and whose `?2…` are `params`.
    fn statement(
        &self,
        sql: &str,
        params: &[JsValue],
    ) -> Result<D1PreparedStatement, StorageError> {
        let mut all = Vec::with_capacity(params.len() + 1);
        all.push(JsValue::from_str(&self.tenant));
        all.extend_from_slice(params);
        debug_assert!(all.len() <= plan::MAX_BOUND_PARAMETERS);
        self.db.prepare(sql).bind(&all).map_err(d1_error)
    }

    async fn lookups(
        &self,
        batches: &[AppendBatch],
    ) -> Result<(HashMap<String, Sequence>, Existing), StorageError> {
        // Statement list: per publicKey its head, then its duplicate lookups.
        let mut keys: Vec<&str> = Vec::new();
        let mut statements = Vec::new();
        let mut kinds = Vec::new();
        for batch in batches {
            let key = batch.public_key.as_str();
            if !keys.contains(&key) {
                keys.push(key);
                statements.push(self.statement(
                    "SELECT COALESCE(MAX(sequence), 0) AS head FROM evsync_entries
                     WHERE tenant = ?1 AND public_key = ?2",
                    &[JsValue::from_str(key)],
                )?);
                kinds.push((key, true));
            }
            for ids in plan::lookup_chunks(&batch.entries, 2) {
                let sql = format!(
                    "SELECT hex(entry_id) AS id, sequence AS seq FROM evsync_entries
                     WHERE tenant = ?1 AND public_key = ?2 AND entry_id IN ({})",
                    plan::placeholders(3, ids.len())
                );
                let mut params = vec![JsValue::from_str(key)];
                params.extend(ids.iter().map(|e| bytes_param(&e.entry_id)));
                statements.push(self.statement(&sql, &params)?);
                kinds.push((key, false));
            }
        }
        let results = self.db.batch(statements).await.map_err(d1_error)?;
        let mut heads = HashMap::new();
        let mut existing = Existing::new();
        for ((key, is_head), result) in kinds.into_iter().zip(results) {
            if is_head {
                let head = result
                    .results::<HeadRow>()
                    .map_err(d1_error)?
                    .first()
                    .map_or(0.0, |r| r.head);
                heads.insert(key.to_string(), head as Sequence);
            } else {
                for row in result.results::<ExistingRow>().map_err(d1_error)? {
                    let id = from_hex(&row.id)?;
                    existing.insert((key.to_string(), id.into()), row.seq as Sequence);
                }
            }
        }
        Ok((heads, existing))
    }
}

impl AsyncStorage for D1Storage {
    /// The shared rule ([`remote_id`]): insert-or-ignore a fresh one, then
    /// read back whichever was stored first, in one round trip.
    async fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        self.store_remote_id(&remote_id::create(js::random_bytes())?)
            .await
    }

    async fn append(
        &mut self,
        batches: &[AppendBatch],
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        if batches.iter().all(|b| b.entries.is_empty()) {
            return Ok(batches.iter().map(|_| Vec::new()).collect());
        }
        let (heads, existing) = self.lookups(batches).await?;
        let plan = plan::plan_append(batches, &existing, &heads);
        // ?1 tenant, ?2 publicKey, ?3 iv; per row: sequence, entryId, ciphertext.
        let mut statements = Vec::new();
        for run in plan::insert_runs(&plan.rows, 3, 3) {
            let rows = &plan.rows[run];
            let batch = &batches[rows[0].batch];
            let sql = plan::multi_row_insert(
                "INSERT INTO evsync_entries (tenant, public_key, iv, sequence, entry_id, encrypted_entry) SELECT",
                "?1, ?2, ?3, column1, column2, column3",
                3,
                3,
                rows.len(),
            );
            let mut params = vec![JsValue::from_str(&batch.public_key), bytes_param(&batch.iv)];
            for row in rows {
                params.push(JsValue::from_f64(row.sequence as f64));
                params.push(bytes_param(&row.entry.entry_id));
                params.push(bytes_param(&row.entry.encrypted_entry));
            }
            statements.push(self.statement(&sql, &params)?);
        }
        if !statements.is_empty() {
            // One batch() is one transaction: all rows or none.
            self.db.batch(statements).await.map_err(d1_error)?;
        }
        Ok(plan.outcomes)
    }

    async fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let statement = self.statement(
            &plan::read_sql("tenant = ?1 AND public_key = ?2", 3),
            &[
                JsValue::from_str(public_key),
                JsValue::from_f64(from.min(MAX_SAFE_INTEGER) as f64),
                JsValue::from_f64((limit.max_entries as u64).min(MAX_SAFE_INTEGER) as f64),
                JsValue::from_f64((limit.max_bytes as u64).min(MAX_SAFE_INTEGER) as f64),
            ],
        )?;
        let rows = statement.raw_js_value().await.map_err(d1_error)?;
        rows.into_iter().map(entry_from_row).collect()
    }

    async fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        self.statement(layout::SELECT_TOKENS_NOT_BEFORE, &[])?
            .first::<MsRow>(None)
            .await
            .map_err(d1_error)?
            .map(|row| decode_tokens_not_before(row.ms))
            .transpose()
    }

    /// Raise and read back in one `batch()` (one transaction): the value
    /// returned is the one committed, even when another isolate raises it
    /// at the same time.
    async fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        // Exact as a JS number: checked to be at most 2^53 - 1.
        let not_before_ms = check_tokens_not_before(not_before_ms)?;
        let results = self
            .db
            .batch(vec![
                self.statement(
                    layout::RAISE_TOKENS_NOT_BEFORE,
                    &[JsValue::from_f64(not_before_ms as f64)],
                )?,
                self.statement(layout::SELECT_TOKENS_NOT_BEFORE, &[])?,
            ])
            .await
            .map_err(d1_error)?;
        let row = results
            .get(1)
            .map(|r| r.results::<MsRow>())
            .transpose()
            .map_err(d1_error)?
            .and_then(|rows| rows.into_iter().next())
            .ok_or_else(|| StorageError::new("tokens_not_before was not stored"))?;
        decode_tokens_not_before(row.ms)
    }

    /// One scan of the tenant's rows ([`layout::SELECT_STATS`]). No last
    /// write time: the object keeps that in memory (`Driver`).
    async fn stats(&mut self) -> Result<StoreStats, StorageError> {
        let row = self
            .statement(layout::SELECT_STATS, &[])?
            .first::<StatsRow>(None)
            .await
            .map_err(d1_error)?
            .ok_or_else(|| StorageError::new("D1 returned no stats row"))?;
        Ok(StoreStats {
            logs: row.logs as u64,
            entries: row.entries as u64,
            bytes: row.bytes as u64,
            last_write_ms: None,
        })
    }

    /// One statement ([`layout::SELECT_LOG_HEADS`]), so one snapshot; the
    /// database orders the keys by their bytes.
    async fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        let rows = self
            .statement(layout::SELECT_LOG_HEADS, &[])?
            .all()
            .await
            .map_err(d1_error)?
            .results::<LogHeadRow>()
            .map_err(d1_error)?;
        Ok(rows
            .into_iter()
            .map(|row| LogHead {
                public_key: row.public_key,
                head: row.head as Sequence,
            })
            .collect())
    }

    /// The same insert-or-ignore and read back as [`AsyncStorage::remote_id`],
    /// with the tenant's remoteId instead of a fresh one: whichever is
    /// stored wins. Nothing is cached, so the read back is the stored one.
    async fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        let held = self.store_remote_id(&remote_id).await?;
        if held != remote_id {
            return Err(remote_id_taken(held, remote_id));
        }
        Ok(())
    }

    async fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        self.append_v4(writes).await
    }

    async fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        self.read_v4(store, from, limit).await
    }

    async fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        self.bind_v4(public_key, signing_key).await
    }

    async fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        self.list_v4_stores().await
    }

    async fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        self.list_v4_bindings().await
    }
}

fn entry_from_row(row: JsValue) -> Result<RemoteEntry, StorageError> {
    let row: Array = row
        .dyn_into()
        .map_err(|_| StorageError::new("D1 returned a row that is not an array"))?;
    let sequence = row
        .get(0)
        .as_f64()
        .ok_or_else(|| StorageError::new("D1 returned a non-numeric sequence"))?;
    Ok(RemoteEntry {
        sequence: sequence as Sequence,
        iv: bytes_from(row.get(1))?.into(),
        entry_id: bytes_from(row.get(2))?.into(),
        encrypted_entry: bytes_from(row.get(3))?.into(),
    })
}

/// Bytes as a D1 blob parameter.
fn bytes_param(bytes: &[u8]) -> JsValue {
    Uint8Array::from(bytes).buffer().into()
}

/// A blob column as D1 returns it: an `ArrayBuffer`, a typed array, or an
/// array of byte values, depending on the API and runtime version.
fn bytes_from(value: JsValue) -> Result<Vec<u8>, StorageError> {
    if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        return Ok(Uint8Array::new(buffer).to_vec());
    }
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        return Ok(array.to_vec());
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        return array
            .iter()
            .map(|v| {
                v.as_f64()
                    .filter(|n| (0.0..=255.0).contains(n))
                    .map(|n| n as u8)
                    .ok_or_else(|| StorageError::new("D1 returned a blob with a non-byte value"))
            })
            .collect();
    }
    Err(StorageError::new(format!(
        "D1 returned {value:?} where a blob was expected"
    )))
}

fn from_hex(hex: &str) -> Result<Vec<u8>, StorageError> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(StorageError::new("D1 returned invalid hex")),
    };
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(StorageError::new("D1 returned hex of odd length"));
    }
    bytes
        .chunks(2)
        .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn d1_error(err: worker::Error) -> StorageError {
    StorageError::new(format!("D1: {err}"))
}
