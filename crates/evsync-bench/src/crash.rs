//! `evsync crash-test`: SIGKILL the server again and again under
//! concurrent write load, resend what was not acknowledged (as Effect's
//! client does: its journal keeps uncommitted entries and sends them again
//! on the next connection), then check the stored logs: every acknowledged
//! entry at the sequence its Ack gave, no gap, no duplicate, nothing that
//! was written missing.
//!
//! With `--postgres-url` and `--nodes N`, N nodes share one PostgreSQL
//! database: each kill takes one node, a writer whose node is gone resumes
//! on the next one, and a follower on every node subscribes to every log
//! and must see each entry exactly once, in sequence order, whatever node
//! it was written on (live delivery across nodes, through the kills).
//!
//! Why a command and not only a test: the 100-kill run takes minutes and
//! is worth running against a new build or another machine's disks; the
//! test command runs a short version (crates/evsync/tests/crash.rs).

use crate::common::{
    Payloads, Result, WsSink, WsStream, connect_hello, err, frames_for, next_response, send_frames,
};
use crate::server_process::{evsync_bin, free_port, scratch_dir, serve_command, spawn_listening};
use bytes::Bytes;
use clap::Args;
use evsync_core::storage::{AsyncStorage, ReadLimit};
use evsync_core::wire::{EncryptedEntry, RemoteEntry, Request, Response};
use evsync_storage_postgres::{PgConfig, PgDatabase};
use evsync_storage_sqlite::{SqliteStorage, tenant_path};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::process::Child;
use tokio::sync::Mutex;

/// `evsync crash-test …`
#[derive(Args, Debug, Clone)]
pub struct CrashArgs {
    /// How many times the server is killed with SIGKILL.
    #[arg(long, default_value_t = 100)]
    pub kills: u32,
    /// Concurrent writers, each on a log of its own.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Entries per WriteEntries batch.
    #[arg(long, default_value_t = 5)]
    pub batch: usize,
    /// Batches a writer keeps in flight (sent, not yet acknowledged).
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Bytes per entry.
    #[arg(long, default_value_t = 256)]
    pub entry_bytes: usize,
    /// The load runs between this many milliseconds and twice as many
    /// before each kill (a random point in between).
    #[arg(long, default_value_t = 150)]
    pub run_ms: u64,
    /// The evsync binary to kill (default: this one).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// The data directory (default: a new temporary one, removed after a
    /// passing run).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Run the nodes on this PostgreSQL database (`--storage postgres`)
    /// instead of SQLite; the checks read it. Its tenant `crash-test` must
    /// be empty.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Nodes sharing the database (more than one needs --postgres-url);
    /// each kill takes the next node in turn.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
}

const TENANT: &str = "crash-test";

/// One writer's books.
#[derive(Default)]
struct Books {
    /// Batches written and not yet acknowledged, oldest first.
    pending: VecDeque<Vec<EncryptedEntry>>,
    /// entry id → the sequence its Ack gave.
    acked: HashMap<Bytes, u64>,
    written: u64,
    resent_batches: u64,
}

/// One follower's books: what it received of one log from one node.
#[derive(Default)]
struct Followed {
    /// The highest sequence received, each one after the one before.
    last: u64,
    /// Entry ids received, to find one received twice.
    ids: HashSet<Bytes>,
    problems: Vec<String>,
}

/// One server process (a node), restarted on the same port and data
/// directory.
struct Server {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// `--postgres-url`, given to the node in its environment (never on
    /// its command line, where other users could read the password).
    postgres_url: Option<String>,
    child: Option<Child>,
}

impl Server {
    async fn start(&mut self) -> Result<()> {
        let mut cmd = serve_command(&self.bin, self.port, &self.data);
        if let Some(url) = &self.postgres_url {
            cmd.env("SYNC_STORAGE", "postgres")
                .env("SYNC_POSTGRES_URL", url)
                .env("SYNC_POSTGRES_RECHECK_MS", "500");
        }
        let (child, mut lines) = spawn_listening(&mut cmd, |_| {}).await?;
        // keep draining its stderr
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on our own child's pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .map_err(|_| err("the server did not stop within 15 s of SIGTERM"))??;
        }
        Ok(())
    }
}

