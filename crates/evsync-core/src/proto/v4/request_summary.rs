//! What a decoded v4 message was, for the request log (SYNC_DEBUG): the
//! same kind of line v3 requests get, so an operator can see what an
//! Effect 4 client asks for (Hello, Authenticate as which publicKey,
//! writes of how many batches and entries to which store, Changes from
//! which sequence, the stream's Acks and Interrupts).
//!
//! Built only when the request log is on: it decodes a write's payload a
//! second time, which the hot path should not pay for.

use super::decode;
use super::envelope::{FromClient, RequestId};
use super::messages::{
    Authenticate, ChangesPayload, ChunkedMessage, WriteEntries, WriteEntriesUnencrypted,
    WriteSinglePayload,
};

/// One decoded message, as the request log shows it. Fields a message
/// does not have stay empty; a payload that does not decode leaves them
/// empty too (the engine's answer says why).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RequestSummary {
    /// The RPC tag (`EventLog.WriteSingle`, …), or `Ack`, `Interrupt`,
    /// `Ping`, `Eof` for the envelope's own messages.
    pub tag: String,
    /// The request id (a request's own, or the stream's for Ack and
    /// Interrupt).
    pub id: Option<String>,
    pub public_key: Option<String>,
    pub store_id: Option<String>,
    /// Batches of a write (encrypted mode), 0 otherwise.
    pub batches: usize,
    /// Entries of a write.
    pub entries: usize,
    /// Where a Changes stream starts.
    pub start_sequence: Option<u64>,
    /// A WriteChunked piece: `(index, total)`.
    pub part: Option<(u64, u64)>,
}

impl RequestSummary {
    pub fn of(message: &FromClient) -> Self {
        match message {
            FromClient::Ping => RequestSummary::tagged("Ping"),
            FromClient::Eof => RequestSummary::tagged("Eof"),
            FromClient::Ack { request_id } => RequestSummary {
                id: Some(id_text(request_id)),
                ..RequestSummary::tagged("Ack")
            },
            FromClient::Interrupt { request_id } => RequestSummary {
                id: Some(id_text(request_id)),
                ..RequestSummary::tagged("Interrupt")
            },
            FromClient::Request(request) => {
                let mut summary = RequestSummary {
                    id: Some(id_text(&request.id)),
                    ..RequestSummary::tagged(&request.tag)
                };
                summary.add_payload(&request.tag, &request.payload);
                summary
            }
        }
    }

    fn tagged(tag: &str) -> Self {
        RequestSummary {
            tag: tag.to_owned(),
            ..RequestSummary::default()
        }
    }

    fn add_payload(&mut self, tag: &str, payload: &bytes::Bytes) {
        match tag {
            "EventLog.Authenticate" => {
                if let Ok(auth) = decode::<Authenticate>(payload) {
                    self.public_key = Some(auth.public_key);
                }
            }
            "EventLog.WriteSingle" => {
                if let Ok(single) = decode::<WriteSinglePayload>(payload) {
                    self.add_write(&single.data);
                }
            }
            "EventLog.WriteChunked" => {
                if let Ok(piece) = decode::<ChunkedMessage>(payload) {
                    self.part = Some((piece.index, piece.total));
                }
            }
            "EventLog.Changes" => {
                if let Ok(changes) = decode::<ChangesPayload>(payload) {
                    self.public_key = Some(changes.public_key);
                    self.store_id = Some(changes.store_id);
                    self.start_sequence = Some(changes.start_sequence);
                }
            }
            _ => {}
        }
    }

    /// A whole write's `WriteEntries` (either mode).
    fn add_write(&mut self, data: &bytes::Bytes) {
        if let Ok(write) = decode::<WriteEntries>(data) {
            self.public_key = Some(write.public_key);
            self.store_id = Some(write.store_id);
            self.batches = write.batches.len();
            self.entries = write.batches.iter().map(|b| b.entry_ids.len()).sum();
        } else if let Ok(write) = decode::<WriteEntriesUnencrypted>(data) {
            self.public_key = Some(write.public_key);
            self.store_id = Some(write.store_id);
            self.entries = write.entries.len();
        }
    }
}

fn id_text(id: &RequestId) -> String {
    match id {
        RequestId::Number(n) => n.to_string(),
        RequestId::String(s) => s.clone(),
    }
}
