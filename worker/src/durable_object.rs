//! `SyncDurableObject`: one per tenant (`idFromName(tenant)`), holding its
//! sockets with the hibernation API and driving one core `Engine`.
//!
//! - The engine is created lazily, by the first event that needs it, with
//!   the remoteId read from storage. After hibernation (sockets still open,
//!   memory gone) it is created again and every socket's connection is
//!   restored from its attachment, subscriptions included.
//! - Ping/Pong and StopChanges are the engine's, so Effect clients need no
//!   `disablePing` (but each Ping wakes a hibernating object; see
//!   `docs/cloudflare.md`).
//! - Chunk reassembly is per connection inside the engine, and bounded;
//!   an incomplete message expires on the object's alarm (`alarm`), set
//!   after every drain from the engine's next deadline, even when no
//!   further message arrives.
//! - `SYNC_IDLE_SOCKET_TIMEOUT` closes quiet sockets (engine deadline, same
//!   alarm); their last-heard times survive hibernation in `crate::idle`,
//!   and an alarm on a hibernated object wakes the engine so that the
//!   quiet sockets and those whose token expired are closed.
//! - Signed tokens: what a socket's token allows arrives from the Worker
//!   (`GRANT_HEADER`) and is kept in its attachment; a token minted before
//!   the tenant's revocation (stored with the tenant's data) is refused
//!   with `401`, and `POST /revoke` (the admin API, via the Worker) stores
//!   a new one and closes every socket.
//! - `GET /stats` (the admin API, via the Worker): the tenant's figures as
//!   JSON, read from storage and the open sockets without waking the
//!   engine.
//! - DO SQLite: the first engine start of the object's lifetime puts the
//!   tenant in the tenant index (`crate::tenant_index`, in the
//!   background); the index object itself is one of this class, serving
//!   `/index/…`.
//! - `DELETE /delete`, `GET /export`, `POST /import` (the admin API, via
//!   the Worker): `crate::tenant_ops`. While one of them holds the tenant
//!   (D1), connections are refused (`503`, `Retry-After`) and no engine
//!   starts; the sockets it closed are marked in their attachments, so that
//!   an engine started while their close is under way does not restore
//!   them, and frames from sockets the engine does not hold are dropped.

use crate::attachment;
use crate::attachment::Saved;
use crate::config;
use crate::driver::{self, Driver, Live};
use crate::http::{
    GRANT_HEADER, GrantHeader, PROTOCOL_HEADER, REFUSAL_HEADER, TENANT_HEADER, VERSION_HEADER,
    json, text,
};
use crate::idle::{self, HeardLog};
use crate::js;
use crate::log;
use crate::object_meta;
use crate::storage::Backend;
use crate::tenant_index;
use crate::tenant_ops::{self, Ops};
use bytes::Bytes;
use evsync_core::access::Protocol;
use evsync_core::proto::close::{code, truncate_reason};
use evsync_core::proto::tenant::TenantEngines;
use evsync_core::proto::v3::ConnId;
use evsync_core::proto::v4;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use worker::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair, durable_object,
};

/// The answer of `GET /admin/tenants/<t>/stats` (see `docs/cloudflare.md`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsAnswer<'a> {
    tenant: &'a str,
    storage: &'static str,
    /// `None` for a tenant that never had a connection.
    remote_id: Option<String>,
    /// Open sockets, hibernated ones included.
    connections: usize,
    /// Open sockets the engine does not hold (the object is asleep).
    hibernated_connections: usize,
    logs: u64,
    entries: u64,
    bytes: u64,
    /// The store's, else this object's last commit since it woke.
    last_write_ms: Option<u64>,
    /// The engine's appends since the object woke (group commit: a burst
    /// of writes takes fewer).
    appends_since_wake: u64,
    tokens_not_before: Option<u64>,
    /// Effect v4 stores with batches (`logs`, `entries`, `bytes` count v3).
    v4_stores: u64,
    /// Entries in them.
    v4_entries: u64,
}

