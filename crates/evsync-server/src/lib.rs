//! evsync-server: the native server, i.e. the tokio adapter around the
//! sans-IO [`evsync_core::proto::v3::Engine`].
//!
//! - `routes`: the original worker's HTTP surface, decided by core's
//!   `access::admit` (the same function the Worker calls);
//! - `auth`: reads the credentials out of axum's request;
//! - `config`: settings, validated at startup;
//! - `registry` + `tenant`: one actor task per loaded tenant (a Durable
//!   Object's equivalent), loaded on first connection, unloaded when idle;
//!   imports run registry → tenant → store → shared, one way;
//! - `store`: the tenant's storage, run on blocking threads;
//! - `shared`: what every part of a running server reads (config, counters);
//! - `upgrade` + `on_demand_read`: the WebSocket handshake, and the socket
//!   under the codec that buffers reads only while bytes wait (and, with
//!   `cpu_yield`, gives the CPU back after every 64 KiB it receives);
//! - `connection`: the WebSocket pump;
//! - `refusals`: the rate-limited log of refused upgrades;
//! - `shutdown`: SIGINT/SIGTERM.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use evsync_server::{Server, ServerConfig, StorageConfig};
//! let config = ServerConfig::new("127.0.0.1:0".parse()?, StorageConfig::Memory);
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! let signals = evsync_server::shutdown::Signals::install()?;
//! server.run(signals.recv()).await?;
//! # Ok(()) }
//! ```

mod accept;
mod accept_thread;
mod admin;
pub mod auth;
mod checkpoints;
pub mod config;
mod connection;
mod cpu_yield;
mod dashboard;
mod database;
pub mod datadir;
mod health;
mod lanes;
mod lock;
mod metrics;
mod on_demand_read;
mod outlet;
mod refusals;
mod registry;
mod request_head;
mod respond;
pub mod routes;
mod shared;
pub mod shutdown;
mod socket;
mod store;
mod tenant;
pub mod tenant_ops;
mod upgrade;
mod write_through;

pub use config::{AuthConfig, admin_token, auth_config, token_secret};
pub use config::{
    ConfigError, Limits, PostgresSettings, ServerConfig, StorageConfig, parse_bool,
    parse_idle_socket_timeout, parse_limit,
};
/// Parsing and redacting `SYNC_POSTGRES_URL` (for the CLI's checks and
/// startup line).
pub use evsync_storage_postgres::PgConfig;

pub use metrics::count_dropped_log_lines;
use registry::Registry;
use shared::Shared;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The data directory cannot be created, written or locked.
    DataDir { path: PathBuf, problem: String },
    /// `SYNC_POSTGRES_URL` cannot be used (the problem never holds the
    /// password).
    Database { problem: String },
    /// The listen address cannot be bound (in use, not local, no rights).
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::DataDir { problem, .. } => f.write_str(problem),
            StartError::Database { problem } => write!(f, "SYNC_POSTGRES_URL: {problem}"),
            StartError::Listen { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// Observes a server: how many tenants are loaded right now.
#[derive(Clone)]
pub struct ServerHandle {
    registry: Arc<Registry>,
}

impl ServerHandle {
    /// Tenants currently loaded (an idle tenant unloads after its grace).
    pub fn loaded_tenants(&self) -> usize {
        self.registry.loaded_tenants()
    }

    /// Waits until the number of loaded tenants satisfies `pred`.
    pub async fn wait_loaded_tenants(&self, pred: impl FnMut(&usize) -> bool) {
        let mut rx = self.registry.watch_loaded();
        let _ = rx.wait_for(pred).await;
    }
}

/// A server bound to its address, not yet serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// `--metrics-listen`: its listener and the address it bound.
    metrics: Option<(TcpListener, SocketAddr)>,
    registry: Arc<Registry>,
    /// `--storage postgres`: the database, its settings and the re-check
    /// period, for the task `run` starts (`database`).
    postgres: Option<(evsync_storage_postgres::PgDatabase, PgConfig, Duration)>,
    _lock: Option<datadir::DataDirLock>,
}

