//! A socket-free harness around the engine: runs its storage requests
//! against a `MemoryStorage` (in order, or in a chosen order), decodes every
//! frame it sends like a client would, and records closes.

#![allow(dead_code)]

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::chunk::{ChunkLimits, Reassembler};
use evsync_core::codec::{decode_response, encode_request};
use evsync_core::proto::v3::{Action, ConnId, Engine, EngineConfig};
use evsync_core::storage::{MemoryStorage, StorageOp, StorageRequest, StorageResponse};
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, RemoteEntry, RemoteId, Request, Response};
use std::collections::{HashMap, HashSet, VecDeque};

pub const REMOTE_ID: RemoteId =
    RemoteId([1, 2, 3, 4, 5, 6, 0x47, 8, 0x89, 10, 11, 12, 13, 14, 15, 16]);

pub struct Harness {
    pub engine: Engine,
    pub store: MemoryStorage,
    /// Storage requests emitted and not yet run.
    pub pending: VecDeque<StorageRequest>,
    /// Storage requests run whose answers are not yet delivered (to model
    /// results arriving in another order than the work was done).
    pub executed: VecDeque<StorageResponse>,
    /// Decoded responses per connection, in arrival order.
    pub received: HashMap<ConnId, Vec<Response>>,
    /// Raw frames per connection (to check sizes).
    pub frames: HashMap<ConnId, Vec<Bytes>>,
    pub closed: HashMap<ConnId, (u16, String)>,
    /// Every frame's connection, in the order the engine sent them.
    pub send_order: Vec<ConnId>,
    /// Connections whose sent bytes are not reported back (slow readers).
    pub paused: HashSet<ConnId>,
    /// Bytes sent to a paused connection and not yet reported.
    pub unreported: HashMap<ConnId, usize>,
    pub reads_run: usize,
    pub appends_run: usize,
    pub now: Timestamp,
    client_chunks: HashMap<ConnId, Reassembler>,
    next_id: i64,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(EngineConfig::default())
    }

    pub fn with_config(config: EngineConfig) -> Self {
        Harness {
            engine: Engine::new(REMOTE_ID, config),
            store: MemoryStorage::new(REMOTE_ID),
            pending: VecDeque::new(),
            executed: VecDeque::new(),
            received: HashMap::new(),
            frames: HashMap::new(),
            closed: HashMap::new(),
            send_order: Vec::new(),
            paused: HashSet::new(),
            unreported: HashMap::new(),
            reads_run: 0,
            appends_run: 0,
            now: Timestamp(0),
            client_chunks: HashMap::new(),
            next_id: 0,
        }
    }

    /// Drains the engine's actions into the harness's records.
    pub fn pump(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { conn, frame } => self.deliver(conn, frame),
                Action::Close { conn, code, reason } => {
                    assert!(reason.len() <= 123, "close reason over 123 bytes");
                    self.closed.insert(conn, (code, reason));
                }
                Action::Storage(request) => self.pending.push_back(request),
            }
        }
        while self.engine.poll_event().is_some() {}
    }

    fn deliver(&mut self, conn: ConnId, frame: Bytes) {
        assert!(
            !self.closed.contains_key(&conn),
            "frame sent to {conn:?} after its close"
        );
        let len = frame.len();
        self.send_order.push(conn);
        self.frames.entry(conn).or_default().push(frame.clone());
        let response = decode_response(&frame).expect("engine sent an undecodable frame");
        let response = match response {
            Response::Chunked(part) => {
                let r = self
                    .client_chunks
                    .entry(conn)
                    .or_insert_with(|| Reassembler::new(ChunkLimits::default()));
                r.push(part, self.now)
                    .expect("engine sent a bad chunk")
                    .map(|whole| decode_response(&whole).expect("bad chunked message"))
            }
            other => Some(other),
        };
        if let Some(response) = response {
            self.received.entry(conn).or_default().push(response);
        }
        if self.paused.contains(&conn) {
            *self.unreported.entry(conn).or_default() += len;
        } else {
            self.engine.handle_sent(conn, len);
        }
    }

    pub fn open(&mut self, conn: u64) -> ConnId {
        self.open_with(conn, Grant::full())
    }

    /// Opens a connection admitted with `grant` (expiry on `now`'s clock).
    pub fn open_with(&mut self, conn: u64, grant: Grant) -> ConnId {
        let conn = ConnId(conn);
        self.engine.handle_open(conn, grant, self.now);
        self.pump();
        conn
    }

    pub fn close(&mut self, conn: ConnId) {
        self.engine.handle_close(conn);
        self.pump();
    }

    pub fn send(&mut self, conn: ConnId, request: &Request) {
        let frame = Bytes::from(encode_request(request));
        self.send_raw(conn, frame);
    }

    pub fn send_raw(&mut self, conn: ConnId, frame: Bytes) {
        self.engine.handle_frame(conn, frame, self.now);
        self.pump();
    }

    /// Sends WriteEntries with entries made from `ns`; returns its id.
    pub fn write(&mut self, conn: ConnId, public_key: &str, ns: &[u64]) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(
            conn,
            &Request::WriteEntries {
                public_key: public_key.into(),
                id,
                iv: Bytes::from(vec![id as u8; 12]),
                encrypted_entries: ns.iter().map(|&n| entry(n)).collect(),
            },
        );
        id
    }

    pub fn request_changes(&mut self, conn: ConnId, public_key: &str, start: u64) {
        self.send(
            conn,
            &Request::RequestChanges {
                public_key: public_key.into(),
                start_sequence: start,
            },
        );
    }

    pub fn stop_changes(&mut self, conn: ConnId, public_key: &str) {
        self.send(
            conn,
            &Request::StopChanges {
                public_key: public_key.into(),
            },
        );
    }

    /// Runs the pending storage request at `index` and delivers its answer.
    pub fn run_storage_at(&mut self, index: usize) {
        self.execute_at(index);
        self.deliver_at(self.executed.len() - 1);
    }

    /// Runs the pending storage request at `index`, holding its answer back.
    pub fn execute_at(&mut self, index: usize) {
        let request = self.pending.remove(index).expect("no such pending request");
        match request.op {
            StorageOp::Append(_) | StorageOp::AppendBatches(_) => self.appends_run += 1,
            StorageOp::Read { .. } | StorageOp::ReadBatches { .. } => self.reads_run += 1,
            StorageOp::BindSigningKey { .. } => {}
        }
        let response = request.execute(&mut self.store);
        self.executed.push_back(response);
    }

    /// Delivers the held-back storage answer at `index` to the engine.
    pub fn deliver_at(&mut self, index: usize) {
        let response = self.executed.remove(index).expect("no such answer");
        self.engine.handle_storage_response(response);
        self.pump();
    }

    /// Index in `pending` of the oldest append, and of the next one.
    fn pending_appends(&self) -> Vec<usize> {
        (0..self.pending.len())
            .filter(|&i| matches!(self.pending[i].op, StorageOp::Append(_)))
            .collect()
    }

    /// True when an append has run and its answer is held back.
    pub fn append_answer_held(&self) -> bool {
        self.executed
            .iter()
            .any(|r| matches!(r, StorageResponse::Appended { .. }))
    }

    /// Index of the append a writer lane would run next: the oldest
    /// pending one, and only while no append's answer is held (a lane runs
    /// one transaction at a time, in order).
    pub fn next_lane_append(&self) -> Option<usize> {
        if self.append_answer_held() {
            return None;
        }
        self.pending_appends().first().copied()
    }

    /// A SQLite writer lane took the second pending append into the
    /// transaction of the first, still inserting
    /// (`LogConfig::join_open_appends`). False if there were not two.
    pub fn join_appends(&mut self) -> bool {
        let appends = self.pending_appends();
        if appends.len() < 2 || self.append_answer_held() {
            return false;
        }
        let joined = self.pending.remove(appends[1]).expect("found above");
        let StorageOp::Append(more) = joined.op else {
            unreachable!("an append")
        };
        let into = &mut self.pending[appends[0]];
        let StorageOp::Append(batches) = &mut into.op else {
            unreachable!("an append")
        };
        batches.extend(more);
        let into = into.id;
        self.engine.handle_append_joined(joined.id, into);
        self.pump();
        true
    }

    /// A SQLite writer lane could not take a pending append in: the one
    /// before it was already committing. The engine puts it back. False if
    /// no append was behind another.
    pub fn put_back_append(&mut self) -> bool {
        let appends = self.pending_appends();
        let behind = if self.append_answer_held() {
            appends.first()
        } else {
            appends.get(1)
        };
        let Some(&at) = behind else {
            return false;
        };
        let id = self.pending[at].id;
        assert!(
            self.engine.handle_append_put_back(id),
            "an append in flight behind another can be put back"
        );
        self.pending.remove(at);
        self.pump();
        true
    }

    /// Delivers held answers and runs storage requests in order until
    /// nothing is left.
    pub fn settle(&mut self) {
        loop {
            if !self.executed.is_empty() {
                self.deliver_at(0);
            } else if !self.pending.is_empty() {
                self.run_storage_at(0);
            } else {
                break;
            }
        }
    }

    /// Reports everything sent to a paused connection and unpauses it.
    pub fn drain(&mut self, conn: ConnId) {
        self.paused.remove(&conn);
        let bytes = self.unreported.remove(&conn).unwrap_or(0);
        self.engine.handle_sent(conn, bytes);
        self.pump();
    }

    pub fn responses(&self, conn: ConnId) -> &[Response] {
        self.received.get(&conn).map_or(&[], |v| v.as_slice())
    }

    /// Sequences of every `Changes` entry for `public_key` received on `conn`.
    pub fn changes(&self, conn: ConnId, public_key: &str) -> Vec<u64> {
        self.change_entries(conn, public_key)
            .iter()
            .map(|e| e.sequence)
            .collect()
    }

    pub fn change_entries(&self, conn: ConnId, public_key: &str) -> Vec<RemoteEntry> {
        self.responses(conn)
            .iter()
            .filter_map(|r| match r {
                Response::Changes {
                    public_key: pk,
                    entries,
                } if pk == public_key => Some(entries.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The Ack for request `id` on `conn`, if received.
    pub fn ack(&self, conn: ConnId, id: i64) -> Option<Vec<u64>> {
        self.responses(conn).iter().find_map(|r| match r {
            Response::Ack {
                id: ack_id,
                sequence_numbers,
            } if *ack_id == id => Some(sequence_numbers.clone()),
            _ => None,
        })
    }
}

pub fn entry_id(n: u64) -> Bytes {
    evsync_core::storage::conformance::entry_id(n)
}

pub fn entry(n: u64) -> EncryptedEntry {
    evsync_core::storage::conformance::entry(n)
}