/// Why a socket whose connection cannot be restored is closed.
const STATE_LOST: &str = "connection state lost";

/// Why no engine starts while an operator's delete or import holds the
/// tenant.
const HELD: &str = "the tenant is being changed by an operator";

/// The Durable Object class bound as `SYNC_DO`. The attribute is bare
/// because it takes one handler kind at most and this class needs two:
/// hibernatable WebSockets and the timeout alarm (bare binds every kind;
/// the TCP `connect` handler it also exports is never called).
#[durable_object]
pub struct SyncDurableObject {
    state: State,
    env: Env,
    driver: Driver,
    heard: HeardLog,
    ops: Rc<Ops>,
}

impl DurableObject for SyncDurableObject {
    fn new(state: State, env: Env) -> Self {
        SyncDurableObject {
            state,
            env,
            driver: Driver::default(),
            heard: HeardLog::default(),
            ops: Rc::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let url = req.url()?;
        if url.path() == "/connect" {
            return self.accept_upgrade(&req).await;
        }
        if url.path() == "/revoke" && req.method() == worker::Method::Post {
            return self.revoke(&req).await;
        }
        if url.path() == "/stats" && req.method() == worker::Method::Get {
            return self.stats(&req).await;
        }
        if matches!(
            url.path(),
            tenant_index::REGISTER | tenant_index::DEREGISTER | tenant_index::LIST
        ) {
            // Sent only to the index object (tenant_index::INDEX_NAME).
            return tenant_index::serve(&self.state, &req, url.path());
        }
        if matches!(url.path(), "/delete" | "/export" | "/import") {
            let Some(tenant) = req.headers().get(TENANT_HEADER)? else {
                return text(400, "Tenant is required.");
            };
            let ops = self.operations();
            return match (url.path(), req.method()) {
                ("/delete", worker::Method::Delete) => ops.delete(&tenant).await,
                ("/export", worker::Method::Get) => ops.export(&tenant).await,
                ("/import", worker::Method::Post) => {
                    let replace = evsync_core::access::wants_replace(url.query());
                    ops.import(&mut req, &tenant, replace).await
                }
                _ => text(405, "Method not allowed"),
            };
        }
        #[cfg(feature = "selftest")]
        if let Some(backend) = url.path().strip_prefix(crate::selftest::ROUTE_PREFIX)
            && config::flag(&self.env, crate::selftest::ENABLE_VAR) == Ok(true)
        {
            return crate::selftest::in_object(&self.state, &self.env, backend).await;
        }
        text(404, "Not found")
    }

    /// The engine's next deadline passed (see `crate::alarm`): expire what
    /// is due, then drain, which sets the next alarm if one is needed.
    async fn alarm(&self) -> Result<Response> {
        self.driver.alarm.fired();
        if self.ops.held() {
            // An operator's delete or import stopped the engine; the next
            // connection starts a new one.
            return Response::empty();
        }
        // Quiet sockets (idle timeout) and expired tokens of a hibernated
        // object are what an alarm on it is for: wake the engine (which
        // restores every socket with its grant and last-heard time) so
        // that it closes them. An alarm is only set for a deadline, so
        // this wakes the engine no more often than there is work.
        if !self.driver.is_live()
            && !self.state.get_websockets().is_empty()
            && let Err(reason) = self.ensure_live(None).await
        {
            if reason != HELD {
                log::error!("storage unavailable", reason = reason);
            }
            return Response::empty();
        }
        // Not live: woken from hibernation, which took every incomplete
        // message with it; nothing to expire, no engine worth creating.
        let live = self
            .driver
            .with(|live| live.engine.handle_timeout(driver::now()))
            .is_some();
        if live {
            self.driver.pump(&self.state.storage()).await;
        }
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        // A text frame is taken as its UTF-8 bytes, as Effect's server does.
        let frame = match message {
            WebSocketIncomingMessage::Binary(bytes) => Bytes::from(bytes),
            WebSocketIncomingMessage::String(text) => Bytes::from(text.into_bytes()),
        };
        if self.ops.held() {
            // Every socket was closed by the hold: this one is closing.
            return Ok(());
        }
        if let Err(reason) = self.ensure_live(None).await {
            if reason == HELD {
                return Ok(());
            }
            log::error!("storage unavailable", reason = reason);
            let _ = ws.close(Some(code::INTERNAL_ERROR), Some(truncate_reason(reason)));
            return Ok(());
        }
        let Some(conn) = attachment::conn_id(&self.state, &ws) else {
            let _ = ws.close(Some(code::INTERNAL_ERROR), Some(STATE_LOST));
            return Ok(());
        };
        let sql = self.state.storage().sql();
        self.driver.with(|live| {
            if !live.sockets.contains_key(&conn) {
                // A socket the engine closed, or one an operator's delete
                // or import closed: its frames go nowhere.
                return;
            }
            let now = driver::now();
            live.engine.handle_timeout(now);
            live.engine.handle_message(conn, frame, now);
            live.touched.insert(conn);
            self.heard.heard(&sql, conn, now);
        });
        self.driver.pump(&self.state.storage()).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        self.closed(&ws).await;
        // Completes the closing handshake on runtimes that do not reply to
        // a close frame themselves.
        let _ = ws.close(Some(1000), Some(""));
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.closed(&ws).await;
        Ok(())
    }
}

impl SyncDurableObject {
    /// What `crate::tenant_ops` works with.
    fn operations(&self) -> tenant_ops::Object<'_> {
        tenant_ops::Object {
            state: &self.state,
            env: &self.env,
            driver: &self.driver,
            ops: &self.ops,
        }
    }

