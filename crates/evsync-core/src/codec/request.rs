//! Client → server messages (`ProtocolRequest`) to and from MessagePack.
//!
//! Field order on encode follows the Effect class declarations, with `_tag`
//! last, because that is the order msgpackr sees the encoded object's keys.

use super::error::DecodeError;
use super::message::{self, Slot};
use super::reader::Reader;
use super::writer;
use crate::wire::{EncryptedEntry, Request};
use bytes::Bytes;

const TAGS: &str = "WriteEntries, RequestChanges, StopChanges, ChunkedMessage or Ping";

/// Smallest possible encoded `{entryId, encryptedEntry}`: fixmap, two fixstr
/// keys, two empty bin8. Bounds the preallocation for a forged array length.
const MIN_ENTRY_LEN: usize = 1 + 8 + 2 + 15 + 2;

pub(crate) fn decode(frame: &Bytes) -> Result<Request, DecodeError> {
    let mut tag: Slot<&str> = None;
    let mut public_key: Slot<&str> = None;
    let mut id: Slot<i64> = None;
    let mut iv: Slot<Bytes> = None;
    let mut encrypted_entries: Slot<Vec<EncryptedEntry>> = None;
    let mut start_sequence: Slot<u64> = None;
    let mut part: Slot<(u32, u32)> = None;
    let mut data: Slot<Bytes> = None;
    message::walk_message(frame, |r, key| {
        const D: usize = 1;
        match key {
            b"_tag" => tag = message::slot(r, D, |r, _| r.str())?,
            b"publicKey" => public_key = message::slot(r, D, |r, _| r.str())?,
            b"id" => id = message::slot(r, D, |r, _| r.i64())?,
            b"iv" => iv = message::slot(r, D, |r, _| r.bin())?,
            b"encryptedEntries" => {
                encrypted_entries = message::slot(r, D, |r, d| {
                    message::array(r, d, MIN_ENTRY_LEN, decode_encrypted_entry)
                })?
            }
            // Lenient: a negative start means "from the beginning".
            b"startSequence" => start_sequence = message::slot(r, D, |r, _| r.u64_clamped())?,
            b"part" => part = message::slot(r, D, message::part)?,
            b"data" => data = message::slot(r, D, |r, _| r.bin())?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let tag = message::tag(tag)?;
    let owned = |s: &str| s.to_owned();
    let decoded = match tag {
        "WriteEntries" => message::take(public_key, "publicKey").and_then(|public_key| {
            Ok(Request::WriteEntries {
                public_key: owned(public_key),
                id: message::take(id, "id")?,
                iv: message::take(iv, "iv")?,
                encrypted_entries: message::take(encrypted_entries, "encryptedEntries")?,
            })
        }),
        "RequestChanges" => message::take(public_key, "publicKey").and_then(|public_key| {
            Ok(Request::RequestChanges {
                public_key: owned(public_key),
                start_sequence: message::take(start_sequence, "startSequence")?,
            })
        }),
        "StopChanges" => {
            message::take(public_key, "publicKey").map(|public_key| Request::StopChanges {
                public_key: owned(public_key),
            })
        }
        message::CHUNKED_TAG => message::chunked(id, part, data).map(Request::Chunked),
        "Ping" => message::take(id, "id").map(|id| Request::Ping { id }),
        _ => return Err(message::unknown_tag("request", tag, TAGS)),
    };
    decoded.map_err(|e| e.in_field(tag))
}

fn decode_encrypted_entry(r: &mut Reader<'_>, depth: usize) -> Result<EncryptedEntry, DecodeError> {
    let mut entry_id: Slot<Bytes> = None;
    let mut encrypted_entry: Slot<Bytes> = None;
    message::for_each_entry(r, depth, |r, key| {
        let d = depth + 1;
        match key {
            b"entryId" => entry_id = message::slot(r, d, |r, _| r.bin())?,
            b"encryptedEntry" => encrypted_entry = message::slot(r, d, |r, _| r.bin())?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(EncryptedEntry {
        entry_id: message::take(entry_id, "entryId")?,
        encrypted_entry: message::take(encrypted_entry, "encryptedEntry")?,
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
