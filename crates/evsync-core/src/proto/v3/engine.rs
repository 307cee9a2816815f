//! The v3 engine of one tenant: the v3 session layer over a log service.
//!
//! Contract with an adapter (sans-IO):
//! - feed input with [`Engine::handle_open`], [`Engine::handle_frame`],
//!   [`Engine::handle_storage_response`], [`Engine::handle_sent`],
//!   [`Engine::handle_close`], [`Engine::handle_timeout`],
//!   [`Engine::handle_log_advanced`];
//! - after each input, drain [`Engine::poll_action`] until `None` and carry
//!   out each [`Action`] in order, and drain [`Engine::poll_event`] for logs;
//! - call `handle_timeout` at [`Engine::poll_timeout`] or later.
//!
//! This layer owns what is v3: decoding and chunk reassembly, `Hello`,
//! `Ping`/`Pong`, the empty `WriteEntries` Effect sends after `Hello`,
//! `Changes` packing and close codes. Writes, subscriptions, caching and
//! backpressure are the [`LogService`]'s.

use super::config::EngineConfig;
use super::events::{Action, Event, request_line};
use super::framer::{FrameError, V3Message};
use super::session::Sessions;
use crate::access::{Forbidden, Grant};
use crate::log::{ConnId, LogService, SharedWriteQuota, WriteToken};
use crate::proto::close::{CloseKind, code};
use crate::proto::stats::EngineStats;
use crate::storage::{AppendBatch, RequestId, StorageResponse};
use crate::time::Timestamp;
use crate::wire::{RemoteId, Request, Response, Sequence};
use bytes::Bytes;

/// The v3 sync engine of one tenant. See the module docs for the contract.
pub struct Engine {
    remote_id: RemoteId,
    log: LogService,
    sessions: Sessions,
}

impl Engine {
    /// An engine for a tenant whose stored logs carry `remote_id`.
    pub fn new(remote_id: RemoteId, config: EngineConfig) -> Self {
        Engine {
            remote_id,
            log: LogService::new(config.log.clone()),
            sessions: Sessions::new(config),
        }
    }

    /// The remoteId sent in every `Hello`.
    pub fn remote_id(&self) -> RemoteId {
        self.remote_id
    }

    /// Turns recording of [`Event::Request`] on or off (SYNC_DEBUG).
    pub fn set_debug(&mut self, on: bool) {
        self.sessions.debug = on;
    }

    /// A WebSocket was accepted with `grant` (from admission; its expiry on
    /// this engine's clock): queues its `Hello`. Its idle clock (when the
    /// idle-socket timeout is on) starts at `now`.
    pub fn handle_open(&mut self, conn: ConnId, grant: Grant, now: Timestamp) {
        if self.log.is_shutting_down() {
            self.sessions.stats.closed(CloseKind::GoingAway);
            self.sessions.actions.push_back(Action::Close {
                conn,
                code: code::GOING_AWAY,
                reason: "server shutting down".into(),
            });
            return;
        }
        self.sessions.open(conn, grant, now);
        self.log.open(conn);
        let hello = Response::Hello {
            remote_id: self.remote_id,
        };
        self.send_response(conn, &hello);
    }

    /// Re-creates a connection that outlived this engine (a Durable Object
    /// woken from hibernation keeps its sockets but loses its memory). No
    /// `Hello` is sent again; each subscription resumes from the given next
    /// sequence, as saved from [`Engine::subscription_positions`]. Entries
    /// sent after the positions were saved are sent again, which Effect
    /// clients tolerate (they dedup by entry id). `heard_at` is when its
    /// last frame is known to have arrived (its idle clock starts there; an
    /// adapter that does not know passes the time of the restore). `grant`
    /// is the one it was opened with, as saved from [`Engine::grant`].
    pub fn restore_connection(
        &mut self,
        conn: ConnId,
        subscriptions: Vec<(String, Sequence)>,
        grant: Grant,
        heard_at: Timestamp,
    ) {
        self.sessions.open(conn, grant, heard_at);
        self.log.open(conn);
        for (public_key, next_seq) in subscriptions {
            self.log
                .subscribe(conn, &public_key, next_seq, &mut self.sessions);
        }
    }

