//! What a server is told at start, and the one-line errors for bad values.

use evsync_core::access::AdminToken;
pub use evsync_core::access::AuthConfig;
use evsync_core::access::signed_token::TokenSecret;
use evsync_core::proto::v3::EngineConfig;
use evsync_storage_postgres::PgConfig;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A setting that cannot be used, named so the operator knows what to fix.
/// Displays as ONE line: `SETTING: problem`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable or flag, e.g. `SYNC_AUTH_TOKENS`.
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Newlines from nested errors would break the one-line promise.
        let problem = self.problem.replace(['\n', '\r'], " ");
        write!(f, "{}: {}", self.setting, problem)
    }
}

impl std::error::Error for ConfigError {}

/// Where tenants keep their logs.
#[derive(Clone, Debug)]
pub enum StorageConfig {
    /// One SQLite file per tenant under `<data_dir>/tenants/`.
    Sqlite { data_dir: PathBuf },
    /// In process memory: lost at exit. For tests and trials.
    Memory,
    /// One PostgreSQL database shared by every node (`evsync serve` on
    /// several machines): any node serves any tenant.
    Postgres(Box<PostgresSettings>),
}

/// `--storage postgres`: where the database is and how a node follows the
/// other nodes' commits.
#[derive(Clone, Debug)]
pub struct PostgresSettings {
    /// SYNC_POSTGRES_URL and SYNC_POSTGRES_POOL_SIZE, parsed once at start.
    /// It holds the password; its `Debug` and `redacted` never show it.
    pub config: PgConfig,
    /// SYNC_POSTGRES_RECHECK_MS: how often a node reads the heads of the
    /// logs it serves, whatever notifications said, so that a lost
    /// notification delays a delivery by at most this.
    pub recheck: Duration,
}

impl PostgresSettings {
    /// Default pool size: enough for a node's writer and reader lanes of
    /// many tenants at once without exhausting the database's default 100
    /// connections with a few nodes.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// Default re-check period.
    pub const DEFAULT_RECHECK: Duration = Duration::from_secs(2);
}

impl StorageConfig {
    /// Parses `SYNC_STORAGE`. `sqlite` (the default, also when empty) and
    /// `memory` are ours; the original worker's `do` (Durable Object SQLite)
    /// and `d1` are accepted as `sqlite`, so that a worker's config runs
    /// unchanged — each tenant still gets its own file, unlike D1 mode.
    /// `postgres` takes `postgres`, the settings read from SYNC_POSTGRES_*
    /// (`None` when SYNC_POSTGRES_URL is not set).
    pub fn parse(
        setting: &str,
        value: &str,
        data_dir: PathBuf,
        postgres: Option<PostgresSettings>,
    ) -> Result<Self, ConfigError> {
        match value.trim() {
            "" | "sqlite" | "do" | "d1" => Ok(StorageConfig::Sqlite { data_dir }),
            "memory" => Ok(StorageConfig::Memory),
            "postgres" | "postgresql" => postgres
                .map(|pg| StorageConfig::Postgres(Box::new(pg)))
                .ok_or_else(|| {
                    ConfigError::new(
                        setting,
                        "postgres storage needs SYNC_POSTGRES_URL (--postgres-url)",
                    )
                }),
            other => Err(ConfigError::new(
                setting,
                format!("unknown storage {other:?} (expected sqlite, memory or postgres)"),
            )),
        }
    }

    /// `sqlite`, `memory` or `postgres`, for logs and the health endpoint.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Sqlite { .. } => "sqlite",
            StorageConfig::Memory => "memory",
            StorageConfig::Postgres(_) => "postgres",
        }
    }
}

/// Parses a boolean setting with [`evsync_core::settings::parse_bool`]
/// (the Worker reads its variables with the same function): `true`/`1` on,
/// `false`/`0`/empty off, anything else an error naming `setting`.
pub fn parse_bool(setting: &str, value: &str) -> Result<bool, ConfigError> {
    evsync_core::settings::parse_bool(value)
        .map_err(|err| ConfigError::new(setting, err.to_string()))
}

/// Parses `SYNC_IDLE_SOCKET_TIMEOUT` with
/// [`evsync_core::settings::parse_idle_socket_timeout`] (the Worker reads
/// it with the same function): whole seconds into milliseconds, `0` or
/// empty off, anything else an error naming `setting`.
pub fn parse_idle_socket_timeout(setting: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    evsync_core::settings::parse_idle_socket_timeout(value)
        .map_err(|problem| ConfigError::new(setting, problem))
}

