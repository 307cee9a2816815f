//! One tenant's store on PostgreSQL: the storage contract's calls (v4's
//! batch stores in [`batches`]).

mod batches;

use crate::{PgDatabase, pg_error, schema};
use bytes::Bytes;
use evsync_core::storage::schema::remote_id;
use evsync_core::storage::{
    AppendBatch, Appended, AsyncStorage, BatchAppended, BatchWrite, LogHead, ReadLimit,
    SigningKeyBinding, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch,
    check_tokens_not_before, decode_tokens_not_before, remote_id_taken,
};
use evsync_core::wire::{RemoteEntry, RemoteId, Sequence};
use futures_util::future::try_join_all;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_postgres::types::ToSql;

/// The largest NOTIFY payload sent; PostgreSQL refuses 8000 bytes or more.
/// A log whose payload would be longer (a publicKey of several kB) is not
/// announced: nodes re-check heads when they (re)start listening, and a
/// subscriber of such a log catches up at its next read.
pub const MAX_NOTIFY_PAYLOAD: usize = 7900;

/// One tenant's store: a handle on the node's pool and the tenant's name.
/// Each call borrows a pooled connection for its duration, so clones of a
/// store (the server's writer and readers) run calls concurrently. Holds
/// no state of its own: every answer comes from the database, which other
/// nodes write too.
#[derive(Clone)]
pub struct PgStorage {
    db: PgDatabase,
    tenant: Arc<str>,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The JSON of a NOTIFY: which log of which tenant reached which head.
#[derive(serde::Serialize)]
struct Notice<'a> {
    t: &'a str,
    k: &'a str,
    h: u64,
}

/// One log while an append runs: its row (locked), its head, the entries
/// already stored of this append's entryIds, and the entries assigned a
/// sequence by this append.
struct LogWork<'a> {
    id: i64,
    public_key: &'a str,
    /// The head as locked, which other writers cannot move until COMMIT.
    head: i64,
    /// The last sequence assigned so far (`head` until one is).
    next: i64,
    stored: HashMap<Bytes, i64>,
    assigned: HashMap<&'a [u8], i64>,
}

impl PgStorage {
    pub(crate) fn new(db: PgDatabase, tenant: &str) -> PgStorage {
        PgStorage {
            db,
            tenant: tenant.into(),
        }
    }

    /// The tenant this store serves.
    pub fn tenant_name(&self) -> &str {
        &self.tenant
    }

    async fn read_remote_id(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<Option<RemoteId>, StorageError> {
        let stmt = client
            .prepare_cached(schema::SELECT_REMOTE_ID)
            .await
            .map_err(pg_error("prepare"))?;
        let row = client
            .query_opt(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("read remote_id"))?;
        row.map(|row| remote_id::decode(row.get::<_, &[u8]>(0)))
            .transpose()
    }

    async fn insert_remote_id(
        &self,
        client: &deadpool_postgres::Client,
        id: RemoteId,
    ) -> Result<(), StorageError> {
        let stmt = client
            .prepare_cached(schema::INSERT_REMOTE_ID)
            .await
            .map_err(pg_error("prepare"))?;
        client
            .execute(&stmt, &[&&*self.tenant, &&id.0[..]])
            .await
            .map_err(pg_error("store remote_id"))?;
        Ok(())
    }
}

/// A stored publicKey (`bytea`, the UTF-8 bytes) as a string.
pub(crate) fn decode_public_key(bytes: &[u8]) -> Result<String, StorageError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StorageError::new("postgres: a stored publicKey is not UTF-8"))
}

