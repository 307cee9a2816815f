//! The shared storage conformance suite, plus SQLite-specific checks.

use evsync_core::storage::conformance::{
    REVOKED_AT, batch, batch_write, block_on, entry_id, run_all, run_joins, run_persistence, store,
};
use evsync_core::storage::{ReadLimit, Storage};
use evsync_storage_sqlite::{SqliteStorage, schema};
use std::sync::atomic::{AtomicUsize, Ordering};

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

#[test]
fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    block_on(run_all(|| {
        let path = dir
            .path()
            .join(format!("t{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
        async move { SqliteStorage::open(path).expect("open a fresh store") }
    }));
    assert!(
        n.load(Ordering::Relaxed) >= 10,
        "every check got a fresh file"
    );
}

#[test]
fn joined_appends_suite() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    run_joins(|| {
        let path = dir
            .path()
            .join(format!("j{}.sqlite", n.fetch_add(1, Ordering::Relaxed)));
        SqliteStorage::open(path).expect("open a fresh store")
    });
    assert_eq!(n.load(Ordering::Relaxed), 4, "every check got a fresh file");
}

#[test]
fn persistence_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.sqlite");
    block_on(run_persistence(|| {
        let path = path.clone();
        async move { SqliteStorage::open(path).expect("reopen the store") }
    }));
}

#[test]
fn two_connections_share_data_and_remote_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut writer = SqliteStorage::open(&path).unwrap();
    let mut reader = SqliteStorage::open(&path).unwrap();
    let id = writer.remote_id().unwrap();
    assert_eq!(reader.remote_id().unwrap(), id);
    writer.append(&[batch("pk", 1, &[1, 2])]).unwrap();
    let seen = reader.read("pk", 0, ALL).unwrap();
    assert_eq!(
        seen.len(),
        2,
        "a committed append is visible to another connection"
    );
    assert_eq!(reader.head("pk").unwrap(), 2);
}

#[test]
fn schema_version_is_recorded_and_newer_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    drop(SqliteStorage::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, schema::APPLICATION_ID);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        tables, 8,
        "one schema for all publicKeys: four tables for v3, four for v4"
    );
    conn.execute_batch(&format!(
        "PRAGMA user_version = {}",
        schema::SCHEMA_VERSION + 1
    ))
    .unwrap();
    drop(conn);
    let err = SqliteStorage::open(&path).unwrap_err();
    assert!(err.message.contains("newer evsync"), "{err}");
}

#[test]
fn foreign_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.sqlite");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    drop(conn);
    let err = SqliteStorage::open(&path).unwrap_err();
    assert!(err.message.contains("not an evsync tenant store"), "{err}");
}

#[test]
fn wal_and_full_sync_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    store.append(&[batch("pk", 1, &[1])]).unwrap();
    assert!(
        dir.path().join("t.sqlite-wal").exists(),
        "the store writes through a WAL"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn failed_append_rolls_back_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    store.append(&[batch("a", 1, &[1])]).unwrap();
    // Rewind log a's head behind the back of the store, so the second
    // batch's insert hits the (log_id, sequence) primary key after the
    // first batch has already been written inside the transaction.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE logs SET head = 0 WHERE public_key = CAST('a' AS BLOB)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = store
        .append(&[batch("b", 1, &[5]), batch("a", 1, &[2])])
        .unwrap_err();
    assert!(err.message.contains("sqlite"), "{err}");
    assert!(
        store.read("b", 0, ALL).unwrap().is_empty(),
        "a failed append stores nothing, not even its other batches"
    );
}

