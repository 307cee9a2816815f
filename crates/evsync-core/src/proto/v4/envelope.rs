//! The RPC envelope (`RpcMessage.EncodedSchema`), in fingerprint mode:
//! every WebSocket frame of the protocol is one of these.
//!
//! The envelope is one union of nine tagged structs. In fingerprint
//! (positional) mode a union member is selected by its position — tagged
//! variants sorted by variant tag — and a struct is a presence bitmap of its
//! optional fields followed by the present fields in field-id order, each
//! `uv(len)` + value. The positions, from the variant tags of the `_tag`s:
//!
//! | 0 Ack | 1 Exit | 2 Defect | 3 Ping | 4 Eof | 5 Chunk | 6 Pong | 7 Request | 8 Interrupt |
//!
//! Clients send Request/Ack/Interrupt/Ping/Eof ([`FromClient`]); servers send
//! Exit/Chunk/Pong/Defect ([`FromServer`]). Payloads, chunk values, exits
//! and defects are nested default-mode frames ("holes"), kept here as bytes:
//! their schema depends on the RPC (see [`super::messages`]).

use bytes::Bytes;

use super::error::{DecodeError, Result, err};
#[cfg(test)]
use super::schema_binary::fnv::{field_id, variant_tag};
use super::schema_binary::frame::{Mode, PREALLOCATE, decode_frame, encode_frame};
use super::schema_binary::reader::{MAX_SAFE_INTEGER, Reader};
use super::schema_binary::varint::nv_value;
use super::schema_binary::{Value, Writer};

/// A request id: `Union(String, Number)`. Effect's client numbers its
/// requests from a process-wide counter (so ids do not restart per
/// connection); an answer must carry the request's id back unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// A numeric id (position 0). Integral, |n| ≤ 2^53 − 1.
    Number(i64),
    /// A string id (position 1).
    String(String),
}

/// An RPC call (`_tag: "Request"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// Its id, echoed by every answer.
    pub id: RequestId,
    /// The RPC, e.g. `EventLog.Hello`.
    pub tag: String,
    /// A default-mode frame of the RPC's payload schema.
    pub payload: Bytes,
    /// Request headers (the eventlog client sends none).
    pub headers: Vec<(String, String)>,
    /// Tracing: absent from the eventlog client (`disableTracing`).
    pub trace_id: Option<String>,
    /// Tracing span id.
    pub span_id: Option<String>,
    /// Tracing sampled flag.
    pub sampled: Option<bool>,
    /// `isNotification: true`.
    pub is_notification: bool,
    /// `discard: true`: the caller wants no answer.
    pub discard: bool,
}

impl Request {
    /// A request with no headers and no tracing.
    pub fn new(id: RequestId, tag: impl Into<String>, payload: Bytes) -> Self {
        Request {
            id,
            tag: tag.into(),
            payload,
            headers: Vec::new(),
            trace_id: None,
            span_id: None,
            sampled: None,
            is_notification: false,
            discard: false,
        }
    }
}

/// A client → server envelope.
#[derive(Clone, Debug, PartialEq)]
pub enum FromClient {
    /// Call an RPC.
    Request(Request),
    /// Flow control: the client has taken a stream's latest Chunk.
    Ack {
        /// The stream's request id.
        request_id: RequestId,
    },
    /// Stop a request (how a client ends a Changes stream).
    Interrupt {
        /// The request to stop.
        request_id: RequestId,
    },
    /// Keep-alive; answer with [`FromServer::Pong`].
    Ping,
    /// No more requests (a socket client never sends it).
    Eof,
}

/// A server → client envelope.
#[derive(Clone, Debug, PartialEq)]
pub enum FromServer {
    /// A request's result.
    Exit {
        /// The request answered.
        request_id: RequestId,
        /// A default-mode frame of the RPC's exit schema.
        exit: Bytes,
    },
    /// Values of a streaming request.
    Chunk {
        /// The stream's request id.
        request_id: RequestId,
        /// A default-mode frame of `NonEmptyArray(success schema)`.
        values: Bytes,
    },
    /// The answer to a Ping.
    Pong,
    /// A connection-wide defect: the client fails every request in flight.
    Defect {
        /// A default-mode frame of `Schema.Defect()` (JSON).
        defect: Bytes,
    },
}

