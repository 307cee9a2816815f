//! `evsync serve`: the sync server.
//!
//! Settings come from the original worker's environment variables, with
//! the same names and meanings, each also settable by a flag (a flag wins).
//! A setting that cannot be used stops startup with one line naming it and
//! a non-zero exit: the server never starts more open than configured.

use crate::logging::{self, LogFormat};
use clap::Args;
use evsync_core::log::WriteRate;
use evsync_core::settings::{TENANT_WRITE_BURST_VAR, parse_write_rate};
use evsync_server::{
    ConfigError, Limits, PgConfig, PostgresSettings, Server, ServerConfig, StartError,
    StorageConfig, admin_token, auth_config, parse_bool, parse_idle_socket_timeout, parse_limit,
    token_secret,
};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Exit code for a configuration that cannot be used.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while serving.
const EXIT_RUNTIME: u8 = 1;

#[derive(Args)]
#[command(
    args_override_self = true,
    about = "Run the sync server",
    long_about = "Run the sync server: Effect EventLog replicas connect with \
        EventLogRemote.layerWebSocket(\"ws://HOST:PORT/event-log/<tenant>\"). \
        Each tenant has its own logs and remoteId, stored in its own SQLite file \
        under <DATA>/tenants/. Stops gracefully on SIGINT/SIGTERM (writes already \
        received are committed and acknowledged, sockets closed with 1001). \
        Logs go to stderr; RUST_LOG filters them (default: info)."
)]
// No `Debug`: it holds the tokens.
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT. Port 0 picks a free port; the
    /// address actually bound is printed in the startup line.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    listen: String,

    /// Directory for the data: one SQLite file per tenant under
    /// <DATA>/tenants/, and a lock file so two servers never share it.
    /// Unused with --storage memory.
    #[arg(long, value_name = "DIR", default_value = "./evsync-data")]
    data: PathBuf,

    /// Storage: `sqlite` (durable, one file per tenant), `postgres` (one
    /// database shared by several nodes; needs --postgres-url) or `memory`
    /// (lost at exit; for tests). The original worker's `do` and `d1` mean
    /// `sqlite`.
    #[arg(
        long,
        env = "SYNC_STORAGE",
        value_name = "KIND",
        default_value = "sqlite"
    )]
    storage: String,

    /// PostgreSQL connection URL for --storage postgres, e.g.
    /// postgres://evsync:PASSWORD@db:5432/evsync. Holds a password: prefer
    /// the environment variable; it is never logged (logs show the URL
    /// without its password).
    #[arg(
        long,
        env = "SYNC_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    postgres_url: Option<String>,

    /// Pooled PostgreSQL connections of this node (default 16).
    #[arg(long, env = "SYNC_POSTGRES_POOL_SIZE", value_name = "N")]
    postgres_pool_size: Option<String>,

    /// Milliseconds between two reads of the heads of the logs this node
    /// serves, whatever notifications said (default 2000): a notification
    /// lost with the listening connection delays a delivery by at most this.
    #[arg(long, env = "SYNC_POSTGRES_RECHECK_MS", value_name = "MS")]
    postgres_recheck_ms: Option<String>,

    /// Token every tenant must present unless SYNC_AUTH_TOKENS has one for
    /// it. Unset or empty: tenants without a token are open. Prefer the
    /// environment variable: flags are visible to other local users.
    #[arg(
        long,
        env = "SYNC_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    auth_token: Option<String>,

    /// Per-tenant tokens as a JSON object, e.g. {"tenant-a":"token-a","*":"default"};
    /// `*` applies to tenants not listed. Precedence: SYNC_AUTH_TOKENS[tenant],
    /// then SYNC_AUTH_TOKENS["*"], then SYNC_AUTH_TOKEN. Anything but an
    /// object of non-empty strings keyed by tenant names or `*` is refused.
    #[arg(
        long,
        env = "SYNC_AUTH_TOKENS",
        value_name = "JSON",
        hide_env_values = true
    )]
    auth_tokens: Option<String>,

    /// Key for signed tenant tokens (`evsync token mint`; HMAC-SHA256, at
    /// least 32 bytes). Set, it also closes open tenants: each then needs a
    /// signed token for it, or its static token. Read-only, expiring and
    /// publicKey-restricted tokens are signed tokens (docs/tokens.md).
    #[arg(
        long,
        env = "SYNC_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    token_secret: Option<String>,

    /// Token of the admin API (`/admin/…`, e.g. `evsync admin revoke`; at
    /// least 16 bytes). Unset: the admin API answers 403.
    #[arg(
        long,
        env = "SYNC_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,

    /// Also accept the token as ?token=<token> in the URL (`true`/`1`; off by
    /// default, since URLs end up in logs). Bearer headers and the
    /// `sync-auth.<token>` subprotocol are always accepted.
    #[arg(
        long,
        env = "SYNC_ALLOW_QUERY_TOKEN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    allow_query_token: Option<String>,

    /// Log every request (tag, ids, entry counts, peers) and every
    /// connection open/close (`true`/`1`).
    #[arg(
        long,
        env = "SYNC_DEBUG",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    debug: Option<String>,

    /// Close a socket with 1000 after SECS without a frame from it (default:
    /// never; `0` or empty: never). For clients with ping enabled, whose
    /// abandoned sockets go quiet (the agent SDK leaks one per sync tick);
    /// leave it off for `disablePing: true` clients: Effect's client never
    /// reconnects after a close.
    #[arg(long, env = "SYNC_IDLE_SOCKET_TIMEOUT", value_name = "SECS")]
    idle_socket_timeout: Option<String>,

    /// Log lines as `text` (human-readable, the default) or `json` (one
    /// object per line: timestamp, level, target, message and fields).
    #[arg(long, env = "SYNC_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,

    /// Log lines held while stderr does not take them (a stuck pipe, a slow
    /// log driver); past this, new lines are dropped and counted in
    /// `evsync_log_lines_dropped_total` (default 16384).
    #[arg(long, env = "SYNC_LOG_BUFFER_LINES", value_name = "N")]
    log_buffer_lines: Option<String>,

    /// Serve `/metrics` (Prometheus) only on this address, e.g.
    /// 127.0.0.1:9090, instead of on the main listener.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,

    /// Also export metrics labelled by tenant and show the busiest tenants
    /// on the dashboard (`true`/`1`; off by default: tenant names can be
    /// many, and sensitive).
    #[arg(
        long,
        env = "SYNC_METRICS_PER_TENANT",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    metrics_per_tenant: Option<String>,

    /// Seconds `/readyz` answers 503 ("draining") after SIGTERM/SIGINT
    /// before the graceful shutdown starts, so a load balancer stops
    /// sending new replicas first (default 0).
    #[arg(
        long,
        env = "SYNC_DRAIN_SECONDS",
        value_name = "SECS",
        default_value_t = 0
    )]
    drain_secs: u64,

    /// Open sync sockets in total; more are refused with 503 and
    /// Retry-After (default 100000).
    #[arg(long, env = "SYNC_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,

    /// Open sync sockets of one tenant; more are refused with 503 and
    /// Retry-After (default 10000).
    #[arg(long, env = "SYNC_MAX_CONNECTIONS_PER_TENANT", value_name = "N")]
    max_connections_per_tenant: Option<String>,

    /// Tenants loaded at once (idle ones unload); a connection that would
    /// load one more is refused with 503 and Retry-After (default 100000).
    #[arg(long, env = "SYNC_MAX_TENANTS", value_name = "N")]
    max_tenants: Option<String>,

    /// Bytes per second one tenant may write on average (entry ids, ivs and
    /// ciphertexts); appends over it wait (slower Acks, nothing refused),
    /// and while the tenant is behind, new connections get 429 with
    /// Retry-After. Default: no limit.
    #[arg(long, env = "SYNC_TENANT_WRITE_RATE", value_name = "BYTES_PER_SEC")]
    tenant_write_rate: Option<String>,

    /// Bytes one tenant may write at once before the rate applies
    /// (default: ten seconds' worth of SYNC_TENANT_WRITE_RATE).
    #[arg(long, env = "SYNC_TENANT_WRITE_BURST", value_name = "BYTES")]
    tenant_write_burst: Option<String>,

    /// Seconds a connection may take to send its HTTP request headers (the
    /// WebSocket handshake); slower ones are closed and logged (default 10).
    #[arg(long, env = "SYNC_HANDSHAKE_TIMEOUT", value_name = "SECS")]
    handshake_timeout: Option<String>,

    /// Nice value (0-19) of the accept thread, which accepts connections
    /// and waits for their first request head, apart from the workers that
    /// serve tenants (default 0, the workers' priority).
    #[arg(
        long,
        env = "SYNC_ACCEPT_NICE",
        value_name = "NICE",
        default_value_t = evsync_server::config::DEFAULT_ACCEPT_NICE,
        value_parser = clap::value_parser!(i32).range(0..=19)
    )]
    accept_nice: i32,

    /// Milliseconds a tenant stays loaded after its last connection closed
    /// and its storage work finished; then its file is closed.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    idle_unload_ms: u64,

    /// Seconds a graceful shutdown may take before the server exits anyway.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_timeout_secs: u64,
}

