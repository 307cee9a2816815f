//! The default backend: the Durable Object's own SQLite (`ctx.storage.sql`).
//!
//! One Durable Object per tenant, so one database per tenant: tables need
//! no tenant column. Calls are synchronous (the database lives inside the
//! object), so the engine's storage requests run with
//! [`StorageRequest::execute`](evsync_core::storage::StorageRequest::execute)
//! and no other event can interleave with an append. Appends run inside
//! `transactionSync`, so a batch is stored whole or not at all; so do an
//! operator's delete and an import's replacement of the whole tenant
//! ([`DoSqlStorage::delete_tenant`], [`DoSqlStorage::replace_with`]).
//!
//! The tables and their versions are declared in the core
//! ([`evsync_core::storage::schema::do_sql`]) next to the other SQL
//! backends'; this file runs them, recording the version in `evsync_meta`.

mod batches;

use super::plan::{self, Existing};
use super::values::{blob, int, into_blob, into_text, param_blob, param_int};
use crate::js;
use evsync_core::storage::schema::{do_sql as layout, remote_id};
use evsync_core::storage::{
    AppendBatch, Appended, BatchAppended, BatchWrite, LogHead, ReadLimit, SigningKeyBinding,
    Storage, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch, check_tokens_not_before,
    decode_tokens_not_before, remote_id_taken,
};
use evsync_core::wire::{RemoteEntry, RemoteId, Sequence};
use std::collections::HashMap;
use wasm_bindgen::JsValue;
use worker::{SqlStorage, SqlStorageValue};

/// Every table of the tenant's data besides `evsync_meta` (which also holds
/// the schema version): what a deletion empties and the self-test drops.
const TABLES: [&str; 5] = [
    "evsync_entries",
    "evsync_tenant_settings",
    "evsync_v4_batches",
    "evsync_v4_entry_ids",
    "evsync_v4_signing_keys",
];

/// A tenant's logs in its Durable Object's SQLite database.
#[derive(Clone)]
pub struct DoSqlStorage {
    /// `ctx.storage`, for `transactionSync`.
    storage: JsValue,
    sql: SqlStorage,
    /// True inside [`DoSqlStorage::replace_with`]: appends join its
    /// transaction instead of opening their own.
    in_transaction: bool,
}