/// How much one server takes on. Defaults sit far above what one tenant
/// of the agent SDK needs (a socket per replica per sync tick) and below
/// what exhausts a machine, so a flood is refused rather than served badly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// SYNC_MAX_CONNECTIONS: open sync sockets in total.
    pub max_connections: usize,
    /// SYNC_MAX_CONNECTIONS_PER_TENANT: open sync sockets of one tenant.
    pub max_connections_per_tenant: usize,
    /// SYNC_MAX_TENANTS: tenants loaded at once (each holds its storage
    /// open; idle ones unload after `idle_grace`).
    pub max_tenants: usize,
    /// What `Retry-After` says on a refusal over a limit.
    pub retry_after_secs: u32,
    /// SYNC_HANDSHAKE_TIMEOUT: a connection must send its HTTP request
    /// headers within this; one that does not (slowloris) is closed.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 100_000,
            max_connections_per_tenant: evsync_core::settings::DEFAULT_MAX_CONNECTIONS_PER_TENANT,
            max_tenants: 100_000,
            retry_after_secs: evsync_core::settings::LIMIT_RETRY_AFTER_SECS,
            handshake_timeout: Duration::from_secs(
                evsync_core::settings::DEFAULT_HANDSHAKE_TIMEOUT_SECS,
            ),
        }
    }
}

/// Parses a limit with [`evsync_core::settings::parse_limit`] (the Worker
/// reads its own with the same function); an error names `setting`.
pub fn parse_limit(setting: &str, value: &str, default: usize) -> Result<usize, ConfigError> {
    evsync_core::settings::parse_limit(value, default)
        .map_err(|problem| ConfigError::new(setting, problem))
}

/// Everything [`crate::Server::bind`] needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen; port 0 picks a free port (see `Server::local_addr`).
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    /// SYNC_ADMIN_TOKEN: the admin API (`/admin/…`) is off without it.
    pub admin_token: Option<AdminToken>,
    /// Serve `/metrics` only on this address (not on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// SYNC_METRICS_PER_TENANT: metrics and dashboard rows labelled by
    /// tenant (off: tenant names can be many and sensitive).
    pub metrics_per_tenant: bool,
    /// How long `/readyz` answers 503 ("draining") before a requested
    /// shutdown starts, so load balancers stop sending new replicas first.
    pub drain: Duration,
    /// Limits on what one server takes on (issue 17): new sockets over
    /// them are refused with `503` and `Retry-After`, never left hanging.
    pub limits: Limits,
    /// SYNC_DEBUG: log every request and every open/close at info level.
    pub debug: bool,
    /// Limits of each tenant's engine; `max_frame_bytes` also bounds the
    /// WebSocket message and frame sizes.
    pub engine: EngineConfig,
    /// How long a tenant stays loaded after it became idle (no connection,
    /// no storage work). Short, so that thousands of tenants that are only
    /// on disk cost no open files or memory; not zero, so that a replica
    /// that reconnects at once finds its tenant warm.
    pub idle_grace: Duration,
    /// How long a graceful shutdown waits for writes to commit and sockets
    /// to close before it gives up and exits anyway.
    pub shutdown_timeout: Duration,
    /// How long a socket waits for the peer's answer to our close frame
    /// before dropping the TCP connection.
    pub close_timeout: Duration,
    /// SYNC_ACCEPT_NICE: the nice value of the thread that accepts
    /// connections and waits for their first request head (`crate::accept_thread`).
    pub accept_nice: i32,
}

/// The accept thread's default nice value: the workers' own. A lower
/// priority (a higher value) was measured to delay SQLite commits under a
/// storm of connections on two CPUs, the kernel placing the lane's and the
/// workers' wake-ups behind the thread (docs/reliability.md).
pub const DEFAULT_ACCEPT_NICE: i32 = 0;

impl ServerConfig {
    /// A config with production defaults for everything but what must be
    /// chosen: where to listen and where data lives.
    pub fn new(listen: SocketAddr, storage: StorageConfig) -> Self {
        ServerConfig {
            listen,
            storage,
            auth: AuthConfig::open(),
            admin_token: None,
            metrics_listen: None,
            metrics_per_tenant: false,
            drain: Duration::ZERO,
            limits: Limits::default(),
            debug: false,
            engine: EngineConfig::default(),
            idle_grace: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(3),
            accept_nice: DEFAULT_ACCEPT_NICE,
        }
    }
}

