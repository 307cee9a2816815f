//! evsync-bench: the load generator behind `evsync bench`.
//!
//! Every scenario speaks the EventLogRemote protocol through
//! evsync-core's codec over tokio-tungstenite, so it measures any server
//! that Effect's clients can use: evsync (SQLite or memory) and Effect's own
//! `EventLogServer` (SqlEventLogServer over SQLite, or memory). Entries are
//! opaque random bytes (encryption off) unless `--encrypt` seals them with
//! AES-256-GCM as Effect's client does.
//!
//! A run prints one JSON result line on stdout (and appends it to `--out`);
//! `evsync bench report FILE` turns the lines into the markdown tables.
//! `scripts/bench` starts every server and runs every scenario against
//! each; BENCHMARKS.md has the method and the results.
//!
//! Every run is time-boxed (`--timeout`): a watchdog writes a `timeout`
//! result and ends the process, so a peer that stalls never hangs the
//! harness.

pub mod catchup;
pub mod ceiling_server;
pub mod churn;
pub mod common;
pub mod crash;
pub mod fanout;
pub mod hostile;
pub mod idle;
pub mod raw;
pub mod raw_catchup;
pub mod raw_v4;
pub mod report;
pub mod server_process;
pub mod v4;
pub mod write;

use clap::{Args, Subcommand};
use common::{RunId, emit, say, watchdog};
use serde_json::{Map, Value};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `evsync bench …`
#[derive(Args, Debug)]
#[command(
    about = "Benchmark a sync server: write, fanout, catchup, churn, idle, tenants, ceilings, report",
    long_about = "Load generator for EventLogRemote servers (evsync, Effect's own server). \
        Each scenario prints one JSON result line (also appended to --out); \
        `evsync bench report FILE` renders the markdown table. scripts/bench \
        runs everything against every server; see BENCHMARKS.md."
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Write throughput: acked entries/s, MB/s, p50/p99 ack latency.
    Write(WriteArgs),
    /// Fan-out: one writer at a fixed rate, N subscribers; write → delivery latency.
    Fanout(FanoutArgs),
    /// Catch-up: a new subscriber receives a whole log.
    Catchup(CatchupArgs),
    /// Reconnect churn: loops of connect, Hello, RequestChanges, empty write, Ack, close.
    Churn(ChurnArgs),
    /// The socket ceiling: a minimal v3 (or v4) server, no engine, no storage (churn, fan-out, v4 writes).
    CeilingServer(CeilingServerArgs),
    /// The catch-up ceiling: a preloaded log scanned out of its file (and sent over TCP).
    RawCatchup(RawCatchupArgs),
    /// Idle connections: server RSS per greeted and subscribed socket.
    Idle(IdleArgs),
    /// Many tenants: N tenants written once, then idle: server RSS and open files.
    Tenants(TenantsArgs),
    /// The ceiling: the same bytes inserted by a Rust loop straight into SQLite.
    RawSqlite(RawArgs),
    /// Writes a log straight into a tenant file before the server starts.
    Preload(PreloadArgs),
    /// Effect v4 write throughput: WriteSingle of encrypted batches.
    V4Write(V4WriteArgs),
    /// Effect v4 fan-out: one writer at a fixed rate, N subscribers of one store.
    V4Fanout(V4FanoutArgs),
    /// Effect v4 catch-up: a new subscriber reads a whole store.
    V4Catchup(V4CatchupArgs),
    /// The v4 ceiling: the same batches inserted by a Rust loop into evsync's v4 tables.
    RawSqliteV4(RawV4Args),
    /// Renders result lines (JSONL) as the markdown results table.
    Report(ReportArgs),
}

/// Options every measuring scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Name of the server measured, the column of the results table
    /// (evsync-sqlite, evsync-memory, effect-sqlite, effect-memory, …).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Appends the JSON result line to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The server's process id: its CPU time, RSS and open files are read
    /// from /proc.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Seconds after which the run is reported as `timeout` and ends.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct WriteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Server base URL, e.g. ws://127.0.0.1:8787
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-write")]
    pub tenant: String,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Entries per WriteEntries.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Bytes per entry.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// WriteEntries each writer keeps in flight (sent, not yet acked).
    /// 0 = auto: 16, or fewer so that at most ~16 MiB are in flight per writer.
    #[arg(long, default_value_t = 0)]
    pub window: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Seal entries with AES-256-GCM as Effect's client does (client CPU).
    #[arg(long)]
    pub encrypt: bool,
    /// All writers write one publicKey (default: one publicKey each).
    #[arg(long)]
    pub shared_key: bool,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-fanout")]
    pub tenant: String,
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Entries per second written (one per WriteEntries).
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Bytes per entry (the first 8 are the send time).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds of writing.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Sockets opened at once while setting up.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// Seconds to wait for late deliveries after the last write.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

