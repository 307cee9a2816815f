//! The v4 engine of one tenant: Effect 4's eventlog RPCs over a log service
//! of encrypted batches ([`BatchLog`]).
//!
//! Contract with an adapter (sans-IO), as for v3's engine:
//! - feed input with [`Engine::handle_open`], [`Engine::handle_message`],
//!   [`Engine::handle_storage_response`], [`Engine::handle_sent`],
//!   [`Engine::handle_close`], [`Engine::handle_timeout`],
//!   [`Engine::handle_log_advanced`];
//! - after each input, drain [`Engine::poll_action`] until `None` and carry
//!   out each [`Action`] in order, and drain [`Engine::poll_event`] for logs;
//! - call `handle_timeout` at [`Engine::poll_timeout`] or later.
//!
//! This layer owns what is v4: the RPC envelope, `Hello` (the tenant's
//! remoteId, a challenge per connection, `firstSequence` 1, no compaction),
//! session auth (`Forbidden` for any request of an identity the connection
//! has not authenticated, which makes Effect's client authenticate again),
//! write RPCs (whole or in `WriteChunked` pieces, acked per entry in request
//! order), Changes streams (one unacknowledged Chunk at a time, `Interrupt`
//! ends one) and `Ping`. Writes, subscriptions, caching and backpressure
//! are the [`LogService`]'s: one write RPC of `n` batches is `n` log writes
//! queued together ([`LogService::write_all`]), so one append stores them.

mod hibernation;
mod plaintext;

pub use hibernation::{SavedSession, SavedStream};
pub use plaintext::PLAINTEXT_OWNER;

use super::auth::{self, AuthRefused};
use super::config::SessionConfig;
use super::replies::{die, exit_frame, failure, protocol_error};
use super::session::{Event, Sessions, Stream};
use super::{
    Authenticate, AuthenticateExit, ChangesExit, ChangesPayload, ChunkedMessage, DecodeErrorKind,
    ErrorCode, FromClient, HelloExit, HelloResponse, PONG_FRAME, Request, RequestId, WriteEntries,
    WriteEntriesUnencrypted, WriteExit, WriteSinglePayload, decode,
};
use crate::access::Grant;
use crate::log::{BatchLog, ConnId, LogService, SharedWriteQuota, batch_log_name};
use crate::proto::action::Action;
use crate::proto::close::{CloseKind, code};
use crate::proto::stats::EngineStats;
use crate::storage::{
    BatchWrite, ENTRY_ID_LEN, RequestId as StorageRequestId, StorageOp, StorageRequest,
    StorageResponse, StoreKey,
};
use crate::time::Timestamp;
use crate::wire::{RemoteId, Sequence};
use bytes::Bytes;
use std::collections::HashMap;

/// The v4 log service numbers its storage requests from here, apart from
/// the v3 engine's (from 0) of the same tenant: an adapter running both
/// hands each answer back by its id ([`is_v4_request`]).
pub const V4_REQUEST_IDS: u64 = 1 << 62;

/// Storage requests of the session layer itself (signing-key bindings) are
/// numbered from here.
const SESSION_REQUEST_IDS: u64 = 1 << 63;

/// Whether a storage request id is one a v4 engine made.
pub fn is_v4_request(id: StorageRequestId) -> bool {
    id.0 >= V4_REQUEST_IDS
}

/// Where the random bytes of challenges come from (the adapter's CSPRNG;
/// a fixed sequence in tests).
pub type Randomness = Box<dyn FnMut() -> [u8; 32] + Send>;

/// An `Authenticate` waiting for storage's binding of its publicKey.
struct PendingAuth {
    conn: ConnId,
    request_id: RequestId,
    request: Authenticate,
    challenge: [u8; 32],
}

/// The v4 sync engine of one tenant. See the module docs for the contract.
pub struct Engine {
    remote_id: RemoteId,
    log: LogService<BatchLog>,
    sessions: Sessions,
    random: Randomness,
    /// Signing keys bound to publicKeys, as storage returned them. A
    /// binding never changes once made, so it is safe to remember; this
    /// keeps the re-authentication of every reconnect off storage.
    bindings: HashMap<String, [u8; 32]>,
    pending_auth: HashMap<u64, PendingAuth>,
    next_session_request: u64,
}