const POS_ACK: u64 = 0;
const POS_EXIT: u64 = 1;
const POS_DEFECT: u64 = 2;
const POS_PING: u64 = 3;
const POS_EOF: u64 = 4;
const POS_CHUNK: u64 = 5;
const POS_PONG: u64 = 6;
const POS_REQUEST: u64 = 7;
const POS_INTERRUPT: u64 = 8;

/// The variant tags in position order (checked by a test: positions are
/// the tags sorted ascending).
#[cfg(test)]
const TAGS_BY_POSITION: [&str; 9] = [
    "Ack",
    "Exit",
    "Defect",
    "Ping",
    "Eof",
    "Chunk",
    "Pong",
    "Request",
    "Interrupt",
];

/// The Request struct's fields in id order, with the index of each optional
/// one's presence bit (bit j = j-th optional field in id order).
const REQUEST_FIELDS: [(&str, Option<u8>); 9] = [
    ("spanId", Some(0)),
    ("payload", None),
    ("id", None),
    ("sampled", Some(1)),
    ("tag", None),
    ("traceId", Some(2)),
    ("headers", None),
    ("isNotification", Some(3)),
    ("discard", Some(4)),
];

/// A Ping frame: it has no fields, so it is one constant (the Durable
/// Object can match it without decoding).
pub const PING_FRAME: [u8; 11] = [
    0x0a, 0x21, 0xa7, 0x1f, 0xbf, 0x48, 0x86, 0x12, 0xff, 0x6b, 0x03,
];
/// A Pong frame, constant for the same reason.
pub const PONG_FRAME: [u8; 11] = [
    0x0a, 0x21, 0xa7, 0x1f, 0xbf, 0x48, 0x86, 0x12, 0xff, 0x6b, 0x06,
];

impl FromClient {
    /// Decodes one whole frame (length prefix included).
    pub fn decode(frame: &Bytes) -> Result<Self> {
        decode_frame(frame, Mode::Fingerprint)
    }

    /// Encodes as one whole frame.
    pub fn encode(&self) -> Vec<u8> {
        encode_frame(self, Mode::Fingerprint)
    }
}

impl FromServer {
    /// Decodes one whole frame (length prefix included).
    pub fn decode(frame: &Bytes) -> Result<Self> {
        decode_frame(frame, Mode::Fingerprint)
    }

    /// Encodes as one whole frame.
    pub fn encode(&self) -> Vec<u8> {
        encode_frame(self, Mode::Fingerprint)
    }
}

impl Value for FromClient {
    const NAME: &'static str = "RpcMessage";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let position = r.uv()?;
        let msg = match position {
            POS_REQUEST => {
                FromClient::Request(decode_request(r).map_err(|e| e.in_field("Request"))?)
            }
            POS_ACK => FromClient::Ack {
                request_id: sized_request_id(r, "requestId").map_err(|e| e.in_field("Ack"))?,
            },
            POS_INTERRUPT => FromClient::Interrupt {
                request_id: sized_request_id(r, "requestId")
                    .map_err(|e| e.in_field("Interrupt"))?,
            },
            POS_PING => FromClient::Ping,
            POS_EOF => FromClient::Eof,
            POS_EXIT | POS_DEFECT | POS_CHUNK | POS_PONG => {
                return Err(unexpected(position, "a client"));
            }
            _ => return Err(unknown_position(position)),
        };
        Ok(msg)
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            FromClient::Request(request) => {
                w.uv(POS_REQUEST);
                encode_request(request, w);
            }
            FromClient::Ack { request_id } => {
                w.uv(POS_ACK);
                w.sized(|w| encode_request_id(request_id, w));
            }
            FromClient::Interrupt { request_id } => {
                w.uv(POS_INTERRUPT);
                w.sized(|w| encode_request_id(request_id, w));
            }
            FromClient::Ping => w.uv(POS_PING),
            FromClient::Eof => w.uv(POS_EOF),
        }
    }
}

