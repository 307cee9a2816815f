//! A minimal, allocation-free MessagePack reader over one received frame.
//!
//! It understands every MessagePack format (so it can validate and skip
//! values it does not need) but only converts the few types the protocol
//! uses. Binaries come out as [`Bytes::slice`]s of the frame: decoding a
//! 1 MB `WriteEntries` copies no entry. All bounds are checked; nothing here
//! can panic or recurse deeper than [`MAX_DEPTH`].

use super::error::{DecodeError, DecodeErrorKind};
use bytes::Bytes;

/// Deepest container nesting accepted (the top-level map is depth 0).
///
/// The protocol needs 3 (message → array → entry map → field); the slack is
/// for extra keys a newer peer might add. Hostile `[[[[…]]]]` input stops
/// here instead of exhausting the stack.
pub const MAX_DEPTH: usize = 32;

/// One MessagePack header: scalars carry their value, variable-length types
/// their length (the reader then stands at the payload).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Head {
    Nil,
    Bool(bool),
    /// Any unsigned format (positive fixint, uint 8..64).
    Uint(u64),
    /// Any signed format (negative fixint, int 8..64); may be non-negative.
    Int(i64),
    F32(f32),
    F64(f64),
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    /// Extension payload length (the type byte is already consumed).
    Ext(usize),
}

impl Head {
    /// The type name used in "expected X, found Y" messages.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Head::Nil => "nil",
            Head::Bool(_) => "bool",
            Head::Uint(_) | Head::Int(_) => "int",
            Head::F32(_) | Head::F64(_) => "float",
            Head::Str(_) => "str",
            Head::Bin(_) => "bin",
            Head::Array(_) => "array",
            Head::Map(_) => "map",
            Head::Ext(_) => "ext",
        }
    }
}

/// A cursor over a frame.
pub(crate) struct Reader<'a> {
    frame: &'a Bytes,
    pos: usize,
}

#[cold]
fn reserved(at: usize) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::ReservedByte,
        format!("reserved MessagePack byte 0xc1 at byte {at}"),
    )
}

#[cold]
fn wrong_type(expected: &str, found: Head) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::WrongType,
        format!("expected {expected}, found {}", found.type_name()),
    )
}

impl<'a> Reader<'a> {
    /// A reader positioned at `pos` of `frame`.
    pub(crate) fn at(frame: &'a Bytes, pos: usize) -> Self {
        Reader { frame, pos }
    }

    /// Current byte offset in the frame.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves the cursor back to `pos` (an offset this reader returned).
    pub(crate) fn set_pos(&mut self, pos: usize) {
        debug_assert!(pos <= self.frame.len());
        self.pos = pos;
    }

    /// Bytes left after the cursor.
    pub(crate) fn remaining(&self) -> usize {
        self.frame.len() - self.pos
    }

