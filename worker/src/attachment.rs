//! What a socket carries across hibernation.
//!
//! A hibernating Durable Object keeps its WebSockets open but loses its
//! memory, engine included. Each socket therefore carries its connection id
//! (as a tag, fast to read on every message, and in its attachment) and its
//! subscriptions with the next sequence each one is owed (from
//! `Engine::subscription_positions`), so that a woken object re-creates the
//! engine's connections with `Engine::restore_connection` and resumes every
//! subscription without a gap.
//!
//! Attachments are limited to 2,048 bytes. A socket whose subscriptions do
//! not fit (hundreds of publicKeys, or very long ones) keeps them in the
//! object's SQLite instead (`evsync_socket_subs`), and its attachment only
//! says so.

use evsync_core::proto::v3::ConnId;
use evsync_core::wire::Sequence;
use serde::{Deserialize, Serialize};
use worker::{SqlStorage, State, WebSocket};

/// Subscriptions of one socket: publicKey and next sequence owed.
pub type Positions = Vec<(String, Sequence)>;

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

/// Saves `positions` for `conn` on `ws` (or in SQLite when too large).
pub fn save(
    sql: &SqlStorage,
    ws: &WebSocket,
    conn: ConnId,
    positions: &Positions,
) -> Result<(), String> {
    let inline = Attachment {
        c: conn.0,
        s: positions.clone(),
        o: false,
    };
    let text = serde_json::to_string(&inline).map_err(|e| e.to_string())?;
    // A stale SQLite copy left by an earlier overflow is harmless: `load`
    // reads SQLite only when the attachment says so; `forget_overflow`
    // removes it when the socket closes.
    let text = if text.len() <= MAX_INLINE {
        text
    } else {
        let subs = serde_json::to_string(positions).map_err(|e| e.to_string())?;
        sql.exec(
            "INSERT OR REPLACE INTO evsync_socket_subs (conn, subs) VALUES (?1, ?2)",
            vec![(conn.0 as i64).into(), subs.into()],
        )
        .map_err(|e| e.to_string())?;
        serde_json::to_string(&Attachment {
            c: conn.0,
            s: Vec::new(),
            o: true,
        })
        .map_err(|e| e.to_string())?
    };
    ws.serialize_attachment(text).map_err(|e| e.to_string())
}

/// The connection id and subscriptions saved on `ws`, if any.
pub fn load(sql: &SqlStorage, ws: &WebSocket) -> Option<(ConnId, Positions)> {
    let attachment = read(ws)?;
    let conn = ConnId(attachment.c);
    if !attachment.o {
        return Some((conn, attachment.s));
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
    let positions = serde_json::from_str(&rows.first()?.subs).ok()?;
    Some((conn, positions))
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

fn read(ws: &WebSocket) -> Option<Attachment> {
    let text: String = ws.deserialize_attachment().ok()??;
    serde_json::from_str(&text).ok()
}