#[derive(Args, Debug)]
pub struct CatchupArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-catchup")]
    pub tenant: String,
    #[arg(long, default_value = "bench-catchup-pk")]
    pub public_key: String,
    /// Entries in the log.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Bytes per entry.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// How the log got there: `file` (preloaded by `bench preload` before the
    /// server started) or `ws` (written now through the server's write path).
    #[arg(long, default_value = "file", value_parser = ["file", "ws"])]
    pub preload: String,
    /// Entries per WriteEntries when preloading through the socket. Not a
    /// multiple of 200: Effect's SqlEventLogServer fails such a batch (it
    /// inserts an empty trailing batch of its insertBatchSize = 200).
    #[arg(long, default_value_t = 999)]
    pub preload_batch: usize,
}

#[derive(Args, Debug)]
pub struct ChurnArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-churn")]
    pub tenant: String,
    /// Reconnect loops running at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Entries written to the log before the loops start.
    #[arg(long, default_value_t = 100)]
    pub preload: usize,
    /// Seconds before measuring.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
}

#[derive(Args, Debug)]
pub struct CeilingServerArgs {
    /// Address to listen on (port 0: any free port, printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// How a new entry reaches the subscribers: `inline` (the writer's
    /// task writes them in subscription order) or `tasks` (each
    /// subscriber's own task writes).
    #[arg(long, default_value = "inline", value_parser = ["inline", "tasks"])]
    pub fanout: String,
    /// The protocol spoken: `v3` (writes, fan-out, churn) or `v4` (Effect
    /// v4 writes only: the ceiling of `v4-write`'s single-entry rows).
    #[arg(long, default_value = "v3", value_parser = ["v3", "v4"])]
    pub protocol: String,
}

#[derive(Args, Debug)]
pub struct RawCatchupArgs {
    #[command(flatten)]
    pub common: Common,
    /// The data directory `evsync bench preload --format evsync` wrote.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "catchup")]
    pub tenant: String,
    #[arg(long, default_value = "bench-catchup-pk")]
    pub public_key: String,
    /// Also write the bytes to a loopback TCP socket another thread reads.
    #[arg(long)]
    pub send: bool,
    /// Entries and size of the preloaded log (the case's name only).
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
}

#[derive(Args, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-idle")]
    pub tenant: String,
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Sockets being opened at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
    /// Each socket subscribes to its own publicKey (default: all one).
    #[arg(long)]
    pub unique_keys: bool,
    /// Seconds to wait after the last socket before reading RSS.
    #[arg(long, default_value_t = 1.0)]
    pub settle: f64,
    /// Stop opening sockets after this many seconds; measure those open.
    #[arg(long, default_value_t = 60.0)]
    pub open_limit: f64,
}

#[derive(Args, Debug)]
pub struct TenantsArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    /// Tenant names are PREFIX0, PREFIX1, …
    #[arg(long, default_value = "bench-tenant-")]
    pub prefix: String,
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Seconds to wait after the last write before measuring (longer than
    /// the server's idle-unload grace; evsync's is --idle-unload-ms, 5 s).
    #[arg(long, default_value_t = 7.0)]
    pub idle_wait: f64,
    /// Stop starting tenants after this many seconds; measure those written.
    #[arg(long, default_value_t = 60.0)]
    pub write_limit: f64,
}

#[derive(Args, Debug)]
pub struct RawArgs {
    #[command(flatten)]
    pub common: Common,
    /// Directory for the scratch database (removed afterwards).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Batches per transaction (1: one transaction per batch; more: a
    /// group commit of that many batches per fsync).
    #[arg(long, default_value_t = 1)]
    pub group: usize,
    /// Write through evsync-storage-sqlite's `append` (the server's store)
    /// instead of the plain rusqlite loop.
    #[arg(long)]
    pub via_storage: bool,
    /// Checkpoint the WAL inside the commits, as SQLite does by default,
    /// instead of on a thread beside the writer as the server does.
    #[arg(long)]
    pub inline_checkpoints: bool,
}

