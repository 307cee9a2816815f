//! The actor of one loaded tenant: it owns the tenant's engines (v3 and v4,
//! [`TenantEngines`]) and store, and is the only task that touches them.
//!
//! Connections send it their frames; after every input it drains the
//! engine's actions (frames and closes to the connections' outbound
//! channels, storage work to the [`TenantStore`]) and events (logs). It
//! wakes the engine at `poll_timeout`, and unloads itself after
//! `idle_grace` of idleness (see the registry for the race this avoids).

use crate::checkpoints::CheckpointDone;
use crate::lanes::LaneKind;
use crate::outlet::{Outbound, Outlet};
use crate::shared::{CloseRecord, Shared};
use crate::store::{Done, Submitted, TenantStore};
use bytes::Bytes;
use evsync_core::access::{Grant, Protocol};
use evsync_core::log::ConnMap;
use evsync_core::proto::close::{CloseKind, code};
use evsync_core::proto::event::Event;
use evsync_core::proto::tenant::TenantEngines;
use evsync_core::proto::v3::{Action, ConnId};
use evsync_core::proto::v4;
use evsync_core::storage::{StorageOp, StorageResponse, StoreKey};
use evsync_core::wire::RemoteId;
use evsync_storage_postgres::TenantIdentity;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

/// What connections and the registry tell a tenant.
pub(crate) enum TenantMsg {
    /// A connection of `protocol` attached with `grant` (its expiry on the
    /// engine's clock). A v3 `Hello` goes to `outbound`; `ready` answers
    /// once the store is open (or with why the connection is refused).
    Open {
        conn: ConnId,
        protocol: Protocol,
        outlet: Arc<Outlet>,
        grant: Grant,
        ready: oneshot::Sender<Result<RemoteId, OpenRefused>>,
    },
    /// One complete message from the socket (binary, or text as UTF-8).
    /// `permit` holds the frame's share of the connection's inbound
    /// budget until the engine has taken the frame.
    Frame {
        conn: ConnId,
        frame: Bytes,
        permit: tokio::sync::OwnedSemaphorePermit,
    },
    /// `bytes` of this connection's frames were written to its socket.
    Sent { conn: ConnId, bytes: usize },
    /// The socket is gone (closed by the peer, or broken).
    Close { conn: ConnId },
    /// The socket task found the peer's input bad below the protocol (a
    /// message over the size limit, or never finished): the engine closes
    /// it with `code` and `reason`, as for bad input of its own.
    Violation {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Graceful shutdown: finish the writes received, ack, close with 1001.
    Shutdown,
    /// How many connections are open (the admin API's figures).
    Count { reply: oneshot::Sender<usize> },
    /// The tenant's tokens were revoked up to `not_before` (Unix ms, already
    /// stored): close every connection; `closed` gets how many.
    Revoke {
        not_before: u64,
        closed: oneshot::Sender<usize>,
    },
    /// Another writer (a node sharing the PostgreSQL database) committed
    /// to `log` up to `head`.
    LogAdvanced { log: LogRef, head: u64 },
    /// The tenant was deleted or replaced through another node (a shared
    /// database) by transaction `xact`: close every connection, refuse new
    /// ones, leave the registry (the next connection loads the tenant
    /// afresh) and end. Ignored if this actor loaded the tenant after that
    /// transaction had committed (its notice came late).
    Drop { reason: String, xact: Option<u64> },
    /// A node's re-check, begun at `read_at`, read the tenant's row
    /// (`None`: none stored): if its remoteId is not the one this actor
    /// serves, or its generation not the one it loaded, the tenant was
    /// deleted or replaced elsewhere and a notification was lost: as
    /// `Drop`. A read begun before this actor had loaded (and stored its
    /// remoteId) proves nothing and is ignored.
    CheckIdentity {
        stored: Option<TenantIdentity>,
        read_at: Instant,
    },
    /// An operator takes the tenant away (delete, import over it): close
    /// every connection with `code` and `reason`, wait for storage work in
    /// flight, leave the registry and close the store; `gone` answers once
    /// the store's files are closed.
    Evict {
        code: u16,
        reason: String,
        gone: oneshot::Sender<()>,
    },
}

/// A log of a tenant, of either protocol: a v3 log (by publicKey) or a v4
/// store.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum LogRef {
    V3(String),
    V4(StoreKey),
}

