//! The measurement behind the `entries` layout (see evsync-core's
//! `storage::schema::sqlite`): write and read throughput and file size of
//! three table layouts for one tenant.
//!
//! `cargo run --release -p evsync-storage-sqlite --example layout`
//!
//! Fsync is off (`synchronous = OFF`) so the numbers compare b-tree work,
//! not the disk; 10 logs, 100 entries per transaction, catch-up reads of
//! 4096 entries.

use rusqlite::{Connection, params};
use std::time::Instant;

/// Clustered on (log_id, sequence) as an index b-tree.
const WITHOUT_ROWID: &str =
    "CREATE TABLE entries (log_id INTEGER NOT NULL, sequence INTEGER NOT NULL,
    entry_id BLOB NOT NULL, iv BLOB NOT NULL, encrypted_entry BLOB NOT NULL,
    PRIMARY KEY (log_id, sequence)) WITHOUT ROWID;
    CREATE UNIQUE INDEX e_id ON entries (log_id, entry_id);";
/// A rowid table with a separate (log_id, sequence) index.
const ROWID_INDEX: &str =
    "CREATE TABLE entries (log_id INTEGER NOT NULL, sequence INTEGER NOT NULL,
    entry_id BLOB NOT NULL, iv BLOB NOT NULL, encrypted_entry BLOB NOT NULL,
    PRIMARY KEY (log_id, sequence));
    CREATE UNIQUE INDEX e_id ON entries (log_id, entry_id);";
/// The chosen layout: rowid = log_id << 40 | sequence.
const PACKED: &str = "CREATE TABLE entries (key INTEGER PRIMARY KEY, log_id INTEGER NOT NULL,
    entry_id BLOB NOT NULL, iv BLOB NOT NULL, encrypted_entry BLOB NOT NULL);
    CREATE UNIQUE INDEX e_id ON entries (log_id, entry_id);";

fn run(dir: &std::path::Path, name: &str, schema: &str, size: usize) {
    let packed = schema == PACKED;
    let path = dir.join(format!("{name}-{size}.db"));
    let mut conn = Connection::open(&path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF").unwrap();
    conn.execute_batch(schema).unwrap();
    let logs = 10i64;
    let total = (200_000 / (size / 200).max(1)) as i64;
    let payload = vec![0x5au8; size];
    let insert = if packed {
        "INSERT INTO entries VALUES (?1 << 40 | ?2, ?1, ?3, ?4, ?5)"
    } else {
        "INSERT INTO entries VALUES (?1, ?2, ?3, ?4, ?5)"
    };
    let started = Instant::now();
    let mut heads = vec![0i64; logs as usize];
    let mut n = 0i64;
    while n < total {
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx.prepare_cached(insert).unwrap();
            for _ in 0..100 {
                let log = n % logs;
                heads[log as usize] += 1;
                let mut id = [0u8; 16];
                id[..8]
                    .copy_from_slice(&(n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
                stmt.execute(params![
                    log,
                    heads[log as usize],
                    &id[..],
                    &[1u8; 12][..],
                    &payload[..]
                ])
                .unwrap();
                n += 1;
            }
        }
        tx.commit().unwrap();
    }
    let write = started.elapsed();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let select = if packed {
        "SELECT key & 1099511627775, iv, entry_id, encrypted_entry FROM entries
         WHERE key >= (?1 << 40) + ?2 AND key < ((?1 + 1) << 40) ORDER BY key LIMIT 4096"
    } else {
        "SELECT sequence, iv, entry_id, encrypted_entry FROM entries
         WHERE log_id = ?1 AND sequence >= ?2 ORDER BY sequence LIMIT 4096"
    };
    let started = Instant::now();
    let mut rows = 0u64;
    for log in 0..logs {
        let mut stmt = conn.prepare_cached(select).unwrap();
        let mut from = 1i64;
        loop {
            let mut got = 0;
            let mut q = stmt.query(params![log, from]).unwrap();
            while let Some(row) = q.next().unwrap() {
                from = row.get::<_, i64>(0).unwrap() + 1;
                std::hint::black_box(row.get_ref(3).unwrap().as_blob().unwrap());
                got += 1;
            }
            if got == 0 {
                break;
            }
            rows += got;
        }
    }
    let read = started.elapsed();
    let file = std::fs::metadata(&path).unwrap().len();
    println!(
        "{name:<14} {size:>5} B x {total:>6}: write {:>7.0}/s, read {:>8.0}/s, file {:>6.1} MB",
        total as f64 / write.as_secs_f64(),
        rows as f64 / read.as_secs_f64(),
        file as f64 / 1e6
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    for size in [200usize, 1000, 4000] {
        run(dir.path(), "without_rowid", WITHOUT_ROWID, size);
        run(dir.path(), "rowid+index", ROWID_INDEX, size);
        run(dir.path(), "packed_rowid", PACKED, size);
    }
}