impl Value for FromServer {
    const NAME: &'static str = "RpcMessage";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let position = r.uv()?;
        let msg = match position {
            // Exit fields in id order: requestId (913698463), exit (3454868101).
            POS_EXIT => {
                let request_id =
                    sized_request_id(r, "requestId").map_err(|e| e.in_field("Exit"))?;
                let exit = sized_bytes(r, "exit").map_err(|e| e.in_field("Exit"))?;
                FromServer::Exit { request_id, exit }
            }
            // Chunk: values (877087803), requestId (913698463).
            POS_CHUNK => {
                let values = sized_bytes(r, "values").map_err(|e| e.in_field("Chunk"))?;
                let request_id =
                    sized_request_id(r, "requestId").map_err(|e| e.in_field("Chunk"))?;
                FromServer::Chunk { request_id, values }
            }
            POS_PONG => FromServer::Pong,
            POS_DEFECT => FromServer::Defect {
                defect: sized_bytes(r, "defect").map_err(|e| e.in_field("Defect"))?,
            },
            POS_REQUEST | POS_ACK | POS_INTERRUPT | POS_PING | POS_EOF => {
                return Err(unexpected(position, "a server"));
            }
            _ => return Err(unknown_position(position)),
        };
        Ok(msg)
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            FromServer::Exit { request_id, exit } => {
                w.uv(POS_EXIT);
                w.sized(|w| encode_request_id(request_id, w));
                w.sized_bytes(exit);
            }
            FromServer::Chunk { request_id, values } => {
                w.uv(POS_CHUNK);
                w.sized_bytes(values);
                w.sized(|w| encode_request_id(request_id, w));
            }
            FromServer::Pong => w.uv(POS_PONG),
            FromServer::Defect { defect } => {
                w.uv(POS_DEFECT);
                w.sized_bytes(defect);
            }
        }
    }
}

fn unexpected(position: u64, sender: &str) -> DecodeError {
    let tag = match position {
        POS_ACK => "Ack",
        POS_EXIT => "Exit",
        POS_DEFECT => "Defect",
        POS_PING => "Ping",
        POS_EOF => "Eof",
        POS_CHUNK => "Chunk",
        POS_PONG => "Pong",
        POS_REQUEST => "Request",
        _ => "Interrupt",
    };
    err!(
        UnexpectedMessage,
        "{sender} does not receive {tag} envelopes"
    )
}

fn unknown_position(position: u64) -> DecodeError {
    err!(
        UnknownVariant,
        "envelope union position {position} (0..=8 exist)"
    )
}

fn sized_bytes(r: &mut Reader<'_>, name: &str) -> Result<Bytes> {
    r.sized()
        .map(|mut f| f.rest_bytes())
        .map_err(|e| e.in_field(name))
}

fn sized_request_id(r: &mut Reader<'_>, name: &str) -> Result<RequestId> {
    r.sized()
        .and_then(|mut f| {
            let id = decode_request_id(&mut f)?;
            f.finish()?;
            Ok(id)
        })
        .map_err(|e| e.in_field(name))
}

/// `Union(String, Number)` in positional mode: 0 = number, 1 = string.
fn decode_request_id(r: &mut Reader<'_>) -> Result<RequestId> {
    match r.uv()? {
        0 => decode_number_id(r).map(RequestId::Number),
        1 => r.rest_string().map(RequestId::String),
        p => Err(err!(UnknownVariant, "request id union position {p}")),
    }
}

