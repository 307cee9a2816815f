//! A node's shared PostgreSQL (`--storage postgres`): bringing the schema
//! up to date at start, and keeping this node's subscribers in step with
//! the commits of every other node.
//!
//! Live delivery across nodes rides on LISTEN/NOTIFY: an append notifies
//! "tenant/publicKey advanced to N" inside its transaction (delivered at
//! COMMIT), and this node tells the tenant's actor, whose engine reads the
//! new entries from storage. Nothing depends on a notification arriving:
//! when the listening connection comes back after a failure, and every
//! `recheck` period anyway, this node reads the heads of every log (v3)
//! and store (v4) of its loaded tenants and tells each actor of any head
//! that rose. A lost
//! notification therefore delays a delivery by at most `recheck`, never
//! loses it (unlike pub/sub fan-out, where a missed message is gone).

use crate::registry::Registry;
use crate::tenant::LogRef;
use crate::tenant_ops::DELETED;
use evsync_core::storage::StorageError;
use evsync_storage_postgres::listen::{self, ListenEvent};
use evsync_storage_postgres::{PgConfig, PgDatabase, TenantIdentity};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Waits for the database, migrates it, then follows other nodes' commits
/// until `stop`. Runs as one task for the server's lifetime.
pub(crate) async fn run(
    registry: Arc<Registry>,
    db: PgDatabase,
    config: PgConfig,
    recheck: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async |stop: &mut watch::Receiver<bool>| {
        // The guard `wait_for` returns is not `Send`: dropped here.
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        migrated = migrate(&registry, &db, &config) => {
            if !migrated {
                return;
            }
        }
        _ = stopped(&mut stop) => return,
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let listener = tokio::spawn(listen::listen(config.clone(), events_tx));
    let mut follower = Follower {
        registry,
        db,
        told: HashMap::new(),
        told_revoked: HashMap::new(),
    };
    let mut tick = tokio::time::interval(recheck.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listening_before = false;
    loop {
        let event = tokio::select! {
            _ = stopped(&mut stop) => break,
            event = events.recv() => event,
            _ = tick.tick() => {
                follower.recheck().await;
                continue;
            }
        };
        match event {
            Some(ListenEvent::Advanced(advanced)) => {
                let log = LogRef::V3(advanced.public_key);
                follower.tell(&advanced.tenant, log, advanced.head);
            }
            Some(ListenEvent::StoreAdvanced(advanced)) => {
                follower.tell(&advanced.tenant, LogRef::V4(advanced.store), advanced.head);
            }
            Some(ListenEvent::Revoked { tenant, not_before }) => {
                follower.tell_revoked(&tenant, not_before);
            }
            Some(ListenEvent::Dropped { tenant, xact }) => follower.tell_dropped(&tenant, xact),
            Some(ListenEvent::Listening) => {
                if listening_before {
                    tracing::info!(
                        database = %config.redacted(),
                        "listening for other nodes' commits again; re-checking the heads of loaded tenants"
                    );
                } else {
                    tracing::info!(database = %config.redacted(), "listening for other nodes' commits");
                }
                listening_before = true;
                follower.set_listening(true);
                // Anything committed while nobody listened.
                follower.recheck().await;
            }
            Some(ListenEvent::Lost(reason)) => {
                follower.set_listening(false);
                tracing::warn!(
                    database = %config.redacted(),
                    %reason,
                    "the connection listening for other nodes' commits failed; reconnecting (heads are re-checked meanwhile)"
                );
            }
            None => break,
        }
    }
    listener.abort();
}

/// Runs the migrations, retrying while the database is unreachable; false
/// when the server stopped first.
async fn migrate(registry: &Registry, db: &PgDatabase, config: &PgConfig) -> bool {
    let mut wait = Duration::from_millis(250);
    loop {
        match db.migrate().await {
            Ok(version) => {
                tracing::info!(database = %config.redacted(), schema_version = version, "PostgreSQL ready");
                registry.shared().database_ok.store(true, Ordering::Relaxed);
                return true;
            }
            Err(err) => {
                tracing::warn!(
                    database = %config.redacted(),
                    reason = %err.message,
                    retry_in_ms = wait.as_millis() as u64,
                    "waiting for PostgreSQL: cannot reach or migrate the database; retrying"
                );
            }
        }
        if registry.is_shutting_down() {
            return false;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// What a re-check reads of the loaded tenants: their rows (remoteId and
/// generation), the heads of their logs and stores, their revocation
/// instants.
type TenantsRead = (
    Vec<(String, TenantIdentity)>,
    Vec<(String, LogRef, u64)>,
    Vec<(String, u64)>,
);

/// Tells tenant actors of heads other nodes reached.
struct Follower {
    registry: Arc<Registry>,
    db: PgDatabase,
    /// The last head told per (tenant, log or store): a re-check tells
    /// only what rose since. Safe to forget (a tenant loaded afresh reads
    /// its subscribers' entries from storage anyway); pruned to loaded
    /// tenants.
    told: HashMap<(String, LogRef), u64>,
    /// The last revocation instant told per tenant, likewise.
    told_revoked: HashMap<String, u64>,
}

impl Follower {
    /// Tells `tenant`'s actor that `log` reached `head`, unless it was
    /// told that already.
    fn tell(&mut self, tenant: &str, log: LogRef, head: u64) {
        let key = (tenant.to_owned(), log);
        if self.told.get(&key).is_some_and(|&told| told >= head) {
            return;
        }
        if self.registry.log_advanced(tenant, &key.1, head) {
            self.told.insert(key, head);
        }
    }

    /// Tells `tenant`'s actor that its tokens were revoked up to
    /// `not_before` (ordered on any node, already stored), unless it was
    /// told that already. The actor closes its sockets only if that raises
    /// the instant it holds.
    fn tell_revoked(&mut self, tenant: &str, not_before: u64) {
        if self
            .told_revoked
            .get(tenant)
            .is_some_and(|&told| told >= not_before)
        {
            return;
        }
        if self.registry.revoked_elsewhere(tenant, not_before) {
            self.told_revoked.insert(tenant.to_owned(), not_before);
        }
    }

    /// Tells `tenant`'s actor that it was deleted or replaced through
    /// another node by transaction `xact`; what was told of it is
    /// forgotten.
    fn tell_dropped(&mut self, tenant: &str, xact: Option<u64>) {
        self.registry.dropped_elsewhere(tenant, DELETED, xact);
        self.told.retain(|(t, _), _| t != tenant);
        self.told_revoked.remove(tenant);
    }

    fn set_listening(&self, listening: bool) {
        let shared = self.registry.shared();
        shared
            .database_listening
            .store(listening, Ordering::Relaxed);
    }

    /// Reads what a re-check needs of `tenants`.
    async fn read_tenants(&self, tenants: &[String]) -> Result<TenantsRead, StorageError> {
        let identities = self.db.identities(tenants).await?;
        let mut heads: Vec<(String, LogRef, u64)> = self
            .db
            .heads(tenants)
            .await?
            .into_iter()
            .map(|h| (h.tenant, LogRef::V3(h.public_key), h.head))
            .collect();
        let stores = self.db.store_heads(tenants).await?;
        heads.extend(
            stores
                .into_iter()
                .map(|h| (h.tenant, LogRef::V4(h.store), h.head)),
        );
        let revoked = self.db.revocations(tenants).await?;
        Ok((identities, heads, revoked))
    }

    /// Reads the heads of every log of the loaded tenants and tells each
    /// actor of those that rose; with no tenant loaded, only checks that
    /// the database answers. Records whether it did (`/readyz`).
    async fn recheck(&mut self) {
        let tenants = self.registry.loaded_tenant_names();
        let loaded: HashSet<&String> = tenants.iter().collect();
        self.told.retain(|(tenant, _), _| loaded.contains(tenant));
        self.told_revoked
            .retain(|tenant, _| loaded.contains(tenant));
        // Before the read: an actor that loaded later ignores what it says.
        let read_at = tokio::time::Instant::now();
        let ok = if tenants.is_empty() {
            self.db.ping().await.map(|()| Default::default())
        } else {
            self.read_tenants(&tenants).await
        };

        let shared = self.registry.shared();
        match ok {
            Ok((identities, heads, revoked)) => {
                if !shared.database_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!("PostgreSQL answers again");
                }
                // First: an actor whose tenant was deleted or replaced
                // drops itself before anything else is told to it.
                let stored: HashMap<String, TenantIdentity> = identities.into_iter().collect();
                for tenant in &tenants {
                    self.registry
                        .check_identity(tenant, stored.get(tenant).copied(), read_at);
                }
                for (tenant, not_before) in revoked {
                    self.tell_revoked(&tenant, not_before);
                }
                for (tenant, log, head) in heads {
                    self.tell(&tenant, log, head);
                }
            }
            Err(err) => {
                if shared.database_ok.swap(false, Ordering::Relaxed) {
                    tracing::error!(reason = %err.message, "PostgreSQL does not answer; new connections are refused until it does");
                }
            }
        }
    }
}
