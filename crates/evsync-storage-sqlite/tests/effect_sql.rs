//! The reader of Effect's `SqlEventLogServer` SQLite layout, on files built
//! by hand with Effect's exact DDL (the interop suite converts one written
//! by the real Effect server): what a conversion keeps (remoteId, every
//! sequence, entry bytes) and each source it refuses, with the reason named.

use evsync_core::export::{ExportReader, Importer, ReadItem};
use evsync_core::storage::{MemoryStorage, ReadLimit, Storage, block_on};
use evsync_core::wire::RemoteId;
use evsync_storage_sqlite::effect_sql::{
    EffectLayout, EffectSqlError, export_effect_sqlite, export_effect_sqlite_with,
};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

const REMOTE_ID: [u8; 16] = [7; 16];

/// Effect's own DDL (`@effect/sql` 0.49.0, SQLite dialect).
fn effect_db(dir: &Path) -> (PathBuf, Connection) {
    let path = dir.join("effect.sqlite");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE IF NOT EXISTS effect_remote_id (remote_id BLOB PRIMARY KEY)")
        .unwrap();
    conn.execute(
        "INSERT INTO effect_remote_id (remote_id) VALUES (?1)",
        [&REMOTE_ID[..]],
    )
    .unwrap();
    (path, conn)
}

fn create_log(conn: &Connection, public_key: &str) -> String {
    let table = EffectLayout::default().table_for(public_key);
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (
           sequence INTEGER PRIMARY KEY AUTOINCREMENT,
           iv BLOB NOT NULL,
           entry_id BLOB UNIQUE NOT NULL,
           encrypted_entry BLOB NOT NULL
         )"
    ))
    .unwrap();
    table
}

/// Writes `n` entries the way Effect's server does (sequence assigned).
fn write(conn: &Connection, table: &str, first_id: u8, n: u8) {
    for i in 0..n {
        let id = first_id + i;
        conn.execute(
            &format!("INSERT INTO {table} (iv, entry_id, encrypted_entry) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING"),
            params![&[id; 12][..], &[id; 16][..], &vec![id; 40 + id as usize][..]],
        )
        .unwrap();
    }
}

fn convert(
    path: &Path,
    keys: &[&str],
) -> Result<(Vec<u8>, evsync_storage_sqlite::effect_sql::EffectExport), EffectSqlError> {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut out = Vec::new();
    export_effect_sqlite(path, "acme", &keys, &mut out).map(|done| (out, done))
}

fn refusal(path: &Path, keys: &[&str]) -> String {
    match convert(path, keys) {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn keeps_the_remote_id_every_sequence_and_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    let a = create_log(&conn, "pk-a");
    let b = create_log(&conn, "pk-b");
    write(&conn, &a, 1, 5);
    // re-uploads of stored entries at the end: SQLite uses up numbers 6 and 7
    // for the ignored rows, which no entry has and no replica ever saw
    write(&conn, &a, 3, 2);
    write(&conn, &b, 50, 3);
    // a replica of another identity only subscribed: an empty table
    let only_subscribed = create_log(&conn, "pk-reader");
    let before = std::fs::read(&path).unwrap();

    let (file, done) = convert(&path, &["pk-b", "pk-a", "pk-unused"]).unwrap();
    assert_eq!(done.remote_id, RemoteId(REMOTE_ID));
    assert_eq!((done.summary.logs, done.summary.entries), (2, 8));
    let logs: Vec<_> = done
        .logs
        .iter()
        .map(|l| (l.public_key.as_str(), l.table.as_str(), l.entries))
        .collect();
    assert_eq!(logs, vec![("pk-a", a.as_str(), 5), ("pk-b", b.as_str(), 3)]);
    assert_eq!(done.skipped_empty_tables, vec![only_subscribed]);
    assert_eq!(done.keys_without_entries, vec!["pk-unused".to_owned()]);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the source is not changed"
    );

    // the file is a valid export, and imports with the same sequences
    let mut reader = ExportReader::new();
    reader.push(&file);
    let mut store = MemoryStorage::new(RemoteId([0; 16]));
    let mut importer = Importer::new();
    while let Some(item) = reader.next_item().unwrap() {
        if let ReadItem::Header(h) = &item {
            assert_eq!(
                (h.tenant.as_str(), h.remote_id),
                ("acme", RemoteId(REMOTE_ID))
            );
        }
        block_on(importer.apply(&mut store, item)).unwrap();
    }
    reader.finish().unwrap();
    assert_eq!(store.remote_id().unwrap(), RemoteId(REMOTE_ID));
    let all = ReadLimit {
        max_entries: 100,
        max_bytes: 1 << 20,
    };
    let a_entries = store.read("pk-a", 1, all).unwrap();
    assert_eq!(
        a_entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let third = &a_entries[2];
    assert_eq!(
        (&third.iv[..], &third.entry_id[..]),
        (&[3u8; 12][..], &[3u8; 16][..])
    );
    assert_eq!(&third.encrypted_entry[..], &vec![3u8; 43][..]);
    let b_entries = store.read("pk-b", 2, all).unwrap();
    assert_eq!(
        b_entries
            .iter()
            .map(|e| (e.sequence, e.entry_id[0]))
            .collect::<Vec<_>>(),
        vec![(2, 51), (3, 52)]
    );
}

#[test]
fn reads_a_wal_left_by_a_server_that_did_not_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    let a = create_log(&conn, "pk-a");
    write(&conn, &a, 1, 4);
    // `conn` stays open: the entries are in the -wal file, not yet in the database file
    assert!(dir.path().join("effect.sqlite-wal").exists());
    let (_, done) = convert(&path, &["pk-a"]).unwrap();
    assert_eq!(done.summary.entries, 4);
}

