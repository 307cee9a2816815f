//! A minimal Effect v4 eventlog client for the load generator: Effect RPC
//! envelopes in SchemaBinary (evsync-core's `proto::v4` codec) over
//! tokio-tungstenite. `Hello`, `Authenticate` (Ed25519 over the canonical
//! payload, `auth::signed_payload`), `WriteSingle` of encrypted batches,
//! the `Changes` stream acked per `Chunk` (`Chunked` values reassembled),
//! `Ping`. No reconnects, no journal: each scenario drives the pieces.
//!
//! Batches are opaque random bytes (the server never decrypts): a random
//! 12-byte iv, `entries × size` random bytes of "ciphertext" and unique
//! 16-byte UUID v7 entry ids.

use crate::common::*;
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use evsync_core::proto::v4::auth::signed_payload;
use evsync_core::proto::v4::{
    self as proto, Authenticate, AuthenticateExit, ChangesPayload, ChangesValue, EncryptedBatch,
    EncryptedRemoteBatch, Exit, FrameSplitter, FromClient, FromServer, HelloExit, HelloResponse,
    PING_FRAME, Reason, Request, RequestId, WriteEntries, WriteExit, WriteSinglePayload,
};
use evsync_core::wire::RemoteId;
use futures_util::{SinkExt, StreamExt};
use sha2::Digest;
use std::collections::HashMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

pub const HELLO: &str = "EventLog.Hello";
pub const AUTHENTICATE: &str = "EventLog.Authenticate";
pub const WRITE_SINGLE: &str = "EventLog.WriteSingle";
pub const CHANGES: &str = "EventLog.Changes";
pub const WRITE_CHUNKED: &str = "EventLog.WriteChunked";

/// Effect's client pings every 5 s (and drops a socket that stays silent
/// for as long); so does this one.
pub const PING_EVERY: Duration = Duration::from_secs(5);

/// The store every scenario writes (Effect's default store id).
pub const STORE_ID: &str = "default";

/// `ws://host:port` + `/v4/event-log/<tenant>`.
pub fn v4_url(base: &str, tenant: &str) -> String {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v4/event-log").unwrap_or(base);
    format!("{base}/v4/event-log/{tenant}")
}

/// A v4 identity: a publicKey and the Ed25519 key it authenticates with,
/// from a fixed seed (SHA-256 of a label and the publicKey), so every run
/// and every connection of one publicKey presents the same key (servers
/// bind the first key a publicKey presents).
#[derive(Clone)]
pub struct Identity {
    pub public_key: String,
    signing: SigningKey,
}

