//! Loaded tenants: tenant name → the channel of its actor.
//!
//! Like a Durable Object, a tenant is loaded on its first connection (its
//! actor opens its store) and unloaded when it has been idle for a grace
//! period, so idle tenants cost only disk.
//!
//! The unload race (a connection arriving while the actor decides to stop)
//! is closed by one rule: [`Registry::connect`] sends its `Open` message
//! while holding the registry lock, and an actor removes itself only while
//! holding that lock and only if its inbox is empty. So an `Open` is either
//! in the inbox before the actor looks (and the actor stays), or sent after
//! the entry is gone (and a fresh actor is started). A sender never meets a
//! dead channel, except for an actor that panicked, whose entry is then
//! replaced.

use crate::outlet::Outlet;
use crate::shared::{Shared, lock};
use crate::store;
use crate::tenant::{self, LogRef, Membership, OpenRefused, TenantMsg};
use evsync_core::access::{Grant, Protocol};
use evsync_core::proto::v3::ConnId;
use evsync_core::wire::RemoteId;
use evsync_storage_postgres::TenantIdentity;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::task_tracker::TaskTrackerToken;

struct Slot {
    tx: mpsc::UnboundedSender<TenantMsg>,
    generation: u64,
}

#[derive(Default)]
struct State {
    tenants: HashMap<String, Slot>,
    /// Tenants an operator holds (deleting, importing): no connection
    /// reaches them until the hold is released.
    held: HashSet<String>,
    next_generation: u64,
    shutting_down: bool,
}

/// The loaded tenants of one server.
pub(crate) struct Registry {
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// The number of loaded tenants (actor tasks alive, store open),
    /// published on every change so that tests and operators can await an
    /// unload instead of polling. It drops only after the actor's task has
    /// ended, i.e. after its files are closed.
    loaded: watch::Sender<usize>,
}

/// Why a connection could not be attached to its tenant.
#[derive(Debug)]
pub(crate) enum ConnectError {
    ShuttingDown,
    /// The tenant's store could not be opened: `503` with this reason.
    Storage(String),
    /// The signed token was minted before the tenant's revocation: `401`.
    Revoked,
    /// Over one of the server's limits: `503` with `Retry-After`.
    Limit(LimitHit),
    /// An operator is deleting or replacing the tenant: `503` with
    /// `Retry-After`.
    Held,
    /// The tenant's writes are behind its write rate limit: `429` with
    /// `Retry-After` of this many seconds.
    Throttled(u64),
}

impl From<OpenRefused> for ConnectError {
    fn from(refused: OpenRefused) -> Self {
        match refused {
            OpenRefused::Storage(reason) => ConnectError::Storage(reason),
            OpenRefused::Revoked => ConnectError::Revoked,
            OpenRefused::Throttled { retry_after_secs } => {
                ConnectError::Throttled(retry_after_secs)
            }
            OpenRefused::TenantFull => ConnectError::Limit(LimitHit::TenantConnections),
            // Sent again too often: the tenant keeps being dropped.
            OpenRefused::Leaving => {
                ConnectError::Storage("the tenant was deleted or replaced; retry".into())
            }
        }
    }
}

/// A tenant held by an operator (see [`Registry::hold`]): released when
/// dropped.
pub(crate) struct TenantHold {
    registry: Arc<Registry>,
    tenant: String,
}

impl Drop for TenantHold {
    fn drop(&mut self) {
        lock(&self.registry.state).held.remove(&self.tenant);
    }
}

/// Which limit a connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Connections,
    TenantConnections,
    Tenants,
}

