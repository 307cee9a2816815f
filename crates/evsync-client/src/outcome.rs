//! What a client reports to its caller: the connection's status, the
//! receipt of a write and the entries it receives. Its own module so that
//! the handle (`client`) and the task behind it (`driver`) both use these
//! types without depending on each other.

use crate::entry::EntryId;
use evsync_core::wire::{RemoteId, Sequence};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The state of the connection, for callers that want to show or await it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// A connection is open and has received `Hello`.
    pub connected: bool,
    /// The remoteId of the last `Hello`.
    pub remote_id: Option<RemoteId>,
    /// How many connections received `Hello` so far (1 after connect; each
    /// reconnect adds one).
    pub sessions: u64,
    /// Why the last connection or attempt failed.
    pub last_error: Option<String>,
    /// The client was closed.
    pub closed: bool,
}

/// The server's answer to a write: where the entry now sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteReceipt {
    pub sequence: Sequence,
    pub entry_id: EntryId,
    /// The server (stored log) that acknowledged it.
    pub remote_id: RemoteId,
}

/// An entry of the log, decrypted and decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecryptedEntry {
    /// Its position in the (remote, publicKey) log.
    pub sequence: Sequence,
    pub remote_id: RemoteId,
    pub id: EntryId,
    pub event: String,
    pub primary_key: String,
    /// The payload bytes, msgpack for Effect's schema'd payloads.
    pub payload: Vec<u8>,
    /// When it was made (from the UUID v7), ms since the Unix epoch.
    pub created_at_millis: u64,
}

impl DecryptedEntry {
    /// When the entry was made, as Effect's `entry.createdAt`.
    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.created_at_millis)
    }

    /// The payload as JSON when it is one MessagePack value (see
    /// [`msgpack::decode_to_json`](crate::msgpack::decode_to_json)).
    pub fn payload_json(&self) -> Option<serde_json::Value> {
        crate::msgpack::decode_to_json(&self.payload).ok()
    }
}