impl Identity {
    pub fn new(public_key: impl Into<String>) -> Self {
        let public_key = public_key.into();
        let mut h = sha2::Sha256::new();
        h.update(b"evsync-bench v4 identity\0");
        h.update(public_key.as_bytes());
        let seed: [u8; 32] = h.finalize().into();
        Identity {
            public_key,
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The `Authenticate` payload answering `hello`'s challenge.
    pub fn authenticate(&self, hello: &HelloResponse) -> Result<Authenticate> {
        let remote: [u8; 16] = hello.remote_id.as_ref().try_into().map_err(|_| {
            err(format!(
                "Hello has a remoteId of {} bytes",
                hello.remote_id.len()
            ))
        })?;
        let verifying = self.signing.verifying_key().to_bytes();
        let payload = signed_payload(
            &RemoteId(remote),
            &hello.challenge,
            &self.public_key,
            &verifying,
        );
        let signature = self.signing.sign(&payload).to_bytes();
        Ok(Authenticate {
            signature: Bytes::copy_from_slice(&signature),
            public_key: self.public_key.clone(),
            signing_public_key: Bytes::copy_from_slice(&verifying),
        })
    }
}

// ---------------------------------------------------------------- frames

/// A `Request` envelope frame.
pub fn request_frame(id: i64, tag: &str, payload: Vec<u8>) -> Bytes {
    Bytes::from(
        FromClient::Request(Request::new(
            RequestId::Number(id),
            tag,
            Bytes::from(payload),
        ))
        .encode(),
    )
}

/// `WriteSingle{data: WriteEntries{storeId, batches, publicKey}}`; with
/// the size of the inner frame (Effect's client switches to WriteChunked
/// above 512,000 bytes; the scenarios keep their requests under it).
pub fn write_single_frame(
    id: i64,
    public_key: &str,
    store_id: &str,
    batches: Vec<EncryptedBatch>,
) -> (Bytes, usize) {
    let (payload, len) = write_single_payload(public_key, store_id, batches);
    (request_frame(id, WRITE_SINGLE, payload), len)
}

/// The payload of [`write_single_frame`], and the size of its inner frame.
pub fn write_single_payload(
    public_key: &str,
    store_id: &str,
    batches: Vec<EncryptedBatch>,
) -> (Vec<u8>, usize) {
    let inner = proto::encode(&WriteEntries {
        store_id: store_id.to_owned(),
        batches,
        public_key: public_key.to_owned(),
    });
    let len = inner.len();
    let payload = proto::encode(&WriteSinglePayload {
        data: Bytes::from(inner),
    });
    (payload, len)
}

/// `Changes{publicKey, storeId, startSequence}`.
pub fn changes_frame(id: i64, public_key: &str, store_id: &str, start: u64) -> Bytes {
    request_frame(id, CHANGES, changes_payload(public_key, store_id, start))
}

/// The payload of [`changes_frame`].
pub fn changes_payload(public_key: &str, store_id: &str, start: u64) -> Vec<u8> {
    proto::encode(&ChangesPayload {
        store_id: store_id.to_owned(),
        start_sequence: start,
        public_key: public_key.to_owned(),
    })
}

/// The flow-control `Ack` of a stream's Chunk.
pub fn ack_frame(request_id: RequestId) -> Bytes {
    Bytes::from(FromClient::Ack { request_id }.encode())
}

pub fn ping_frame() -> Bytes {
    Bytes::from_static(&PING_FRAME)
}

/// The acks of a write's `Exit`, or why it failed.
pub fn write_result(exit: &Bytes) -> Result<Vec<proto::WriteAck>> {
    match proto::decode::<WriteExit>(exit).map_err(|e| err(format!("write exit: {e}")))? {
        Exit::Success(acks) => Ok(acks),
        Exit::Failure(reasons) => Err(failure("WriteSingle", reasons)),
    }
}

fn failure<E: std::fmt::Debug>(tag: &str, reasons: Vec<Reason<E>>) -> BoxError {
    for r in reasons {
        match r {
            Reason::Fail(e) => return err(format!("{tag} failed: {e:?}")),
            Reason::Die(d) => return err(format!("{tag} died: {}", d.as_json_text())),
            Reason::Interrupt(_) => {}
        }
    }
    err(format!("{tag} was interrupted"))
}

// ---------------------------------------------------------------- batches

/// Makes batches of `entries` entries of `size` bytes: random iv, random
/// ciphertext of `entries × size` bytes, unique UUID v7 ids.
pub struct BatchMaker {
    ids: Payloads,
    bodies: Payloads,
    pub entries: usize,
}

impl BatchMaker {
    pub fn new(entries: usize, size: usize) -> Self {
        BatchMaker {
            ids: Payloads::new(1),
            bodies: Payloads::new((entries * size).max(8)),
            entries,
        }
    }

    pub fn batch(&mut self) -> EncryptedBatch {
        EncryptedBatch {
            iv: Payloads::iv(),
            encrypted_batch: self.bodies.payload(),
            entry_ids: (0..self.entries).map(|_| self.ids.entry_id()).collect(),
        }
    }

    /// A batch whose ciphertext starts with `stamp` (big-endian u64).
    pub fn stamped(&mut self, stamp: u64) -> EncryptedBatch {
        let mut b = self.batch();
        let mut body = b.encrypted_batch.to_vec();
        body[..8].copy_from_slice(&stamp.to_be_bytes());
        b.encrypted_batch = Bytes::from(body);
        b
    }
}

// ---------------------------------------------------------------- connection

/// The reading half: WebSocket messages → frames → envelopes.
pub struct Inbound {
    stream: WsStream,
    splitter: FrameSplitter,
    /// Wire bytes received.
    pub wire_bytes: u64,
}

impl Inbound {
    /// The next envelope from the server.
    pub async fn next(&mut self) -> Result<FromServer> {
        loop {
            if let Some(frame) = self
                .splitter
                .next_frame()
                .map_err(|e| err(format!("frame: {e}")))?
            {
                return FromServer::decode(&frame).map_err(|e| err(format!("envelope: {e}")));
            }
            let msg = self
                .stream
                .next()
                .await
                .ok_or_else(|| err("connection closed by the server"))??;
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(frame) => return Err(err(format!("server closed: {frame:?}"))),
                _ => continue,
            };
            self.wire_bytes += data.len() as u64;
            self.splitter.push(data);
        }
    }
}

/// An authenticated connection.
pub struct Conn {
    pub sink: WsSink,
    pub inbound: Inbound,
    next_id: i64,
}

impl Conn {
    /// Connects to `url` (a `/v4/event-log/<tenant>` URL), says Hello and
    /// authenticates `identity`.
    pub async fn open(url: &str, identity: &Identity) -> Result<Conn> {
        let mut conn = Conn::connect(url).await?;
        let hello = conn.hello().await?;
        let auth = identity.authenticate(&hello)?;
        let exit = conn.call(AUTHENTICATE, proto::encode(&auth)).await?;
        match proto::decode::<AuthenticateExit>(&exit)
            .map_err(|e| err(format!("Authenticate exit: {e}")))?
        {
            Exit::Success(()) => Ok(conn),
            Exit::Failure(reasons) => Err(failure(AUTHENTICATE, reasons)),
        }
    }