/// Runs the crash test; prints a JSON summary line; `Ok(true)` if every
/// check passed.
pub async fn run(args: CrashArgs) -> Result<bool> {
    let bin = evsync_bin(args.bin.as_deref())?;
    let temp = match &args.data {
        Some(_) => None,
        None => Some(scratch_dir("crash-test")?),
    };
    let data = args
        .data
        .clone()
        .or_else(|| temp.clone())
        .ok_or_else(|| err("no data directory"))?;
    if args.nodes == 0 || (args.nodes > 1 && args.postgres_url.is_none()) {
        return Err(err(
            "--nodes: at least 1, and more than 1 needs --postgres-url (nodes share a database)",
        ));
    }
    let mut servers = Vec::new();
    for node in 0..args.nodes {
        let node_data = data.join(format!("node-{node}"));
        std::fs::create_dir_all(&node_data)?;
        let mut server = Server {
            bin: bin.clone(),
            // One node keeps the layout of before: <data>/tenants/.
            data: if args.nodes == 1 {
                data.clone()
            } else {
                node_data
            },
            port: free_port()?,
            postgres_url: args.postgres_url.clone(),
            child: None,
        };
        server.start().await?;
        servers.push(server);
    }
    let urls: Arc<Vec<String>> = Arc::new(
        servers
            .iter()
            .map(|s| format!("ws://127.0.0.1:{}/event-log/{TENANT}", s.port))
            .collect(),
    );
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let books: Vec<Arc<Mutex<Books>>> = (0..args.writers).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, book) in books.iter().enumerate() {
        let (urls, stop, connects, book, args) = (
            urls.clone(),
            stop.clone(),
            connects.clone(),
            book.clone(),
            args.clone(),
        );
        tasks.push(tokio::spawn(async move {
            writer(
                &urls,
                i % urls.len(),
                &format!("crash-log-{i}"),
                &args,
                &book,
                &stop,
                &connects,
            )
            .await
        }));
    }
    // With several nodes, every node follows every log.
    let heads: Arc<Mutex<Option<HashMap<String, u64>>>> = Arc::default();
    let mut followers = Vec::new();
    if args.nodes > 1 {
        for url in urls.iter() {
            for i in 0..args.writers {
                let (url, log, heads) = (url.clone(), format!("crash-log-{i}"), heads.clone());
                let books: Arc<Mutex<Followed>> = Arc::default();
                let task_books = books.clone();
                let task =
                    tokio::spawn(async move { follower(&url, &log, &task_books, &heads).await });
                followers.push((books, task));
            }
        }
    }

    // the kills
    let mut seed = crate::common::now_ns() | 1;
    for kill in 0..args.kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pause = args.run_ms + seed % (args.run_ms + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let server = &mut servers[kill as usize % args.nodes];
        server.kill().await?;
        server.start().await?;
    }
    // let the writers drain: everything pending acknowledged
    tokio::time::sleep(Duration::from_millis(args.run_ms)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.map_err(|e| err(format!("writer task: {e}")))??;
    }
    let load_secs = started.elapsed().as_secs_f64();

    // the checks, on the stored logs
    let mut problems: Vec<String> = Vec::new();
    let mut store = match &args.postgres_url {
        None => Stored::Sqlite(SqliteStorage::open(tenant_path(
            &data.join("tenants"),
            TENANT,
        ))?),
        Some(url) => Stored::Postgres(PgDatabase::new(&PgConfig::parse(url, 2)?)?.tenant(TENANT)),
    };
    let mut stored_logs = HashMap::new();
    for i in 0..args.writers {
        let log = format!("crash-log-{i}");
        let stored = store.read_all(&log).await?;
        stored_logs.insert(log, stored);
    }
    // the followers must reach every log's head (then they stop)
    *heads.lock().await = Some(
        stored_logs
            .iter()
            .map(|(log, stored)| (log.clone(), stored.len() as u64))
            .collect(),
    );
    let mut deliveries = 0u64;
    for (followed, task) in followers {
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => problems.push(format!("a follower failed: {e}")),
            Ok(Err(e)) => problems.push(format!("a follower task failed: {e}")),
            Err(_) => problems
                .push("a follower did not receive its log up to the head within 60 s".to_owned()),
        }
        let followed = followed.lock().await;
        deliveries += followed.ids.len() as u64;
        problems.extend(followed.problems.iter().cloned());
    }
    for server in &mut servers {
        server.stop().await?;
    }
    let (mut written, mut acked, mut stored_total, mut resent) = (0u64, 0u64, 0u64, 0u64);
    for (i, book) in books.iter().enumerate() {
        let book = book.lock().await;
        let log = format!("crash-log-{i}");
        written += book.written;
        acked += book.acked.len() as u64;
        resent += book.resent_batches;
        if !book.pending.is_empty() {
            problems.push(format!(
                "{log}: {} batches never acknowledged",
                book.pending.len()
            ));
        }
        let stored = &stored_logs[&log];
        stored_total += stored.len() as u64;
        let mut ids = HashSet::new();
        for (k, entry) in stored.iter().enumerate() {
            if entry.sequence != k as u64 + 1 {
                problems.push(format!(
                    "{log}: sequence {} at position {} (gap)",
                    entry.sequence,
                    k + 1
                ));
                break;
            }
            if !ids.insert(entry.entry_id.clone()) {
                problems.push(format!(
                    "{log}: entry stored twice (sequence {})",
                    entry.sequence
                ));
            }
        }
        let at: HashMap<&Bytes, u64> = stored.iter().map(|e| (&e.entry_id, e.sequence)).collect();
        for (id, sequence) in &book.acked {
            match at.get(id) {
                None => problems.push(format!(
                    "{log}: an entry acknowledged at {sequence} is LOST"
                )),
                Some(s) if s != sequence => problems.push(format!(
                    "{log}: an entry acknowledged at {sequence} is stored at {s}"
                )),
                Some(_) => {}
            }
        }
        if stored.len() as u64 != book.written {
            problems.push(format!(
                "{log}: {} entries written, {} stored",
                book.written,
                stored.len()
            ));
        }
    }
    drop(store);
    let passed = problems.is_empty();
    let summary = json!({
        "scenario": "crash-test",
        "storage": if args.postgres_url.is_some() { "postgres" } else { "sqlite" },
        "nodes": args.nodes,
        "kills": args.kills,
        "writers": args.writers,
        "follower_deliveries": deliveries,
        "entries_written": written,
        "entries_acked": acked,
        "entries_stored": stored_total,
        "batches_resent": resent,
        "connections": connects.load(Ordering::Relaxed),
        "seconds": (load_secs * 10.0).round() / 10.0,
        "problems": problems,
        "passed": passed,
    });
    println!("{summary}");
    eprintln!(
        "crash-test: {} SIGKILLs of {} node(s) under load from {} writers; {written} entries written, {acked} acknowledged, {stored_total} stored, {resent} batches resent after a kill, {deliveries} entries followed on other nodes; {}",
        args.kills,
        args.nodes,
        args.writers,
        if passed {
            "every acknowledged entry at its sequence, no gap, no duplicate, none lost: PASS"
                .to_owned()
        } else {
            format!("FAIL: {}", problems.join("; "))
        }
    );
    if passed && let Some(temp) = temp {
        let _ = std::fs::remove_dir_all(temp);
    }
    Ok(passed)
}

