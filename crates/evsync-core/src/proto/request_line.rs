//! One decoded request as the request log (SYNC_DEBUG) shows it, whichever
//! protocol it came in: the adapters (native server, Worker) write one line
//! shape for both engines' summaries instead of one per protocol.

use super::{v3, v4};

/// The fields of a `request` log line. A field a message does not have is
/// `None` (left out of the line).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RequestLine {
    /// `v3` or `v4`.
    pub protocol: &'static str,
    /// v3: the message's `_tag`; v4: the RPC tag, or `Ack`, `Interrupt`,
    /// `Ping`, `Eof`.
    pub tag: String,
    /// v3: a write's, ping's or chunk's id; v4: the request (or stream) id.
    pub id: Option<String>,
    pub public_key: Option<String>,
    /// v4 only.
    pub store_id: Option<String>,
    /// v4 writes only.
    pub batches: Option<usize>,
    /// Entries of a write (0 otherwise).
    pub entries: usize,
    pub start_sequence: Option<u64>,
    /// A chunk piece, `index/total`.
    pub part: Option<String>,
}

impl From<v3::RequestSummary> for RequestLine {
    fn from(s: v3::RequestSummary) -> Self {
        RequestLine {
            protocol: "v3",
            tag: s.tag.to_owned(),
            id: s.id.map(|id| id.to_string()),
            public_key: s.public_key,
            store_id: None,
            batches: None,
            entries: s.entries,
            start_sequence: s.start_sequence,
            part: s.part.map(|(i, n)| format!("{i}/{n}")),
        }
    }
}

impl From<v4::RequestSummary> for RequestLine {
    fn from(s: v4::RequestSummary) -> Self {
        RequestLine {
            protocol: "v4",
            batches: (s.tag == "EventLog.WriteSingle").then_some(s.batches),
            tag: s.tag,
            id: s.id,
            public_key: s.public_key,
            store_id: s.store_id,
            entries: s.entries,
            start_sequence: s.start_sequence,
            part: s.part.map(|(i, n)| format!("{i}/{n}")),
        }
    }
}
