//! Effect v4's batch stores on PostgreSQL (the tables of schema version 2,
//! [`crate::schema`] says why they are laid out so), safe with any number
//! of nodes appending to one store at once.
//!
//! An append locks the head rows of the stores it writes, in (publicKey,
//! storeId) byte order ([`LOCK_STORES`]), so two nodes writing overlapping
//! stores wait for each other and never deadlock; under READ COMMITTED the
//! lock returns the latest committed head, and the dedup lookup that
//! follows (a new statement, a new snapshot) sees every id committed before
//! the lock was granted. The same batch sent to two nodes at once is thus
//! stored by the first and skipped by the second; the primary key on
//! (store, entry_id) would refuse a second copy anyway.
//!
//! Each append that raises a store's head also NOTIFYs `{"t": tenant,
//! "p": publicKey, "s": storeId, "h": head}` on v3's channel, in its
//! transaction (delivered at COMMIT only): other nodes wake their
//! subscribers of the store, and re-read the heads of loaded tenants'
//! stores after a listener reconnects ([`crate::PgDatabase::store_heads`]).

use super::{MAX_NOTIFY_PAYLOAD, PgStorage, decode_public_key, decode_sequence};
use crate::pg_error;
use crate::schema::NOTIFY;
use bytes::Bytes;
use evsync_core::storage::{
    BatchAppended, BatchWrite, ReadLimit, SigningKeyBinding, StorageError, StoreHead, StoreKey,
    StoredBatch, check_writes, join_entry_ids, split_entry_ids,
};
use evsync_core::wire::Sequence;
use futures_util::future::try_join_all;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;

/// Creates the stores of tenant `$1` named by `$2` (publicKeys) and `$3`
/// (storeIds) that do not exist and locks every one of them, returning
/// `id, public_key, store_id, head`. One statement, rows taken in
/// (publicKey, storeId) byte order, `DO UPDATE` so an existing row is
/// locked in the same pass that creates a missing one: v3's `LOCK_LOGS`.
const LOCK_STORES: &str = "INSERT INTO evsync_v4_stores AS s (tenant, public_key, store_id)
    SELECT $1, k, i FROM unnest($2::bytea[], $3::bytea[]) AS u(k, i) ORDER BY k, i
    ON CONFLICT (tenant, sha256(public_key), sha256(store_id)) DO UPDATE SET head = s.head
    RETURNING s.id, s.public_key, s.store_id, s.head";

/// The ids in `$2` that store `$1` holds, as `entry_id, sequence`: one
/// probe of the primary key per id, whatever the planner's estimates
/// (v3's `FIND_ENTRIES` says why the LATERAL form).
const FIND_IDS: &str = "SELECT e.entry_id, e.sequence
    FROM unnest($2::bytea[]) AS h(id)
    CROSS JOIN LATERAL (
        SELECT entry_id, sequence FROM evsync_v4_entry_ids
        WHERE store = $1 AND entry_id = h.id
        LIMIT 1
    ) AS e";

/// Inserts batches given as parallel arrays: stores, last sequences, first
/// sequences, ivs, entry ids (concatenated), ciphertexts.
const INSERT_BATCHES: &str = "INSERT INTO evsync_v4_batches
        (store, last_sequence, sequence, iv, entry_ids, encrypted_batch)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bytea[],
        $6::bytea[])";

/// Records where ids were first stored: stores, ids, sequences.
const INSERT_IDS: &str = "INSERT INTO evsync_v4_entry_ids (store, entry_id, sequence)
    SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bigint[])";

/// Sets the heads of the stores `$1` (ids) to `$2`.
const SET_HEADS: &str = "UPDATE evsync_v4_stores AS s SET head = u.head
    FROM unnest($1::bigint[], $2::bigint[]) AS u(id, head) WHERE s.id = u.id";

/// The batches of tenant `$1`'s store (`$2` publicKey, `$3` storeId) whose
/// last sequence is `>= $4`, at most `$5`, while their running size (iv +
/// ids + ciphertext) stays within `$6` bytes, the first one always. One
/// range scan of the primary key; the sizes are `octet_length`s, TOAST
/// pointers for the ciphertexts, so batches past the budget are never
/// fetched (v3's `READ`).
const READ: &str = "SELECT sequence, iv, entry_ids, encrypted_batch FROM (
        SELECT b.sequence, b.last_sequence, b.iv, b.entry_ids, b.encrypted_batch,
            row_number() OVER w AS n,
            sum(octet_length(b.iv) + octet_length(b.entry_ids) + octet_length(b.encrypted_batch))
                OVER w AS running
        FROM evsync_v4_batches AS b
        WHERE b.store = (SELECT id FROM evsync_v4_stores
                WHERE tenant = $1
                    AND sha256(public_key) = sha256($2) AND public_key = $2
                    AND sha256(store_id) = sha256($3) AND store_id = $3)
            AND b.last_sequence >= $4
        WINDOW w AS (ORDER BY b.last_sequence ROWS UNBOUNDED PRECEDING)
        ORDER BY b.last_sequence
        LIMIT $5
    ) AS s
    WHERE n = 1 OR running <= $6
    ORDER BY last_sequence";