impl LimitHit {
    /// The answer's body.
    pub fn body(self) -> &'static str {
        match self {
            LimitHit::Connections => "Too many connections.",
            LimitHit::TenantConnections => "Too many connections to this tenant.",
            LimitHit::Tenants => "Too many tenants loaded.",
        }
    }

    /// The metrics label (`evsync_connections_refused_total{limit}`).
    pub fn label(self) -> &'static str {
        match self {
            LimitHit::Connections => "connections",
            LimitHit::TenantConnections => "tenant_connections",
            LimitHit::Tenants => "tenants",
        }
    }

    /// The refusal log's reason.
    pub fn reason(self) -> &'static str {
        match self {
            LimitHit::Connections => "connection limit",
            LimitHit::TenantConnections => "tenant connection limit",
            LimitHit::Tenants => "tenant limit",
        }
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revoked {
    /// The tenant's stored "not before" (Unix ms), now in force.
    pub not_before: u64,
    /// Connections it closed.
    pub closed: usize,
}

/// A connection registered with its tenant's actor, not yet (or no longer)
/// necessarily backed by a socket. Dropping it tells the actor the
/// connection is gone, unless the engine closed it first.
pub(crate) struct Attached {
    pub tenant: String,
    pub conn: ConnId,
    pub remote_id: RemoteId,
    pub tx: mpsc::UnboundedSender<TenantMsg>,
    /// Where the actor writes this connection's frames.
    pub outlet: Arc<Outlet>,
    pub shared: Arc<Shared>,
    /// Set when the engine closed this connection (it has forgotten it).
    pub closed_by_engine: bool,
    /// Keeps shutdown waiting until this socket's close frame is out.
    _socket: TaskTrackerToken,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.shared.attached.fetch_sub(1, Ordering::Relaxed);
        if !self.closed_by_engine {
            // The actor may be gone already (unloaded after the engine
            // closed us, or panicked); then there is nothing to tell.
            let _ = self.tx.send(TenantMsg::Close { conn: self.conn });
        }
    }
}

/// How many times an Open that reached a leaving actor is sent again (each
/// time the registry has forgotten that actor, so once is nearly always
/// enough; the bound keeps a tenant dropped again and again from holding a
/// connection in a loop).
const OPEN_AGAIN: u32 = 3;

impl Registry {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Registry {
            shared,
            state: Mutex::new(State::default()),
            loaded: watch::Sender::new(0),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Loaded tenants, for `/healthz`.
    pub fn loaded_tenants(&self) -> usize {
        *self.loaded.borrow()
    }

    /// Follows the number of loaded tenants.
    pub fn watch_loaded(&self) -> watch::Receiver<usize> {
        self.loaded.subscribe()
    }

    /// Registers a new connection admitted with `grant` (expiry on the
    /// engine's clock) with `tenant`'s actor, loading the tenant if needed,
    /// and waits until its store is open and its `Hello` queued.
    pub async fn connect(
        self: &Arc<Self>,
        tenant: &str,
        protocol: Protocol,
        grant: Grant,
    ) -> Result<Attached, ConnectError> {
        let limits = self.shared.config.limits;
        // Reserved before anything else, released by `Attached::drop` (or
        // below when refused before one exists).
        if self.shared.attached.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
            self.shared.attached.fetch_sub(1, Ordering::Relaxed);
            return Err(ConnectError::Limit(LimitHit::Connections));
        }
        let conn = self.shared.next_conn_id();
        let outlet = Outlet::new();
        let open = |ready| TenantMsg::Open {
            conn,
            protocol,
            outlet: outlet.clone(),
            grant: grant.clone(),
            ready,
        };
        let (ready_tx, mut ready_rx) = oneshot::channel();
        let tx = match self.send_open(tenant, open(ready_tx)) {
            Ok(tx) => tx,
            Err(err) => {
                self.shared.attached.fetch_sub(1, Ordering::Relaxed);
                return Err(err);
            }
        };
        // From here on, dropping `attached` (the HTTP request was cancelled,
        // the upgrade failed) tells the actor the connection is gone.
        let mut attached = Attached {
            tenant: tenant.to_owned(),
            conn,
            remote_id: RemoteId([0; 16]),
            tx,
            outlet: outlet.clone(),
            shared: self.shared.clone(),
            closed_by_engine: false,
            _socket: self.shared.sockets.token(),
        };
        // An Open that waited in the inbox of an actor told to leave (the
        // tenant deleted or replaced) is answered `Leaving` once that actor
        // has left the table: sent again, it loads the tenant afresh, and
        // the client is spared a 503 and a reconnection.
        let mut sent_again = 0;
        loop {
            let refused = match ready_rx.await {
                Ok(Ok(remote_id)) => {
                    attached.remote_id = remote_id;
                    return Ok(attached);
                }
                Ok(Err(refused)) => refused,
                Err(_) => OpenRefused::Storage(
                    "the tenant failed while loading (see the server log)".into(),
                ),
            };
            // The actor did not take this connection: nothing to tell it.
            attached.closed_by_engine = true;
            if !matches!(refused, OpenRefused::Leaving) || sent_again == OPEN_AGAIN {
                return Err(refused.into());
            }
            sent_again += 1;
            let (ready_tx, again) = oneshot::channel();
            ready_rx = again;
            attached.tx = self.send_open(tenant, open(ready_tx))?;
            attached.closed_by_engine = false;
        }
    }