/// SYNC_POSTGRES_*: `None` without a URL. The URL is checked here, so a
/// typo is a one-line error at start (never showing the password).
fn postgres_settings(args: &ServeArgs) -> Result<Option<PostgresSettings>, ConfigError> {
    let Some(url) = args.postgres_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let pool_size = parse_limit(
        "SYNC_POSTGRES_POOL_SIZE (--postgres-pool-size)",
        args.postgres_pool_size.as_deref().unwrap_or(""),
        PostgresSettings::DEFAULT_POOL_SIZE,
    )?;
    let recheck_ms = parse_limit(
        "SYNC_POSTGRES_RECHECK_MS (--postgres-recheck-ms)",
        args.postgres_recheck_ms.as_deref().unwrap_or(""),
        PostgresSettings::DEFAULT_RECHECK.as_millis() as usize,
    )?;
    let config = PgConfig::parse(url, pool_size)
        .map_err(|problem| ConfigError::new("SYNC_POSTGRES_URL (--postgres-url)", problem))?;
    Ok(Some(PostgresSettings {
        config,
        recheck: Duration::from_millis(recheck_ms as u64),
    }))
}

/// Turns the arguments into a server config, or the one-line error.
fn config(args: &ServeArgs) -> Result<ServerConfig, ConfigError> {
    let listen = parse_listen(&args.listen)?;
    let storage = StorageConfig::parse(
        "SYNC_STORAGE (--storage)",
        &args.storage,
        args.data.clone(),
        postgres_settings(args)?,
    )?;
    let allow_query = parse_bool(
        "SYNC_ALLOW_QUERY_TOKEN (--allow-query-token)",
        args.allow_query_token.as_deref().unwrap_or(""),
    )?;
    let debug = parse_bool("SYNC_DEBUG (--debug)", args.debug.as_deref().unwrap_or(""))?;
    let idle_socket_timeout = parse_idle_socket_timeout(
        "SYNC_IDLE_SOCKET_TIMEOUT (--idle-socket-timeout)",
        args.idle_socket_timeout.as_deref().unwrap_or(""),
    )?;
    let auth = auth_config(
        args.auth_token.as_deref(),
        args.auth_tokens.as_deref(),
        allow_query,
        "SYNC_AUTH_TOKENS (--auth-tokens)",
    )?;
    let secret = token_secret(
        args.token_secret.as_deref(),
        "SYNC_TOKEN_SECRET (--token-secret)",
    )?;
    let admin = admin_token(
        args.admin_token.as_deref(),
        "SYNC_ADMIN_TOKEN (--admin-token)",
    )?;
    let metrics_listen = args
        .metrics_listen
        .as_deref()
        .map(|value| parse_addr("--metrics-listen", value))
        .transpose()?;
    let metrics_per_tenant = parse_bool(
        "SYNC_METRICS_PER_TENANT (--metrics-per-tenant)",
        args.metrics_per_tenant.as_deref().unwrap_or(""),
    )?;
    let mut config = ServerConfig::new(listen, storage);
    config.metrics_listen = metrics_listen;
    config.metrics_per_tenant = metrics_per_tenant;
    config.drain = Duration::from_secs(args.drain_secs);
    config.accept_nice = args.accept_nice;
    let defaults = Limits::default();
    config.limits = Limits {
        max_connections: parse_limit(
            "SYNC_MAX_CONNECTIONS (--max-connections)",
            args.max_connections.as_deref().unwrap_or(""),
            defaults.max_connections,
        )?,
        max_connections_per_tenant: parse_limit(
            "SYNC_MAX_CONNECTIONS_PER_TENANT (--max-connections-per-tenant)",
            args.max_connections_per_tenant.as_deref().unwrap_or(""),
            defaults.max_connections_per_tenant,
        )?,
        max_tenants: parse_limit(
            "SYNC_MAX_TENANTS (--max-tenants)",
            args.max_tenants.as_deref().unwrap_or(""),
            defaults.max_tenants,
        )?,
        handshake_timeout: Duration::from_secs(parse_limit(
            "SYNC_HANDSHAKE_TIMEOUT (--handshake-timeout)",
            args.handshake_timeout.as_deref().unwrap_or(""),
            defaults.handshake_timeout.as_secs() as usize,
        )? as u64),
        ..defaults
    };
    config.auth = auth.with_token_secret(secret);
    config.admin_token = admin;
    config.debug = debug;
    config.engine.idle_socket_timeout_ms = idle_socket_timeout;
    config.engine.log.write_rate = write_rate(
        args.tenant_write_rate.as_deref().unwrap_or(""),
        args.tenant_write_burst.as_deref().unwrap_or(""),
    )?;
    config.idle_grace = Duration::from_millis(args.idle_unload_ms);
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout_secs);
    Ok(config)
}