    /// Accepts a socket forwarded by the Worker: `101` with the socket,
    /// `401` when its token was revoked, or `503` with the reason when
    /// storage cannot start.
    async fn accept_upgrade(&self, req: &Request) -> Result<Response> {
        let Some(tenant) = req.headers().get(TENANT_HEADER)? else {
            return text(400, "Tenant is required.");
        };
        let protocol = req.headers().get(PROTOCOL_HEADER)?;
        let version = match req.headers().get(VERSION_HEADER)?.as_deref() {
            Some("v4") => Protocol::V4,
            Some("v4u") => Protocol::V4Unencrypted,
            _ => Protocol::V3,
        };
        let grant = match GrantHeader::decode(req.headers().get(GRANT_HEADER)?.as_deref()) {
            Ok(grant) => grant,
            Err(reason) => {
                log::error!("bad forwarded request", tenant = tenant, reason = reason);
                return text(400, "Bad request.");
            }
        };
        if self.ops.held() {
            return tenant_ops::held_response();
        }
        if let Err(reason) = self.ensure_live(Some(&tenant)).await {
            if reason == HELD {
                return tenant_ops::held_response();
            }
            log::error!("storage unavailable", tenant = tenant, reason = reason);
            return text(503, &reason);
        }
        let revoked = self
            .driver
            .with(|live| grant.is_revoked_by(live.tokens_not_before))
            .unwrap_or(false);
        if revoked {
            let response = text(401, "Unauthorized")?;
            response.headers().set("WWW-Authenticate", "Bearer")?;
            return Ok(response);
        }
        // The Worker refuses requests while the setting is unusable.
        let max =
            config::max_connections_per_tenant(&self.env).map_err(worker::Error::RustError)?;
        let full = self
            .driver
            .with(|live| live.engine.connection_count() >= max)
            .unwrap_or(false);
        if full {
            let response = text(503, "Too many connections to this tenant.")?;
            let retry = evsync_core::settings::LIMIT_RETRY_AFTER_SECS.to_string();
            response.headers().set("Retry-After", &retry)?;
            response
                .headers()
                .set(REFUSAL_HEADER, "tenant connection limit")?;
            return Ok(response);
        }
        // Over its write rate: new sockets would only add writes to wait.
        let throttled = self
            .driver
            .with(|live| live.engine.write_retry_after_secs(driver::now()))
            .flatten();
        if let Some(retry_after_secs) = throttled {
            let response = text(429, "Too many writes to this tenant; retry later.")?;
            response
                .headers()
                .set("Retry-After", &retry_after_secs.to_string())?;
            response
                .headers()
                .set(REFUSAL_HEADER, "tenant write rate limit")?;
            return Ok(response);
        }
        let pair = WebSocketPair::new()?;
        let storage = self.state.storage();
        let sql = storage.sql();
        let accepted = self.driver.with(|live| {
            let conn = ConnId(live.next_conn);
            live.next_conn += 1;
            self.state
                .accept_websocket_with_tags(&pair.server, &[&attachment::tag(conn)]);
            let saved = match version {
                Protocol::V3 => Saved::V3(Vec::new()),
                Protocol::V4 | Protocol::V4Unencrypted => Saved::V4(v4::SavedSession {
                    plaintext: version == Protocol::V4Unencrypted,
                    identities: Vec::new(),
                    streams: Vec::new(),
                }),
            };
            attachment::save(&sql, &pair.server, conn, &grant, &saved)?;
            live.sockets.insert(conn, pair.server.clone());
            live.saved.insert(conn, saved);
            let now = driver::now();
            live.engine.handle_open(conn, version, grant, now);
            self.heard.heard(&sql, conn, now);
            if live.debug {
                log::info!(
                    "open",
                    tenant = live.tenant,
                    conn = conn.0,
                    peers = live.engine.connection_count()
                );
            }
            Ok::<(), String>(())
        });
        if let Some(Err(reason)) = accepted {
            return text(503, &reason);
        }
        self.driver.pump(&storage).await;
        let mut response = Response::from_websocket(pair.client)?;
        if let Some(protocol) = protocol {
            response
                .headers_mut()
                .set("Sec-WebSocket-Protocol", &protocol)?;
        }
        Ok(response)
    }

