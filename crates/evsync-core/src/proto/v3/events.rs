//! What the v3 engine reports for logs ([`Event`]); what it asks its
//! adapter to do is the protocol-neutral [`Action`].

use crate::log::ConnId;
pub use crate::proto::action::Action;
use crate::wire::Request;

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

impl RequestSummary {
    pub fn of(request: &Request) -> Self {
        let mut summary = RequestSummary {
            tag: request.tag(),
            public_key: None,
            id: None,
            entries: 0,
            start_sequence: None,
            part: None,
        };
        match request {
            Request::WriteEntries {
                public_key,
                id,
                encrypted_entries,
                ..
            } => {
                summary.public_key = Some(public_key.clone());
                summary.id = Some(*id);
                summary.entries = encrypted_entries.len();
            }
            Request::RequestChanges {
                public_key,
                start_sequence,
            } => {
                summary.public_key = Some(public_key.clone());
                summary.start_sequence = Some(*start_sequence);
            }
            Request::StopChanges { public_key } => summary.public_key = Some(public_key.clone()),
            Request::Chunked(part) => {
                summary.id = Some(part.id);
                summary.part = Some((part.index, part.total));
            }
            Request::Ping { id } => summary.id = Some(*id),
        }
        summary
    }
}

/// Things worth logging. Requests are recorded only when
/// [`super::Engine::set_debug`] is on; the others always.
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
