//! A socket-free harness around the v4 engine (`proto::v4::Engine`): one or
//! more engines ("nodes") over one `MemoryStorage`, clients that build their
//! frames with the codec's own encoders as Effect 4's client does (numeric
//! request ids from one process-wide counter, 16-byte entry ids, 12-byte
//! ivs, Ed25519 signatures over `auth::signed_payload`), and a record of
//! every frame each connection was sent (decoded as a client decodes it),
//! every close and every storage request run. Randomness and time are
//! fixed: challenges come from a counter, the clock moves only when a test
//! moves it.
//!
//! Included with `#[path]` by the v4 tests, so the v3 harness
//! (`support/mod.rs`) and its users are untouched.

#![allow(dead_code)]

use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use evsync_core::access::Grant;
use evsync_core::log::ConnId;
use evsync_core::proto::action::Action;
use evsync_core::proto::v4::schema_binary::Value;
use evsync_core::proto::v4::{
    self, Authenticate, ChangesPayload, ChangesValue, ChunkedMessage, EncryptedBatch,
    EncryptedRemoteBatch, ErrorCode, EventLogProtocolError, Exit, FromClient, FromServer,
    HelloExit, Reason, Request, RequestId, SessionConfig, WriteAck, WriteEntries, WriteExit,
    WriteSinglePayload, auth,
};
use evsync_core::storage::{MemoryStorage, StorageOp, StorageRequest};
use evsync_core::time::Timestamp;
use evsync_core::wire::RemoteId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The tenant's remoteId (every node serves the same tenant).
pub const REMOTE_ID: RemoteId = RemoteId([
    0x9a, 0x1c, 0x3e, 0x57, 0x20, 0x4b, 0x4f, 0x11, 0x8d, 0x02, 0x6e, 0x75, 0xc4, 0x19, 0xb8, 0x33,
]);

/// Where the clock starts.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

/// The `n`-th challenge the harness's randomness hands out (from 1).
pub fn challenge_no(n: u64) -> [u8; 32] {
    let mut bytes = [0xc5; 32];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes
}

/// An Effect identity: a publicKey (a UUID string, not derived from any
/// key) and its Ed25519 signing key.
#[derive(Clone)]
pub struct Identity {
    pub public_key: String,
    pub key: SigningKey,
}

impl Identity {
    /// An identity whose signing key has the seed `[seed; 32]`.
    pub fn new(public_key: &str, seed: u8) -> Self {
        Identity {
            public_key: public_key.to_string(),
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    /// The same publicKey with another signing key (an impostor).
    pub fn with_key(&self, seed: u8) -> Self {
        Identity::new(&self.public_key, seed)
    }

    pub fn signing_public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The `Authenticate` payload answering `challenge`, signed as
    /// Effect's client signs it.
    pub fn authenticate(&self, challenge: &[u8]) -> Authenticate {
        let signing = self.signing_public_key();
        let payload = auth::signed_payload(&REMOTE_ID, challenge, &self.public_key, &signing);
        Authenticate {
            signature: Bytes::copy_from_slice(&self.key.sign(&payload).to_bytes()),
            public_key: self.public_key.clone(),
            signing_public_key: Bytes::copy_from_slice(&signing),
        }
    }
}

/// A 16-byte entry id (UUIDv7-shaped: a time prefix, version 7, `n`).
pub fn entry_id(n: u64) -> Bytes {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&[0x01, 0x93, 0x8a, 0x52, 0x10, 0x00]);
    id[6] = 0x70;
    id[8..].copy_from_slice(&(n | 0x8000_0000_0000_0000).to_be_bytes());
    Bytes::copy_from_slice(&id)
}

/// An encrypted batch of the entries `ids` with a ciphertext of
/// `cipher_len` bytes (its bytes derived from the first id, so batches
/// differ) and a 12-byte iv.
pub fn batch(ids: impl IntoIterator<Item = u64>, cipher_len: usize) -> EncryptedBatch {
    let ids: Vec<u64> = ids.into_iter().collect();
    let first = ids[0];
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&first.to_be_bytes());
    EncryptedBatch {
        iv: Bytes::copy_from_slice(&iv),
        encrypted_batch: Bytes::from(
            (0..cipher_len)
                .map(|i| (first as usize * 31 + i) as u8)
                .collect::<Vec<u8>>(),
        ),
        entry_ids: ids.into_iter().map(entry_id).collect(),
    }
}

