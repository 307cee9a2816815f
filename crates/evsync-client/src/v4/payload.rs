//! Event payloads for the command line: v4 entries carry their payload as
//! a SchemaBinary frame of the event's payload schema, which a generic tool
//! does not know. These helpers cover the common case (a `Schema.Struct`
//! of strings, numbers, booleans, nulls and nested structs) without it:
//!
//! - [`encode_json`] writes JSON the way Effect's SchemaBinary writes the
//!   matching schema (`Schema.String`, `Schema.Number`, `Schema.Boolean`,
//!   `Schema.Null`, `Schema.Struct`): fields in ascending FNV-1a id order,
//!   integers up to 2^48 − 1 as varints, short decimals as mantissa +
//!   scale, other numbers as f64. Arrays are refused (their layout depends
//!   on the element schema): give such payloads as bytes.
//! - [`decode_json`] reads a struct frame back, naming fields by the
//!   candidate `names` whose FNV id matches (field names are not on the
//!   wire) and `#<id>` otherwise. A sized field becomes a string when it is
//!   UTF-8, else `{"hex": …}`; nested structs are not recognised.

use bytes::Bytes;
use evsync_core::proto::v4::schema_binary::Writer;
use evsync_core::proto::v4::schema_binary::fnv::field_id;
use evsync_core::proto::v4::schema_binary::frame::{Mode, open_frame, write_frame};
use evsync_core::proto::v4::schema_binary::reader::Wire;
use evsync_core::proto::v4::schema_binary::varint::nv_value;
use serde_json::{Map, Number, Value};

/// Integers up to this magnitude are varints (Effect's
/// `NUMBER_VARINT_MAX_MAGNITUDE`).
const VARINT_MAX: f64 = 281_474_976_710_655.0;
/// The largest short-decimal mantissa (`DECIMAL_MANTISSA_MAX`, 2^41 − 1).
const DECIMAL_MANTISSA_MAX: f64 = 2_199_023_255_551.0;
const POW10: [f64; 9] = [1.0, 10.0, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8];

/// A payload frame for `json` (see the module docs), or why not.
pub fn encode_json(json: &Value) -> Result<Vec<u8>, String> {
    check(json, "payload")?;
    Ok(write_frame(Mode::Default, |w| encode_value(json, w)))
}

/// [`encode_json`] of JSON text.
pub fn encode_json_text(text: &str) -> Result<Vec<u8>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    encode_json(&json)
}

fn check(json: &Value, path: &str) -> Result<(), String> {
    match json {
        Value::Array(_) => Err(format!(
            "{path} is an array; arrays depend on the schema: give the payload as bytes"
        )),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check(v, &format!("{path}.{k}"))),
        Value::Number(n) if n.as_f64().is_none() => Err(format!("{path} is not an f64")),
        _ => Ok(()),
    }
}

/// A value filling its region (a frame's body or a sized field).
fn encode_value(json: &Value, w: &mut Writer) {
    match json {
        Value::Null | Value::Array(_) => {}
        Value::Bool(b) => w.byte(u8::from(*b)),
        Value::String(s) => w.bytes(s.as_bytes()),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            match number_wire(x) {
                NumberWire::Varint(v) => w.nv(v),
                NumberWire::Decimal(m, scale) => {
                    w.nv(m);
                    w.byte(scale);
                }
                NumberWire::F64 => w.f64le(x),
            }
        }
        Value::Object(map) => {
            let mut fields: Vec<(u32, &Value)> =
                map.iter().map(|(k, v)| (field_id(k), v)).collect();
            fields.sort_by_key(|(id, _)| *id);
            for (id, value) in fields {
                encode_field(id, value, w);
            }
        }
    }
}

fn encode_field(id: u32, json: &Value, w: &mut Writer) {
    match json {
        Value::Bool(b) => w.tag(id, if *b { Wire::True } else { Wire::False }),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            match number_wire(x) {
                NumberWire::Varint(v) => {
                    w.tag(id, Wire::Varint);
                    w.nv(v);
                }
                NumberWire::Decimal(m, scale) => {
                    w.tag(id, Wire::Decimal);
                    w.nv(m);
                    w.uv(u64::from(scale));
                }
                NumberWire::F64 => {
                    w.tag(id, Wire::Fixed64);
                    w.f64le(x);
                }
            }
        }
        other => w.field(id, |w| encode_value(other, w)),
    }
}