    /// Connects to `url` and says nothing yet (the hostile suite's
    /// unauthenticated peers start here).
    pub async fn connect(url: &str) -> Result<Conn> {
        let ws = connect(url).await?;
        let (sink, stream) = ws.split();
        Ok(Conn {
            sink,
            inbound: Inbound {
                stream,
                // Effect's own server sends a whole backlog as one frame:
                // take any size (its client would refuse over 16 MiB).
                splitter: FrameSplitter::new(usize::MAX / 4),
                wire_bytes: 0,
            },
            next_id: 1,
        })
    }

    /// `Hello`: the server's remoteId and this connection's challenge.
    pub async fn hello(&mut self) -> Result<HelloResponse> {
        let exit = self.call(HELLO, proto::encode(&())).await?;
        match proto::decode::<HelloExit>(&exit).map_err(|e| err(format!("Hello exit: {e}")))? {
            Exit::Success(h) => Ok(h),
            Exit::Failure(reasons) => Err(failure(HELLO, reasons)),
        }
    }

    /// The WebSocket's two halves, for a caller that drives them itself
    /// (the hostile suite sends what no client would, then waits for the
    /// server's close frame).
    pub fn into_split(self) -> (WsSink, WsStream) {
        (self.sink, self.inbound.stream)
    }

    /// A fresh request id on this connection.
    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends a request and waits for its Exit (set-up only: anything else
    /// that arrives meanwhile is dropped).
    pub async fn call(&mut self, tag: &str, payload: Vec<u8>) -> Result<Bytes> {
        let id = self.id();
        self.sink
            .send(Message::Binary(request_frame(id, tag, payload)))
            .await?;
        let want = RequestId::Number(id);
        loop {
            match self.inbound.next().await? {
                FromServer::Exit { request_id, exit } if request_id == want => return Ok(exit),
                FromServer::Defect { defect } => {
                    return Err(err(format!(
                        "{tag}: the server sent a defect: {}",
                        String::from_utf8_lossy(&defect)
                    )));
                }
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------- Changes values

/// Turns a Changes stream's Chunk values into batches, joining `Chunked`
/// pieces.
#[derive(Default)]
pub struct ChangesDecoder {
    partial: HashMap<i64, (Vec<Option<Bytes>>, usize)>,
}

impl ChangesDecoder {
    /// The batches completed by one Chunk's `values`.
    pub fn decode(&mut self, values: &Bytes) -> Result<Vec<EncryptedRemoteBatch>> {
        let values = proto::decode::<Vec<ChangesValue>>(values)
            .map_err(|e| err(format!("Changes values: {e}")))?;
        let mut out = Vec::new();
        for v in values {
            let data = match v {
                ChangesValue::Single { data } => data,
                ChangesValue::Chunked(c) => {
                    let total = c.total as usize;
                    if total == 0 || c.index as usize >= total {
                        return Err(err(format!("Chunked part {}/{}", c.index, c.total)));
                    }
                    let (parts, have) = self
                        .partial
                        .entry(c.id)
                        .or_insert_with(|| (vec![None; total], 0));
                    if parts.len() != total {
                        return Err(err("Chunked parts disagree on their count"));
                    }
                    let slot = &mut parts[c.index as usize];
                    if slot.is_none() {
                        *slot = Some(c.data);
                        *have += 1;
                    }
                    if *have < total {
                        continue;
                    }
                    let (parts, _) = self.partial.remove(&c.id).expect("present");
                    let mut joined = Vec::with_capacity(
                        parts.iter().map(|p| p.as_ref().map_or(0, Bytes::len)).sum(),
                    );
                    for p in parts.into_iter().flatten() {
                        joined.extend_from_slice(&p);
                    }
                    Bytes::from(joined)
                }
            };
            out.extend(
                proto::decode::<Vec<EncryptedRemoteBatch>>(&data)
                    .map_err(|e| err(format!("Changes batches: {e}")))?,
            );
        }
        Ok(out)
    }
}