/// The `WriteEntries` frame a client puts in `WriteSingle.data` (or splits
/// into `WriteChunked` pieces).
pub fn write_entries_frame(public_key: &str, store_id: &str, batches: &[EncryptedBatch]) -> Bytes {
    Bytes::from(v4::encode(&WriteEntries {
        store_id: store_id.to_string(),
        batches: batches.to_vec(),
        public_key: public_key.to_string(),
    }))
}

/// Splits a frame as Effect's `ChunkedMessage.split` does: pieces of
/// 512,000 bytes sharing `id`.
pub fn split(id: i64, data: &Bytes) -> Vec<ChunkedMessage> {
    let total = data.len().div_ceil(v4::CHUNK_SIZE);
    (0..total)
        .map(|index| ChunkedMessage {
            id,
            index: index as u64,
            total: total as u64,
            data: data
                .slice(index * v4::CHUNK_SIZE..((index + 1) * v4::CHUNK_SIZE).min(data.len())),
        })
        .collect()
}

/// One frame a connection received, decoded as Effect's client decodes it.
#[derive(Clone, Debug)]
pub enum Got {
    Exit {
        request_id: RequestId,
        exit: Bytes,
    },
    Chunk {
        request_id: RequestId,
        values: Vec<ChangesValue>,
    },
    Pong,
    Defect(Bytes),
}

/// Which kind of storage request an engine issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Append,
    Read,
    AppendBatches,
    ReadBatches,
    BindSigningKey,
}

fn kind(op: &StorageOp) -> OpKind {
    match op {
        StorageOp::Append(_) => OpKind::Append,
        StorageOp::Read { .. } => OpKind::Read,
        StorageOp::AppendBatches(_) => OpKind::AppendBatches,
        StorageOp::ReadBatches { .. } => OpKind::ReadBatches,
        StorageOp::BindSigningKey { .. } => OpKind::BindSigningKey,
    }
}

pub struct Harness {
    /// The engines ("nodes"), all over `store`.
    pub nodes: Vec<v4::Engine>,
    pub store: MemoryStorage,
    pub now: Timestamp,
    /// Challenges handed out so far, by all nodes.
    pub challenges_issued: Arc<AtomicU64>,
    /// The node each connection is open on.
    pub conn_node: HashMap<ConnId, usize>,
    /// Every storage request run, in order: (node, kind).
    pub storage_ops: Vec<(usize, OpKind)>,
    /// Raw frames per connection, in order.
    pub frames: HashMap<ConnId, Vec<Bytes>>,
    /// Decoded frames per connection, in order.
    pub received: HashMap<ConnId, Vec<Got>>,
    pub closed: HashMap<ConnId, (u16, String)>,
    /// Every event the engines reported, in order.
    pub events: Vec<v4::Event>,
    /// Connections whose stream Chunks are acknowledged as they arrive.
    pub auto_ack: HashSet<ConnId>,
    /// The latest challenge each connection's Hello returned.
    challenges: HashMap<ConnId, Bytes>,
    next_request: i64,
}

impl Harness {
    /// One node with the default configuration.
    pub fn new() -> Self {
        Self::with_nodes(1, SessionConfig::default())
    }

    pub fn with_config(config: SessionConfig) -> Self {
        Self::with_nodes(1, config)
    }

    /// `n` engines over one storage, each with `config`.
    pub fn with_nodes(n: usize, config: SessionConfig) -> Self {
        let challenges_issued = Arc::new(AtomicU64::new(0));
        let nodes = (0..n)
            .map(|_| {
                let counter = challenges_issued.clone();
                let random: v4::Randomness =
                    Box::new(move || challenge_no(counter.fetch_add(1, Ordering::SeqCst) + 1));
                v4::Engine::new(REMOTE_ID, config.clone(), random)
            })
            .collect();
        Harness {
            nodes,
            store: MemoryStorage::new(REMOTE_ID),
            now: T0,
            challenges_issued,
            conn_node: HashMap::new(),
            storage_ops: Vec::new(),
            frames: HashMap::new(),
            received: HashMap::new(),
            closed: HashMap::new(),
            events: Vec::new(),
            auto_ack: HashSet::new(),
            challenges: HashMap::new(),
            next_request: 0,
        }
    }

    /// The engine of node 0.
    pub fn engine(&mut self) -> &mut v4::Engine {
        &mut self.nodes[0]
    }

    /// Opens connection `conn` on node 0.
    pub fn open(&mut self, conn: u64) -> ConnId {
        self.open_on(0, conn)
    }