/// A `Schema.Number` leaf holding an integral id. Effect writes integers up
/// to 2^48 − 1 as `nv` (at most 7 bytes), others as an 8-byte f64, and
/// non-integers as `nv` + a decimal scale byte, which no id counter makes.
fn decode_number_id(r: &mut Reader<'_>) -> Result<i64> {
    match r.remaining() {
        8 => {
            let x = r.f64le()?;
            if x.fract() != 0.0 || x.abs() > MAX_SAFE_INTEGER as f64 || x.is_nan() {
                return Err(err!(InvalidValue, "a request id of {x}"));
            }
            Ok(x as i64)
        }
        1..=7 => {
            let code = r.uv()?;
            if !r.is_empty() {
                return Err(err!(InvalidValue, "a non-integral (decimal) request id"));
            }
            Ok(nv_value(code))
        }
        n => Err(err!(InvalidValue, "a number of {n} bytes")),
    }
}

fn encode_request_id(id: &RequestId, w: &mut Writer) {
    match id {
        RequestId::Number(n) => {
            w.uv(0);
            // Effect's writer: nv up to 2^48 − 1, else an f64.
            if n.unsigned_abs() < 1 << 48 {
                w.nv(*n);
            } else {
                w.f64le(*n as f64);
            }
        }
        RequestId::String(s) => {
            w.uv(1);
            w.bytes(s.as_bytes());
        }
    }
}

fn decode_request(r: &mut Reader<'_>) -> Result<Request> {
    // Five optional fields: one bitmap byte. Bits 5-7 mean nothing (Effect
    // ignores them too).
    let bitmap = r.byte().map_err(|e| e.in_field("bitmap"))?;
    let mut request = Request::new(RequestId::Number(0), String::new(), Bytes::new());
    for (name, bit) in REQUEST_FIELDS {
        if let Some(bit) = bit
            && bitmap & (1 << bit) == 0
        {
            continue;
        }
        let mut f = r.sized().map_err(|e| e.in_field(name))?;
        let result: Result<()> = (|| {
            match name {
                "spanId" => request.span_id = optional_string(&mut f)?,
                "payload" => request.payload = f.rest_bytes(),
                "id" => request.id = decode_request_id(&mut f)?,
                "sampled" => {
                    // Union(Boolean, Undefined): 0 bool, 1 undefined.
                    request.sampled = match f.uv()? {
                        0 => Some(f.bool()?),
                        1 => None,
                        p => return Err(err!(UnknownVariant, "union position {p}")),
                    }
                }
                "tag" => request.tag = f.rest_string()?,
                "traceId" => request.trace_id = optional_string(&mut f)?,
                "headers" => request.headers = decode_headers(&mut f)?,
                "isNotification" => request.is_notification = optional_true(&mut f)?,
                _ => request.discard = optional_true(&mut f)?,
            }
            f.finish()
        })();
        result.map_err(|e| e.in_field(name))?;
    }
    Ok(request)
}

/// `Union(String, Undefined)`: 0 undefined, 1 string.
fn optional_string(r: &mut Reader<'_>) -> Result<Option<String>> {
    match r.uv()? {
        0 => Ok(None),
        1 => r.rest_string().map(Some),
        p => Err(err!(UnknownVariant, "union position {p}")),
    }
}

/// `Union(Literal(true), Undefined)`: 0 the literal (a bool byte that must
/// be 1), 1 undefined.
fn optional_true(r: &mut Reader<'_>) -> Result<bool> {
    match r.uv()? {
        0 => {
            if !r.bool()? {
                return Err(err!(InvalidValue, "false where only the literal true fits"));
            }
            Ok(true)
        }
        1 => Ok(false),
        p => Err(err!(UnknownVariant, "union position {p}")),
    }
}

/// `Array(Tuple([String, String]))`: a count, then per header `uv(len)` +
/// two `uv(len)`-prefixed strings.
fn decode_headers(r: &mut Reader<'_>) -> Result<Vec<(String, String)>> {
    let count = r.count()?;
    let mut headers = Vec::with_capacity(count.min(PREALLOCATE));
    for i in 0..count {
        let header = r
            .sized()
            .and_then(|mut t| {
                let key = t.sized()?.rest_string()?;
                let value = t.sized()?.rest_string()?;
                t.finish()?;
                Ok((key, value))
            })
            .map_err(|e| e.in_index(i))?;
        headers.push(header);
    }
    Ok(headers)
}