#[derive(Args, Debug)]
pub struct PreloadArgs {
    /// `evsync` (DATA/tenants/<tenant>.sqlite through evsync-storage-sqlite)
    /// or `effect` (DATA/<tenant>.sqlite in SqlEventLogServer's layout, as
    /// interop/src/reference-server.mjs --data DATA opens it).
    #[arg(long, value_parser = ["evsync", "effect"])]
    pub format: String,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "bench-catchup")]
    pub tenant: String,
    #[arg(long, default_value = "bench-catchup-pk")]
    pub public_key: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
}

#[derive(Args, Debug)]
pub struct V4WriteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Server base URL, e.g. ws://127.0.0.1:8787 (/v4/event-log/<tenant> is added)
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-v4-write")]
    pub tenant: String,
    /// Concurrent writer connections (one identity and store each).
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Encrypted batches per WriteSingle.
    #[arg(long, default_value_t = 1)]
    pub batches: usize,
    /// Entries per batch (Effect's client packs at most 100).
    #[arg(long, default_value_t = 1)]
    pub entries: usize,
    /// Ciphertext bytes per entry.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Requests each writer keeps in flight; 0 = auto (as `write`).
    #[arg(long, default_value_t = 0)]
    pub window: usize,
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
}

#[derive(Args, Debug)]
pub struct V4FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-v4-fanout")]
    pub tenant: String,
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Batches (of one entry) per second, one per WriteSingle.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Ciphertext bytes per entry (the first 8 are the send time).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
}

#[derive(Args, Debug)]
pub struct V4CatchupArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub url: String,
    #[arg(long, default_value = "bench-v4-catchup")]
    pub tenant: String,
    /// Entries in the store.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Ciphertext bytes per entry.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Entries per batch.
    #[arg(long, default_value_t = 100)]
    pub batch_entries: usize,
    /// Batches per WriteSingle while preloading.
    #[arg(long, default_value_t = 4)]
    pub request_batches: usize,
}