impl Engine {
    /// An engine for a tenant whose stores carry `remote_id`; `random`
    /// makes challenges.
    pub fn new(remote_id: RemoteId, config: SessionConfig, random: Randomness) -> Self {
        Engine {
            remote_id,
            log: LogService::with_request_ids_from(config.log.clone(), V4_REQUEST_IDS),
            sessions: Sessions::new(config),
            random,
            bindings: HashMap::new(),
            pending_auth: HashMap::new(),
            next_session_request: SESSION_REQUEST_IDS,
        }
    }

    /// A WebSocket was accepted with `grant` (from admission); `plaintext`
    /// for the unencrypted endpoint (`EventLogRemote.layerUnencrypted`
    /// clients). A v4 server stays silent until the client's `Hello`. Its
    /// idle clock (when the idle-socket timeout is on) starts at `now`.
    pub fn handle_open(&mut self, conn: ConnId, grant: Grant, plaintext: bool, now: Timestamp) {
        if self.log.is_shutting_down() {
            self.sessions.stats.closed(CloseKind::GoingAway);
            self.sessions.actions.push_back(Action::Close {
                conn,
                code: code::GOING_AWAY,
                reason: "server shutting down".into(),
            });
            return;
        }
        self.sessions.open(conn, grant, plaintext, now);
        self.log.open(conn);
    }

