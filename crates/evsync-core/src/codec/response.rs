//! Server → client messages (`ProtocolResponse`) to and from MessagePack.
//!
//! `Changes` is the hot path: the server encodes it for every subscriber and
//! for whole backlogs, so its encoder writes straight into one buffer sized
//! by [`encoded_len`], and [`entry_len`] / [`changes_overhead`] let the
//! engine pack entries under the chunk size without a trial encoding.

use super::error::{DecodeError, DecodeErrorKind};
use super::message::{self, Slot};
use super::reader::Reader;
use super::writer;
use crate::wire::{RemoteEntry, RemoteId, Response};
use bytes::Bytes;

const TAGS: &str = "Hello, Ack, Changes, ChunkedMessage or Pong";

/// Smallest possible encoded remote entry: fixmap, four fixstr keys, a
/// fixint and three empty bin8.
const MIN_ENTRY_LEN: usize = 1 + 9 + 1 + 3 + 2 + 8 + 2 + 15 + 2;

pub(crate) fn decode(frame: &Bytes) -> Result<Response, DecodeError> {
    let mut tag: Slot<&str> = None;
    let mut remote_id: Slot<RemoteId> = None;
    let mut id: Slot<i64> = None;
    let mut sequence_numbers: Slot<Vec<u64>> = None;
    let mut public_key: Slot<&str> = None;
    let mut entries: Slot<Vec<RemoteEntry>> = None;
    let mut part: Slot<(u32, u32)> = None;
    let mut data: Slot<Bytes> = None;
    message::walk_message(frame, |r, key| {
        const D: usize = 1;
        match key {
            b"_tag" => tag = message::slot(r, D, |r, _| r.str())?,
            b"remoteId" => remote_id = message::slot(r, D, read_remote_id)?,
            b"id" => id = message::slot(r, D, |r, _| r.i64())?,
            b"sequenceNumbers" => {
                sequence_numbers =
                    message::slot(r, D, |r, d| message::array(r, d, 1, |r, _| r.u64()))?
            }
            b"publicKey" => public_key = message::slot(r, D, |r, _| r.str())?,
            b"entries" => {
                entries = message::slot(r, D, |r, d| {
                    message::array(r, d, MIN_ENTRY_LEN, decode_remote_entry)
                })?
            }
            b"part" => part = message::slot(r, D, message::part)?,
            b"data" => data = message::slot(r, D, |r, _| r.bin())?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let tag = message::tag(tag)?;
    let decoded = match tag {
        "Hello" => {
            message::take(remote_id, "remoteId").map(|remote_id| Response::Hello { remote_id })
        }
        "Ack" => message::take(id, "id").and_then(|id| {
            Ok(Response::Ack {
                id,
                sequence_numbers: message::take(sequence_numbers, "sequenceNumbers")?,
            })
        }),
        "Changes" => message::take(public_key, "publicKey").and_then(|public_key| {
            Ok(Response::Changes {
                public_key: public_key.to_owned(),
                entries: message::take(entries, "entries")?,
            })
        }),
        message::CHUNKED_TAG => message::chunked(id, part, data).map(Response::Chunked),
        "Pong" => message::take(id, "id").map(|id| Response::Pong { id }),
        _ => return Err(message::unknown_tag("response", tag, TAGS)),
    };
    decoded.map_err(|e| e.in_field(tag))
}

fn read_remote_id(r: &mut Reader<'_>, _depth: usize) -> Result<RemoteId, DecodeError> {
    let bin = r.bin()?;
    let bytes: [u8; 16] = bin[..].try_into().map_err(|_| {
        DecodeError::new(
            DecodeErrorKind::WrongLength,
            format!("expected 16 bytes, found {}", bin.len()),
        )
    })?;
    Ok(RemoteId(bytes))
}

fn decode_remote_entry(r: &mut Reader<'_>, depth: usize) -> Result<RemoteEntry, DecodeError> {
    let mut sequence: Slot<u64> = None;
    let mut iv: Slot<Bytes> = None;
    let mut entry_id: Slot<Bytes> = None;
    let mut encrypted_entry: Slot<Bytes> = None;
    message::for_each_entry(r, depth, |r, key| {
        let d = depth + 1;
        match key {
            b"sequence" => sequence = message::slot(r, d, |r, _| r.u64())?,
            b"iv" => iv = message::slot(r, d, |r, _| r.bin())?,
            b"entryId" => entry_id = message::slot(r, d, |r, _| r.bin())?,
            b"encryptedEntry" => encrypted_entry = message::slot(r, d, |r, _| r.bin())?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(RemoteEntry {
        sequence: message::take(sequence, "sequence")?,
        iv: message::take(iv, "iv")?,
        entry_id: message::take(entry_id, "entryId")?,
        encrypted_entry: message::take(encrypted_entry, "encryptedEntry")?,
    })
}

/// Appends the encoding of `msg` to `out`.
pub(crate) fn encode_into(msg: &Response, out: &mut Vec<u8>) {
    match msg {
        Response::Hello { remote_id } => {
            writer::map16(out, 2);
            writer::key(out, "remoteId");
            writer::bin(out, &remote_id.0);
        }
        Response::Ack {
            id,
            sequence_numbers,
        } => {
            writer::map16(out, 3);
            writer::key(out, "id");
            writer::i64(out, *id);
            writer::key(out, "sequenceNumbers");
            writer::array_header(out, sequence_numbers.len());
            for &s in sequence_numbers {
                writer::u64(out, s);
            }
        }
        Response::Changes {
            public_key,
            entries,
        } => {
            writer::map16(out, 3);
            writer::key(out, "publicKey");
            writer::str(out, public_key);
            writer::key(out, "entries");
            writer::array_header(out, entries.len());
            for e in entries {
                encode_entry(out, e);
            }
        }
        Response::Chunked(part) => {
            // Writes its own `_tag`.
            message::encode_chunked(out, part);
            return;
        }
        Response::Pong { id } => {
            writer::map16(out, 2);
            writer::key(out, "id");
            writer::i64(out, *id);
        }
    }
    writer::key(out, "_tag");
    writer::key(out, msg.tag());
}

/// Encodes one `Changes` entry as Effect's `EncryptedRemoteEntry` struct:
/// `{sequence, iv, entryId, encryptedEntry}`.
fn encode_entry(out: &mut Vec<u8>, e: &RemoteEntry) {
    writer::map16(out, 4);
    writer::key(out, "sequence");
    writer::u64(out, e.sequence);
    writer::key(out, "iv");
    writer::bin(out, &e.iv);
    writer::key(out, "entryId");
    writer::bin(out, &e.entry_id);
    writer::key(out, "encryptedEntry");
    writer::bin(out, &e.encrypted_entry);
}

/// Exact length of [`encode_entry`]'s output.
pub(crate) fn entry_len(e: &RemoteEntry) -> usize {
    use writer::{bin_len, key_len};
    writer::MAP16_LEN
        + key_len("sequence")
        + writer::u64_len(e.sequence)
        + key_len("iv")
        + bin_len(&e.iv)
        + key_len("entryId")
        + bin_len(&e.entry_id)
        + key_len("encryptedEntry")
        + bin_len(&e.encrypted_entry)
}

/// Length of an encoded `Changes` minus its entries.
pub(crate) fn changes_overhead(public_key: &str, entry_count: usize) -> usize {
    use writer::key_len;
    writer::MAP16_LEN
        + key_len("publicKey")
        + writer::str_len(public_key)
        + key_len("entries")
        + writer::array_header_len(entry_count)
        + key_len("_tag")
        + key_len("Changes")
}

/// Exact length of [`encode_into`]'s output, so the buffer is allocated once.
pub(crate) fn encoded_len(msg: &Response) -> usize {
    use writer::{i64_len, key_len};
    let tail = key_len("_tag") + 1 + msg.tag().len();
    match msg {
        Response::Hello { remote_id } => {
            writer::MAP16_LEN + key_len("remoteId") + writer::bin_len(&remote_id.0) + tail
        }
        Response::Ack {
            id,
            sequence_numbers,
        } => {
            writer::MAP16_LEN
                + key_len("id")
                + i64_len(*id)
                + key_len("sequenceNumbers")
                + writer::array_header_len(sequence_numbers.len())
                + sequence_numbers
                    .iter()
                    .map(|&s| writer::u64_len(s))
                    .sum::<usize>()
                + tail
        }
        Response::Changes {
            public_key,
            entries,
        } => {
            changes_overhead(public_key, entries.len())
                + entries.iter().map(entry_len).sum::<usize>()
        }
        Response::Chunked(part) => message::chunked_len(part),
        Response::Pong { id } => writer::MAP16_LEN + key_len("id") + i64_len(*id) + tail,
    }
}
