//! What requests and responses share: finding `_tag` and the fields in a
//! message map whatever their order, typed field access with error paths,
//! arrays of entry maps, and the `ChunkedMessage` body (the one message
//! that travels in both directions).
//!
//! Decoding is two passes. The first walks the whole frame once, checking
//! that it is exactly one well-formed MessagePack value (no trailing bytes,
//! bounded depth) and noting where each known key's value starts, the last
//! occurrence winning as in msgpackr's object decoding. Only once `_tag` is
//! known are the fields of that message decoded, so an extra key that
//! belongs to another message kind is ignored like any excess property in
//! Effect's Schema.

use super::error::{DecodeError, DecodeErrorKind};
use super::reader::Reader;
use super::writer;
use crate::wire::ChunkedMessage;
use bytes::Bytes;

/// The keys any message of either direction may carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub(crate) enum Field {
    Tag,
    PublicKey,
    Id,
    Iv,
    EncryptedEntries,
    StartSequence,
    Part,
    Data,
    RemoteId,
    SequenceNumbers,
    Entries,
}

const FIELD_NAMES: [&str; 11] = [
    "_tag",
    "publicKey",
    "id",
    "iv",
    "encryptedEntries",
    "startSequence",
    "part",
    "data",
    "remoteId",
    "sequenceNumbers",
    "entries",
];

impl Field {
    /// The key as it appears on the wire.
    pub(crate) fn name(self) -> &'static str {
        FIELD_NAMES[self as usize]
    }
}

/// Walks the map at the reader (a container at `depth`) and returns, for
/// each of `names`, the offset of its value's last occurrence. Values of
/// other keys (string or not) are validated and skipped.
pub(crate) fn scan_map<const K: usize>(
    r: &mut Reader<'_>,
    names: &[&str; K],
    depth: usize,
) -> Result<[Option<usize>; K], DecodeError> {
    let len = r.map_len()?;
    r.check_depth(depth)?;
    let mut found = [None; K];
    for _ in 0..len {
        let key = r.key(depth + 1)?;
        if let Some(i) = key.and_then(|key| names.iter().position(|n| n.as_bytes() == key)) {
            found[i] = Some(r.pos());
        }
        r.skip(depth + 1)?;
    }
    Ok(found)
}

/// A validated message frame whose fields are located but not yet decoded.
pub(crate) struct Message<'a> {
    frame: &'a Bytes,
    fields: [Option<usize>; FIELD_NAMES.len()],
    /// The `_tag` value, borrowed from the frame.
    pub(crate) tag: &'a str,
}

impl<'a> Message<'a> {
    /// Checks that `frame` holds exactly one well-formed map with a string
    /// `_tag`, and locates the known fields.
    pub(crate) fn scan(frame: &'a Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::at(frame, 0);
        let fields = scan_map(&mut r, &FIELD_NAMES, 0).map_err(|e| {
            if e.kind() == DecodeErrorKind::WrongType {
                DecodeError::new(
                    DecodeErrorKind::WrongType,
                    format!("message: {}", e.detail()),
                )
            } else {
                e
            }
        })?;
        if r.remaining() != 0 {
            return Err(DecodeError::new(
                DecodeErrorKind::TrailingBytes,
                format!(
                    "{} trailing bytes after the message, from byte {}",
                    r.remaining(),
                    r.pos()
                ),
            ));
        }
        let Some(at) = fields[Field::Tag as usize] else {
            return Err(DecodeError::new(
                DecodeErrorKind::MissingTag,
                "message has no _tag",
            ));
        };
        let tag = Reader::at(frame, at)
            .str()
            .map_err(|e| e.in_field("_tag"))?;
        Ok(Message { frame, fields, tag })
    }

