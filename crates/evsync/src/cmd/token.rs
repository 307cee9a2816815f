//! `evsync token mint`: prints a signed tenant token (docs/tokens.md), for
//! an operator or a backend script that would rather not implement the
//! format. The key is SYNC_TOKEN_SECRET, as the server's; the token goes to
//! stdout and nothing else does, so `$(evsync token mint …)` captures it.

use clap::{Args, Subcommand};
use evsync_client::cli::parse_duration;
use evsync_core::access::is_valid_tenant;
use evsync_core::access::signed_token::{TokenClaims, mint};
use evsync_server::token_secret;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit code of arguments that cannot be used.
const EXIT_USAGE: u8 = 2;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a signed token for one tenant.
    Mint(MintArgs),
}

// No `Debug`: it holds the secret.
#[derive(Args)]
pub struct MintArgs {
    /// The tenant the token opens.
    #[arg(long)]
    tenant: String,
    /// Reads only: the server closes the socket (1008) on any non-empty
    /// write.
    #[arg(long)]
    read_only: bool,
    /// Lifetime, e.g. `15m`, `1h`, `7d`; open sockets are closed when it
    /// ends. Default: no expiry (until revoked).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<Duration>,
    /// Restrict the token to one publicKey (identity): it may read and
    /// write only that log.
    #[arg(long, value_name = "PK")]
    public_key: Option<String>,
    /// The signing key, as the server's (at least 32 bytes). Prefer the
    /// environment variable: flags are visible to other local users.
    #[arg(
        long,
        env = "SYNC_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
}

/// Runs `evsync token …`.
pub fn run(command: TokenCommand) -> ExitCode {
    let TokenCommand::Mint(args) = command;
    match mint_token(&args, SystemTime::now()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn mint_token(args: &MintArgs, now: SystemTime) -> Result<String, String> {
    let secret = token_secret(args.secret.as_deref(), "SYNC_TOKEN_SECRET (--secret)")
        .map_err(|e| e.to_string())?
        .ok_or("SYNC_TOKEN_SECRET (--secret): not set; the server's signing key is needed")?;
    if !is_valid_tenant(&args.tenant) {
        return Err(format!(
            "--tenant: {:?} is not a valid tenant name",
            args.tenant
        ));
    }
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970")?
        .as_millis() as u64;
    let expires_at_ms = args
        .expires
        .map(|lifetime| now_ms.saturating_add(lifetime.as_millis() as u64));
    let claims = TokenClaims {
        tenant: args.tenant.clone(),
        read_only: args.read_only,
        issued_at_ms: now_ms,
        expires_at_ms,
        public_key: args.public_key.clone(),
    };
    Ok(mint(&secret, &claims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use evsync_core::access::signed_token::{TokenSecret, verify};

    #[derive(Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: TokenCommand,
    }

    fn args(argv: &[&str]) -> MintArgs {
        let mut full = vec!["evsync", "mint"];
        full.extend_from_slice(argv);
        let TokenCommand::Mint(args) = Wrapper::try_parse_from(full).unwrap().command;
        args
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn mints_what_the_server_verifies() {
        let at = UNIX_EPOCH + Duration::from_millis(1_000);
        let a = args(&[
            "--tenant",
            "acme",
            "--read-only",
            "--expires",
            "1h",
            "--public-key",
            "pk",
            "--secret",
            SECRET,
        ]);
        let token = mint_token(&a, at).unwrap();
        let claims = verify(&TokenSecret::new(SECRET).unwrap(), &token).unwrap();
        assert_eq!(
            claims,
            TokenClaims {
                tenant: "acme".into(),
                read_only: true,
                issued_at_ms: 1_000,
                expires_at_ms: Some(1_000 + 3_600_000),
                public_key: Some("pk".into()),
            }
        );
    }

    #[test]
    fn refuses_a_missing_or_short_secret_and_bad_tenants() {
        let at = SystemTime::now();
        let err = mint_token(&args(&["--tenant", "a", "--secret", "short"]), at).unwrap_err();
        assert!(err.contains("at least 32 bytes") && !err.contains("short\""));
        let err = mint_token(&args(&["--tenant", ".bad", "--secret", SECRET]), at).unwrap_err();
        assert!(err.starts_with("--tenant"));
    }
}