    /// `POST /revoke` from the admin API: stores the tenant's new "not
    /// before" (now), then closes every socket (hibernated ones are
    /// restored first, so none is missed) and answers with what it did.
    async fn revoke(&self, req: &Request) -> Result<Response> {
        let Some(tenant) = req.headers().get(TENANT_HEADER)? else {
            return text(400, "Tenant is required.");
        };
        if let Err(reason) = self.ensure_live(Some(&tenant)).await {
            log::error!("storage unavailable", tenant = tenant, reason = reason);
            return text(503, &reason);
        }
        let Some(backend) = self.driver.with(|live| live.backend.clone()) else {
            return text(503, "the tenant's engine stopped");
        };
        let not_before = match backend.set_tokens_not_before(driver::now().0).await {
            Ok(stored) => stored,
            Err(reason) => {
                log::error!("admin: revoking failed", tenant = tenant, reason = reason);
                return text(503, &reason);
            }
        };
        let closed = self
            .driver
            .with(|live| {
                live.tokens_not_before = live.tokens_not_before.max(Some(not_before));
                let open = live.engine.connection_count();
                live.engine.handle_revoke();
                open
            })
            .unwrap_or(0);
        self.driver.pump(&self.state.storage()).await;
        log::info!(
            "admin: tokens revoked",
            tenant = tenant,
            tokens_not_before = not_before,
            closed = closed
        );
        let body = serde_json::json!({
            "tenant": tenant,
            "tokensNotBefore": not_before,
            "closedConnections": closed,
        });
        json(200, &body.to_string())
    }

