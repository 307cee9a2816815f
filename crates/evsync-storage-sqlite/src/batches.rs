//! Effect v4's batch stores in the tenant file: the tables of schema
//! version 3 ([`evsync_core::storage::schema::sqlite`] says why they are
//! laid out so), written and read the way the v3 entries are: one IMMEDIATE
//! transaction per append, cached prepared statements, reads that stop
//! stepping at their budgets.

use crate::error::sqlite_error;
use crate::schema;
use crate::transaction::{Appendable, Inserter, Inserts};
use bytes::Bytes;
use evsync_core::storage::{
    BatchAppended, BatchWrite, ReadLimit, SigningKeyBinding, StorageError, StoreHead, StoreKey,
    StoredBatch, batch_bytes, check_writes, join_entry_ids, split_entry_ids,
};
use evsync_core::wire::Sequence;
use rusqlite::{CachedStatement, Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;

const FIND_STORE: &str = "SELECT id, head FROM v4_stores WHERE public_key = ?1 AND store_id = ?2";
const INSERT_STORE: &str = "INSERT INTO v4_stores (public_key, store_id, head) VALUES (?1, ?2, 0)";
const FIND_ENTRY_ID: &str = "SELECT sequence FROM v4_entry_ids WHERE store = ?1 AND entry_id = ?2";
const INSERT_ENTRY_ID: &str =
    "INSERT INTO v4_entry_ids (store, entry_id, sequence) VALUES (?1, ?2, ?3)";
const INSERT_BATCH: &str = "INSERT INTO v4_batches (key, sequence, iv, entry_ids, encrypted_batch)
    VALUES (?1, ?2, ?3, ?4, ?5)";
const SET_HEAD: &str = "UPDATE v4_stores SET head = ?2 WHERE id = ?1";
const READ: &str = "SELECT sequence, iv, entry_ids, encrypted_batch FROM v4_batches
    WHERE key >= ?1 AND key <= ?2 ORDER BY key LIMIT ?3";
const FIND_SIGNING_KEY: &str = "SELECT signing_key FROM v4_signing_keys WHERE public_key = ?1";
const INSERT_SIGNING_KEY: &str =
    "INSERT OR IGNORE INTO v4_signing_keys (public_key, signing_key) VALUES (?1, ?2)";

/// Every store with batches and its head, in (publicKey, storeId) byte
/// order (BLOBs compare as memcmp): one row per store, no scan of batches.
const LIST_STORES: &str = "SELECT public_key, store_id, head FROM v4_stores WHERE head > 0
    ORDER BY public_key, store_id";
const LIST_SIGNING_KEYS: &str =
    "SELECT public_key, signing_key FROM v4_signing_keys ORDER BY public_key";

/// One store while an append runs.
struct Cursor {
    id: i64,
    /// The last sequence taken.
    head: i64,
    /// Created by this call: it holds no id yet, so none is looked up.
    created: bool,
    dirty: bool,
}

impl Appendable for BatchWrite {
    type Outcome = BatchAppended;

    fn check(writes: &[Self]) -> Result<(), StorageError> {
        check_writes(writes)
    }

    /// An empty batch is skipped.
    fn nothing_to_store(&self) -> Option<BatchAppended> {
        self.entry_ids.is_empty().then(|| skipped(Vec::new()))
    }
}

/// The statements and per-store state of one append transaction of v4
/// batches.
pub(crate) struct BatchInserter<'t> {
    tx: &'t Connection,
    find_store: CachedStatement<'t>,
    insert_store: CachedStatement<'t>,
    find_id: CachedStatement<'t>,
    insert_id: CachedStatement<'t>,
    insert_batch: CachedStatement<'t>,
    stores: HashMap<StoreKey, Cursor>,
    /// Ids stored by this transaction, per store id: found without a query.
    stored_now: HashMap<i64, HashMap<Bytes, i64>>,
}

impl Inserts<BatchWrite> for BatchInserter<'_> {
    type In<'t> = BatchInserter<'t>;
}

