//! Effect v4's batch stores in the Durable Object's SQLite (schema version
//! 3, [`evsync_core::storage::schema::do_sql`]): an append reads the heads
//! and known ids of the stores it writes, plans ([`batch_plan`]) and
//! inserts, all inside one `transactionSync`, like v3's appends.

use super::{DoSqlStorage, exec, query};
use crate::js;
use crate::storage::batch_plan::{self, KnownIds};
use crate::storage::plan;
use crate::storage::values::{int, into_blob, into_text, param_blob, param_int};
use evsync_core::storage::{
    BatchAppended, BatchWrite, ReadLimit, SigningKeyBinding, StorageError, StoreHead, StoreKey,
    StoredBatch, check_writes, split_entry_ids,
};
use evsync_core::wire::Sequence;
use std::collections::HashMap;
use worker::SqlStorageValue;

impl DoSqlStorage {
    /// See [`Storage::append_batches`](evsync_core::storage::Storage::append_batches).
    pub(super) fn append_v4(
        &self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        check_writes(writes)?;
        if writes.iter().all(|w| w.entry_ids.is_empty()) {
            return Ok(writes
                .iter()
                .map(|_| BatchAppended {
                    stored_at: None,
                    sequences: Vec::new(),
                })
                .collect());
        }
        if self.in_transaction {
            return self.append_v4_in_transaction(writes);
        }
        // The callback goes to JS, so it owns what it uses (the writes'
        // byte buffers are shared, not copied).
        let store = self.clone();
        let writes = writes.to_vec();
        js::transaction_sync(&self.storage, move || {
            store
                .append_v4_in_transaction(&writes)
                .map_err(|e| e.message)
        })
        .map_err(StorageError::new)
    }

    fn append_v4_in_transaction(
        &self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        let mut heads: HashMap<StoreKey, Sequence> = HashMap::new();
        let mut known = KnownIds::new();
        for store in batch_plan::stores_written(writes) {
            let rows = query(
                &self.sql,
                "SELECT COALESCE(MAX(last_sequence), 0) FROM evsync_v4_batches
                 WHERE public_key = ?1 AND store_id = ?2",
                vec![
                    store.public_key.as_str().into(),
                    store.store_id.as_str().into(),
                ],
            )?;
            let head = rows
                .first()
                .and_then(|r| r.first())
                .map(int)
                .transpose()?
                .unwrap_or(0);
            heads.insert(store.clone(), head as Sequence);
            if head == 0 {
                continue; // a store without batches holds no id
            }
            let ids: Vec<_> = writes
                .iter()
                .filter(|w| &w.store == store)
                .flat_map(|w| w.entry_ids.iter())
                .collect();
            let found = known.entry(store.clone()).or_default();
            for chunk in plan::lookup_chunks(&ids, 2) {
                let sql = format!(
                    "SELECT entry_id, sequence FROM evsync_v4_entry_ids
                     WHERE public_key = ?1 AND store_id = ?2 AND entry_id IN ({})",
                    plan::placeholders(3, chunk.len())
                );
                let mut params = vec![
                    store.public_key.as_str().into(),
                    store.store_id.as_str().into(),
                ];
                params.extend(chunk.iter().map(|id| param_blob(id)));
                for row in query(&self.sql, &sql, params)? {
                    let Ok([entry_id, sequence]) = <[SqlStorageValue; 2]>::try_from(row) else {
                        return Err(StorageError::new("unexpected row shape"));
                    };
                    found.insert(into_blob(entry_id)?.into(), int(&sequence)? as Sequence);
                }
            }
        }
        let plan = batch_plan::plan_batches(writes, &known, &heads);
        for row in &plan.batches {
            let write = row.write;
            exec(
                &self.sql,
                "INSERT INTO evsync_v4_batches
                    (public_key, store_id, last_sequence, sequence, iv, entry_ids, encrypted_batch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                vec![
                    write.store.public_key.as_str().into(),
                    write.store.store_id.as_str().into(),
                    param_int(row.last),
                    param_int(row.sequence),
                    param_blob(&write.iv),
                    SqlStorageValue::Blob(evsync_core::storage::join_entry_ids(&write.entry_ids)),
                    param_blob(&write.encrypted_batch),
                ],
            )?;
        }
        // ?1 publicKey, ?2 storeId; per row: entryId, sequence.
        for run in batch_plan::id_runs(&plan.ids, 2, 2) {
            let rows = &plan.ids[run];
            let store = rows[0].store;
            let sql = plan::multi_row_insert(
                "INSERT INTO evsync_v4_entry_ids (public_key, store_id, entry_id, sequence) SELECT",
                "?1, ?2, column1, column2",
                2,
                2,
                rows.len(),
            );
            let mut params = vec![
                store.public_key.as_str().into(),
                store.store_id.as_str().into(),
            ];
            for row in rows {
                params.push(param_blob(row.entry_id));
                params.push(param_int(row.sequence));
            }
            exec(&self.sql, &sql, params)?;
        }
        Ok(plan.results)
    }

    /// See [`Storage::read_batches`](evsync_core::storage::Storage::read_batches).
    pub(super) fn read_v4(
        &self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let rows = query(
            &self.sql,
            &batch_plan::read_sql("public_key = ?1 AND store_id = ?2", 3),
            vec![
                store.public_key.as_str().into(),
                store.store_id.as_str().into(),
                param_int(from),
                param_int(limit.max_entries as u64),
                param_int(limit.max_bytes as u64),
            ],
        )?;
        rows.into_iter()
            .map(|row| {
                let Ok([sequence, iv, entry_ids, encrypted_batch]) =
                    <[SqlStorageValue; 4]>::try_from(row)
                else {
                    return Err(StorageError::new("unexpected row shape"));
                };
                Ok(StoredBatch {
                    sequence: int(&sequence)? as Sequence,
                    iv: into_blob(iv)?.into(),
                    entry_ids: split_entry_ids(&into_blob(entry_ids)?)?,
                    encrypted_batch: into_blob(encrypted_batch)?.into(),
                })
            })
            .collect()
    }

    /// See [`Storage::bind_signing_key`](evsync_core::storage::Storage::bind_signing_key):
    /// read, and only for a new publicKey insert-or-ignore and read back,
    /// with no await in between (nothing else in this object interleaves);
    /// durable before the object's next output leaves it (the output gate).
    pub(super) fn bind_v4(
        &self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        if let Some(bound) = self.find_signing_key(public_key)? {
            return Ok(bound);
        }
        exec(
            &self.sql,
            "INSERT OR IGNORE INTO evsync_v4_signing_keys (public_key, signing_key) VALUES (?1, ?2)",
            vec![public_key.into(), param_blob(signing_key)],
        )?;
        self.find_signing_key(public_key)?
            .ok_or_else(|| StorageError::new("signing key was not stored"))
    }

    fn find_signing_key(&self, public_key: &str) -> Result<Option<[u8; 32]>, StorageError> {
        let rows = query(
            &self.sql,
            "SELECT signing_key FROM evsync_v4_signing_keys WHERE public_key = ?1",
            vec![public_key.into()],
        )?;
        let Some(value) = rows.into_iter().next().and_then(|r| r.into_iter().next()) else {
            return Ok(None);
        };
        let bytes = into_blob(value)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| {
                StorageError::new(format!("a stored signing key of {} bytes", bytes.len()))
            })
    }