/// Every store of tenant `$1` with batches and its head, in (publicKey,
/// storeId) byte order (`bytea` compares as memcmp): the head rows, not a
/// scan of batches.
const LIST_STORES: &str = "SELECT public_key, store_id, head FROM evsync_v4_stores
    WHERE tenant = $1 AND head > 0 ORDER BY public_key, store_id";

/// Every signing key bound in tenant `$1`, by publicKey (byte order).
const LIST_SIGNING_KEYS: &str = "SELECT public_key, signing_key FROM evsync_v4_signing_keys
    WHERE tenant = $1 ORDER BY public_key";

/// Tenant `$1`'s signing key of publicKey `$2`, if bound.
const FIND_SIGNING_KEY: &str = "SELECT signing_key FROM evsync_v4_signing_keys
    WHERE tenant = $1 AND sha256(public_key) = sha256($2) AND public_key = $2";

/// Binds publicKey `$2` of tenant `$1` to `$3` unless it is bound.
const INSERT_SIGNING_KEY: &str =
    "INSERT INTO evsync_v4_signing_keys (tenant, public_key, signing_key) VALUES ($1, $2, $3)
    ON CONFLICT (tenant, sha256(public_key)) DO NOTHING";

/// The JSON of a v4 append's NOTIFY: which store of which tenant reached
/// which head.
#[derive(serde::Serialize)]
struct StoreNotice<'a> {
    t: &'a str,
    p: &'a str,
    s: &'a str,
    h: u64,
}

/// One store while an append runs.
struct StoreWork {
    id: i64,
    /// The head as locked, which other writers cannot move until COMMIT.
    head: i64,
    /// The last sequence taken by this call so far.
    next: i64,
    /// Ids stored before this call, as found under the lock.
    stored: HashMap<Bytes, i64>,
}

impl PgStorage {
    /// See [`Storage::append_batches`](evsync_core::storage::Storage::append_batches).
    pub(super) async fn append_v4_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        check_writes(writes)?;
        if writes.iter().all(|w| w.entry_ids.is_empty()) {
            return Ok(writes.iter().map(|_| skipped(Vec::new())).collect());
        }
        // The stores written, in byte order: the lock order.
        let mut keys: Vec<&StoreKey> = writes
            .iter()
            .filter(|w| !w.entry_ids.is_empty())
            .map(|w| &w.store)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let public_keys: Vec<&[u8]> = keys.iter().map(|k| k.public_key.as_bytes()).collect();
        let store_ids: Vec<&[u8]> = keys.iter().map(|k| k.store_id.as_bytes()).collect();

        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(pg_error("begin"))?;
        let (lock, find, insert_batches, insert_ids, set_heads, notify) = tokio::try_join!(
            tx.prepare_cached(LOCK_STORES),
            tx.prepare_cached(FIND_IDS),
            tx.prepare_cached(INSERT_BATCHES),
            tx.prepare_cached(INSERT_IDS),
            tx.prepare_cached(SET_HEADS),
            tx.prepare_cached(NOTIFY),
        )
        .map_err(pg_error("prepare"))?;
        let locked = tx
            .query(&lock, &[&&*self.tenant, &public_keys, &store_ids])
            .await
            .map_err(pg_error("lock v4 stores"))?;
        let by_bytes: HashMap<(&[u8], &[u8]), &StoreKey> = keys
            .iter()
            .map(|k| ((k.public_key.as_bytes(), k.store_id.as_bytes()), *k))
            .collect();
        let mut stores: HashMap<&StoreKey, StoreWork> = HashMap::with_capacity(keys.len());
        for row in &locked {
            let key = *by_bytes
                .get(&(row.get::<_, &[u8]>(1), row.get::<_, &[u8]>(2)))
                .ok_or_else(|| {
                    StorageError::new("postgres: locked a v4 store that was not asked for")
                })?;
            let head: i64 = row.get(3);
            stores.insert(
                key,
                StoreWork {
                    id: row.get(0),
                    head,
                    next: head,
                    stored: HashMap::new(),
                },
            );
        }
        if stores.len() != keys.len() {
            return Err(StorageError::new(format!(
                "postgres: locked {} v4 stores of {}",
                stores.len(),
                keys.len()
            )));
        }

