//! A self-test run's status (`RUNNING`, `PASS …`, `FAIL …`), kept in the
//! scratch Durable Object's SQLite so that it outlives the wasm instance a
//! failed assertion aborts. Written by the run and by the panic hook, read
//! by the result route.

use serde::Deserialize;
use worker::SqlStorage;

/// Creates the status table if needed.
pub fn prepare(sql: &SqlStorage) -> Result<(), String> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS evsync_selftest (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        None,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Records `status` (best effort: the caller may be a panic hook).
pub fn set(sql: &SqlStorage, status: &str) {
    let _ = sql.exec(
        "INSERT OR REPLACE INTO evsync_selftest (key, value) VALUES ('status', ?1)",
        vec![status.into()],
    );
}

/// The recorded status, if a run was started.
pub fn read(sql: &SqlStorage) -> Option<String> {
    #[derive(Deserialize)]
    struct Row {
        value: String,
    }
    let rows: Vec<Row> = sql
        .exec(
            "SELECT value FROM evsync_selftest WHERE key = 'status'",
            None,
        )
        .ok()?
        .to_array()
        .ok()?;
    rows.into_iter().next().map(|r| r.value)
}