impl DoSqlStorage {
    /// Opens the store, creating or upgrading the schema. Fails (and the
    /// object answers 503) on a schema newer than this code.
    pub fn open(storage: &worker::Storage) -> Result<Self, StorageError> {
        let store = DoSqlStorage {
            storage: AsRef::<JsValue>::as_ref(storage.as_raw()).clone(),
            sql: storage.sql(),
            in_transaction: false,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Drops every table of this store: the self-test's "fresh store".
    #[cfg(feature = "selftest")]
    pub fn wipe(storage: &worker::Storage) -> Result<(), StorageError> {
        let sql = storage.sql();
        for table in TABLES.iter().chain(["evsync_meta"].iter()) {
            exec(&sql, &format!("DROP TABLE IF EXISTS {table}"), vec![])?;
        }
        Ok(())
    }

    /// Whether the tenant has anything stored: a remoteId or a revocation
    /// (see `Backend::has_data`). Synchronous.
    pub fn has_data(&self) -> Result<bool, StorageError> {
        Ok(self.stored_remote_id()?.is_some()
            || Storage::tokens_not_before(&mut self.clone())?.is_some())
    }

    /// Deletes the tenant's data (entries, remoteId, settings, v4 batches
    /// and signing keys) in one
    /// transaction: all of it or, on failure, none. The schema stays; the
    /// next connection creates a new remoteId.
    pub fn delete_tenant(&self) -> Result<(), StorageError> {
        let store = self.clone();
        js::transaction_sync(&self.storage, move || store.clear().map_err(|e| e.message))
            .map_err(StorageError::new)
    }

    /// Replaces the tenant's data with what `fill` stores, in one
    /// transaction: the data is deleted, then `fill` runs on the emptied
    /// store (its appends join this transaction); an `Err` from `fill`
    /// rolls everything back, so the tenant is either wholly replaced or
    /// untouched. Synchronous, like every DO SQL call: no other event of
    /// the object runs meanwhile.
    pub fn replace_with<T: 'static>(
        &self,
        fill: impl FnOnce(&mut DoSqlStorage) -> Result<T, String> + 'static,
    ) -> Result<T, String> {
        let mut store = self.clone();
        store.in_transaction = true;
        js::transaction_sync(&self.storage, move || {
            store.clear().map_err(|e| e.message)?;
            fill(&mut store)
        })
    }

    /// The statements of [`Self::delete_tenant`], run by the caller's
    /// transaction.
    fn clear(&self) -> Result<(), StorageError> {
        for table in TABLES {
            exec(&self.sql, &format!("DELETE FROM {table}"), vec![])?;
        }
        exec(
            &self.sql,
            "DELETE FROM evsync_meta WHERE key = 'remote_id'",
            vec![],
        )
    }

    /// Makes this object's database what a build that knew only schema
    /// version 1 left: the self-test's starting point for the migration to
    /// the current version. Wipes it first.
    #[cfg(feature = "selftest")]
    pub fn create_version_1(
        storage: &worker::Storage,
        remote_id: &RemoteId,
    ) -> Result<(), StorageError> {
        Self::wipe(storage)?;
        let sql = storage.sql();
        exec(&sql, layout::CREATE_META, vec![])?;
        let v1 = &layout::SCHEMA.steps[0];
        for statement in v1.statements {
            exec(&sql, statement, vec![])?;
        }
        exec(&sql, layout::RECORD_VERSION, vec![param_int(1)])?;
        exec(
            &sql,
            layout::INSERT_REMOTE_ID,
            vec![param_blob(&remote_id.0)],
        )
    }

    /// The schema version this database records (0: none).
    #[cfg(feature = "selftest")]
    pub fn schema_version(&self) -> Result<i64, StorageError> {
        Ok(self
            .first_value(layout::SELECT_VERSION)?
            .map(|v| int(&v))
            .transpose()?
            .unwrap_or(0))
    }

    /// Runs the core's pending steps and records the new version in one
    /// `transactionSync`.
    fn migrate(&self) -> Result<(), StorageError> {
        exec(&self.sql, layout::CREATE_META, vec![])?;
        let stored = self
            .first_value(layout::SELECT_VERSION)?
            .map(|v| int(&v))
            .transpose()?
            .unwrap_or(0);
        let steps = layout::SCHEMA.pending(stored)?;
        if steps.is_empty() {
            return Ok(());
        }
        let sql = self.sql.clone();
        js::transaction_sync(&self.storage, move || {
            for step in steps {
                for statement in step.statements {
                    exec(&sql, statement, vec![])
                        .map_err(|e| layout::SCHEMA.step_failed(step, e).message)?;
                }
            }
            exec(
                &sql,
                layout::RECORD_VERSION,
                vec![param_int(layout::SCHEMA.version() as u64)],
            )
            .map_err(|e| e.message)
        })
        .map_err(StorageError::new)
    }

    /// The stored remoteId, if one was ever created; creates none (the
    /// admin figures read it).
    pub fn stored_remote_id(&self) -> Result<Option<RemoteId>, StorageError> {
        self.first_value(layout::SELECT_REMOTE_ID)?
            .map(|value| remote_id::decode(&blob(&value)?))
            .transpose()
    }

    /// Stores `candidate` as the remoteId unless one is stored, and reads
    /// back whichever is (no await in between: nothing else in this object
    /// interleaves).
    fn store_remote_id(&self, candidate: &RemoteId) -> Result<RemoteId, StorageError> {
        exec(
            &self.sql,
            layout::INSERT_REMOTE_ID,
            vec![param_blob(&candidate.0)],
        )?;
        self.stored_remote_id()?
            .ok_or_else(|| StorageError::new("remoteId was not stored"))
    }

    /// The first column of the first row of `sql`, if any row.
    fn first_value(&self, sql: &str) -> Result<Option<SqlStorageValue>, StorageError> {
        let rows = query(&self.sql, sql, vec![])?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next()))
    }

    fn append_in_transaction(
        &self,
        batches: &[AppendBatch],
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        let mut heads: HashMap<String, Sequence> = HashMap::new();
        let mut existing = Existing::new();
        for batch in batches {
            if !heads.contains_key(&batch.public_key) {
                let rows = query(
                    &self.sql,
                    "SELECT COALESCE(MAX(sequence), 0) FROM evsync_entries WHERE public_key = ?1",
                    vec![batch.public_key.as_str().into()],
                )?;
                let head = rows
                    .first()
                    .and_then(|r| r.first())
                    .map(int)
                    .transpose()?
                    .unwrap_or(0);
                heads.insert(batch.public_key.clone(), head as Sequence);
            }
            for ids in plan::lookup_chunks(&batch.entries, 1) {
                let sql = format!(
                    "SELECT entry_id, sequence FROM evsync_entries WHERE public_key = ?1 AND entry_id IN ({})",
                    plan::placeholders(2, ids.len())
                );
                let mut params = vec![batch.public_key.as_str().into()];
                params.extend(ids.iter().map(|e| param_blob(&e.entry_id)));
                for row in query(&self.sql, &sql, params)? {
                    let [entry_id, sequence] = row.as_slice() else {
                        return Err(StorageError::new("unexpected row shape"));
                    };
                    existing.insert(
                        (batch.public_key.clone(), blob(entry_id)?.into()),
                        int(sequence)? as Sequence,
                    );
                }
            }
        }
        let plan = plan::plan_append(batches, &existing, &heads);
        // ?1 publicKey, ?2 iv; per row: sequence, entryId, ciphertext.
        for run in plan::insert_runs(&plan.rows, 2, 3) {
            let rows = &plan.rows[run];
            let batch = &batches[rows[0].batch];
            let sql = plan::multi_row_insert(
                "INSERT INTO evsync_entries (public_key, iv, sequence, entry_id, encrypted_entry) SELECT",
                "?1, ?2, column1, column2, column3",
                2,
                3,
                rows.len(),
            );
            let mut params = vec![batch.public_key.as_str().into(), param_blob(&batch.iv)];
            for row in rows {
                params.push(param_int(row.sequence));
                params.push(param_blob(&row.entry.entry_id));
                params.push(param_blob(&row.entry.encrypted_entry));
            }
            exec(&self.sql, &sql, params)?;
        }
        Ok(plan.outcomes)
    }
}