/// SYNC_TENANT_WRITE_RATE and SYNC_TENANT_WRITE_BURST, parsed as the
/// Worker parses them (`evsync_core::settings::parse_write_rate`); the
/// error names the flag too.
fn write_rate(rate: &str, burst: &str) -> Result<Option<WriteRate>, ConfigError> {
    parse_write_rate(rate, burst).map_err(|err| {
        let setting = match err.var {
            TENANT_WRITE_BURST_VAR => "SYNC_TENANT_WRITE_BURST (--tenant-write-burst)",
            _ => "SYNC_TENANT_WRITE_RATE (--tenant-write-rate)",
        };
        ConfigError::new(setting, err.problem)
    })
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    parse_addr("--listen", value)
}

fn parse_addr(setting: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    let err = |problem: String| ConfigError::new(setting, problem);
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .map_err(|e| err(format!("{value:?} is not HOST:PORT ({e})")))?
        .next()
        .ok_or_else(|| err(format!("{value:?} resolves to no address")))
}

/// Prints the one-line error and returns the exit code.
fn fail(error: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}

/// Runs `evsync serve`.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match config(&args) {
        Ok(config) => config,
        Err(err) => return fail(err, EXIT_CONFIG),
    };
    let log_format = match LogFormat::parse(args.log_format.as_deref().unwrap_or("")) {
        Ok(format) => format,
        Err(problem) => {
            return fail(
                ConfigError::new("SYNC_LOG_FORMAT (--log-format)", problem),
                EXIT_CONFIG,
            );
        }
    };
    let buffered_lines = match parse_limit(
        "SYNC_LOG_BUFFER_LINES (--log-buffer-lines)",
        args.log_buffer_lines.as_deref().unwrap_or(""),
        logging::SERVER_BUFFERED_LINES,
    ) {
        Ok(lines) => lines,
        Err(err) => return fail(err, EXIT_CONFIG),
    };
    // Held to the end of `run`: dropped after the runtime, it writes out
    // the shutdown's last lines.
    let (_log, dropped) = logging::init_server(log_format, buffered_lines);
    evsync_server::count_dropped_log_lines(move || dropped.dropped_lines() as u64);
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(
                format!("cannot start the async runtime: {err}"),
                EXIT_RUNTIME,
            );
        }
    };
    runtime.block_on(serve(config))
}

