//! `evsync identity new|public-key`.

use crate::identity::Identity;
use std::io::Read as _;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum IdentityCommand {
    /// Print a fresh identity string (Effect's `Identity.encodeString` form:
    /// a random UUID publicKey and 32 random key bytes). Anyone holding it
    /// can read and write the log: keep it secret.
    New,
    /// Print the publicKey (the log id the server sees) of an identity
    /// string read from stdin, or from EVSYNC_IDENTITY.
    PublicKey,
}

pub(crate) fn run(cmd: IdentityCommand) -> ExitCode {
    match cmd {
        IdentityCommand::New => {
            println!("{}", Identity::generate().to_effect_string());
            ExitCode::SUCCESS
        }
        IdentityCommand::PublicKey => {
            let text = match std::env::var("EVSYNC_IDENTITY") {
                Ok(s) if !s.trim().is_empty() => s,
                _ => {
                    let mut s = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                        return super::fail(format!("cannot read stdin: {e}"), super::EXIT_FAILURE);
                    }
                    s
                }
            };
            match Identity::from_effect_string(&text) {
                Ok(identity) => {
                    println!("{}", identity.public_key());
                    ExitCode::SUCCESS
                }
                Err(e) => super::fail(e, super::EXIT_USAGE),
            }
        }
    }
}
