//! A small MessagePack writer and reader for what lives *inside* an entry:
//! the `Entry` map itself and event payloads.
//!
//! The primitives are evsync-core's msgpackr-exact writer
//! (`evsync_core::codec::writer`); this module adds what a replica client
//! needs beyond the protocol messages: generic values (payloads as JSON) and
//! a reader for them. What a Rust replica encodes is byte-identical to what
//! an Effect replica would encode for the same value:
//! - objects: always `map16` (msgpackr reserves 3 bytes and patches the count);
//! - arrays, strings, binaries: the smallest header for their length;
//! - numbers: integers in `[-2^31, 2^32)` in the smallest int format, every
//!   other number (fractions, larger integers) as float64, as msgpackr does
//!   for a JS number (integers no JS number holds exactly stay exact, as
//!   int64/uint64).

use serde_json::{Map, Number, Value};
use std::fmt;

/// Deepest container nesting the reader accepts; bounds recursion on
/// untrusted (decrypted, but possibly foreign) payloads.
pub const MAX_DEPTH: usize = 128;

pub use evsync_core::codec::writer::{
    array_header as write_array_header, bin as write_bin, i64 as write_int, map16 as write_map16,
    str as write_str,
};

/// Writes a number as msgpackr writes the equal JS number.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && (-2_147_483_648.0..4_294_967_296.0).contains(&v) {
        // Also maps -0.0 to 0, as JS `-0 >> 0 === 0` does in msgpackr.
        write_int(out, v as i64);
    } else {
        out.push(0xcb);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Encodes a JSON value as msgpackr encodes the equal JS value, so a
/// payload written from JSON decodes in an Effect replica as if an Effect
/// replica had written it (`Schema.Struct` payloads are JS objects).
/// Object keys go in `serde_json::Map` order (sorted unless serde_json's
/// `preserve_order` is on); see [`encode_json_text`] to keep input order.
pub fn encode_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            write_array_header(out, items.len());
            for item in items {
                write_json(out, item);
            }
        }
        Value::Object(map) => {
            write_map_header(out, map.len());
            for (k, v) in map {
                write_str(out, k);
                write_json(out, v);
            }
        }
    }
}

/// Encodes JSON text as msgpackr encodes the equal JS value, keeping the
/// object keys in the order they appear in the text (as `JSON.parse` and
/// then msgpackr do). Prefer this over [`encode_json`] for user input:
/// `serde_json::Value` sorts object keys, which decodes the same but is not
/// byte-identical to what an Effect replica writes for its `Schema.Struct`.
pub fn encode_json_text(text: &str) -> Result<Vec<u8>, serde_json::Error> {
    let value: Ordered = serde_json::from_str(text)?;
    let mut out = Vec::new();
    value.write(&mut out);
    Ok(out)
}

