//! The per-tenant sync engine: a state machine that turns connection events,
//! frames and storage answers into frames to send, storage work and closes.
//!
//! One [`Engine`] serves one tenant (one Durable Object, one tenant actor of
//! the native server). Its contract with an adapter:
//! - feed input with [`Engine::handle_open`], [`Engine::handle_frame`],
//!   [`Engine::handle_storage_response`], [`Engine::handle_sent`],
//!   [`Engine::handle_close`], [`Engine::handle_timeout`];
//! - after each input, drain [`Engine::poll_action`] until `None` and carry
//!   out each [`Action`] in order, and drain [`Engine::poll_event`] for logs;
//! - call `handle_timeout` at [`Engine::poll_timeout`] or later.

mod catchup;
mod config;
mod connection;
mod dispatch;
mod frames;
mod log;
mod writes;

pub use config::EngineConfig;

use crate::storage::{RequestId, StorageOp, StorageRequest, StorageResponse};
use crate::time::Timestamp;
use crate::wire::{MessageId, RemoteId, Response, Sequence};
use bytes::Bytes;
use connection::Conn;
use log::LogState;
use std::collections::{HashMap, HashSet, VecDeque};
use writes::WritePipeline;

/// An adapter-chosen id for one WebSocket connection, unique within a tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// WebSocket close codes (one list for every protocol: [`crate::proto::close`]).
pub use crate::proto::close::code as close_code;

/// Something the adapter must do, in the order polled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Send one binary WebSocket frame on `conn`. The adapter reports it with
    /// [`Engine::handle_sent`] once written (or at once if it cannot tell).
    Send { conn: ConnId, frame: Bytes },
    /// Close `conn` with this code and reason, after the frames already
    /// queued for it. The engine has already forgotten the connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Run this against the tenant's storage and feed the answer back with
    /// [`Engine::handle_storage_response`].
    Storage(StorageRequest),
}

/// What a decoded request was, for debug logs (SYNC_DEBUG).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestSummary {
    /// The `_tag` of the message.
    pub tag: &'static str,
    pub public_key: Option<String>,
    /// WriteEntries / Ping / ChunkedMessage id.
    pub id: Option<i64>,
    /// WriteEntries entry count.
    pub entries: usize,
    pub start_sequence: Option<u64>,
    /// ChunkedMessage `[index, total]`.
    pub part: Option<(u32, u32)>,
}

/// Things worth logging. Requests are recorded only when
/// [`Engine::set_debug`] is on; the others always.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A request was decoded on `conn`.
    Request {
        conn: ConnId,
        summary: RequestSummary,
    },
    /// `conn` is being closed by the engine; `reason` says why.
    Closing {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// A storage request failed.
    StorageFailed { message: String },
}

/// The sync engine of one tenant. See the module docs for the contract.
pub struct Engine {
    config: EngineConfig,
    remote_id: RemoteId,
    debug: bool,
    shutting_down: bool,
    conns: HashMap<ConnId, Conn>,
    /// Connections holding incomplete chunked messages (the only ones with
    /// a deadline), so that `poll_timeout` need not scan every connection.
    chunking: HashSet<ConnId>,
    logs: HashMap<String, LogState>,
    writes: WritePipeline,
    /// Catch-up reads in flight: which subscription each one serves.
    reads: HashMap<RequestId, (ConnId, String)>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    next_request: u64,
    next_chunk_id: MessageId,
}

impl Engine {
    /// An engine for a tenant whose stored logs carry `remote_id`.
    pub fn new(remote_id: RemoteId, config: EngineConfig) -> Self {
        Engine {
            config,
            remote_id,
            debug: false,
            shutting_down: false,
            conns: HashMap::new(),
            chunking: HashSet::new(),
            logs: HashMap::new(),
            writes: WritePipeline::default(),
            reads: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            next_request: 0,
            next_chunk_id: 0,
        }
    }

    /// The remoteId sent in every `Hello`.
    pub fn remote_id(&self) -> RemoteId {
        self.remote_id
    }

