//! SQLite WAL checkpoints beside a tenant's writer, with the real binary:
//! a tenant written past SQLite's 1,000-page checkpoint point has its WAL
//! copied into its database file by a background checkpoint (counted in
//! `/metrics`), its WAL stays bounded, and every acknowledged entry is
//! read back, before and after a restart, from a file that passes
//! `PRAGMA integrity_check`.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod outputs;
mod process;

use common::{Client, entry, http_get};
use evsync_storage_sqlite::checkpoint::BACKSTOP_PAGES;
use outputs::{assert_integrity, metric_at_least, sample};
use process::Serve;

const WRITES: u64 = 60;
const PER_WRITE: u64 = 40;
const SIZE: usize = 4096;

#[tokio::test]
async fn a_tenants_wal_is_checkpointed_beside_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let file = evsync_storage_sqlite::tenant_path(&dir.path().join("tenants"), "acme");
    let server = Serve::start(&["--data", &data], &[]).await;
    let mut writer = Client::connect(server.addr, "acme").await;
    writer.hello().await;
    // 2,400 entries of 4 KiB: about 2,400 WAL pages, past two checkpoints.
    for i in 0..WRITES {
        let batch: Vec<_> = (i * PER_WRITE + 1..=(i + 1) * PER_WRITE)
            .map(|n| entry(n, SIZE))
            .collect();
        let acked = writer.write("pk", i as i64 + 1, &batch).await;
        assert_eq!(
            acked,
            ((i * PER_WRITE + 1)..=(i + 1) * PER_WRITE).collect::<Vec<_>>()
        );
    }
    metric_at_least(
        server.addr,
        "evsync_wal_checkpoints_total{outcome=\"done\"}",
        1.0,
    )
    .await;
    let text = http_get(server.addr, "/metrics", &[]).await.body;
    assert!(sample(&text, "evsync_wal_checkpoint_duration_seconds_count").unwrap() >= 1.0);
    assert_eq!(
        sample(&text, "evsync_wal_checkpoints_total{outcome=\"failed\"}"),
        None,
        "no checkpoint failed"
    );
    // The pages are in the database file itself while the server runs,
    // not only in its WAL: the copy happened.
    let main = std::fs::metadata(&file).unwrap().len();
    assert!(main > 4 << 20, "database file {main} bytes");
    let wal = std::fs::metadata(file.with_extension("sqlite-wal"))
        .unwrap()
        .len();
    assert!(wal < u64::from(BACKSTOP_PAGES) * 4200, "WAL {wal} bytes");

    let total = (WRITES * PER_WRITE) as usize;
    let mut reader = Client::connect(server.addr, "acme").await;
    reader.hello().await;
    reader.request_changes("pk", 0).await;
    let got = reader.changes("pk", total).await;
    assert_eq!(got.len(), total);
    assert!(got.iter().all(|e| e.encrypted_entry.len() == SIZE));
    drop((reader, writer));
    server.stop_and_collect().await;

    assert_integrity(&file);
    let server = Serve::start(&["--data", &data], &[]).await;
    let mut reader = Client::connect(server.addr, "acme").await;
    reader.hello().await;
    reader.request_changes("pk", 0).await;
    assert_eq!(reader.changes("pk", total).await.len(), total);
    drop(reader);
    server.stop_and_collect().await;
}
