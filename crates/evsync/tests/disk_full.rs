//! Disk full (issue 17): the data directory on a small tmpfs fills up under
//! write load. What must hold: nothing that was not committed is acked; the
//! writer is closed with 1011 and the reason; a reader keeps working; the
//! server stays up; when space returns, writes succeed again without a
//! restart; afterwards every acked entry is intact at its sequence and
//! `PRAGMA integrity_check` is ok.
//!
//! Needs to mount a tmpfs (root, as on CI). Where it cannot, the test says
//! so on stderr and passes only outside CI: under `CI=true` it fails.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod outputs;
mod process;

use common::{Client, entry, write_request};
use evsync_core::storage::{ReadLimit, Storage};
use evsync_core::wire::Response;
use outputs::metric_at_least;
use process::{Serve, within};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tmpfs, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(SmallDisk {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

const ENTRY_BYTES: usize = 16 * 1024;

/// A tmpfs of `size` at `dir`, or `None` (said on stderr) where none can
/// be mounted; under `CI=true` that fails the test instead.
fn small_disk(dir: &Path, size: &str) -> Option<SmallDisk> {
    match SmallDisk::mount(dir, size) {
        Ok(disk) => Some(disk),
        Err(reason) => {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true: the disk-full test must run, but a tmpfs cannot be mounted here: {reason}"
            );
            eprintln!("SKIPPED disk-full test: cannot mount a tmpfs ({reason}); run it as root");
            None
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_keeps_readers_and_recovers_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("small");
    let Some(disk) = small_disk(&mnt, "3m") else {
        return;
    };
    // ballast: removed later to give space back
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 1024 * 1024]).unwrap();
    let data = mnt.join("data");
    let server = Serve::start(&["--data", data.to_str().unwrap()], &[]).await;

    // a reader, subscribed to the log being written
    let (mut reader, _) = Client::connect_hello(server.addr, "acme").await;
    reader.request_changes("pk", 1).await;

    // write until the disk is full: every Ack is recorded
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let mut acked: Vec<(u64, u64)> = Vec::new(); // (entry n, sequence)
    let mut n = 0u64;
    let closed = within("the disk to fill up", async {
        loop {
            n += 1;
            writer
                .send(&write_request("pk", n as i64, &[entry(n, ENTRY_BYTES)]))
                .await;
            loop {
                match writer.recv_or_close().await {
                    Ok(Response::Ack {
                        id,
                        sequence_numbers,
                    }) if id == n as i64 => {
                        acked.push((n, sequence_numbers[0]));
                        break;
                    }
                    Ok(_) => continue,
                    Err(closed) => return closed,
                }
            }
        }
    })
    .await;
    assert!(
        acked.len() > 10,
        "some writes fit before the disk filled: {}",
        acked.len()
    );
    assert_eq!(
        closed.code,
        Some(1011),
        "the writer is closed with 1011: {closed:?}"
    );
    assert!(
        closed.reason.contains("nothing acknowledged"),
        "the close says nothing was acked: {:?}",
        closed.reason
    );
    eprintln!(
        "disk full after {} acked entries of {ENTRY_BYTES} B; writer closed: {} {:?}",
        acked.len(),
        closed.code.unwrap_or(0),
        closed.reason
    );
    let sequences: Vec<u64> = acked.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        sequences,
        (1..=acked.len() as u64).collect::<Vec<_>>(),
        "acks gapless"
    );

    // the server is up and the reader still works: it receives every acked
    // entry and answers a ping
    let health = common::http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let mut seen = 0usize;
    for response in reader.barrier(1).await {
        if let Response::Changes { entries, .. } = response {
            seen += entries.len();
        }
    }
    if seen < acked.len() {
        seen += reader.changes("pk", acked.len() - seen).await.len();
    }
    assert!(
        seen >= acked.len(),
        "the reader got the acked entries: {seen} of {}",
        acked.len()
    );

    // space returns: a new writer succeeds, no restart
    std::fs::remove_file(&ballast).unwrap();
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let next = n + 1;
    let got = writer.write("pk", 1, &[entry(next, 1024)]).await;
    assert_eq!(got.len(), 1);
    // the failed entry `n` was never acked; whatever sequence the new one
    // got continues the acked ones without a gap
    assert_eq!(
        got[0],
        acked.len() as u64 + 1,
        "the next sequence after the acked ones"
    );
    acked.push((next, got[0]));
    drop(writer);
    drop(reader);
    server.stop_and_collect().await;

    // every acked entry intact at its sequence, and the file is sound
    let file = evsync_storage_sqlite::tenant_path(&data.join("tenants"), "acme");
    let mut store = evsync_storage_sqlite::SqliteStorage::open(&file).unwrap();
    let all = store
        .read(
            "pk",
            1,
            ReadLimit {
                max_entries: usize::MAX,
                max_bytes: usize::MAX,
            },
        )
        .unwrap();
    assert_eq!(
        all.len(),
        acked.len(),
        "the log holds exactly the acked entries"
    );
    for ((n, sequence), stored) in acked.iter().zip(&all) {
        let size = if *n == next { 1024 } else { ENTRY_BYTES };
        let expected = entry(*n, size);
        assert_eq!(stored.sequence, *sequence);
        assert_eq!(stored.entry_id, expected.entry_id, "entry {n}");
        assert_eq!(
            stored.encrypted_entry, expected.encrypted_entry,
            "entry {n}'s bytes"
        );
    }
    drop(store);
    outputs::assert_integrity(&file);
    drop(disk);
}