impl<'t> Inserter<'t, BatchWrite> for BatchInserter<'t> {
    fn new(tx: &'t Connection) -> Result<Self, StorageError> {
        let prepare = |sql| tx.prepare_cached(sql).map_err(sqlite_error("prepare"));
        Ok(BatchInserter {
            tx,
            find_store: prepare(FIND_STORE)?,
            insert_store: prepare(INSERT_STORE)?,
            find_id: prepare(FIND_ENTRY_ID)?,
            insert_id: prepare(INSERT_ENTRY_ID)?,
            insert_batch: prepare(INSERT_BATCH)?,
            stores: HashMap::new(),
            stored_now: HashMap::new(),
        })
    }

    /// Stores `write` (or finds all its ids stored: skipped).
    fn insert(&mut self, write: &BatchWrite) -> Result<BatchAppended, StorageError> {
        if write.entry_ids.is_empty() {
            return Ok(skipped(Vec::new()));
        }
        let (store, created, head) = {
            let cursor = self.cursor(&write.store)?;
            (cursor.id, cursor.created, cursor.head)
        };
        let stored_now = self.stored_now.entry(store).or_default();
        let mut known = Vec::with_capacity(write.entry_ids.len());
        for id in &write.entry_ids {
            let sequence = match stored_now.get(&id[..]) {
                Some(&sequence) => Some(sequence),
                None if created => None,
                None => self
                    .find_id
                    .query_row(params![store, &id[..]], |row| row.get(0))
                    .optional()
                    .map_err(sqlite_error("find entry id"))?,
            };
            known.push(sequence);
        }
        if known.iter().all(Option::is_some) {
            let sequences = known
                .into_iter()
                .map(|s| decode_sequence(s.expect("all known")))
                .collect::<Result<_, _>>()?;
            return Ok(skipped(sequences));
        }
        let n = write.entry_ids.len() as i64;
        let first = head + 1;
        let last = head + n;
        if last > schema::MAX_SEQUENCE {
            return Err(StorageError::new(format!(
                "sqlite: v4 store full ({} sequences)",
                schema::MAX_SEQUENCE
            )));
        }
        self.insert_batch
            .execute(params![
                schema::batch_key(store, last),
                first,
                &write.iv[..],
                join_entry_ids(&write.entry_ids),
                &write.encrypted_batch[..],
            ])
            .map_err(sqlite_error("insert batch"))?;
        for (i, (id, was_known)) in write.entry_ids.iter().zip(&known).enumerate() {
            // An id repeated within this batch was unknown at both places;
            // only its first occurrence is recorded.
            if was_known.is_some() || stored_now.contains_key(&id[..]) {
                continue;
            }
            let sequence = first + i as i64;
            self.insert_id
                .execute(params![store, &id[..], sequence])
                .map_err(sqlite_error("insert entry id"))?;
            stored_now.insert(id.clone(), sequence);
        }
        let cursor = self.stores.get_mut(&write.store).expect("found above");
        cursor.head = last;
        cursor.dirty = true;
        Ok(BatchAppended {
            stored_at: Some(first as Sequence),
            sequences: (first..=last).map(|s| s as Sequence).collect(),
        })
    }

    fn set_heads(&mut self) -> Result<(), StorageError> {
        let mut set_head = self
            .tx
            .prepare_cached(SET_HEAD)
            .map_err(sqlite_error("prepare"))?;
        for cursor in self.stores.values().filter(|c| c.dirty) {
            set_head
                .execute(params![cursor.id, cursor.head])
                .map_err(sqlite_error("update store head"))?;
        }
        Ok(())
    }
}

impl BatchInserter<'_> {
    /// `write`'s store, found or created (first sight in this transaction).
    fn cursor(&mut self, store: &StoreKey) -> Result<&mut Cursor, StorageError> {
        if !self.stores.contains_key(store) {
            let key = (store.public_key.as_bytes(), store.store_id.as_bytes());
            let found: Option<(i64, i64)> = self
                .find_store
                .query_row(params![key.0, key.1], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(sqlite_error("find store"))?;
            let cursor = match found {
                Some((id, head)) => Cursor {
                    id,
                    head,
                    created: false,
                    dirty: false,
                },
                None => {
                    self.insert_store
                        .execute(params![key.0, key.1])
                        .map_err(sqlite_error("create store"))?;
                    let id = self.tx.last_insert_rowid();
                    if id > schema::MAX_LOG_ID {
                        // Its keys would wrap into other stores' ranges;
                        // the caller's error drops the transaction.
                        return Err(StorageError::new(format!(
                            "sqlite: too many v4 stores in this tenant (at most {})",
                            schema::MAX_LOG_ID
                        )));
                    }
                    Cursor {
                        id,
                        head: 0,
                        created: true,
                        dirty: false,
                    }
                }
            };
            self.stores.insert(store.clone(), cursor);
        }
        Ok(self.stores.get_mut(store).expect("inserted above"))
    }
}

/// [`Storage::read_batches`](evsync_core::storage::Storage::read_batches)
/// on the tenant file: one range scan of `v4_batches` by (store, last
/// sequence), stepping stopped at the budgets.
pub(crate) fn read(
    conn: &Connection,
    store: &StoreKey,
    from: Sequence,
    limit: ReadLimit,
) -> Result<Vec<StoredBatch>, StorageError> {
    if limit.max_entries == 0 {
        return Ok(Vec::new());
    }
    let from = match i64::try_from(from) {
        Ok(from) if from <= schema::MAX_SEQUENCE => from,
        _ => return Ok(Vec::new()), // beyond any stored sequence
    };
    let id: Option<i64> = conn
        .prepare_cached(FIND_STORE)
        .and_then(|mut stmt| {
            stmt.query_row(
                params![store.public_key.as_bytes(), store.store_id.as_bytes()],
                |row| row.get(0),
            )
            .optional()
        })
        .map_err(sqlite_error("find store"))?;
    let Some(id) = id else {
        return Ok(Vec::new()); // an unknown store reads as empty
    };
    let max_entries = i64::try_from(limit.max_entries).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(READ).map_err(sqlite_error("prepare"))?;
    let mut rows = stmt
        .query(params![
            schema::batch_key(id, from),
            schema::batch_key(id, schema::MAX_SEQUENCE),
            max_entries
        ])
        .map_err(sqlite_error("read batches"))?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(sqlite_error("read batches"))? {
        let blob = |i: usize| -> Result<&[u8], StorageError> {
            row.get_ref(i)
                .map_err(sqlite_error("read column"))?
                .as_blob()
                .map_err(|e| StorageError::new(format!("sqlite: column {i}: {e}")))
        };
        let batch = StoredBatch {
            sequence: decode_sequence(row.get(0).map_err(sqlite_error("read sequence"))?)?,
            iv: Bytes::copy_from_slice(blob(1)?),
            entry_ids: split_entry_ids(blob(2)?)?,
            encrypted_batch: Bytes::copy_from_slice(blob(3)?),
        };
        let size = batch_bytes(&batch);
        if !out.is_empty() && bytes.saturating_add(size) > limit.max_bytes {
            break;
        }
        bytes += size;
        out.push(batch);
    }
    Ok(out)
}