    /// Sends `open` to `tenant`'s actor, loading the tenant if it is not
    /// loaded; the actor's inbox, or why the connection is refused.
    fn send_open(
        self: &Arc<Self>,
        tenant: &str,
        open: TenantMsg,
    ) -> Result<mpsc::UnboundedSender<TenantMsg>, ConnectError> {
        let limits = self.shared.config.limits;
        let mut state = lock(&self.state);
        if state.shutting_down {
            return Err(ConnectError::ShuttingDown);
        }
        if state.held.contains(tenant) {
            return Err(ConnectError::Held);
        }
        if !state.tenants.contains_key(tenant) && state.tenants.len() >= limits.max_tenants {
            return Err(ConnectError::Limit(LimitHit::Tenants));
        }
        // A dead channel means the actor panicked: its entry is replaced by
        // a fresh actor (spawn_actor overwrites it).
        let pending = match state.tenants.get(tenant) {
            Some(slot) => slot
                .tx
                .send(open)
                .map(|()| slot.tx.clone())
                .map_err(|e| e.0),
            None => Err(open),
        };
        Ok(match pending {
            Ok(tx) => tx,
            Err(open) => self.spawn_actor(&mut state, tenant, open),
        })
    }

    /// Revokes `tenant`'s tokens as of `now_ms` (Unix ms): stores the new
    /// "not before" first (so that a restart or a later load refuses old
    /// tokens), then, if the tenant is loaded, has its actor close every
    /// connection and refuse old tokens from then on.
    pub async fn revoke(&self, tenant: &str, now_ms: u64) -> Result<Revoked, String> {
        let not_before = store::revoke_tokens(&self.shared, tenant, now_ms).await?;
        let (closed_tx, closed_rx) = oneshot::channel();
        let msg = TenantMsg::Revoke {
            not_before,
            closed: closed_tx,
        };
        // Under the lock, as `connect` sends: an actor that loaded (and read
        // the old value) before the write is still in the table and gets
        // the message; one that loads after the write reads the new value.
        let sent = lock(&self.state)
            .tenants
            .get(tenant)
            .is_some_and(|slot| slot.tx.send(msg).is_ok());
        let closed = if sent {
            closed_rx.await.unwrap_or(0)
        } else {
            0
        };
        Ok(Revoked { not_before, closed })
    }