#[test]
fn a_table_whose_public_key_was_not_given_is_refused_unless_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    let a = create_log(&conn, "pk-a");
    let b = create_log(&conn, "pk-b");
    write(&conn, &a, 1, 2);
    write(&conn, &b, 10, 3);
    let message = refusal(&path, &["pk-a"]);
    assert!(message.contains(&format!("{b} (3 entries)")), "{message}");
    assert!(
        message.contains("publicKeys that were not given"),
        "{message}"
    );
    assert!(!message.contains(&a), "{message}");
    let message = refusal(&path, &[]);
    assert!(message.starts_with("2 table(s)"), "{message}");
    assert!(convert(&path, &["pk-a", "pk-b"]).is_ok());
}

#[test]
fn a_table_not_named_after_a_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    create_log(&conn, "pk-a");
    conn.execute_batch("CREATE TABLE effect_events_notes (sequence INTEGER PRIMARY KEY, iv BLOB, entry_id BLOB, encrypted_entry BLOB)")
        .unwrap();
    let message = refusal(&path, &["pk-a"]);
    assert!(message.contains("table effect_events_notes"), "{message}");
    assert!(
        message.contains("publicKey cannot be recovered"),
        "{message}"
    );
    // other tables of the app are none of the reader's business
    conn.execute_batch("DROP TABLE effect_events_notes; CREATE TABLE app_settings (k, v)")
        .unwrap();
    assert!(convert(&path, &["pk-a"]).is_ok());
}

#[test]
fn logs_that_would_break_cursors_are_refused_by_name() {
    // (what to do to the log, what the refusal must say)
    type Damage = fn(&Connection, &str);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "not starting at 1",
            |c, t| {
                c.execute(&format!("DELETE FROM {t} WHERE sequence <= 2"), [])
                    .unwrap();
            },
            "starts at sequence 3, not 1",
        ),
        (
            "a gap",
            |c, t| {
                c.execute(&format!("DELETE FROM {t} WHERE sequence = 3"), [])
                    .unwrap();
            },
            "sequence 3 is missing (4 entries numbered 1 to 5)",
        ),
        (
            "a value that is not bytes",
            |c, t| {
                c.execute(
                    &format!("UPDATE {t} SET iv = 'text' WHERE sequence = 2"),
                    [],
                )
                .unwrap();
            },
            "the entry with sequence 2 has a iv that is not bytes",
        ),
        (
            "a sequence that is not an integer",
            |c, t| {
                c.execute_batch(&format!(
                    "CREATE TABLE x AS SELECT * FROM {t}; DROP TABLE {t};
                     CREATE TABLE {t} (sequence, iv, entry_id, encrypted_entry);
                     INSERT INTO {t} SELECT * FROM x; DROP TABLE x;
                     UPDATE {t} SET sequence = 'four' WHERE sequence = 4"
                ))
                .unwrap();
            },
            "the entry with sequence 'four' has a sequence that is not an integer",
        ),
        (
            "no encrypted_entry column",
            |c, t| {
                c.execute_batch(&format!("ALTER TABLE {t} DROP COLUMN encrypted_entry"))
                    .unwrap();
            },
            "has no encrypted_entry column",
        ),
    ];
    for (what, damage, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = effect_db(dir.path());
        let table = create_log(&conn, "pk-a");
        write(&conn, &table, 1, 5);
        damage(&conn, &table);
        let message = refusal(&path, &["pk-a"]);
        assert!(
            message.contains(&format!("table {table}")),
            "{what}: {message}"
        );
        assert!(message.contains(expected), "{what}: {message}");
    }
}

#[test]
fn a_re_upload_followed_by_a_new_entry_leaves_a_gap_that_is_refused() {
    // What Effect's server really does: the repeated upload of entry 2 uses
    // up sequence 3, the next new entry gets 4.
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    let table = create_log(&conn, "pk-a");
    write(&conn, &table, 1, 2);
    write(&conn, &table, 2, 1);
    write(&conn, &table, 3, 1);
    let sequences: Vec<i64> = conn
        .prepare(&format!("SELECT sequence FROM {table} ORDER BY sequence"))
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sequences, vec![1, 2, 4]);
    let message = refusal(&path, &["pk-a"]);
    assert!(
        message.contains(&format!(
            "table {table}: sequence 3 is missing (3 entries numbered 1 to 4)"
        )),
        "{message}"
    );
    assert!(
        message.contains("uploads an entry it already has"),
        "{message}"
    );
}

