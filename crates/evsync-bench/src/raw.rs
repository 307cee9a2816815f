//! The ceiling of the write path: the same bytes inserted straight into
//! SQLite by a Rust loop, no network, no protocol.
//!
//! Same file layout and pragmas as evsync's tenant store (WAL,
//! `synchronous = FULL`, the `entries` table clustered on
//! `(log_id, sequence)` with the unique `(log_id, entry_id)` index, the same
//! `INSERT … ON CONFLICT DO NOTHING`), ONE transaction per batch. `writers`
//! threads each build their batches and take turns on one connection (a
//! SQLite file has one writer at a time; a mutex instead of SQLITE_BUSY
//! retries, so no thread ever sleeps in the busy handler). The latency is
//! from a batch being ready to its commit returning, queueing included.
//!
//! `group` > 1 puts that many batches in each transaction: the ceiling for
//! a server that group-commits (evsync merges the writes that queue while a
//! commit runs, so with a window of W requests per writer a commit can hold
//! up to W × writers batches).

use crate::common::*;
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct RawParams {
    pub dir: PathBuf,
    pub writers: usize,
    pub batch: usize,
    pub size: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Go through evsync-storage-sqlite's `append` (the server's own store,
    /// no network) instead of the plain rusqlite loop.
    pub via_storage: bool,
    /// Batches per transaction (1 = one transaction per batch). Above 1
    /// models a group commit: one fsync for `group` batches, as evsync's
    /// engine merges the writes that wait while a commit runs.
    pub group: usize,
}

/// evsync-storage-sqlite's `entries` table and per-connection pragmas.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    log_id INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    entry_id BLOB NOT NULL,
    iv BLOB NOT NULL,
    encrypted_entry BLOB NOT NULL,
    PRIMARY KEY (log_id, sequence)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_entry_id ON entries (log_id, entry_id);
";

pub fn run(p: RawParams) -> Result<Map<String, Value>> {
    if p.via_storage {
        return run_storage(p);
    }
    std::fs::create_dir_all(&p.dir)?;
    let path = p.dir.join(format!(
        "raw-w{}-b{}-s{}-{}.sqlite",
        p.writers,
        p.batch,
        p.size,
        std::process::id()
    ));
    let conn = Connection::open(&path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(err(format!("journal_mode is {mode}")));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -2048;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.execute_batch(SCHEMA)?;
    let conn = Arc::new(Mutex::new(conn));
    let t0 = Instant::now();
    let probe_start = t0 + p.warmup;
    let end = probe_start + p.duration;
    let mut probe = None;
    let handles: Vec<_> = (0..p.writers)
        .map(|w| {
            let conn = conn.clone();
            let p = p.clone();
            std::thread::spawn(move || -> Result<Vec<(Instant, Instant, usize, usize)>> {
                let mut payloads = Payloads::new(p.size);
                let mut head = 0i64;
                let mut out = Vec::new();
                let group = p.group.max(1);
                while Instant::now() < end {
                    let batches: Vec<_> = (0..group)
                        .map(|_| {
                            let iv = Payloads::iv();
                            let entries: Vec<_> =
                                (0..p.batch).map(|_| payloads.entry()).collect();
                            (iv, entries)
                        })
                        .collect();
                    let bytes: usize = batches
                        .iter()
                        .flat_map(|(_, es)| es.iter().map(|e| e.encrypted_entry.len()))
                        .sum();
                    let ready = Instant::now();
                    {
                        let mut conn = conn.lock().map_err(|_| err("poisoned"))?;
                        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                        {
                            let mut stmt = tx.prepare_cached(
                                "INSERT INTO entries (log_id, sequence, entry_id, iv, encrypted_entry)
                                 VALUES (?1, ?2, ?3, ?4, ?5)
                                 ON CONFLICT (log_id, entry_id) DO NOTHING",
                            )?;
                            for (iv, entries) in &batches {
                                for e in entries {
                                    head += 1;
                                    stmt.execute(params![
                                        w as i64,
                                        head,
                                        &e.entry_id[..],
                                        &iv[..],
                                        &e.encrypted_entry[..]
                                    ])?;
                                }
                            }
                        }
                        tx.commit()?;
                    }
                    out.push((ready, Instant::now(), p.batch * group, bytes));
                }
                Ok(out)
            })
        })
        .collect();
    std::thread::sleep(probe_start.saturating_duration_since(Instant::now()));
    probe.get_or_insert(CpuProbe::start(None));
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let mut m = Map::new();
    if let Some(probe) = &probe {
        probe.finish(&mut m);
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| err("writer thread panicked"))??);
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("sqlite-wal"));
    let _ = std::fs::remove_file(path.with_extension("sqlite-shm"));
    let in_window: Vec<_> = all
        .iter()
        .filter(|(_, done, ..)| *done >= probe_start && *done < end)
        .collect();
    let entries: usize = in_window.iter().map(|a| a.2).sum();
    let bytes: usize = in_window.iter().map(|a| a.3).sum();
    let mut lat: Vec<u64> = all
        .iter()
        .filter(|(ready, ..)| *ready >= probe_start && *ready < end)
        .map(|(ready, done, ..)| (*done - *ready).as_nanos() as u64)
        .collect();
    lat.sort_unstable();
    let secs = p.duration.as_secs_f64();
    m.insert(
        "entries_per_s".into(),
        json!((entries as f64 / secs).round()),
    );
    m.insert("mb_per_s".into(), json!(round3(bytes as f64 / secs / 1e6)));
    m.insert("ack_p50_ms".into(), json!(ms(percentile(&lat, 50.0))));
    m.insert("ack_p99_ms".into(), json!(ms(percentile(&lat, 99.0))));
    m.insert(
        "ack_max_ms".into(),
        json!(ms(lat.last().copied().unwrap_or(0))),
    );
    m.insert("requests".into(), json!(lat.len()));
    m.insert("seconds".into(), json!(round3(secs)));
    Ok(m)
}

