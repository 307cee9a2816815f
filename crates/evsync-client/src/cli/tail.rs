//! `evsync tail`: follow a log, decrypt and print each entry.

use super::args::{RemoteArgs, parse_identity};
use super::format;
use crate::client::Client;
use crate::identity::Identity;
use crate::state::StateStore;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
#[command(
    long_about = "Follow a log: connect as a replica of IDENTITY, decrypt each entry and print it \
        (sequence, creation time from the UUIDv7 entry id, event, primaryKey, and the payload as \
        JSON when it decodes as MessagePack, else hex). Reconnects by itself and never prints an \
        entry twice. A status line goes to stderr once connected; entries go to stdout."
)]
pub struct TailArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,

    /// The identity string (Effect's `Identity.encodeString` form). Prefer
    /// the environment variable: flags are visible to other local users.
    #[arg(
        long,
        env = "EVSYNC_IDENTITY",
        value_name = "STRING",
        value_parser = parse_identity,
        hide_env_values = true
    )]
    pub identity: Identity,

    /// First sequence to print (default: 1, or where --state stopped).
    #[arg(long, value_name = "SEQUENCE")]
    pub from: Option<u64>,

    /// Print one JSON object per entry (NDJSON) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Keep the position in this JSON file, so the next run resumes there.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Exit after printing this many entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

pub(crate) async fn run(args: TailArgs) -> ExitCode {
    let mut config = match args.remote.config(args.identity.clone()) {
        Ok(config) => config,
        Err(e) => return super::fail(e, super::EXIT_USAGE),
    };
    if let Some(path) = &args.state {
        config = config.with_state(StateStore::File(path.clone()));
    }
    if let Some(from) = args.from {
        config = config.with_start_sequence(from);
    }
    let url = config.url.clone();
    let client = match Client::connect(config).await {
        Ok(client) => client,
        Err(e) => return super::fail(format!("cannot connect to {url}: {e}"), super::EXIT_FAILURE),
    };
    let mut entries = match client.subscribe() {
        Ok(entries) => entries,
        Err(e) => return super::fail(e, super::EXIT_FAILURE),
    };
    let remote = client
        .status()
        .borrow()
        .remote_id
        .map(|r| r.to_uuid_string())
        .unwrap_or_default();
    eprintln!(
        "tail: following {} on {url} (remote {remote})",
        args.identity.public_key()
    );

    // Installed once, before the loop: a signal that arrives while an entry
    // is being printed is kept for the next wait, not lost.
    let mut stop = match Interrupt::install() {
        Ok(stop) => stop,
        Err(e) => {
            return super::fail(
                format!("cannot install signal handlers: {e}"),
                super::EXIT_FAILURE,
            );
        }
    };
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    let code = loop {
        if args.limit.is_some_and(|limit| printed >= limit) {
            break ExitCode::SUCCESS;
        }
        let item = tokio::select! {
            item = entries.recv() => item,
            _ = stop.recv() => break ExitCode::SUCCESS,
        };
        let Some(item) = item else {
            break super::fail("the client stopped", super::EXIT_FAILURE);
        };
        let line = match (&item, args.json) {
            (Ok(entry), true) => format::entry_json(entry).to_string(),
            (Ok(entry), false) => format::entry_text(entry),
            (Err(e), true) => format::error_json(e).to_string(),
            (Err(e), false) => format!("{}\t! {e}", e.sequence()),
        };
        if writeln!(stdout.lock(), "{line}").is_err() {
            // The reader went away (e.g. `| head`): nothing left to do.
            break ExitCode::SUCCESS;
        }
        printed += 1;
    };
    client.close().await;
    code
}

/// SIGINT or SIGTERM (Ctrl-C elsewhere): the end of a tail.
struct Interrupt {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Interrupt {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupt {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Interrupt {})
    }

    #[cfg(unix)]
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
