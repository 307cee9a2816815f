//! What an engine reports for logs ([`Event`]), in one shape for every
//! protocol: an adapter (native server, Worker) logs an event without
//! knowing which engine it came from, and each protocol fills the same
//! request-log line ([`RequestLine`]).

use crate::log::ConnId;

/// Things worth logging. Requests are recorded only while the engine's
/// request log is on (`set_debug`, SYNC_DEBUG); the others always.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// A message was decoded on `conn`.
    Request { conn: ConnId, line: RequestLine },
    /// `conn` is being closed by the engine; `reason` says why.
    Closing {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// A storage request failed.
    StorageFailed { message: String },
}

/// The fields of a `request` log line. A field a message does not have is
/// `None` (left out of the line).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestLine {
    /// `v3` or `v4`.
    pub protocol: &'static str,
    /// v3: the message's `_tag`; v4: the RPC tag, or `Ack`, `Interrupt`,
    /// `Ping`, `Eof` for the envelope's own messages.
    pub tag: String,
    /// v3: a write's, ping's or chunk's id; v4: the request's (or, for Ack
    /// and Interrupt, the stream's) id.
    pub id: Option<String>,
    pub public_key: Option<String>,
    /// v4 only.
    pub store_id: Option<String>,
    /// Batches of an encrypted v4 write.
    pub batches: Option<usize>,
    /// Entries of a write (0 otherwise).
    pub entries: usize,
    /// Where a subscription (v3 RequestChanges, v4 Changes) starts.
    pub start_sequence: Option<u64>,
    /// A chunk piece, `index/total`.
    pub part: Option<String>,
}

impl RequestLine {
    /// A line of `protocol` naming only `tag`; the protocol fills in what
    /// the message names.
    pub fn new(protocol: &'static str, tag: impl Into<String>) -> Self {
        RequestLine {
            protocol,
            tag: tag.into(),
            id: None,
            public_key: None,
            store_id: None,
            batches: None,
            entries: 0,
            start_sequence: None,
            part: None,
        }
    }
}
