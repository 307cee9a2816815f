//! Client → server messages (`ProtocolRequest`) to and from MessagePack.
//!
//! Field order on encode follows the Effect class declarations, with `_tag`
//! last, because that is the order msgpackr sees the encoded object's keys.

use super::error::DecodeError;
use super::message::{self, Field, Message};
use super::reader::Reader;
use super::writer;
use crate::wire::{EncryptedEntry, Request};
use bytes::Bytes;

const TAGS: &str = "WriteEntries, RequestChanges, StopChanges, ChunkedMessage or Ping";

/// Smallest possible encoded `{entryId, encryptedEntry}`: fixmap, two fixstr
/// keys, two empty bin8. Bounds the preallocation for a forged array length.
const MIN_ENTRY_LEN: usize = 1 + 8 + 2 + 15 + 2;

pub(crate) fn decode(frame: &Bytes) -> Result<Request, DecodeError> {
    let msg = Message::scan(frame)?;
    let tag = msg.tag;
    let decoded = match tag {
        "WriteEntries" => decode_write_entries(&msg),
        "RequestChanges" => decode_request_changes(&msg),
        "StopChanges" => {
            msg.get(Field::PublicKey, |r| r.str())
                .map(|public_key| Request::StopChanges {
                    public_key: public_key.to_owned(),
                })
        }
        message::CHUNKED_TAG => message::decode_chunked(&msg).map(Request::Chunked),
        "Ping" => msg
            .get(Field::Id, |r| r.i64())
            .map(|id| Request::Ping { id }),
        _ => return Err(msg.unknown_tag("request", TAGS)),
    };
    decoded.map_err(|e| e.in_field(tag))
}

fn decode_write_entries(msg: &Message<'_>) -> Result<Request, DecodeError> {
    let public_key = msg.get(Field::PublicKey, |r| r.str())?.to_owned();
    let id = msg.get(Field::Id, |r| r.i64())?;
    let iv = msg.get(Field::Iv, |r| r.bin())?;
    let encrypted_entries = msg.get(Field::EncryptedEntries, |r| {
        message::array(r, 1, MIN_ENTRY_LEN, decode_encrypted_entry)
    })?;
    Ok(Request::WriteEntries {
        public_key,
        id,
        iv,
        encrypted_entries,
    })
}

fn decode_encrypted_entry(r: &mut Reader<'_>, depth: usize) -> Result<EncryptedEntry, DecodeError> {
    let frame = r.frame();
    let [entry_id, encrypted_entry] = message::scan_map(r, &["entryId", "encryptedEntry"], depth)?;
    Ok(EncryptedEntry {
        entry_id: message::field_at(frame, entry_id, "entryId", |r| r.bin())?,
        encrypted_entry: message::field_at(frame, encrypted_entry, "encryptedEntry", |r| r.bin())?,
    })
}

fn decode_request_changes(msg: &Message<'_>) -> Result<Request, DecodeError> {
    let public_key = msg.get(Field::PublicKey, |r| r.str())?.to_owned();
    // Lenient: a negative start means "from the beginning".
    let start_sequence = msg.get(Field::StartSequence, |r| r.u64_clamped())?;
    Ok(Request::RequestChanges {
        public_key,
        start_sequence,
    })
}

/// Appends the encoding of `msg` to `out`.
pub(crate) fn encode_into(msg: &Request, out: &mut Vec<u8>) {
    match msg {
        Request::WriteEntries {
            public_key,
            id,
            iv,
            encrypted_entries,
        } => {
            writer::map16(out, 5);
            writer::key(out, "publicKey");
            writer::str(out, public_key);
            writer::key(out, "id");
            writer::i64(out, *id);
            writer::key(out, "iv");
            writer::bin(out, iv);
            writer::key(out, "encryptedEntries");
            writer::array_header(out, encrypted_entries.len());
            for e in encrypted_entries {
                writer::map16(out, 2);
                writer::key(out, "entryId");
                writer::bin(out, &e.entry_id);
                writer::key(out, "encryptedEntry");
                writer::bin(out, &e.encrypted_entry);
            }
        }
        Request::RequestChanges {
            public_key,
            start_sequence,
        } => {
            writer::map16(out, 3);
            writer::key(out, "publicKey");
            writer::str(out, public_key);
            writer::key(out, "startSequence");
            writer::u64(out, *start_sequence);
        }
        Request::StopChanges { public_key } => {
            writer::map16(out, 2);
            writer::key(out, "publicKey");
            writer::str(out, public_key);
        }
        Request::Chunked(part) => {
            // Writes its own `_tag`.
            message::encode_chunked(out, part);
            return;
        }
        Request::Ping { id } => {
            writer::map16(out, 2);
            writer::key(out, "id");
            writer::i64(out, *id);
        }
    }
    writer::key(out, "_tag");
    writer::key(out, msg.tag());
}

/// Exact length of [`encode_into`]'s output, so the buffer is allocated once.
pub(crate) fn encoded_len(msg: &Request) -> usize {
    use writer::{bin_len, i64_len, key_len, str_len, u64_len};
    let tail = key_len("_tag") + 1 + msg.tag().len();
    writer::MAP16_LEN
        + tail
        + match msg {
            Request::WriteEntries {
                public_key,
                id,
                iv,
                encrypted_entries,
            } => {
                key_len("publicKey")
                    + str_len(public_key)
                    + key_len("id")
                    + i64_len(*id)
                    + key_len("iv")
                    + bin_len(iv)
                    + key_len("encryptedEntries")
                    + writer::array_header_len(encrypted_entries.len())
                    + encrypted_entries
                        .iter()
                        .map(|e| {
                            writer::MAP16_LEN
                                + key_len("entryId")
                                + bin_len(&e.entry_id)
                                + key_len("encryptedEntry")
                                + bin_len(&e.encrypted_entry)
                        })
                        .sum::<usize>()
            }
            Request::RequestChanges {
                public_key,
                start_sequence,
            } => {
                key_len("publicKey")
                    + str_len(public_key)
                    + key_len("startSequence")
                    + u64_len(*start_sequence)
            }
            Request::StopChanges { public_key } => key_len("publicKey") + str_len(public_key),
            Request::Chunked(part) => return message::chunked_len(part),
            Request::Ping { id } => key_len("id") + i64_len(*id),
        }
}