    /// See [`Storage::stores`](evsync_core::storage::Storage::stores): one
    /// statement over the primary key's index (publicKey, storeId, last
    /// sequence), so one snapshot; TEXT compares as its UTF-8 bytes.
    pub(super) fn list_v4_stores(&self) -> Result<Vec<StoreHead>, StorageError> {
        query(
            &self.sql,
            "SELECT public_key, store_id, MAX(last_sequence) FROM evsync_v4_batches
             GROUP BY public_key, store_id ORDER BY public_key, store_id",
            vec![],
        )?
        .into_iter()
        .map(|row| {
            let Ok([public_key, store_id, head]) = <[SqlStorageValue; 3]>::try_from(row) else {
                return Err(StorageError::new("unexpected row shape"));
            };
            Ok(StoreHead {
                store: StoreKey::new(into_text(public_key)?, into_text(store_id)?),
                head: int(&head)?.max(0) as Sequence,
            })
        })
        .collect()
    }

    /// See [`Storage::bindings`](evsync_core::storage::Storage::bindings):
    /// one statement, so one snapshot.
    pub(super) fn list_v4_bindings(&self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        query(
            &self.sql,
            "SELECT public_key, signing_key FROM evsync_v4_signing_keys ORDER BY public_key",
            vec![],
        )?
        .into_iter()
        .map(|row| {
            let Ok([public_key, key]) = <[SqlStorageValue; 2]>::try_from(row) else {
                return Err(StorageError::new("unexpected row shape"));
            };
            let key = into_blob(key)?;
            let signing_key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
                StorageError::new(format!("a stored signing key of {} bytes", key.len()))
            })?;
            Ok(SigningKeyBinding {
                public_key: into_text(public_key)?,
                signing_key,
            })
        })
        .collect()
    }
}