#[test]
fn an_entry_id_twice_or_a_sequence_twice_is_refused() {
    // Effect's schema makes both impossible (UNIQUE, PRIMARY KEY); a table
    // rebuilt by hand without them can hold either.
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    let table = EffectLayout::default().table_for("pk-a");
    conn.execute_batch(&format!(
        "CREATE TABLE {table} (sequence INTEGER, iv BLOB, entry_id BLOB, encrypted_entry BLOB)"
    ))
    .unwrap();
    let insert = |seq: i64, id: u8| {
        conn.execute(
            &format!("INSERT INTO {table} VALUES (?1, ?2, ?3, ?4)"),
            params![seq, &[0u8; 12][..], &[id; 16][..], &[1u8, 2, 3][..]],
        )
        .unwrap();
    };
    insert(1, 1);
    insert(2, 2);
    insert(3, 1);
    let message = refusal(&path, &["pk-a"]);
    assert!(
        message.contains(&format!(
            "entry id {} is stored twice (sequences 1 and 3)",
            "01".repeat(16)
        )),
        "{message}"
    );
    conn.execute(&format!("DELETE FROM {table} WHERE sequence = 3"), [])
        .unwrap();
    insert(2, 3);
    let message = refusal(&path, &["pk-a"]);
    assert!(message.contains("two entries have sequence 2"), "{message}");
}

#[test]
fn not_an_effect_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // no file
    let missing = dir.path().join("missing.sqlite");
    assert!(refusal(&missing, &[]).contains("is not a file"));
    // not SQLite
    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "hello, this is not a database at all, just some text ".repeat(100),
    )
    .unwrap();
    assert!(
        refusal(&text, &[]).contains("is not a SQLite database"),
        "{}",
        refusal(&text, &[])
    );
    // SQLite, but not Effect's: an evsync tenant file, say
    let evsync = dir.path().join("tenant.sqlite");
    drop(evsync_storage_sqlite::SqliteStorage::open(&evsync).unwrap());
    assert!(refusal(&evsync, &[]).contains("has no effect_remote_id table"));
}

#[test]
fn the_remote_id_must_be_one_of_sixteen_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (path, conn) = effect_db(dir.path());
    conn.execute("INSERT INTO effect_remote_id VALUES (?1)", [&[9u8; 16][..]])
        .unwrap();
    assert!(refusal(&path, &[]).contains("holds 2 remoteIds"));
    conn.execute("DELETE FROM effect_remote_id", []).unwrap();
    assert!(refusal(&path, &[]).contains("holds no remoteId"));
    conn.execute("INSERT INTO effect_remote_id VALUES (?1)", [&[9u8; 8][..]])
        .unwrap();
    assert!(refusal(&path, &[]).contains("not 16 bytes"));
}

#[test]
fn a_configured_layout_is_read_with_its_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.sqlite");
    let conn = Connection::open(&path).unwrap();
    let layout = EffectLayout {
        entry_table_prefix: "app_events".into(),
        remote_id_table: "app_remote".into(),
    };
    let table = layout.table_for("pk-a");
    assert!(table.starts_with("app_events_") && table.len() == "app_events_".len() + 16);
    conn.execute_batch(&format!(
        "CREATE TABLE app_remote (remote_id BLOB PRIMARY KEY);
         CREATE TABLE {table} (sequence INTEGER PRIMARY KEY AUTOINCREMENT, iv BLOB NOT NULL, entry_id BLOB UNIQUE NOT NULL, encrypted_entry BLOB NOT NULL)"
    ))
    .unwrap();
    conn.execute("INSERT INTO app_remote VALUES (?1)", [&REMOTE_ID[..]])
        .unwrap();
    write(&conn, &table, 1, 2);
    let mut out = Vec::new();
    let done =
        export_effect_sqlite_with(&layout, &path, "acme", &["pk-a".to_owned()], &mut out).unwrap();
    assert_eq!(done.summary.entries, 2);
}

#[test]
fn the_table_name_is_effects() {
    // What Effect's `sha256String(TextEncoder.encode(publicKey)).slice(0, 16)`
    // gives for a publicKey of `Identity.makeRandom()` (a UUID), computed with
    // Node's crypto.subtle as Effect does.
    assert_eq!(
        EffectLayout::default().table_for("0f8fad5b-d9cb-469f-a165-70867728950e"),
        "effect_events_c812e1edb64417d6"
    );
    assert_eq!(
        EffectLayout::default().table_for("pk-a"),
        "effect_events_1177a8d490811ad8"
    );
}