impl Storage for DoSqlStorage {
    /// The shared rule ([`remote_id`]): insert-or-ignore a fresh one, then
    /// read back whichever was stored first.
    fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        if let Some(stored) = self.stored_remote_id()? {
            return Ok(stored);
        }
        self.store_remote_id(&remote_id::create(js::random_bytes())?)
    }

    fn append(&mut self, batches: &[AppendBatch]) -> Result<Vec<Vec<Appended>>, StorageError> {
        if batches.iter().all(|b| b.entries.is_empty()) {
            return Ok(batches.iter().map(|_| Vec::new()).collect());
        }
        if self.in_transaction {
            return self.append_in_transaction(batches);
        }
        // The callback goes to JS, so it owns what it uses: handle clones
        // and the batches (their byte buffers are shared, not copied).
        let store = self.clone();
        let batches = batches.to_vec();
        js::transaction_sync(&self.storage, move || {
            store.append_in_transaction(&batches).map_err(|e| e.message)
        })
        .map_err(StorageError::new)
    }

    fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let rows = query(
            &self.sql,
            &plan::read_sql("public_key = ?1", 2),
            vec![
                public_key.into(),
                param_int(from),
                param_int(limit.max_entries as u64),
                param_int(limit.max_bytes as u64),
            ],
        )?;
        rows.into_iter().map(entry_from_row).collect()
    }

    fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        self.first_value(layout::SELECT_TOKENS_NOT_BEFORE)?
            .map(|value| decode_tokens_not_before(int(&value)? as f64))
            .transpose()
    }

    /// Raises and reads back with no await in between, so nothing else in
    /// this object interleaves; the write is durable before the object's
    /// next output leaves it (the Durable Object output gate).
    fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        let not_before_ms = check_tokens_not_before(not_before_ms)?;
        exec(
            &self.sql,
            layout::RAISE_TOKENS_NOT_BEFORE,
            vec![param_int(not_before_ms)],
        )?;
        self.tokens_not_before()?
            .ok_or_else(|| StorageError::new("tokens_not_before was not stored"))
    }

    /// One scan of `evsync_entries` ([`layout::SELECT_STATS`]). No last
    /// write time: the object keeps that in memory (`Driver`).
    fn stats(&mut self) -> Result<StoreStats, StorageError> {
        let rows = query(&self.sql, layout::SELECT_STATS, vec![])?;
        let Some([logs, entries, bytes]) = rows.first().map(Vec::as_slice) else {
            return Err(StorageError::new("unexpected row shape"));
        };
        let count = |value: &SqlStorageValue| int(value).map(|n| n.max(0) as u64);
        Ok(StoreStats {
            logs: count(logs)?,
            entries: count(entries)?,
            bytes: count(bytes)?,
            last_write_ms: None,
        })
    }

    /// One statement ([`layout::SELECT_LOG_HEADS`]), so one snapshot; the
    /// database orders the keys by their bytes.
    fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        query(&self.sql, layout::SELECT_LOG_HEADS, vec![])?
            .into_iter()
            .map(|row| {
                let Ok([public_key, head]) = <[SqlStorageValue; 2]>::try_from(row) else {
                    return Err(StorageError::new("unexpected row shape"));
                };
                Ok(LogHead {
                    public_key: into_text(public_key)?,
                    head: int(&head)?.max(0) as Sequence,
                })
            })
            .collect()
    }

    /// The same insert-or-ignore as [`Storage::remote_id`], with the
    /// tenant's remoteId instead of a fresh one: whichever is stored wins.
    /// Nothing is cached, so the read back is the stored one.
    fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        let held = self.store_remote_id(&remote_id)?;
        if held != remote_id {
            return Err(remote_id_taken(held, remote_id));
        }
        Ok(())
    }

    fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        self.append_v4(writes)
    }

    fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        self.read_v4(store, from, limit)
    }

    fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        self.bind_v4(public_key, signing_key)
    }

    fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        self.list_v4_stores()
    }

    fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        self.list_v4_bindings()
    }
}