enum NumberWire {
    Varint(i64),
    Decimal(i64, u8),
    F64,
}

/// How Effect writes a `Schema.Number`.
fn number_wire(x: f64) -> NumberWire {
    if x.fract() == 0.0 && x.abs() <= VARINT_MAX {
        return NumberWire::Varint(x as i64);
    }
    for (scale, pow) in POW10.iter().enumerate().skip(1) {
        let mantissa = js_round(x * pow);
        // Also refuses NaN and the infinities.
        if mantissa.is_nan() || mantissa.abs() > DECIMAL_MANTISSA_MAX {
            return NumberWire::F64;
        }
        if mantissa / pow == x {
            return NumberWire::Decimal(mantissa as i64, scale as u8);
        }
    }
    NumberWire::F64
}

/// JavaScript's `Math.round`: the nearest integer, halves toward +∞.
fn js_round(x: f64) -> f64 {
    let floor = x.floor();
    if x - floor >= 0.5 { floor + 1.0 } else { floor }
}

/// The payload frame as JSON (see the module docs); `None` unless it is a
/// well-formed default-mode struct frame.
pub fn decode_json(frame: &[u8], names: &[&str]) -> Option<Value> {
    let frame = Bytes::copy_from_slice(frame);
    let mut body = open_frame(&frame, Mode::Default).ok()?;
    let mut map = Map::new();
    while !body.is_empty() {
        let tag = body.uv().ok()?;
        let id = u32::try_from(tag >> 3).ok()?;
        let value = match tag & 7 {
            0 => {
                let mut r = body.sized().ok()?;
                let bytes = r.rest_bytes();
                match std::str::from_utf8(&bytes) {
                    Ok(s) => Value::from(s),
                    Err(_) => serde_json::json!({ "hex": crate::v4::keys::hex(&bytes) }),
                }
            }
            1 => Value::from(nv_value(body.nv_code().ok()?)),
            2 => number(body.f64le().ok()?),
            3 => Value::Bool(false),
            4 => Value::Bool(true),
            5 => {
                let mantissa = nv_value(body.nv_code().ok()?);
                let scale = body.uv().ok()?;
                number(mantissa as f64 / *POW10.get(scale as usize)?)
            }
            _ => return None,
        };
        let name = names
            .iter()
            .find(|n| field_id(n) == id)
            .map_or_else(|| format!("#{id}"), |n| (*n).to_owned());
        if map.insert(name, value).is_some() {
            return None;
        }
    }
    Some(Value::Object(map))
}

/// A JSON number as JavaScript prints it: integral values without `.0`.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        Value::from(x as i64)
    } else {
        Number::from_f64(x).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4::keys::hex;
    use crate::v4::test_vectors::{unhex, vectors};

    #[test]
    fn json_encodes_as_effects_schema_binary() {
        let v = vectors();
        for p in v["payloads"].as_array().unwrap() {
            let json = p["json"].as_str().unwrap();
            let frame = encode_json_text(json).unwrap();
            assert_eq!(hex(&frame), p["frameHex"].as_str().unwrap(), "{json}");
            let back = decode_json(
                &unhex(p["frameHex"].as_str().unwrap()),
                &["id", "text", "n"],
            );
            let want: Value = serde_json::from_str(json).unwrap();
            assert_eq!(back.as_ref(), Some(&want), "{json}");
        }
    }

    #[test]
    fn unknown_names_arrays_and_junk() {
        let frame = encode_json_text(r#"{"a":true,"b":null,"c":{"d":"x"}}"#).unwrap();
        let json = decode_json(&frame, &["a", "b"]).unwrap();
        assert_eq!(json["a"], Value::Bool(true));
        assert_eq!(json["b"], Value::from(""));
        assert!(json.get(format!("#{}", field_id("c"))).is_some());
        assert!(
            encode_json_text(r#"{"a":[1]}"#)
                .unwrap_err()
                .contains("array")
        );
        assert_eq!(decode_json(&[0x02, 0x20, 0x07], &[]), None);
        assert_eq!(decode_json(b"junk", &[]), None);
        assert_eq!(js_round(-2.5), -2.0);
        assert_eq!(js_round(2.5), 3.0);
    }
}
