//! What the process tests read back from a server they ran: a sample of
//! its `/metrics`, and whether a tenant's SQLite file is sound. (A test
//! file using it declares `common` and `process` too.)

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

/// Waits until `/metrics` at `addr` has the sample `name` at `value` or
/// more (a tenant's figures are added after the work a test waits for).
pub async fn metric_at_least(addr: std::net::SocketAddr, name: &str, value: f64) {
    crate::process::within(&format!("{name} to reach {value}"), async {
        loop {
            let text = crate::common::http_get(addr, "/metrics", &[]).await.body;
            if sample(&text, name).is_some_and(|v| v >= value) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
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
