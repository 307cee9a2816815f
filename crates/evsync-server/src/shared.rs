//! State every part of the server reads, at the bottom of the module graph:
//! the registry, the tenant actors and their stores all use it and it uses
//! none of them, so no import runs in a circle.

use crate::config::{ServerConfig, StorageConfig};
pub(crate) use crate::lock::lock;
use crate::metrics::Metrics;
use crate::refusals::RefusalLog;
use evsync_core::proto::v3::ConnId;
use evsync_core::storage::MemoryStorage;
use evsync_core::time::Timestamp;
use evsync_storage_postgres::PgDatabase;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// State every part of the server reads.
pub(crate) struct Shared {
    pub config: ServerConfig,
    /// The engine's clock: `Timestamp` is milliseconds since this instant.
    pub started: Instant,
    next_conn: AtomicU64,
    /// Open WebSockets, for `/healthz`.
    pub connections: AtomicUsize,
    /// Connections registered with a tenant (upgrading or open): what
    /// `Limits::max_connections` bounds.
    pub attached: AtomicUsize,
    /// Tenant actors; shutdown waits for them.
    pub actors: TaskTracker,
    /// WebSocket tasks; shutdown waits for their close frames to go out.
    pub sockets: TaskTracker,
    /// `SYNC_STORAGE=memory` keeps each tenant's data here, so that
    /// unloading an idle tenant does not lose it (nor change its remoteId).
    pub memory: Mutex<HashMap<String, Arc<Mutex<MemoryStorage>>>>,
    /// Refused upgrades, logged at a bounded rate.
    pub refusals: RefusalLog,
    /// Prometheus metrics (`/metrics`) and the dashboard's figures.
    pub metrics: Metrics,
    /// The last connections the server closed, newest last, for the
    /// dashboard.
    pub recent_closes: Mutex<VecDeque<CloseRecord>>,
    /// Shutting down was asked for: `/readyz` answers 503 (load balancers
    /// stop sending) while the server still serves, for the drain period.
    pub draining: AtomicBool,
    /// `--storage postgres`: the database every node shares.
    pub postgres: Option<PgDatabase>,
    /// PostgreSQL answered the last check (migrated at start, then the
    /// re-check every `recheck`): `/readyz` answers 503 while it does not.
    pub database_ok: AtomicBool,
    /// This node listens for other nodes' commits (`/healthz`).
    pub database_listening: AtomicBool,
    /// SQLite appends may join the running transaction
    /// (`LogConfig::join_open_appends`): only with more than one CPU to
    /// run on. Joining makes one transaction of what would have been two
    /// groups taking turns; with a second CPU the sockets are read while
    /// SQLite works, and one fsync for both groups is a gain. On one CPU
    /// the turns are what lets one group's requests be read while the
    /// other's commit waits on its fsync: measured on one CPU, joins
    /// doubled the entries per commit and lost 5–15 % of throughput
    /// (BENCHMARKS.md, "Appends that join the running transaction").
    pub join_appends: bool,
}

/// Where tenants' data lives, as the parts that open stores see it.
pub(crate) enum Backend<'a> {
    /// One SQLite file per tenant in this directory.
    Sqlite(PathBuf),
    /// `Shared::memory`.
    Memory,
    /// Rows of one database shared with other nodes.
    Postgres(&'a PgDatabase),
}

/// How many closes the dashboard shows.
pub const RECENT_CLOSES: usize = 20;

/// One connection the server closed, for the dashboard.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CloseRecord {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The metrics label of its kind.
    pub reason: &'static str,
    pub code: u16,
    /// The close reason sent to the client.
    pub detail: String,
    /// Only with per-tenant stats on.
    pub tenant: Option<String>,
}

impl Shared {
    /// `postgres` is the migrated database for `--storage postgres`.
    pub fn new(config: ServerConfig, postgres: Option<PgDatabase>) -> Self {
        let config_per_tenant = config.metrics_per_tenant;
        Shared {
            config,
            started: Instant::now(),
            next_conn: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            attached: AtomicUsize::new(0),
            actors: TaskTracker::new(),
            sockets: TaskTracker::new(),
            memory: Mutex::new(HashMap::new()),
            refusals: RefusalLog::default(),
            metrics: Metrics::new(config_per_tenant),
            recent_closes: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
            postgres,
            database_ok: AtomicBool::new(false),
            database_listening: AtomicBool::new(false),
            join_appends: std::thread::available_parallelism().is_ok_and(|n| n.get() > 1),
        }
    }

    /// A connection id no other connection of this server has had.
    pub fn next_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    /// Now, on the engine's clock.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.started.elapsed().as_millis() as u64)
    }

    /// Now, on the Unix clock (ms): the clock signed tokens' expiries and
    /// revocations are stated on.
    pub fn unix_now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as u64)
    }

    /// Records a connection the server closed, for the dashboard.
    pub fn record_close(&self, record: CloseRecord) {
        let mut closes = lock(&self.recent_closes);
        if closes.len() == RECENT_CLOSES {
            closes.pop_front();
        }
        closes.push_back(record);
    }

    /// The tokio instant of an engine timestamp.
    pub fn instant(&self, at: Timestamp) -> Instant {
        self.started + std::time::Duration::from_millis(at.0)
    }

    /// Where tenants' data lives.
    pub fn backend(&self) -> Backend<'_> {
        match (&self.postgres, self.tenants_dir()) {
            (Some(db), _) => Backend::Postgres(db),
            (None, Some(dir)) => Backend::Sqlite(dir),
            (None, None) => Backend::Memory,
        }
    }

    /// The tenants directory, for SQLite storage.
    pub fn tenants_dir(&self) -> Option<PathBuf> {
        self.data_subdir("tenants")
    }

    /// `<data dir>/<name>` for SQLite storage (see `datadir`).
    pub fn data_subdir(&self, name: &str) -> Option<PathBuf> {
        match &self.config.storage {
            StorageConfig::Sqlite { data_dir } => Some(data_dir.join(name)),
            StorageConfig::Memory | StorageConfig::Postgres(_) => None,
        }
    }
}