    /// `GET /stats` from the admin API: what the tenant's store holds, how
    /// many sockets are open, when this object last committed. Read
    /// without waking the engine, so hibernated sockets stay hibernated
    /// (and are counted as such), and without creating a remoteId for a
    /// tenant that has none (`null`).
    async fn stats(&self, req: &Request) -> Result<Response> {
        let Some(tenant) = req.headers().get(TENANT_HEADER)? else {
            return text(400, "Tenant is required.");
        };
        let awake = self.driver.with(|live| {
            let remote_id = live.engine.remote_id();
            let open = live.engine.connection_count();
            (live.backend.clone(), Some(remote_id), open)
        });
        let awake_at_start = awake.is_some();
        let (backend, remote_id, in_engine) = match awake {
            Some(awake) => awake,
            None => {
                let opened = match Backend::open(&self.state, &self.env, &tenant).await {
                    Ok(backend) => backend.stored_remote_id().await.map(|id| (backend, id)),
                    Err(reason) => Err(reason),
                };
                match opened {
                    Ok((backend, remote_id)) => (backend, remote_id, 0),
                    Err(reason) => {
                        log::error!("storage unavailable", tenant = tenant, reason = reason);
                        return text(503, &reason);
                    }
                }
            }
        };
        // Asleep, every open socket is hibernated (restored by the next
        // event); awake, the engine holds them all.
        let hibernated = if awake_at_start {
            0
        } else {
            self.state.get_websockets().len()
        };
        let figures = match backend.stats().await {
            Ok(stats) => match backend.v4_figures().await {
                Ok(v4) => backend.tokens_not_before().await.map(|t| (stats, v4, t)),
                Err(reason) => Err(reason),
            },
            Err(reason) => Err(reason),
        };
        let (stats, v4, tokens_not_before) = match figures {
            Ok(figures) => figures,
            Err(reason) => {
                log::error!("admin: stats failed", tenant = tenant, reason = reason);
                return text(503, &reason);
            }
        };
        let body = StatsAnswer {
            tenant: &tenant,
            storage: backend.describe(),
            remote_id: remote_id.map(|id| id.to_uuid_string()),
            connections: in_engine + hibernated,
            hibernated_connections: hibernated,
            logs: stats.logs,
            entries: stats.entries,
            bytes: stats.bytes,
            last_write_ms: stats.last_write_ms.or(self.driver.last_write_ms.get()),
            appends_since_wake: self.driver.appends.get(),
            tokens_not_before,
            v4_stores: v4.stores,
            v4_entries: v4.entries,
        };
        json(200, &serde_json::to_string(&body).unwrap_or_default())
    }

    /// A socket closed or failed: the engine forgets its connection.
    async fn closed(&self, ws: &WebSocket) {
        let Some(conn) = attachment::conn_id(&self.state, ws) else {
            return;
        };
        let storage = self.state.storage();
        attachment::forget_overflow(&storage.sql(), conn);
        self.heard.forget(&storage.sql(), conn);
        let was_live = self
            .driver
            .with(|live| {
                live.sockets.remove(&conn);
                live.saved.remove(&conn);
                live.touched.remove(&conn);
                live.engine.handle_close(conn);
                if live.debug {
                    log::info!(
                        "close",
                        tenant = live.tenant,
                        conn = conn.0,
                        peers = live.engine.connection_count()
                    );
                }
            })
            .is_some();
        if was_live {
            self.driver.pump(&storage).await;
        }
    }

