//! Server → client messages (`ProtocolResponse`) to and from MessagePack.
//!
//! `Changes` is the hot path: the server encodes it for every subscriber and
//! for whole backlogs, so its encoder writes straight into one buffer sized
//! by [`encoded_len`], and [`entry_len`] / [`changes_overhead`] let the
//! engine pack entries under the chunk size without a trial encoding.

use super::error::{DecodeError, DecodeErrorKind};
use super::message::{self, Field, Message};
use super::reader::Reader;
use super::writer;
use crate::wire::{RemoteEntry, RemoteId, Response};
use bytes::Bytes;

const TAGS: &str = "Hello, Ack, Changes, ChunkedMessage or Pong";

/// Smallest possible encoded remote entry: fixmap, four fixstr keys, a
/// fixint and three empty bin8.
const MIN_ENTRY_LEN: usize = 1 + 9 + 1 + 3 + 2 + 8 + 2 + 15 + 2;

pub(crate) fn decode(frame: &Bytes) -> Result<Response, DecodeError> {
    let msg = Message::scan(frame)?;
    let tag = msg.tag;
    let decoded = match tag {
        "Hello" => msg
            .get(Field::RemoteId, remote_id)
            .map(|remote_id| Response::Hello { remote_id }),
        "Ack" => decode_ack(&msg),
        "Changes" => decode_changes(&msg),
        message::CHUNKED_TAG => message::decode_chunked(&msg).map(Response::Chunked),
        "Pong" => msg
            .get(Field::Id, |r| r.i64())
            .map(|id| Response::Pong { id }),
        _ => return Err(msg.unknown_tag("response", TAGS)),
    };
    decoded.map_err(|e| e.in_field(tag))
}

fn remote_id(r: &mut Reader<'_>) -> Result<RemoteId, DecodeError> {
    let bin = r.bin()?;
    let bytes: [u8; 16] = bin[..].try_into().map_err(|_| {
        DecodeError::new(
            DecodeErrorKind::WrongLength,
            format!("expected 16 bytes, found {}", bin.len()),
        )
    })?;
    Ok(RemoteId(bytes))
}

fn decode_ack(msg: &Message<'_>) -> Result<Response, DecodeError> {
    let id = msg.get(Field::Id, |r| r.i64())?;
    let sequence_numbers = msg.get(Field::SequenceNumbers, |r| {
        message::array(r, 1, 1, |r, _| r.u64())
    })?;
    Ok(Response::Ack {
        id,
        sequence_numbers,
    })
}

fn decode_changes(msg: &Message<'_>) -> Result<Response, DecodeError> {
    let public_key = msg.get(Field::PublicKey, |r| r.str())?.to_owned();
    let entries = msg.get(Field::Entries, |r| {
        message::array(r, 1, MIN_ENTRY_LEN, decode_remote_entry)
    })?;
    Ok(Response::Changes {
        public_key,
        entries,
    })
}

fn decode_remote_entry(r: &mut Reader<'_>, depth: usize) -> Result<RemoteEntry, DecodeError> {
    let frame = r.frame();
    let [sequence, iv, entry_id, encrypted_entry] =
        message::scan_map(r, &["sequence", "iv", "entryId", "encryptedEntry"], depth)?;
    Ok(RemoteEntry {
        sequence: message::field_at(frame, sequence, "sequence", |r| r.u64())?,
        iv: message::field_at(frame, iv, "iv", |r| r.bin())?,
        entry_id: message::field_at(frame, entry_id, "entryId", |r| r.bin())?,
        encrypted_entry: message::field_at(frame, encrypted_entry, "encryptedEntry", |r| r.bin())?,
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