    /// Takes `tenant` away from its connections so that an operator can
    /// change its files: from now on connections to it are refused
    /// ([`ConnectError::Held`]); if it is loaded, its sockets are closed
    /// with `code` and `reason` and this waits until its store is closed.
    /// Refused (`Err`) if another operation holds the tenant already.
    pub async fn hold(
        self: &Arc<Self>,
        tenant: &str,
        code: u16,
        reason: &str,
    ) -> Result<TenantHold, String> {
        let (gone_tx, gone_rx) = oneshot::channel();
        let sent = {
            let mut state = lock(&self.state);
            if !state.held.insert(tenant.to_owned()) {
                return Err(format!("another operation on tenant {tenant} is under way"));
            }
            state.tenants.get(tenant).is_some_and(|slot| {
                slot.tx
                    .send(TenantMsg::Evict {
                        code,
                        reason: reason.to_owned(),
                        gone: gone_tx,
                    })
                    .is_ok()
            })
        };
        let hold = TenantHold {
            registry: self.clone(),
            tenant: tenant.to_owned(),
        };
        if sent {
            // An actor that panicked drops the sender: its files are closed
            // with its task either way.
            let _ = gone_rx.await;
        }
        Ok(hold)
    }

    /// The names of the loaded tenants (in no order).
    pub fn loaded_tenant_names(&self) -> Vec<String> {
        lock(&self.state).tenants.keys().cloned().collect()
    }

    /// Tells `tenant`, if it is loaded, that another writer committed to
    /// `log` up to `head`; true if it was told. A tenant that is not
    /// loaded has no subscriber to wake.
    pub fn log_advanced(&self, tenant: &str, log: &LogRef, head: u64) -> bool {
        lock(&self.state).tenants.get(tenant).is_some_and(|slot| {
            slot.tx
                .send(TenantMsg::LogAdvanced {
                    log: log.clone(),
                    head,
                })
                .is_ok()
        })
    }

    /// Tells `tenant`, if it is loaded, that its tokens were revoked up to
    /// `not_before` (Unix ms) by another node; true if it was told. Its
    /// actor closes its sockets if that is later than what it holds.
    pub fn revoked_elsewhere(&self, tenant: &str, not_before: u64) -> bool {
        let (closed, _) = oneshot::channel();
        lock(&self.state).tenants.get(tenant).is_some_and(|slot| {
            slot.tx
                .send(TenantMsg::Revoke { not_before, closed })
                .is_ok()
        })
    }

    /// Tells `tenant`, if it is loaded, that it was deleted or replaced
    /// through another node by transaction `xact`: unless it loaded after
    /// that committed, its sockets are closed with 1001 and `reason` and
    /// the next connection loads it afresh.
    pub fn dropped_elsewhere(&self, tenant: &str, reason: &str, xact: Option<u64>) {
        if let Some(slot) = lock(&self.state).tenants.get(tenant) {
            let _ = slot.tx.send(TenantMsg::Drop {
                reason: reason.to_owned(),
                xact,
            });
        }
    }

    /// Tells `tenant`, if it is loaded, the row its store held at a read
    /// begun at `read_at` (`None`: none): its actor drops itself if that
    /// is not the one it loaded.
    pub fn check_identity(
        &self,
        tenant: &str,
        stored: Option<TenantIdentity>,
        read_at: tokio::time::Instant,
    ) {
        if let Some(slot) = lock(&self.state).tenants.get(tenant) {
            let _ = slot.tx.send(TenantMsg::CheckIdentity { stored, read_at });
        }
    }

    /// Open connections of `tenant`: 0 when it is not loaded.
    pub async fn connections_of(&self, tenant: &str) -> usize {
        let (reply, answer) = oneshot::channel();
        let sent = lock(&self.state)
            .tenants
            .get(tenant)
            .is_some_and(|slot| slot.tx.send(TenantMsg::Count { reply }).is_ok());
        if sent { answer.await.unwrap_or(0) } else { 0 }
    }