        // Which of this call's ids each store already holds (a store
        // created just now, head 0, holds none), one query per store,
        // pipelined.
        let mut wanted: HashMap<&StoreKey, Vec<&[u8]>> = HashMap::new();
        for write in writes.iter().filter(|w| !w.entry_ids.is_empty()) {
            if stores[&write.store].head > 0 {
                let ids = wanted.entry(&write.store).or_default();
                ids.extend(write.entry_ids.iter().map(|id| &id[..]));
            }
        }
        let lookups = wanted.iter().map(|(key, ids)| {
            let id = stores[key].id;
            let (find, tx) = (&find, &tx);
            async move {
                let rows = tx.query(find, &[&id, ids]).await?;
                Ok::<_, tokio_postgres::Error>((*key, rows))
            }
        });
        for (key, rows) in try_join_all(lookups)
            .await
            .map_err(pg_error("find stored entry ids"))?
        {
            let store = stores.get_mut(key).expect("looked up above");
            for row in rows {
                let id: &[u8] = row.get(0);
                store.stored.insert(Bytes::copy_from_slice(id), row.get(1));
            }
        }

        // Skip or store each write; ids first seen get their sequence.
        let mut assigned: HashMap<(i64, &[u8]), i64> = HashMap::new();
        let mut batch_stores: Vec<i64> = Vec::new();
        let mut batch_lasts: Vec<i64> = Vec::new();
        let mut batch_firsts: Vec<i64> = Vec::new();
        let mut batch_ivs: Vec<&[u8]> = Vec::new();
        let mut batch_ids: Vec<Vec<u8>> = Vec::new();
        let mut batch_payloads: Vec<&[u8]> = Vec::new();
        let mut id_stores: Vec<i64> = Vec::new();
        let mut id_values: Vec<&[u8]> = Vec::new();
        let mut id_sequences: Vec<i64> = Vec::new();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            if write.entry_ids.is_empty() {
                results.push(skipped(Vec::new()));
                continue;
            }
            let store = stores
                .get_mut(&write.store)
                .expect("every write has its store");
            let known: Vec<Option<i64>> = write
                .entry_ids
                .iter()
                .map(|id| {
                    store
                        .stored
                        .get(&id[..])
                        .or_else(|| assigned.get(&(store.id, &id[..])))
                        .copied()
                })
                .collect();
            if known.iter().all(Option::is_some) {
                let sequences = known
                    .into_iter()
                    .map(|s| decode_sequence(s.expect("all known")))
                    .collect::<Result<_, _>>()?;
                results.push(skipped(sequences));
                continue;
            }
            let first = store.next + 1;
            store.next += write.entry_ids.len() as i64;
            let last = store.next;
            batch_stores.push(store.id);
            batch_lasts.push(last);
            batch_firsts.push(first);
            batch_ivs.push(&write.iv[..]);
            batch_ids.push(join_entry_ids(&write.entry_ids));
            batch_payloads.push(&write.encrypted_batch[..]);
            for (i, (id, was_known)) in write.entry_ids.iter().zip(&known).enumerate() {
                // An id repeated within this batch is recorded once.
                if was_known.is_none() && !assigned.contains_key(&(store.id, &id[..])) {
                    let sequence = first + i as i64;
                    assigned.insert((store.id, &id[..]), sequence);
                    id_stores.push(store.id);
                    id_values.push(&id[..]);
                    id_sequences.push(sequence);
                }
            }
            results.push(BatchAppended {
                stored_at: Some(decode_sequence(first)?),
                sequences: (first..=last)
                    .map(decode_sequence)
                    .collect::<Result<_, _>>()?,
            });
        }

        if !batch_stores.is_empty() {
            let mut head_ids = Vec::new();
            let mut heads = Vec::new();
            let mut notices = Vec::new();
            for (key, store) in stores.iter().filter(|(_, s)| s.next != s.head) {
                head_ids.push(store.id);
                heads.push(store.next);
                let notice = serde_json::to_string(&StoreNotice {
                    t: &self.tenant,
                    p: &key.public_key,
                    s: &key.store_id,
                    h: decode_sequence(store.next)?,
                })
                .map_err(|e| StorageError::new(format!("postgres: notify payload: {e}")))?;
                // A longer one (huge keys) is left to the nodes' re-check.
                if notice.len() <= MAX_NOTIFY_PAYLOAD {
                    notices.push(notice);
                }
            }
            let batch_params: [&(dyn ToSql + Sync); 6] = [
                &batch_stores,
                &batch_lasts,
                &batch_firsts,
                &batch_ivs,
                &batch_ids,
                &batch_payloads,
            ];
            let id_params: [&(dyn ToSql + Sync); 3] = [&id_stores, &id_values, &id_sequences];
            let head_params: [&(dyn ToSql + Sync); 2] = [&head_ids, &heads];
            let notify_params: [&(dyn ToSql + Sync); 1] = [&notices];
            tokio::try_join!(
                tx.execute(&insert_batches, &batch_params),
                tx.execute(&insert_ids, &id_params),
                tx.execute(&set_heads, &head_params),
                tx.execute(&notify, &notify_params),
            )
            .map_err(pg_error("insert batches"))?;
        }
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(results)
    }

    /// See [`Storage::read_batches`](evsync_core::storage::Storage::read_batches):
    /// one statement that stops at both budgets inside the database.
    pub(super) async fn read_v4_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new()); // beyond any stored sequence
        };
        let max_entries = i64::try_from(limit.max_entries).unwrap_or(i64::MAX);
        let max_bytes = i64::try_from(limit.max_bytes).unwrap_or(i64::MAX);
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(READ)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &&*self.tenant,
                    &store.public_key.as_bytes(),
                    &store.store_id.as_bytes(),
                    &from,
                    &max_entries,
                    &max_bytes,
                ],
            )
            .await
            .map_err(pg_error("read batches"))?;
        rows.iter()
            .map(|row| {
                Ok(StoredBatch {
                    sequence: decode_sequence(row.get(0))?,
                    iv: Bytes::copy_from_slice(row.get::<_, &[u8]>(1)),
                    entry_ids: split_entry_ids(row.get::<_, &[u8]>(2))?,
                    encrypted_batch: Bytes::copy_from_slice(row.get::<_, &[u8]>(3)),
                })
            })
            .collect()
    }

    /// See [`Storage::bind_signing_key`](evsync_core::storage::Storage::bind_signing_key):
    /// a bound key is read without a write; otherwise insert-or-ignore and
    /// read back, so two nodes binding at once both get the first
    /// committed. Not cached: the tenant may be deleted through another
    /// node.
    pub(super) async fn bind_v4_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        let client = self.db.client().await?;
        let (find, insert) = tokio::try_join!(
            client.prepare_cached(FIND_SIGNING_KEY),
            client.prepare_cached(INSERT_SIGNING_KEY),
        )
        .map_err(pg_error("prepare"))?;
        let params: [&(dyn ToSql + Sync); 2] = [&&*self.tenant, &public_key.as_bytes()];
        let found = client
            .query_opt(&find, &params)
            .await
            .map_err(pg_error("read signing key"))?;
        let row = match found {
            Some(row) => row,
            None => {
                client
                    .execute(
                        &insert,
                        &[&&*self.tenant, &public_key.as_bytes(), &&signing_key[..]],
                    )
                    .await
                    .map_err(pg_error("store signing key"))?;
                client
                    .query_one(&find, &params)
                    .await
                    .map_err(pg_error("read signing key"))?
            }
        };
        let bound: &[u8] = row.get(0);
        bound.try_into().map_err(|_| {
            StorageError::new(format!(
                "postgres: a stored signing key of {} bytes",
                bound.len()
            ))
        })
    }
}