/// A stored sequence (`bigint`), which is never negative.
pub(crate) fn decode_sequence(stored: i64) -> Result<Sequence, StorageError> {
    u64::try_from(stored)
        .map_err(|_| StorageError::new(format!("postgres: stored sequence {stored} is negative")))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

impl AsyncStorage for PgStorage {
    /// Read, and if there is none, insert-or-ignore a fresh one and read
    /// again: two nodes creating it at once agree on the first stored.
    /// Not cached: a tenant deleted (and recreated) through another node
    /// has another one.
    async fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        let client = self.db.client().await?;
        if let Some(id) = self.read_remote_id(&client).await? {
            return Ok(id);
        }
        let mut bytes = [0u8; 16];
        let fresh = remote_id::create(
            getrandom::fill(&mut bytes)
                .map(|()| bytes)
                .map_err(|e| e.to_string()),
        )?;
        self.insert_remote_id(&client, fresh).await?;
        self.read_remote_id(&client)
            .await?
            .ok_or_else(|| StorageError::new("postgres: remote_id vanished after insert"))
    }

    /// One transaction for every batch. In it: the logs written are
    /// created if new and locked, in publicKey order
    /// ([`schema::LOCK_LOGS`]); the entryIds already stored are looked up
    /// (one query per log that has entries, pipelined); sequences continue
    /// from each log's locked head; the new entries go in with one
    /// statement, the heads with another, and a NOTIFY per log whose head
    /// rose with a third, the three pipelined. Returns once COMMIT has.
    async fn append(
        &mut self,
        batches: &[AppendBatch],
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        if batches.iter().all(|b| b.entries.is_empty()) {
            return Ok(batches.iter().map(|_| Vec::new()).collect());
        }
        // The logs written, in byte order: the lock order.
        let mut keys: Vec<&str> = batches
            .iter()
            .filter(|b| !b.entries.is_empty())
            .map(|b| b.public_key.as_str())
            .collect();
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        keys.dedup();
        let key_bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();

        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(pg_error("begin"))?;
        let (lock, find, insert, set_heads, notify) = tokio::try_join!(
            tx.prepare_cached(schema::LOCK_LOGS),
            tx.prepare_cached(schema::FIND_ENTRIES),
            tx.prepare_cached(schema::INSERT_ENTRIES),
            tx.prepare_cached(schema::SET_HEADS),
            tx.prepare_cached(schema::NOTIFY),
        )
        .map_err(pg_error("prepare"))?;

        let locked = tx
            .query(&lock, &[&&*self.tenant, &key_bytes])
            .await
            .map_err(pg_error("lock logs"))?;
        let by_bytes: HashMap<&[u8], &str> = keys.iter().map(|k| (k.as_bytes(), *k)).collect();
        let mut logs: HashMap<&str, LogWork<'_>> = HashMap::with_capacity(keys.len());
        for row in &locked {
            let public_key = *by_bytes.get(row.get::<_, &[u8]>(1)).ok_or_else(|| {
                StorageError::new("postgres: locked a log that was not asked for")
            })?;
            let head: i64 = row.get(2);
            logs.insert(
                public_key,
                LogWork {
                    id: row.get(0),
                    public_key,
                    head,
                    next: head,
                    stored: HashMap::new(),
                    assigned: HashMap::new(),
                },
            );
        }
        if logs.len() != keys.len() {
            return Err(StorageError::new(format!(
                "postgres: locked {} logs of {}",
                logs.len(),
                keys.len()
            )));
        }

        // Which of this append's entryIds each log already holds. A log
        // created just now (head 0) holds none.
        let mut wanted: HashMap<&str, Vec<Vec<u8>>> = HashMap::new();
        for batch in batches.iter().filter(|b| !b.entries.is_empty()) {
            if logs[batch.public_key.as_str()].head > 0 {
                let hashes = wanted.entry(batch.public_key.as_str()).or_default();
                hashes.extend(batch.entries.iter().map(|e| sha256(&e.entry_id)));
            }
        }
        let lookups = wanted.iter().map(|(key, hashes)| {
            let id = logs[key].id;
            let find = &find;
            let tx = &tx;
            async move {
                let rows = tx.query(find, &[&id, hashes]).await?;
                Ok::<_, tokio_postgres::Error>((*key, rows))
            }
        });
        for (key, rows) in try_join_all(lookups)
            .await
            .map_err(pg_error("find stored entries"))?
        {
            let log = logs.get_mut(key).expect("looked up above");
            for row in rows {
                let entry_id: &[u8] = row.get(0);
                log.stored
                    .insert(Bytes::copy_from_slice(entry_id), row.get(1));
            }
        }

        // Sequences: the stored one for a known entryId (or one assigned
        // earlier in this call), else the next of its log.
        let mut new_log_ids: Vec<i64> = Vec::new();
        let mut new_sequences: Vec<i64> = Vec::new();
        let mut new_entry_ids: Vec<&[u8]> = Vec::new();
        let mut new_ivs: Vec<&[u8]> = Vec::new();
        let mut new_payloads: Vec<&[u8]> = Vec::new();
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut outcome = Vec::with_capacity(batch.entries.len());
            for entry in &batch.entries {
                let log = logs
                    .get_mut(batch.public_key.as_str())
                    .expect("every batch with entries has its log");
                let known = log
                    .stored
                    .get(&entry.entry_id[..])
                    .or_else(|| log.assigned.get(&entry.entry_id[..]))
                    .copied();
                match known {
                    Some(sequence) => outcome.push(Appended {
                        sequence: decode_sequence(sequence)?,
                        inserted: false,
                    }),
                    None => {
                        log.next += 1;
                        let sequence = log.next;
                        log.assigned.insert(&entry.entry_id[..], sequence);
                        new_log_ids.push(log.id);
                        new_sequences.push(sequence);
                        new_entry_ids.push(&entry.entry_id[..]);
                        new_ivs.push(&batch.iv[..]);
                        new_payloads.push(&entry.encrypted_entry[..]);
                        outcome.push(Appended {
                            sequence: decode_sequence(sequence)?,
                            inserted: true,
                        });
                    }
                }
            }
            results.push(outcome);
        }

        if !new_sequences.is_empty() {
            let mut head_ids = Vec::new();
            let mut heads = Vec::new();
            let mut notices = Vec::new();
            for key in &keys {
                let log = &logs[key];
                let head = log.next;
                if head == log.head {
                    continue;
                }
                head_ids.push(log.id);
                heads.push(head);
                let notice = serde_json::to_string(&Notice {
                    t: &self.tenant,
                    k: log.public_key,
                    h: decode_sequence(head)?,
                })
                .map_err(|e| StorageError::new(format!("postgres: notify payload: {e}")))?;
                if notice.len() <= MAX_NOTIFY_PAYLOAD {
                    notices.push(notice);
                }
            }
            let entry_params: [&(dyn ToSql + Sync); 5] = [
                &new_log_ids,
                &new_sequences,
                &new_entry_ids,
                &new_ivs,
                &new_payloads,
            ];
            let head_params: [&(dyn ToSql + Sync); 2] = [&head_ids, &heads];
            let notify_params: [&(dyn ToSql + Sync); 1] = [&notices];
            tokio::try_join!(
                tx.execute(&insert, &entry_params),
                tx.execute(&set_heads, &head_params),
                tx.execute(&notify, &notify_params),
            )
            .map_err(pg_error("insert entries"))?;
        }
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(results)
    }

    /// One statement ([`schema::READ`]) that stops at the entry and byte
    /// budgets inside the database, so entries past them are never sent.
    async fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError> {
        if limit.max_entries == 0 {
            return Ok(Vec::new());
        }
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new()); // beyond any stored sequence
        };
        // Sequences start at 1: reading from 0 is reading from 1, and the
        // range [from, until) holds at most `max_entries` of them.
        let from = from.max(1);
        let max_entries = i64::try_from(limit.max_entries).unwrap_or(i64::MAX);
        let until = from.saturating_add(max_entries);
        let max_bytes = i64::try_from(limit.max_bytes).unwrap_or(i64::MAX);
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(schema::READ)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &&*self.tenant,
                    &public_key.as_bytes(),
                    &from,
                    &until,
                    &max_entries,
                    &max_bytes,
                ],
            )
            .await
            .map_err(pg_error("read"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes = |i: usize| Bytes::copy_from_slice(row.get::<_, &[u8]>(i));
            out.push(RemoteEntry {
                sequence: decode_sequence(row.get(0))?,
                iv: bytes(1),
                entry_id: bytes(2),
                encrypted_entry: bytes(3),
            });
        }
        Ok(out)
    }

    /// Not cached: another node may raise it at any time.
    async fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_TOKENS_NOT_BEFORE)
            .await
            .map_err(pg_error("prepare"))?;
        let row = client
            .query_opt(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("read tokens_not_before"))?;
        row.map(|row| decode_tokens_not_before(row.get::<_, i64>(0) as f64))
            .transpose()
    }

    /// One statement that raises and returns the committed instant
    /// ([`schema::RAISE_TOKENS_NOT_BEFORE`]).
    async fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        let not_before_ms = check_tokens_not_before(not_before_ms)? as i64;
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(schema::RAISE_TOKENS_NOT_BEFORE)
            .await
            .map_err(pg_error("prepare"))?;
        let row = client
            .query_one(&stmt, &[&&*self.tenant, &not_before_ms])
            .await
            .map_err(pg_error("store tokens_not_before"))?;
        let stored = row.get::<_, i64>(0);
        // Stored (committed) first, then every node told, so a node that
        // hears it reads the new instant. Best effort: the instant is in
        // force for new connections either way, and nodes re-read the
        // revocations of their loaded tenants at every re-check.
        if let Ok(notify) = client.prepare_cached(schema::NOTIFY_REVOKED).await {
            let _ = client.execute(&notify, &[&&*self.tenant, &stored]).await;
        }
        decode_tokens_not_before(stored as f64)
    }

    /// One statement ([`schema::SELECT_STATS`]), so one snapshot. No last
    /// write time: a time stored per commit is not worth its write.
    async fn stats(&mut self) -> Result<StoreStats, StorageError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_STATS)
            .await
            .map_err(pg_error("prepare"))?;
        let row = client
            .query_one(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("stats"))?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(StoreStats {
            logs: count(0),
            entries: count(1),
            bytes: count(2),
            last_write_ms: None,
        })
    }

    /// One statement over the logs' head rows: one row per log, not a scan
    /// of entries.
    async fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(schema::SELECT_LOG_HEADS)
            .await
            .map_err(pg_error("prepare"))?;
        let rows = client
            .query(&stmt, &[&&*self.tenant])
            .await
            .map_err(pg_error("list logs"))?;
        rows.iter()
            .map(|row| {
                Ok(LogHead {
                    public_key: decode_public_key(row.get(0))?,
                    head: decode_sequence(row.get(1))?,
                })
            })
            .collect()
    }

    async fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        let client = self.db.client().await?;
        self.insert_remote_id(&client, remote_id).await?;
        let held = self
            .read_remote_id(&client)
            .await?
            .ok_or_else(|| StorageError::new("postgres: remote_id vanished after insert"))?;
        if held != remote_id {
            return Err(remote_id_taken(held, remote_id));
        }
        Ok(())
    }

    async fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        self.append_v4_batches(writes).await
    }

    async fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        self.read_v4_batches(store, from, limit).await
    }

    async fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        self.bind_v4_signing_key(public_key, signing_key).await
    }

    async fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        self.list_v4_stores().await
    }

    async fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        self.list_v4_bindings().await
    }
}
