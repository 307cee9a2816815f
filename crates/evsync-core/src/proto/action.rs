//! What a protocol engine (v3 or v4) asks its adapter to do. The same for
//! every protocol, so an adapter carries out both with one piece of code.

use crate::log::ConnId;
use crate::storage::StorageRequest;
use bytes::Bytes;

/// Something the adapter must do, in the order polled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Send one binary WebSocket frame on `conn`. The adapter reports it
    /// with the engine's `handle_sent` once written (or at once if it
    /// cannot tell).
    Send { conn: ConnId, frame: Bytes },
    /// Close `conn` with this code and reason, after the frames already
    /// queued for it. The engine has already forgotten the connection.
    Close {
        conn: ConnId,
        code: u16,
        reason: String,
    },
    /// Run this against the tenant's storage and feed the answer back with
    /// the engine's `handle_storage_response`.
    Storage(StorageRequest),
}
