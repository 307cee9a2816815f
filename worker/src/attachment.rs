//! What a socket carries across hibernation.
//!
//! A hibernating Durable Object keeps its WebSockets open but loses its
//! memory, engine included. Each socket therefore carries its connection id
//! (as a tag, fast to read on every message, and in its attachment) and its
//! subscriptions with the next sequence each one is owed (from
//! `Engine::subscription_positions`), so that a woken object re-creates the
//! engine's connections with `Engine::restore_connection` and resumes every
//! subscription without a gap. It also carries what the socket's token
//! allows (read-only, one publicKey, an expiry), so that a woken object
//! keeps enforcing it and closes the socket when its token expires.
//!
//! An Effect v4 socket carries its session instead
//! (`v4::Engine::saved_session`): the identities it authenticated and, per
//! Changes stream, its request id, store and the first sequence the client
//! has not acknowledged.
//!
//! Attachments are limited to 2,048 bytes. A socket whose subscriptions do
//! not fit (hundreds of publicKeys, or very long ones) keeps them in the
//! object's SQLite instead (`evsync_socket_subs`), and its attachment only
//! says so.

use evsync_core::access::Grant;
use evsync_core::proto::v3::ConnId;
use evsync_core::proto::v4::{RequestId, SavedSession, SavedStream};
use evsync_core::storage::StoreKey;
use evsync_core::time::Timestamp;
use evsync_core::wire::Sequence;
use serde::{Deserialize, Serialize};
use worker::{SqlStorage, State, WebSocket};

/// Subscriptions of one v3 socket: publicKey and next sequence owed.
pub type Positions = Vec<(String, Sequence)>;

/// What one socket's connection needs to be restored, by protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    V3(Positions),
    V4(SavedSession),
}

/// A v4 session as JSON (short keys: attachments are small).
#[derive(Serialize, Deserialize, Clone, Default)]
struct V4Json {
    /// The unencrypted endpoint's socket.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    u: bool,
    /// Authenticated publicKeys.
    #[serde(default)]
    i: Vec<String>,
    /// Changes streams.
    #[serde(default)]
    t: Vec<StreamJson>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StreamJson {
    /// The request id.
    r: RequestIdJson,
    /// publicKey.
    p: String,
    /// storeId.
    s: String,
    /// Resume from this sequence.
    n: Sequence,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(untagged)]
enum RequestIdJson {
    Number(i64),
    String(String),
}

impl V4Json {
    fn of(session: &SavedSession) -> Self {
        V4Json {
            u: session.plaintext,
            i: session.identities.clone(),
            t: session
                .streams
                .iter()
                .map(|stream| StreamJson {
                    r: match &stream.request_id {
                        RequestId::Number(n) => RequestIdJson::Number(*n),
                        RequestId::String(s) => RequestIdJson::String(s.clone()),
                    },
                    p: stream.store.public_key.clone(),
                    s: stream.store.store_id.clone(),
                    n: stream.resume_from,
                })
                .collect(),
        }
    }

    fn session(self) -> SavedSession {
        SavedSession {
            plaintext: self.u,
            identities: self.i,
            streams: self
                .t
                .into_iter()
                .map(|stream| SavedStream {
                    request_id: match stream.r {
                        RequestIdJson::Number(n) => RequestId::Number(n),
                        RequestIdJson::String(s) => RequestId::String(s),
                    },
                    store: StoreKey::new(stream.p, stream.s),
                    resume_from: stream.n,
                })
                .collect(),
        }
    }
}

/// What an overflowing socket keeps in `evsync_socket_subs`.
#[derive(Serialize, Deserialize)]
struct Overflow {
    #[serde(default)]
    s: Positions,
    #[serde(default)]
    v: Option<V4Json>,
}

/// Largest attachment text written (the platform's limit is 2,048 bytes of
/// serialised value; a JS string costs a few bytes over its length).
const MAX_INLINE: usize = 1_900;

#[derive(Serialize, Deserialize)]
struct Attachment {
    /// Connection id.
    c: u64,
    /// Subscriptions, unless `o` says they are in SQLite.
    #[serde(default)]
    s: Positions,
    /// True when the subscriptions are in `evsync_socket_subs`.
    #[serde(default)]
    o: bool,
    /// Read-only token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    r: bool,
    /// The one publicKey the token allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// When the token expires (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<u64>,
    /// An Effect v4 socket's session (absent: a v3 socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<V4Json>,
}

impl Attachment {
    fn new(conn: ConnId, grant: &Grant, saved: &Saved, o: bool) -> Self {
        let (s, v) = match saved {
            Saved::V3(positions) => (positions.clone(), None),
            Saved::V4(session) => (Vec::new(), Some(V4Json::of(session))),
        };
        Attachment {
            c: conn.0,
            s,
            v,
            o,
            r: grant.read_only,
            k: grant.public_key.clone(),
            e: grant.expires_at.map(|at| at.0),
        }
    }