    /// The publicKeys `conn` subscribes to and the next sequence each one
    /// is owed, for saving in a socket attachment across hibernation.
    pub fn subscription_positions(&self, conn: ConnId) -> Vec<(String, Sequence)> {
        self.log.subscription_positions(conn)
    }

    /// What `conn` was opened with (a full grant when unrestricted or
    /// unknown), for saving in a socket attachment across hibernation.
    pub fn grant(&self, conn: ConnId) -> Grant {
        self.sessions.grants.grant(conn)
    }

    /// One complete binary frame arrived on `conn` (a text frame is passed
    /// as its UTF-8 bytes). Bad input closes only that connection.
    pub fn handle_frame(&mut self, conn: ConnId, frame: Bytes, now: Timestamp) {
        if self.log.is_shutting_down() || !self.sessions.conns.contains_key(&conn) {
            return;
        }
        self.sessions.idle.heard(conn, now);
        self.log.set_now(now);
        self.sessions.stats.frames_received += 1;
        self.sessions.stats.bytes_received += frame.len() as u64;
        let max = self.sessions.config.max_frame_bytes;
        if frame.len() > max {
            let reason = format!("frame of {} bytes over the {max} byte limit", frame.len());
            self.close(conn, code::MESSAGE_TOO_BIG, reason);
            return;
        }
        let request = match Request::decode(&frame) {
            Ok(request) => request,
            Err(err) => {
                let err = FrameError::Decode(err);
                self.close(conn, err.close_code(), err.to_string());
                return;
            }
        };
        self.record_request(conn, &request);
        let was_part = matches!(request, Request::Chunked(_));
        let Some(decoder) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let accepted = decoder.accept(request, now);
        if decoder.incomplete_count() > 0 {
            self.sessions.chunking.insert(conn);
        } else {
            self.sessions.chunking.remove(&conn);
        }
        match accepted {
            Ok(None) => {}
            Ok(Some(request)) => {
                if was_part {
                    self.record_request(conn, &request);
                }
                self.dispatch(conn, request);
            }
            Err(err) => self.close(conn, err.close_code(), err.to_string()),
        }
    }

    /// Storage answered a request from [`Action::Storage`].
    pub fn handle_storage_response(&mut self, response: StorageResponse) {
        self.log
            .handle_storage_response(response, &mut self.sessions);
    }

    /// Storage did not start append `id`: the append in flight was already
    /// committing (see [`crate::log::LogService::handle_append_put_back`]).
    /// False when `id` is not in flight behind another append (run it).
    pub fn handle_append_put_back(&mut self, id: RequestId) -> bool {
        self.log.handle_append_put_back(id)
    }

    /// Storage took append `id` into the still-open transaction of append
    /// `into` (see [`crate::log::LogConfig::join_open_appends`]).
    pub fn handle_append_joined(&mut self, id: RequestId, into: RequestId) {
        self.log.handle_append_joined(id, into, &mut self.sessions);
    }

    /// Another writer (engine, process, node) committed to `public_key`'s
    /// log up to `head`: live subscribers behind it catch up from storage.
    pub fn handle_log_advanced(&mut self, public_key: &str, head: Sequence) {
        self.log
            .handle_log_advanced(public_key, head, &mut self.sessions);
    }

    /// `bytes` of frames queued for `conn` were written to its socket.
    pub fn handle_sent(&mut self, conn: ConnId, bytes: usize) {
        self.sessions.stats.bytes_sent += bytes as u64;
        self.log.handle_sent(conn, bytes, &mut self.sessions);
    }

