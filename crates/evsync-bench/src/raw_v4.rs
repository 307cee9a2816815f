//! The ceiling of the v4 write path: the same encrypted batches inserted
//! straight into SQLite by a Rust loop, no network, no protocol.
//!
//! The file is created by evsync-storage-sqlite (the latest tenant-file
//! schema: `v4_stores`, `v4_batches` keyed by the packed
//! `store << 40 | last sequence`, `v4_entry_ids`) and the loop's
//! connection gets the store's own pragmas
//! (`evsync_storage_sqlite::configure`: WAL, `synchronous = FULL`, …). Each
//! transaction runs the statements evsync-storage-sqlite's
//! `append_batches` runs for a store that exists: find the store, look
//! every entry id up (the dedup check), insert the batch, insert its ids,
//! set the store's head; the batches are the load generator's (random iv,
//! random ciphertext of entries × size bytes, 16-byte UUID v7 ids).
//!
//! `group` requests (of `batches` batches each) go into one transaction:
//! 1 = a transaction per WriteSingle; the writer's window (16) = the fsync
//! count of a perfect group commit, which is how evsync's engine commits
//! (everything that arrived while the previous commit ran goes into the
//! next). `writers` threads, each with its own identity's store, take turns
//! on one connection, as in [`crate::raw`], whose WAL checkpoints it
//! shares (beside the writer, or in line with `inline_checkpoints`).
//! `via_storage` calls evsync-storage-sqlite's `append_batches` itself
//! instead.

use crate::common::*;
use crate::raw::{BackgroundCheckpoints, Commit, window_metrics};
use crate::v4::client::BatchMaker;
use evsync_core::storage::{BatchWrite, Storage, StoreKey, join_entry_ids};
use evsync_storage_sqlite::checkpoint;
use evsync_storage_sqlite::{SqliteStorage, schema};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RawV4Params {
    pub dir: PathBuf,
    pub writers: usize,
    /// Batches per request.
    pub batches: usize,
    /// Entries per batch.
    pub entries: usize,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per transaction.
    pub group: usize,
    pub via_storage: bool,
    /// SQLite's default: checkpoints inside the commits.
    pub inline_checkpoints: bool,
}

// evsync-storage-sqlite's statements (crates/evsync-storage-sqlite/src/batches.rs).
const FIND_STORE: &str = "SELECT id, head FROM v4_stores WHERE public_key = ?1 AND store_id = ?2";
const INSERT_STORE: &str = "INSERT INTO v4_stores (public_key, store_id, head) VALUES (?1, ?2, 0)";
const FIND_ENTRY_ID: &str = "SELECT sequence FROM v4_entry_ids WHERE store = ?1 AND entry_id = ?2";
const INSERT_ENTRY_ID: &str =
    "INSERT INTO v4_entry_ids (store, entry_id, sequence) VALUES (?1, ?2, ?3)";
const INSERT_BATCH: &str = "INSERT INTO v4_batches (key, sequence, iv, entry_ids, encrypted_batch)
    VALUES (?1, ?2, ?3, ?4, ?5)";
const SET_HEAD: &str = "UPDATE v4_stores SET head = ?2 WHERE id = ?1";