    pub fn open_on(&mut self, node: usize, conn: u64) -> ConnId {
        let conn = ConnId(conn);
        self.conn_node.insert(conn, node);
        self.nodes[node].handle_open(conn, Grant::full(), false, self.now);
        self.pump(node);
        conn
    }

    fn node_of(&self, conn: ConnId) -> usize {
        *self.conn_node.get(&conn).expect("an open connection")
    }

    /// Drains `node`'s actions: runs storage requests and feeds their
    /// answers back, records (and reports as written) every frame, records
    /// closes; then sends the Acks of auto-acked streams, until quiet.
    pub fn pump(&mut self, node: usize) {
        loop {
            let mut acks = Vec::new();
            while let Some(action) = self.nodes[node].poll_action() {
                match action {
                    Action::Send { conn, frame } => {
                        if let Some(id) = self.record(conn, frame.clone())
                            && self.auto_ack.contains(&conn)
                        {
                            acks.push((conn, id));
                        }
                        self.nodes[node].handle_sent(conn, frame.len());
                    }
                    Action::Close { conn, code, reason } => {
                        assert!(reason.len() <= 123, "close reason over 123 bytes");
                        assert!(
                            self.closed.insert(conn, (code, reason)).is_none(),
                            "{conn:?} closed twice"
                        );
                    }
                    Action::Storage(request) => self.run_storage(node, request),
                }
            }
            while let Some(event) = self.nodes[node].poll_event() {
                self.events.push(event);
            }
            if acks.is_empty() {
                return;
            }
            for (conn, id) in acks {
                if !self.closed.contains_key(&conn) {
                    let frame = FromClient::Ack { request_id: id }.encode();
                    self.nodes[node].handle_message(conn, Bytes::from(frame), self.now);
                }
            }
        }
    }

    fn run_storage(&mut self, node: usize, request: StorageRequest) {
        self.storage_ops.push((node, kind(&request.op)));
        let response = request.execute(&mut self.store);
        self.nodes[node].handle_storage_response(response);
    }

    /// Records a frame sent to `conn`; returns the stream id of a Chunk.
    fn record(&mut self, conn: ConnId, frame: Bytes) -> Option<RequestId> {
        assert!(
            !self.closed.contains_key(&conn),
            "frame sent to {conn:?} after its close"
        );
        self.frames.entry(conn).or_default().push(frame.clone());
        let got = match FromServer::decode(&frame).expect("the engine sent an undecodable frame") {
            FromServer::Exit { request_id, exit } => Got::Exit { request_id, exit },
            FromServer::Chunk { request_id, values } => Got::Chunk {
                request_id,
                values: v4::decode::<Vec<ChangesValue>>(&values)
                    .expect("the engine sent undecodable chunk values"),
            },
            FromServer::Pong => Got::Pong,
            FromServer::Defect { defect } => Got::Defect(defect),
        };
        let stream = match &got {
            Got::Chunk { request_id, .. } => Some(request_id.clone()),
            _ => None,
        };
        self.received.entry(conn).or_default().push(got);
        stream
    }

    // ------------------------------------------------------------- client

    /// The next request id of the (process-wide) client counter.
    pub fn next_id(&mut self) -> RequestId {
        let id = self.next_request;
        self.next_request += 1;
        RequestId::Number(id)
    }

    /// Sends raw bytes on `conn` as one WebSocket message.
    pub fn send_raw(&mut self, conn: ConnId, data: impl Into<Bytes>) {
        let node = self.node_of(conn);
        self.nodes[node].handle_message(conn, data.into(), self.now);
        self.pump(node);
    }

    pub fn send(&mut self, conn: ConnId, message: &FromClient) {
        self.send_raw(conn, message.encode());
    }

    /// Sends a request of RPC `tag` with a payload frame; returns its id.
    pub fn request(&mut self, conn: ConnId, tag: &str, payload: Vec<u8>) -> RequestId {
        let id = self.next_id();
        let request = Request::new(id.clone(), tag, Bytes::from(payload));
        self.send(conn, &FromClient::Request(request));
        id
    }

    /// As [`Harness::request`], also returning the message as it was sent,
    /// to see whether the engine still holds any part of it.
    pub fn request_keeping(
        &mut self,
        conn: ConnId,
        tag: &str,
        payload: Vec<u8>,
    ) -> (RequestId, Bytes) {
        let id = self.next_id();
        let request = Request::new(id.clone(), tag, Bytes::from(payload));
        let message = Bytes::from(FromClient::Request(request).encode());
        self.send_raw(conn, message.clone());
        (id, message)
    }

