//! The two varints of SchemaBinary.
//!
//! * `uv`: unsigned LEB128 (7 bits per byte, low group first, high bit =
//!   more follows). Lengths, counts, field tags, union selectors.
//! * `nv`, the "number varint": sign-magnitude over `uv`, `uv(2n)` for
//!   n ≥ 0 and `uv(2|n| + 1)` for n < 0 (Effect's `Writer.numberVarint`).
//!   Not zigzag: `-1` is `03`, not `01`, and `01` is `-0`.
//!
//! Effect's writers always produce the shortest form. This reader accepts
//! only that form and only what fits a `u64`: an overlong varint (a final
//! zero group after others) or one past 64 bits is an error rather than a
//! second spelling of a value, so every decoded value has one encoding.

use crate::proto::v4::error::{Result, err};

/// The longest `uv` of a `u64`: ⌈64 / 7⌉ bytes.
pub const MAX_UV_LEN: usize = 10;

/// Reads a `uv` from the start of `buf`: the value and how many bytes it took.
pub fn read_uv(buf: &[u8]) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().take(MAX_UV_LEN).enumerate() {
        if i == MAX_UV_LEN - 1 && b > 1 {
            return Err(err!(BadVarint, "varint longer than 64 bits"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i > 0 && b == 0 {
                return Err(err!(BadVarint, "overlong varint (a final zero group)"));
            }
            return Ok((value, i + 1));
        }
    }
    // Either the input ended, or ten bytes all had the continuation bit (the
    // tenth was then > 1 and refused above).
    Err(err!(Truncated, "unexpected end inside a varint"))
}

/// How many bytes `uv(n)` takes.
pub const fn uv_len(n: u64) -> usize {
    let bits = 64 - (n | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `uv(n)`.
pub fn write_uv(out: &mut Vec<u8>, n: u64) {
    let at = out.len();
    out.resize(at + uv_len(n), 0);
    put_uv(&mut out[at..], n);
}

/// Writes `uv(n)` over `slot`, which is [`uv_len`]`(n)` bytes long (a
/// length prefix reserved before its value was known).
pub fn put_uv(slot: &mut [u8], mut n: u64) {
    for byte in slot {
        *byte = (n as u8 & 0x7f) | if n > 0x7f { 0x80 } else { 0 };
        n >>= 7;
    }
}

/// The `uv` code of `nv(n)`. Every `i64` but `i64::MIN` has one (its
/// magnitude 2^63 needs a 65th bit); that one is clamped to `-(2^63 - 1)`.
/// The eventlog schemas only carry safe integers (|n| < 2^53) anyway.
pub fn nv_code(n: i64) -> u64 {
    let magnitude = n.unsigned_abs().min(i64::MAX as u64);
    magnitude * 2 + u64::from(n < 0)
}

/// The integer an `nv` code stands for (`-0` is 0). Never overflows: the
/// magnitude `code / 2` is below 2^63.
pub fn nv_value(code: u64) -> i64 {
    let magnitude = (code >> 1) as i64;
    if code & 1 == 1 { -magnitude } else { magnitude }
}

/// Appends `nv(n)`.
pub fn write_nv(out: &mut Vec<u8>, n: i64) {
    write_uv(out, nv_code(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::error::DecodeErrorKind;

    fn uv(n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        write_uv(&mut v, n);
        v
    }

    #[test]
    fn uv_round_trips_at_group_edges() {
        for n in [
            0,
            1,
            0x7f,
            0x80,
            0x3fff,
            0x4000,
            (1 << 35) - 1,
            1 << 35,
            (1 << 53) - 1,
            u64::MAX >> 1,
            u64::MAX,
        ] {
            let bytes = uv(n);
            assert_eq!(bytes.len(), uv_len(n), "{n}");
            assert_eq!(read_uv(&bytes).unwrap(), (n, bytes.len()), "{n}");
            // Trailing bytes are not consumed.
            let mut more = bytes.clone();
            more.push(0xff);
            assert_eq!(read_uv(&more).unwrap(), (n, bytes.len()));
        }
        assert_eq!(uv(300), [0xac, 0x02]);
        assert_eq!(uv(u64::MAX).len(), 10);
    }

    #[test]
    fn bad_varints_are_errors() {
        let kind = |b: &[u8]| read_uv(b).unwrap_err().kind();
        assert_eq!(kind(&[]), DecodeErrorKind::Truncated);
        assert_eq!(kind(&[0x80]), DecodeErrorKind::Truncated);
        assert_eq!(kind(&[0xff, 0xff]), DecodeErrorKind::Truncated);
        // Overlong spellings of 0 and 1.
        assert_eq!(kind(&[0x80, 0x00]), DecodeErrorKind::BadVarint);
        assert_eq!(kind(&[0x81, 0x80, 0x00]), DecodeErrorKind::BadVarint);
        // Past 64 bits: a tenth byte above 1, or an eleventh byte.
        let mut long = vec![0xff; 9];
        long.push(0x02);
        assert_eq!(kind(&long), DecodeErrorKind::BadVarint);
        let mut longer = vec![0xff; 10];
        longer.push(0x01);
        assert_eq!(kind(&longer), DecodeErrorKind::BadVarint);
    }

    #[test]
    fn nv_is_sign_magnitude() {
        let nv = |n: i64| {
            let mut v = Vec::new();
            write_nv(&mut v, n);
            v
        };
        assert_eq!(nv(0), [0x00]);
        assert_eq!(nv(1), [0x02]);
        assert_eq!(nv(-1), [0x03]);
        assert_eq!(nv(7), [0x0e]);
        assert_eq!(nv(64), [0x80, 0x01]);
        assert_eq!(nv_value(1), 0, "-0 reads as 0");
        for n in [0, 1, -1, 63, -64, 1 << 40, -(1 << 52), i64::MAX, -i64::MAX] {
            assert_eq!(nv_value(nv_code(n)), n);
        }
        assert_eq!(nv_value(nv_code(i64::MIN)), -i64::MAX);
        assert_eq!(nv_value(u64::MAX), -i64::MAX);
    }
}
