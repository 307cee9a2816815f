//! The v4 sessions of one tenant: each connection's frame splitter, session
//! auth state, chunk reassembly and Changes streams; the write RPCs waiting
//! for their commits; and the encoding of what the log service hands over
//! ([`LogSink`]): deliveries become stream Chunks (one unacknowledged Chunk
//! per stream at a time, as Effect's server sends them), commits become the
//! write RPC's acks once every batch of it is committed.

use super::auth::Challenge;
use super::config::SessionConfig;
use super::replies::{changes_values, chunk_frame, exit_frame, plaintext_values};
use super::{FrameSplitter, RequestId, WriteAck, WriteExit};
use crate::access::{ConnGrants, Grant};
use crate::chunk::Reassembler;
use crate::hash::{HashMap, HashSet, IdMap};
use crate::log::{BatchLog, CloseReason, ConnId, ConnMap, ConnSet, Delivery, LogSink, WriteToken};
use crate::proto::action::Action;
use crate::proto::close::{CloseKind, code, code_for, truncate_reason};
pub use crate::proto::event::Event;
use crate::proto::idle::IdleClock;
use crate::proto::stats::EngineStats;
use crate::storage::{StorageError, StorageRequest, StoredBatch, owned_entry_ids};
use crate::time::Timestamp;
use crate::wire::Sequence;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};

/// One open Changes stream of a connection.
#[derive(Debug)]
pub(super) struct Stream {
    /// The `EventLog.Changes` request it answers.
    pub request_id: RequestId,
    /// The first sequence of the Chunk sent and not yet acknowledged by
    /// the client, if one is.
    pub awaiting_ack: Option<Sequence>,
    /// Chunk frames waiting for the acknowledgement of the one before,
    /// each with the first sequence it carries.
    pub pending: VecDeque<(Sequence, Bytes)>,
    /// The id of the next `Chunked` value (unique within the stream).
    pub next_chunk_id: i64,
    /// A plaintext store's stream: values carry `RemoteEntry` rows.
    pub plaintext: bool,
}

/// One connection's session.
pub(super) struct Conn {
    /// Opened on the unencrypted endpoint: plaintext entries, shared stores.
    pub plaintext: bool,
    pub splitter: FrameSplitter,
    /// Since when the splitter has held part of a frame with no frame
    /// completed: the start of the age limit on a frame split across
    /// messages (see `Sessions::framing`).
    pub partial_frame_since: Option<Timestamp>,
    pub challenge: Challenge,
    /// The publicKeys authenticated on this connection.
    pub identities: HashSet<String>,
    pub chunks: Reassembler,
    /// Changes streams by log name (one per store).
    pub streams: HashMap<String, Stream>,
    /// The log name of each stream, by request id (for Ack and Interrupt).
    pub stream_logs: HashMap<RequestId, String>,
    /// Write RPCs awaiting their commit.
    pub writes: HashSet<u64>,
    /// Per streamed log, the batches this connection wrote to it (first
    /// sequence → entry ids) that its stream has not yet been sent past:
    /// left out of its deliveries whichever path they take (live, tail
    /// cache or a storage read), as the client has them from its acks.
    pub own_writes: HashMap<String, BTreeMap<Sequence, Vec<Bytes>>>,
}

impl Conn {
    /// The splitter has taken all it can from the latest message: starts,
    /// restarts (a frame completed meanwhile, so the part held is of a
    /// newer frame) or ends the age of the partial frame it holds. True
    /// when that changed whether it holds one (the caller then updates
    /// `Sessions::framing`); per message, so nothing else is touched.
    pub fn note_partial_frame(&mut self, completed_one: bool, now: Timestamp) -> bool {
        let held_before = self.partial_frame_since.is_some();
        if self.splitter.buffered_len() == 0 {
            self.partial_frame_since = None;
        } else if completed_one || !held_before {
            self.partial_frame_since = Some(now);
        }
        held_before != self.partial_frame_since.is_some()
    }
}

/// A write RPC whose batches are being committed.
#[derive(Debug)]
pub(super) struct WriteRpc {
    pub conn: ConnId,
    pub request_id: RequestId,
    /// The log its batches go to (one store per request).
    pub log: String,
    /// Each batch's entry ids, in request order.
    pub entry_ids: Vec<Vec<Bytes>>,
    /// Each batch's ack sequences, once committed.
    pub acks: Vec<Option<Vec<Sequence>>>,
    /// The write tokens of its batches.
    pub tokens: Vec<i64>,
    /// For each entry of the request, its index among the batches' entries
    /// (`None`: the same order).
    pub request_order: Option<Vec<usize>>,
}

