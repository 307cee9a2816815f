//! The one v3 framer: messages to WebSocket frames and back, in both
//! directions, for the server's session layer, the Rust client, the bench
//! and every test client.
//!
//! Out: a message is encoded with the msgpackr-exact codec and, when its
//! encoding is over [`CHUNK_SIZE`], split into `ChunkedMessage` parts as
//! Effect splits it. In: each frame is decoded; a `ChunkedMessage` part is
//! handed to a bounded [`Reassembler`] and the whole message, once complete,
//! decoded in turn (a chunk inside a chunk is refused). Both directions are
//! generic over [`V3Message`], so clients (which send `Request`s and read
//! `Response`s) and the server (the reverse) share the same code.

use crate::chunk::{self, ChunkError, ChunkLimits, Reassembler};
use crate::codec::{self, DecodeError};
use crate::time::Timestamp;
use crate::wire::{CHUNK_SIZE, ChunkedMessage, MessageId, Request, Response};
use bytes::Bytes;
use core::fmt;
use core::marker::PhantomData;

/// A message of one direction of the v3 protocol.
pub trait V3Message: Sized {
    /// The msgpackr-exact encoding.
    fn encode(&self) -> Vec<u8>;
    /// Decodes one whole message.
    fn decode(frame: &Bytes) -> Result<Self, DecodeError>;
    /// Wraps a part of a split message.
    fn from_part(part: ChunkedMessage) -> Self;
    /// The part this message carries, if it is a `ChunkedMessage`.
    fn into_part(self) -> Result<ChunkedMessage, Self>;
}

impl V3Message for Request {
    fn encode(&self) -> Vec<u8> {
        codec::encode_request(self)
    }
    fn decode(frame: &Bytes) -> Result<Self, DecodeError> {
        codec::decode_request(frame)
    }
    fn from_part(part: ChunkedMessage) -> Self {
        Request::Chunked(part)
    }
    fn into_part(self) -> Result<ChunkedMessage, Self> {
        match self {
            Request::Chunked(part) => Ok(part),
            other => Err(other),
        }
    }
}

impl V3Message for Response {
    fn encode(&self) -> Vec<u8> {
        codec::encode_response(self)
    }
    fn decode(frame: &Bytes) -> Result<Self, DecodeError> {
        codec::decode_response(frame)
    }
    fn from_part(part: ChunkedMessage) -> Self {
        Response::Chunked(part)
    }
    fn into_part(self) -> Result<ChunkedMessage, Self> {
        match self {
            Response::Chunked(part) => Ok(part),
            other => Err(other),
        }
    }
}

/// The frames of `message`: its encoding, or its `ChunkedMessage` parts
/// when over [`CHUNK_SIZE`], with the id `chunk_id` gives (called only
/// then). Appended to `out`.
pub fn encode_into<M: V3Message>(
    message: &M,
    chunk_id: impl FnOnce() -> MessageId,
    out: &mut Vec<Bytes>,
) {
    let encoded = Bytes::from(message.encode());
    if encoded.len() <= CHUNK_SIZE {
        out.push(encoded);
        return;
    }
    let id = chunk_id();
    out.extend(
        chunk::split(id, &encoded)
            .into_iter()
            .map(|part| Bytes::from(M::from_part(part).encode())),
    );
}

/// [`encode_into`] returning a fresh `Vec`.
pub fn encode<M: V3Message>(message: &M, chunk_id: impl FnOnce() -> MessageId) -> Vec<Bytes> {
    let mut out = Vec::with_capacity(1);
    encode_into(message, chunk_id, &mut out);
    out
}

/// Outgoing side of one sender: encodes messages with chunk ids unique
/// among its split messages.
#[derive(Debug, Default, Clone)]
pub struct FrameEncoder {
    next_chunk_id: MessageId,
}

impl FrameEncoder {
    /// An encoder whose first chunked message gets id `first_chunk_id`.
    pub fn starting_at(first_chunk_id: MessageId) -> Self {
        FrameEncoder {
            next_chunk_id: first_chunk_id,
        }
    }

    /// Appends the frames of `message` to `out`.
    pub fn encode_into<M: V3Message>(&mut self, message: &M, out: &mut Vec<Bytes>) {
        encode_into(message, || self.take_chunk_id(), out);
    }

    /// The frames of `message`.
    pub fn encode<M: V3Message>(&mut self, message: &M) -> Vec<Bytes> {
        encode(message, || self.take_chunk_id())
    }

    fn take_chunk_id(&mut self) -> MessageId {
        let id = self.next_chunk_id;
        self.next_chunk_id = self.next_chunk_id.wrapping_add(1);
        id
    }
}

/// Why an incoming frame was refused. Each closes its connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FrameError {
    /// The frame is not a message of this direction.
    Decode(DecodeError),
    /// A part broke the chunking rules or limits.
    Chunk(ChunkError),
    /// A reassembled message did not decode.
    Reassembled(DecodeError),
    /// A reassembled message was itself a `ChunkedMessage`.
    Nested,
}

