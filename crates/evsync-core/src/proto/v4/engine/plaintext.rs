//! Writes of Effect v4's unencrypted clients (`EventLogRemote.layerUnencrypted`),
//! relayed: each plaintext entry is stored as a record of its own in a
//! store shared by every identity of the tenant (Effect's unencrypted
//! server keys stores by storeId alone), named by [`PLAINTEXT_OWNER`].
//!
//! What evsync does not do that Effect's unencrypted server can: run the
//! application's event handlers on the server (their side effects, their
//! refusals, server-side compactors). Clients apply and reconcile entries
//! themselves either way; a deployment that needs server-side handlers runs
//! Effect's own server. See docs/effect-v4.md.
//!
//! As Effect's server does, a request's entries are stored in entry-id
//! order (ids are UUIDv7: time order), entries already stored are skipped
//! and acknowledged with their first sequence, and acks follow the
//! request's order.

use super::Engine;
use crate::log::ConnId;
use crate::proto::v4::{
    ErrorCode, RequestId, WriteEntries, WriteEntriesUnencrypted, WriteExit, decode, encode,
};
use crate::storage::{BatchWrite, ENTRY_ID_LEN, StoreKey};
use bytes::Bytes;

/// The publicKey under which plaintext stores are kept. No client can
/// authenticate as it (`Authenticate` refuses the empty publicKey), so an
/// encrypted connection can never reach a plaintext store.
pub const PLAINTEXT_OWNER: &str = "";

impl Engine {
    /// A whole `WriteEntriesUnencrypted` frame on the unencrypted endpoint.
    pub(super) fn write_plaintext(&mut self, conn: ConnId, request_id: RequestId, data: Bytes) {
        let request = match decode::<WriteEntriesUnencrypted>(&data) {
            Ok(request) => request,
            Err(_) => {
                let message = if decode::<WriteEntries>(&data).is_ok() {
                    "encrypted writes go to /v4/event-log/<tenant>"
                } else {
                    "Decoding failure"
                };
                let code = ErrorCode::InternalServerError;
                self.refuse_write(conn, &request_id, None, code, message);
                return;
            }
        };
        if !self.admit_write(conn, &request_id, &request.public_key) {
            return;
        }
        if request.entries.is_empty() {
            self.reply_exit(conn, &request_id, &WriteExit::Success(Vec::new()));
            return;
        }
        if request.entries.iter().any(|e| e.id.len() != ENTRY_ID_LEN) {
            let message = "every entry needs an id of 16 bytes";
            let key = Some(request.public_key.as_str());
            self.refuse_write(conn, &request_id, key, ErrorCode::InvalidRequest, message);
            return;
        }
        let store = StoreKey::new(PLAINTEXT_OWNER, request.store_id.clone());
        let mut by_id: Vec<usize> = (0..request.entries.len()).collect();
        by_id.sort_by(|&a, &b| request.entries[a].id.cmp(&request.entries[b].id));
        // Where each entry of the request sits among the stored ones.
        let mut request_order = vec![0; by_id.len()];
        for (stored_at, &requested) in by_id.iter().enumerate() {
            request_order[requested] = stored_at;
        }
        let writes = by_id
            .iter()
            .map(|&i| {
                let entry = &request.entries[i];
                BatchWrite {
                    store: store.clone(),
                    iv: Bytes::new(),
                    entry_ids: vec![entry.id.clone()],
                    encrypted_batch: Bytes::from(encode(entry)),
                }
            })
            .collect();
        self.start_writes(conn, request_id, writes, Some(request_order));
    }
}