/// Why a connection is not attached.
#[derive(Debug)]
pub(crate) enum OpenRefused {
    /// The tenant's store could not be opened.
    Storage(String),
    /// Its signed token was minted before the tenant's revocation.
    Revoked,
    /// The tenant has `Limits::max_connections_per_tenant` open.
    TenantFull,
    /// The tenant's writes are behind its write rate limit: retry after
    /// this many seconds.
    Throttled { retry_after_secs: u64 },
    /// The actor was told to leave (the tenant deleted or replaced) before
    /// it took this Open. It answers once it has left the registry's
    /// table, so the registry sends the Open again, to a fresh actor.
    Leaving,
}

/// How an actor leaves the table of loaded tenants. The registry implements
/// it; declaring it here keeps the actor from depending on the registry
/// (which depends on the actor to start it).
pub(crate) trait Membership {
    /// Removes the actor of `tenant` (loaded as `generation`) from the table
    /// unless a message is waiting in `inbox`, then closes `inbox`. Returns
    /// true if the actor must stop.
    fn try_unload(
        &self,
        tenant: &str,
        generation: u64,
        inbox: &mut mpsc::UnboundedReceiver<TenantMsg>,
    ) -> bool;

    /// Whether the server is shutting down (an actor checks when it starts,
    /// since it may have been spawned just before).
    fn is_shutting_down(&self) -> bool;

    /// Removes the actor of `tenant` (loaded as `generation`) from the
    /// table whatever its inbox holds: it is being evicted, and the
    /// registry lets no connection reach the tenant meanwhile.
    fn leave(&self, tenant: &str, generation: u64);
}

/// The log message of a tenant left because another node deleted or
/// replaced it.
const DROPPED: &str = "tenant dropped: deleted or replaced through another node";

/// Messages an actor handles before it carries out what they asked for:
/// enough to group a burst of writes, few enough that the first of them
/// is not kept waiting.
const INBOX_BATCH: usize = 64;

