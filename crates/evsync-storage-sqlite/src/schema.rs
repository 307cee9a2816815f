//! The on-disk schema and its migrations.
//!
//! The schema version lives in SQLite's `user_version` header field, so it
//! is read without touching any table. `MIGRATIONS[i]` moves a file from
//! version `i` to version `i + 1`; opening a file runs the missing ones in
//! one transaction, so a file is never left half-migrated. A file written by
//! a newer evsync (a version this build does not know) is refused rather
//! than guessed at.

use rusqlite::{Connection, TransactionBehavior};

/// Marks a SQLite file as an evsync tenant store (`PRAGMA application_id`),
/// so that tools such as `file(1)` and our own open can tell it apart from
/// other SQLite databases. ASCII "evsy".
pub const APPLICATION_ID: i32 = 0x6576_7379;

/// Version 1: every log of a tenant in ONE pair of tables.
///
/// - `remote_id`: one row, the tenant's UUID v4 sent in `Hello`.
/// - `logs`: one row per publicKey. `public_key` is a BLOB holding the UTF-8
///   bytes, so any string (including NUL) compares byte for byte; `head` is
///   the highest sequence of the log, so an append needs no `MAX()` scan.
/// - `entries`: clustered on `(log_id, sequence)` (WITHOUT ROWID), so a
///   catch-up read is one forward range scan of one b-tree and an append
///   writes at the right edge of that b-tree. The unique index on
///   `(log_id, entry_id)` is the dedup check.
///
/// A table per publicKey (Effect's SQL layout) would make thousands of
/// identities cost thousands of schema entries parsed at every open.
const V1: &str = "
CREATE TABLE remote_id (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    remote_id BLOB NOT NULL CHECK (length(remote_id) = 16)
);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    public_key BLOB NOT NULL UNIQUE,
    head INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE entries (
    log_id INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    entry_id BLOB NOT NULL,
    iv BLOB NOT NULL,
    encrypted_entry BLOB NOT NULL,
    PRIMARY KEY (log_id, sequence)
) WITHOUT ROWID;
CREATE UNIQUE INDEX entries_by_entry_id ON entries (log_id, entry_id);
";

/// Every migration, oldest first. Append new ones; never edit old ones.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn`'s file up to [`SCHEMA_VERSION`], creating it when empty.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), String> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot start the schema transaction: {e}"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    let app_id: i32 = tx
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(|e| format!("cannot read the application id: {e}"))?;
    if version == 0 && app_id == 0 {
        let tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .map_err(|e| format!("cannot read the schema: {e}"))?;
        if tables != 0 {
            return Err("not an evsync tenant store (foreign SQLite database)".into());
        }
    } else if app_id != APPLICATION_ID {
        return Err(format!(
            "not an evsync tenant store (application_id {app_id:#x})"
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(format!(
            "written by a newer evsync (schema version {version}, this build knows up to {SCHEMA_VERSION})"
        ));
    }
    if version == SCHEMA_VERSION {
        return Ok(()); // dropping `tx` rolls back the (read-only) transaction
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| format!("migration to schema version {} failed: {e}", from + 1))?;
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(|e| format!("cannot record the schema version: {e}"))?;
    tx.commit()
        .map_err(|e| format!("cannot commit the schema: {e}"))
}
