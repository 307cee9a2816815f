//! Many tenants on disk cost nothing while idle: after their connections
//! close, every tenant unloads and closes its files.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use common::{Client, entries, within};
use inproc::{sqlite_config, start};
use std::path::Path;

/// Open file descriptors of this process that point into `dir`.
#[cfg(target_os = "linux")]
fn open_files_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn idle_tenants_hold_no_open_files() {
    const TENANTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(dir.path());
    config.idle_grace = std::time::Duration::ZERO;
    let server = start(config).await;
    let mut ids = Vec::new();
    for i in 0..TENANTS {
        let tenant = format!("tenant-{i}");
        let (mut c, id) = Client::connect_hello(server.addr, &tenant).await;
        assert_eq!(c.write("pk", 1, &entries(1..=2)).await, vec![1, 2]);
        c.request_changes("pk", 0).await; // a catch-up read opens the reader lane
        c.changes("pk", 2).await;
        ids.push(id);
    }
    within(
        "every tenant to unload",
        server.handle.wait_loaded_tenants(|n| *n == 0),
    )
    .await;
    let files = std::fs::read_dir(dir.path().join("tenants"))
        .unwrap()
        .count();
    assert!(files >= TENANTS, "one file per tenant ({files})");
    assert_eq!(
        open_files_under(dir.path()),
        1,
        "only the data dir lock stays open once tenants are idle"
    );
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), TENANTS, "every tenant has its own remoteId");
    // A tenant loads again on demand, with its data.
    let (mut c, id) = Client::connect_hello(server.addr, "tenant-7").await;
    assert_eq!(id, ids[7]);
    assert_eq!(c.write("pk", 2, &entries(2..=3)).await, vec![2, 3]);
    server.shutdown().await;
}
