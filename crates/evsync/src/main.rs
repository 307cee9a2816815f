//! `evsync`: the command line of evsync, a sync server for Effect EventLog
//! replicas. Each subcommand lives in its own module under `cmd/`.

mod cmd;
mod limits;
mod logging;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// jemalloc instead of glibc's allocator: a single-entry write allocates and
/// frees a handful of small buffers at every layer (frame, envelope, batch,
/// Exit), and glibc's malloc and free were a fifth of the server's CPU for
/// them (perf, BENCHMARKS.md "The allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// evsync: sync server for Effect EventLog replicas (a drop-in replacement
/// for the Cloudflare Worker + Durable Object sync server).
#[derive(Parser)]
#[command(name = "evsync", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the sync server (WebSocket endpoint /event-log/<tenant>).
    Serve(cmd::serve::ServeArgs),
    /// Benchmark a sync server (load generator; see BENCHMARKS.md).
    Bench(cmd::bench::BenchArgs),
    /// Signed tenant tokens (read-only, expiring, one publicKey).
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// The admin API of a running server or Worker (SYNC_ADMIN_TOKEN).
    Admin(cmd::admin::AdminArgs),
    /// SIGKILL the server again and again under write load, resend what was
    /// not acknowledged, then check every acknowledged entry.
    CrashTest(cmd::crash::CrashArgs),
    /// Every hostile peer at once (chunk floods, oversized frames, garbage,
    /// ping floods, never-readers, slowloris, connect/close loops, idle
    /// sockets) while a normal client measures its latency; RSS bound.
    Hostile(cmd::hostile::HostileArgs),
    /// Save a tenant of a data directory as an export file.
    Export(cmd::offline::ExportArgs),
    /// Load an export file (or a database of Effect's SqlEventLogServer) as
    /// a tenant of a stopped server's data directory.
    Import(cmd::offline::ImportArgs),
    /// Copy every tenant of a data directory, consistently, while the
    /// server runs.
    Backup(cmd::offline::BackupArgs),
    #[command(flatten)]
    Client(cmd::client::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Client(command) => cmd::client::run(command),
        Command::Bench(args) => cmd::bench::run(args),
        Command::CrashTest(args) => cmd::crash::run(args),
        Command::Hostile(args) => cmd::hostile::run(args),
        Command::Export(args) => cmd::offline::export(args),
        Command::Import(args) => cmd::offline::import(args),
        Command::Backup(args) => cmd::offline::backup(args),
        Command::Token(command) => cmd::token::run(command),
        Command::Admin(args) => cmd::admin::run(args),
    }
}