    /// Consumes `n` bytes and returns where they start.
    #[inline]
    fn take(&mut self, n: usize) -> Result<usize, DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    #[cold]
    #[inline(never)]
    fn truncated(&self, n: usize) -> DecodeError {
        DecodeError::new(
            DecodeErrorKind::Truncated,
            format!(
                "unexpected end of frame at byte {}: {} more bytes needed, {} left",
                self.pos,
                n,
                self.remaining()
            ),
        )
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let start = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.frame[start..start + N]);
        Ok(out)
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline]
    fn u16(&mut self) -> Result<usize, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?) as usize)
    }

    #[inline]
    fn u32(&mut self) -> Result<usize, DecodeError> {
        // usize is at least 32 bits on every target we build for.
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }

    /// Reads one header. For str/bin/ext the cursor is left at the payload.
    pub(crate) fn head(&mut self) -> Result<Head, DecodeError> {
        let at = self.pos;
        let b = self.u8()?;
        Ok(match b {
            0x00..=0x7f => Head::Uint(b as u64),
            0x80..=0x8f => Head::Map((b & 0x0f) as usize),
            0x90..=0x9f => Head::Array((b & 0x0f) as usize),
            0xa0..=0xbf => Head::Str((b & 0x1f) as usize),
            0xc0 => Head::Nil,
            0xc1 => return Err(reserved(at)),
            0xc2 => Head::Bool(false),
            0xc3 => Head::Bool(true),
            0xc4 => Head::Bin(self.u8()? as usize),
            0xc5 => Head::Bin(self.u16()?),
            0xc6 => Head::Bin(self.u32()?),
            0xc7 => {
                let len = self.u8()? as usize;
                self.u8()?;
                Head::Ext(len)
            }
            0xc8 => {
                let len = self.u16()?;
                self.u8()?;
                Head::Ext(len)
            }
            0xc9 => {
                let len = self.u32()?;
                self.u8()?;
                Head::Ext(len)
            }
            0xca => Head::F32(f32::from_be_bytes(self.array()?)),
            0xcb => Head::F64(f64::from_be_bytes(self.array()?)),
            0xcc => Head::Uint(self.u8()? as u64),
            0xcd => Head::Uint(self.u16()? as u64),
            0xce => Head::Uint(self.u32()? as u64),
            0xcf => Head::Uint(u64::from_be_bytes(self.array()?)),
            0xd0 => Head::Int(i8::from_be_bytes(self.array()?) as i64),
            0xd1 => Head::Int(i16::from_be_bytes(self.array()?) as i64),
            0xd2 => Head::Int(i32::from_be_bytes(self.array()?) as i64),
            0xd3 => Head::Int(i64::from_be_bytes(self.array()?)),
            0xd4..=0xd8 => {
                self.u8()?;
                Head::Ext(1 << (b - 0xd4))
            }
            0xd9 => Head::Str(self.u8()? as usize),
            0xda => Head::Str(self.u16()?),
            0xdb => Head::Str(self.u32()?),
            0xdc => Head::Array(self.u16()?),
            0xdd => Head::Array(self.u32()?),
            0xde => Head::Map(self.u16()?),
            0xdf => Head::Map(self.u32()?),
            0xe0..=0xff => Head::Int(b as i8 as i64),
        })
    }

    /// Reads and discards one complete value, checking that it is
    /// well-formed and nested no deeper than [`MAX_DEPTH`]. `depth` is the
    /// depth of the value being skipped.
    ///
    /// Every element consumes at least one byte, so a forged huge container
    /// length ends in [`DecodeErrorKind::Truncated`] after at most
    /// frame-length iterations.
    pub(crate) fn skip(&mut self, depth: usize) -> Result<(), DecodeError> {
        match self.head()? {
            Head::Str(n) | Head::Bin(n) | Head::Ext(n) => {
                self.take(n)?;
            }
            Head::Array(n) => {
                self.check_depth(depth)?;
                for _ in 0..n {
                    self.skip(depth + 1)?;
                }
            }
            Head::Map(n) => {
                self.check_depth(depth)?;
                for _ in 0..n {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            Head::Nil
            | Head::Bool(_)
            | Head::Uint(_)
            | Head::Int(_)
            | Head::F32(_)
            | Head::F64(_) => {}
        }
        Ok(())
    }

    /// Fails if a container at `depth` would hold children deeper than allowed.
    pub(crate) fn check_depth(&self, depth: usize) -> Result<(), DecodeError> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError::new(
                DecodeErrorKind::TooDeep,
                format!(
                    "containers nested deeper than {MAX_DEPTH} levels at byte {}",
                    self.pos
                ),
            ));
        }
        Ok(())
    }

    /// Reads a map header.
    pub(crate) fn map_len(&mut self) -> Result<usize, DecodeError> {
        match self.head()? {
            Head::Map(n) => Ok(n),
            other => Err(wrong_type("map", other)),
        }
    }

    /// Reads an array header.
    pub(crate) fn array_len(&mut self) -> Result<usize, DecodeError> {
        match self.head()? {
            Head::Array(n) => Ok(n),
            other => Err(wrong_type("array", other)),
        }
    }

    /// Reads a string's raw bytes (not yet UTF-8 checked), or `None` (after
    /// skipping it) if the value is not a string. Used for map keys, which
    /// Effect ignores when unknown whatever their type.
    pub(crate) fn key(&mut self, depth: usize) -> Result<Option<&'a [u8]>, DecodeError> {
        let start = self.pos;
        match self.head()? {
            Head::Str(n) => {
                let at = self.take(n)?;
                let frame: &'a Bytes = self.frame;
                Ok(Some(&frame[at..at + n]))
            }
            _ => {
                self.pos = start;
                self.skip(depth)?;
                Ok(None)
            }
        }
    }

    /// Reads a UTF-8 string borrowed from the frame.
    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        match self.head()? {
            Head::Str(n) => {
                let at = self.take(n)?;
                let frame: &'a Bytes = self.frame;
                core::str::from_utf8(&frame[at..at + n]).map_err(|e| {
                    DecodeError::new(
                        DecodeErrorKind::InvalidUtf8,
                        format!("invalid UTF-8 in str at byte {}", at + e.valid_up_to()),
                    )
                })
            }
            other => Err(wrong_type("str", other)),
        }
    }

    /// Reads a binary as a zero-copy slice of the frame.
    pub(crate) fn bin(&mut self) -> Result<Bytes, DecodeError> {
        match self.head()? {
            Head::Bin(n) => {
                let at = self.take(n)?;
                Ok(self.frame.slice(at..at + n))
            }
            other => Err(wrong_type("bin", other)),
        }
    }

    /// Reads a number that must be an integer, as JS would hold it: any int
    /// width, or a float32/float64 with an integral value.
    pub(crate) fn int(&mut self) -> Result<Int, DecodeError> {
        match self.head()? {
            Head::Uint(v) => Ok(Int::Pos(v)),
            Head::Int(v) if v >= 0 => Ok(Int::Pos(v as u64)),
            Head::Int(v) => Ok(Int::Neg(v)),
            Head::F32(f) => float_to_int(f as f64),
            Head::F64(f) => float_to_int(f),
            other => Err(wrong_type("int", other)),
        }
    }

    /// Reads an integer that must fit an `i64`.
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        match self.int()? {
            Int::Neg(v) => Ok(v),
            Int::Pos(v) => i64::try_from(v).map_err(|_| out_of_range(v, "i64")),
        }
    }

    /// Reads an integer that must be non-negative.
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        match self.int()? {
            Int::Pos(v) => Ok(v),
            Int::Neg(v) => Err(DecodeError::new(
                DecodeErrorKind::OutOfRange,
                format!("expected a non-negative integer, found {v}"),
            )),
        }
    }

    /// Reads an integer, mapping negative values to 0 (for fields where a
    /// negative value has an obvious lenient meaning).
    pub(crate) fn u64_clamped(&mut self) -> Result<u64, DecodeError> {
        match self.int()? {
            Int::Pos(v) => Ok(v),
            Int::Neg(_) => Ok(0),
        }
    }

    /// Reads a non-negative integer that must fit a `u32`.
    pub(crate) fn u32_value(&mut self) -> Result<u32, DecodeError> {
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| out_of_range(v, "u32"))
    }
}

