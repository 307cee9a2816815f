//! The idle-socket timeout across hibernation.
//!
//! The engine keeps each connection's last-heard time in memory, which a
//! hibernating object loses while its sockets stay open. Restarting every
//! clock at the wake-up would let a quiet socket live forever on an object
//! that hibernates more often than the timeout, so the time is also kept
//! in the object's SQLite (`evsync_socket_heard`), coarsely: written only
//! when the stored value is a quarter of the timeout old, i.e. at most four
//! writes per socket per timeout. The true last frame then lies within a
//! quarter timeout after the stored one, and a restored clock starts at
//! the end of that window: a socket may be closed up to a quarter of the
//! timeout late, never early. Nothing is written while the timeout is off.

use evsync_core::proto::v3::ConnId;
use evsync_core::time::Timestamp;
use serde::Deserialize;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use worker::SqlStorage;

/// Creates the table (once per object start).
pub fn prepare(sql: &SqlStorage) -> Result<(), String> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS evsync_socket_heard (conn INTEGER PRIMARY KEY, at INTEGER NOT NULL)",
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The stored last-heard times, and what this instance last wrote.
#[derive(Default)]
pub struct HeardLog {
    /// The timeout in milliseconds, once the engine exists; `None`: off.
    pub timeout_ms: Cell<Option<u64>>,
    written: RefCell<HashMap<ConnId, Timestamp>>,
}

impl HeardLog {
    /// How stale the stored time may get.
    fn step(timeout_ms: u64) -> u64 {
        (timeout_ms / 4).max(1)
    }

    /// A frame arrived on (or the socket opened as) `conn` at `now`.
    pub fn heard(&self, sql: &SqlStorage, conn: ConnId, now: Timestamp) {
        let Some(timeout) = self.timeout_ms.get() else {
            return;
        };
        let mut written = self.written.borrow_mut();
        if written
            .get(&conn)
            .is_some_and(|at| now.millis_since(*at) < Self::step(timeout))
        {
            return;
        }
        let stored = sql.exec(
            "INSERT OR REPLACE INTO evsync_socket_heard (conn, at) VALUES (?1, ?2)",
            vec![(conn.0 as i64).into(), (now.0 as i64).into()],
        );
        if stored.is_ok() {
            written.insert(conn, now);
        }
    }

    /// Where `conn`'s restored clock starts: the end of the window its last
    /// frame lies in, or `now` when nothing was stored.
    pub fn restored_at(&self, sql: &SqlStorage, conn: ConnId, now: Timestamp) -> Timestamp {
        let Some(timeout) = self.timeout_ms.get() else {
            return now;
        };
        #[derive(Deserialize)]
        struct Row {
            at: f64,
        }
        let rows: Option<Vec<Row>> = sql
            .exec(
                "SELECT at FROM evsync_socket_heard WHERE conn = ?1",
                vec![(conn.0 as i64).into()],
            )
            .ok()
            .and_then(|cursor| cursor.to_array().ok());
        rows.and_then(|rows| rows.first().map(|row| Timestamp(row.at as u64)))
            .map_or(now, |at| at.plus_millis(Self::step(timeout)).min(now))
    }

    /// `conn` closed.
    pub fn forget(&self, sql: &SqlStorage, conn: ConnId) {
        self.written.borrow_mut().remove(&conn);
        let _ = sql.exec(
            "DELETE FROM evsync_socket_heard WHERE conn = ?1",
            vec![(conn.0 as i64).into()],
        );
    }
}