/// Runs the tenant until it unloads (idle) or finishes shutting down.
pub(crate) async fn run(
    registry: Arc<impl Membership>,
    shared: Arc<Shared>,
    tenant: String,
    generation: u64,
    mut inbox: mpsc::UnboundedReceiver<TenantMsg>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (store, opened) = match TenantStore::open(&shared, &tenant, done_tx).await {
        Ok(opened) => opened,
        Err(reason) => {
            tracing::error!(%tenant, %reason, "cannot load tenant");
            fail_loading(&*registry, &tenant, generation, &mut inbox, &reason);
            return;
        }
    };
    let remote_id = opened.remote_id;
    let snapshot = opened.snapshot;
    let row_generation = opened.generation;
    let mut v3_config = shared.config.engine.clone();
    let mut v4_config = v4_config(&shared);
    let joins = store.takes_joins() && shared.join_appends;
    v3_config.log.join_open_appends = joins;
    v4_config.log.join_open_appends = joins;
    let mut engine = TenantEngines::new(remote_id, v3_config, v4_config, Box::new(challenge_bytes));
    engine.v3().set_debug(shared.config.debug);
    engine.v4().set_debug(shared.config.debug);
    tracing::debug!(%tenant, remote_id = %remote_id.to_uuid_string(), "tenant loaded");
    let mut actor = Actor {
        shared: shared.clone(),
        tenant,
        engine,
        store,
        conns: Outlets::default(),
        shutting_down: registry.is_shutting_down(),
        tokens_not_before: opened.tokens_not_before,
        commit_returned: None,
        evicted: None,
        leaving: false,
        opens_while_leaving: Vec::new(),
        loaded_at: Instant::now(),
        snapshot,
        row_generation,
    };
    let mut left = false;
    if actor.shutting_down {
        actor.engine.handle_shutdown();
    }
    let mut idle_since: Option<Instant> = None;
    loop {
        if actor.leaving && !left {
            // At once: the next connection loads the tenant afresh (after
            // an operator's hold is released) instead of reaching this
            // actor, which ends once its storage work has finished. And
            // before the drain below writes the sockets' close frames: a
            // client that reconnects as soon as it reads its close must
            // find the tenant gone from the table, not this actor, which
            // would refuse it (503). Leaving after the drain let a
            // reconnection win that race when this thread was descheduled
            // between the two (seen under a loaded test run).
            registry.leave(&actor.tenant, generation);
            left = true;
        }
        if left {
            actor.answer_opens_while_leaving();
        }
        actor.drain();
        let idle = actor.engine.is_idle() && actor.store.is_idle();
        if left && actor.store.is_idle() {
            break;
        }
        if actor.shutting_down && idle {
            // Done: every write acknowledged, every socket closed. Leave
            // the registry only with an empty inbox (same rule as unload).
            if registry.try_unload(&actor.tenant, generation, &mut inbox) {
                break;
            }
        }
        idle_since = match (idle, idle_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
        let unload_at = idle_since.map(|since| since + shared.config.idle_grace);
        let wake_at = actor.engine.poll_timeout().map(|at| shared.instant(at));
        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => match done {
                Done::Request(done) => {
                    actor.store.complete(done.lane, done.store, done.wal_pages);
                    if done.lane == LaneKind::Writer {
                        actor.committed(done.took, &done.response);
                    }
                    actor.engine.handle_storage_response(done.response);
                }
                Done::Checkpoint(done) => actor.checkpointed(done),
            },
            msg = inbox.recv() => match msg {
                Some(msg) => {
                    actor.handle(msg);
                    // What else has arrived is handled before the next
                    // drain: the log service groups those writes into one
                    // append, and each socket gets its frames in one write.
                    // A finished storage request goes first (the next
                    // group commit waits for it).
                    for _ in 1..INBOX_BATCH {
                        if !done_rx.is_empty() {
                            break;
                        }
                        let Ok(msg) = inbox.try_recv() else { break };
                        actor.handle(msg);
                    }
                }
                // Every sender is gone, including the registry's: nobody
                // can reach this tenant any more.
                None => break,
            },
            _ = sleep_until(wake_at.unwrap_or_else(Instant::now)), if wake_at.is_some() => {
                actor.engine.handle_timeout(shared.now());
            }
            _ = sleep_until(unload_at.unwrap_or_else(Instant::now)), if unload_at.is_some() => {
                if registry.try_unload(&actor.tenant, generation, &mut inbox) {
                    break;
                }
            }
        }
    }
    if left {
        // Opens sent before the registry forgot this actor and not taken
        // yet: sent again by the registry, to a fresh actor.
        inbox.close();
        while let Ok(msg) = inbox.try_recv() {
            if let TenantMsg::Open { ready, .. } = msg {
                actor.opens_while_leaving.push(ready);
            }
        }
        actor.answer_opens_while_leaving();
    }
    // Closing a SQLite connection checkpoints its WAL (an fsync): do it on
    // a blocking thread, and before the registry counts the tenant gone.
    if let Some(per_tenant) = shared.metrics.per_tenant() {
        per_tenant.forget(&actor.tenant);
    }
    let Actor {
        tenant,
        store,
        evicted,
        ..
    } = actor;
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    tracing::debug!(%tenant, "tenant unloaded");
    if let Some(gone) = evicted {
        let _ = gone.send(());
    }
}

/// The store did not open: answer every waiting connection with the reason
/// and leave the registry, so the next connection tries again.
fn fail_loading(
    registry: &impl Membership,
    tenant: &str,
    generation: u64,
    inbox: &mut mpsc::UnboundedReceiver<TenantMsg>,
    reason: &str,
) {
    loop {
        while let Ok(msg) = inbox.try_recv() {
            if let TenantMsg::Open { ready, .. } = msg {
                let _ = ready.send(Err(OpenRefused::Storage(reason.to_owned())));
            }
        }
        if registry.try_unload(tenant, generation, inbox) {
            return;
        }
    }
}

/// The v4 session layer's limits: the log service's and the chunk limits
/// are the ones configured for v3.
fn v4_config(shared: &Shared) -> v4::SessionConfig {
    v4::SessionConfig {
        log: shared.config.engine.log.clone(),
        chunks: shared.config.engine.chunks.clone(),
        idle_socket_timeout_ms: shared.config.engine.idle_socket_timeout_ms,
        ..v4::SessionConfig::default()
    }
}

