//! Field readers shared by the eventlog structs: each takes a field's
//! payload as the struct loop read it and decodes the field's schema,
//! treating a wire kind the schema cannot have as an absent field (as
//! Effect does).

use bytes::Bytes;

use crate::proto::v4::error::{Result, err};
use crate::proto::v4::schema_binary::Writer;
use crate::proto::v4::schema_binary::reader::{
    FieldValue, KIND_BOOL, KIND_NUMBER, KIND_STRING, KIND_VARIANT, Reader, field, natural,
    optional_member, safe_int,
};

/// A `Uint8Array` field.
pub fn bytes(v: FieldValue<'_>) -> Option<Bytes> {
    v.sized().map(|mut r| r.rest_bytes())
}

/// A `String` field.
pub fn string(name: &str, v: FieldValue<'_>) -> Result<Option<String>> {
    v.sized()
        .map(|r| field(name, r, |r| r.rest_string()))
        .transpose()
}

/// An `Int` field (varint wire kind).
pub fn int(name: &str, v: FieldValue<'_>) -> Result<Option<i64>> {
    v.varint()
        .map(|code| safe_int(code).map_err(|e| e.in_field(name)))
        .transpose()
}

/// A `Natural` field (varint wire kind).
pub fn natural_field(name: &str, v: FieldValue<'_>) -> Result<Option<u64>> {
    v.varint()
        .map(|code| natural(code).map_err(|e| e.in_field(name)))
        .transpose()
}

/// A string field holding one literal (`"Ed25519"`, a `_tag`): `Some(())`
/// when present and right.
pub fn literal(name: &str, literal: &str, v: FieldValue<'_>) -> Result<Option<()>> {
    v.sized()
        .map(|r| field(name, r, |r| r.rest_literal(literal)))
        .transpose()
}

/// `optional(String)`: `05` + the string.
pub fn optional_string(name: &str, v: FieldValue<'_>) -> Result<Option<String>> {
    let Some(r) = v.sized() else { return Ok(None) };
    field(name, r, |r| {
        optional_member(r, KIND_STRING)?
            .map(|mut s| s.rest_string())
            .transpose()
    })
}

/// `optional(Natural)`: `04` + `nv`.
pub fn optional_natural(name: &str, v: FieldValue<'_>) -> Result<Option<u64>> {
    let Some(r) = v.sized() else { return Ok(None) };
    field(name, r, |r| {
        optional_member(r, KIND_NUMBER)?
            .map(|mut n| {
                let value = n.natural()?;
                n.finish()?;
                Ok(value)
            })
            .transpose()
    })
}

/// `optional(Literal(true))`: `01 01`; `false` when absent.
pub fn optional_true(name: &str, v: FieldValue<'_>) -> Result<bool> {
    let Some(r) = v.sized() else { return Ok(false) };
    field(name, r, |r| match optional_member(r, KIND_BOOL)? {
        None => Ok(false),
        Some(mut b) => {
            if !b.bool()? {
                return Err(err!(InvalidValue, "false where only the literal true fits"));
            }
            b.finish()?;
            Ok(true)
        }
    })
}

/// Writes `optional(String)` when present.
pub fn write_optional_string(w: &mut Writer, id: u32, value: Option<&str>) {
    if let Some(s) = value {
        w.field(id, |w| {
            w.byte(KIND_STRING);
            w.bytes(s.as_bytes());
        });
    }
}

/// Reads a tagged-struct union member's header: `0a` + u32 LE tag.
pub fn variant_tag(r: &mut Reader<'_>) -> Result<u32> {
    let kind = r.byte()?;
    if kind != KIND_VARIANT {
        return Err(err!(
            UnknownVariant,
            "union kind {kind} where a tagged struct belongs"
        ));
    }
    r.u32le()
}

/// Writes a tagged-struct union member's header.
pub fn write_variant_tag(w: &mut Writer, tag: u32) {
    w.byte(KIND_VARIANT);
    w.u32le(tag);
}
