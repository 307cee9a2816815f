//! SQLite storage for evsync: one database file per tenant.
//!
//! A tenant is what a Durable Object was in the original worker: its own
//! logs (one per publicKey) and its own remoteId. Giving each tenant its own
//! file keeps tenants isolated by construction, lets an idle tenant cost
//! nothing but disk (its file is closed when the server unloads it), and
//! lets one tenant be backed up, moved or deleted with `cp`/`rm`.
//!
//! All publicKeys of a tenant share one schema (see [`schema`]), so a tenant
//! with ten thousand identities still has four tables for v3 (its remoteId,
//! its logs, their entries, its settings) and four for Effect v4 (its
//! stores, their batches, their entry ids, its signing keys).

mod arena;
mod batches;
pub mod checkpoint;
pub mod effect_sql;
mod error;
pub mod files;
mod paths;
pub mod schema;
mod transaction;

pub use paths::{EXTENSION, tenant_file_name, tenant_from_file_name, tenant_path};

use arena::BlobArena;
use batches::BatchInserter;
use bytes::Bytes;
use error::sqlite_error;
use evsync_core::storage::schema::remote_id;
use evsync_core::storage::{
    AppendBatch, Appended, BatchAppended, BatchWrite, Joins, LogHead, ReadLimit, SigningKeyBinding,
    Storage, StorageError, StoreHead, StoreKey, StoreStats, StoredBatch, check_tokens_not_before,
    decode_tokens_not_before, entry_bytes, remote_id_taken,
};
use evsync_core::wire::{RemoteEntry, RemoteId, Sequence};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use transaction::{Appendable, Inserter, Inserts};

/// How long a call waits for a lock held by another connection to the same
/// file (the server's reader and writer connections, a backup tool) before
/// failing. Commits are short, so this is only reached by a wedged peer.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection: v3's hot path uses eight, v4's
/// (batches) nine more, and the rest a few.
const STATEMENT_CACHE: usize = 32;

/// One tenant's store: a connection to its SQLite file.
///
/// Durability: the file is in WAL mode with `synchronous = FULL`, so every
/// commit fsyncs the WAL before [`Storage::append`] returns. The server
/// sends an `Ack` only after that, and a replica that got an `Ack` never
/// uploads those entries again: losing an acknowledged entry would lose it
/// for every other replica. WAL + `NORMAL` would already survive SIGKILL
/// (the WAL is written to the OS before the commit returns) but not a power
/// cut or kernel panic; `FULL` closes that gap for one fsync per commit,
/// which the engine's group commit (all writes that arrive during one
/// commit share the next) amortizes across connections.
///
/// Several `SqliteStorage` values may be open on one file (the server opens
/// a second one for catch-up reads, so reads never wait behind an fsync);
/// SQLite's WAL gives each read a consistent snapshot.
pub struct SqliteStorage {
    conn: Connection,
    path: PathBuf,
    remote_id: Option<RemoteId>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date. The parent directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| StorageError::new(format!("cannot open {}: {e}", path.display())))?;
        configure(&conn)
            .map_err(|e| StorageError::new(format!("cannot configure {}: {e}", path.display())))?;
        schema::migrate(&mut conn)
            .map_err(|e| StorageError::new(format!("{}: {e}", path.display())))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteStorage {
            conn,
            path,
            remote_id: None,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The highest sequence of `public_key`'s log (0 when it has none).
    pub fn head(&mut self, public_key: &str) -> Result<Sequence, StorageError> {
        let head: Option<i64> = self
            .conn
            .prepare_cached("SELECT head FROM logs WHERE public_key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([public_key.as_bytes()], |row| row.get(0))
                    .optional()
            })
            .map_err(sqlite_error("head"))?;
        Ok(head.unwrap_or(0) as Sequence)
    }
}

/// Per-connection settings; none of them is stored in the file except the
/// journal mode, which WAL makes persistent. Public so that the benchmark's
/// raw-SQLite ceiling runs with exactly the server's settings.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -2048;
         PRAGMA journal_size_limit = 67108864;",
    )
}

/// Per-log state while one append transaction runs.
struct LogCursor {
    id: i64,
    head: i64,
    dirty: bool,
}