/// One writer: writes batches to its log with `in_flight` unacknowledged
/// at most; when the connection breaks (a kill), it connects again (to
/// the next node, when there are several) and first resends every
/// unacknowledged batch, as Effect's client does. After `stop`, it writes
/// nothing new and returns once everything is acked.
async fn writer(
    urls: &[String],
    mut node: usize,
    log: &str,
    args: &CrashArgs,
    book: &Mutex<Books>,
    stop: &AtomicBool,
    connects: &AtomicU64,
) -> Result<()> {
    let mut payloads = Payloads::new(args.entry_bytes);
    let deadline_after_stop = Duration::from_secs(60);
    let mut stopped_at: Option<Instant> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if book.lock().await.pending.is_empty() {
                return Ok(());
            }
            if at.elapsed() > deadline_after_stop {
                return Err(err(format!(
                    "{log}: batches still unacknowledged 60 s after the last kill"
                )));
            }
        }
        let Ok((sink, stream, incoming)) = connect_hello(&urls[node]).await else {
            node = (node + 1) % urls.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        connects.fetch_add(1, Ordering::Relaxed);
        // the connection ends with an error when the server is killed
        let _ = session(sink, stream, incoming, log, args, book, stop, &mut payloads).await;
        node = (node + 1) % urls.len();
    }
}

/// The stored logs the checks read: the SQLite file, or the database.
enum Stored {
    Sqlite(SqliteStorage),
    Postgres(evsync_storage_postgres::PgStorage),
}

impl Stored {
    async fn read_all(&mut self, log: &str) -> Result<Vec<RemoteEntry>> {
        const ALL: ReadLimit = ReadLimit {
            max_entries: usize::MAX,
            max_bytes: usize::MAX,
        };
        Ok(match self {
            Stored::Sqlite(store) => AsyncStorage::read(store, log, 1, ALL).await?,
            Stored::Postgres(store) => AsyncStorage::read(store, log, 1, ALL).await?,
        })
    }
}