    /// Creates the engine if this object has none yet (first connection,
    /// or the first event after hibernation), restoring every open
    /// socket's connection and subscriptions. `tenant` comes from the
    /// Worker's request; after hibernation it is read back from storage.
    async fn ensure_live(&self, tenant: Option<&str>) -> std::result::Result<(), String> {
        if self.driver.is_live() {
            return Ok(());
        }
        if self.ops.held() {
            return Err(HELD.into());
        }
        let epoch = self.ops.epoch();
        let storage = self.state.storage();
        let sql = storage.sql();
        let tenant = match tenant {
            Some(tenant) => {
                object_meta::remember_tenant(&sql, tenant)?;
                tenant.to_string()
            }
            None => object_meta::recall_tenant(&sql)
                .ok_or_else(|| "this object does not know its tenant".to_string())?,
        };
        let backend = Backend::open(&self.state, &self.env, &tenant).await?;
        let remote_id = backend.remote_id().await?;
        let tokens_not_before = backend.tokens_not_before().await?;
        attachment::prepare(&sql)?;
        idle::prepare(&sql)?;
        if self.driver.is_live() {
            // Another event created it while this one awaited storage.
            return Ok(());
        }
        if self.ops.held() || self.ops.epoch() != epoch {
            // An operator's delete or import began meanwhile: what was
            // read may be gone.
            return Err(HELD.into());
        }
        log::info!(
            "tenant loaded",
            tenant = tenant,
            storage = backend.describe(),
            remote_id = remote_id.to_uuid_string()
        );
        // DO SQLite: the tenant (its store now has a remoteId) is put in
        // the tenant index once per object lifetime, in the background.
        if matches!(backend, Backend::DurableObject(_)) && self.ops.needs_indexing() {
            let env = self.env.clone();
            let name = tenant.clone();
            self.state
                .wait_until(async move { tenant_index::register(&env, &name).await });
        }
        // The Worker refuses requests while SYNC_DEBUG is unusable; an
        // object woken by a socket message fails the same way (closed).
        let debug = config::flag(&self.env, config::DEBUG_VAR)?;
        let engine_config = config::engine_config(&self.env)?;
        self.heard
            .timeout_ms
            .set(engine_config.idle_socket_timeout_ms);
        let v4_config = v4::SessionConfig {
            log: engine_config.log.clone(),
            chunks: engine_config.chunks.clone(),
            idle_socket_timeout_ms: engine_config.idle_socket_timeout_ms,
            ..v4::SessionConfig::default()
        };
        let mut engine = TenantEngines::new(
            remote_id,
            engine_config,
            v4_config,
            Box::new(challenge_bytes),
        );
        engine.v3().set_debug(debug);
        engine.v4().set_debug(debug);
        let mut live = Live {
            tenant,
            engine,
            backend,
            sockets: HashMap::new(),
            saved: HashMap::new(),
            touched: BTreeSet::new(),
            next_conn: 0,
            debug,
            tokens_not_before,
        };
        for ws in self.state.get_websockets() {
            if attachment::is_retired(&ws) {
                // Closed by an operator's delete or import, its close still
                // under way: not restored, and its id not reused.
                if let Some(conn) = attachment::conn_id(&self.state, &ws) {
                    live.next_conn = live.next_conn.max(conn.0 + 1);
                }
                continue;
            }
            match attachment::load(&sql, &ws) {
                Some((conn, grant, saved)) => {
                    live.next_conn = live.next_conn.max(conn.0 + 1);
                    match &saved {
                        Saved::V3(positions) => {
                            let heard_at = self.heard.restored_at(&sql, conn, driver::now());
                            live.engine.v3().restore_connection(
                                conn,
                                positions.clone(),
                                grant,
                                heard_at,
                            );
                        }
                        Saved::V4(session) => {
                            let heard_at = self.heard.restored_at(&sql, conn, driver::now());
                            live.engine.restore_v4_connection(
                                conn,
                                grant,
                                session.clone(),
                                heard_at,
                            );
                        }
                    }
                    live.sockets.insert(conn, ws);
                    live.saved.insert(conn, saved);
                    live.touched.insert(conn);
                }
                None => {
                    let _ = ws.close(Some(code::INTERNAL_ERROR), Some(STATE_LOST));
                }
            }
        }
        let restored = live.sockets.len();
        if restored > 0 {
            log::info!(
                "woke with open sockets",
                tenant = live.tenant,
                sockets = restored
            );
        }
        *self.driver.live.borrow_mut() = Some(live);
        // Restored subscriptions catch up from storage.
        self.driver.pump(&storage).await;
        Ok(())
    }
}

/// 32 bytes from `crypto.getRandomValues`, for v4 session-auth challenges.
/// A challenge must not be guessable: without a random source the object
/// fails rather than hand out a predictable one.
fn challenge_bytes() -> [u8; 32] {
    js::random_bytes::<32>().expect("crypto.getRandomValues failed")
}
