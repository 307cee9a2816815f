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

mod config;

pub use config::EngineConfig;

use crate::storage::StorageRequest;
use bytes::Bytes;

/// An adapter-chosen id for one WebSocket connection, unique within a tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// WebSocket close codes the engine uses (RFC 6455 §7.4.1).
pub mod close_code {
    /// The server is shutting down; the replica should reconnect later.
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed frame, unknown tag, ill-formed chunk sequence.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A policy limit (too many subscriptions, slow consumer).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or reassembled message over its size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Storage failed; nothing was acknowledged, the replica retries.
    pub const INTERNAL_ERROR: u16 = 1011;
}

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
    _todo: (),
}

impl Engine {
    /// An engine for a tenant whose stored logs carry `remote_id`.
    pub fn new(_remote_id: crate::wire::RemoteId, _config: EngineConfig) -> Self {
        todo!()
    }

    /// Turns recording of [`Event::Request`] on or off (SYNC_DEBUG).
    pub fn set_debug(&mut self, _on: bool) {
        todo!()
    }

    /// A WebSocket was accepted: queues its `Hello`.
    pub fn handle_open(&mut self, _conn: ConnId, _now: crate::time::Timestamp) {
        todo!()
    }

    /// One complete binary frame arrived on `conn` (a text frame is passed
    /// as its UTF-8 bytes). Bad input closes only that connection.
    pub fn handle_frame(&mut self, _conn: ConnId, _frame: Bytes, _now: crate::time::Timestamp) {
        todo!()
    }

    /// Storage answered a request from [`Action::Storage`].
    pub fn handle_storage_response(&mut self, _response: crate::storage::StorageResponse) {
        todo!()
    }

    /// `bytes` of frames queued for `conn` were written to its socket.
    pub fn handle_sent(&mut self, _conn: ConnId, _bytes: usize) {
        todo!()
    }

    /// `conn` closed (by the peer or the adapter). Pending writes still
    /// commit; their Acks are dropped.
    pub fn handle_close(&mut self, _conn: ConnId) {
        todo!()
    }

    /// Time passed: expires incomplete chunked messages.
    pub fn handle_timeout(&mut self, _now: crate::time::Timestamp) {
        todo!()
    }

    /// Graceful shutdown: frames received from now on are ignored; once the
    /// writes already received are committed and acknowledged, every
    /// connection is closed with [`close_code::GOING_AWAY`].
    pub fn handle_shutdown(&mut self) {
        todo!()
    }

    /// The earliest time at which `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<crate::time::Timestamp> {
        todo!()
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        todo!()
    }

    /// The next thing worth logging.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        todo!()
    }

    /// True when no connection is open and no storage work is pending or in
    /// flight: the adapter may unload the tenant.
    pub fn is_idle(&self) -> bool {
        todo!()
    }
}
