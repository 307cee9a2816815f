//! The EventLogRemote messages as Rust values.
//!
//! These mirror `@effect/experimental/EventLogRemote`'s `ProtocolRequest` and
//! `ProtocolResponse` unions field for field. Binary fields are [`Bytes`] so a
//! decoded frame can hand out slices of itself without copying each entry.

use bytes::Bytes;

/// A request id or ping id chosen by the peer (a JS number that is an integer).
///
/// Kept signed so that any integer a JS client sends is echoed back unchanged.
pub type MessageId = i64;

/// A position in one (tenant, publicKey) log. The first stored entry is 1.
pub type Sequence = u64;

/// The chunk size Effect uses when it splits a message: 512,000 bytes of the
/// encoded message per `ChunkedMessage` part.
pub const CHUNK_SIZE: usize = 512_000;

/// The identity of a stored log set, sent in `Hello`. UUID v4 bytes.
///
/// A client that sees a new remoteId re-uploads its whole journal, so this
/// must be persisted with the data and never change while the data exists.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RemoteId(pub [u8; 16]);

impl RemoteId {
    /// Builds a UUID v4 from 16 random bytes by setting the version and
    /// variant bits, so the core needs no random number generator itself.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        RemoteId(bytes)
    }

    /// The canonical hyphenated UUID text, for logs and the health endpoint.
    pub fn to_uuid_string(&self) -> String {
        let mut out = String::with_capacity(36);
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// One entry of a `WriteEntries` request: opaque ciphertext and its id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EncryptedEntry {
    /// The entry's UUID v7 bytes; the dedup key within a log.
    pub entry_id: Bytes,
    /// AES-GCM ciphertext followed by its tag; never inspected by the server.
    pub encrypted_entry: Bytes,
}

/// One stored entry as it goes out in `Changes`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RemoteEntry {
    pub sequence: Sequence,
    /// The iv of the `WriteEntries` batch this entry arrived in.
    pub iv: Bytes,
    pub entry_id: Bytes,
    pub encrypted_entry: Bytes,
}

/// A part of a message whose encoding exceeded [`CHUNK_SIZE`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ChunkedMessage {
    /// Shared by all parts of one message; unique among the sender's
    /// in-flight chunked messages.
    pub id: MessageId,
    /// Zero-based index of this part.
    pub index: u32,
    /// Number of parts of the whole message.
    pub total: u32,
    pub data: Bytes,
}

/// Client → server messages (`ProtocolRequest`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Request {
    WriteEntries {
        public_key: String,
        id: MessageId,
        /// One iv for the whole batch (Effect v3 behaviour).
        iv: Bytes,
        encrypted_entries: Vec<EncryptedEntry>,
    },
    RequestChanges {
        public_key: String,
        /// The highest sequence the client has seen (0 at first); entries
        /// with `sequence >= start_sequence` are sent.
        start_sequence: Sequence,
    },
    StopChanges {
        public_key: String,
    },
    Chunked(ChunkedMessage),
    Ping {
        id: MessageId,
    },
}

/// Server → client messages (`ProtocolResponse`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    Hello {
        remote_id: RemoteId,
    },
    Ack {
        id: MessageId,
        /// One sequence per written entry, in request order.
        sequence_numbers: Vec<Sequence>,
    },
    Changes {
        public_key: String,
        entries: Vec<RemoteEntry>,
    },
    Chunked(ChunkedMessage),
    Pong {
        id: MessageId,
    },
}

impl Request {
    /// The `_tag` this message carries on the wire.
    pub fn tag(&self) -> &'static str {
        match self {
            Request::WriteEntries { .. } => "WriteEntries",
            Request::RequestChanges { .. } => "RequestChanges",
            Request::StopChanges { .. } => "StopChanges",
            Request::Chunked(_) => "ChunkedMessage",
            Request::Ping { .. } => "Ping",
        }
    }
}

impl Response {
    /// The `_tag` this message carries on the wire.
    pub fn tag(&self) -> &'static str {
        match self {
            Response::Hello { .. } => "Hello",
            Response::Ack { .. } => "Ack",
            Response::Changes { .. } => "Changes",
            Response::Chunked(_) => "ChunkedMessage",
            Response::Pong { .. } => "Pong",
        }
    }
}