pub(super) struct Sessions {
    pub config: SessionConfig,
    pub conns: ConnMap<Conn>,
    pub grants: ConnGrants,
    /// Connections holding incomplete chunked writes (the only ones with a
    /// deadline).
    pub chunking: ConnSet,
    /// Connections holding part of a frame (a frame may span WebSocket
    /// messages): each has a deadline too, the chunk age limit, so that a
    /// peer cannot park up to `max_frame_bytes` on a connection for as
    /// long as it keeps it open.
    pub framing: ConnSet,
    /// When each connection was last heard from, for the idle timeout.
    pub idle: IdleClock,
    /// Keyed by `next_rpc`, our own counter.
    pub write_rpcs: IdMap<u64, WriteRpc>,
    /// Which write RPC, and which batch of it, each write token is.
    pub tokens: IdMap<i64, (u64, usize)>,
    pub next_rpc: u64,
    pub next_token: i64,
    pub actions: VecDeque<Action>,
    pub events: VecDeque<Event>,
    pub stats: EngineStats,
    /// Whether decoded messages are recorded as [`Event::Request`] (SYNC_DEBUG).
    pub debug: bool,
}

impl Sessions {
    pub fn new(config: SessionConfig) -> Self {
        Sessions {
            idle: IdleClock::new(config.idle_socket_timeout_ms),
            config,
            conns: ConnMap::default(),
            grants: ConnGrants::default(),
            chunking: ConnSet::default(),
            framing: ConnSet::default(),
            write_rpcs: IdMap::default(),
            tokens: IdMap::default(),
            next_rpc: 0,
            next_token: 0,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: EngineStats::default(),
            debug: false,
        }
    }

    /// Opens `conn` with `grant`, its idle clock starting at `now`.
    pub fn open(&mut self, conn: ConnId, grant: Grant, plaintext: bool, now: Timestamp) {
        self.conns.insert(
            conn,
            Conn {
                plaintext,
                splitter: FrameSplitter::new(self.config.max_frame_bytes),
                partial_frame_since: None,
                challenge: Challenge::default(),
                identities: HashSet::default(),
                chunks: Reassembler::new(self.config.chunks.clone()),
                streams: HashMap::default(),
                stream_logs: HashMap::default(),
                writes: HashSet::default(),
                own_writes: HashMap::default(),
            },
        );
        self.grants.open(conn, grant);
        self.idle.open(conn, now);
    }

    /// Forgets `conn` and its write RPCs; false if it was not open.
    pub fn forget(&mut self, conn: ConnId) -> bool {
        self.chunking.remove(&conn);
        self.framing.remove(&conn);
        self.idle.forget(conn);
        self.grants.forget(conn);
        let Some(state) = self.conns.remove(&conn) else {
            return false;
        };
        for rpc in state.writes {
            if let Some(rpc) = self.write_rpcs.remove(&rpc) {
                for token in rpc.tokens {
                    self.tokens.remove(&token);
                }
            }
        }
        true
    }

    /// The connections whose partial frame reached the age limit by
    /// `now`, in order, each with the reason it is closed.
    pub fn expired_partial_frames(&self, now: Timestamp) -> Vec<(ConnId, String)> {
        let limit = self.config.chunks.max_incomplete_age_ms;
        let mut expired: Vec<(ConnId, String)> = self
            .framing
            .iter()
            .filter_map(|conn| {
                let state = self.conns.get(conn)?;
                let age = now.millis_since(state.partial_frame_since?);
                (age >= limit).then(|| {
                    let held = state.splitter.buffered_len();
                    (
                        *conn,
                        format!("a frame incomplete after {age} ms ({held} bytes held)"),
                    )
                })
            })
            .collect();
        expired.sort();
        expired
    }

    /// When the oldest partial frame reaches the age limit.
    pub fn next_partial_frame_deadline(&self) -> Option<Timestamp> {
        let limit = self.config.chunks.max_incomplete_age_ms;
        self.framing
            .iter()
            .filter_map(|conn| self.conns.get(conn)?.partial_frame_since)
            .min()
            .map(|since| since.plus_millis(limit))
    }

    /// A new write RPC of `conn` for batches with these entry ids; returns
    /// the token of each batch.
    pub fn start_write(
        &mut self,
        conn: ConnId,
        request_id: RequestId,
        log: String,
        entry_ids: Vec<Vec<Bytes>>,
        request_order: Option<Vec<usize>>,
    ) -> Vec<WriteToken> {
        let rpc = self.next_rpc;
        self.next_rpc += 1;
        let tokens: Vec<i64> = (0..entry_ids.len())
            .map(|i| {
                let token = self.next_token;
                self.next_token += 1;
                self.tokens.insert(token, (rpc, i));
                token
            })
            .collect();
        if let Some(state) = self.conns.get_mut(&conn) {
            state.writes.insert(rpc);
        }
        self.write_rpcs.insert(
            rpc,
            WriteRpc {
                conn,
                request_id,
                log,
                acks: vec![None; entry_ids.len()],
                entry_ids,
                tokens: tokens.clone(),
                request_order,
            },
        );
        tokens.into_iter().map(WriteToken).collect()
    }