/// 32 bytes from the operating system's CSPRNG, for v4 challenges. A
/// failing CSPRNG is not something to serve through.
fn challenge_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes
}

struct Actor {
    shared: Arc<Shared>,
    tenant: String,
    engine: TenantEngines,
    store: TenantStore,
    conns: Outlets,
    shutting_down: bool,
    /// Signed tokens minted before this (Unix ms) are refused: the stored
    /// revocation, read at load and raised by `Revoke`.
    tokens_not_before: Option<u64>,
    /// When the last append's commit returned, until the drain that hands
    /// its live deliveries to the sockets measures the delivery lag.
    commit_returned: Option<Instant>,
    /// Set by `Evict`: answered once the store is closed.
    evicted: Option<oneshot::Sender<()>>,
    /// Set by `Evict`, `Drop` or a failed `CheckIdentity`: the actor
    /// leaves the registry at once and ends once its storage is idle.
    leaving: bool,
    /// Opens taken while leaving, answered `Leaving` once the registry has
    /// forgotten this actor (see `OpenRefused::Leaving`).
    opens_while_leaving: Vec<oneshot::Sender<Result<RemoteId, OpenRefused>>>,
    /// When the store had opened (its remoteId read or created).
    loaded_at: Instant,
    /// PostgreSQL: what had committed when the store opened.
    snapshot: Option<evsync_storage_postgres::Snapshot>,
    /// PostgreSQL: the generation of the tenant's row it loaded.
    row_generation: Option<i64>,
}

/// The outlet of every connection the engine knows. An actor that ends
/// with connections still attached panicked (it only unloads when idle):
/// dropping these tells their sockets to close with 1011. Keyed with the
/// log service's connection hasher: every frame of a fan-out looks its
/// connection up here, and ids are ours, not a peer's.
#[derive(Default)]
struct Outlets(ConnMap<Arc<Outlet>>);

impl Drop for Outlets {
    fn drop(&mut self) {
        for outlet in self.0.values() {
            outlet.actor_gone();
        }
    }
}

