//! The client's errors, one variant per thing a caller may act on
//! differently (fix the URL, fix the token, retry later, give up).

use crate::crypto::CryptoError;
use crate::identity::IdentityError;
use crate::msgpack::MsgPackError;
use crate::state::StateError;
use evsync_core::wire::Sequence;
use std::time::Duration;

/// Everything [`Client`](crate::Client) and its helpers can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://` or `wss://` URL (or `wss://` without the
    /// `tls` feature).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The tenant does not match `^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$`,
    /// which the server would refuse anyway.
    #[error(
        "invalid tenant {0:?}: expected 1-128 of A-Z a-z 0-9 . _ - starting with a letter or digit"
    )]
    InvalidTenant(String),
    /// The server answered the upgrade with an HTTP error (401: bad or
    /// missing token; 404: wrong path; 400: bad tenant; ...).
    #[error("server refused the WebSocket upgrade: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(" {body:?}") })]
    Http { status: u16, body: String },
    /// The TCP/TLS/WebSocket layer failed (refused, reset, DNS, ...).
    #[error("websocket: {0}")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),
    /// Nothing came in time: the connection, `Hello`, a `Pong`.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: &'static str, after: Duration },
    /// The server closed the connection.
    #[error("server closed the connection{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ServerClosed { reason: String },
    /// The server sent something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A server frame was not a valid EventLogRemote message.
    #[error("undecodable server frame: {0}")]
    Decode(#[from] evsync_core::codec::DecodeError),
    /// The server refused a request with Effect v4's `EventLogProtocolError`
    /// (`code`: Unauthorized, Forbidden, NotFound, InvalidRequest,
    /// InternalServerError).
    #[error("the server refused the request: {code}: {message}")]
    Refused { code: String, message: String },
    /// The client was closed (or its task ended) before this finished.
    #[error("client is closed")]
    Closed,
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as WsError;
        match e {
            WsError::Http(response) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                    .unwrap_or_default();
                Error::Http { status, body }
            }
            other => Error::WebSocket(Box::new(other)),
        }
    }
}

/// Why one received entry could not be turned into a
/// [`DecryptedEntry`](crate::DecryptedEntry). The stream goes on: one bad
/// entry (another key, corruption) must not stop a replica.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry {sequence}: {source}")]
    Decrypt {
        sequence: Sequence,
        #[source]
        source: CryptoError,
    },
    #[error("entry {sequence}: decrypted bytes are not an Effect Entry: {source}")]
    Decode {
        sequence: Sequence,
        #[source]
        source: MsgPackError,
    },
    /// An Effect v4 batch (entries from `sequence` on) that could not be
    /// opened: wrong key or store, tampered, or not Effect's entry array.
    #[error("batch at {sequence}: {source}")]
    Batch {
        sequence: Sequence,
        #[source]
        source: crate::v4::BatchError,
    },
}

impl EntryError {
    /// The log position of the entry that failed.
    pub fn sequence(&self) -> Sequence {
        match self {
            EntryError::Decrypt { sequence, .. }
            | EntryError::Decode { sequence, .. }
            | EntryError::Batch { sequence, .. } => *sequence,
        }
    }
}