    /// Queues frames already accounted for.
    pub fn push_frame(&mut self, conn: ConnId, frame: Bytes) {
        self.actions.push_back(Action::Send { conn, frame });
    }

    /// Sends the next Chunk of `conn`'s stream on `log` if the client has
    /// acknowledged the one before.
    pub fn pump(&mut self, conn: ConnId, log: &str) {
        let Some(stream) = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.streams.get_mut(log))
        else {
            return;
        };
        if stream.awaiting_ack.is_some() {
            return;
        }
        if let Some((first, frame)) = stream.pending.pop_front() {
            stream.awaiting_ack = Some(first);
            self.actions.push_back(Action::Send { conn, frame });
        }
    }

    /// Closes `conn` from the v4 side: forgets it, logs why, tells the
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
}

impl LogSink<BatchLog> for Sessions {
    fn storage(&mut self, request: StorageRequest) {
        self.actions.push_back(Action::Storage(request));
    }

    fn deliver(
        &mut self,
        conn: ConnId,
        delivery: Delivery<'_, BatchLog>,
        room: usize,
    ) -> Option<usize> {
        let max = self.config.changes_value_bytes;
        let state = self.conns.get_mut(&conn)?;
        let stream = state.streams.get_mut(delivery.log)?;
        // No echo: leave out what this connection wrote (matched by first
        // sequence and entry ids, so a batch of another writer holding ids
        // it lacks is never left out), and forget what this delivery
        // passes.
        let own = state.own_writes.get(delivery.log);
        let own_batch = |batch: &StoredBatch| {
            own.is_some_and(|own| own.get(&batch.sequence) == Some(&batch.entry_ids))
        };
        let entries = delivery.entries().filter(|&batch| !own_batch(batch));
        let values = if stream.plaintext {
            plaintext_values(entries, max, &mut stream.next_chunk_id)
        } else {
            changes_values(entries, max, &mut stream.next_chunk_id)
        };
        if let Some(own) = state.own_writes.get_mut(delivery.log) {
            own.retain(|&sequence, _| sequence > delivery.last);
        }
        let frames: Vec<(Sequence, Bytes)> = values
            .into_iter()
            .map(|(first, value)| (first, chunk_frame(&stream.request_id, &vec![value])))
            .collect();
        let size: usize = frames.iter().map(|(_, frame)| frame.len()).sum();
        if size > room {
            return None;
        }
        stream.pending.extend(frames);
        self.pump(conn, delivery.log);
        Some(size)
    }

    fn committed(
        &mut self,
        conn: ConnId,
        token: WriteToken,
        sequences: &[Sequence],
        room: usize,
    ) -> Option<usize> {
        let Some((rpc_no, index)) = self.tokens.remove(&token.0) else {
            return Some(0);
        };
        let rpc = self.write_rpcs.get_mut(&rpc_no)?;
        rpc.acks[index] = Some(sequences.to_vec());
        if let (Some(state), Some(&first)) = (self.conns.get_mut(&rpc.conn), sequences.first())
            && state.streams.contains_key(&rpc.log)
        {
            state
                .own_writes
                .entry(rpc.log.clone())
                .or_default()
                // Copied: the request's ids are slices of the message it
                // came in, which a held-back stream could keep for long.
                .insert(first, owned_entry_ids(&rpc.entry_ids[index]));
        }
        if rpc.acks.iter().any(Option::is_none) {
            return Some(0);
        }
        let rpc = self.write_rpcs.remove(&rpc_no).expect("present");
        if let Some(state) = self.conns.get_mut(&rpc.conn) {
            state.writes.remove(&rpc_no);
        }
        let mut acks: Vec<WriteAck> = rpc
            .entry_ids
            .into_iter()
            .zip(rpc.acks)
            .flat_map(|(ids, seqs)| {
                ids.into_iter()
                    .zip(seqs.unwrap_or_default())
                    .map(|(entry_id, sequence)| WriteAck { sequence, entry_id })
            })
            .collect();
        if let Some(order) = rpc.request_order {
            let mut stored: Vec<Option<WriteAck>> = acks.into_iter().map(Some).collect();
            acks = order
                .iter()
                .filter_map(|&i| stored.get_mut(i).and_then(Option::take))
                .collect();
        }
        let frame = exit_frame(&rpc.request_id, &WriteExit::Success(acks));
        let size = frame.len();
        if size > room {
            return None;
        }
        self.push_frame(conn, frame);
        Some(size)
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
