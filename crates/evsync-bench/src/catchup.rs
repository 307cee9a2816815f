//! Scenario 3: catch-up. A new subscriber asks for a whole log
//! (`startSequence` 0) and receives every entry; time from RequestChanges to
//! the last entry, MB/s of entry payload.
//!
//! The log is preloaded either through the server's write path (`ws`:
//! batches over one socket, the only way into a memory server) or before
//! the server starts, straight into its file (`preload` subcommand, see
//! [`preload_file`]): evsync's tenant file through evsync-storage-sqlite,
//! or Effect's SqlEventLogServer layout through rusqlite.

use crate::common::*;
use evsync_core::storage::{AppendBatch, Storage};
use evsync_core::wire::{Request, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct CatchupParams {
    pub url: String,
    pub tenant: String,
    pub public_key: String,
    pub entries: u64,
    pub size: usize,
    /// Preload through the server's write path first.
    pub preload_ws: bool,
    pub preload_batch: usize,
    pub server_pid: Option<u32>,
}

pub async fn run(p: CatchupParams) -> Result<Map<String, Value>> {
    let url = tenant_url(&p.url, &p.tenant);
    let mut m = Map::new();
    if p.preload_ws {
        let t = Instant::now();
        preload_ws(&url, &p)
            .await
            .map_err(|e| err(format!("preload through the write path: {e}")))?;
        let secs = t.elapsed().as_secs_f64();
        say(format!(
            "catchup: preloaded {} entries over the socket in {secs:.1} s",
            p.entries
        ));
        m.insert("preload_s".into(), json!(round1(secs)));
        m.insert("preload".into(), json!("write path"));
    } else {
        m.insert("preload".into(), json!("file"));
    }
    let (mut sink, mut stream, mut incoming) = connect_hello(&url).await?;
    let rss_before = p.server_pid.and_then(rss_kib);
    let probe = CpuProbe::start(p.server_pid);
    let start = Instant::now();
    let req = Request::RequestChanges {
        public_key: p.public_key.clone(),
        start_sequence: 0,
    };
    send_frames(&mut sink, frames_for(&req, &mut 0)).await?;
    let mut received = 0u64;
    let mut payload_bytes = 0u64;
    let mut first_ns = None;
    let mut messages = 0u64;
    let mut peak_rss = 0u64;
    while received < p.entries {
        let msg = stream
            .next()
            .await
            .ok_or_else(|| err(format!("server closed after {received} entries")))??;
        if first_ns.is_none() {
            first_ns = Some(start.elapsed().as_nanos() as u64);
        }
        if let Some(Response::Changes { entries, .. }) = incoming.decode(msg)? {
            messages += 1;
            received += entries.len() as u64;
            payload_bytes += entries
                .iter()
                .map(|e| e.encrypted_entry.len() as u64)
                .sum::<u64>();
            if messages.is_multiple_of(64)
                && let Some(rss) = p.server_pid.and_then(rss_kib)
            {
                peak_rss = peak_rss.max(rss);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    probe.finish(&mut m);
    catchup_metrics(
        &mut m,
        CatchupTally {
            entries: received,
            payload_bytes,
            wire_bytes: incoming.wire_bytes,
            secs,
            first_frame_ns: first_ns,
            rss_before_kib: rss_before,
            rss_peak_kib: peak_rss,
        },
    );
    m.insert("changes_messages".into(), json!(messages));
    Ok(m)
}

/// Writes the log through one socket, `window` requests in flight.
async fn preload_ws(url: &str, p: &CatchupParams) -> Result<()> {
    let (mut sink, mut stream, mut incoming) = connect_hello(url).await?;
    let mut payloads = Payloads::new(p.size);
    let window = 4;
    let mut inflight = 0;
    let mut written = 0u64;
    let mut id = 0i64;
    let mut chunk_id = 0i64;
    let mut last_log = Instant::now();
    while written < p.entries || inflight > 0 {
        while inflight < window && written < p.entries {
            let n = (p.entries - written).min(p.preload_batch as u64) as usize;
            id += 1;
            let req = Request::WriteEntries {
                public_key: p.public_key.clone(),
                id,
                iv: Payloads::iv(),
                encrypted_entries: (0..n).map(|_| payloads.entry()).collect(),
            };
            send_frames(&mut sink, frames_for(&req, &mut chunk_id)).await?;
            inflight += 1;
            written += n as u64;
        }
        if let Response::Ack { .. } = next_response(&mut stream, &mut incoming).await? {
            inflight -= 1;
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            say(format!("catchup: preloading, {written} written"));
            last_log = Instant::now();
        }
    }
    Ok(())
}

/// Layout of the file to preload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// evsync's tenant store, written through evsync-storage-sqlite.
    Evsync,
    /// Effect's SqlEventLogServer tables (`effect_events_<hash>`).
    Effect,
}

/// Writes `entries` entries of `size` random bytes to `public_key`'s log in
/// a tenant file, before the server starts. Returns the file written.
pub fn preload_file(
    format: FileFormat,
    data: &Path,
    tenant: &str,
    public_key: &str,
    entries: u64,
    size: usize,
) -> Result<PathBuf> {
    let mut payloads = Payloads::new(size);
    let batch = 10_000u64;
    match format {
        FileFormat::Evsync => {
            let dir = data.join("tenants");
            std::fs::create_dir_all(&dir)?;
            let path = evsync_storage_sqlite::tenant_path(&dir, tenant);
            let mut store = evsync_storage_sqlite::SqliteStorage::open(&path)?;
            store.remote_id()?;
            let mut written = 0;
            while written < entries {
                let n = (entries - written).min(batch);
                let b = AppendBatch {
                    public_key: public_key.to_owned(),
                    iv: Payloads::iv(),
                    entries: (0..n).map(|_| payloads.entry()).collect(),
                };
                store.append(std::slice::from_ref(&b))?;
                written += n;
            }
            Ok(path)
        }
        FileFormat::Effect => {
            std::fs::create_dir_all(data)?;
            let path = data.join(format!("{tenant}.sqlite"));
            let mut conn = rusqlite::Connection::open(&path)?;
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")?;
            let hash = hex(&sha2::Sha256::digest(public_key.as_bytes()));
            let table = format!("effect_events_{}", &hash[..16]);
            // The DDL of @effect/sql's SqlEventLogServer (sqlite dialect).
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS effect_remote_id (remote_id BLOB PRIMARY KEY);
                 CREATE TABLE IF NOT EXISTS {table} (
                   sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                   iv BLOB NOT NULL,
                   entry_id BLOB UNIQUE NOT NULL,
                   encrypted_entry BLOB NOT NULL
                 );"
            ))?;
            let has_id: i64 =
                conn.query_row("SELECT count(*) FROM effect_remote_id", [], |r| r.get(0))?;
            if has_id == 0 {
                let mut id = [0u8; 16];
                fill_random(&mut id);
                id[6] = (id[6] & 0x0f) | 0x40;
                id[8] = (id[8] & 0x3f) | 0x80;
                conn.execute(
                    "INSERT INTO effect_remote_id (remote_id) VALUES (?1)",
                    [&id[..]],
                )?;
            }
            let mut written = 0;
            while written < entries {
                let n = (entries - written).min(batch);
                let tx = conn.transaction()?;
                {
                    let iv = Payloads::iv();
                    let mut stmt = tx.prepare_cached(&format!(
                        "INSERT INTO {table} (iv, entry_id, encrypted_entry) VALUES (?1, ?2, ?3)"
                    ))?;
                    for _ in 0..n {
                        let e = payloads.entry();
                        stmt.execute(rusqlite::params![
                            &iv[..],
                            &e.entry_id[..],
                            &e.encrypted_entry[..]
                        ])?;
                    }
                }
                tx.commit()?;
                written += n;
            }
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
            Ok(path)
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