    /// The error for a `_tag` this direction does not know. `expected`
    /// lists the tags it does.
    pub(crate) fn unknown_tag(&self, direction: &str, expected: &str) -> DecodeError {
        DecodeError::new(
            DecodeErrorKind::UnknownTag,
            format!(
                "unknown {direction} tag \"{}\" (expected {expected})",
                excerpt(self.tag)
            ),
        )
        .in_field("_tag")
    }

    /// Decodes one field with `read`; a missing field or a failure of
    /// `read` is reported with the field's name in the path.
    pub(crate) fn get<T>(
        &self,
        field: Field,
        read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        field_at(self.frame, self.fields[field as usize], field.name(), read)
    }
}

/// At most 64 characters of an untrusted string, for error messages.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

/// Decodes an array (a container at `depth`) whose elements are read by
/// `elem` (given the element's depth). `min_elem_len` is a lower bound on
/// one encoded element, so a forged length cannot reserve more memory than
/// the frame could fill.
pub(crate) fn array<'a, T>(
    r: &mut Reader<'a>,
    depth: usize,
    min_elem_len: usize,
    mut elem: impl FnMut(&mut Reader<'a>, usize) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let len = r.array_len()?;
    r.check_depth(depth)?;
    let mut out = Vec::with_capacity(len.min(r.remaining() / min_elem_len.max(1)));
    for i in 0..len {
        out.push(elem(r, depth + 1).map_err(|e| e.in_index(i))?);
    }
    Ok(out)
}

/// Reads the value at `at` (a field located by [`scan_map`]) with `read`,
/// or reports `name` missing; errors get `name` in their path.
pub(crate) fn field_at<'a, T>(
    frame: &'a Bytes,
    at: Option<usize>,
    name: &'static str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let Some(at) = at else {
        return Err(
            DecodeError::new(DecodeErrorKind::MissingField, "missing field").in_field(name),
        );
    };
    read(&mut Reader::at(frame, at)).map_err(|e| e.in_field(name))
}

/// Decodes the body of a `ChunkedMessage` (either direction).
pub(crate) fn decode_chunked(msg: &Message<'_>) -> Result<ChunkedMessage, DecodeError> {
    let id = msg.get(Field::Id, |r| r.i64())?;
    let (index, total) = msg.get(Field::Part, |r| {
        let len = r.array_len()?;
        if len != 2 {
            return Err(DecodeError::new(
                DecodeErrorKind::WrongLength,
                format!("expected [index, total], found an array of {len}"),
            ));
        }
        let index = r.u32_value().map_err(|e| e.in_index(0))?;
        let total = r.u32_value().map_err(|e| e.in_index(1))?;
        Ok((index, total))
    })?;
    let data = msg.get(Field::Data, |r| r.bin())?;
    Ok(ChunkedMessage {
        id,
        index,
        total,
        data,
    })
}

/// The `_tag` value of a chunk part.
pub(crate) const CHUNKED_TAG: &str = "ChunkedMessage";

/// Encodes a `ChunkedMessage` as Effect does: `{id, part, data, _tag}`.
pub(crate) fn encode_chunked(out: &mut Vec<u8>, m: &ChunkedMessage) {
    writer::map16(out, 4);
    writer::key(out, "id");
    writer::i64(out, m.id);
    writer::key(out, "part");
    writer::array_header(out, 2);
    writer::u64(out, m.index as u64);
    writer::u64(out, m.total as u64);
    writer::key(out, "data");
    writer::bin(out, &m.data);
    writer::key(out, "_tag");
    writer::key(out, CHUNKED_TAG);
}

/// Exact encoded length of [`encode_chunked`]'s output.
pub(crate) fn chunked_len(m: &ChunkedMessage) -> usize {
    writer::MAP16_LEN
        + writer::key_len("id")
        + writer::i64_len(m.id)
        + writer::key_len("part")
        + 1
        + writer::u64_len(m.index as u64)
        + writer::u64_len(m.total as u64)
        + writer::key_len("data")
        + writer::bin_len(&m.data)
        + writer::key_len("_tag")
        + writer::key_len(CHUNKED_TAG)
}
