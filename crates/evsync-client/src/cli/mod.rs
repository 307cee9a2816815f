//! The client subcommands of the `evsync` binary: `identity new`, `tail`,
//! `write` and `smoke`. They live here, beside the client they drive, and
//! the binary only registers [`ClientCommand`] and calls [`run`].
//!
//! Exit codes: 0 success, 1 failure (the reason on stderr, one line),
//! 2 unusable arguments (clap's usage errors too).

mod args;
mod format;
mod identity;
mod replica;
mod smoke;
mod tail;
mod write;

pub use args::{Protocol, ProtocolArgs, RemoteArgs, TokenVia, parse_duration};
pub use identity::IdentityCommand;
pub use smoke::{SmokeArgs, SmokeReport, smoke, smoke_with};
pub use tail::TailArgs;
pub use write::WriteArgs;

use std::process::ExitCode;

/// Exit code of a failed command.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of arguments that cannot be used.
pub const EXIT_USAGE: u8 = 2;

/// The client subcommands, to `#[command(flatten)]` into the binary's
/// subcommand enum.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Make or inspect Effect EventLog identities.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Follow a log: decrypt and print each entry as it arrives.
    Tail(TailArgs),
    /// Append one entry to a log and print its sequence.
    Write(WriteArgs),
    /// Check a deployment end to end: two replicas, one write, one delivery.
    Smoke(SmokeArgs),
}

/// Runs a client subcommand to completion on its own tokio runtime.
/// Logging is the caller's (the binary installs its subscriber first).
pub fn run(command: ClientCommand) -> ExitCode {
    if let ClientCommand::Identity(cmd) = command {
        return identity::run(cmd);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(
                format!("cannot start the async runtime: {err}"),
                EXIT_FAILURE,
            );
        }
    };
    runtime.block_on(async move {
        match command {
            ClientCommand::Identity(_) => unreachable!("handled above"),
            ClientCommand::Tail(args) => tail::run(args).await,
            ClientCommand::Write(args) => write::run(args).await,
            ClientCommand::Smoke(args) => smoke::run(args).await,
        }
    })
}

/// Prints `error: <reason>` (one line) and returns `code`.
pub(crate) fn fail(reason: impl std::fmt::Display, code: u8) -> ExitCode {
    let reason = reason.to_string().replace(['\n', '\r'], " ");
    eprintln!("error: {reason}");
    ExitCode::from(code)
}
