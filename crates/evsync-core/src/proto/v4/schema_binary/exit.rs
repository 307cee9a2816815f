//! `Schema.Exit` and its cause: how every RPC result travels.
//!
//! An exit is `00` + the success value, or `01` + a cause. A cause is
//! `uv(count)` + count × (`uv(len)` + reason); a reason is `00` + error
//! (Fail), `01` + defect (Die, JSON text), `02` (Interrupt) or `03` + f64 LE
//! fiber id (Interrupt). Each value runs to the end of its region.

use core::convert::Infallible;

use super::reader::{MAX_SAFE_INTEGER, Reader};
use super::writer::Writer;
use super::{Value, frame::PREALLOCATE};
use crate::proto::v4::error::{Result, err};

/// The result of an RPC.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit<T, E> {
    /// It succeeded with a value.
    Success(T),
    /// It failed; the cause lists why (usually one reason).
    Failure(Vec<Reason<E>>),
}

/// One reason in a failure's cause.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason<E> {
    /// A typed, expected error.
    Fail(E),
    /// A defect: an unexpected error, as JSON (`Schema.Defect()`).
    Die(Defect),
    /// Interruption, with the interrupting fiber's id when known.
    Interrupt(Option<u64>),
}

/// A defect's JSON text (`Schema.Defect()` encodes to JSON; Effect writes
/// an `Error` as `{"name":…,"message":…}` and a string as a JSON string).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defect(String);

impl Defect {
    /// A defect from JSON text; `None` unless it is valid JSON.
    pub fn from_json_text(text: impl Into<String>) -> Option<Defect> {
        let text = text.into();
        serde_json::from_str::<serde_json::Value>(&text).ok()?;
        Some(Defect(text))
    }

    /// A defect holding a JSON value.
    pub fn from_json(value: &serde_json::Value) -> Defect {
        Defect(value.to_string())
    }

    /// A defect that is a plain message (a JSON string), as Effect's server
    /// sends for `Die("Unknown request tag: …")`.
    pub fn message(text: &str) -> Defect {
        Defect(serde_json::Value::String(text.to_owned()).to_string())
    }

    /// The JSON text.
    pub fn as_json_text(&self) -> &str {
        &self.0
    }
}

impl Value for Defect {
    const NAME: &'static str = "Defect";
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let text = r.rest_string()?;
        Defect::from_json_text(text).ok_or_else(|| err!(InvalidText, "a defect that is not JSON"))
    }
    fn encode(&self, w: &mut Writer) {
        w.bytes(self.0.as_bytes());
    }
}

/// `Schema.Void`: no bytes.
impl Value for () {
    const NAME: &'static str = "Void";
    fn decode(_: &mut Reader<'_>) -> Result<Self> {
        Ok(())
    }
    fn encode(&self, _: &mut Writer) {}
}

/// The error type of an RPC that declares none (`EventLog.Hello`): a
/// `Fail` reason cannot be decoded.
impl Value for Infallible {
    const NAME: &'static str = "Never";
    fn decode(_: &mut Reader<'_>) -> Result<Self> {
        Err(err!(
            UnknownVariant,
            "a Fail reason for an RPC without errors"
        ))
    }
    fn encode(&self, _: &mut Writer) {
        match *self {}
    }
}

impl<T: Value, E: Value> Value for Exit<T, E> {
    const NAME: &'static str = "Exit";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.byte()? {
            0 => T::decode(r)
                .map(Exit::Success)
                .map_err(|e| e.in_field("value")),
            1 => decode_cause(r).map(Exit::Failure),
            b => Err(err!(UnknownVariant, "an exit tag of {b}")),
        }
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            Exit::Success(value) => {
                w.byte(0);
                value.encode(w);
            }
            Exit::Failure(reasons) => {
                w.byte(1);
                w.uv(reasons.len() as u64);
                for reason in reasons {
                    w.sized(|w| encode_reason(reason, w));
                }
            }
        }
    }
}

fn decode_cause<E: Value>(r: &mut Reader<'_>) -> Result<Vec<Reason<E>>> {
    let count = r.count().map_err(|e| e.in_field("cause"))?;
    let mut reasons = Vec::with_capacity(count.min(PREALLOCATE));
    for i in 0..count {
        let reason = r
            .sized()
            .and_then(|mut region| {
                let reason = decode_reason(&mut region)?;
                region.finish()?;
                Ok(reason)
            })
            .map_err(|e| e.in_index(i).in_field("cause"))?;
        reasons.push(reason);
    }
    r.finish().map_err(|e| e.in_field("cause"))?;
    Ok(reasons)
}