    /// `EventLog.Hello`; returns its id (the answer's challenge is kept for
    /// [`Harness::authenticate`]).
    pub fn hello(&mut self, conn: ConnId) -> RequestId {
        let id = self.request(conn, "EventLog.Hello", v4::encode(&()));
        if let Some(Exit::Success(hello)) = self.try_exit::<HelloExit>(conn, &id) {
            self.challenges.insert(conn, hello.challenge);
        }
        id
    }

    /// `EventLog.Authenticate` of `identity`, answering the connection's
    /// latest challenge (zeros if it had none).
    pub fn authenticate(&mut self, conn: ConnId, identity: &Identity) -> RequestId {
        let challenge = self
            .challenges
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| Bytes::from(vec![0; 32]));
        let payload = identity.authenticate(&challenge);
        self.send_authenticate(conn, &payload)
    }

    pub fn send_authenticate(&mut self, conn: ConnId, payload: &Authenticate) -> RequestId {
        self.request(conn, "EventLog.Authenticate", v4::encode(payload))
    }

    /// Hello then Authenticate, asserting success.
    pub fn login(&mut self, conn: ConnId, identity: &Identity) {
        self.hello(conn);
        let id = self.authenticate(conn, identity);
        assert_eq!(
            self.exit::<(), EventLogProtocolError>(conn, &id),
            Exit::Success(()),
            "authenticating {} on {conn:?}",
            identity.public_key
        );
    }

    /// Opens `conn` on `node` and logs `identity` in.
    pub fn connect(&mut self, node: usize, conn: u64, identity: &Identity) -> ConnId {
        let conn = self.open_on(node, conn);
        self.login(conn, identity);
        conn
    }

    /// `EventLog.WriteSingle` of `batches`; returns its id.
    pub fn write(
        &mut self,
        conn: ConnId,
        identity: &Identity,
        store_id: &str,
        batches: &[EncryptedBatch],
    ) -> RequestId {
        let data = write_entries_frame(&identity.public_key, store_id, batches);
        self.write_single(conn, data)
    }

    /// `EventLog.WriteSingle` carrying `data`.
    pub fn write_single(&mut self, conn: ConnId, data: Bytes) -> RequestId {
        let payload = v4::encode(&WriteSinglePayload { data });
        self.request(conn, "EventLog.WriteSingle", payload)
    }

    /// One `EventLog.WriteChunked` request for `piece`.
    pub fn write_chunked(&mut self, conn: ConnId, piece: &ChunkedMessage) -> RequestId {
        self.request(conn, "EventLog.WriteChunked", v4::encode(piece))
    }

    /// `EventLog.Changes` for (publicKey, storeId) from `start`.
    pub fn changes(
        &mut self,
        conn: ConnId,
        public_key: &str,
        store_id: &str,
        start: u64,
    ) -> RequestId {
        let payload = ChangesPayload {
            store_id: store_id.to_string(),
            start_sequence: start,
            public_key: public_key.to_string(),
        };
        self.request(conn, "EventLog.Changes", v4::encode(&payload))
    }

    pub fn ack(&mut self, conn: ConnId, request_id: &RequestId) {
        self.send(
            conn,
            &FromClient::Ack {
                request_id: request_id.clone(),
            },
        );
    }

    pub fn interrupt(&mut self, conn: ConnId, request_id: &RequestId) {
        self.send(
            conn,
            &FromClient::Interrupt {
                request_id: request_id.clone(),
            },
        );
    }

    /// Time passes on every node (`handle_timeout`).
    pub fn advance_to(&mut self, now: Timestamp) {
        self.now = now;
        for node in 0..self.nodes.len() {
            self.nodes[node].handle_timeout(now);
            self.pump(node);
        }
    }

    /// Another writer's commit reached `node`.
    pub fn log_advanced(&mut self, node: usize, public_key: &str, store_id: &str, head: u64) {
        let store = evsync_core::storage::StoreKey::new(public_key, store_id);
        self.nodes[node].handle_log_advanced(&store, head);
        self.pump(node);
    }

    // ---------------------------------------------------------- inspection

    pub fn got(&self, conn: ConnId) -> &[Got] {
        self.received.get(&conn).map_or(&[], Vec::as_slice)
    }

    /// The number of storage requests of `kind` run so far.
    pub fn ops(&self, kind: OpKind) -> usize {
        self.storage_ops.iter().filter(|(_, k)| *k == kind).count()
    }

    /// Every Exit frame answering `id` on `conn`.
    pub fn exits(&self, conn: ConnId, id: &RequestId) -> Vec<Bytes> {
        self.got(conn)
            .iter()
            .filter_map(|g| match g {
                Got::Exit { request_id, exit } if request_id == id => Some(exit.clone()),
                _ => None,
            })
            .collect()
    }

    /// The one Exit answering `id` on `conn`, decoded, if there is one.
    pub fn try_exit<X: Value>(&self, conn: ConnId, id: &RequestId) -> Option<X> {
        let exits = self.exits(conn, id);
        assert!(exits.len() <= 1, "{} exits for {id:?}", exits.len());
        exits
            .first()
            .map(|exit| v4::decode::<X>(exit).expect("an exit of the RPC's exit schema"))
    }

    /// The one Exit answering `id` on `conn`, decoded.
    pub fn exit<T: Value, E: Value>(&self, conn: ConnId, id: &RequestId) -> Exit<T, E> {
        self.try_exit::<Exit<T, E>>(conn, id)
            .unwrap_or_else(|| panic!("no exit for {id:?} on {conn:?}: {:?}", self.got(conn)))
    }

    /// The acks of write `id` (panics unless it succeeded).
    pub fn acks(&self, conn: ConnId, id: &RequestId) -> Vec<WriteAck> {
        match self.try_exit::<WriteExit>(conn, id) {
            Some(Exit::Success(acks)) => acks,
            other => panic!("write {id:?} on {conn:?}: {other:?}"),
        }
    }

    /// The Chunks of stream `id` on `conn`, in arrival order.
    pub fn chunks(&self, conn: ConnId, id: &RequestId) -> Vec<Vec<ChangesValue>> {
        self.got(conn)
            .iter()
            .filter_map(|g| match g {
                Got::Chunk { request_id, values } if request_id == id => Some(values.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every Chunk on `conn`, of any stream.
    pub fn chunk_count(&self, conn: ConnId) -> usize {
        self.got(conn)
            .iter()
            .filter(|g| matches!(g, Got::Chunk { .. }))
            .count()
    }

    /// The batches stream `id` delivered to `conn`, in arrival order, as
    /// the client decodes them: `Single` values whole, `Chunked` pieces
    /// reassembled by id (pieces of a value not yet complete are left out).
    pub fn batches(&self, conn: ConnId, id: &RequestId) -> Vec<EncryptedRemoteBatch> {
        let mut out = Vec::new();
        let mut pieces: BTreeMap<i64, Vec<Option<Bytes>>> = BTreeMap::new();
        for values in self.chunks(conn, id) {
            for value in values {
                let frame = match value {
                    ChangesValue::Single { data } => data,
                    ChangesValue::Chunked(piece) => {
                        let parts = pieces
                            .entry(piece.id)
                            .or_insert_with(|| vec![None; piece.total as usize]);
                        assert_eq!(parts.len() as u64, piece.total, "a piece's total changed");
                        parts[piece.index as usize] = Some(piece.data);
                        if parts.iter().any(Option::is_none) {
                            continue;
                        }
                        let parts = pieces.remove(&piece.id).expect("present");
                        let mut whole = Vec::new();
                        for part in parts.into_iter().flatten() {
                            whole.extend_from_slice(&part);
                        }
                        Bytes::from(whole)
                    }
                };
                out.extend(
                    v4::decode::<Vec<EncryptedRemoteBatch>>(&frame)
                        .expect("a Changes value holds a batch array frame"),
                );
            }
        }
        assert!(pieces.is_empty(), "incomplete Chunked values: {pieces:?}");
        out
    }

    /// The first sequence of each batch stream `id` delivered to `conn`.
    pub fn sequences(&self, conn: ConnId, id: &RequestId) -> Vec<u64> {
        self.batches(conn, id).iter().map(|b| b.sequence).collect()
    }
}

/// Asserts that `exit` is one `EventLogProtocolError` of `code` saying
/// `message`; returns the error for further checks.
pub fn assert_protocol_error<T: std::fmt::Debug>(
    exit: Exit<T, EventLogProtocolError>,
    code: ErrorCode,
    message: &str,
) -> EventLogProtocolError {
    match exit {
        Exit::Failure(reasons) => match reasons.as_slice() {
            [Reason::Fail(error)] => {
                assert_eq!((error.code, error.message.as_str()), (code, message));
                error.clone()
            }
            other => panic!("expected one Fail reason, got {other:?}"),
        },
        Exit::Success(value) => panic!("expected {code:?} {message:?}, got success {value:?}"),
    }
}