impl Storage for SqliteStorage {
    fn remote_id(&mut self) -> Result<RemoteId, StorageError> {
        if let Some(id) = self.remote_id {
            return Ok(id);
        }
        // The shared rule (remote_id::create): insert-or-ignore a fresh
        // one, then read back whichever was stored first.
        let read = |conn: &Connection| -> Result<Option<RemoteId>, StorageError> {
            let blob: Option<Vec<u8>> = conn
                .query_row(schema::SELECT_REMOTE_ID, [], |row| row.get(0))
                .optional()
                .map_err(sqlite_error("read remote_id"))?;
            blob.map(|bytes| remote_id::decode(&bytes)).transpose()
        };
        let id = match read(&self.conn)? {
            Some(id) => id,
            None => {
                let mut bytes = [0u8; 16];
                let fresh = remote_id::create(
                    getrandom::fill(&mut bytes)
                        .map(|()| bytes)
                        .map_err(|e| e.to_string()),
                )?;
                self.conn
                    .execute(schema::INSERT_REMOTE_ID, [&fresh.0[..]])
                    .map_err(sqlite_error("store remote_id"))?;
                read(&self.conn)?
                    .ok_or_else(|| StorageError::new("sqlite: remote_id vanished after insert"))?
            }
        };
        self.remote_id = Some(id);
        Ok(id)
    }

    fn append(&mut self, batches: &[AppendBatch]) -> Result<Vec<Vec<Appended>>, StorageError> {
        transaction::append::<_, EntryInserter<'_>>(&mut self.conn, batches, &mut || None)
    }

    fn append_with_joins(
        &mut self,
        batches: &[AppendBatch],
        joins: Joins<'_, AppendBatch>,
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        transaction::append::<_, EntryInserter<'_>>(&mut self.conn, batches, joins)
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
        let from = match i64::try_from(from) {
            Ok(from) if from <= schema::MAX_SEQUENCE => from,
            _ => return Ok(Vec::new()), // beyond any stored sequence
        };
        let log_id: Option<i64> = self
            .conn
            .prepare_cached(schema::FIND_LOG_ID)
            .and_then(|mut stmt| {
                stmt.query_row([public_key.as_bytes()], |row| row.get(0))
                    .optional()
            })
            .map_err(sqlite_error("find log"))?;
        let Some(log_id) = log_id else {
            return Ok(Vec::new()); // an unknown log reads as empty
        };
        let max_entries = i64::try_from(limit.max_entries).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached(schema::READ_ENTRIES)
            .map_err(sqlite_error("prepare"))?;
        let mut rows = stmt
            .query(params![
                schema::entry_key(log_id, from),
                schema::entry_key(log_id, schema::MAX_SEQUENCE),
                max_entries
            ])
            .map_err(sqlite_error("read"))?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut arena = BlobArena::default();
        while let Some(row) = rows.next().map_err(sqlite_error("read"))? {
            let mut blob = |i: usize| -> Result<Bytes, StorageError> {
                let value = row.get_ref(i).map_err(sqlite_error("read column"))?;
                let slice = value
                    .as_blob()
                    .map_err(|e| StorageError::new(format!("sqlite: column {i}: {e}")))?;
                Ok(arena.copy(slice))
            };
            let key: i64 = row.get(0).map_err(sqlite_error("read key"))?;
            let entry = RemoteEntry {
                sequence: schema::key_sequence(key) as Sequence,
                iv: blob(1)?,
                entry_id: blob(2)?,
                encrypted_entry: blob(3)?,
            };
            let size = entry_bytes(&entry);
            if !out.is_empty() && bytes.saturating_add(size) > limit.max_bytes {
                break;
            }
            bytes += size;
            out.push(entry);
        }
        Ok(out)
    }

    fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError> {
        // Not cached: the server's other connection to this file may
        // raise it.
        read_tokens_not_before(&self.conn)
    }

    fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError> {
        let not_before_ms = check_tokens_not_before(not_before_ms)?;
        // Raise and read back in one write transaction, so the value
        // returned is the one committed (and fsynced, synchronous = FULL)
        // even when another connection raises it at the same time.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error("begin"))?;
        tx.prepare_cached(schema::RAISE_TOKENS_NOT_BEFORE)
            .and_then(|mut stmt| stmt.execute([not_before_ms as i64]))
            .map_err(sqlite_error("store tokens_not_before"))?;
        let stored = read_tokens_not_before(&tx)?
            .ok_or_else(|| StorageError::new("sqlite: tokens_not_before vanished after insert"))?;
        tx.commit().map_err(sqlite_error("commit"))?;
        Ok(stored)
    }

