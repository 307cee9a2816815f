//! What the process tests read back from a server they ran: a sample of
//! its `/metrics`, and whether a tenant's SQLite file is sound.

#![allow(dead_code)]

use std::path::Path;

/// The value of the sample line `name` (with its labels) in `text`, a
/// Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Fails the test unless SQLite's `PRAGMA integrity_check` finds `file`
/// sound (no server may have it open for writing).
pub fn assert_integrity(file: &Path) {
    let conn = rusqlite::Connection::open(file).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", file.display());
}