impl Server {
    /// Prepares the data directory (SQLite storage) and binds the listener.
    /// Nothing is served until [`Server::run`].
    pub async fn bind(config: ServerConfig) -> Result<Server, StartError> {
        let lock = match &config.storage {
            StorageConfig::Sqlite { data_dir } => Some(datadir::prepare(data_dir).map_err(
                |problem| StartError::DataDir {
                    path: data_dir.clone(),
                    problem,
                },
            )?),
            StorageConfig::Memory | StorageConfig::Postgres(_) => None,
        };
        // No I/O yet: the pool connects on first use, and `run` waits for
        // the database (a node may start before it).
        let postgres = match &config.storage {
            StorageConfig::Postgres(pg) => {
                let db = evsync_storage_postgres::PgDatabase::new(&pg.config)
                    .map_err(|problem| StartError::Database { problem })?;
                Some((db, pg.config.clone(), pg.recheck))
            }
            _ => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| StartError::Listen {
                    addr: config.listen,
                    error,
                })?;
        let local_addr = listener.local_addr().map_err(|error| StartError::Listen {
            addr: config.listen,
            error,
        })?;
        let metrics = match config.metrics_listen {
            None => None,
            Some(addr) => {
                let bound = TcpListener::bind(addr)
                    .await
                    .map_err(|error| StartError::Listen { addr, error })?;
                let at = bound
                    .local_addr()
                    .map_err(|error| StartError::Listen { addr, error })?;
                Some((bound, at))
            }
        };
        let db = postgres.as_ref().map(|(db, _, _)| db.clone());
        let registry = Registry::new(Arc::new(Shared::new(config, db)));
        Ok(Server {
            listener,
            local_addr,
            metrics,
            registry,
            postgres,
            _lock: lock,
        })
    }

    /// The address actually bound (the chosen port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address `/metrics` is served on when `--metrics-listen` was
    /// given (the chosen port when asked for port 0).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, at)| *at)
    }

    /// A handle to observe the running server (it outlives `run`'s move).
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            registry: self.registry.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: stops
    /// accepting, lets every tenant commit and acknowledge the writes it
    /// already received, closes every socket with 1001, and returns once
    /// that is done (or `shutdown_timeout` has passed).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            registry,
            metrics,
            postgres,
            _lock,
            ..
        } = self;
        let shared = registry.shared().clone();
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let database = postgres.map(|(db, config, recheck)| {
            tokio::spawn(database::run(
                registry.clone(),
                db,
                config,
                recheck,
                stop_rx.clone(),
            ))
        });
        {
            let registry = registry.clone();
            tokio::spawn(async move {
                shutdown.await;
                let drain = registry.shared().config.drain;
                if !drain.is_zero() {
                    // Readiness first: load balancers stop sending new
                    // replicas while everything still works.
                    registry
                        .shared()
                        .draining
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(?drain, "draining: /readyz answers 503 before the shutdown");
                    tokio::time::sleep(drain).await;
                }
                registry.shutdown();
                let _ = stop_tx.send(true);
            });
        }
        if let Some((metrics_listener, _)) = metrics {
            let app = routes::metrics_router(registry.clone());
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let serve = axum::serve(metrics_listener, app).with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                });
                if let Err(err) = serve.await {
                    tracing::error!(%err, "the metrics listener failed");
                }
            });
        }
        // Our own accept loop (accept.rs): a handshake timeout, and the
        // peer's address (`ConnectInfo`) for the refusal log.
        let serve = accept_thread::serve(
            listener,
            routes::router(registry.clone()),
            shared.clone(),
            stop_rx.clone(),
        );
        let mut serve = tokio::spawn(serve);
        let summaries = tokio::spawn({
            let shared = shared.clone();
            async move {
                let mut every = tokio::time::interval(refusals::SUMMARY_INTERVAL);
                loop {
                    every.tick().await;
                    shared.refusals.summarize();
                }
            }
        });
        // Both may be ready at once (axum finishes its own graceful stop
        // quickly); only a serve that ended WITHOUT a stop request is a
        // failure. Otherwise drain the tenants and sockets before returning.
        let mut served = None;
        tokio::select! {
            ended = &mut serve => served = Some(ended),
            _ = stop_rx.wait_for(|stop| *stop) => {}
        }
        if let Some(ended) = &served
            && !*stop_rx.borrow()
        {
            tracing::error!(?ended, "the listener stopped unexpectedly");
            summaries.abort();
            return match served {
                Some(Ok(result)) => result,
                Some(Err(join)) => Err(std::io::Error::other(join)),
                None => Ok(()),
            };
        }
        let deadline = tokio::time::Instant::now() + shared.config.shutdown_timeout;
        let drained = tokio::time::timeout_at(deadline, async {
            shared.actors.close();
            shared.actors.wait().await;
            shared.sockets.close();
            shared.sockets.wait().await;
            if served.is_none() {
                let _ = (&mut serve).await;
            }
        })
        .await;
        if drained.is_err() {
            serve.abort();
            tracing::warn!(
                timeout = ?shared.config.shutdown_timeout,
                "shutdown timed out; exiting with work still open"
            );
        }
        summaries.abort();
        if let Some(database) = database {
            database.abort();
        }
        shared.refusals.summarize();
        tracing::info!("shutdown complete");
        Ok(())
    }
}
