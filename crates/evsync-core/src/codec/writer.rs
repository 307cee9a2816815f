//! A MessagePack writer that makes the same format choices as msgpackr's
//! default `Packr` (what Effect's `MsgPack.schema` uses), so our frames are
//! byte-identical to Effect's, plus exact length functions for each piece so
//! messages can be sized before (or without) encoding them.
//!
//! msgpackr's choices, confirmed against its output by the golden vectors:
//! - objects: always `map16` (it reserves 3 bytes and patches the count);
//! - arrays: the smallest of fixarray / array16 / array32;
//! - strings: the smallest of fixstr / str8 / str16 / str32 by UTF-8 length;
//! - `Uint8Array`: the smallest of bin8 / bin16 / bin32;
//! - numbers: integers in `[0, 128)` as positive fixint, `[128, 2^32)` as
//!   uint8/16/32, `[-32, 0)` as negative fixint, `[-2^31, -32)` as
//!   int8/16/32; every other number, including integers outside
//!   `[-2^31, 2^32)`, as float64.

/// Writes a map header the way msgpackr does for plain objects: always map16.
#[inline]
pub fn map16(out: &mut Vec<u8>, len: u16) {
    out.push(0xde);
    out.extend_from_slice(&len.to_be_bytes());
}

/// Bytes of a map16 header.
pub const MAP16_LEN: usize = 3;

/// Writes an array header in its smallest form.
///
/// # Panics
/// If `len` exceeds `u32::MAX` (MessagePack cannot express it; msgpackr
/// throws likewise).
#[inline]
pub fn array_header(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if len < 0x1_0000 {
        out.push(0xdc);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&u32_len(len).to_be_bytes());
    }
}

/// Bytes of the array header for `len` elements.
#[inline]
pub fn array_header_len(len: usize) -> usize {
    if len < 16 {
        1
    } else if len < 0x1_0000 {
        3
    } else {
        5
    }
}

/// Writes a string with the smallest header for its UTF-8 length.
#[inline]
pub fn str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 0x100 {
        out.push(0xd9);
        out.push(len as u8);
    } else if len < 0x1_0000 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&u32_len(len).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

/// Bytes of an encoded string.
#[inline]
pub fn str_len(s: &str) -> usize {
    let len = s.len();
    let head = if len < 32 {
        1
    } else if len < 0x100 {
        2
    } else if len < 0x1_0000 {
        3
    } else {
        5
    };
    head + len
}

/// Writes a map key. Every protocol key is shorter than 32 bytes, so this
/// is always a fixstr; kept separate to make that assumption checkable.
#[inline]
pub fn key(out: &mut Vec<u8>, k: &'static str) {
    debug_assert!(k.len() < 32);
    out.push(0xa0 | k.len() as u8);
    out.extend_from_slice(k.as_bytes());
}

/// Bytes of an encoded key.
#[inline]
pub const fn key_len(k: &'static str) -> usize {
    1 + k.len()
}

