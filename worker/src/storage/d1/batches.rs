//! Effect v4's batch stores in the shared D1 database (schema version 3,
//! [`evsync_core::storage::schema::d1`]): an append is one read round trip
//! (every written store's head and known ids, in one `batch()`) and one
//! `batch()` of inserts, which D1 runs as one transaction, like v3's.

use super::{D1Storage, ExistingRow, HeadRow, HexRow, bytes_from, bytes_param, d1_error, from_hex};
use crate::storage::batch_plan::{self, KnownIds};
use crate::storage::plan;
use crate::storage::values::MAX_SAFE_INTEGER;
use evsync_core::storage::{
    BatchAppended, BatchWrite, ReadLimit, SigningKeyBinding, StorageError, StoreHead, StoreKey,
    StoredBatch, check_writes, join_entry_ids, split_entry_ids,
};
use evsync_core::wire::Sequence;
use js_sys::Array;
use serde::Deserialize;
use std::collections::HashMap;
use wasm_bindgen::{JsCast, JsValue};

/// `?2` publicKey and `?3` storeId of `store` (`?1` is the tenant).
fn store_params(store: &StoreKey) -> [JsValue; 2] {
    [
        JsValue::from_str(&store.public_key),
        JsValue::from_str(&store.store_id),
    ]
}

#[derive(Deserialize)]
struct StoreRow {
    public_key: String,
    store_id: String,
    head: f64,
}

#[derive(Deserialize)]
struct BindingRow {
    public_key: String,
    hex: String,
}

fn number(n: u64) -> JsValue {
    JsValue::from_f64(n.min(MAX_SAFE_INTEGER) as f64)
}

impl D1Storage {
    /// See [`Storage::append_batches`](evsync_core::storage::Storage::append_batches).
    pub(super) async fn append_v4(
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
        let (heads, known) = self.v4_lookups(writes).await?;
        let plan = batch_plan::plan_batches(writes, &known, &heads);
        let mut statements = Vec::new();
        for row in &plan.batches {
            let write = row.write;
            let [public_key, store_id] = store_params(&write.store);
            statements.push(self.statement(
                "INSERT INTO evsync_v4_batches (tenant, public_key, store_id, last_sequence,
                    sequence, iv, entry_ids, encrypted_batch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &[
                    public_key,
                    store_id,
                    number(row.last),
                    number(row.sequence),
                    bytes_param(&write.iv),
                    bytes_param(&join_entry_ids(&write.entry_ids)),
                    bytes_param(&write.encrypted_batch),
                ],
            )?);
        }
        // ?1 tenant, ?2 publicKey, ?3 storeId; per row: entryId, sequence.
        for run in batch_plan::id_runs(&plan.ids, 3, 2) {
            let rows = &plan.ids[run];
            let sql = plan::multi_row_insert(
                "INSERT INTO evsync_v4_entry_ids (tenant, public_key, store_id, entry_id, sequence) SELECT",
                "?1, ?2, ?3, column1, column2",
                3,
                2,
                rows.len(),
            );
            let mut params = store_params(rows[0].store).to_vec();
            for row in rows {
                params.push(bytes_param(row.entry_id));
                params.push(number(row.sequence));
            }
            statements.push(self.statement(&sql, &params)?);
        }
        if !statements.is_empty() {
            // One batch() is one transaction: all rows or none.
            self.db.batch(statements).await.map_err(d1_error)?;
        }
        Ok(plan.results)
    }

    /// The heads and known ids of every store `writes` may store into, in
    /// one `batch()`: per store its head, then its id lookups.
    async fn v4_lookups(
        &self,
        writes: &[BatchWrite],
    ) -> Result<(HashMap<StoreKey, Sequence>, KnownIds), StorageError> {
        let mut statements = Vec::new();
        let mut kinds: Vec<(&StoreKey, bool)> = Vec::new();
        for store in batch_plan::stores_written(writes) {
            statements.push(self.statement(
                "SELECT COALESCE(MAX(last_sequence), 0) AS head FROM evsync_v4_batches
                 WHERE tenant = ?1 AND public_key = ?2 AND store_id = ?3",
                &store_params(store),
            )?);
            kinds.push((store, true));
            let ids: Vec<_> = writes
                .iter()
                .filter(|w| &w.store == store)
                .flat_map(|w| w.entry_ids.iter())
                .collect();
            for chunk in plan::lookup_chunks(&ids, 3) {
                let sql = format!(
                    "SELECT hex(entry_id) AS id, sequence AS seq FROM evsync_v4_entry_ids
                     WHERE tenant = ?1 AND public_key = ?2 AND store_id = ?3 AND entry_id IN ({})",
                    plan::placeholders(4, chunk.len())
                );
                let mut params = store_params(store).to_vec();
                params.extend(chunk.iter().map(|id| bytes_param(id)));
                statements.push(self.statement(&sql, &params)?);
                kinds.push((store, false));
            }
        }
        let results = self.db.batch(statements).await.map_err(d1_error)?;
        let mut heads = HashMap::new();
        let mut known = KnownIds::new();
        for ((store, is_head), result) in kinds.into_iter().zip(results) {
            if is_head {
                let head = result
                    .results::<HeadRow>()
                    .map_err(d1_error)?
                    .first()
                    .map_or(0.0, |r| r.head);
                heads.insert(store.clone(), head as Sequence);
            } else {
                let found = known.entry(store.clone()).or_default();
                for row in result.results::<ExistingRow>().map_err(d1_error)? {
                    found.insert(from_hex(&row.id)?.into(), row.seq as Sequence);
                }
            }
        }
        Ok((heads, known))
    }