/// Follows `log` on one node from the start: subscribes, and after a
/// broken connection (its node killed) subscribes again from the next
/// sequence it needs. Every entry must come exactly once, in sequence
/// order. Returns once `heads` (set after the writers finished) says its
/// log is complete and it has all of it.
async fn follower(
    url: &str,
    log: &str,
    books: &Mutex<Followed>,
    heads: &Mutex<Option<HashMap<String, u64>>>,
) -> Result<()> {
    loop {
        let done = |books: &Followed, heads: &Option<HashMap<String, u64>>| {
            heads
                .as_ref()
                .is_some_and(|h| h.get(log).copied().unwrap_or(0) <= books.last)
        };
        if done(&*books.lock().await, &*heads.lock().await) {
            return Ok(());
        }
        let Ok((mut sink, mut stream, mut incoming)) = connect_hello(url).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let from = books.lock().await.last + 1;
        let request = Request::RequestChanges {
            public_key: log.to_owned(),
            start_sequence: from,
        };
        if send_frames(&mut sink, frames_for(&request, &mut 0))
            .await
            .is_err()
        {
            continue;
        }
        loop {
            // Wake now and then to see whether the head is known and met.
            let next = tokio::time::timeout(
                Duration::from_millis(200),
                next_response(&mut stream, &mut incoming),
            )
            .await;
            let response = match next {
                Err(_) => {
                    if done(&*books.lock().await, &*heads.lock().await) {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Err(_)) => break, // the node went away: subscribe again
                Ok(Ok(response)) => response,
            };
            let Response::Changes {
                public_key,
                entries,
            } = response
            else {
                continue;
            };
            if public_key != log {
                continue;
            }
            let mut b = books.lock().await;
            for entry in entries {
                if entry.sequence != b.last + 1 {
                    let problem = format!(
                        "{log} on {url}: received sequence {} after {} ({})",
                        entry.sequence,
                        b.last,
                        if entry.sequence <= b.last {
                            "twice"
                        } else {
                            "gap"
                        }
                    );
                    b.problems.push(problem);
                    return Ok(());
                }
                b.last = entry.sequence;
                if !b.ids.insert(entry.entry_id.clone()) {
                    let problem = format!("{log} on {url}: one entry id received twice");
                    b.problems.push(problem);
                    return Ok(());
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    mut sink: WsSink,
    mut stream: WsStream,
    mut incoming: crate::common::Incoming,
    log: &str,
    args: &CrashArgs,
    book: &Mutex<Books>,
    stop: &AtomicBool,
    payloads: &mut Payloads,
) -> Result<()> {
    let mut chunk_id = 0i64;
    let mut next_id = 0i64;
    // request id → the batch it carries (its place in `pending` can move)
    let mut sent: HashMap<i64, Vec<Bytes>> = HashMap::new();
    let send = |entries: &[EncryptedEntry], id: i64, chunk_id: &mut i64| {
        let request = Request::WriteEntries {
            public_key: log.to_owned(),
            id,
            iv: Payloads::iv(),
            encrypted_entries: entries.to_vec(),
        };
        frames_for(&request, chunk_id)
    };
    // resend what is pending, oldest first
    let pending: Vec<Vec<EncryptedEntry>> = book.lock().await.pending.iter().cloned().collect();
    if !pending.is_empty() {
        book.lock().await.resent_batches += pending.len() as u64;
    }
    for batch in pending {
        next_id += 1;
        sent.insert(next_id, batch.iter().map(|e| e.entry_id.clone()).collect());
        send_frames(&mut sink, send(&batch, next_id, &mut chunk_id)).await?;
    }
    loop {
        // top up the window with new batches while the load runs
        while !stop.load(Ordering::SeqCst) && sent.len() < args.in_flight {
            let batch: Vec<EncryptedEntry> = (0..args.batch).map(|_| payloads.entry()).collect();
            {
                let mut b = book.lock().await;
                b.written += batch.len() as u64;
                b.pending.push_back(batch.clone());
            }
            next_id += 1;
            sent.insert(next_id, batch.iter().map(|e| e.entry_id.clone()).collect());
            send_frames(&mut sink, send(&batch, next_id, &mut chunk_id)).await?;
        }
        if stop.load(Ordering::SeqCst) && sent.is_empty() {
            return Ok(());
        }
        match next_response(&mut stream, &mut incoming).await? {
            Response::Ack {
                id,
                sequence_numbers,
            } => {
                let Some(ids) = sent.remove(&id) else {
                    return Err(err(format!("{log}: an Ack for unknown request {id}")));
                };
                if ids.len() != sequence_numbers.len() {
                    return Err(err(format!(
                        "{log}: an Ack with {} sequences for {} entries",
                        sequence_numbers.len(),
                        ids.len()
                    )));
                }
                let mut b = book.lock().await;
                for (entry_id, sequence) in ids.iter().zip(&sequence_numbers) {
                    if let Some(before) = b.acked.insert(entry_id.clone(), *sequence)
                        && before != *sequence
                    {
                        return Err(err(format!(
                            "{log}: one entry acknowledged at {before} and later at {sequence}"
                        )));
                    }
                }
                let first = ids.first().cloned();
                b.pending
                    .retain(|batch| batch.first().map(|e| &e.entry_id) != first.as_ref());
            }
            _ => continue,
        }
    }
}
