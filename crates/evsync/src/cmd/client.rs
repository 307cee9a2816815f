//! The replica-side subcommands (`identity`, `tail`, `write`, `smoke`).
//! They are implemented in evsync-client beside the client they drive;
//! this module only wires them into the binary with its logging.

use std::process::ExitCode;

pub use evsync_client::cli::ClientCommand;

/// Runs a client subcommand.
pub fn run(command: ClientCommand) -> ExitCode {
    crate::logging::init();
    evsync_client::cli::run(command)
}
