//! The v3 sessions of one tenant: each connection's frame decoder, the
//! queues of actions and events, and the encoding of what the log service
//! hands over ([`LogSink`]): deliveries become `Changes`, commits `Ack`s,
//! close reasons close codes.

use super::changes::changes_frames;
use super::config::EngineConfig;
use super::events::{Action, Event};
use super::framer::{FrameDecoder, FrameEncoder};
use super::memo::SharedFrames;
use crate::access::{ConnGrants, Grant};
use crate::log::{CloseReason, ConnId, ConnMap, ConnSet, Delivery, LogSink, WriteToken};
use crate::proto::close::{CloseKind, code, code_for, truncate_reason};
use crate::proto::idle::IdleClock;
use crate::proto::stats::EngineStats;
use crate::storage::{StorageError, StorageRequest};
use crate::time::Timestamp;
use crate::wire::{Request, Response, Sequence};
use bytes::Bytes;
use std::collections::VecDeque;

/// How many tail caches' worth of older `Changes` encodings are kept for
/// sharing (besides the latest): enough for the few positions a crowd of
/// subscribers resumes from after a burst.
const SHARED_FRAMES_PER_TAIL: usize = 4;

pub(super) struct Sessions {
    pub config: EngineConfig,
    pub debug: bool,
    /// Frame decoder of every open connection.
    pub conns: ConnMap<FrameDecoder<Request>>,
    /// Connections holding incomplete chunked messages (the only ones with
    /// a deadline), so that `poll_timeout` need not scan every connection.
    pub chunking: ConnSet,
    /// When each connection was last heard from, for the idle timeout.
    pub idle: IdleClock,
    /// What each connection's token allows, and when it expires.
    pub grants: ConnGrants,
    pub actions: VecDeque<Action>,
    pub events: VecDeque<Event>,
    /// The session layer's counters (the log part is filled at take).
    pub stats: EngineStats,
    encoder: FrameEncoder,
    memo: SharedFrames,
}

impl Sessions {
    pub fn new(config: EngineConfig) -> Self {
        let memo = SharedFrames::new(config.log.tail_cache_bytes * SHARED_FRAMES_PER_TAIL);
        let idle = IdleClock::new(config.idle_socket_timeout_ms);
        Sessions {
            config,
            debug: false,
            conns: ConnMap::default(),
            chunking: ConnSet::default(),
            idle,
            grants: ConnGrants::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: EngineStats::default(),
            encoder: FrameEncoder::default(),
            memo,
        }
    }

    /// Opens `conn` with `grant`, its idle clock starting at `now`.
    pub fn open(&mut self, conn: ConnId, grant: Grant, now: Timestamp) {
        self.conns
            .insert(conn, FrameDecoder::new(self.config.chunks.clone()));
        self.idle.open(conn, now);
        self.grants.open(conn, grant);
    }

    /// Forgets `conn`; false if it was not open.
    pub fn forget(&mut self, conn: ConnId) -> bool {
        self.chunking.remove(&conn);
        self.idle.forget(conn);
        self.grants.forget(conn);
        self.conns.remove(&conn).is_some()
    }

    /// The frames of one response.
    pub fn encode(&mut self, response: &Response) -> Vec<Bytes> {
        self.encoder.encode(response)
    }

    /// Queues frames already accounted for.
    pub fn push_frames(&mut self, conn: ConnId, frames: Vec<Bytes>) {
        self.actions
            .extend(frames.into_iter().map(|frame| Action::Send { conn, frame }));
    }

    /// Closes `conn` from the v3 side: forgets it, logs why, tells the
    /// adapter. False if it was not open.
    pub fn close(&mut self, conn: ConnId, close_code: u16, reason: String) -> bool {
        if !self.forget(conn) {
            return false;
        }
        self.stats.closed(CloseKind::of_code(close_code));
        self.events.push_back(Event::Closing {
            conn,
            code: close_code,
            reason: reason.clone(),
        });
        self.actions.push_back(Action::Close {
            conn,
            code: close_code,
            reason: truncate_reason(reason),
        });
        true
    }

    /// Queues `frames` if they fit in `room`; their size, or `None`.
    fn queue_within(&mut self, conn: ConnId, frames: Vec<Bytes>, room: usize) -> Option<usize> {
        let size: usize = frames.iter().map(Bytes::len).sum();
        if size > room {
            return None;
        }
        self.push_frames(conn, frames);
        Some(size)
    }
}

impl LogSink for Sessions {
    fn storage(&mut self, request: StorageRequest) {
        self.actions.push_back(Action::Storage(request));
    }

    fn deliver(&mut self, conn: ConnId, delivery: Delivery<'_>, room: usize) -> Option<usize> {
        let max = self.config.max_changes_message_bytes;
        let encoder = &mut self.encoder;
        let frames = if delivery.complete {
            self.memo
                .get_or_encode(delivery.log, delivery.first, delivery.last, || {
                    changes_frames(delivery.log, delivery.entries(), max, encoder)
                })
        } else {
            changes_frames(delivery.log, delivery.entries(), max, encoder)
        };
        self.queue_within(conn, frames, room)
    }

    fn committed(
        &mut self,
        conn: ConnId,
        token: WriteToken,
        sequences: &[Sequence],
        room: usize,
    ) -> Option<usize> {
        let ack = Response::Ack {
            id: token.0,
            sequence_numbers: sequences.to_vec(),
        };
        let frames = self.encode(&ack);
        self.queue_within(conn, frames, room)
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if reason == CloseReason::ShuttingDown {
            // Not an incident: no Closing event.
            if self.forget(conn) {
                self.stats.closed(CloseKind::GoingAway);
                self.actions.push_back(Action::Close {
                    conn,
                    code: code::GOING_AWAY,
                    reason: reason.to_string(),
                });
            }
            return;
        }
        Sessions::close(self, conn, code_for(&reason), reason.to_string());
    }

    fn storage_failed(&mut self, error: &StorageError) {
        self.events.push_back(Event::StorageFailed {
            message: error.message.clone(),
        });
    }
}
