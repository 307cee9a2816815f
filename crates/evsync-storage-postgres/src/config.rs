//! Connection settings: the operator's URL, parsed once, and what this
//! crate adds to it (application names, timeouts, keepalives).

use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// How long opening a connection may take (TCP, startup, authentication)
/// unless the URL says otherwise (`connect_timeout`). A database that is
/// down must turn a request into an error, not a wait.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// TCP keepalive on every connection: idle time before the first probe,
/// then the interval and count of probes, so a database host that vanished
/// without closing its sockets (a network partition, a powered-off host) is
/// noticed in about 25 s instead of the kernel default of over two hours.
/// Matters most for the LISTEN connection, which may be idle for long.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// How long data we sent may stay unacknowledged by the database host
/// before the connection is dropped (Linux `TCP_USER_TIMEOUT`): a query
/// sent into a partition fails after this instead of hanging.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Run on each new pooled connection: a server-side bound on a
/// transaction left open by a client that stopped talking (a node
/// partitioned away in the middle of an append). The database ends that
/// session after this, releasing the log's row lock so the other nodes'
/// appends to the log go on. Our own transactions never sit idle: every
/// statement follows the previous one at once. A `SET` rather than a
/// startup `options` parameter, which connection poolers such as PgBouncer
/// refuse unless configured to ignore it. `client_min_messages`: the
/// migrations' `CREATE … IF NOT EXISTS` would otherwise send a NOTICE
/// ("already exists, skipping") that reaches the node's log at every start.
pub(crate) const SESSION_SETUP: &str =
    "SET idle_in_transaction_session_timeout = '30s'; SET client_min_messages = warning";

/// `application_name` of pooled connections, as `pg_stat_activity` shows
/// them to an operator.
pub(crate) const APPLICATION_NAME: &str = "evsync";

/// `application_name` of the one LISTEN connection of each node, so it can
/// be told apart (and, in tests, terminated on its own).
pub(crate) const LISTEN_APPLICATION_NAME: &str = "evsync-listen";

/// Parsed connection settings: the database to use and how many pooled
/// connections a node may open to it.
///
/// Parsed once at startup (so a bad URL stops the server before it
/// listens), then shared by the pool and the LISTEN connection. The
/// password stays inside: nothing this type prints or returns as an error
/// contains it ([`PgConfig::redacted`] is what logs show).
#[derive(Clone)]
pub struct PgConfig {
    pub(crate) pg: tokio_postgres::Config,
    pool_size: usize,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("database", &self.redacted())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PgConfig {
    /// Parses `url`, a `postgres://user:password@host:port/dbname?...` URL
    /// or a `key=value` conninfo string (both as libpq reads them, through
    /// [`tokio_postgres::Config`]), for a pool of `pool_size` connections.
    ///
    /// The error text never contains the password: a URL is often pasted
    /// whole into an environment variable, and the error goes to logs.
    pub fn parse(url: &str, pool_size: usize) -> Result<PgConfig, String> {
        if pool_size == 0 {
            return Err("the PostgreSQL pool size must be at least 1".into());
        }
        let mut pg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            format!("invalid PostgreSQL URL: {}", parse_error_text(&e))
        })?;
        if pg.get_hosts().is_empty() {
            return Err("invalid PostgreSQL URL: it names no host".into());
        }
        // This build has no TLS implementation: refuse what would need one
        // now, with a clear reason, rather than at every connection attempt.
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(
                "sslmode=require is not supported: this build connects without TLS \
                 (use a private network, or a TLS-terminating proxy on the same host)"
                    .into(),
            );
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(CONNECT_TIMEOUT);
        }
        if pg.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            // tokio-postgres's default, so the URL did not set it.
            pg.keepalives_idle(KEEPALIVE_IDLE);
        }
        if pg.get_keepalives_interval().is_none() {
            pg.keepalives_interval(KEEPALIVE_INTERVAL);
        }
        if pg.get_keepalives_retries().is_none() {
            pg.keepalives_retries(KEEPALIVE_RETRIES);
        }
        if pg.get_tcp_user_timeout().is_none() {
            pg.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        pg.application_name(APPLICATION_NAME);
        Ok(PgConfig { pg, pool_size })
    }

    /// `postgres://user@host:port/dbname`, never the password: what logs
    /// and `/readyz` answers may show of the database.
    pub fn redacted(&self) -> String {
        let mut out = String::from("postgres://");
        if let Some(user) = self.pg.get_user() {
            out.push_str(user);
            out.push('@');
        }
        let ports = self.pg.get_ports();
        for (i, host) in self.pg.get_hosts().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match host {
                Host::Tcp(name) if name.contains(':') => out.push_str(&format!("[{name}]")),
                Host::Tcp(name) => out.push_str(name),
                Host::Unix(path) => out.push_str(&path.display().to_string()),
            }
            // libpq's rule: one port for all hosts, or one per host.
            let port = match ports {
                [] => 5432,
                [one] => *one,
                many => many.get(i).copied().unwrap_or(5432),
            };
            out.push_str(&format!(":{port}"));
        }
        if let Some(dbname) = self.pg.get_dbname() {
            out.push('/');
            out.push_str(dbname);
        }
        out
    }

    /// How many pooled connections a node may open (deadpool's
    /// `max_size`); the LISTEN connection comes on top.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// The settings of a connection with another `application_name`.
    pub(crate) fn with_application_name(&self, name: &str) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.application_name(name);
        pg
    }
}