    /// One statement ([`schema::SELECT_STATS`]), so one snapshot. No last
    /// write time: the file's modification time also moves on checkpoints
    /// and when the last connection closes, and a time stored per commit
    /// is not worth its write.
    fn stats(&mut self) -> Result<StoreStats, StorageError> {
        let (logs, entries, bytes): (i64, i64, i64) = self
            .conn
            .prepare_cached(schema::SELECT_STATS)
            .and_then(|mut stmt| {
                stmt.query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            })
            .map_err(sqlite_error("stats"))?;
        Ok(StoreStats {
            logs: logs.max(0) as u64,
            entries: entries.max(0) as u64,
            bytes: bytes.max(0) as u64,
            last_write_ms: None,
        })
    }

    /// One statement over `logs`, whose `head` column is kept by every
    /// append, so listing costs one row per log, not a scan of entries.
    fn logs(&mut self) -> Result<Vec<LogHead>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached(schema::SELECT_LOG_HEADS)
            .map_err(sqlite_error("prepare"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(sqlite_error("list logs"))?;
        let mut heads = Vec::new();
        for row in rows {
            let (key, head) = row.map_err(sqlite_error("list logs"))?;
            let public_key = String::from_utf8(key)
                .map_err(|_| StorageError::new("sqlite: a stored publicKey is not UTF-8"))?;
            heads.push(LogHead {
                public_key,
                head: head.max(0) as Sequence,
            });
        }
        Ok(heads)
    }

    fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError> {
        self.conn
            .execute(schema::INSERT_REMOTE_ID, [&remote_id.0[..]])
            .map_err(sqlite_error("store remote_id"))?;
        self.remote_id = None;
        let held = self.remote_id()?;
        if held != remote_id {
            return Err(remote_id_taken(held, remote_id));
        }
        Ok(())
    }

    fn append_batches(
        &mut self,
        writes: &[BatchWrite],
    ) -> Result<Vec<BatchAppended>, StorageError> {
        transaction::append::<_, BatchInserter<'_>>(&mut self.conn, writes, &mut || None)
    }

    fn append_batches_with_joins(
        &mut self,
        writes: &[BatchWrite],
        joins: Joins<'_, BatchWrite>,
    ) -> Result<Vec<BatchAppended>, StorageError> {
        transaction::append::<_, BatchInserter<'_>>(&mut self.conn, writes, joins)
    }

    fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError> {
        batches::read(&self.conn, store, from, limit)
    }

    /// Not cached, as `tokens_not_before` is not: the server's other
    /// connection to this file may bind it.
    fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError> {
        batches::bind(&mut self.conn, public_key, signing_key)
    }

    fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError> {
        batches::list_stores(&self.conn)
    }

    fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError> {
        batches::list_bindings(&self.conn)
    }
}

impl Appendable for AppendBatch {
    type Outcome = Vec<Appended>;

    fn check(_: &[Self]) -> Result<(), StorageError> {
        Ok(())
    }

    fn nothing_to_store(&self) -> Option<Vec<Appended>> {
        self.entries.is_empty().then(Vec::new)
    }
}

/// The statements and per-log state of one v3 append transaction.
struct EntryInserter<'t> {
    tx: &'t Connection,
    find_log: rusqlite::CachedStatement<'t>,
    insert_log: rusqlite::CachedStatement<'t>,
    insert_entry: rusqlite::CachedStatement<'t>,
    find_entry: rusqlite::CachedStatement<'t>,
    logs: HashMap<String, LogCursor>,
}

impl Inserts<AppendBatch> for EntryInserter<'_> {
    type In<'t> = EntryInserter<'t>;
}