    /// One WebSocket message arrived on `conn`. It may hold several frames
    /// or part of one. Bad input closes only that connection.
    pub fn handle_message(&mut self, conn: ConnId, data: Bytes, now: Timestamp) {
        if self.log.is_shutting_down() {
            return;
        }
        self.log.set_now(now);
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        self.sessions.stats.bytes_received += data.len() as u64;
        state.splitter.push(data);
        self.sessions.idle.heard(conn, now);
        let mut completed = false;
        loop {
            let Some(state) = self.sessions.conns.get_mut(&conn) else {
                return;
            };
            let frame = match state.splitter.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    if state.note_partial_frame(completed, now) {
                        if state.partial_frame_since.is_some() {
                            self.sessions.framing.insert(conn);
                        } else {
                            self.sessions.framing.remove(&conn);
                        }
                    }
                    return;
                }
                Err(err) => {
                    // A declared length over the limit is refused before
                    // its bytes are buffered (the splitter then holds
                    // nothing), so tell it by its kind.
                    let close_code = if err.kind() == DecodeErrorKind::FrameTooLarge {
                        code::MESSAGE_TOO_BIG
                    } else {
                        code::PROTOCOL_ERROR
                    };
                    self.close(conn, close_code, format!("bad frame: {err}"));
                    return;
                }
            };
            self.sessions.stats.frames_received += 1;
            completed = true;
            match FromClient::decode(&frame) {
                Ok(message) => self.dispatch(conn, message, now),
                Err(err) => {
                    self.close(conn, code::PROTOCOL_ERROR, format!("bad envelope: {err}"));
                    return;
                }
            }
        }
    }

    /// Storage answered a request from [`Action::Storage`].
    pub fn handle_storage_response(&mut self, response: StorageResponse) {
        match response {
            StorageResponse::SigningKeyBound { id, result } => self.on_bound(id, result),
            other => self.log.handle_storage_response(other, &mut self.sessions),
        }
    }

    /// Storage did not start append `id`: the append in flight was already
    /// committing (see [`crate::log::LogService::handle_append_put_back`]).
    /// False when `id` is not in flight behind another append (run it).
    pub fn handle_append_put_back(&mut self, id: StorageRequestId) -> bool {
        self.log.handle_append_put_back(id)
    }

    /// Storage took append `id` into the still-open transaction of append
    /// `into` (see [`crate::log::LogConfig::join_open_appends`]).
    pub fn handle_append_joined(&mut self, id: StorageRequestId, into: StorageRequestId) {
        self.log.handle_append_joined(id, into, &mut self.sessions);
    }

    /// Another writer committed to `store` up to `head`: live subscribers
    /// behind it catch up from storage.
    pub fn handle_log_advanced(&mut self, store: &StoreKey, head: Sequence) {
        self.log
            .handle_log_advanced(&batch_log_name(store), head, &mut self.sessions);
    }

    /// `bytes` of frames queued for `conn` were written to its socket.
    pub fn handle_sent(&mut self, conn: ConnId, bytes: usize) {
        self.sessions.stats.bytes_sent += bytes as u64;
        self.log.handle_sent(conn, bytes, &mut self.sessions);
    }

    /// `conn` closed. Pending writes still commit; their acks are dropped.
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

    /// Time passed: closes connections whose incomplete chunked writes or
    /// partial frame are too old and connections whose token expired;
    /// starts appends the write rate limit held back.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for (conn, reason) in self.sessions.expired_partial_frames(now) {
            self.close(conn, code::PROTOCOL_ERROR, reason);
        }
        let mut expired: Vec<(ConnId, String)> = self
            .sessions
            .chunking
            .iter()
            .filter_map(|conn| {
                let state = self.sessions.conns.get(conn)?;
                let err = state.chunks.check_expiry(now).err()?;
                Some((*conn, err.to_string()))
            })
            .collect();
        expired.sort();
        for (conn, reason) in expired {
            self.close(conn, code::PROTOCOL_ERROR, reason);
        }
        for conn in self.sessions.grants.expired(now) {
            self.close(conn, code::POLICY_VIOLATION, "token expired".into());
        }
        for conn in self.sessions.idle.expired(now) {
            let reason = self.sessions.idle.reason();
            self.close(conn, code::NORMAL, reason);
        }
        self.log.handle_timeout(now, &mut self.sessions);
    }

    /// Graceful shutdown: once the writes already received are committed
    /// and acknowledged, every connection is closed with 1001.
    pub fn handle_shutdown(&mut self) {
        self.log.handle_shutdown(&mut self.sessions);
    }

    /// Closes every connection with `code` and `reason` (tokens revoked, a
    /// tenant deleted or replaced).
    pub fn close_all(&mut self, close_code: u16, reason: &str) {
        let mut conns: Vec<ConnId> = self.sessions.conns.keys().copied().collect();
        conns.sort();
        for conn in conns {
            self.close(conn, close_code, reason.into());
        }
    }

    /// The earliest time at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let chunks = self
            .sessions
            .chunking
            .iter()
            .filter_map(|conn| self.sessions.conns.get(conn)?.chunks.next_deadline())
            .min();
        let expiry = self.sessions.grants.next_expiry();
        chunks
            .into_iter()
            .chain(self.sessions.next_partial_frame_deadline())
            .chain(expiry)
            .chain(self.sessions.idle.next_deadline())
            .chain(self.log.next_deadline())
            .min()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.sessions.actions.pop_front()
    }

    /// Turns recording of [`Event::Request`] on or off (SYNC_DEBUG).
    pub fn set_debug(&mut self, on: bool) {
        self.sessions.debug = on;
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
        self.log.is_idle() && self.pending_auth.is_empty()
    }

    /// Whole seconds until this tenant's v4 writes are no longer held back
    /// by its write rate limit (`LogConfig::write_rate`), or `None`.
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

    // ------------------------------------------------------------- dispatch

    fn dispatch(&mut self, conn: ConnId, message: FromClient, now: Timestamp) {
        if self.sessions.debug {
            let line = super::request_line::request_line(&message);
            self.sessions
                .events
                .push_back(Event::Request { conn, line });
        }
        match message {
            FromClient::Ping => self.reply(conn, Bytes::from_static(&PONG_FRAME)),
            FromClient::Eof => {}
            FromClient::Ack { request_id } => {
                let Some(state) = self.sessions.conns.get_mut(&conn) else {
                    return;
                };
                let Some(log) = state.stream_logs.get(&request_id).cloned() else {
                    return;
                };
                if let Some(stream) = state.streams.get_mut(&log) {
                    stream.awaiting_ack = None;
                }
                self.sessions.pump(conn, &log);
            }
            FromClient::Interrupt { request_id } => self.end_stream(conn, &request_id),
            FromClient::Request(request) => self.request(conn, request, now),
        }
    }

    fn request(&mut self, conn: ConnId, request: Request, now: Timestamp) {
        match request.tag.as_str() {
            "EventLog.Hello" => self.hello(conn, &request.id, now),
            "EventLog.Authenticate" => self.authenticate(conn, request, now),
            "EventLog.WriteSingle" => {
                if self.unauthenticated(conn, &request) {
                    return;
                }
                match decode::<WriteSinglePayload>(&request.payload) {
                    Ok(payload) => self.write(conn, request.id, payload.data),
                    Err(err) => self.reply_exit(conn, &request.id, &die_exit(&err)),
                }
            }
            "EventLog.WriteChunked" => {
                if self.unauthenticated(conn, &request) {
                    return;
                }
                match decode::<ChunkedMessage>(&request.payload) {
                    Ok(piece) => self.write_piece(conn, request.id, piece, now),
                    Err(err) => self.reply_exit(conn, &request.id, &die_exit(&err)),
                }
            }
            "EventLog.Changes" => {
                if self.unauthenticated(conn, &request) {
                    return;
                }
                match decode::<ChangesPayload>(&request.payload) {
                    Ok(payload) => self.changes(conn, request.id, payload),
                    Err(err) => {
                        let exit: ChangesExit = die(&format!("{err}"));
                        self.reply_exit(conn, &request.id, &exit);
                    }
                }
            }
            tag => {
                let exit: ChangesExit = die(&format!("Unknown request tag: {tag}"));
                self.reply_exit(conn, &request.id, &exit);
            }
        }
    }

    fn hello(&mut self, conn: ConnId, request_id: &RequestId, now: Timestamp) {
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let random = &mut self.random;
        let challenge = state.challenge.issue(now, random);
        let response = HelloResponse {
            challenge: Bytes::copy_from_slice(&challenge),
            compaction: false,
            remote_id: Bytes::copy_from_slice(&self.remote_id.0),
            first_sequence: Some(1),
        };
        self.reply_exit(conn, request_id, &HelloExit::Success(response));
    }

    fn authenticate(&mut self, conn: ConnId, request: Request, now: Timestamp) {
        let auth = match decode::<Authenticate>(&request.payload) {
            Ok(auth) => auth,
            Err(err) => {
                let exit: AuthenticateExit = die(&format!("{err}"));
                self.reply_exit(conn, &request.id, &exit);
                return;
            }
        };
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let Some(challenge) = state.challenge.take(now) else {
            self.refuse_auth(conn, &request.id, &auth, AuthRefused::ChallengeExpired);
            return;
        };
        let Ok(offered) = <[u8; 32]>::try_from(auth.signing_public_key.as_ref()) else {
            self.refuse_auth(conn, &request.id, &auth, AuthRefused::SignatureInvalid);
            return;
        };
        if auth.public_key == PLAINTEXT_OWNER {
            // The owner of the shared plaintext stores is nobody's identity.
            self.refuse_auth(conn, &request.id, &auth, AuthRefused::SignatureInvalid);
            return;
        }
        let pending = PendingAuth {
            conn,
            request_id: request.id,
            request: auth,
            challenge,
        };
        if let Some(bound) = self.bindings.get(&pending.request.public_key).copied() {
            self.finish_auth(pending, Ok(bound));
            return;
        }
        let id = self.next_session_request;
        self.next_session_request += 1;
        let op = StorageOp::BindSigningKey {
            public_key: pending.request.public_key.clone(),
            signing_key: offered,
        };
        self.pending_auth.insert(id, pending);
        self.sessions
            .actions
            .push_back(Action::Storage(StorageRequest {
                id: StorageRequestId(id),
                op,
            }));
    }

    fn on_bound(
        &mut self,
        id: StorageRequestId,
        result: Result<[u8; 32], crate::storage::StorageError>,
    ) {
        let Some(pending) = self.pending_auth.remove(&id.0) else {
            return;
        };
        match result {
            Ok(bound) => {
                self.bindings
                    .insert(pending.request.public_key.clone(), bound);
                self.finish_auth(pending, Ok(bound));
            }
            Err(err) => {
                self.sessions.events.push_back(Event::StorageFailed {
                    message: err.message,
                });
                self.finish_auth(pending, Err(AuthRefused::BindingLookupFailed));
            }
        }
    }

    fn finish_auth(&mut self, pending: PendingAuth, bound: Result<[u8; 32], AuthRefused>) {
        let PendingAuth {
            conn,
            request_id,
            request,
            challenge,
        } = pending;
        let verified = bound.and_then(|bound| {
            auth::verify(
                &self.remote_id,
                &challenge,
                &request.public_key,
                &request.signing_public_key,
                &request.signature,
                &bound,
            )
        });
        if let Err(why) = verified {
            self.refuse_auth(conn, &request_id, &request, why);
            return;
        }
        let max = self.sessions.config.max_identities_per_connection;
        let chunks = self.sessions.config.chunks.clone();
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        if !state.identities.contains(&request.public_key) && state.identities.len() >= max {
            let reason = format!("more than {max} identities on one connection");
            self.close(conn, code::POLICY_VIOLATION, reason);
            return;
        }
        state.identities.insert(request.public_key);
        // As Effect's server: authenticating starts chunk reassembly anew.
        state.chunks = crate::chunk::Reassembler::new(chunks);
        self.sessions.chunking.remove(&conn);
        self.reply_exit(conn, &request_id, &AuthenticateExit::Success(()));
    }

    fn refuse_auth(
        &mut self,
        conn: ConnId,
        request_id: &RequestId,
        request: &Authenticate,
        why: AuthRefused,
    ) {
        let error = protocol_error(
            "Authenticate",
            Some(&request.public_key),
            ErrorCode::Forbidden,
            why.message(),
        );
        self.reply_exit(conn, request_id, &failure::<()>(error));
    }

    /// Refuses a request on a connection that authenticated no identity
    /// (Effect's auth middleware); true if it did.
    fn unauthenticated(&mut self, conn: ConnId, request: &Request) -> bool {
        let authenticated = self
            .sessions
            .conns
            .get(&conn)
            .is_some_and(|state| !state.identities.is_empty());
        if !authenticated {
            let error = protocol_error(
                &request.tag,
                None,
                ErrorCode::Forbidden,
                "Unauthenticated request",
            );
            self.reply_exit(conn, &request.id, &failure::<()>(error));
        }
        !authenticated
    }

    fn is_authenticated(&self, conn: ConnId, public_key: &str) -> bool {
        self.sessions
            .conns
            .get(&conn)
            .is_some_and(|state| state.identities.contains(public_key))
    }

    fn write_piece(
        &mut self,
        conn: ConnId,
        request_id: RequestId,
        piece: ChunkedMessage,
        now: Timestamp,
    ) {
        let (Ok(index), Ok(total)) = (u32::try_from(piece.index), u32::try_from(piece.total))
        else {
            self.close(
                conn,
                code::MESSAGE_TOO_BIG,
                "chunked write of too many parts".into(),
            );
            return;
        };
        let part = crate::wire::ChunkedMessage {
            id: piece.id,
            index,
            total,
            data: piece.data,
        };
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let pushed = state.chunks.push(part, now);
        if state.chunks.incomplete_count() > 0 {
            self.sessions.chunking.insert(conn);
        } else {
            self.sessions.chunking.remove(&conn);
        }
        match pushed {
            Ok(None) => self.reply_exit(conn, &request_id, &WriteExit::Success(Vec::new())),
            Ok(Some(data)) => self.write(conn, request_id, data),
            Err(err) => {
                let close_code = if err.is_size_limit() {
                    code::MESSAGE_TOO_BIG
                } else {
                    code::PROTOCOL_ERROR
                };
                self.close(conn, close_code, err.to_string());
            }
        }
    }

    /// A whole `WriteEntries` frame (from one WriteSingle or reassembled).
    fn write(&mut self, conn: ConnId, request_id: RequestId, data: Bytes) {
        if self.is_plaintext(conn) {
            self.write_plaintext(conn, request_id, data);
            return;
        }
        let request = match decode::<WriteEntries>(&data) {
            Ok(request) => request,
            Err(_) => {
                let (code, message) = if decode::<WriteEntriesUnencrypted>(&data).is_ok() {
                    (
                        ErrorCode::InvalidRequest,
                        "unencrypted writes go to /v4/unencrypted/event-log/<tenant>",
                    )
                } else {
                    (ErrorCode::InternalServerError, "Decoding failure")
                };
                self.refuse_write(conn, &request_id, None, code, message);
                return;
            }
        };
        if !self.admit_write(conn, &request_id, &request.public_key) {
            return;
        }
        if request.batches.is_empty() {
            self.reply_exit(conn, &request_id, &WriteExit::Success(Vec::new()));
            return;
        }
        let malformed = request.batches.iter().any(|b| {
            b.entry_ids.is_empty() || b.entry_ids.iter().any(|id| id.len() != ENTRY_ID_LEN)
        });
        if malformed {
            let message = "every batch needs entry ids of 16 bytes";
            let key = Some(request.public_key.as_str());
            self.refuse_write(conn, &request_id, key, ErrorCode::InvalidRequest, message);
            return;
        }
        let store = StoreKey::new(request.public_key, request.store_id);
        let writes = request
            .batches
            .into_iter()
            .map(|batch| BatchWrite {
                store: store.clone(),
                iv: batch.iv,
                entry_ids: batch.entry_ids,
                encrypted_batch: batch.encrypted_batch,
            })
            .collect();
        self.start_writes(conn, request_id, writes, None);
    }

    /// Whether `conn` may write as `public_key` now: authenticated as it,
    /// allowed by its token, and not over its pending-write limit. A
    /// refusal is answered (or the connection closed) here.
    fn admit_write(&mut self, conn: ConnId, request_id: &RequestId, public_key: &str) -> bool {
        if !self.is_authenticated(conn, public_key) {
            let message = "Identity is not authenticated";
            self.refuse_write(
                conn,
                request_id,
                Some(public_key),
                ErrorCode::Forbidden,
                message,
            );
            return false;
        }
        if let Err(why) = self.sessions.grants.may_write(conn, public_key) {
            self.close(conn, code::POLICY_VIOLATION, why.as_str().into());
            return false;
        }
        let max = self.sessions.config.max_pending_writes;
        if self
            .sessions
            .conns
            .get(&conn)
            .is_some_and(|state| state.writes.len() >= max)
        {
            let reason = format!("more than {max} write requests awaiting their commit");
            self.close(conn, code::POLICY_VIOLATION, reason);
            return false;
        }
        true
    }

    /// Answers a write RPC with an `EventLogProtocolError`.
    fn refuse_write(
        &mut self,
        conn: ConnId,
        request_id: &RequestId,
        public_key: Option<&str>,
        code: ErrorCode,
        message: &str,
    ) {
        let error = protocol_error("WriteEntries", public_key, code, message);
        self.reply_exit(conn, request_id, &failure::<Vec<super::WriteAck>>(error));
    }

    /// Hands a write RPC's batches to the log service (one log write each,
    /// queued together so that they share one append). `request_order` maps each entry of
    /// the request to its place among the batches' entries when they were
    /// reordered.
    fn start_writes(
        &mut self,
        conn: ConnId,
        request_id: RequestId,
        writes: Vec<BatchWrite>,
        request_order: Option<Vec<usize>>,
    ) {
        let ids = writes.iter().map(|w| w.entry_ids.clone()).collect();
        let log = writes
            .first()
            .map_or_else(String::new, |w| batch_log_name(&w.store));
        let tokens = self
            .sessions
            .start_write(conn, request_id, log, ids, request_order);
        let writes = tokens.into_iter().zip(writes);
        self.log.write_all(conn, writes, &mut self.sessions);
    }

    fn is_plaintext(&self, conn: ConnId) -> bool {
        self.sessions
            .conns
            .get(&conn)
            .is_some_and(|state| state.plaintext)
    }

    fn changes(&mut self, conn: ConnId, request_id: RequestId, payload: ChangesPayload) {
        if !self.is_authenticated(conn, &payload.public_key) {
            let error = protocol_error(
                "Changes",
                Some(&payload.public_key),
                ErrorCode::Forbidden,
                "Identity is not authenticated",
            );
            self.reply_exit(conn, &request_id, &failure::<()>(error));
            return;
        }
        if let Err(why) = self.sessions.grants.may_read(conn, &payload.public_key) {
            self.close(conn, code::POLICY_VIOLATION, why.as_str().into());
            return;
        }
        let plaintext = self.is_plaintext(conn);
        // Plaintext stores are shared by every identity (Effect's
        // unencrypted server keys them by storeId alone).
        let owner = if plaintext {
            PLAINTEXT_OWNER.to_string()
        } else {
            payload.public_key
        };
        let log = batch_log_name(&StoreKey::new(owner, payload.store_id));
        // A second stream on the same store replaces the first.
        if let Some(old) = self
            .sessions
            .conns
            .get(&conn)
            .and_then(|state| state.streams.get(&log))
            .map(|stream| stream.request_id.clone())
        {
            self.end_stream(conn, &old);
        }
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        state.stream_logs.insert(request_id.clone(), log.clone());
        state.streams.insert(
            log.clone(),
            Stream {
                request_id,
                awaiting_ack: None,
                pending: Default::default(),
                next_chunk_id: 0,
                plaintext,
            },
        );
        self.log.subscribe(
            conn,
            &log,
            payload.start_sequence.max(1),
            &mut self.sessions,
        );
    }

    /// Ends the stream answering `request_id` (an `Interrupt`, or a new
    /// stream on the same store): no more Chunks; what was queued for it is
    /// dropped and no longer counts against the connection.
    fn end_stream(&mut self, conn: ConnId, request_id: &RequestId) {
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        let Some(log) = state.stream_logs.remove(request_id) else {
            return;
        };
        state.own_writes.remove(&log);
        let dropped: usize = state.streams.remove(&log).map_or(0, |stream| {
            stream.pending.iter().map(|(_, f)| f.len()).sum()
        });
        self.log.unsubscribe(conn, &log);
        if dropped > 0 {
            self.log.handle_sent(conn, dropped, &mut self.sessions);
        }
    }

    /// Queues an exit of this layer's own, within the connection's outbound
    /// limit.
    fn reply_exit<T: super::schema_binary::Value, E: super::schema_binary::Value>(
        &mut self,
        conn: ConnId,
        request_id: &RequestId,
        exit: &super::Exit<T, E>,
    ) {
        self.reply(conn, exit_frame(request_id, exit));
    }

    fn reply(&mut self, conn: ConnId, frame: Bytes) {
        if self.log.reserve(conn, frame.len(), &mut self.sessions) {
            self.sessions.push_frame(conn, frame);
        }
    }

    /// Closes `conn` for a reason of this layer (bad input, limits).
    fn close(&mut self, conn: ConnId, close_code: u16, reason: String) {
        if self.sessions.close(conn, close_code, reason) {
            self.log.handle_close(conn, &mut self.sessions);
        }
    }
}

/// The exit Effect's RPC server sends for a payload it cannot decode: a
/// defect naming the problem (it fails only that request).
fn die_exit(err: &super::DecodeError) -> WriteExit {
    die(&format!("{err}"))
}
