//! `EventLogProtocolError`: the one error type of the eventlog RPCs, and
//! the exits of each RPC.

use core::convert::Infallible;
use core::fmt;

use super::fields;
use super::hello::HelloResponse;
use super::write::{PUBLIC_KEY, STORE_ID, TAG, WriteAck};
use crate::proto::v4::error::{Result, err};
use crate::proto::v4::schema_binary::fnv::{field_id, variant_tag};
use crate::proto::v4::schema_binary::frame::{Mode, decode_frame, encode_frame};
use crate::proto::v4::schema_binary::reader::{StructReader, field, required};
use crate::proto::v4::schema_binary::{Exit, Reader, Value, Writer};

const MESSAGE: u32 = field_id("message");
const REQUEST_TAG: u32 = field_id("requestTag");
const CODE: u32 = field_id("code");

/// `EventLogProtocolError`'s variant tag (`0x46bb7369`).
pub const PROTOCOL_ERROR_TAG: u32 = variant_tag("EventLogProtocolError");

/// What kind of protocol error (`code`). The client acts on `Forbidden`
/// (re-authenticates) and on compaction `NotFound`; the rest fail the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `Unauthorized`.
    Unauthorized,
    /// `Forbidden`: not authenticated for this identity.
    Forbidden,
    /// `NotFound`.
    NotFound,
    /// `InvalidRequest`.
    InvalidRequest,
    /// `InternalServerError`.
    InternalServerError,
}

impl ErrorCode {
    /// The literal on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "Unauthorized",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::InternalServerError => "InternalServerError",
        }
    }

    /// The code of a wire literal.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        Some(match s {
            "Unauthorized" => ErrorCode::Unauthorized,
            "Forbidden" => ErrorCode::Forbidden,
            "NotFound" => ErrorCode::NotFound,
            "InvalidRequest" => ErrorCode::InvalidRequest,
            "InternalServerError" => ErrorCode::InternalServerError,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every eventlog RPC (`_tag: "EventLogProtocolError"`).
///
/// As an RPC's error (in an [`Exit`]) it is a union member, `0a` + its
/// variant tag + its fields; [`Value`] is that form. Standing alone (its
/// own frame) the `_tag` is an ordinary field:
/// [`decode_standalone`](Self::decode_standalone) /
/// [`encode_standalone`](Self::encode_standalone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLogProtocolError {
    /// Human-readable, e.g. `"Identity is not authenticated"`.
    pub message: String,
    /// The store concerned, if any.
    pub store_id: Option<String>,
    /// The RPC that failed, e.g. `"EventLog.Changes"` (Effect's handlers
    /// write it without the `EventLog.` prefix: `"Changes"`).
    pub request_tag: String,
    /// The identity concerned, if any.
    pub public_key: Option<String>,
    /// The kind of error.
    pub code: ErrorCode,
}

impl EventLogProtocolError {
    fn decode_fields(r: &mut Reader<'_>, with_tag: bool) -> Result<Self> {
        let (mut message, mut store_id, mut tag, mut request_tag, mut public_key, mut code) =
            (None, None, None, None, None, None);
        let mut s = StructReader::new(r, &[MESSAGE, STORE_ID, TAG, REQUEST_TAG, PUBLIC_KEY, CODE]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => message = fields::string("message", v)?,
                1 => store_id = fields::optional_string("storeId", v)?,
                2 if !with_tag => {}
                2 => tag = fields::literal("_tag", "EventLogProtocolError", v)?,
                3 => request_tag = fields::string("requestTag", v)?,
                4 => public_key = fields::optional_string("publicKey", v)?,
                _ => {
                    code = v
                        .sized()
                        .map(|r| {
                            field("code", r, |r| {
                                let s = r.rest_string()?;
                                ErrorCode::parse(&s)
                                    .ok_or_else(|| err!(InvalidValue, "an error code of {s:?}"))
                            })
                        })
                        .transpose()?
                }
            }
        }
        if with_tag {
            required(tag, "_tag")?;
        }
        Ok(EventLogProtocolError {
            message: required(message, "message")?,
            store_id,
            request_tag: required(request_tag, "requestTag")?,
            public_key,
            code: required(code, "code")?,
        })
    }

    fn encode_fields(&self, w: &mut Writer, with_tag: bool) {
        w.field_str(MESSAGE, &self.message);
        fields::write_optional_string(w, STORE_ID, self.store_id.as_deref());
        if with_tag {
            w.field_str(TAG, "EventLogProtocolError");
        }
        w.field_str(REQUEST_TAG, &self.request_tag);
        fields::write_optional_string(w, PUBLIC_KEY, self.public_key.as_deref());
        w.field_str(CODE, self.code.as_str());
    }

    /// Decodes a frame holding the error alone (`_tag` as a field).
    pub fn decode_standalone(frame: &bytes::Bytes) -> Result<Self> {
        decode_frame::<Standalone>(frame, Mode::Default).map(|s| s.0)
    }

    /// Encodes the error alone as a frame (`_tag` as a field).
    pub fn encode_standalone(&self) -> Vec<u8> {
        encode_frame(&Standalone(self.clone()), Mode::Default)
    }
}

/// The standalone form, for [`decode_frame`].
struct Standalone(EventLogProtocolError);

impl Value for Standalone {
    const NAME: &'static str = "EventLogProtocolError";
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        EventLogProtocolError::decode_fields(r, true).map(Standalone)
    }
    fn encode(&self, w: &mut Writer) {
        self.0.encode_fields(w, true);
    }
}

/// The union-member form: an RPC's error schema is
/// `Union(EventLogProtocolError)` (the RPC's and its middleware's error, the
/// same class).
impl Value for EventLogProtocolError {
    const NAME: &'static str = "EventLogProtocolError";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match fields::variant_tag(r)? {
            PROTOCOL_ERROR_TAG => EventLogProtocolError::decode_fields(r, false),
            tag => Err(err!(UnknownVariant, "error variant tag {tag:#010x}")),
        }
    }

    fn encode(&self, w: &mut Writer) {
        fields::write_variant_tag(w, PROTOCOL_ERROR_TAG);
        self.encode_fields(w, false);
    }
}

/// The exit of `EventLog.Hello` (no error declared).
pub type HelloExit = Exit<HelloResponse, Infallible>;
/// The exit of `EventLog.Authenticate`.
pub type AuthenticateExit = Exit<(), EventLogProtocolError>;
/// The exit of `EventLog.WriteSingle` and `EventLog.WriteChunked`.
pub type WriteExit = Exit<Vec<WriteAck>, EventLogProtocolError>;
/// The exit of the `EventLog.Changes` stream (success is `Void`: the stream
/// ended).
pub type ChangesExit = Exit<(), EventLogProtocolError>;