impl FrameError {
    /// The WebSocket close code for this error: 1009 for size limits, else
    /// 1002.
    pub fn close_code(&self) -> u16 {
        use super::super::close::code;
        match self {
            FrameError::Chunk(err) if err.is_size_limit() => code::MESSAGE_TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Decode(err) => write!(f, "invalid message: {err}"),
            FrameError::Chunk(err) => write!(f, "{err}"),
            FrameError::Reassembled(err) => write!(f, "invalid chunked message: {err}"),
            FrameError::Nested => {
                f.write_str("invalid message: a chunked message inside a chunked message")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Incoming side of one connection: frames to whole messages, with
/// chunked messages reassembled within [`ChunkLimits`].
#[derive(Debug)]
pub struct FrameDecoder<M> {
    reassembler: Reassembler,
    _message: PhantomData<fn() -> M>,
}

impl<M: V3Message> FrameDecoder<M> {
    pub fn new(limits: ChunkLimits) -> Self {
        FrameDecoder {
            reassembler: Reassembler::new(limits),
            _message: PhantomData,
        }
    }

    /// Decodes one frame: the message it completes, if any.
    pub fn decode(&mut self, frame: &Bytes, now: Timestamp) -> Result<Option<M>, FrameError> {
        let message = M::decode(frame).map_err(FrameError::Decode)?;
        self.accept(message, now)
    }

    /// Takes one decoded message (for callers that look at each frame's
    /// message first, such as debug logs): a whole message passes through,
    /// a part is reassembled and yields the whole message once complete.
    pub fn accept(&mut self, message: M, now: Timestamp) -> Result<Option<M>, FrameError> {
        let part = match message.into_part() {
            Ok(part) => part,
            Err(whole) => return Ok(Some(whole)),
        };
        let Some(whole) = self
            .reassembler
            .push(part, now)
            .map_err(FrameError::Chunk)?
        else {
            return Ok(None);
        };
        match M::decode(&whole)
            .map_err(FrameError::Reassembled)?
            .into_part()
        {
            Ok(_) => Err(FrameError::Nested),
            Err(inner) => Ok(Some(inner)),
        }
    }

    /// Fails if an incomplete message has outlived its age limit at `now`.
    pub fn check_expiry(&self, now: Timestamp) -> Result<(), FrameError> {
        self.reassembler
            .check_expiry(now)
            .map_err(FrameError::Chunk)
    }

    /// When the oldest incomplete message expires, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.reassembler.next_deadline()
    }

    /// Incomplete chunked messages held.
    pub fn incomplete_count(&self) -> usize {
        self.reassembler.incomplete_count()
    }

    /// Bytes held in incomplete chunked messages.
    pub fn held_bytes(&self) -> usize {
        self.reassembler.held_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::EncryptedEntry;

    #[test]
    fn large_messages_split_and_reassemble_both_ways() {
        let request = Request::WriteEntries {
            public_key: "pk".into(),
            id: 9,
            iv: Bytes::from_static(&[0; 12]),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: Bytes::from_static(&[1; 16]),
                encrypted_entry: Bytes::from(vec![5u8; 1_200_000]),
            }],
        };
        let mut encoder = FrameEncoder::starting_at(7);
        let frames = encoder.encode(&request);
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() < CHUNK_SIZE + 64));
        let mut decoder = FrameDecoder::<Request>::new(ChunkLimits::default());
        let mut out = None;
        for frame in &frames {
            assert!(out.is_none());
            out = decoder.decode(frame, Timestamp(0)).unwrap();
        }
        assert_eq!(out, Some(request));
        assert_eq!(decoder.incomplete_count(), 0);

        let pong = Response::Pong { id: 3 };
        let frames = encoder.encode(&pong);
        assert_eq!(frames.len(), 1);
        let mut decoder = FrameDecoder::<Response>::new(ChunkLimits::default());
        assert_eq!(
            decoder.decode(&frames[0], Timestamp(0)).unwrap(),
            Some(pong)
        );
    }

    #[test]
    fn nested_chunks_and_size_limits_are_refused_with_their_codes() {
        let inner = Request::Chunked(ChunkedMessage {
            id: 1,
            index: 0,
            total: 1,
            data: Bytes::from_static(b"x"),
        });
        let outer = Request::Chunked(ChunkedMessage {
            id: 2,
            index: 0,
            total: 1,
            data: Bytes::from(inner.encode()),
        });
        let mut decoder = FrameDecoder::<Request>::new(ChunkLimits::default());
        let err = decoder
            .decode(&Bytes::from(outer.encode()), Timestamp(0))
            .unwrap_err();
        assert_eq!(err, FrameError::Nested);
        assert_eq!(err.close_code(), 1002);

        let limits = ChunkLimits {
            max_parts: 2,
            ..ChunkLimits::default()
        };
        let mut decoder = FrameDecoder::<Request>::new(limits);
        let too_many = Request::Chunked(ChunkedMessage {
            id: 3,
            index: 0,
            total: 3,
            data: Bytes::from_static(b"x"),
        });
        let err = decoder
            .decode(&Bytes::from(too_many.encode()), Timestamp(0))
            .unwrap_err();
        assert_eq!(err.close_code(), 1009);
    }
}
