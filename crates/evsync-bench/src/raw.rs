//! The ceiling of the write path: the same bytes inserted straight into
//! SQLite by a Rust loop, no network, no protocol.
//!
//! The file is created by evsync-storage-sqlite (its schema: `entries`
//! keyed by the packed `log_id << 40 | sequence`, the unique
//! `(log_id, entry_id)` index) and the loop's connection gets the store's
//! own pragmas (`evsync_storage_sqlite::configure`: WAL,
//! `synchronous = FULL`, …); it runs the same `INSERT … ON CONFLICT DO
//! NOTHING`, ONE transaction per batch, without the store's per-log
//! bookkeeping. `writers`
//! threads each build their batches and take turns on one connection (a
//! SQLite file has one writer at a time; a mutex instead of SQLITE_BUSY
//! retries, so no thread ever sleeps in the busy handler). The latency is
//! from a batch being ready to its commit returning, queueing included.
//!
//! `group` > 1 puts that many batches in each transaction: the ceiling for
//! a server that group-commits (evsync merges the writes that queue while a
//! commit runs, so with a window of W requests per writer a commit can hold
//! up to W × writers batches).
//!
//! Its WAL checkpoints run as the server's do: on a thread beside the
//! writer every 1,000 pages of growth (`BackgroundCheckpoints`), unless
//! `inline_checkpoints` asks for SQLite's default (inside the commits).

use crate::common::*;
use evsync_core::storage::{AppendBatch, Storage};
use evsync_storage_sqlite::checkpoint::{self, CheckpointSchedule, Checkpointer, take_wal_pages};
use evsync_storage_sqlite::{SqliteStorage, schema};
use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
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
    /// SQLite's default: checkpoints inside the commits.
    pub inline_checkpoints: bool,
}

/// WAL checkpoints on a thread beside the loop's writer, on the server's
/// schedule (`evsync_storage_sqlite::checkpoint`), so that the ceiling
/// commits as the server does; or none (SQLite's default: in line).
#[derive(Clone)]
pub(crate) struct BackgroundCheckpoints {
    /// WAL sizes reported by commits, to the checkpoint thread.
    reports: Option<mpsc::Sender<u32>>,
}

impl BackgroundCheckpoints {
    /// None when `inline`; otherwise `defer` (which makes the loop's
    /// connection defer its checkpoints) and a checkpoint thread for `path`
    /// that ends with the loop.
    pub fn start(path: &std::path::Path, inline: bool, defer: impl FnOnce()) -> Result<Self> {
        if inline {
            return Ok(BackgroundCheckpoints { reports: None });
        }
        defer();
        let mut checkpointer = Checkpointer::open(path)?;
        let (reports, received) = mpsc::channel::<u32>();
        std::thread::spawn(move || {
            let mut schedule = CheckpointSchedule::default();
            while let Ok(mut pages) = received.recv() {
                // What queued while a checkpoint ran: the newest counts.
                while let Ok(newer) = received.try_recv() {
                    pages = newer;
                }
                if schedule.due(pages) {
                    let _ = checkpointer.run();
                }
            }
        });
        Ok(BackgroundCheckpoints {
            reports: Some(reports),
        })
    }

    /// Call on the thread that just committed: reports the WAL's size.
    pub fn committed(&self) {
        if let (Some(reports), Some(pages)) = (&self.reports, take_wal_pages()) {
            let _ = reports.send(pages);
        }
    }
}

/// One measured commit: (batch ready, commit returned, entries, bytes).
pub(crate) type Commit = (Instant, Instant, usize, usize);

/// Waits out the warm-up and the measured window (`probe_start..end`),
/// with the CPU probe over the window, then joins the writer threads and
/// reports the commits that returned in it (the v3 and the v4 ceiling
/// alike, so that their rows compare with the servers' the same way).
pub(crate) fn window_metrics(
    handles: Vec<std::thread::JoinHandle<Result<Vec<Commit>>>>,
    probe_start: Instant,
    end: Instant,
) -> Result<Map<String, Value>> {
    std::thread::sleep(probe_start.saturating_duration_since(Instant::now()));
    let probe = CpuProbe::start(None);
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let mut m = Map::new();
    probe.finish(&mut m);
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| err("writer thread panicked"))??);
    }
    let in_window: Vec<&Commit> = all
        .iter()
        .filter(|(_, done, ..)| *done >= probe_start && *done < end)
        .collect();
    let entries: usize = in_window.iter().map(|c| c.2).sum();
    let bytes: usize = in_window.iter().map(|c| c.3).sum();
    let latencies = all
        .iter()
        .filter(|(ready, ..)| *ready >= probe_start && *ready < end)
        .map(|(ready, done, ..)| (*done - *ready).as_nanos() as u64)
        .collect();
    throughput_metrics(
        &mut m,
        entries,
        bytes,
        (end - probe_start).as_secs_f64(),
        latencies,
    );
    Ok(m)
}

pub fn run(p: RawParams) -> Result<Map<String, Value>> {
    std::fs::create_dir_all(&p.dir)?;
    let kind = if p.via_storage { "storage" } else { "raw" };
    let path = p.dir.join(format!(
        "{kind}-w{}-b{}-s{}-{}.sqlite",
        p.writers,
        p.batch,
        p.size,
        std::process::id()
    ));
    // The store creates the file with its schema either way.
    let mut store = SqliteStorage::open(&path)?;
    store.remote_id()?;
    let result = if p.via_storage {
        let checkpoints = BackgroundCheckpoints::start(&path, p.inline_checkpoints, || {
            store.defer_checkpoints()
        })?;
        let store = Arc::new(Mutex::new(store));
        measure(&p, move |_| {
            let store = store.clone();
            let checkpoints = checkpoints.clone();
            move |batches: &[AppendBatch]| {
                store.lock().map_err(|_| err("poisoned"))?.append(batches)?;
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
        let conn = Arc::new(Mutex::new(conn));
        measure(&p, move |w| {
            let conn = conn.clone();
            let checkpoints = checkpoints.clone();
            let mut head = 0i64;
            move |batches: &[AppendBatch]| {
                let mut conn = conn.lock().map_err(|_| err("poisoned"))?;
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO entries (key, log_id, entry_id, iv, encrypted_entry)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (log_id, entry_id) DO NOTHING",
                    )?;
                    for batch in batches {
                        for e in &batch.entries {
                            head += 1;
                            stmt.execute(params![
                                schema::entry_key(w as i64 + 1, head),
                                w as i64 + 1,
                                &e.entry_id[..],
                                &batch.iv[..],
                                &e.encrypted_entry[..]
                            ])?;
                        }
                    }
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

/// Runs `p.writers` threads; each builds `group` batches at a time and
/// hands them to its committer (`committer(w)` makes writer `w`'s) until
/// the measured window ends, then summarizes the commits in the window.
fn measure<C, F>(p: &RawParams, committer: F) -> Result<Map<String, Value>>
where
    F: Fn(usize) -> C,
    C: FnMut(&[AppendBatch]) -> Result<()> + Send + 'static,
{
    let probe_start = Instant::now() + p.warmup;
    let end = probe_start + p.duration;
    let handles: Vec<_> = (0..p.writers)
        .map(|w| {
            let mut commit = committer(w);
            let p = p.clone();
            std::thread::spawn(move || -> Result<Vec<Commit>> {
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
                    commit(&batches)?;
                    out.push((ready, Instant::now(), p.batch * group, bytes));
                }
                Ok(out)
            })
        })
        .collect();
    window_metrics(handles, probe_start, end)
}