/// The server's runtime: tokio's multi-threaded one, without its LIFO slot
/// where the build allows (`.cargo/config.toml`).
///
/// Why: a task woken by another goes to its waker's LIFO slot, which no
/// other worker may steal, so it waits for whatever the waking worker runs
/// next, however long, while the other core idles (tokio#4941). With many
/// tenants on one runtime that is one tenant's work held behind
/// another's: under the hostile suite's attack (memory store, 2 cores,
/// four alternating pairs) the normal client's Ack p99 was 0.65-0.79 ms
/// without the slot against 0.93-1.30 ms with it (1.34-1.63x of its
/// baseline against 2.19-3.46x). The price: an idle server's p99 rises
/// from about 0.4 to 0.48 ms, and one connection that pipelines single
/// entries loses some throughput on two cores (BENCHMARKS.md).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

async fn serve(config: ServerConfig) -> ExitCode {
    let data = match &config.storage {
        StorageConfig::Sqlite { data_dir } => data_dir.display().to_string(),
        StorageConfig::Memory => "none (memory storage is lost at exit)".to_string(),
        StorageConfig::Postgres(pg) => pg.config.redacted(),
    };
    let storage = config.storage.kind();
    let auth = config.auth.summary();
    let debug_mode = if config.debug { "on" } else { "off" };
    let admin_api = if config.admin_token.is_some() {
        "on"
    } else {
        "off"
    };
    let idle_sockets = match config.engine.idle_socket_timeout_ms {
        Some(ms) => format!("{} s", ms / 1000),
        None => "off".to_string(),
    };
    // Handlers first: a signal sent as soon as the startup line is out must
    // already find them.
    let signals = match evsync_server::shutdown::Signals::install() {
        Ok(signals) => signals,
        Err(err) => {
            return fail(
                format!("cannot install signal handlers: {err}"),
                EXIT_RUNTIME,
            );
        }
    };
    let metrics_listen = config.metrics_listen;
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(err @ StartError::DataDir { .. }) => {
            return fail(ConfigError::new("--data", err.to_string()), EXIT_CONFIG);
        }
        Err(StartError::Database { problem }) => {
            let setting = "SYNC_POSTGRES_URL (--postgres-url)";
            return fail(ConfigError::new(setting, problem), EXIT_CONFIG);
        }
        Err(err @ StartError::Listen { addr, .. }) => {
            let setting = if Some(addr) == metrics_listen {
                "--metrics-listen"
            } else {
                "--listen"
            };
            return fail(ConfigError::new(setting, err.to_string()), EXIT_CONFIG);
        }
    };
    let addr = server.local_addr();
    let metrics = match server.metrics_addr() {
        Some(at) => format!("http://{at}/metrics"),
        None => format!("http://{addr}/metrics"),
    };
    // Each socket and each loaded tenant's SQLite file is a descriptor.
    let open_files = crate::limits::raise_open_files_limit()
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let startup = format!(
        "evsync {} listening on {addr} (ws://{addr}/event-log/<tenant>); data: {data}; storage: {storage}; auth: {auth}; admin API: {admin_api}; metrics: {metrics}; debug: {debug_mode}; idle socket timeout: {idle_sockets}; open files: {open_files}",
        env!("CARGO_PKG_VERSION"),
    );
    // Scripts and supervisors wait for this line: print it even when
    // RUST_LOG hides info logs.
    if tracing::enabled!(tracing::Level::INFO) {
        tracing::info!("{startup}");
    } else {
        eprintln!("{startup}");
    }
    match server.run(signals.recv()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format!("server failed: {err}"), EXIT_RUNTIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(argv: &[&str]) -> ServeArgs {
        let mut full = vec!["serve"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full).unwrap().args
    }

    #[test]
    fn defaults() {
        let args = parse(&[]);
        assert_eq!(args.listen, "127.0.0.1:8787");
        assert_eq!(args.data, PathBuf::from("./evsync-data"));
    }

    #[test]
    fn bare_boolean_flags_mean_true() {
        let c = config(&parse(&["--debug", "--allow-query-token"])).unwrap();
        assert!(c.debug);
        assert!(c.auth.allows_query_token());
        let c = config(&parse(&["--debug=0"])).unwrap();
        assert!(!c.debug);
    }

    #[test]
    fn bad_values_name_their_setting() {
        let err = config(&parse(&["--auth-tokens", "[]"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SYNC_AUTH_TOKENS (--auth-tokens): ")
        );
        let err = config(&parse(&["--storage", "s3"])).unwrap_err();
        assert!(err.to_string().starts_with("SYNC_STORAGE (--storage): "));
        let err = config(&parse(&["--listen", "nonsense"])).unwrap_err();
        assert!(err.to_string().starts_with("--listen: "));
        let err = config(&parse(&["--max-connections", "0"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SYNC_MAX_CONNECTIONS (--max-connections): ")
        );
        let c = config(&parse(&["--max-tenants", "7"])).unwrap();
        assert_eq!(c.limits.max_tenants, 7);
        let err = config(&parse(&["--idle-socket-timeout", "5m"])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SYNC_IDLE_SOCKET_TIMEOUT (--idle-socket-timeout): ")
        );
    }

    #[test]
    fn the_idle_socket_timeout_is_off_unless_given() {
        assert_eq!(
            config(&parse(&[])).unwrap().engine.idle_socket_timeout_ms,
            None
        );
        let c = config(&parse(&["--idle-socket-timeout", "90"])).unwrap();
        assert_eq!(c.engine.idle_socket_timeout_ms, Some(90_000));
    }
}