fn decode_reason<E: Value>(r: &mut Reader<'_>) -> Result<Reason<E>> {
    match r.byte()? {
        0 => E::decode(r)
            .map(Reason::Fail)
            .map_err(|e| e.in_field("error")),
        1 => Defect::decode(r)
            .map(Reason::Die)
            .map_err(|e| e.in_field("defect")),
        2 => Ok(Reason::Interrupt(None)),
        3 => {
            if r.remaining() != 8 {
                return Err(err!(
                    InvalidValue,
                    "an interrupt's fiber id of {} bytes (an f64 has 8)",
                    r.remaining()
                ));
            }
            let id = r.f64le()?;
            // Fiber ids are counters; anything else is not from Effect.
            if !(id >= 0.0 && id <= MAX_SAFE_INTEGER as f64 && id.fract() == 0.0) {
                return Err(err!(InvalidValue, "a fiber id of {id}").in_field("fiberId"));
            }
            Ok(Reason::Interrupt(Some(id as u64)))
        }
        // Effect's reader skips reason tags it does not know; no 4.1.0
        // writer makes one, so a strict reader loses nothing.
        b => Err(err!(UnknownVariant, "a cause reason tag of {b}")),
    }
}

fn encode_reason<E: Value>(reason: &Reason<E>, w: &mut Writer) {
    match reason {
        Reason::Fail(error) => {
            w.byte(0);
            error.encode(w);
        }
        Reason::Die(defect) => {
            w.byte(1);
            defect.encode(w);
        }
        Reason::Interrupt(None) => w.byte(2),
        Reason::Interrupt(Some(id)) => {
            w.byte(3);
            w.f64le(*id as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::error::DecodeErrorKind;
    use crate::proto::v4::schema_binary::frame::{Mode, decode_frame, encode_frame};
    use bytes::Bytes;

    type VoidExit = Exit<(), Infallible>;

    fn decode(hex: &[u8]) -> Result<VoidExit> {
        decode_frame::<VoidExit>(&Bytes::copy_from_slice(hex), Mode::Default)
    }

    #[test]
    fn captured_exits() {
        // The Authenticate success hole: frame len 2, 0x20, success, void.
        assert_eq!(decode(&[0x02, 0x20, 0x00]).unwrap(), Exit::Success(()));
        // The Interrupt answer to a stream's Interrupt: fiber id 15.0.
        let hole = [
            0x0d, 0x20, 0x01, 0x01, 0x09, 0x03, 0, 0, 0, 0, 0, 0, 0x2e, 0x40,
        ];
        assert_eq!(
            decode(&hole).unwrap(),
            Exit::Failure(vec![Reason::Interrupt(Some(15))])
        );
        // Interrupt without a fiber id.
        assert_eq!(
            decode(&[0x05, 0x20, 0x01, 0x01, 0x01, 0x02]).unwrap(),
            Exit::Failure(vec![Reason::Interrupt(None)])
        );
        // Die("x").
        let exit = decode(&[0x08, 0x20, 0x01, 0x01, 0x04, 0x01, b'"', b'x', b'"']).unwrap();
        assert_eq!(exit, Exit::Failure(vec![Reason::Die(Defect::message("x"))]));
    }

    #[test]
    fn exits_round_trip() {
        for exit in [
            Exit::Success(()),
            Exit::Failure(vec![]),
            Exit::Failure(vec![
                Reason::Die(Defect::from_json(
                    &serde_json::json!({"name": "Error", "message": "boom"}),
                )),
                Reason::Interrupt(None),
                Reason::Interrupt(Some(1 << 40)),
            ]),
        ] {
            let frame = Bytes::from(encode_frame(&exit, Mode::Default));
            assert_eq!(
                decode_frame::<VoidExit>(&frame, Mode::Default).unwrap(),
                exit
            );
        }
    }

    #[test]
    fn bad_exits_are_errors() {
        let kind = |b: &[u8]| decode(b).unwrap_err().kind();
        assert_eq!(kind(&[0x02, 0x20, 0x02]), DecodeErrorKind::UnknownVariant);
        assert_eq!(
            kind(&[0x03, 0x20, 0x00, 0x00]),
            DecodeErrorKind::TrailingBytes
        );
        // A Fail reason where no error is declared.
        assert_eq!(
            kind(&[0x05, 0x20, 0x01, 0x01, 0x01, 0x00]),
            DecodeErrorKind::UnknownVariant
        );
        // A defect that is not JSON.
        assert_eq!(
            kind(&[0x06, 0x20, 0x01, 0x01, 0x02, 0x01, b'{']),
            DecodeErrorKind::InvalidText
        );
        // A fiber id that is not an integer, or has the wrong width.
        let mut frac = vec![0x0d, 0x20, 0x01, 0x01, 0x09, 0x03];
        frac.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(kind(&frac), DecodeErrorKind::InvalidValue);
        assert_eq!(
            kind(&[0x06, 0x20, 0x01, 0x01, 0x02, 0x03, 0x00]),
            DecodeErrorKind::InvalidValue
        );
        // An interrupt with bytes after it; a reason tag Effect 4.1.0 lacks.
        assert_eq!(
            kind(&[0x06, 0x20, 0x01, 0x01, 0x02, 0x02, 0x00]),
            DecodeErrorKind::TrailingBytes
        );
        assert_eq!(
            kind(&[0x05, 0x20, 0x01, 0x01, 0x01, 0x04]),
            DecodeErrorKind::UnknownVariant
        );
        // A cause count beyond the bytes.
        assert_eq!(
            kind(&[0x03, 0x20, 0x01, 0x05]),
            DecodeErrorKind::CountTooLarge
        );
    }
}