    /// Turns recording of [`Event::Request`] on or off (SYNC_DEBUG).
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    /// A WebSocket was accepted: queues its `Hello`.
    pub fn handle_open(&mut self, conn: ConnId, _now: Timestamp) {
        if self.shutting_down {
            self.actions.push_back(Action::Close {
                conn,
                code: close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            });
            return;
        }
        self.conns
            .insert(conn, Conn::new(self.config.chunks.clone()));
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
    /// clients tolerate (they dedup by entry id).
    pub fn restore_connection(&mut self, conn: ConnId, subscriptions: Vec<(String, Sequence)>) {
        self.conns
            .insert(conn, Conn::new(self.config.chunks.clone()));
        for (public_key, next_seq) in subscriptions {
            self.subscribe(conn, public_key, next_seq);
        }
    }

    /// The publicKeys `conn` subscribes to and the next sequence each one
    /// is owed, for saving in a socket attachment across hibernation.
    pub fn subscription_positions(&self, conn: ConnId) -> Vec<(String, Sequence)> {
        let Some(c) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let mut positions: Vec<(String, Sequence)> = c
            .subs
            .iter()
            .map(|(public_key, sub)| (public_key.clone(), sub.next_seq))
            .collect();
        positions.sort();
        positions
    }

    /// Storage answered a request from [`Action::Storage`].
    pub fn handle_storage_response(&mut self, response: StorageResponse) {
        match response {
            StorageResponse::Appended { id, result } => self.on_appended(id, result),
            StorageResponse::Read { id, result } => self.on_read(id, result),
        }
    }

    /// `bytes` of frames queued for `conn` were written to its socket.
    pub fn handle_sent(&mut self, conn: ConnId, bytes: usize) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.queued_bytes = c.queued_bytes.saturating_sub(bytes);
        if c.queued_bytes <= self.config.outbound_soft_limit / 2 {
            self.resume_stalled(conn);
        }
    }

    /// `conn` closed (by the peer or the adapter). Pending writes still
    /// commit; their Acks are dropped.
    pub fn handle_close(&mut self, conn: ConnId) {
        self.forget_connection(conn);
        self.maybe_finish_shutdown();
    }

    /// Time passed: closes connections whose incomplete chunked messages
    /// are older than the age limit.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let mut expired = Vec::new();
        for conn in &self.chunking {
            if let Some(c) = self.conns.get(conn)
                && let Err(err) = c.reassembler.check_expiry(now)
            {
                expired.push((*conn, err));
            }
        }
        for (conn, err) in expired {
            self.close(conn, close_code::PROTOCOL_ERROR, err.to_string());
        }
    }

    /// Graceful shutdown: frames received from now on are ignored; once the
    /// writes already received are committed and acknowledged, every
    /// connection is closed with [`close_code::GOING_AWAY`].
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        self.maybe_finish_shutdown();
    }

    /// The earliest time at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.chunking
            .iter()
            .filter_map(|conn| self.conns.get(conn)?.reassembler.next_deadline())
            .min()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing worth logging.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// True when no connection is open and no storage work is pending or in
    /// flight: the adapter may unload the tenant.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty() && self.writes.is_idle() && self.reads.is_empty()
    }

    fn storage_request(&mut self, op: StorageOp) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.actions
            .push_back(Action::Storage(StorageRequest { id, op }));
        id
    }

    /// Queues `frame` for `conn`, closing it instead if its outbound queue
    /// would pass the hard limit. Returns false if the frame was not queued.
    fn send_frame(&mut self, conn: ConnId, frame: Bytes) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.queued_bytes += frame.len();
        if c.queued_bytes > self.config.outbound_hard_limit {
            let reason = format!(
                "consumer too slow: over {} bytes queued",
                self.config.outbound_hard_limit
            );
            self.close(conn, close_code::POLICY_VIOLATION, reason);
            return false;
        }
        self.actions.push_back(Action::Send { conn, frame });
        true
    }

    /// Queues `frames` in order; false if the connection was closed.
    fn send_frames(&mut self, conn: ConnId, frames: Vec<Bytes>) -> bool {
        frames.into_iter().all(|frame| self.send_frame(conn, frame))
    }

    fn send_response(&mut self, conn: ConnId, response: &Response) {
        let mut frames = Vec::with_capacity(1);
        frames::response_frames(response, &mut self.next_chunk_id, &mut frames);
        self.send_frames(conn, frames);
    }

    /// Closes `conn` from the engine's side: forgets it and tells the adapter.
    fn close(&mut self, conn: ConnId, code: u16, reason: String) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.forget_connection(conn);
        self.events.push_back(Event::Closing {
            conn,
            code,
            reason: reason.clone(),
        });
        self.actions.push_back(Action::Close {
            conn,
            code,
            reason: crate::proto::close::truncate_reason(reason),
        });
        self.maybe_finish_shutdown();
    }

    fn forget_connection(&mut self, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.chunking.remove(&conn);
        for public_key in c.subs.keys() {
            if let Some(log) = self.logs.get_mut(public_key) {
                log.subscribers.remove(&conn);
            }
        }
    }

    /// During shutdown, once no write is pending, closes every connection.
    fn maybe_finish_shutdown(&mut self) {
        if !self.shutting_down || !self.writes.is_idle() {
            return;
        }
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort();
        for conn in conns {
            self.forget_connection(conn);
            self.actions.push_back(Action::Close {
                conn,
                code: close_code::GOING_AWAY,
                reason: "server shutting down".into(),
            });
        }
    }
}