impl std::ops::Deref for Outlets {
    type Target = ConnMap<Arc<Outlet>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Outlets {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Actor {
    /// An append finished after `took`: its duration is observed, and a
    /// commit starts the delivery-lag clock.
    fn committed(&mut self, took: std::time::Duration, response: &StorageResponse) {
        let ok = match response {
            StorageResponse::Appended { result, .. } => result.is_ok(),
            StorageResponse::BatchesAppended { result, .. } => result.is_ok(),
            _ => return,
        };
        self.shared.metrics.observe_commit(took);
        if ok {
            self.commit_returned = Some(Instant::now());
        }
    }

    /// A WAL checkpoint ended: its figures to the metrics, a failure to
    /// the log (nothing is lost: the WAL keeps every committed page until
    /// a checkpoint copies it, and the writer checkpoints at its backstop).
    fn checkpointed(&mut self, done: CheckpointDone) {
        let metrics = &self.shared.metrics;
        match &done.result {
            Ok(_) => metrics.checkpoint_ended(done.took),
            Err(reason) => {
                metrics.checkpoint_failed();
                tracing::warn!(tenant = %self.tenant, %reason, "WAL checkpoint failed");
            }
        }
        self.store.checkpointed();
    }

    /// Adds what the engine counted to the metrics; a commit whose live
    /// deliveries this drain handed to the sockets gets its lag observed.
    fn record_stats(&mut self) {
        let stats = self.engine.take_stats();
        let metrics = &self.shared.metrics;
        metrics.record(&stats);
        if let Some(at) = self.commit_returned.take()
            && stats.log.live_deliveries > 0
        {
            metrics.observe_delivery_lag(at.elapsed());
        }
        if let Some(per_tenant) = metrics.per_tenant() {
            if stats.log.entries_appended > 0 {
                per_tenant.appended(&self.tenant, stats.log.entries_appended);
            }
            per_tenant.set_connections(&self.tenant, self.engine.connection_count());
        }
    }

    fn handle(&mut self, msg: TenantMsg) {
        let now = self.shared.now();
        match msg {
            TenantMsg::Open {
                conn,
                protocol,
                outlet,
                grant,
                ready,
            } => {
                if self.leaving {
                    self.opens_while_leaving.push(ready);
                    return;
                }
                if grant.is_revoked_by(self.tokens_not_before) {
                    let _ = ready.send(Err(OpenRefused::Revoked));
                    return;
                }
                let max = self.shared.config.limits.max_connections_per_tenant;
                if self.engine.connection_count() >= max {
                    let _ = ready.send(Err(OpenRefused::TenantFull));
                    return;
                }
                if let Some(retry_after_secs) = self.engine.write_retry_after_secs(now) {
                    let _ = ready.send(Err(OpenRefused::Throttled { retry_after_secs }));
                    return;
                }
                self.conns.insert(conn, outlet);
                self.engine.handle_open(conn, protocol, grant, now);
                if self.shared.config.debug {
                    tracing::info!(
                        tenant = %self.tenant,
                        conn = conn.0,
                        peers = self.engine.connection_count(),
                        "open"
                    );
                }
                let _ = ready.send(Ok(self.engine.remote_id()));
            }
            TenantMsg::Frame {
                conn,
                frame,
                permit,
            } => {
                self.engine.handle_message(conn, frame, now);
                drop(permit);
            }
            TenantMsg::Sent { conn, bytes } => self.engine.handle_sent(conn, bytes),
            TenantMsg::Close { conn } => {
                if self.conns.remove(&conn).is_some() {
                    self.engine.handle_close(conn);
                    if self.shared.config.debug {
                        tracing::info!(
                            tenant = %self.tenant,
                            conn = conn.0,
                            peers = self.engine.connection_count(),
                            "close"
                        );
                    }
                }
            }
            TenantMsg::Violation { conn, code, reason } => {
                self.engine.handle_violation(conn, code, reason);
            }
            TenantMsg::Shutdown => {
                if !self.shutting_down {
                    self.shutting_down = true;
                    self.engine.handle_shutdown();
                }
            }
            TenantMsg::LogAdvanced { log, head } => match log {
                LogRef::V3(public_key) => self.engine.handle_log_advanced(&public_key, head),
                LogRef::V4(store) => self.engine.handle_store_advanced(&store, head),
            },
            TenantMsg::Count { reply } => {
                let _ = reply.send(self.engine.connection_count());
            }
            TenantMsg::Revoke { not_before, closed } => {
                // An instant this actor holds already changes nothing (a
                // node re-checking revocations it was told of before).
                if Some(not_before) <= self.tokens_not_before {
                    let _ = closed.send(0);
                    return;
                }
                self.tokens_not_before = Some(not_before);
                let open = self.engine.connection_count();
                self.engine.handle_revoke();
                tracing::info!(tenant = %self.tenant, closed = open, "tokens revoked");
                let _ = closed.send(open);
            }
            TenantMsg::CheckIdentity { stored, read_at } => {
                let same = stored.is_some_and(|row| {
                    row.remote_id == self.engine.remote_id()
                        && self
                            .row_generation
                            .is_none_or(|loaded| loaded == row.generation)
                });
                if read_at > self.loaded_at && !same {
                    let reason = "tenant deleted or replaced by an operator".to_owned();
                    self.leave(code::GOING_AWAY, reason, DROPPED);
                }
            }
            TenantMsg::Drop { reason, xact } => {
                let seen = xact.zip(self.snapshot.as_ref());
                if seen.is_some_and(|(xact, snapshot)| snapshot.sees(xact)) {
                    tracing::debug!(tenant = %self.tenant, "a deletion's late notice ignored: loaded after it");
                } else {
                    self.leave(code::GOING_AWAY, reason, DROPPED);
                }
            }
            TenantMsg::Evict { code, reason, gone } => {
                self.leave(code, reason, "tenant evicted");
                self.evicted = Some(gone);
            }
        }
    }

    /// Answers the Opens taken while leaving: `Leaving`, so that the
    /// registry sends them again (this actor has left its table).
    fn answer_opens_while_leaving(&mut self) {
        for ready in self.opens_while_leaving.drain(..) {
            let _ = ready.send(Err(OpenRefused::Leaving));
        }
    }

    /// The tenant is taken away (by an operator here, or deleted or
    /// replaced through another node): close its sockets with `code` and
    /// `reason`, refuse new ones; the run loop leaves the registry and ends
    /// once storage work in flight has finished.
    fn leave(&mut self, code: u16, reason: String, what: &'static str) {
        if self.leaving {
            return;
        }
        let open = self.engine.connection_count();
        self.engine.close_all(code, &reason);
        tracing::info!(tenant = %self.tenant, closed = open, %reason, "{what}");
        self.leaving = true;
    }

    /// Carries out everything the engine asked for, in order, and logs
    /// its events. Each run of consecutive frames for one connection is
    /// written at once, in the engine's order (a commit's subscribers in
    /// subscription order), by this task (see `outlet`); what was written
    /// at once is reported sent, which may let the engine send more.
    fn drain(&mut self) {
        let mut run: Vec<Outbound> = Vec::new();
        let mut run_conn: Option<ConnId> = None;
        loop {
            let action = self.engine.poll_action();
            let continues_run = matches!(
                (&action, run_conn),
                (Some(Action::Send { conn: next, .. }), Some(conn)) if *next == conn
            );
            if !continues_run && let Some(conn) = run_conn.take() {
                self.write_run(conn, &mut run);
                if action.is_none() {
                    // Reporting it sent may have let the engine send more.
                    continue;
                }
            }
            let Some(action) = action else {
                break;
            };
            match action {
                Action::Send { conn, frame } => {
                    if self.conns.contains_key(&conn) {
                        run_conn = Some(conn);
                        run.push(Outbound::Frame(frame));
                    } else {
                        // The socket task is gone; its Close is on the way.
                        tracing::trace!(conn = conn.0, "frame for a closed socket dropped");
                    }
                }
                Action::Close { conn, code, reason } => {
                    if let Some(outlet) = self.conns.remove(&conn) {
                        outlet.send_all(&mut vec![Outbound::Close { code, reason }]);
                    }
                }
                Action::Storage(req) => {
                    let append =
                        matches!(req.op, StorageOp::Append(_) | StorageOp::AppendBatches(_));
                    let started = Instant::now();
                    // Memory storage answers at once; SQLite's answer
                    // arrives as a `Done` with its own duration.
                    match self.store.submit(req) {
                        Submitted::Answered(response) => {
                            if append {
                                self.committed(started.elapsed(), &response);
                            }
                            self.engine.handle_storage_response(response);
                        }
                        Submitted::Started => {}
                        Submitted::Deferred(req) => {
                            if self.engine.handle_append_put_back(req.id) {
                                self.shared.metrics.count_append_join(false);
                            } else {
                                let answered = self.store.start(req);
                                debug_assert!(answered.is_none(), "only lanes defer");
                            }
                        }
                        Submitted::Joined { id, into } => {
                            self.shared.metrics.count_append_join(true);
                            self.engine.handle_append_joined(id, into);
                        }
                    }
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            self.log(event);
        }
        self.record_stats();
    }

    /// Writes one connection's run of frames; reports what left at once.
    fn write_run(&mut self, conn: ConnId, run: &mut Vec<Outbound>) {
        let Some(outlet) = self.conns.get(&conn) else {
            run.clear();
            return;
        };
        let written = outlet.send_all(run);
        if written > 0 {
            self.engine.handle_sent(conn, written);
        }
    }

    fn log(&self, event: Event) {
        let tenant = self.tenant.as_str();
        match event {
            Event::Request { conn, line } => tracing::info!(
                tenant,
                conn = conn.0,
                protocol = line.protocol,
                tag = line.tag,
                id = line.id,
                public_key = line.public_key,
                store_id = line.store_id,
                batches = line.batches,
                entries = line.entries,
                start_sequence = line.start_sequence,
                part = line.part,
                peers = self.engine.connection_count(),
                connections = self.shared.connections.load(Ordering::Relaxed),
                "request"
            ),
            Event::Closing { conn, code, reason } => {
                tracing::info!(tenant, conn = conn.0, code, %reason, "closing connection");
                let per_tenant = self.shared.metrics.per_tenant().is_some();
                self.shared.record_close(CloseRecord {
                    at_ms: self.shared.unix_now().0,
                    reason: CloseKind::of_code(code).label(),
                    code,
                    detail: reason,
                    tenant: per_tenant.then(|| tenant.to_owned()),
                });
            }
            Event::StorageFailed { message } => {
                tracing::error!(tenant, %message, "storage failed")
            }
        }
    }
}