impl<'t> Inserter<'t, AppendBatch> for EntryInserter<'t> {
    fn new(tx: &'t Connection) -> Result<Self, StorageError> {
        let prepare = |sql| tx.prepare_cached(sql).map_err(sqlite_error("prepare"));
        Ok(EntryInserter {
            tx,
            find_log: prepare("SELECT id, head FROM logs WHERE public_key = ?1")?,
            insert_log: prepare("INSERT INTO logs (public_key, head) VALUES (?1, 0)")?,
            insert_entry: prepare(
                "INSERT INTO entries (key, log_id, entry_id, iv, encrypted_entry)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (log_id, entry_id) DO NOTHING",
            )?,
            find_entry: prepare("SELECT key FROM entries WHERE log_id = ?1 AND entry_id = ?2")?,
            logs: HashMap::new(),
        })
    }

    /// Inserts `batch`'s entries (an entry already in its log reports its
    /// existing sequence).
    fn insert(&mut self, batch: &AppendBatch) -> Result<Vec<Appended>, StorageError> {
        let mut outcome = Vec::with_capacity(batch.entries.len());
        if batch.entries.is_empty() {
            return Ok(outcome);
        }
        let (id, mut head) = {
            let log = self.log(&batch.public_key)?;
            (log.id, log.head)
        };
        for entry in &batch.entries {
            let next = head + 1;
            if next > schema::MAX_SEQUENCE {
                return Err(StorageError::new(format!(
                    "sqlite: log full ({} entries)",
                    schema::MAX_SEQUENCE
                )));
            }
            let changed = self
                .insert_entry
                .execute(params![
                    schema::entry_key(id, next),
                    id,
                    &entry.entry_id[..],
                    &batch.iv[..],
                    &entry.encrypted_entry[..]
                ])
                .map_err(sqlite_error("insert entry"))?;
            if changed == 1 {
                head = next;
                outcome.push(Appended {
                    sequence: next as Sequence,
                    inserted: true,
                });
            } else {
                let existing: i64 = self
                    .find_entry
                    .query_row(params![id, &entry.entry_id[..]], |row| row.get(0))
                    .map_err(sqlite_error("find duplicate"))?;
                outcome.push(Appended {
                    sequence: schema::key_sequence(existing) as Sequence,
                    inserted: false,
                });
            }
        }
        let log = self
            .logs
            .get_mut(batch.public_key.as_str())
            .expect("found above");
        if head != log.head {
            log.head = head;
            log.dirty = true;
        }
        Ok(outcome)
    }

    fn set_heads(&mut self) -> Result<(), StorageError> {
        let mut set_head = self
            .tx
            .prepare_cached("UPDATE logs SET head = ?2 WHERE id = ?1")
            .map_err(sqlite_error("prepare"))?;
        for log in self.logs.values().filter(|log| log.dirty) {
            set_head
                .execute(params![log.id, log.head])
                .map_err(sqlite_error("update head"))?;
        }
        Ok(())
    }
}

impl EntryInserter<'_> {
    /// `public_key`'s log, found or created (first sight in this
    /// transaction).
    fn log(&mut self, public_key: &str) -> Result<&mut LogCursor, StorageError> {
        if !self.logs.contains_key(public_key) {
            let key = public_key.as_bytes();
            let found: Option<(i64, i64)> = self
                .find_log
                .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(sqlite_error("find log"))?;
            let (id, head) = match found {
                Some(found) => found,
                None => {
                    self.insert_log
                        .execute([key])
                        .map_err(sqlite_error("create log"))?;
                    let id = self.tx.last_insert_rowid();
                    if id > schema::MAX_LOG_ID {
                        // Its keys would wrap into other logs' ranges; the
                        // caller's error drops the transaction.
                        return Err(StorageError::new(format!(
                            "sqlite: too many logs in this tenant (at most {})",
                            schema::MAX_LOG_ID
                        )));
                    }
                    (id, 0)
                }
            };
            let cursor = LogCursor {
                id,
                head,
                dirty: false,
            };
            self.logs.insert(public_key.to_owned(), cursor);
        }
        Ok(self.logs.get_mut(public_key).expect("inserted above"))
    }
}

fn read_tokens_not_before(conn: &Connection) -> Result<Option<u64>, StorageError> {
    let stored: Option<i64> = conn
        .prepare_cached(schema::SELECT_TOKENS_NOT_BEFORE)
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
        .map_err(sqlite_error("read tokens_not_before"))?;
    stored
        .map(|ms| decode_tokens_not_before(ms as f64))
        .transpose()
}