fn entry_from_row(row: Vec<SqlStorageValue>) -> Result<RemoteEntry, StorageError> {
    let Ok([sequence, iv, entry_id, encrypted_entry]) = <[SqlStorageValue; 4]>::try_from(row)
    else {
        return Err(StorageError::new("unexpected row shape"));
    };
    Ok(RemoteEntry {
        sequence: int(&sequence)? as Sequence,
        iv: into_blob(iv)?.into(),
        entry_id: into_blob(entry_id)?.into(),
        encrypted_entry: into_blob(encrypted_entry)?.into(),
    })
}

fn sql_error(err: worker::Error) -> StorageError {
    StorageError::new(format!("Durable Object SQL: {err}"))
}

/// Runs a statement to completion (DO SQL executes lazily as the cursor is
/// read, so the cursor is drained).
fn exec(sql: &SqlStorage, query: &str, params: Vec<SqlStorageValue>) -> Result<(), StorageError> {
    let cursor = sql.exec(query, params).map_err(sql_error)?;
    for row in cursor.raw() {
        row.map_err(sql_error)?;
    }
    Ok(())
}

/// Runs a query and collects every row.
fn query(
    sql: &SqlStorage,
    query: &str,
    params: Vec<SqlStorageValue>,
) -> Result<Vec<Vec<SqlStorageValue>>, StorageError> {
    let cursor = sql.exec(query, params).map_err(sql_error)?;
    cursor.raw().map(|row| row.map_err(sql_error)).collect()
}