/// The same loop through evsync-storage-sqlite: `SqliteStorage::append` of
/// `group` batches per call (one transaction each), on one store shared by
/// the writer threads.
fn run_storage(p: RawParams) -> Result<Map<String, Value>> {
    use evsync_core::storage::{AppendBatch, Storage};
    std::fs::create_dir_all(&p.dir)?;
    let path = p.dir.join(format!(
        "storage-w{}-b{}-s{}-{}.sqlite",
        p.writers,
        p.batch,
        p.size,
        std::process::id()
    ));
    let mut store = evsync_storage_sqlite::SqliteStorage::open(&path)?;
    store.remote_id()?;
    let store = Arc::new(Mutex::new(store));
    let t0 = Instant::now();
    let probe_start = t0 + p.warmup;
    let end = probe_start + p.duration;
    let handles: Vec<_> = (0..p.writers)
        .map(|w| {
            let store = store.clone();
            let p = p.clone();
            std::thread::spawn(move || -> Result<Vec<(Instant, Instant, usize, usize)>> {
                let mut payloads = Payloads::new(p.size);
                let mut out = Vec::new();
                let group = p.group.max(1);
                while Instant::now() < end {
                    let batches: Vec<AppendBatch> = (0..group)
                        .map(|_| AppendBatch {
                            public_key: format!("raw-pk{w}"),
                            iv: Payloads::iv(),
                            entries: (0..p.batch).map(|_| payloads.entry()).collect(),
                        })
                        .collect();
                    let bytes: usize = batches
                        .iter()
                        .flat_map(|b| b.entries.iter().map(|e| e.encrypted_entry.len()))
                        .sum();
                    let ready = Instant::now();
                    store
                        .lock()
                        .map_err(|_| err("poisoned"))?
                        .append(&batches)?;
                    out.push((ready, Instant::now(), p.batch * group, bytes));
                }
                Ok(out)
            })
        })
        .collect();
    std::thread::sleep(probe_start.saturating_duration_since(Instant::now()));
    let probe = CpuProbe::start(None);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let mut m = Map::new();
    probe.finish(&mut m);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| err("writer thread panicked"))??);
    }
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    summarize(&mut m, &all, probe_start, end, p.duration);
    Ok(m)
}

fn summarize(
    m: &mut Map<String, Value>,
    all: &[(Instant, Instant, usize, usize)],
    probe_start: Instant,
    end: Instant,
    duration: Duration,
) {
    let in_window: Vec<_> = all
        .iter()
        .filter(|(_, done, ..)| *done >= probe_start && *done < end)
        .collect();
    let entries: usize = in_window.iter().map(|a| a.2).sum();
    let bytes: usize = in_window.iter().map(|a| a.3).sum();
    let mut lat: Vec<u64> = all
        .iter()
        .filter(|(ready, ..)| *ready >= probe_start && *ready < end)
        .map(|(ready, done, ..)| (*done - *ready).as_nanos() as u64)
        .collect();
    lat.sort_unstable();
    let secs = duration.as_secs_f64();
    m.insert(
        "entries_per_s".into(),
        json!((entries as f64 / secs).round()),
    );
    m.insert("mb_per_s".into(), json!(round3(bytes as f64 / secs / 1e6)));
    m.insert("ack_p50_ms".into(), json!(ms(percentile(&lat, 50.0))));
    m.insert("ack_p99_ms".into(), json!(ms(percentile(&lat, 99.0))));
    m.insert(
        "ack_max_ms".into(),
        json!(ms(lat.last().copied().unwrap_or(0))),
    );
    m.insert("requests".into(), json!(lat.len()));
    m.insert("seconds".into(), json!(round3(secs)));
}