/// [`Storage::bind_signing_key`](evsync_core::storage::Storage::bind_signing_key)
/// on the tenant file. A bound key is read without a write (the usual
/// case: every authentication after the first); binding inserts-or-ignores
/// and reads back in one write transaction, so two connections binding at
/// once both get the key committed first.
pub(crate) fn bind(
    conn: &mut Connection,
    public_key: &str,
    signing_key: &[u8; 32],
) -> Result<[u8; 32], StorageError> {
    if let Some(bound) = find_signing_key(conn, public_key)? {
        return Ok(bound);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error("begin"))?;
    tx.prepare_cached(INSERT_SIGNING_KEY)
        .and_then(|mut stmt| stmt.execute(params![public_key.as_bytes(), &signing_key[..]]))
        .map_err(sqlite_error("store signing key"))?;
    let bound = find_signing_key(&tx, public_key)?
        .ok_or_else(|| StorageError::new("sqlite: signing key vanished after insert"))?;
    tx.commit().map_err(sqlite_error("commit"))?;
    Ok(bound)
}

fn find_signing_key(conn: &Connection, public_key: &str) -> Result<Option<[u8; 32]>, StorageError> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached(FIND_SIGNING_KEY)
        .and_then(|mut stmt| {
            stmt.query_row([public_key.as_bytes()], |row| row.get(0))
                .optional()
        })
        .map_err(sqlite_error("read signing key"))?;
    stored
        .map(|bytes| {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                StorageError::new(format!(
                    "sqlite: a stored signing key of {} bytes",
                    bytes.len()
                ))
            })
        })
        .transpose()
}

/// [`Storage::stores`](evsync_core::storage::Storage::stores) on the
/// tenant file: one statement, so one snapshot.
pub(crate) fn list_stores(conn: &Connection) -> Result<Vec<StoreHead>, StorageError> {
    let mut stmt = conn
        .prepare_cached(LIST_STORES)
        .map_err(sqlite_error("prepare"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })
        .map_err(sqlite_error("list stores"))?;
    let mut heads = Vec::new();
    for row in rows {
        let (public_key, store_id, head) = row.map_err(sqlite_error("list stores"))?;
        heads.push(StoreHead {
            store: StoreKey::new(text(public_key)?, text(store_id)?),
            head: decode_sequence(head)?,
        });
    }
    Ok(heads)
}

/// [`Storage::bindings`](evsync_core::storage::Storage::bindings) on the
/// tenant file: one statement, so one snapshot.
pub(crate) fn list_bindings(conn: &Connection) -> Result<Vec<SigningKeyBinding>, StorageError> {
    let mut stmt = conn
        .prepare_cached(LIST_SIGNING_KEYS)
        .map_err(sqlite_error("prepare"))?;
    let rows = stmt
        .query_map([], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(sqlite_error("list signing keys"))?;
    let mut bindings = Vec::new();
    for row in rows {
        let (public_key, key) = row.map_err(sqlite_error("list signing keys"))?;
        let signing_key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
            StorageError::new(format!(
                "sqlite: a stored signing key of {} bytes",
                key.len()
            ))
        })?;
        bindings.push(SigningKeyBinding {
            public_key: text(public_key)?,
            signing_key,
        });
    }
    Ok(bindings)
}

/// A stored publicKey or storeId (UTF-8 bytes) as a string.
fn text(bytes: Vec<u8>) -> Result<String, StorageError> {
    String::from_utf8(bytes)
        .map_err(|_| StorageError::new("sqlite: a stored v4 publicKey or storeId is not UTF-8"))
}

fn skipped(sequences: Vec<Sequence>) -> BatchAppended {
    BatchAppended {
        stored_at: None,
        sequences,
    }
}

/// A stored sequence, which is never negative.
fn decode_sequence(stored: i64) -> Result<Sequence, StorageError> {
    u64::try_from(stored)
        .map_err(|_| StorageError::new(format!("sqlite: stored sequence {stored} is negative")))
}