#[test]
fn a_log_beyond_max_log_id_is_refused_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    // The last log id a tenant can hold, taken behind the store's back, so
    // the next new log would get MAX_LOG_ID + 1.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO logs (id, public_key, head) VALUES (?1, CAST('last' AS BLOB), 0)",
        [schema::MAX_LOG_ID],
    )
    .unwrap();
    drop(conn);
    let err = store
        .append(&[batch("last", 1, &[1]), batch("one-too-many", 1, &[2])])
        .unwrap_err();
    assert!(err.message.contains("too many logs"), "{err}");
    assert!(
        store.read("last", 0, ALL).unwrap().is_empty(),
        "the refused append stored none of its batches"
    );
    let appended = store.append(&[batch("last", 1, &[1])]).unwrap();
    assert_eq!(appended[0][0].sequence, 1, "the last log id still works");
    let read = store.read("last", 0, ALL).unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].sequence, 1);
    assert!(
        store.read("one-too-many", 0, ALL).unwrap().is_empty(),
        "the refused log was not created"
    );
}

/// A tenant file as a build that knew only schema version 1 wrote it: its
/// tables, its header fields, a remoteId and one log.
fn write_version_1_file(path: &std::path::Path) -> [u8; 16] {
    let remote_id = evsync_core::wire::RemoteId::from_random_bytes([0x5a; 16]).0;
    let conn = rusqlite::Connection::open(path).unwrap();
    let v1 = &schema::SCHEMA.steps[0];
    assert_eq!(v1.version, 1);
    for sql in v1.statements {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch(&format!(
        "PRAGMA application_id = {}; PRAGMA user_version = 1;",
        schema::APPLICATION_ID
    ))
    .unwrap();
    conn.execute(schema::INSERT_REMOTE_ID, [&remote_id[..]])
        .unwrap();
    conn.execute(
        "INSERT INTO logs (id, public_key, head) VALUES (1, CAST('pk' AS BLOB), 2)",
        [],
    )
    .unwrap();
    for sequence in 1..=2u64 {
        conn.execute(
            "INSERT INTO entries (key, log_id, entry_id, iv, encrypted_entry)
             VALUES (?1, 1, ?2, x'01', x'02')",
            rusqlite::params![
                schema::entry_key(1, sequence as i64),
                &entry_id(sequence)[..]
            ],
        )
        .unwrap();
    }
    remote_id
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_data() {
    // This build writes a newer version than 1, so there is a step to run.
    const { assert!(schema::SCHEMA_VERSION >= 2) };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.sqlite");
    let remote_id = write_version_1_file(&path);

    let mut store = SqliteStorage::open(&path).expect("a version 1 file opens");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION, "the file is migrated");
    drop(conn);
    assert_eq!(
        store.remote_id().unwrap().0,
        remote_id,
        "the remoteId stays"
    );
    assert_eq!(
        store
            .read("pk", 0, ALL)
            .unwrap()
            .iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>(),
        vec![1, 2],
        "the entries stay"
    );
    assert_eq!(
        store.tokens_not_before().unwrap(),
        None,
        "a migrated tenant's tokens were never revoked"
    );
    assert_eq!(store.set_tokens_not_before(REVOKED_AT).unwrap(), REVOKED_AT);
    let out = store.append(&[batch("pk", 1, &[3])]).unwrap();
    assert_eq!(out[0][0].sequence, 3, "sequences continue");
    drop(store);

    let mut reopened = SqliteStorage::open(&path).expect("the migrated file reopens");
    assert_eq!(reopened.tokens_not_before().unwrap(), Some(REVOKED_AT));
    assert_eq!(reopened.head("pk").unwrap(), 3);
}

#[test]
fn two_connections_see_each_others_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut writer = SqliteStorage::open(&path).unwrap();
    let mut reader = SqliteStorage::open(&path).unwrap();
    assert_eq!(reader.tokens_not_before().unwrap(), None);
    assert_eq!(
        writer.set_tokens_not_before(REVOKED_AT).unwrap(),
        REVOKED_AT
    );
    assert_eq!(
        reader.tokens_not_before().unwrap(),
        Some(REVOKED_AT),
        "a revocation is visible to the other connection at once (not cached)"
    );
    assert_eq!(
        reader.set_tokens_not_before(REVOKED_AT - 1).unwrap(),
        REVOKED_AT,
        "the other connection cannot lower it either"
    );
}

