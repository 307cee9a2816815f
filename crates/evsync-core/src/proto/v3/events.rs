//! What the v3 engine reports for logs (the protocol-neutral [`Event`],
//! its request lines built here); what it asks its adapter to do is the
//! protocol-neutral [`Action`].

pub use crate::proto::action::Action;
pub use crate::proto::event::Event;
use crate::proto::event::RequestLine;
use crate::wire::Request;

/// The request-log line (SYNC_DEBUG) of a decoded request.
pub(super) fn request_line(request: &Request) -> RequestLine {
    let mut line = RequestLine::new("v3", request.tag());
    match request {
        Request::WriteEntries {
            public_key,
            id,
            encrypted_entries,
            ..
        } => {
            line.public_key = Some(public_key.clone());
            line.id = Some(id.to_string());
            line.entries = encrypted_entries.len();
        }
        Request::RequestChanges {
            public_key,
            start_sequence,
        } => {
            line.public_key = Some(public_key.clone());
            line.start_sequence = Some(*start_sequence);
        }
        Request::StopChanges { public_key } => line.public_key = Some(public_key.clone()),
        Request::Chunked(part) => {
            line.id = Some(part.id.to_string());
            line.part = Some(format!("{}/{}", part.index, part.total));
        }
        Request::Ping { id } => line.id = Some(id.to_string()),
    }
    line
}
