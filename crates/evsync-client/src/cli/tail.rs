//! `evsync tail`: follow a log, decrypt and print each entry.

use super::args::{Protocol, ProtocolArgs, RemoteArgs, parse_identity};
use super::format::{self, Payloads};
use super::replica::Replica;
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
        entry twice. A status line goes to stderr once connected; entries go to stdout. With \
        --protocol v4 it follows one store (--store-id) of an Effect 4 log; payloads are \
        SchemaBinary frames, shown as JSON when they are a struct of scalar fields (named by \
        --payload-fields) and always as payloadHex in --json lines."
)]
pub struct TailArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,

    #[command(flatten)]
    pub protocol: ProtocolArgs,

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

    /// v4: the names of the payload struct's fields, e.g. `id,text,n`
    /// (a SchemaBinary frame carries only their hashes); others show as
    /// `#<field id>`.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub payload_fields: Vec<String>,
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
    let client = match Replica::connect(config, &args.protocol).await {
        Ok(client) => client,
        Err(e) => return super::fail(format!("cannot connect to {url}: {e}"), super::EXIT_FAILURE),
    };
    let mut entries = match client.subscribe() {
        Ok(entries) => entries,
        Err(e) => return super::fail(e, super::EXIT_FAILURE),
    };
    let remote = client.remote_id();
    let store = match args.protocol.protocol {
        Protocol::V3 => String::new(),
        Protocol::V4 => format!(" store {}", args.protocol.store_id),
    };
    eprintln!(
        "tail: following {}{store} on {url} (remote {remote})",
        args.identity.public_key()
    );
    let payloads = match args.protocol.protocol {
        Protocol::V3 => Payloads::MsgPack,
        Protocol::V4 => Payloads::SchemaBinary(args.payload_fields.clone()),
    };

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
            (Ok(entry), true) => format::entry_json(entry, &payloads).to_string(),
            (Ok(entry), false) => format::entry_text(entry, &payloads),
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