/// A JSON value whose objects keep their key order.
enum Ordered {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Ordered::Null => out.push(0xc0),
            Ordered::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            Ordered::Number(n) => write_number(out, n),
            Ordered::String(s) => write_str(out, s),
            Ordered::Array(items) => {
                write_array_header(out, items.len());
                for item in items {
                    item.write(out);
                }
            }
            Ordered::Object(fields) => {
                write_map_header(out, fields.len());
                for (k, v) in fields {
                    write_str(out, k);
                    v.write(out);
                }
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(b))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Ordered, E> {
                Number::from_f64(v)
                    .map(Ordered::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered::String(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields: Vec<(String, Ordered)> = Vec::new();
                while let Some((k, v)) = a.next_entry::<String, Ordered>()? {
                    // A repeated key keeps its first position and last
                    // value, as JSON.parse does.
                    match fields.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Ordered::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}

/// msgpackr's object header: map16, or map32 past 65,535 keys.
fn write_map_header(out: &mut Vec<u8>, len: usize) {
    if len < 0x1_0000 {
        write_map16(out, len as u16);
    } else {
        out.push(0xdf);
        out.extend_from_slice(&len_u32(len).to_be_bytes());
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.as_i64() {
        write_int(out, i);
    } else if let Some(u) = n.as_u64() {
        evsync_core::codec::writer::u64(out, u);
    } else {
        write_f64(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("MessagePack cannot express lengths over u32::MAX")
}

/// Why bytes could not be read as MessagePack (or not as the expected shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgPackError {
    /// Byte offset where the problem was found.
    pub offset: usize,
    pub detail: String,
}

impl fmt::Display for MsgPackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.detail)
    }
}

impl std::error::Error for MsgPackError {}

/// A cursor over MessagePack bytes with typed reads.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn err<T>(&self, detail: impl Into<String>) -> Result<T, MsgPackError> {
        Err(MsgPackError {
            offset: self.pos,
            detail: detail.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgPackError> {
        if self.remaining() < n {
            return self.err(format!(
                "truncated: need {n} bytes, have {}",
                self.remaining()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, MsgPackError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, MsgPackError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    fn peek(&self) -> Result<u8, MsgPackError> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err("truncated: expected a value"),
        }
    }

    /// Reads a map header (any width).
    pub fn map_len(&mut self) -> Result<usize, MsgPackError> {
        match self.peek()? {
            b @ 0x80..=0x8f => {
                self.pos += 1;
                Ok((b & 0x0f) as usize)
            }
            0xde => {
                self.pos += 1;
                Ok(self.be(2)? as usize)
            }
            0xdf => {
                self.pos += 1;
                Ok(self.be(4)? as usize)
            }
            b => self.err(format!("expected a map, found {}", type_name(b))),
        }
    }

    /// Reads a string (any width), checking UTF-8.
    pub fn str(&mut self) -> Result<&'a str, MsgPackError> {
        let len = match self.peek()? {
            b @ 0xa0..=0xbf => {
                self.pos += 1;
                (b & 0x1f) as usize
            }
            0xd9 => {
                self.pos += 1;
                self.be(1)? as usize
            }
            0xda => {
                self.pos += 1;
                self.be(2)? as usize
            }
            0xdb => {
                self.pos += 1;
                self.be(4)? as usize
            }
            b => return self.err(format!("expected a string, found {}", type_name(b))),
        };
        let start = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| MsgPackError {
            offset: start,
            detail: "string is not valid UTF-8".into(),
        })
    }

    /// Reads a binary (any width).
    pub fn bin(&mut self) -> Result<&'a [u8], MsgPackError> {
        let len = match self.peek()? {
            0xc4 => 1,
            0xc5 => 2,
            0xc6 => 4,
            b => return self.err(format!("expected a binary, found {}", type_name(b))),
        };
        self.pos += 1;
        let n = self.be(len)? as usize;
        self.take(n)
    }

    /// Skips one value of any type.
    pub fn skip(&mut self) -> Result<(), MsgPackError> {
        self.value(0).map(|_| ())
    }

    /// Reads one value of any type as JSON: binaries become
    /// `{"$bin": "<hex>"}`, msgpackr dates (timestamp extension -1)
    /// `{"$date": <ms since epoch>}`, other extensions
    /// `{"$ext": type, "data": "<hex>"}`, non-string map keys their JSON
    /// text, and NaN/infinite floats `null` (JSON has no such numbers).
    pub fn value(&mut self, depth: usize) -> Result<Value, MsgPackError> {
        if depth > MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let b = self.byte()?;
        let v = match b {
            0x00..=0x7f => Value::from(b),
            0xe0..=0xff => Value::from(b as i8),
            0x80..=0x8f => self.map_body((b & 0x0f) as usize, depth)?,
            0x90..=0x9f => self.array_body((b & 0x0f) as usize, depth)?,
            0xa0..=0xbf => {
                self.pos -= 1;
                Value::from(self.str()?)
            }
            0xc0 => Value::Null,
            0xc1 => {
                self.pos -= 1;
                return self.err("reserved byte 0xc1");
            }
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                self.pos -= 1;
                bin_json(self.bin()?)
            }
            0xc7 => {
                let n = self.be(1)? as usize;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.be(2)? as usize;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.be(4)? as usize;
                self.ext(n)?
            }
            0xca => float_json(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => float_json(f64::from_bits(self.be(8)?)),
            0xcc => Value::from(self.be(1)?),
            0xcd => Value::from(self.be(2)?),
            0xce => Value::from(self.be(4)?),
            0xcf => Value::from(self.be(8)?),
            0xd0 => Value::from(self.be(1)? as u8 as i8),
            0xd1 => Value::from(self.be(2)? as u16 as i16),
            0xd2 => Value::from(self.be(4)? as u32 as i32),
            0xd3 => Value::from(self.be(8)? as i64),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9..=0xdb => {
                self.pos -= 1;
                Value::from(self.str()?)
            }
            0xdc => {
                let n = self.be(2)? as usize;
                self.array_body(n, depth)?
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array_body(n, depth)?
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map_body(n, depth)?
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map_body(n, depth)?
            }
        };
        Ok(v)
    }

    fn array_body(&mut self, len: usize, depth: usize) -> Result<Value, MsgPackError> {
        // Each element takes at least one byte: a forged length cannot
        // reserve more than the input could fill.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map_body(&mut self, len: usize, depth: usize) -> Result<Value, MsgPackError> {
        let mut map = Map::new();
        for _ in 0..len {
            let key = match self.value(depth + 1)? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }

    fn ext(&mut self, len: usize) -> Result<Value, MsgPackError> {
        let ty = self.byte()? as i8;
        let data = self.take(len)?;
        if let Some(ms) = timestamp_millis(data).filter(|_| ty == -1) {
            let mut m = Map::new();
            m.insert("$date".into(), Value::from(ms));
            return Ok(Value::Object(m));
        }
        let mut m = Map::new();
        m.insert("$ext".into(), Value::from(ty));
        m.insert("data".into(), Value::from(hex(data)));
        Ok(Value::Object(m))
    }
}

/// Decodes bytes holding exactly one MessagePack value as JSON (see
/// [`Reader::value`] for how non-JSON types are shown).
pub fn decode_to_json(bytes: &[u8]) -> Result<Value, MsgPackError> {
    let mut r = Reader::new(bytes);
    let v = r.value(0)?;
    if r.remaining() != 0 {
        return r.err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(v)
}

/// Milliseconds of a MessagePack timestamp extension (32, 64 or 96 bit).
fn timestamp_millis(data: &[u8]) -> Option<i64> {
    match data.len() {
        4 => Some(u32::from_be_bytes(data.try_into().ok()?) as i64 * 1000),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            let nanos = (v >> 34) as i64;
            let secs = (v & 0x3_ffff_ffff) as i64;
            Some(secs * 1000 + nanos / 1_000_000)
        }
        12 => {
            let nanos = u32::from_be_bytes(data[..4].try_into().ok()?) as i64;
            let secs = i64::from_be_bytes(data[4..].try_into().ok()?);
            secs.checked_mul(1000)?.checked_add(nanos / 1_000_000)
        }
        _ => None,
    }
}

fn float_json(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn bin_json(b: &[u8]) -> Value {
    let mut m = Map::new();
    m.insert("$bin".into(), Value::from(hex(b)));
    Value::Object(m)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn type_name(b: u8) -> &'static str {
    match b {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc1 => "the reserved byte 0xc1",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "a binary",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an extension",
        0xca | 0xcb => "a float",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hexed(v: &Value) -> String {
        hex(&encode_json(v))
    }

    #[test]
    fn json_encoding_matches_msgpackr() {
        // Expected bytes printed by msgpackr's `pack` (node).
        assert_eq!(hexed(&json!(1.0)), "01");
        assert_eq!(hexed(&json!(-1)), "ff");
        assert_eq!(hexed(&json!(4294967296u64)), "cb41f0000000000000");
        assert_eq!(hexed(&json!(1.5)), "cb3ff8000000000000");
        assert_eq!(hexed(&json!(null)), "c0");
        assert_eq!(hexed(&json!(true)), "c3");
        assert_eq!(hexed(&json!([1, 2])), "920102");
        assert_eq!(hexed(&json!({"a": 1})), "de0001a16101");
        assert_eq!(hexed(&json!(2147483648u64)), "ce80000000");
        assert_eq!(hexed(&json!(-2147483648i64)), "d280000000");
        assert_eq!(hexed(&json!(-2147483649i64)), "cbc1e0000000200000");
        // serde_json::Value sorts keys: same map, other order.
        assert_eq!(
            hexed(&json!({"id": "a", "text": "b", "n": 1.5})),
            "de0003a26964a161a16ecb3ff8000000000000a474657874a162"
        );
        let s = "é".repeat(16);
        assert!(hexed(&json!(s)).starts_with("d920"));
        let s = "é".repeat(200);
        assert!(hexed(&json!(s)).starts_with("da0190"));
    }

    #[test]
    fn json_text_keeps_key_order() {
        let bytes = encode_json_text(r#"{"id":"a","text":"b","n":1.5}"#).unwrap();
        assert_eq!(
            hex(&bytes),
            "de0003a26964a161a474657874a162a16ecb3ff8000000000000"
        );
        assert!(encode_json_text("{").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let v =
            json!({"id": "x", "n": -7, "f": 0.25, "list": [null, true, "s"], "nested": {"k": 300}});
        assert_eq!(decode_to_json(&encode_json(&v)).unwrap(), v);
    }

    #[test]
    fn shows_binaries_dates_and_extensions() {
        assert_eq!(
            decode_to_json(&[0xc4, 2, 0xab, 0xcd]).unwrap(),
            json!({"$bin": "abcd"})
        );
        // msgpackr's encoding of new Date(1700000000000).
        assert_eq!(
            decode_to_json(&[0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00]).unwrap(),
            json!({"$date": 1700000000000i64})
        );
        assert_eq!(
            decode_to_json(&[0xd4, 0x05, 0x01]).unwrap(),
            json!({"$ext": 5, "data": "01"})
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decode_to_json(&[]).is_err());
        assert!(decode_to_json(&[0xc1]).is_err());
        assert!(decode_to_json(&[0x01, 0x02]).is_err(), "trailing bytes");
        assert!(decode_to_json(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_to_json(&[0xa2, 0xff, 0xfe]).is_err(), "bad utf-8");
        let deep = vec![0x91u8; MAX_DEPTH + 2];
        assert!(decode_to_json(&deep).is_err());
    }
}