/// The reason a URL did not parse, without anything of the URL's own text:
/// tokio-postgres names options and byte offsets, except in one message
/// that quotes the character found ("... but got `x`"), which may be a
/// character of a password with a space in it; that part is cut.
fn parse_error_text(e: &tokio_postgres::Error) -> String {
    let mut text = match std::error::Error::source(e) {
        Some(cause) => cause.to_string(),
        None => e.to_string(),
    };
    if let Some(at) = text.find(" but got ") {
        text.truncate(at);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-s3cr3t";

    #[test]
    fn redacted_never_shows_the_password() {
        let config = PgConfig::parse(
            &format!("postgres://evsync:{SECRET}@db.internal:6543/sync?sslmode=disable"),
            8,
        )
        .unwrap();
        assert_eq!(config.redacted(), "postgres://evsync@db.internal:6543/sync");
        assert_eq!(config.pool_size(), 8);
        assert!(!format!("{config:?}").contains(SECRET));
        let config =
            PgConfig::parse(&format!("host=db user=u password={SECRET} dbname=x"), 1).unwrap();
        assert_eq!(config.redacted(), "postgres://u@db:5432/x");
    }

    #[test]
    fn parse_errors_never_show_the_password() {
        for bad in [
            format!("postgres://evsync:{SECRET}@db:notaport/sync"),
            format!("postgres://evsync:{SECRET}@db/sync?bogus_option=1"),
            format!("postgres://evsync:{SECRET}@db/sync?sslmode=sometimes"),
            format!("postgres://evsync:{SECRET}@[db/sync"),
            format!("host=db password={SECRET} x"),
            format!("host=db password=hunter 2{SECRET}"),
            format!("host=db password='{SECRET}"),
            format!("postgres://evsync:{SECRET}@db/sync?sslmode=require"),
            format!("postgres://evsync:{SECRET}@/sync"),
        ] {
            let err = PgConfig::parse(&bad, 4).expect_err(&bad);
            assert!(!err.contains(SECRET), "{err}");
            assert!(!err.contains("hunter"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        assert!(PgConfig::parse("postgres://u@db/x", 0).is_err());
    }

    #[test]
    fn pooled_connections_are_named_and_bounded() {
        let config = PgConfig::parse("postgres://u@db/x", 2).unwrap();
        assert_eq!(config.pg.get_application_name(), Some(APPLICATION_NAME));
        assert_eq!(config.pg.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.pg.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(
            config.pg.get_options(),
            None,
            "nothing a pooler could refuse"
        );
        let listen = config.with_application_name(LISTEN_APPLICATION_NAME);
        assert_eq!(listen.get_application_name(), Some(LISTEN_APPLICATION_NAME));
        let given = PgConfig::parse("postgres://u@db/x?connect_timeout=9", 2).unwrap();
        assert_eq!(
            given.pg.get_connect_timeout(),
            Some(&Duration::from_secs(9)),
            "the URL's own timeout wins"
        );
    }
}