#[derive(Args, Debug)]
pub struct RawV4Args {
    #[command(flatten)]
    pub common: Common,
    /// Directory for the scratch database (removed afterwards).
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Batches per request.
    #[arg(long, default_value_t = 1)]
    pub batches: usize,
    /// Entries per batch.
    #[arg(long, default_value_t = 1)]
    pub entries: usize,
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Requests per transaction (1: one per request; the window: a perfect
    /// group commit).
    #[arg(long, default_value_t = 1)]
    pub group: usize,
    /// Write through evsync-storage-sqlite's `append_batches`.
    #[arg(long)]
    pub via_storage: bool,
    /// Checkpoint the WAL inside the commits, as SQLite does by default,
    /// instead of on a thread beside the writer as the server does.
    #[arg(long)]
    pub inline_checkpoints: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Result files (JSON lines).
    pub files: Vec<PathBuf>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Runs one measuring scenario with its watchdog and emits its result.
fn measure<F, Fut>(scenario: &'static str, case: String, common: &Common, body: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = common::Result<Map<String, Value>>>,
{
    let id = RunId {
        scenario,
        case,
        label: common.label.clone(),
        out: common.out.clone(),
    };
    watchdog(id.clone(), Duration::from_secs(common.timeout));
    let mut m_extra = Map::new();
    if let Some(pid) = common.server_pid
        && let Some(cpus) = common::proc_affinity(pid)
    {
        m_extra.insert("server_cpus".into(), Value::from(cpus));
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            emit(&id, "failed", Map::new(), Some(format!("no runtime: {e}")));
            return ExitCode::FAILURE;
        }
    };
    say(format!(
        "{scenario} [{}] {} (load on CPUs {})",
        id.label,
        id.case,
        common::affinity()
    ));
    let result = runtime.block_on(body());
    match result {
        Ok(mut m) => {
            m.extend(m_extra);
            emit(&id, "ok", m, None);
            // Don't wait for sockets the scenario left to the runtime.
            runtime.shutdown_background();
            ExitCode::SUCCESS
        }
        Err(e) => {
            say(format!("{scenario} [{}] {} failed: {e}", id.label, id.case));
            emit(&id, "failed", m_extra, Some(e.to_string()));
            runtime.shutdown_background();
            ExitCode::FAILURE
        }
    }
}

/// Runs `evsync bench`. `open_files` is the process's open-files limit,
/// which the caller (the `evsync` binary's process set-up) has raised as
/// far as allowed; the idle scenario refuses to start below what it needs.
pub fn run(args: BenchArgs, open_files: u64) -> ExitCode {
    match args.scenario {
        Scenario::Write(a) => {
            let case = format!(
                "w={} b={} s={}{}",
                a.writers,
                a.batch,
                size_name(a.size),
                if a.encrypt { " enc" } else { "" }
            );
            let p = write::WriteParams {
                url: a.url,
                tenant: a.tenant,
                writers: a.writers,
                batch: a.batch,
                size: a.size,
                window: a.window,
                warmup: secs(a.warmup),
                duration: secs(a.duration),
                encrypt: a.encrypt,
                shared_key: a.shared_key,
                server_pid: a.common.server_pid,
            };
            measure("write", case, &a.common, || write::run(p))
        }
        Scenario::Fanout(a) => {
            let case = format!(
                "subs={} rate={}/s s={}",
                a.subscribers,
                a.rate,
                size_name(a.size)
            );
            let p = fanout::FanoutParams {
                url: a.url,
                tenant: a.tenant,
                subscribers: a.subscribers,
                rate: a.rate,
                size: a.size,
                duration: secs(a.duration),
                connect_concurrency: a.connect_concurrency,
                drain: secs(a.drain),
                server_pid: a.common.server_pid,
            };
            measure("fanout", case, &a.common, || fanout::run(p))
        }
        Scenario::Catchup(a) => {
            let case = format!("{} × {}", count_name(a.entries), size_name(a.size));
            let p = catchup::CatchupParams {
                url: a.url,
                tenant: a.tenant,
                public_key: a.public_key,
                entries: a.entries,
                size: a.size,
                preload_ws: a.preload == "ws",
                preload_batch: a.preload_batch,
                server_pid: a.common.server_pid,
            };
            measure("catchup", case, &a.common, || catchup::run(p))
        }
        Scenario::Churn(a) => {
            let case = format!("c={}", a.concurrency);
            let p = churn::ChurnParams {
                url: a.url,
                tenant: a.tenant,
                concurrency: a.concurrency,
                preload: a.preload,
                warmup: secs(a.warmup),
                duration: secs(a.duration),
                server_pid: a.common.server_pid,
            };
            measure("churn", case, &a.common, || churn::run(p))
        }
        Scenario::CeilingServer(a) => {
            let mode = if a.fanout == "tasks" {
                ceiling_server::FanoutMode::Tasks
            } else {
                ceiling_server::FanoutMode::Inline
            };
            let served = if a.protocol == "v4" {
                v4::ceiling::serve(&a.listen)
            } else {
                ceiling_server::serve(&a.listen, mode)
            };
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: ceiling server: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Scenario::RawCatchup(a) => {
            let case = format!("{} × {}", count_name(a.entries), size_name(a.size));
            let p = raw_catchup::RawCatchupParams {
                data: a.data,
                tenant: a.tenant,
                public_key: a.public_key,
                send: a.send,
            };
            measure("catchup", case, &a.common, || async move {
                tokio::task::spawn_blocking(move || raw_catchup::run(p))
                    .await
                    .map_err(|e| common::err(e.to_string()))?
            })
        }
        Scenario::Idle(a) => {
            let case = format!(
                "{} sockets{}",
                count_name(a.connections as u64),
                if a.unique_keys { " unique keys" } else { "" }
            );
            let Some(pid) = a.common.server_pid else {
                eprintln!("error: idle needs --server-pid");
                return ExitCode::from(2);
            };
            let p = idle::IdleParams {
                url: a.url,
                tenant: a.tenant,
                connections: a.connections,
                concurrency: a.concurrency,
                unique_keys: a.unique_keys,
                settle: secs(a.settle),
                open_limit: secs(a.open_limit),
                server_pid: pid,
                open_files,
            };
            measure("idle", case, &a.common, || idle::run_idle(p))
        }
        Scenario::Tenants(a) => {
            let case = format!("{} tenants", count_name(a.tenants as u64));
            let Some(pid) = a.common.server_pid else {
                eprintln!("error: tenants needs --server-pid");
                return ExitCode::from(2);
            };
            let p = idle::TenantsParams {
                url: a.url,
                prefix: a.prefix,
                tenants: a.tenants,
                concurrency: a.concurrency,
                size: a.size,
                idle_wait: secs(a.idle_wait),
                write_limit: secs(a.write_limit),
                server_pid: pid,
            };
            measure("tenants", case, &a.common, || idle::run_tenants(p))
        }
        Scenario::RawSqlite(a) => {
            let case = format!("w={} b={} s={}", a.writers, a.batch, size_name(a.size));
            let p = raw::RawParams {
                dir: a.dir,
                writers: a.writers,
                batch: a.batch,
                size: a.size,
                warmup: secs(a.warmup),
                duration: secs(a.duration),
                group: a.group,
                via_storage: a.via_storage,
                inline_checkpoints: a.inline_checkpoints,
            };
            measure("write", case, &a.common, || async move {
                tokio::task::spawn_blocking(move || raw::run(p))
                    .await
                    .map_err(|e| common::err(e.to_string()))?
            })
        }
        Scenario::Preload(a) => {
            let format = if a.format == "effect" {
                catchup::FileFormat::Effect
            } else {
                catchup::FileFormat::Evsync
            };
            let t = std::time::Instant::now();
            match catchup::preload_file(
                format,
                &a.data,
                &a.tenant,
                &a.public_key,
                a.entries,
                a.size,
            ) {
                Ok(path) => {
                    say(format!(
                        "preloaded {} entries of {} B into {} in {:.1} s",
                        a.entries,
                        a.size,
                        path.display(),
                        t.elapsed().as_secs_f64()
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: preload failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Scenario::V4Write(a) => {
            let case = v4_write_case(a.writers, a.batches, a.entries, a.size);
            let p = v4::write::V4WriteParams {
                url: a.url,
                tenant: a.tenant,
                writers: a.writers,
                batches: a.batches,
                entries: a.entries,
                size: a.size,
                window: a.window,
                warmup: secs(a.warmup),
                duration: secs(a.duration),
                server_pid: a.common.server_pid,
            };
            measure("v4write", case, &a.common, || v4::write::run(p))
        }
        Scenario::V4Fanout(a) => {
            let case = format!(
                "subs={} rate={}/s s={}",
                a.subscribers,
                a.rate,
                size_name(a.size)
            );
            let p = v4::fanout::V4FanoutParams {
                url: a.url,
                tenant: a.tenant,
                subscribers: a.subscribers,
                rate: a.rate,
                size: a.size,
                duration: secs(a.duration),
                connect_concurrency: a.connect_concurrency,
                drain: secs(a.drain),
                server_pid: a.common.server_pid,
            };
            measure("v4fanout", case, &a.common, || v4::fanout::run(p))
        }
        Scenario::V4Catchup(a) => {
            let case = format!(
                "{} × {} ({}/batch)",
                count_name(a.entries),
                size_name(a.size),
                a.batch_entries
            );
            let p = v4::catchup::V4CatchupParams {
                url: a.url,
                tenant: a.tenant,
                entries: a.entries,
                size: a.size,
                batch_entries: a.batch_entries,
                request_batches: a.request_batches,
                server_pid: a.common.server_pid,
            };
            measure("v4catchup", case, &a.common, || v4::catchup::run(p))
        }
        Scenario::RawSqliteV4(a) => {
            let case = v4_write_case(a.writers, a.batches, a.entries, a.size);
            let p = raw_v4::RawV4Params {
                dir: a.dir,
                writers: a.writers,
                batches: a.batches,
                entries: a.entries,
                size: a.size,
                warmup: secs(a.warmup),
                duration: secs(a.duration),
                group: a.group,
                via_storage: a.via_storage,
                inline_checkpoints: a.inline_checkpoints,
            };
            measure("v4write", case, &a.common, || async move {
                tokio::task::spawn_blocking(move || raw_v4::run(p))
                    .await
                    .map_err(|e| common::err(e.to_string()))?
            })
        }
        Scenario::Report(a) => {
            let mut text = String::new();
            for f in &a.files {
                match std::fs::read_to_string(f) {
                    Ok(t) => {
                        text.push_str(&t);
                        text.push('\n');
                    }
                    Err(e) => {
                        eprintln!("error: cannot read {}: {e}", f.display());
                        return ExitCode::FAILURE;
                    }
                }
            }
            print!("{}", report::render(&text));
            ExitCode::SUCCESS
        }
    }
}

/// `w=8 1×1 s=100B`: writers, batches per request × entries per batch, entry size.
fn v4_write_case(writers: usize, batches: usize, entries: usize, size: usize) -> String {
    format!("w={writers} {batches}×{entries} s={}", size_name(size))
}

fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{}KB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn count_name(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}
