//! The eventlog RPCs' payloads, results and errors
//! (`effect/eventlog/EventLogMessage`), as default-mode SchemaBinary values.
//!
//! Each type implements [`Value`](super::schema_binary::Value); a frame of
//! one is [`decode`](super::decode)/[`encode`](super::encode)d. Which schema
//! fills which hole:
//!
//! | RPC (`tag`) | payload | success | exit |
//! |---|---|---|---|
//! | `EventLog.Hello` | Void (`()`) | [`HelloResponse`] | [`HelloExit`] |
//! | `EventLog.Authenticate` | [`Authenticate`] | Void | [`AuthenticateExit`] |
//! | `EventLog.WriteSingle` | [`WriteSinglePayload`] (data = a [`WriteEntries`] or [`WriteEntriesUnencrypted`] frame) | `Vec<WriteAck>` | [`WriteExit`] |
//! | `EventLog.WriteChunked` | [`ChunkedMessage`] | `Vec<WriteAck>` | [`WriteExit`] |
//! | `EventLog.Changes` (stream) | [`ChangesPayload`] | chunk values `Vec<ChangesValue>` (data = a `Vec<EncryptedRemoteBatch>` or `Vec<RemoteEntry>` frame) | [`ChangesExit`] |
//!
//! Byte fields are zero-copy slices of the frame they were decoded from.

mod changes;
mod fields;
mod hello;
mod protocol_error;
mod write;

pub use changes::{
    CHUNKED_TAG, ChangesPayload, ChangesValue, EncryptedRemoteBatch, RemoteEntry,
    RemoteEntryPartial, SINGLE_TAG,
};
pub use hello::{Authenticate, ED25519, HelloResponse};
pub use protocol_error::{
    AuthenticateExit, ChangesExit, ErrorCode, EventLogProtocolError, HelloExit, PROTOCOL_ERROR_TAG,
    WriteExit,
};
pub use write::{
    AckPartial, BatchPartial, CHUNK_SIZE, ChunkedMessage, EncryptedBatch, Entry, EntryPartial,
    WriteAck, WriteEntries, WriteEntriesUnencrypted, WriteSinglePayload,
};

#[cfg(test)]
mod tests;
