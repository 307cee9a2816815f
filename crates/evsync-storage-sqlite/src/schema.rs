//! The tenant file's schema, applied the native way.
//!
//! The tables, their steps and the packed `entries.key` (and why it is
//! packed) are declared with the other SQL backends' in
//! [`evsync_core::storage::schema::sqlite`], and which steps to run is
//! decided there too ([`Schema::pending`]). What is this backend's own: the
//! version lives in SQLite's `user_version` header field, so it is read
//! without touching any table, and `application_id` marks the file as ours,
//! so a foreign SQLite database is refused rather than written into.

pub use evsync_core::storage::schema::sqlite::{
    APPLICATION_ID, INSERT_REMOTE_ID, MAX_LOG_ID, MAX_SEQUENCE, RAISE_TOKENS_NOT_BEFORE, SCHEMA,
    SELECT_LOG_HEADS, SELECT_REMOTE_ID, SELECT_STATS, SELECT_TOKENS_NOT_BEFORE, SEQUENCE_BITS,
    batch_key, entry_key, key_sequence,
};
use rusqlite::{Connection, TransactionBehavior};

/// The id of a publicKey's log (`?1`: the publicKey's bytes).
pub const FIND_LOG_ID: &str = "SELECT id FROM logs WHERE public_key = ?1";

/// A range of one log's entries in sequence order: keys `?1..=?2`
/// (`entry_key`), at most `?3` rows. The store's reads, and the bench's
/// catch-up ceiling, which must scan exactly as the store does.
pub const READ_ENTRIES: &str = "SELECT key, iv, entry_id, encrypted_entry FROM entries
     WHERE key >= ?1 AND key <= ?2
     ORDER BY key
     LIMIT ?3";

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = SCHEMA.version();

/// Brings `conn`'s file up to [`SCHEMA_VERSION`], creating it when empty:
/// the missing steps and the new version commit in one transaction.
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
    let steps = SCHEMA.pending(version).map_err(|e| e.message)?;
    if steps.is_empty() {
        return Ok(()); // dropping `tx` rolls back the (read-only) transaction
    }
    for step in steps {
        for sql in step.statements {
            tx.execute_batch(sql)
                .map_err(|e| SCHEMA.step_failed(step, e).message)?;
        }
    }
    tx.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(|e| format!("cannot record the schema version: {e}"))?;
    tx.commit()
        .map_err(|e| format!("cannot commit the schema: {e}"))
}