/// Builds the auth settings from the raw values of SYNC_AUTH_TOKEN,
/// SYNC_AUTH_TOKENS and SYNC_ALLOW_QUERY_TOKEN; a bad token map is an error
/// naming `tokens_setting`.
pub fn auth_config(
    default_token: Option<&str>,
    tenant_tokens_json: Option<&str>,
    allow_query_token: bool,
    tokens_setting: &str,
) -> Result<AuthConfig, ConfigError> {
    AuthConfig::new(default_token, tenant_tokens_json, allow_query_token)
        .map_err(|problem| ConfigError::new(tokens_setting, problem))
}

/// Parses SYNC_TOKEN_SECRET: unset or empty is `None` (no signed tokens);
/// shorter than 32 bytes is an error naming `setting` (never the value).
pub fn token_secret(raw: Option<&str>, setting: &str) -> Result<Option<TokenSecret>, ConfigError> {
    match raw.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => TokenSecret::new(raw)
            .map(Some)
            .map_err(|problem| ConfigError::new(setting, problem)),
    }
}

/// Parses SYNC_ADMIN_TOKEN: unset or empty is `None` (admin API off);
/// shorter than 16 bytes is an error naming `setting` (never the value).
pub fn admin_token(raw: Option<&str>, setting: &str) -> Result<Option<AdminToken>, ConfigError> {
    AdminToken::new(raw).map_err(|problem| ConfigError::new(setting, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("X", "true"), Ok(true));
        assert_eq!(parse_bool("X", "1"), Ok(true));
        assert_eq!(parse_bool("X", "0"), Ok(false));
        assert_eq!(parse_bool("X", ""), Ok(false));
        let err = parse_bool("SYNC_DEBUG", "yes").unwrap_err();
        assert_eq!(
            err.to_string(),
            "SYNC_DEBUG: expected true, 1, false or 0, got \"yes\""
        );
    }

    #[test]
    fn storage_kinds() {
        let dir = PathBuf::from("d");
        assert!(matches!(
            StorageConfig::parse("S", "memory", dir.clone(), None),
            Ok(StorageConfig::Memory)
        ));
        assert_eq!(
            StorageConfig::parse("S", "do", dir.clone(), None)
                .unwrap()
                .kind(),
            "sqlite"
        );
        let err = StorageConfig::parse("SYNC_STORAGE", "redis", dir.clone(), None).unwrap_err();
        assert!(err.to_string().starts_with("SYNC_STORAGE: unknown storage"));
        let err = StorageConfig::parse("SYNC_STORAGE", "postgres", dir.clone(), None).unwrap_err();
        assert!(err.to_string().contains("needs SYNC_POSTGRES_URL"));
        let settings = PostgresSettings {
            config: PgConfig::parse("postgres://evsync:hunter2@db:5432/evsync", 4).unwrap(),
            recheck: Duration::from_secs(1),
        };
        let parsed = StorageConfig::parse("S", "postgres", dir, Some(settings)).unwrap();
        assert_eq!(parsed.kind(), "postgres");
        assert!(!format!("{parsed:?}").contains("hunter2"));
    }

    #[test]
    fn errors_stay_on_one_line() {
        let err = ConfigError::new("A", "line one\nline two");
        assert_eq!(err.to_string(), "A: line one line two");
    }

    #[test]
    fn short_secrets_are_refused_without_showing_them() {
        let err = token_secret(Some("too-short"), "SYNC_TOKEN_SECRET").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SYNC_TOKEN_SECRET: must be at least 32 bytes")
        );
        assert!(!err.to_string().contains("too-short"));
        assert!(token_secret(Some(""), "S").unwrap().is_none());
        assert!(token_secret(Some(&"s".repeat(32)), "S").unwrap().is_some());
        let err = admin_token(Some("tiny"), "SYNC_ADMIN_TOKEN").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SYNC_ADMIN_TOKEN: must be at least 16 bytes")
        );
    }

    #[test]
    fn a_bad_token_map_names_its_setting() {
        let err = auth_config(None, Some("[1]"), false, "SYNC_AUTH_TOKENS").unwrap_err();
        assert_eq!(err.setting, "SYNC_AUTH_TOKENS");
    }
}