fn encode_request(request: &Request, w: &mut Writer) {
    let present = [
        request.span_id.is_some(),
        request.sampled.is_some(),
        request.trace_id.is_some(),
        request.is_notification,
        request.discard,
    ];
    let bitmap = present
        .iter()
        .enumerate()
        .fold(0u8, |b, (i, &p)| b | (u8::from(p) << i));
    w.byte(bitmap);
    if let Some(span_id) = &request.span_id {
        w.sized(|w| {
            w.uv(1);
            w.bytes(span_id.as_bytes());
        });
    }
    w.sized_bytes(&request.payload);
    w.sized(|w| encode_request_id(&request.id, w));
    if let Some(sampled) = request.sampled {
        w.sized(|w| {
            w.uv(0);
            w.byte(u8::from(sampled));
        });
    }
    w.sized_bytes(request.tag.as_bytes());
    if let Some(trace_id) = &request.trace_id {
        w.sized(|w| {
            w.uv(1);
            w.bytes(trace_id.as_bytes());
        });
    }
    w.sized(|w| {
        w.uv(request.headers.len() as u64);
        for (key, value) in &request.headers {
            w.sized(|w| {
                w.sized_bytes(key.as_bytes());
                w.sized_bytes(value.as_bytes());
            });
        }
    });
    for flag in [request.is_notification, request.discard] {
        if flag {
            w.sized(|w| {
                w.uv(0);
                w.byte(1);
            });
        }
    }
}

