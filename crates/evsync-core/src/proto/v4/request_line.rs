//! The request-log line (SYNC_DEBUG) of a decoded v4 message: the same
//! line v3 requests get, so an operator can see what an Effect 4 client
//! asks for (Hello, Authenticate as which publicKey, writes of how many
//! batches and entries to which store, Changes from which sequence, the
//! stream's Acks and Interrupts).
//!
//! Built only while the request log is on: it decodes a write's payload a
//! second time, which the hot path should not pay for. A payload that does
//! not decode leaves its fields out (the engine's answer says why).

use super::decode;
use super::envelope::{FromClient, RequestId};
use super::messages::{
    Authenticate, ChangesPayload, ChunkedMessage, WriteEntries, WriteEntriesUnencrypted,
    WriteSinglePayload,
};
use crate::proto::event::RequestLine;

/// The line of one decoded message.
pub(super) fn request_line(message: &FromClient) -> RequestLine {
    match message {
        FromClient::Ping => RequestLine::new("v4", "Ping"),
        FromClient::Eof => RequestLine::new("v4", "Eof"),
        FromClient::Ack { request_id } => with_id(RequestLine::new("v4", "Ack"), request_id),
        FromClient::Interrupt { request_id } => {
            with_id(RequestLine::new("v4", "Interrupt"), request_id)
        }
        FromClient::Request(request) => {
            let mut line = with_id(RequestLine::new("v4", request.tag.as_str()), &request.id);
            add_payload(&mut line, &request.payload);
            line
        }
    }
}

fn with_id(mut line: RequestLine, id: &RequestId) -> RequestLine {
    line.id = Some(match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => s.clone(),
    });
    line
}

fn add_payload(line: &mut RequestLine, payload: &bytes::Bytes) {
    match line.tag.as_str() {
        "EventLog.Authenticate" => {
            if let Ok(auth) = decode::<Authenticate>(payload) {
                line.public_key = Some(auth.public_key);
            }
        }
        "EventLog.WriteSingle" => {
            if let Ok(single) = decode::<WriteSinglePayload>(payload) {
                add_write(line, &single.data);
            }
        }
        "EventLog.WriteChunked" => {
            if let Ok(piece) = decode::<ChunkedMessage>(payload) {
                line.part = Some(format!("{}/{}", piece.index, piece.total));
            }
        }
        "EventLog.Changes" => {
            if let Ok(changes) = decode::<ChangesPayload>(payload) {
                line.public_key = Some(changes.public_key);
                line.store_id = Some(changes.store_id);
                line.start_sequence = Some(changes.start_sequence);
            }
        }
        _ => {}
    }
}

/// A whole write's `WriteEntries`, encrypted (batches) or not (entries).
fn add_write(line: &mut RequestLine, data: &bytes::Bytes) {
    if let Ok(write) = decode::<WriteEntries>(data) {
        line.public_key = Some(write.public_key);
        line.store_id = Some(write.store_id);
        line.batches = Some(write.batches.len());
        line.entries = write.batches.iter().map(|b| b.entry_ids.len()).sum();
    } else if let Ok(write) = decode::<WriteEntriesUnencrypted>(data) {
        line.public_key = Some(write.public_key);
        line.store_id = Some(write.store_id);
        line.entries = write.entries.len();
    }
}