#[test]
fn a_negative_stored_instant_is_an_error_not_a_huge_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut store = SqliteStorage::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    // The column's CHECK refuses it; a hand-edited file can still hold it.
    conn.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         INSERT INTO tenant_settings (id, tokens_not_before_ms) VALUES (1, -5);",
    )
    .unwrap();
    drop(conn);
    let err = store.tokens_not_before().unwrap_err();
    assert!(err.message.contains("tokens_not_before"), "{err}");
}

/// A tenant file as a build that knew schema version 2 wrote it (v3 logs
/// and a revocation, no v4 tables): it opens migrated, keeps its data, and
/// stores v4 batches beside its logs.
#[test]
fn a_version_2_file_is_migrated_and_stores_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.sqlite");
    let remote_id = write_version_1_file(&path);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v2 = &schema::SCHEMA.steps[1];
    assert_eq!(v2.version, 2);
    for sql in v2.statements {
        conn.execute_batch(sql).unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 2;").unwrap();
    conn.execute(schema::RAISE_TOKENS_NOT_BEFORE, [REVOKED_AT as i64])
        .unwrap();
    drop(conn);

    let mut store_ = SqliteStorage::open(&path).expect("a version 2 file opens");
    assert_eq!(
        store_.remote_id().unwrap().0,
        remote_id,
        "the remoteId stays"
    );
    assert_eq!(store_.tokens_not_before().unwrap(), Some(REVOKED_AT));
    assert_eq!(store_.head("pk").unwrap(), 2, "the v3 log stays");
    let key = store("pk", "default");
    let out = store_
        .append_batches(&[batch_write(&key, 1, &[1, 2])])
        .unwrap();
    assert_eq!(out[0].stored_at, Some(1), "a v4 store starts at 1");
    assert_eq!(store_.bind_signing_key("pk", &[3; 32]).unwrap(), [3; 32]);
    drop(store_);

    let mut reopened = SqliteStorage::open(&path).unwrap();
    assert_eq!(reopened.read_batches(&key, 0, ALL).unwrap().len(), 1);
    assert_eq!(reopened.bind_signing_key("pk", &[4; 32]).unwrap(), [3; 32]);
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
}

#[test]
fn two_connections_share_batches_and_signing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut writer = SqliteStorage::open(&path).unwrap();
    let mut reader = SqliteStorage::open(&path).unwrap();
    let key = store("pk", "default");
    writer
        .append_batches(&[batch_write(&key, 1, &[1, 2])])
        .unwrap();
    assert_eq!(
        reader.read_batches(&key, 0, ALL).unwrap().len(),
        1,
        "a committed batch is visible to another connection"
    );
    assert_eq!(reader.bind_signing_key("pk", &[1; 32]).unwrap(), [1; 32]);
    assert_eq!(
        writer.bind_signing_key("pk", &[2; 32]).unwrap(),
        [1; 32],
        "a binding made on one connection holds on the other"
    );
    let out = reader
        .append_batches(&[batch_write(&key, 2, &[2, 3])])
        .unwrap();
    assert_eq!(out[0].stored_at, Some(3), "heads are read, not cached");
}

#[test]
fn a_failed_batch_append_rolls_back_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sqlite");
    let mut store_ = SqliteStorage::open(&path).unwrap();
    let a = store("pk", "a");
    store_.append_batches(&[batch_write(&a, 1, &[1])]).unwrap();
    // Rewind store a's head behind the back of the store, so the second
    // write's batch hits the primary key after the first was written.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE v4_stores SET head = 0", []).unwrap();
    drop(conn);
    let b = store("pk", "b");
    let err = store_
        .append_batches(&[batch_write(&b, 1, &[5]), batch_write(&a, 1, &[2])])
        .unwrap_err();
    assert!(err.message.contains("sqlite"), "{err}");
    assert!(
        store_.read_batches(&b, 0, ALL).unwrap().is_empty(),
        "a failed append stores nothing, not even its other writes"
    );
}
