//! What a v4 connection carries across a restart of its engine (a Durable
//! Object woken from hibernation keeps its sockets but loses its memory):
//! the identities it authenticated and, per Changes stream, where to
//! resume. The adapter saves [`SavedSession`] with the socket and hands it
//! back to [`Engine::restore_connection`].
//!
//! A stream resumes from the first sequence its client has not
//! acknowledged, so a Chunk that was queued or in flight is sent again;
//! Effect's client drops entries it already has (by id). A challenge is not
//! kept (an `Authenticate` after the restart is refused as expired, and the
//! client starts again with `Hello`), nor are incomplete chunked writes
//! (they expire and the connection closes; the client resends).

use super::Engine;
use crate::access::Grant;
use crate::log::{ConnId, parse_batch_log_name};
use crate::proto::v4::RequestId;
use crate::proto::v4::session::Stream;
use crate::storage::StoreKey;
use crate::time::Timestamp;
use crate::wire::Sequence;

/// A connection's v4 session, as saved across a restart of the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSession {
    /// Opened on the unencrypted endpoint.
    pub plaintext: bool,
    /// The publicKeys the connection authenticated.
    pub identities: Vec<String>,
    /// Its Changes streams.
    pub streams: Vec<SavedStream>,
}

/// One Changes stream of a saved session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedStream {
    /// The `EventLog.Changes` request the stream answers.
    pub request_id: RequestId,
    pub store: StoreKey,
    /// The first sequence the client has not acknowledged.
    pub resume_from: Sequence,
}

impl Engine {
    /// `conn`'s session, for saving with its socket (`None` if it is not a
    /// connection of this engine).
    pub fn saved_session(&self, conn: ConnId) -> Option<SavedSession> {
        let state = self.sessions.conns.get(&conn)?;
        let positions = self.log.subscription_positions(conn);
        let mut identities: Vec<String> = state.identities.iter().cloned().collect();
        identities.sort();
        let mut streams: Vec<SavedStream> = state
            .streams
            .iter()
            .filter_map(|(log, stream)| {
                let next = positions.iter().find(|(l, _)| l == log).map(|(_, n)| *n);
                let resume_from = stream
                    .awaiting_ack
                    .or_else(|| stream.pending.front().map(|(first, _)| *first))
                    .or(next)?;
                Some(SavedStream {
                    request_id: stream.request_id.clone(),
                    store: parse_batch_log_name(log)?,
                    resume_from,
                })
            })
            .collect();
        streams.sort_by(|a, b| a.store.cmp(&b.store));
        Some(SavedSession {
            plaintext: state.plaintext,
            identities,
            streams,
        })
    }

    /// What `conn` was opened with (a full grant when unknown), for saving
    /// with its socket.
    pub fn grant(&self, conn: ConnId) -> Grant {
        self.sessions.grants.grant(conn)
    }

    /// Re-creates a connection that outlived this engine with the session
    /// saved from [`Engine::saved_session`]; its streams resume where the
    /// client's acknowledgements left them.
    pub fn restore_connection(
        &mut self,
        conn: ConnId,
        grant: Grant,
        saved: SavedSession,
        heard_at: Timestamp,
    ) {
        self.sessions.open(conn, grant, saved.plaintext, heard_at);
        self.log.open(conn);
        let Some(state) = self.sessions.conns.get_mut(&conn) else {
            return;
        };
        state.identities.extend(saved.identities);
        for stream in saved.streams {
            let log = crate::log::batch_log_name(&stream.store);
            let Some(state) = self.sessions.conns.get_mut(&conn) else {
                return;
            };
            state
                .stream_logs
                .insert(stream.request_id.clone(), log.clone());
            state.streams.insert(
                log.clone(),
                Stream {
                    request_id: stream.request_id,
                    awaiting_ack: None,
                    pending: Default::default(),
                    // The client may hold pieces of a Chunked value sent
                    // before the restart under a low id; ids from here on
                    // differ from those (a stream sends far fewer than
                    // 2^16 chunked values), and a second restart at the
                    // same point resends the same pieces under the same ids.
                    next_chunk_id: (stream.resume_from as i64).saturating_mul(1 << 16),
                    plaintext: saved.plaintext,
                },
            );
            self.log
                .subscribe(conn, &log, stream.resume_from.max(1), &mut self.sessions);
        }
    }
}