impl PgStorage {
    /// See [`Storage::stores`](evsync_core::storage::Storage::stores): one
    /// statement, so one snapshot.
    pub(super) async fn list_v4_stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(LIST_STORES)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("list stores"))?;
        rows.iter()
            .map(|row| {
                Ok(StoreHead {
                    store: StoreKey::new(
                        decode_public_key(row.get(0))?,
                        String::from_utf8(row.get::<_, &[u8]>(1).to_vec()).map_err(|_| {
                            StorageError::new("postgres: a stored storeId is not UTF-8")
                        })?,
                    ),
                    head: decode_sequence(row.get(2))?,
                })
            })
            .collect()
    }

    /// See [`Storage::bindings`](evsync_core::storage::Storage::bindings):
    /// one statement, so one snapshot.
    pub(super) async fn list_v4_bindings(
        &mut self,
    ) -> Result<Vec<SigningKeyBinding>, StorageError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(LIST_SIGNING_KEYS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("list signing keys"))?;
        rows.iter()
            .map(|row| {
                let key: &[u8] = row.get(1);
                Ok(SigningKeyBinding {
                    public_key: decode_public_key(row.get(0))?,
                    signing_key: key.try_into().map_err(|_| {
                        StorageError::new(format!(
                            "postgres: a stored signing key of {} bytes",
                            key.len()
                        ))
                    })?,
                })
            })
            .collect()
    }
}

fn skipped(sequences: Vec<Sequence>) -> BatchAppended {
    BatchAppended {
        stored_at: None,
        sequences,
    }
}