/// An integer read from the wire, sign kept apart so the full `u64` and
/// `i64` ranges are both representable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Int {
    Pos(u64),
    /// Always negative.
    Neg(i64),
}

fn out_of_range(v: u64, ty: &str) -> DecodeError {
    DecodeError::new(
        DecodeErrorKind::OutOfRange,
        format!("integer {v} does not fit {ty}"),
    )
}

/// 2^63 and 2^64 as floats: the first values past `i64`/`u64` range.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A JS number is an integer when it is finite and has no fraction; msgpackr
/// writes integers outside `[-2^31, 2^32)` as float64, so these are normal.
fn float_to_int(f: f64) -> Result<Int, DecodeError> {
    if !f.is_finite() || f.trunc() != f {
        return Err(DecodeError::new(
            DecodeErrorKind::NotAnInteger,
            format!("expected an integer, found float {f}"),
        ));
    }
    if f >= 0.0 {
        if f >= TWO_POW_64 {
            return Err(DecodeError::new(
                DecodeErrorKind::OutOfRange,
                format!("integer {f} does not fit u64"),
            ));
        }
        // Exact: f is integral and in range (also maps -0.0 to 0).
        Ok(Int::Pos(f as u64))
    } else {
        if f < -TWO_POW_63 {
            return Err(DecodeError::new(
                DecodeErrorKind::OutOfRange,
                format!("integer {f} does not fit i64"),
            ));
        }
        Ok(Int::Neg(f as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8]) -> (Bytes, usize) {
        (Bytes::from_static(bytes), 0)
    }

    #[test]
    fn ints_of_every_width() {
        let cases: &[(&'static [u8], Int)] = &[
            (&[0x05], Int::Pos(5)),
            (&[0xcc, 0xff], Int::Pos(255)),
            (&[0xcd, 0x01, 0x00], Int::Pos(256)),
            (&[0xce, 0xff, 0xff, 0xff, 0xff], Int::Pos(u32::MAX as u64)),
            (
                &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                Int::Pos(u64::MAX),
            ),
            (&[0xff], Int::Neg(-1)),
            (&[0xe0], Int::Neg(-32)),
            (&[0xd0, 0x7f], Int::Pos(127)),
            (&[0xd0, 0x80], Int::Neg(-128)),
            (&[0xd1, 0x80, 0x00], Int::Neg(-32768)),
            (&[0xd2, 0x80, 0x00, 0x00, 0x00], Int::Neg(i32::MIN as i64)),
            (&[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], Int::Neg(i64::MIN)),
            (&[0xca, 0x40, 0x00, 0x00, 0x00], Int::Pos(2)),
            (&[0xcb, 0x41, 0xf0, 0, 0, 0, 0, 0, 0], Int::Pos(1 << 32)),
            (&[0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0], Int::Pos(0)),
        ];
        for (bytes, want) in cases {
            let (frame, pos) = reader(bytes);
            let mut r = Reader::at(&frame, pos);
            assert_eq!(r.int().unwrap(), *want, "{bytes:02x?}");
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn non_integral_and_huge_floats() {
        let (frame, _) = reader(&[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
        let err = Reader::at(&frame, 0).int().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::NotAnInteger);
        // NaN
        let (frame, _) = reader(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]);
        let err = Reader::at(&frame, 0).int().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::NotAnInteger);
        // 2^64
        let (frame, _) = reader(&[0xcb, 0x43, 0xf0, 0, 0, 0, 0, 0, 0]);
        let err = Reader::at(&frame, 0).int().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::OutOfRange);
        // 2^63 fits u64 but not i64
        let (frame, _) = reader(&[0xcb, 0x43, 0xe0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reader::at(&frame, 0).u64().unwrap(), 1 << 63);
        let err = Reader::at(&frame, 0).i64().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::OutOfRange);
        // -2^63 fits i64
        let (frame, _) = reader(&[0xcb, 0xc3, 0xe0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reader::at(&frame, 0).i64().unwrap(), i64::MIN);
    }

    #[test]
    fn skip_limits_depth_and_length() {
        let deep = Bytes::from(vec![0x91u8; 10_000]);
        let err = Reader::at(&deep, 0).skip(0).unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::TooDeep);
        let mut ok = vec![0x91u8; MAX_DEPTH];
        ok.push(0xc0);
        let ok = Bytes::from(ok);
        let mut r = Reader::at(&ok, 0);
        r.skip(0).unwrap();
        assert_eq!(r.remaining(), 0);
        let huge = Bytes::from_static(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]);
        let err = Reader::at(&huge, 0).skip(0).unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::Truncated);
        let reserved = Bytes::from_static(&[0x92, 0xc0, 0xc1]);
        let err = Reader::at(&reserved, 0).skip(0).unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::ReservedByte);
        assert_eq!(err.to_string(), "reserved MessagePack byte 0xc1 at byte 2");
    }

    #[test]
    fn bin_is_zero_copy() {
        let frame = Bytes::from(vec![0xc4, 3, 1, 2, 3]);
        let bin = Reader::at(&frame, 0).bin().unwrap();
        assert_eq!(&bin[..], &[1, 2, 3]);
        assert_eq!(bin.as_ptr(), frame[2..].as_ptr());
    }
}