/// The size of `path` (0 while it does not exist).
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Writes entries `n + 1, …` of `size` bytes, one per request, each acked
/// at its number, until `wal` holds `target` bytes.
async fn write_until(writer: &mut Client, n: &mut u64, wal: &Path, target: u64, size: usize) {
    while file_len(wal) < target {
        *n += 1;
        let acked = writer.write("pk", *n as i64, &[entry(*n, size)]).await;
        assert_eq!(acked, vec![*n]);
    }
}

/// One WAL frame: a 4 KiB page and its 24-byte header.
const WAL_FRAME: u64 = 4096 + 24;

#[tokio::test]
async fn a_checkpoint_on_a_full_disk_fails_loses_nothing_and_runs_again_when_space_returns() {
    const BIG: usize = 64 * 1024;
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("small");
    let Some(disk) = small_disk(&mnt, "24m") else {
        return;
    };
    // About 6 MiB left: room for a WAL of 1,000 pages (4 MiB), not for
    // copying those pages into the tenant's file as well.
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 18 * 1024 * 1024]).unwrap();
    let data = mnt.join("data");
    let file = evsync_storage_sqlite::tenant_path(&data.join("tenants"), "acme");
    let wal = file.with_extension("sqlite-wal");
    let mut server = Serve::start(&["--data", data.to_str().unwrap()], &[]).await;
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let mut n = 0u64;
    // Up to the 1,000 pages at which a checkpoint starts, and no further:
    // nothing else writes while it runs out of space.
    write_until(&mut writer, &mut n, &wal, 1000 * WAL_FRAME, BIG).await;
    metric_at_least(
        server.addr,
        "evsync_wal_checkpoints_total{outcome=\"failed\"}",
        1.0,
    )
    .await;
    let line = server.line_with(&["WAL checkpoint failed"]).await;
    assert!(line.contains("acme"), "{line}");

    // Space returns: the writer goes on, and the next checkpoint (due
    // 1,000 pages after the one that failed began) copies everything.
    std::fs::remove_file(&ballast).unwrap();
    let target = file_len(&wal) + 1000 * WAL_FRAME;
    write_until(&mut writer, &mut n, &wal, target, BIG).await;
    metric_at_least(
        server.addr,
        "evsync_wal_checkpoints_total{outcome=\"done\"}",
        1.0,
    )
    .await;
    assert!(
        file_len(&file) > 4 * 1024 * 1024,
        "the WAL's pages are in the file: {} bytes",
        file_len(&file)
    );
    let (mut reader, _) = Client::connect_hello(server.addr, "acme").await;
    reader.request_changes("pk", 1).await;
    let all = reader.changes("pk", n as usize).await;
    assert_eq!(all.len(), n as usize);
    for (i, stored) in all.iter().enumerate() {
        let expected = entry(i as u64 + 1, BIG);
        assert_eq!(stored.sequence, i as u64 + 1);
        assert_eq!(
            stored.encrypted_entry,
            expected.encrypted_entry,
            "entry {}",
            i + 1
        );
    }
    drop((reader, writer));
    server.stop_and_collect().await;
    outputs::assert_integrity(&file);
    drop(disk);
}
