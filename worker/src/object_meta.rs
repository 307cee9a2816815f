//! What a Durable Object remembers about itself: the tenant it serves.
//!
//! The Worker names the tenant on every upgrade it forwards, but an object
//! woken from hibernation by a socket message has no request to read it
//! from; D1 mode needs it to key rows. It is kept in the object's own
//! SQLite, written once.

use serde::Deserialize;
use worker::SqlStorage;

/// Records `tenant` as this object's tenant, if not already recorded.
pub fn remember_tenant(sql: &SqlStorage, tenant: &str) -> Result<(), String> {
    if recall_tenant(sql).as_deref() == Some(tenant) {
        return Ok(());
    }
    sql.exec(
        "CREATE TABLE IF NOT EXISTS evsync_object (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        None,
    )
    .map_err(|e| e.to_string())?;
    sql.exec(
        "INSERT OR REPLACE INTO evsync_object (key, value) VALUES ('tenant', ?1)",
        vec![tenant.into()],
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The tenant recorded by [`remember_tenant`].
pub fn recall_tenant(sql: &SqlStorage) -> Option<String> {
    #[derive(Deserialize)]
    struct Row {
        value: String,
    }
    let rows: Vec<Row> = sql
        .exec("SELECT value FROM evsync_object WHERE key = 'tenant'", None)
        .ok()?
        .to_array()
        .ok()?;
    rows.into_iter().next().map(|r| r.value)
}