    fn grant(&self) -> Grant {
        Grant {
            read_only: self.r,
            public_key: self.k.clone(),
            expires_at: self.e.map(Timestamp),
            // Revocation is checked at admission; an open socket's token
            // is no longer compared with it (a revocation closes them all).
            issued_at_ms: None,
        }
    }
}

/// The tag that names connection `conn` on its socket.
pub fn tag(conn: ConnId) -> String {
    format!("c{}", conn.0)
}

/// The connection id of `ws`, from its tag (or its attachment).
pub fn conn_id(state: &State, ws: &WebSocket) -> Option<ConnId> {
    let from_tag = state
        .get_tags(ws)
        .iter()
        .find_map(|t| t.strip_prefix('c')?.parse::<u64>().ok());
    from_tag.or_else(|| read(ws).map(|a| a.c)).map(ConnId)
}

/// Saves `conn`'s `grant` and what restores it on `ws` (in SQLite when too
/// large). A v4 socket is marked as one even while its session is empty.
pub fn save(
    sql: &SqlStorage,
    ws: &WebSocket,
    conn: ConnId,
    grant: &Grant,
    saved: &Saved,
) -> Result<(), String> {
    let inline = Attachment::new(conn, grant, saved, false);
    let text = serde_json::to_string(&inline).map_err(|e| e.to_string())?;
    // A stale SQLite copy left by an earlier overflow is harmless: `load`
    // reads SQLite only when the attachment says so; `forget_overflow`
    // removes it when the socket closes.
    let text = if text.len() <= MAX_INLINE {
        text
    } else {
        let overflow = Overflow {
            s: inline.s,
            v: inline.v,
        };
        let subs = serde_json::to_string(&overflow).map_err(|e| e.to_string())?;
        sql.exec(
            "INSERT OR REPLACE INTO evsync_socket_subs (conn, subs) VALUES (?1, ?2)",
            vec![(conn.0 as i64).into(), subs.into()],
        )
        .map_err(|e| e.to_string())?;
        let marker = match saved {
            Saved::V3(_) => Saved::V3(Vec::new()),
            Saved::V4(session) => Saved::V4(SavedSession {
                plaintext: session.plaintext,
                identities: Vec::new(),
                streams: Vec::new(),
            }),
        };
        serde_json::to_string(&Attachment::new(conn, grant, &marker, true))
            .map_err(|e| e.to_string())?
    };
    ws.serialize_attachment(text).map_err(|e| e.to_string())
}

/// The connection id, grant and what restores it saved on `ws`, if any.
pub fn load(sql: &SqlStorage, ws: &WebSocket) -> Option<(ConnId, Grant, Saved)> {
    let attachment = read(ws)?;
    let conn = ConnId(attachment.c);
    let grant = attachment.grant();
    if !attachment.o {
        let saved = match attachment.v {
            Some(v4) => Saved::V4(v4.session()),
            None => Saved::V3(attachment.s),
        };
        return Some((conn, grant, saved));
    }
    #[derive(Deserialize)]
    struct Row {
        subs: String,
    }
    let rows: Vec<Row> = sql
        .exec(
            "SELECT subs FROM evsync_socket_subs WHERE conn = ?1",
            vec![(conn.0 as i64).into()],
        )
        .ok()?
        .to_array()
        .ok()?;
    let text = &rows.first()?.subs;
    // Rows written before v4 hold the positions alone.
    let overflow = serde_json::from_str::<Overflow>(text)
        .or_else(|_| serde_json::from_str::<Positions>(text).map(|s| Overflow { s, v: None }))
        .ok()?;
    let saved = match (attachment.v, overflow.v) {
        (_, Some(v4)) => Saved::V4(v4.session()),
        (Some(marker), None) => Saved::V4(marker.session()),
        (None, None) => Saved::V3(overflow.s),
    };
    Some((conn, grant, saved))
}

/// Creates the overflow table (once per object start), so that saving
/// and forgetting never need to check for it.
pub fn prepare(sql: &SqlStorage) -> Result<(), String> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS evsync_socket_subs (conn INTEGER PRIMARY KEY, subs TEXT NOT NULL)",
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Drops the SQLite copy of `conn`'s subscriptions, if there is one.
pub fn forget_overflow(sql: &SqlStorage, conn: ConnId) {
    let _ = sql.exec(
        "DELETE FROM evsync_socket_subs WHERE conn = ?1",
        vec![(conn.0 as i64).into()],
    );
}

/// What a retired socket's attachment holds (not an [`Attachment`], so
/// [`load`] finds nothing on it).
const RETIRED: &str = "retired";

/// Marks `ws` as closed by an operator's delete or import: an engine that
/// starts while its close is still under way does not restore it.
pub fn retire(ws: &WebSocket) {
    let _ = ws.serialize_attachment(RETIRED);
}

/// True when `ws` was [`retire`]d.
pub fn is_retired(ws: &WebSocket) -> bool {
    matches!(ws.deserialize_attachment::<String>(), Ok(Some(text)) if text == RETIRED)
}

fn read(ws: &WebSocket) -> Option<Attachment> {
    let text: String = ws.deserialize_attachment().ok()??;
    serde_json::from_str(&text).ok()
}
