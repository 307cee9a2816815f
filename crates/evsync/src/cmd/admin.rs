//! `evsync admin`: the admin API (`/admin/…`) from the command line,
//! against a running server or Worker. The admin token comes from
//! SYNC_ADMIN_TOKEN (or `--token`) and is sent only as a Bearer header.

use super::progress;
use clap::{Args, Subcommand};
use evsync_core::access::is_valid_tenant;
use evsync_core::export::ExportReader;
use std::path::{Path, PathBuf};
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
    /// List every tenant with data and its figures, as JSON.
    Tenants,
    /// Print one tenant's figures (connections, logs, entries, bytes) as JSON.
    #[command(alias = "stats")]
    Show {
        /// The tenant.
        tenant: String,
    },
    /// Delete a tenant's data for good (its sockets are closed first); the
    /// next connection starts a new, empty tenant with a new remoteId.
    Delete {
        /// The tenant.
        tenant: String,
    },
    /// Save a tenant as an export file (remoteId and sequences kept).
    Export {
        /// The tenant.
        tenant: String,
        /// Where to write the export.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load an export file as a tenant (refused if it has data, unless
    /// --replace). A damaged or truncated file changes nothing.
    Import {
        /// The tenant.
        tenant: String,
        /// The export to load.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// Replace the tenant's data if it has some.
        #[arg(long)]
        replace: bool,
    },
    /// Close every open socket of a tenant and refuse its signed tokens
    /// minted before now (static tokens keep working).
    Revoke {
        /// The tenant.
        tenant: String,
    },
}