// The field ids behind the orders above, checked by the tests.
#[cfg(test)]
const FIELD_IDS: [(&str, u32); 4] = [
    ("requestId", field_id("requestId")),
    ("values", field_id("values")),
    ("exit", field_id("exit")),
    ("defect", field_id("defect")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::error::DecodeErrorKind;

    pub(crate) fn hex(s: &str) -> Bytes {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        Bytes::from(
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn positions_are_variant_tags_in_ascending_order() {
        let tags: Vec<u32> = TAGS_BY_POSITION.iter().map(|t| variant_tag(t)).collect();
        let mut sorted = tags.clone();
        sorted.sort_unstable();
        assert_eq!(tags, sorted);
    }

    #[test]
    fn request_fields_are_in_id_order() {
        let ids: Vec<u32> = REQUEST_FIELDS.iter().map(|(n, _)| field_id(n)).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, sorted);
        // Optional bits count up in id order.
        let bits: Vec<u8> = REQUEST_FIELDS.iter().filter_map(|(_, b)| *b).collect();
        assert_eq!(bits, [0, 1, 2, 3, 4]);
        let [request_id, values, exit, _] = FIELD_IDS.map(|(_, id)| id);
        assert!(values < request_id && request_id < exit);
    }

    #[test]
    fn captured_client_frames() {
        let hello =
            hex("22 21a71fbf488612ff6b 07 00 0201 20 02 0000 0e 4576656e744c6f672e48656c6c6f 0100");
        let FromClient::Request(request) = FromClient::decode(&hello).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(
            request,
            Request::new(RequestId::Number(0), "EventLog.Hello", hex("0120"))
        );
        assert_eq!(FromClient::Request(request).encode(), hello);

        for (frame, msg) in [
            (&PING_FRAME[..], FromClient::Ping),
            (
                &hex("0d21a71fbf488612ff6b00020004")[..],
                FromClient::Ack {
                    request_id: RequestId::Number(2),
                },
            ),
            (
                &hex("0d21a71fbf488612ff6b08020004")[..],
                FromClient::Interrupt {
                    request_id: RequestId::Number(2),
                },
            ),
        ] {
            let frame = Bytes::copy_from_slice(frame);
            assert_eq!(FromClient::decode(&frame).unwrap(), msg);
            assert_eq!(msg.encode(), frame);
        }
        assert_eq!(FromClient::Eof.encode(), hex("0a21a71fbf488612ff6b04"));
    }

    #[test]
    fn captured_server_frames() {
        let exit = hex("11 21a71fbf488612ff6b 01 02 0002 03 022000");
        let msg = FromServer::Exit {
            request_id: RequestId::Number(1),
            exit: hex("022000"),
        };
        assert_eq!(FromServer::decode(&exit).unwrap(), msg);
        assert_eq!(msg.encode(), exit);
        assert_eq!(
            FromServer::decode(&Bytes::from_static(&PONG_FRAME)).unwrap(),
            FromServer::Pong
        );
        assert_eq!(FromServer::Pong.encode(), PONG_FRAME);
    }

    #[test]
    fn every_field_round_trips() {
        let mut request = Request::new(
            RequestId::String("r-1".into()),
            "EventLog.Changes",
            hex("0120"),
        );
        request.headers = vec![("a".into(), "b".into()), (String::new(), "x".repeat(300))];
        request.trace_id = Some("trace".into());
        request.span_id = Some("span".into());
        request.sampled = Some(false);
        request.is_notification = true;
        request.discard = true;
        for id in [
            RequestId::Number(-1),
            RequestId::Number((1 << 48) - 1),
            RequestId::Number(1 << 48),
            RequestId::Number(MAX_SAFE_INTEGER as i64),
            RequestId::String(String::new()),
        ] {
            for msg in [
                FromClient::Request(Request {
                    id: id.clone(),
                    ..request.clone()
                }),
                FromClient::Ack {
                    request_id: id.clone(),
                },
                FromClient::Interrupt {
                    request_id: id.clone(),
                },
            ] {
                let frame = Bytes::from(msg.encode());
                assert_eq!(FromClient::decode(&frame).unwrap(), msg);
            }
            for msg in [
                FromServer::Exit {
                    request_id: id.clone(),
                    exit: hex("022000"),
                },
                FromServer::Chunk {
                    request_id: id.clone(),
                    values: Bytes::from(vec![9; 200]),
                },
                FromServer::Defect {
                    defect: hex("042022782222"),
                },
            ] {
                let frame = Bytes::from(msg.encode());
                assert_eq!(FromServer::decode(&frame).unwrap(), msg);
            }
        }
    }

    #[test]
    fn wrong_direction_and_bad_envelopes() {
        let kind = |h: &str| FromClient::decode(&hex(h)).unwrap_err().kind();
        assert_eq!(
            kind("0a21a71fbf488612ff6b06"),
            DecodeErrorKind::UnexpectedMessage
        );
        assert_eq!(
            kind("0a21a71fbf488612ff6b09"),
            DecodeErrorKind::UnknownVariant
        );
        assert_eq!(
            kind("0b21a71fbf488612ff6b0300"),
            DecodeErrorKind::TrailingBytes
        );
        assert_eq!(kind("0a20a71fbf488612ff6b03"), DecodeErrorKind::BadEnvelope);
        assert_eq!(
            kind("0a21a71fbf488612ff6c03"),
            DecodeErrorKind::BadFingerprint
        );
        // Ack with a decimal id, a 9-byte number, a string id that is not UTF-8.
        assert_eq!(
            kind("0e21a71fbf488612ff6b0003000202"),
            DecodeErrorKind::InvalidValue
        );
        assert_eq!(
            kind("1521a71fbf488612ff6b000a00000000000000000000"),
            DecodeErrorKind::InvalidValue
        );
        assert_eq!(
            kind("0d21a71fbf488612ff6b000201ff"),
            DecodeErrorKind::InvalidText
        );
        let server = |h: &str| FromServer::decode(&hex(h)).unwrap_err().kind();
        assert_eq!(
            server("0a21a71fbf488612ff6b03"),
            DecodeErrorKind::UnexpectedMessage
        );
        // An f64 id that is integral decodes as a number.
        let mut frame = hex("1421a71fbf488612ff6b0009").to_vec();
        frame.push(0);
        frame.extend_from_slice(&7.0f64.to_le_bytes());
        assert_eq!(
            FromClient::decode(&Bytes::from(frame)).unwrap(),
            FromClient::Ack {
                request_id: RequestId::Number(7)
            }
        );
    }
}
