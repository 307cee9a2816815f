//! `evsync admin`: the admin API (`/admin/…`) from the command line,
//! against a running server or Worker. The admin token comes from
//! SYNC_ADMIN_TOKEN (or `--token`) and is sent only as a Bearer header.

use clap::{Args, Subcommand};
use evsync_core::access::is_valid_tenant;
use std::process::ExitCode;

/// Exit code of a failed request.
const EXIT_FAILURE: u8 = 1;
/// Exit code of arguments that cannot be used.
const EXIT_USAGE: u8 = 2;

// No `Debug`: it holds the admin token.
#[derive(Args)]
pub struct AdminArgs {
    /// The server or Worker, e.g. http://127.0.0.1:8787 or
    /// https://sync.example.workers.dev.
    #[arg(
        long,
        env = "SYNC_ADMIN_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8787"
    )]
    url: String,
    /// The admin token (the server's SYNC_ADMIN_TOKEN). Prefer the
    /// environment variable: flags are visible to other local users.
    #[arg(
        long,
        env = "SYNC_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Close every open socket of a tenant and refuse its signed tokens
    /// minted before now (static tokens keep working).
    Revoke {
        /// The tenant.
        tenant: String,
    },
    /// Print a tenant's figures (connections, logs, entries, bytes) as JSON.
    Stats {
        /// The tenant.
        tenant: String,
    },
}

/// Runs `evsync admin …`.
pub fn run(args: AdminArgs) -> ExitCode {
    // Without a token only a server on loopback without SYNC_ADMIN_TOKEN
    // answers (it then says 403 or 401, which is printed).
    let token = args.token.as_deref().filter(|t| !t.is_empty());
    let (AdminCommand::Revoke { tenant } | AdminCommand::Stats { tenant }) = &args.command;
    if !is_valid_tenant(tenant) {
        eprintln!("error: {tenant:?} is not a valid tenant name");
        return ExitCode::from(EXIT_USAGE);
    }
    let base = format!("{}/admin/tenants/{tenant}", args.url.trim_end_matches('/'));
    if let AdminCommand::Stats { .. } = &args.command {
        return match request("GET", &format!("{base}/stats"), token) {
            Ok(answer) => {
                println!("{answer:#}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    let url = format!("{base}/revoke");
    match request("POST", &url, token) {
        Ok(answer) => {
            let closed = answer["closedConnections"].as_u64().unwrap_or(0);
            let not_before = answer["tokensNotBefore"].as_u64().unwrap_or(0);
            println!(
                "revoked: signed tokens of {tenant} minted before {not_before} (Unix ms) are refused; {closed} connection(s) closed"
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Sends `method url` with the admin token; the JSON answer, or why not.
fn request(method: &str, url: &str, token: Option<&str>) -> Result<serde_json::Value, String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let sent = if method == "GET" {
        let mut req = agent.get(url);
        if let Some(bearer) = &bearer {
            req = req.header("Authorization", bearer);
        }
        req.call()
    } else {
        let mut req = agent.post(url);
        if let Some(bearer) = &bearer {
            req = req.header("Authorization", bearer);
        }
        req.send_empty()
    };
    let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: {status}: {}", body.trim()));
    }
    serde_json::from_str(&body).map_err(|e| format!("{url}: not a JSON answer ({e})"))
}