    /// `conn` closed (by the peer or the adapter). Pending writes still
    /// commit; their Acks are dropped.
    pub fn handle_close(&mut self, conn: ConnId) {
        if self.sessions.forget(conn) {
            self.sessions.stats.closed(CloseKind::Peer);
        }
        self.log.handle_close(conn, &mut self.sessions);
    }

    /// The adapter found `conn`'s input bad below this layer (a WebSocket
    /// message over the size limit, or one never finished): closes it as
    /// this layer closes for bad input, so that it is logged and counted by
    /// `close_code` like the others, not as the peer's own close.
    pub fn handle_violation(&mut self, conn: ConnId, close_code: u16, reason: String) {
        self.close(conn, close_code, reason);
    }

    /// When `conn`'s last frame arrived (or it opened), while the
    /// idle-socket timeout is on: for an adapter that keeps it across a
    /// restart of the engine (a Durable Object's hibernation).
    pub fn last_heard(&self, conn: ConnId) -> Option<Timestamp> {
        self.sessions.idle.last_heard(conn)
    }

    /// An operator revoked the tenant's tokens: every connection is closed
    /// with [`code::POLICY_VIOLATION`] (static-token ones too: the operator
    /// wants the tenant's sockets gone; those may reconnect). Refusing
    /// tokens minted before the revocation is the adapter's part at
    /// admission.
    pub fn handle_revoke(&mut self) {
        self.close_all(code::POLICY_VIOLATION, "tokens revoked");
    }

    /// Closes every connection with `code` and `reason` (an operator
    /// deleting or replacing the tenant). Writes in flight are not acked:
    /// their replicas resend them wherever they reconnect.
    pub fn close_all(&mut self, code: u16, reason: &str) {
        let mut conns: Vec<ConnId> = self.sessions.conns.keys().copied().collect();
        conns.sort();
        for conn in conns {
            self.close(conn, code, reason.into());
        }
    }