pub fn run(p: RawV4Params) -> Result<Map<String, Value>> {
    std::fs::create_dir_all(&p.dir)?;
    let kind = if p.via_storage { "storage" } else { "raw" };
    let path = p.dir.join(format!(
        "{kind}-v4-w{}-{}x{}-s{}-{}.sqlite",
        p.writers,
        p.batches,
        p.entries,
        p.size,
        std::process::id()
    ));
    let mut store = SqliteStorage::open(&path)?;
    store.remote_id()?;
    let store_key = |w: usize| StoreKey::new(format!("raw-v4-pk{w}"), "default");
    let result = if p.via_storage {
        let checkpoints = BackgroundCheckpoints::start(&path, p.inline_checkpoints, || {
            store.defer_checkpoints()
        })?;
        let store = Arc::new(Mutex::new(store));
        measure(&p, move |w| {
            let store = store.clone();
            let checkpoints = checkpoints.clone();
            let key = store_key(w);
            move |batches: Vec<evsync_core::proto::v4::EncryptedBatch>| {
                let writes: Vec<BatchWrite> = batches
                    .into_iter()
                    .map(|b| BatchWrite {
                        store: key.clone(),
                        iv: b.iv,
                        entry_ids: b.entry_ids,
                        encrypted_batch: b.encrypted_batch,
                    })
                    .collect();
                store
                    .lock()
                    .map_err(|_| err("poisoned"))?
                    .append_batches(&writes)?;
                checkpoints.committed();
                Ok(())
            }
        })
    } else {
        drop(store);
        let conn = Connection::open(&path)?;
        evsync_storage_sqlite::configure(&conn)?;
        let checkpoints = BackgroundCheckpoints::start(&path, p.inline_checkpoints, || {
            checkpoint::defer_checkpoints(&conn)
        })?;
        for w in 0..p.writers {
            let k = store_key(w);
            conn.execute(
                INSERT_STORE,
                params![k.public_key.as_bytes(), k.store_id.as_bytes()],
            )?;
        }
        let conn = Arc::new(Mutex::new(conn));
        measure(&p, move |w| {
            let conn = conn.clone();
            let checkpoints = checkpoints.clone();
            let key = store_key(w);
            move |batches: Vec<evsync_core::proto::v4::EncryptedBatch>| {
                let mut conn = conn.lock().map_err(|_| err("poisoned"))?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let (id, mut head): (i64, i64) = tx.prepare_cached(FIND_STORE)?.query_row(
                        params![key.public_key.as_bytes(), key.store_id.as_bytes()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    let mut find_id = tx.prepare_cached(FIND_ENTRY_ID)?;
                    let mut insert_id = tx.prepare_cached(INSERT_ENTRY_ID)?;
                    let mut insert_batch = tx.prepare_cached(INSERT_BATCH)?;
                    for b in &batches {
                        for e in &b.entry_ids {
                            let known: Option<i64> = find_id
                                .query_row(params![id, &e[..]], |r| r.get(0))
                                .optional()?;
                            if known.is_some() {
                                return Err(err("an entry id stored twice"));
                            }
                        }
                        let first = head + 1;
                        let last = head + b.entry_ids.len() as i64;
                        insert_batch.execute(params![
                            schema::batch_key(id, last),
                            first,
                            &b.iv[..],
                            join_entry_ids(&b.entry_ids),
                            &b.encrypted_batch[..],
                        ])?;
                        for (i, e) in b.entry_ids.iter().enumerate() {
                            insert_id.execute(params![id, &e[..], first + i as i64])?;
                        }
                        head = last;
                    }
                    tx.prepare_cached(SET_HEAD)?.execute(params![id, head])?;
                }
                tx.commit()?;
                checkpoints.committed();
                Ok(())
            }
        })
    };
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}

/// Runs `p.writers` threads; each builds `group` requests at a time and
/// hands their batches to its committer until the measured window ends.
fn measure<C, F>(p: &RawV4Params, committer: F) -> Result<Map<String, Value>>
where
    F: Fn(usize) -> C,
    C: FnMut(Vec<evsync_core::proto::v4::EncryptedBatch>) -> Result<()> + Send + 'static,
{
    let probe_start = Instant::now() + p.warmup;
    let end = probe_start + p.duration;
    let handles: Vec<_> = (0..p.writers)
        .map(|w| {
            let mut commit = committer(w);
            let p = p.clone();
            std::thread::spawn(move || -> Result<Vec<Commit>> {
                let mut maker = BatchMaker::new(p.entries, p.size);
                let mut out = Vec::new();
                let n = p.group.max(1) * p.batches;
                while Instant::now() < end {
                    let batches: Vec<_> = (0..n).map(|_| maker.batch()).collect();
                    let bytes: usize = batches.iter().map(|b| b.encrypted_batch.len()).sum();
                    let ready = Instant::now();
                    commit(batches)?;
                    out.push((ready, Instant::now(), n * p.entries, bytes));
                }
                Ok(out)
            })
        })
        .collect();
    window_metrics(handles, probe_start, end)
}