    /// See [`Storage::read_batches`](evsync_core::storage::Storage::read_batches).
    pub(super) async fn read_v4(
        &self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let [public_key, store_id] = store_params(store);
        let statement = self.statement(
            &batch_plan::read_sql("tenant = ?1 AND public_key = ?2 AND store_id = ?3", 4),
            &[
                public_key,
                store_id,
                number(from),
                number(limit.max_entries as u64),
                number(limit.max_bytes as u64),
            ],
        )?;
        let rows = statement.raw_js_value().await.map_err(d1_error)?;
        rows.into_iter()
            .map(|row| {
                let row: Array = row
                    .dyn_into()
                    .map_err(|_| StorageError::new("D1 returned a row that is not an array"))?;
                let sequence = row
                    .get(0)
                    .as_f64()
                    .ok_or_else(|| StorageError::new("D1 returned a non-numeric sequence"))?;
                Ok(StoredBatch {
                    sequence: sequence as Sequence,
                    iv: bytes_from(row.get(1))?.into(),
                    entry_ids: split_entry_ids(&bytes_from(row.get(2))?)?,
                    encrypted_batch: bytes_from(row.get(3))?.into(),
                })
            })
            .collect()
    }

    /// See [`Storage::bind_signing_key`](evsync_core::storage::Storage::bind_signing_key):
    /// a bound key is read without a write; a new one is inserted-or-ignored
    /// and read back in one `batch()` (one transaction), so two isolates
    /// binding at once both answer with the first.
    pub(super) async fn bind_v4(
        &self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        const SELECT: &str = "SELECT hex(signing_key) AS hex FROM evsync_v4_signing_keys
            WHERE tenant = ?1 AND public_key = ?2";
        let key = [JsValue::from_str(public_key)];
        let found = self
            .statement(SELECT, &key)?
            .first::<HexRow>(None)
            .await
            .map_err(d1_error)?;
        let row = match found {
            Some(row) => row,
            None => {
                let results = self
                    .db
                    .batch(vec![
                        self.statement(
                            "INSERT OR IGNORE INTO evsync_v4_signing_keys
                                (tenant, public_key, signing_key) VALUES (?1, ?2, ?3)",
                            &[key[0].clone(), bytes_param(signing_key)],
                        )?,
                        self.statement(SELECT, &key)?,
                    ])
                    .await
                    .map_err(d1_error)?;
                results
                    .get(1)
                    .map(|r| r.results::<HexRow>())
                    .transpose()
                    .map_err(d1_error)?
                    .and_then(|rows| rows.into_iter().next())
                    .ok_or_else(|| StorageError::new("signing key was not stored"))?
            }
        };
        let bytes = from_hex(&row.hex)?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            StorageError::new(format!("a stored signing key of {} bytes", bytes.len()))
        })
    }

    /// See [`Storage::stores`](evsync_core::storage::Storage::stores): one
    /// statement over the primary key's index (tenant, publicKey, storeId,
    /// last sequence), so one snapshot; TEXT compares as its UTF-8 bytes.
    pub(super) async fn list_v4_stores(&self) -> Result<Vec<StoreHead>, StorageError> {
        let rows = self
            .statement(
                "SELECT public_key, store_id, MAX(last_sequence) AS head FROM evsync_v4_batches
                 WHERE tenant = ?1 GROUP BY public_key, store_id ORDER BY public_key, store_id",
                &[],
            )?
            .all()
            .await
            .map_err(d1_error)?
            .results::<StoreRow>()
            .map_err(d1_error)?;
        Ok(rows
            .into_iter()
            .map(|row| StoreHead {
                store: StoreKey::new(row.public_key, row.store_id),
                head: row.head as Sequence,
            })
            .collect())
    }

    /// See [`Storage::bindings`](evsync_core::storage::Storage::bindings):
    /// one statement, so one snapshot.
    pub(super) async fn list_v4_bindings(&self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        let rows = self
            .statement(
                "SELECT public_key, hex(signing_key) AS hex FROM evsync_v4_signing_keys
                 WHERE tenant = ?1 ORDER BY public_key",
                &[],
            )?
            .all()
            .await
            .map_err(d1_error)?
            .results::<BindingRow>()
            .map_err(d1_error)?;
        rows.into_iter()
            .map(|row| {
                let bytes = from_hex(&row.hex)?;
                let signing_key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    StorageError::new(format!("a stored signing key of {} bytes", bytes.len()))
                })?;
                Ok(SigningKeyBinding {
                    public_key: row.public_key,
                    signing_key,
                })
            })
            .collect()
    }
}