    /// Time passed: closes connections whose incomplete chunked messages
    /// are older than the age limit, connections whose token expired, with
    /// 1008, and (when the idle-socket timeout is on) connections that sent
    /// no frame for that long, with 1000; starts appends the write rate
    /// limit held back.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut expired: Vec<(ConnId, FrameError)> = self
            .sessions
            .chunking
            .iter()
            .filter_map(|conn| {
                let decoder = self.sessions.conns.get(conn)?;
                decoder.check_expiry(now).err().map(|err| (*conn, err))
            })
            .collect();
        expired.sort_by_key(|(conn, _)| *conn);
        for (conn, err) in expired {
            self.close(conn, code::PROTOCOL_ERROR, err.to_string());
        }
        for conn in self.sessions.grants.expired(now) {
            self.close(conn, code::POLICY_VIOLATION, "token expired".into());
        }
        self.log.handle_timeout(now, &mut self.sessions);
        for conn in self.sessions.idle.expired(now) {
            let reason = self.sessions.idle.reason();
            self.close(conn, code::NORMAL, reason);
        }
    }

    /// Graceful shutdown: frames received from now on are ignored; once the
    /// writes already received are committed and acknowledged, every
    /// connection is closed with [`code::GOING_AWAY`].
    pub fn handle_shutdown(&mut self) {
        self.log.handle_shutdown(&mut self.sessions);
    }

    /// The earliest time at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let chunks = self
            .sessions
            .chunking
            .iter()
            .filter_map(|conn| self.sessions.conns.get(conn)?.next_deadline())
            .min();
        let idle = self.sessions.idle.next_deadline();
        let expiry = self.sessions.grants.next_expiry();
        let throttled = self.log.next_deadline();
        chunks
            .into_iter()
            .chain(idle)
            .chain(expiry)
            .chain(throttled)
            .min()
    }

    /// Whole seconds until the tenant's writes are no longer held back by
    /// its write rate limit (`LogConfig::write_rate`), or `None` when they
    /// are not. Adapters refuse new connections meanwhile with `429` and
    /// this as `Retry-After`.
    pub fn write_retry_after_secs(&mut self, now: Timestamp) -> Option<u64> {
        self.log.write_retry_after_secs(now)
    }

    /// This engine's write rate bucket, when a rate is configured (to
    /// share with the tenant's other engine).
    pub fn write_quota(&self) -> Option<SharedWriteQuota> {
        self.log.write_quota()
    }

    /// Takes `quota` (the tenant's other engine's) as this engine's write
    /// rate bucket: one rate for the tenant, whichever protocol writes.
    pub fn share_write_quota(&mut self, quota: SharedWriteQuota) {
        self.log.share_write_quota(quota);
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.sessions.actions.pop_front()
    }

    /// The next thing worth logging.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.sessions.events.pop_front()
    }

    /// What this engine did since the last call, for metrics.
    pub fn take_stats(&mut self) -> EngineStats {
        let mut stats = std::mem::take(&mut self.sessions.stats);
        stats.log = self.log.take_stats();
        stats
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.log.connection_count()
    }

    /// True when no connection is open and no storage work is pending or in
    /// flight: the adapter may unload the tenant.
    pub fn is_idle(&self) -> bool {
        self.log.is_idle()
    }

    fn dispatch(&mut self, conn: ConnId, request: Request) {
        match request {
            Request::WriteEntries {
                public_key,
                id,
                iv,
                encrypted_entries,
            } => {
                if encrypted_entries.is_empty() {
                    // Effect's client sends one right after Hello (a
                    // read-only replica too: it stores nothing, so any
                    // token may have it acknowledged).
                    let ack = Response::Ack {
                        id,
                        sequence_numbers: Vec::new(),
                    };
                    self.send_response(conn, &ack);
                    return;
                }
                if let Err(why) = self.sessions.grants.may_write(conn, &public_key) {
                    self.forbid(conn, why);
                    return;
                }
                let batch = AppendBatch {
                    public_key,
                    iv,
                    entries: encrypted_entries,
                };
                self.log
                    .write(conn, WriteToken(id), batch, &mut self.sessions);
            }
            Request::RequestChanges {
                public_key,
                start_sequence,
            } => {
                if let Err(why) = self.sessions.grants.may_read(conn, &public_key) {
                    self.forbid(conn, why);
                    return;
                }
                self.log
                    .subscribe(conn, &public_key, start_sequence, &mut self.sessions)
            }
            Request::StopChanges { public_key } => self.log.unsubscribe(conn, &public_key),
            Request::Ping { id } => self.send_response(conn, &Response::Pong { id }),
            // Reassembled before dispatch; a nested one was refused.
            Request::Chunked(_) => {}
        }
    }

    /// Queues a reply of this layer's own, within the connection's
    /// outbound limit.
    fn send_response(&mut self, conn: ConnId, response: &Response) {
        let frames = self.sessions.encode(response);
        let size = frames.iter().map(Bytes::len).sum();
        if self.log.reserve(conn, size, &mut self.sessions) {
            self.sessions.push_frames(conn, frames);
        }
    }

    /// Closes `conn` for a reason of this layer (bad input, limits).
    fn close(&mut self, conn: ConnId, close_code: u16, reason: String) {
        if self.sessions.close(conn, close_code, reason) {
            self.log.handle_close(conn, &mut self.sessions);
        }
    }

    /// Closes `conn` for asking more than its token allows; nothing of the
    /// request is stored.
    fn forbid(&mut self, conn: ConnId, why: Forbidden) {
        self.close(conn, code::POLICY_VIOLATION, why.as_str().into());
    }

    fn record_request(&mut self, conn: ConnId, request: &Request) {
        if self.sessions.debug {
            let line = request_line(request);
            self.sessions
                .events
                .push_back(Event::Request { conn, line });
        }
    }
}