    fn spawn_actor(
        self: &Arc<Self>,
        state: &mut State,
        tenant: &str,
        first: TenantMsg,
    ) -> mpsc::UnboundedSender<TenantMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(first); // `rx` is alive: cannot fail
        state.next_generation += 1;
        let generation = state.next_generation;
        state.tenants.insert(
            tenant.to_owned(),
            Slot {
                tx: tx.clone(),
                generation,
            },
        );
        self.loaded.send_modify(|n| *n += 1);
        let registry = self.clone();
        let name = tenant.to_owned();
        // The actor runs in its own task so that a panic in it (an engine
        // bug) is caught by tokio; the supervisor logs it and drops the
        // dead entry. The actor's connections see their channel close and
        // are closed with 1011.
        self.shared.actors.spawn(async move {
            let actor = tokio::spawn(tenant::run(
                registry.clone(),
                registry.shared.clone(),
                name.clone(),
                generation,
                rx,
            ));
            if let Err(err) = actor.await {
                tracing::error!(tenant = %name, %err, "tenant actor failed; its connections were closed");
                registry.forget(&name, generation);
            }
            registry.loaded.send_modify(|n| *n -= 1);
        });
        tx
    }

    /// Removes `tenant`'s entry if it still belongs to `generation`.
    fn forget(&self, tenant: &str, generation: u64) {
        let mut state = lock(&self.state);
        if state
            .tenants
            .get(tenant)
            .is_some_and(|slot| slot.generation == generation)
        {
            state.tenants.remove(tenant);
        }
    }

    /// Refuses new connections from now on and asks every loaded tenant to
    /// shut down gracefully.
    pub fn shutdown(&self) {
        let mut state = lock(&self.state);
        state.shutting_down = true;
        for slot in state.tenants.values() {
            let _ = slot.tx.send(TenantMsg::Shutdown);
        }
    }

    /// Whether [`Registry::shutdown`] was called (actors check it when they
    /// start, since they may have been spawned just before).
    pub fn is_shutting_down(&self) -> bool {
        lock(&self.state).shutting_down
    }
}

/// The registry side of the unload rule (see the module doc), as the tenant
/// actors see it.
impl Membership for Registry {
    /// Called by an idle actor: removes it from the registry unless a
    /// message arrived meanwhile. Returns true if the actor must stop.
    fn try_unload(
        &self,
        tenant: &str,
        generation: u64,
        inbox: &mut mpsc::UnboundedReceiver<TenantMsg>,
    ) -> bool {
        let mut state = lock(&self.state);
        if !inbox.is_empty() {
            return false;
        }
        if state
            .tenants
            .get(tenant)
            .is_some_and(|slot| slot.generation == generation)
        {
            state.tenants.remove(tenant);
        }
        inbox.close();
        true
    }

    fn is_shutting_down(&self) -> bool {
        Registry::is_shutting_down(self)
    }

    fn leave(&self, tenant: &str, generation: u64) {
        self.forget(tenant, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServerConfig, StorageConfig};

    fn registry() -> Arc<Registry> {
        let listen = "127.0.0.1:0".parse().expect("an address");
        let config = ServerConfig::new(listen, StorageConfig::Memory);
        Registry::new(Arc::new(Shared::new(config, None)))
    }

    /// A connection whose Open waits in the actor's inbox behind the
    /// tenant's drop (a deletion noticed while it connected) is attached
    /// to a fresh actor, not refused with 503.
    #[tokio::test]
    async fn an_open_queued_behind_a_drop_reaches_a_fresh_actor() {
        let registry = registry();
        let first = registry
            .connect("t", Protocol::V3, Grant::full())
            .await
            .expect("the first connection");
        // This runtime has one thread and the actor runs only while the
        // test awaits: the drop and the next Open are both in its inbox
        // when it next runs, the drop first.
        registry.dropped_elsewhere("t", "deleted through another node", None);
        let second = registry
            .connect("t", Protocol::V3, Grant::full())
            .await
            .unwrap_or_else(|e| panic!("the Open sent again reaches a fresh actor: {e:?}"));
        assert!(!first.tx.same_channel(&second.tx), "a fresh actor");
        assert!(!second.tx.is_closed(), "the fresh actor runs");
    }
}
