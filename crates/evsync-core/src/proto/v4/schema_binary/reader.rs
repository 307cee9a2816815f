//! Reading SchemaBinary: bounded regions over one frame's bytes, and the
//! default-mode struct field loop.
//!
//! Most values sit in a *sized region* whose length an enclosing prefix
//! gave, so strings and bytes run to the region's end and carry no length of
//! their own. A [`Reader`] is such a region: a window `[pos, end)` on the
//! frame's [`Bytes`], so byte fields come out as zero-copy slices of the
//! frame. Entering a nested region makes a child reader one level deeper
//! (bounded by [`MAX_DEPTH`]); a region must be used up exactly
//! ([`Reader::finish`]).

use std::collections::BTreeSet;

use bytes::Bytes;

use super::text::Text;
use super::varint::{nv_value, read_uv};
use crate::proto::v4::error::{DecodeError, Result, err};

/// The deepest region nesting a decoder enters. The eventlog schemas are not
/// recursive: their deepest path (an envelope's `exit` hole → cause → reason
/// → error union → struct → field) is about ten regions, so this only
/// guards against a schema change turning input into stack depth.
pub const MAX_DEPTH: u32 = 32;

/// The largest integer a `Schema.Int`/`Natural` holds: Effect checks
/// `Number.isSafeInteger`, i.e. |n| ≤ 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A region of a frame being read.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    /// A reader over all of `buf`.
    pub fn new(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
            depth: 0,
        }
    }

    /// Bytes left in this region.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when the region is used up.
    pub fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// The unread bytes, without consuming them.
    pub fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..self.end]
    }

    /// Fails unless the region is used up.
    pub fn finish(&self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(err!(
                TrailingBytes,
                "{} bytes left over after the value",
                self.remaining()
            ))
        }
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8> {
        if self.pos >= self.end {
            return Err(truncated());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` bytes as a zero-copy slice of the frame.
    pub fn take(&mut self, n: usize) -> Result<Bytes> {
        let range = self.advance(n)?;
        Ok(self.buf.slice(range))
    }

    /// The next `n` bytes, borrowed.
    pub fn take_slice(&mut self, n: usize) -> Result<&'a [u8]> {
        let range = self.advance(n)?;
        let buf: &'a Bytes = self.buf;
        Ok(&buf[range])
    }

    fn advance(&mut self, n: usize) -> Result<core::ops::Range<usize>> {
        if n > self.remaining() {
            return Err(truncated());
        }
        let start = self.pos;
        self.pos += n;
        Ok(start..self.pos)
    }

    /// A `uv`.
    pub fn uv(&mut self) -> Result<u64> {
        let (value, len) = read_uv(self.peek_rest())?;
        self.pos += len;
        Ok(value)
    }

    /// A `uv` length that must fit in what is left of this region.
    pub fn len_uv(&mut self) -> Result<usize> {
        let len = self.uv()?;
        if len > self.remaining() as u64 {
            return Err(err!(
                Truncated,
                "a length of {len} with {} bytes left",
                self.remaining()
            ));
        }
        Ok(len as usize)
    }

    /// A `uv` element count. Every element of every array the codec reads
    /// takes at least one byte, so a count beyond the bytes left is refused
    /// before anything is allocated for it.
    pub fn count(&mut self) -> Result<usize> {
        let count = self.uv()?;
        if count > self.remaining() as u64 {
            return Err(err!(
                CountTooLarge,
                "a count of {count} with {} bytes left",
                self.remaining()
            ));
        }
        Ok(count as usize)
    }

    /// The raw code of an `nv` (see [`nv_value`]).
    pub fn nv_code(&mut self) -> Result<u64> {
        self.uv()
    }

    /// A u32, little-endian (variant tags).
    pub fn u32le(&mut self) -> Result<u32> {
        let b = self.take_slice(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An f64, little-endian (fiber ids, non-integral numbers).
    pub fn f64le(&mut self) -> Result<f64> {
        let b = self.take_slice(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// The next `len` bytes as a child region, one level deeper.
    pub fn region(&mut self, len: usize) -> Result<Reader<'a>> {
        if self.depth >= MAX_DEPTH {
            return Err(err!(TooDeep, "regions nested deeper than {MAX_DEPTH}"));
        }
        let range = self.advance(len)?;
        Ok(Reader {
            buf: self.buf,
            pos: range.start,
            end: range.end,
            depth: self.depth + 1,
        })
    }

    /// A `uv(len)`-prefixed child region.
    pub fn sized(&mut self) -> Result<Reader<'a>> {
        let len = self.len_uv()?;
        self.region(len)
    }

    /// The rest of the region as bytes (a `Uint8Array` leaf).
    pub fn rest_bytes(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..self.end);
        self.pos = self.end;
        out
    }

    /// The rest of the region as a UTF-8 string (a `String` leaf).
    pub fn rest_string(&mut self) -> Result<String> {
        let bytes = &self.buf[self.pos..self.end];
        let s = core::str::from_utf8(bytes).map_err(|e| err!(InvalidText, "not UTF-8: {e}"))?;
        self.pos = self.end;
        Ok(s.to_owned())
    }

    /// The rest of the region as zero-copy [`Text`].
    pub fn rest_text(&mut self) -> Result<Text> {
        Text::from_utf8(self.rest_bytes()).map_err(|e| err!(InvalidText, "not UTF-8: {e}"))
    }

    /// A string leaf that must equal one literal (`"Ed25519"`, `"Chunked"`).
    pub fn rest_literal(&mut self, literal: &str) -> Result<()> {
        let bytes = self.peek_rest();
        if bytes != literal.as_bytes() {
            return Err(err!(
                InvalidValue,
                "expected the literal {literal:?}, found {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
            ));
        }
        self.pos = self.end;
        Ok(())
    }

    /// A whole-region `Int` leaf (`nv`, a safe integer).
    pub fn int(&mut self) -> Result<i64> {
        safe_int(self.nv_code()?)
    }

    /// A whole-region `Natural` leaf (`nv`, a safe non-negative integer).
    pub fn natural(&mut self) -> Result<u64> {
        natural(self.nv_code()?)
    }

    /// A bool leaf: one byte, 0 or 1.
    pub fn bool(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(err!(InvalidValue, "a bool byte of {b}")),
        }
    }
}

fn truncated() -> DecodeError {
    err!(Truncated, "unexpected end of region")
}

/// The `Int` an `nv` code stands for, if it is a safe integer.
pub fn safe_int(code: u64) -> Result<i64> {
    let n = nv_value(code);
    if n.unsigned_abs() > MAX_SAFE_INTEGER {
        return Err(err!(InvalidValue, "{n} is beyond 2^53 - 1"));
    }
    Ok(n)
}

/// The `Natural` an `nv` code stands for (`-0` is 0, as `-0 >= 0` in JS).
pub fn natural(code: u64) -> Result<u64> {
    let n = safe_int(code)?;
    u64::try_from(n).map_err(|_| err!(InvalidValue, "{n} is negative"))
}

/// The eight field wire kinds: how a default-mode field's payload is
/// delimited, so a reader can skip fields its schema does not have.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Wire {
    /// `uv(len)` + value: strings, bytes, structs, arrays, unions.
    Sized = 0,
    /// An `nv`: `Int`, and integral `Number`s.
    Varint = 1,
    /// Eight bytes (an f64 `Number`).
    Fixed64 = 2,
    /// `false`, no payload.
    False = 3,
    /// `true`, no payload.
    True = 4,
    /// `nv(mantissa)` + `uv(scale)`: a short decimal `Number`.
    Decimal = 5,
    /// Four bytes (readers skip it; no writer emits it).
    Fixed32 = 6,
    /// No payload (readers skip it; no writer emits it).
    Empty = 7,
}

impl Wire {
    fn from_low_bits(bits: u64) -> Wire {
        match bits & 7 {
            0 => Wire::Sized,
            1 => Wire::Varint,
            2 => Wire::Fixed64,
            3 => Wire::False,
            4 => Wire::True,
            5 => Wire::Decimal,
            6 => Wire::Fixed32,
            _ => Wire::Empty,
        }
    }
}

/// A default-mode field's payload, read according to its wire kind.
#[derive(Debug)]
pub enum FieldValue<'a> {
    /// [`Wire::Sized`]: the value's region.
    Sized(Reader<'a>),
    /// [`Wire::Varint`]: the `nv` code.
    Varint(u64),
    /// Any other wire kind: the schemas the codec reads never use these for
    /// a known field, and Effect treats a known field in a wire kind its
    /// schema cannot have as absent.
    Other(Wire),
}

impl<'a> FieldValue<'a> {
    /// The region of a sized field; `None` (absent) for any other wire kind.
    pub fn sized(self) -> Option<Reader<'a>> {
        match self {
            FieldValue::Sized(r) => Some(r),
            _ => None,
        }
    }

    /// The `nv` code of a varint field; `None` (absent) for any other kind.
    pub fn varint(self) -> Option<u64> {
        match self {
            FieldValue::Varint(code) => Some(code),
            _ => None,
        }
    }
}

/// The field loop of a default-mode struct: `uv(id·8 + wire)` tags in any
/// order (writers use ascending ids), unknown ids skipped by wire kind,
/// any id twice refused. Reads to the end of the region it borrows.
pub struct StructReader<'r, 'a> {
    r: &'r mut Reader<'a>,
    known: &'static [u32],
    seen: u64,
    seen_unknown: Option<BTreeSet<u32>>,
}

impl<'r, 'a> StructReader<'r, 'a> {
    /// Reads the struct filling the rest of `r`; `known` lists the schema's
    /// field ids (at most 64).
    pub fn new(r: &'r mut Reader<'a>, known: &'static [u32]) -> Self {
        debug_assert!(known.len() <= 64);
        StructReader {
            r,
            known,
            seen: 0,
            seen_unknown: None,
        }
    }

    /// The next field the schema knows, as its index in `known` and its
    /// payload; `None` at the end of the region.
    pub fn next_field(&mut self) -> Result<Option<(usize, FieldValue<'a>)>> {
        while !self.r.is_empty() {
            let tag = self.r.uv()?;
            let id = tag >> 3;
            let wire = Wire::from_low_bits(tag);
            let Ok(id) = u32::try_from(id) else {
                return Err(err!(BadVarint, "a field id beyond 32 bits"));
            };
            if id == 0 {
                return Err(err!(
                    UnsupportedField,
                    "field id 0 (an index-signature block) in a schema without one"
                ));
            }
            let value = self.payload(wire)?;
            match self.known.iter().position(|&k| k == id) {
                Some(index) => {
                    let bit = 1u64 << index;
                    if self.seen & bit != 0 {
                        return Err(err!(DuplicateField, "field id {id} appears twice"));
                    }
                    self.seen |= bit;
                    return Ok(Some((index, value)));
                }
                None => {
                    if !self.seen_unknown.get_or_insert_default().insert(id) {
                        return Err(err!(DuplicateField, "unknown field id {id} appears twice"));
                    }
                }
            }
        }
        Ok(None)
    }

    fn payload(&mut self, wire: Wire) -> Result<FieldValue<'a>> {
        Ok(match wire {
            Wire::Sized => FieldValue::Sized(self.r.sized()?),
            Wire::Varint => FieldValue::Varint(self.r.uv()?),
            Wire::Fixed64 => {
                self.r.take_slice(8)?;
                FieldValue::Other(wire)
            }
            Wire::Fixed32 => {
                self.r.take_slice(4)?;
                FieldValue::Other(wire)
            }
            Wire::Decimal => {
                self.r.uv()?;
                self.r.uv()?;
                FieldValue::Other(wire)
            }
            Wire::False | Wire::True | Wire::Empty => FieldValue::Other(wire),
        })
    }
}

/// Fails with [`MissingField`](crate::proto::v4::DecodeErrorKind::MissingField)
/// when a required field was not read.
pub fn required<T>(value: Option<T>, name: &str) -> Result<T> {
    value.ok_or_else(|| err!(MissingField, "required field {name:?} is missing"))
}

/// Decodes the region of one field, adding the field's name to any error's
/// path.
pub fn field<'a, T>(
    name: &str,
    r: Reader<'a>,
    decode: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<T> {
    let mut r = r;
    decode(&mut r)
        .and_then(|v| r.finish().map(|()| v))
        .map_err(|e| e.in_field(name))
}

/// An optional field's value: `Schema.optional(X)` is `X | undefined`, a
/// union, so a present value is a kind byte and then `X`. Kind 3
/// (`undefined`) means absent; so does a kind this schema does not have,
/// as in Effect (its reader skips unknown union members). Returns the region
/// after a matching kind byte.
pub fn optional_member<'a>(r: &mut Reader<'a>, kind: u8) -> Result<Option<Reader<'a>>> {
    let k = r.byte()?;
    if k == KIND_UNDEFINED {
        r.finish()?;
        return Ok(None);
    }
    if k != kind {
        // An unknown member: Effect's reader drops it and the field is absent.
        r.rest_bytes();
        return Ok(None);
    }
    let len = r.remaining();
    let inner = r.region(len)?;
    Ok(Some(inner))
}

/// Union kind bytes (default mode) of the members the codec meets.
pub const KIND_BOOL: u8 = 1;
/// `undefined` (an absent optional).
pub const KIND_UNDEFINED: u8 = 3;
/// `number`/`Int`.
pub const KIND_NUMBER: u8 = 4;
/// `string`.
pub const KIND_STRING: u8 = 5;
/// A tagged struct, followed by its u32 LE variant tag.
pub const KIND_VARIANT: u8 = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::error::DecodeErrorKind;

    #[test]
    fn regions_nest_and_must_be_used_up() {
        let buf = Bytes::from_static(&[3, 1, 2, 3, 9]);
        let mut r = Reader::new(&buf);
        let mut inner = r.sized().unwrap();
        assert_eq!(inner.byte().unwrap(), 1);
        assert_eq!(
            inner.finish().unwrap_err().kind(),
            DecodeErrorKind::TrailingBytes
        );
        assert_eq!(&inner.rest_bytes()[..], &[2, 3]);
        inner.finish().unwrap();
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.byte().unwrap(), 9);
        assert_eq!(r.byte().unwrap_err().kind(), DecodeErrorKind::Truncated);
        // A length past the end of its region.
        let buf = Bytes::from_static(&[5, 1]);
        assert_eq!(
            Reader::new(&buf).sized().unwrap_err().kind(),
            DecodeErrorKind::Truncated
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut bytes = vec![0u8; 40];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (39 - i) as u8;
        }
        let buf = Bytes::from(bytes);
        let mut r = Reader::new(&buf);
        let mut depth = 0;
        let e = loop {
            match r.sized() {
                Ok(inner) => {
                    r = inner;
                    depth += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), DecodeErrorKind::TooDeep);
        assert_eq!(depth, MAX_DEPTH);
    }

    #[test]
    fn struct_fields_skip_unknown_and_refuse_duplicates() {
        // id 1 varint 5, id 2 (unknown) sized "ab", id 3 fixed64, id 1 again.
        let mut bytes = vec![0x09, 0x0a, 0x10, 2, b'a', b'b', 0x1a];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0x09, 0x02]);
        let buf = Bytes::from(bytes);
        let mut r = Reader::new(&buf);
        let mut s = StructReader::new(&mut r, &[1, 3]);
        let (i, v) = s.next_field().unwrap().unwrap();
        assert_eq!((i, v.varint()), (0, Some(10)));
        let (i, v) = s.next_field().unwrap().unwrap();
        assert_eq!(i, 1);
        assert!(v.sized().is_none(), "fixed64 is not this field's wire kind");
        assert_eq!(
            s.next_field().unwrap_err().kind(),
            DecodeErrorKind::DuplicateField
        );
        // An unknown id twice.
        let buf = Bytes::from_static(&[0x17, 0x17]);
        let mut r = Reader::new(&buf);
        let mut s = StructReader::new(&mut r, &[1]);
        assert_eq!(
            s.next_field().unwrap_err().kind(),
            DecodeErrorKind::DuplicateField
        );
        // Field id 0.
        let buf = Bytes::from_static(&[0x00, 0x00]);
        let mut r = Reader::new(&buf);
        let mut s = StructReader::new(&mut r, &[1]);
        assert_eq!(
            s.next_field().unwrap_err().kind(),
            DecodeErrorKind::UnsupportedField
        );
    }

    #[test]
    fn integers_are_safe() {
        assert_eq!(natural(2).unwrap(), 1);
        assert_eq!(natural(1).unwrap(), 0);
        assert_eq!(
            natural(3).unwrap_err().kind(),
            DecodeErrorKind::InvalidValue
        );
        assert_eq!(
            safe_int(MAX_SAFE_INTEGER * 2 + 1).unwrap(),
            -(MAX_SAFE_INTEGER as i64)
        );
        assert_eq!(
            safe_int((MAX_SAFE_INTEGER + 1) * 2).unwrap_err().kind(),
            DecodeErrorKind::InvalidValue
        );
    }
}
