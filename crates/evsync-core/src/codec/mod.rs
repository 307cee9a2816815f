//! MessagePack encoding and decoding of the EventLogRemote messages, byte
//! compatible with what Effect produces through msgpackr.
//!
//! (Stub: being implemented; see issue 2.)

use crate::wire::{RemoteEntry, Request, Response};
use bytes::Bytes;

/// Why a frame could not be decoded. Decoding never panics.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError {
    pub message: String,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one client → server frame.
pub fn decode_request(_frame: &Bytes) -> Result<Request, DecodeError> {
    todo!()
}

/// Decodes one server → client frame.
pub fn decode_response(_frame: &Bytes) -> Result<Response, DecodeError> {
    todo!()
}

/// Encodes a client → server message exactly as Effect's `encodeRequest`.
pub fn encode_request(_msg: &Request) -> Vec<u8> {
    todo!()
}

/// Encodes a server → client message exactly as Effect's `encodeResponse`.
pub fn encode_response(_msg: &Response) -> Vec<u8> {
    todo!()
}

/// Exact number of bytes `entry` takes inside the `entries` array of an
/// encoded `Changes` message; lets the engine pack backlogs under the chunk
/// size without encoding twice.
pub fn remote_entry_encoded_len(_entry: &RemoteEntry) -> usize {
    todo!()
}

/// Exact number of bytes of an encoded `Changes` message for `public_key`
/// with `entry_count` entries, not counting the entries themselves.
pub fn changes_overhead(_public_key: &str, _entry_count: usize) -> usize {
    todo!()
}
