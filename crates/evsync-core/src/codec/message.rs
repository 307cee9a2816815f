//! What requests and responses share: walking a message map whatever its
//! key order, typed fields with error paths, arrays of entry maps, and the
//! `ChunkedMessage` body (the one message that travels in both directions).
//!
//! Decoding is a single pass. Effect writes `_tag` last, so field values are
//! decoded as their key comes by, into [`Slot`]s, before the message kind is
//! known; this works because a key has the same type in every message of a
//! direction. Only the fields of the tagged message are then taken out, so
//! a key belonging to another message kind is ignored whatever its value,
//! like any excess property in Effect's Schema. A value of the wrong type is
//! kept as an error in its slot rather than returned at once, because a
//! later duplicate key overrides it (msgpackr's object decoding keeps the
//! last one). Malformed MessagePack (truncation, reserved byte, nesting too
//! deep) fails immediately: nothing can be decoded from it.

use super::error::{DecodeError, DecodeErrorKind};
use super::reader::Reader;
use super::writer;
use crate::wire::ChunkedMessage;
use bytes::Bytes;

/// A field decoded during the pass: absent, a value, or why its value did
/// not have the field's type.
pub(crate) type Slot<T> = Option<Result<T, DecodeError>>;

/// Decodes the value at the reader (at `depth`) with `read`. A structural
/// error aborts; a type error is returned as the slot's content after
/// skipping the rest of the value.
#[inline]
pub(crate) fn slot<'a, T>(
    r: &mut Reader<'a>,
    depth: usize,
    read: impl FnOnce(&mut Reader<'a>, usize) -> Result<T, DecodeError>,
) -> Result<Slot<T>, DecodeError> {
    let start = r.pos();
    match read(r, depth) {
        Ok(v) => Ok(Some(Ok(v))),
        Err(e) if e.kind().is_structural() => Err(e),
        Err(e) => {
            r.set_pos(start);
            r.skip(depth)?;
            Ok(Some(Err(e)))
        }
    }
}

/// Takes a required field out of its slot, with `name` in any error's path.
pub(crate) fn take<T>(slot: Slot<T>, name: &'static str) -> Result<T, DecodeError> {
    match slot {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.in_field(name)),
        None => {
            Err(DecodeError::new(DecodeErrorKind::MissingField, "missing field").in_field(name))
        }
    }
}

/// Walks the map at the reader (a container at `depth`): `on_value` gets
/// each string key and either consumes its value (returning `true`) or
/// leaves it to be validated and skipped (`false`). Non-string keys are
/// skipped with their values.
pub(crate) fn for_each_entry<'a>(
    r: &mut Reader<'a>,
    depth: usize,
    mut on_value: impl FnMut(&mut Reader<'a>, &'a [u8]) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.map_len()?;
    r.check_depth(depth)?;
    for _ in 0..len {
        let consumed = match r.key(depth + 1)? {
            Some(key) => on_value(r, key)?,
            None => false,
        };
        if !consumed {
            r.skip(depth + 1)?;
        }
    }
    Ok(())
}

/// Walks the top-level message map of `frame` with `on_value` (see
/// [`for_each_entry`]; values are at depth 1) and checks that nothing
/// follows it.
pub(crate) fn walk_message<'a>(
    frame: &'a Bytes,
    on_value: impl FnMut(&mut Reader<'a>, &'a [u8]) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    let mut r = Reader::at(frame, 0);
    for_each_entry(&mut r, 0, on_value).map_err(|e| {
        if e.kind() == DecodeErrorKind::WrongType && e.path().is_empty() {
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
    Ok(())
}

/// The message's `_tag`, or why there is none.
pub(crate) fn tag(slot: Slot<&str>) -> Result<&str, DecodeError> {
    match slot {
        Some(Ok(tag)) => Ok(tag),
        Some(Err(e)) => Err(e.in_field("_tag")),
        None => Err(DecodeError::new(
            DecodeErrorKind::MissingTag,
            "message has no _tag",
        )),
    }
}

/// The error for a `_tag` this direction does not know.
pub(crate) fn unknown_tag(direction: &str, tag: &str, expected: &str) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::UnknownTag,
        format!(
            "unknown {direction} tag \"{}\" (expected {expected})",
            excerpt(tag)
        ),
    )
    .in_field("_tag")
}

/// At most 40 characters of an untrusted string, for error messages.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(40) {
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

/// Reads `part`: exactly `[index, total]`, both `u32`.
pub(crate) fn part(r: &mut Reader<'_>, _depth: usize) -> Result<(u32, u32), DecodeError> {
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
}

/// Builds a `ChunkedMessage` (either direction) from its slots.
pub(crate) fn chunked(
    id: Slot<i64>,
    part: Slot<(u32, u32)>,
    data: Slot<Bytes>,
) -> Result<ChunkedMessage, DecodeError> {
    let id = take(id, "id")?;
    let (index, total) = take(part, "part")?;
    let data = take(data, "data")?;
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
