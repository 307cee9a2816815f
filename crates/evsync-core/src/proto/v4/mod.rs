//! Effect v4's eventlog protocol (`effect@4.1.0`, `effect/eventlog`):
//! Effect RPC over SchemaBinary, one WebSocket per client: the codec and the
//! session layer over the log service, without I/O.
//!
//! | module | job |
//! |---|---|
//! | [`schema_binary`] | the SchemaBinary subset: varints, FNV ids, regions, structs, row runs, `Exit`, frames and the frame splitter |
//! | [`envelope`] | the RPC envelope in fingerprint mode: [`FromClient`] (Request/Ack/Interrupt/Ping/Eof), [`FromServer`] (Exit/Chunk/Pong/Defect) |
//! | [`messages`] | the eventlog payloads, results, errors and exits that fill the envelope's holes |
//! | [`error`] | [`DecodeError`] |
//! | [`auth`] | session auth: a connection's challenge, the signed payload, the Ed25519 check |
//! | [`Engine`] (`engine`, `session`, `replies`, `config`) | the session layer of one tenant over a log service of batches |
//! | `request_line` | what a decoded message was, for the request log (SYNC_DEBUG) |
//!
//! A connection's bytes go through a [`FrameSplitter`]; each frame decodes
//! as a [`FromClient`]; a request's `payload` (and later the exit or chunk
//! values a server sends back) is a nested default-mode frame decoded with
//! [`decode`] as the RPC's schema, e.g. `decode::<ChangesPayload>(&payload)`.
//! Decoding never panics, on any input.

pub mod auth;
mod config;
mod engine;
pub mod envelope;
pub mod error;
pub mod messages;
mod replies;
mod request_line;
pub mod schema_binary;
mod session;

use bytes::Bytes;

pub use config::SessionConfig;
pub use engine::{
    Engine, PLAINTEXT_OWNER, Randomness, SavedSession, SavedStream, V4_REQUEST_IDS, is_v4_request,
};
pub use envelope::{FromClient, FromServer, PING_FRAME, PONG_FRAME, Request, RequestId};
pub use error::{DecodeError, DecodeErrorKind};
pub use messages::*;
pub use schema_binary::{DEFAULT_MAX_FRAME_SIZE, Defect, Exit, FrameSplitter, Reason, Text, Value};
pub use session::Event;

/// Decodes a whole default-mode frame (length prefix included) holding a `T`.
pub fn decode<T: Value>(frame: &Bytes) -> Result<T, DecodeError> {
    schema_binary::decode_frame(frame, schema_binary::Mode::Default)
}

/// Encodes `value` as a whole default-mode frame.
pub fn encode<T: Value>(value: &T) -> Vec<u8> {
    schema_binary::encode_frame(value, schema_binary::Mode::Default)
}