/// Runs `evsync admin …`.
pub fn run(args: AdminArgs) -> ExitCode {
    // Without a token only a server on loopback without SYNC_ADMIN_TOKEN
    // answers (it then says 403 or 401, which is printed).
    let token = args.token.as_deref().filter(|t| !t.is_empty());
    let root = format!("{}/admin/tenants", args.url.trim_end_matches('/'));
    let tenant = match &args.command {
        AdminCommand::Tenants => None,
        AdminCommand::Show { tenant }
        | AdminCommand::Delete { tenant }
        | AdminCommand::Export { tenant, .. }
        | AdminCommand::Import { tenant, .. }
        | AdminCommand::Revoke { tenant } => Some(tenant.as_str()),
    };
    if let Some(tenant) = tenant
        && !is_valid_tenant(tenant)
    {
        eprintln!("error: {tenant:?} is not a valid tenant name");
        return ExitCode::from(EXIT_USAGE);
    }
    let base = format!("{root}/{}", tenant.unwrap_or_default());
    let client = Client::new(token);
    let outcome = match &args.command {
        AdminCommand::Tenants => client.json("GET", &root).map(|a| println!("{a:#}")),
        AdminCommand::Show { .. } => client.json("GET", &base).map(|a| println!("{a:#}")),
        AdminCommand::Delete { tenant } => client.json("DELETE", &base).map(|_| {
            println!("deleted: {tenant} (its next connection starts a new tenant)");
        }),
        AdminCommand::Export { tenant, out } => client.export(&format!("{base}/export"), tenant, out),
        AdminCommand::Import {
            tenant,
            input,
            replace,
        } => {
            let url = format!("{base}/import{}", if *replace { "?replace=true" } else { "" });
            client.import(&url, tenant, input)
        }
        AdminCommand::Revoke { tenant } => client.json("POST", &format!("{base}/revoke")).map(|answer| {
            let closed = answer["closedConnections"].as_u64().unwrap_or(0);
            let not_before = answer["tokensNotBefore"].as_u64().unwrap_or(0);
            println!(
                "revoked: signed tokens of {tenant} minted before {not_before} (Unix ms) are refused; {closed} connection(s) closed"
            );
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The admin API over HTTP, with the admin token as a Bearer header.
struct Client {
    agent: ureq::Agent,
    bearer: Option<String>,
}

impl Client {
    fn new(token: Option<&str>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        Client {
            agent,
            bearer: token.map(|t| format!("Bearer {t}")),
        }
    }

    fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<ureq::SendBody<'_>>,
    ) -> Result<ureq::http::Response<ureq::Body>, String> {
        let mut request = ureq::http::Request::builder().method(method).uri(url);
        if let Some(bearer) = &self.bearer {
            request = request.header("Authorization", bearer);
        }
        let sent = match body {
            Some(body) => {
                let request = request
                    .header("Content-Type", "application/x-ndjson")
                    .body(body)
                    .map_err(|e| format!("{url}: {e}"))?;
                self.agent.run(request)
            }
            None => {
                let request = request.body(()).map_err(|e| format!("{url}: {e}"))?;
                self.agent.run(request)
            }
        };
        let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            return Err(format!("{url}: {status}: {}", body.trim()));
        }
        Ok(response)
    }

    /// Sends `method url`; the JSON answer, or why not.
    fn json(&self, method: &str, url: &str) -> Result<serde_json::Value, String> {
        let mut response = self.call(method, url, None)?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: reading the answer: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("{url}: not a JSON answer ({e})"))
    }

    /// Streams the export to `out` (written beside it, then renamed, so a
    /// failed download never leaves a file that looks whole).
    fn export(&self, url: &str, tenant: &str, out: &Path) -> Result<(), String> {
        let mut response = self.call("GET", url, None)?;
        let partial = partial_path(out);
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let bar = progress::bytes_bar(&format!("exporting {tenant}"), None);
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        let copied = progress::copy_with(&bar, &mut body, &mut file)
            .and_then(|n| file.sync_all().map(|()| n));
        bar.finish_and_clear();
        let bytes = match copied {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(format!("{url}: the export broke off: {e}"));
            }
        };
        // Checked before it takes the name: a stream that ended early
        // (the server failed midway) has no trailer.
        if let Err(e) = check_export(&partial) {
            let _ = std::fs::remove_file(&partial);
            return Err(format!("{url}: the export is incomplete: {e}"));
        }
        std::fs::rename(&partial, out)
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        println!("exported: {tenant} to {} ({bytes} bytes)", out.display());
        Ok(())
    }

    fn import(&self, url: &str, tenant: &str, input: &Path) -> Result<(), String> {
        let file = std::fs::File::open(input)
            .map_err(|e| format!("cannot open {}: {e}", input.display()))?;
        let total = file.metadata().map(|m| m.len()).ok();
        let bar = progress::bytes_bar(&format!("importing {tenant}"), total);
        let mut reader = bar.wrap_read(file);
        let sent = self.call("POST", url, Some(ureq::SendBody::from_reader(&mut reader)));
        bar.finish_and_clear();
        let mut response = sent?;
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let answer: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{url}: not a JSON answer ({e})"))?;
        let count = |key: &str| answer[key].as_u64().unwrap_or(0);
        println!(
            "imported: {tenant} (remoteId {}, {} logs, {} entries{}{})",
            answer["remoteId"].as_str().unwrap_or("?"),
            answer["logs"],
            answer["entries"],
            v4_counts(count("stores"), count("batches"), count("bindings")),
            if answer["replaced"].as_bool() == Some(true) {
                ", replaced its old data"
            } else {
                ""
            }
        );
        Ok(())
    }
}

/// The Effect v4 part of an export's or import's counts, for the lines
/// the commands print: nothing for a tenant without v4 data (the line
/// reads as it did before v4), else `, N v4 stores, M batches, K bindings`.
pub fn v4_counts(stores: u64, batches: u64, bindings: u64) -> String {
    if stores == 0 && batches == 0 && bindings == 0 {
        return String::new();
    }
    format!(", {stores} v4 stores, {batches} batches, {bindings} bindings")
}

/// `out` with `.partial` appended: where a download goes until it is whole.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Reads an export file through and checks it whole (trailer, checksum).
pub fn check_export(path: &Path) -> Result<(), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = ExportReader::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        reader.push(&buf[..n]);
        while reader.next_item().map_err(|e| e.to_string())?.is_some() {}
    }
    reader.finish().map(|_| ()).map_err(|e| e.to_string())
}