/// Writes a binary with the smallest bin header.
#[inline]
pub fn bin(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len();
    if len < 0x100 {
        out.push(0xc4);
        out.push(len as u8);
    } else if len < 0x1_0000 {
        out.push(0xc5);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&u32_len(len).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// Bytes of an encoded binary.
#[inline]
pub fn bin_len(b: &[u8]) -> usize {
    let len = b.len();
    let head = if len < 0x100 {
        2
    } else if len < 0x1_0000 {
        3
    } else {
        5
    };
    head + len
}

/// Writes a signed integer exactly as msgpackr writes the equal JS number.
///
/// Integers outside `[-2^31, 2^32)` become float64 like in msgpackr. An
/// `i64` that no JS number can hold exactly (|v| > 2^53 and not a multiple
/// of the float spacing) is written losslessly as int64/uint64 instead:
/// Effect could never have sent such a value, a Rust peer gets it back
/// intact, and rounding it silently would be worse.
#[inline]
pub fn i64(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        u64(out, v as u64);
    } else if v >= -32 {
        out.push(v as u8);
    } else if v >= -0x80 {
        out.push(0xd0);
        out.push(v as u8);
    } else if v >= -0x8000 {
        out.push(0xd1);
        out.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= -0x8000_0000 {
        out.push(0xd2);
        out.extend_from_slice(&(v as i32).to_be_bytes());
    } else if i64_is_exact_f64(v) {
        out.push(0xcb);
        out.extend_from_slice(&(v as f64).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Bytes of an encoded signed integer.
#[inline]
pub fn i64_len(v: i64) -> usize {
    if v >= 0 {
        u64_len(v as u64)
    } else if v >= -32 {
        1
    } else if v >= -0x80 {
        2
    } else if v >= -0x8000 {
        3
    } else if v >= -0x8000_0000 {
        5
    } else {
        9
    }
}

/// Writes an unsigned integer exactly as msgpackr writes the equal JS
/// number (see [`i64`] for values no JS number holds exactly).
#[inline]
pub fn u64(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x100 {
        out.push(0xcc);
        out.push(v as u8);
    } else if v < 0x1_0000 {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v < 0x1_0000_0000 {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else if u64_is_exact_f64(v) {
        out.push(0xcb);
        out.extend_from_slice(&(v as f64).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Bytes of an encoded unsigned integer.
#[inline]
pub fn u64_len(v: u64) -> usize {
    if v < 0x80 {
        1
    } else if v < 0x100 {
        2
    } else if v < 0x1_0000 {
        3
    } else if v < 0x1_0000_0000 {
        5
    } else {
        // float64 and int64/uint64 are both 9 bytes.
        9
    }
}

/// Whether `v as f64` is exactly `v` (and converts back without saturating).
fn i64_is_exact_f64(v: i64) -> bool {
    let f = v as f64;
    f < 9_223_372_036_854_775_808.0 && f as i64 == v
}

/// Whether `v as f64` is exactly `v` (and converts back without saturating).
fn u64_is_exact_f64(v: u64) -> bool {
    let f = v as f64;
    f < 18_446_744_073_709_551_616.0 && f as u64 == v
}

fn u32_len(len: usize) -> u32 {
    u32::try_from(len).expect("MessagePack cannot express lengths over u32::MAX")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_i64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        i64(&mut out, v);
        assert_eq!(out.len(), i64_len(v), "{v}");
        out
    }

    fn enc_u64(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        u64(&mut out, v);
        assert_eq!(out.len(), u64_len(v), "{v}");
        out
    }

    #[test]
    fn int_widths_match_msgpackr() {
        assert_eq!(enc_i64(0), [0x00]);
        assert_eq!(enc_i64(127), [0x7f]);
        assert_eq!(enc_i64(128), [0xcc, 0x80]);
        assert_eq!(enc_i64(256), [0xcd, 0x01, 0x00]);
        assert_eq!(enc_i64(65536), [0xce, 0, 1, 0, 0]);
        assert_eq!(enc_i64(-1), [0xff]);
        assert_eq!(enc_i64(-32), [0xe0]);
        assert_eq!(enc_i64(-33), [0xd0, 0xdf]);
        assert_eq!(enc_i64(-129), [0xd1, 0xff, 0x7f]);
        assert_eq!(enc_i64(-32769), [0xd2, 0xff, 0xff, 0x7f, 0xff]);
        // Outside [-2^31, 2^32): float64, as msgpackr.
        assert_eq!(enc_i64(1 << 32), [0xcb, 0x41, 0xf0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc_i64(-(1 << 31) - 1),
            [0xcb, 0xc1, 0xe0, 0, 0, 0, 0x20, 0, 0]
        );
        assert_eq!(enc_i64(i64::MIN), [0xcb, 0xc3, 0xe0, 0, 0, 0, 0, 0, 0]);
        // Not representable as a JS number: lossless int64/uint64.
        assert_eq!(
            enc_i64(i64::MAX),
            [0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(enc_i64(-(1 << 53) - 1)[0], 0xd3);
        assert_eq!(enc_u64(u64::MAX)[0], 0xcf);
        assert_eq!(enc_u64(1 << 63)[0], 0xcb);
    }

    #[test]
    fn header_boundaries() {
        for (len, head) in [
            (31usize, 1usize),
            (32, 2),
            (255, 2),
            (256, 3),
            (65535, 3),
            (65536, 5),
        ] {
            let s = "a".repeat(len);
            let mut out = Vec::new();
            str(&mut out, &s);
            assert_eq!(out.len(), len + head);
            assert_eq!(str_len(&s), out.len());
        }
        for (len, head) in [(0usize, 2usize), (255, 2), (256, 3), (65535, 3), (65536, 5)] {
            let b = vec![7u8; len];
            let mut out = Vec::new();
            bin(&mut out, &b);
            assert_eq!(out.len(), len + head);
            assert_eq!(bin_len(&b), out.len());
        }
        for (len, head) in [(0usize, 1usize), (15, 1), (16, 3), (65535, 3), (65536, 5)] {
            let mut out = Vec::new();
            array_header(&mut out, len);
            assert_eq!(out.len(), head);
            assert_eq!(array_header_len(len), head);
        }
    }
}
