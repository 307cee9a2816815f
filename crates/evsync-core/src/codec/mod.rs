//! MessagePack encoding and decoding of the EventLogRemote messages, byte
//! compatible with what Effect produces through msgpackr.
//!
//! Why hand-written: Effect clients only interoperate if our frames match
//! msgpackr's format choices (map16 for every object, float64 for integers
//! outside `[-2^31, 2^32)`, `_tag` as the last key, ...), which general
//! MessagePack crates do not reproduce; the decoder must hand out zero-copy
//! slices of the frame and withstand hostile input; and the crate must stay
//! free of I/O for `wasm32`. The golden vectors in
//! `tests/fixtures/golden` (made by Effect itself) pin both directions.
//!
//! Where the decoder deliberately differs from Effect's (both checked by
//! the golden vectors): it is stricter where the wire types need it (ids
//! and sequences must be integers, sequences and `part` non-negative,
//! `remoteId` 16 bytes, strings valid UTF-8; Effect's `Schema.Number`
//! takes 1.5 or NaN and msgpackr replaces bad UTF-8) and more lenient on
//! number formats (msgpackr 1.12 turns int64/uint64 into `BigInt`, which
//! Effect then refuses; we read them, and never write them for a value a JS
//! number can hold).
//!
//! Layout: `reader` and `writer` are the MessagePack primitives,
//! `message` walks message maps and holds what both directions share, and
//! `request` / `response` hold the per-message code.

mod error;
mod message;
mod reader;
mod request;
mod response;
pub mod writer;

#[cfg(test)]
mod tests;

pub use error::{DecodeError, DecodeErrorKind};
pub use reader::MAX_DEPTH;

use crate::wire::{RemoteEntry, Request, Response};
use bytes::Bytes;

/// Decodes one client → server frame.
///
/// The frame must hold exactly one MessagePack map with a known request
/// `_tag`; keys may come in any order and with any header width, numbers in
/// any integer width or as an integral float, and unknown keys are ignored
/// (as Effect's Schema does). Binaries are zero-copy slices of `frame`.
/// A negative `startSequence` is read as 0.
pub fn decode_request(frame: &Bytes) -> Result<Request, DecodeError> {
    request::decode(frame)
}

/// Decodes one server → client frame, with the same leniency and checks as
/// [`decode_request`]; a `Hello.remoteId` must be exactly 16 bytes.
pub fn decode_response(frame: &Bytes) -> Result<Response, DecodeError> {
    response::decode(frame)
}

/// Encodes a client → server message exactly as Effect's `encodeRequest`.
pub fn encode_request(msg: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(request::encoded_len(msg));
    request::encode_into(msg, &mut out);
    out
}

/// Appends the encoding of a client → server message to `out`, for callers
/// that reuse buffers.
pub fn encode_request_into(msg: &Request, out: &mut Vec<u8>) {
    out.reserve(request::encoded_len(msg));
    request::encode_into(msg, out);
}

/// Exact length of [`encode_request`]'s output, computed without encoding.
pub fn request_encoded_len(msg: &Request) -> usize {
    request::encoded_len(msg)
}

/// Encodes a server → client message exactly as Effect's `encodeResponse`.
/// Allocates once, at the exact size.
pub fn encode_response(msg: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(response::encoded_len(msg));
    response::encode_into(msg, &mut out);
    out
}

/// Appends the encoding of a server → client message to `out`, for callers
/// that reuse buffers.
pub fn encode_response_into(msg: &Response, out: &mut Vec<u8>) {
    out.reserve(response::encoded_len(msg));
    response::encode_into(msg, out);
}

/// Exact length of [`encode_response`]'s output, computed without encoding;
/// tells whether a message needs chunking before building it.
pub fn response_encoded_len(msg: &Response) -> usize {
    response::encoded_len(msg)
}

/// Exact number of bytes `entry` takes inside the `entries` array of an
/// encoded `Changes` message; lets the engine pack backlogs under the chunk
/// size without encoding twice.
pub fn remote_entry_encoded_len(entry: &RemoteEntry) -> usize {
    response::entry_len(entry)
}

/// Exact number of bytes of an encoded `Changes` message for `public_key`
/// with `entry_count` entries, not counting the entries themselves (the
/// array header grows at 16 and 65,536 entries, hence the count).
pub fn changes_overhead(public_key: &str, entry_count: usize) -> usize {
    response::changes_overhead(public_key, entry_count)
}
