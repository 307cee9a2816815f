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
/// - `entries`: a rowid table whose rowid `key` packs the log and the
///   sequence, `log_id << 40 | sequence` (see [`SEQUENCE_BITS`]). Entries are
///   thus clustered by (log, sequence): a catch-up read is one forward range
///   scan of the table b-tree, and an append writes at the right edge of its
///   log's range. The unique index on `(log_id, entry_id)` is the dedup
///   check.
///
/// Measured against the obvious alternatives (200 B / 1 KB / 4 KB entries,
/// 10 logs, 100-entry transactions, release build): a `WITHOUT ROWID`
/// table clustered on `(log_id, sequence)` reads as fast for small entries
/// but writes slower and, for ~1 KB entries, makes the file 3.3x larger
/// (its b-tree cells overflow at ~1 KB on 4 KB pages); a rowid table with
/// a separate `(log_id, sequence)` index is 6x slower to read small entries
/// (one index probe per row). The packed key has neither cost.
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
    key INTEGER PRIMARY KEY,
    log_id INTEGER NOT NULL,
    entry_id BLOB NOT NULL,
    iv BLOB NOT NULL,
    encrypted_entry BLOB NOT NULL
);
CREATE UNIQUE INDEX entries_by_entry_id ON entries (log_id, entry_id);
";

/// Bits of `entries.key` that hold the sequence: a log holds up to 2^40 - 1
/// (about 10^12) entries, and a tenant up to 2^23 - 1 (about 8 million)
/// logs, within SQLite's positive 64-bit rowids.
pub const SEQUENCE_BITS: u32 = 40;

/// The largest sequence a log can hold.
pub const MAX_SEQUENCE: i64 = (1 << SEQUENCE_BITS) - 1;

/// The largest log id a tenant can hold.
pub const MAX_LOG_ID: i64 = (1 << (63 - SEQUENCE_BITS)) - 1;

/// The `entries.key` of `sequence` in log `log_id`.
pub fn entry_key(log_id: i64, sequence: i64) -> i64 {
    (log_id << SEQUENCE_BITS) | sequence
}

/// The sequence part of an `entries.key`.
pub fn key_sequence(key: i64) -> i64 {
    key & MAX_SEQUENCE
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pack_log_and_sequence_in_order() {
        assert_eq!(key_sequence(entry_key(3, 17)), 17);
        assert!(
            entry_key(1, MAX_SEQUENCE) < entry_key(2, 1),
            "logs do not overlap"
        );
        assert!(
            entry_key(MAX_LOG_ID, MAX_SEQUENCE) > 0,
            "keys stay positive"
        );
        assert_eq!(entry_key(MAX_LOG_ID, MAX_SEQUENCE), i64::MAX);
    }
}
