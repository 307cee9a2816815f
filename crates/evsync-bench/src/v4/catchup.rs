//! v4 catch-up: a store of `entries` entries (batches of `batch_entries`
//! entries of `size` bytes) is written through the server's write path,
//! then a fresh connection asks for it from sequence 0 (`Changes`), acking
//! every Chunk; time from the request to the last entry, MB/s of
//! ciphertext.

use super::client::*;
use crate::common::*;
use evsync_core::proto::v4::FromServer;
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
pub struct V4CatchupParams {
    pub url: String,
    pub tenant: String,
    pub entries: u64,
    pub size: usize,
    /// Entries per batch (Effect's client packs ≤ 100).
    pub batch_entries: usize,
    /// Batches per WriteSingle while preloading (kept under 512,000 bytes).
    pub request_batches: usize,
    pub server_pid: Option<u32>,
}

pub async fn run(p: V4CatchupParams) -> Result<Map<String, Value>> {
    let url = v4_url(&p.url, &p.tenant);
    let identity = Identity::new(format!("{}-catchup", p.tenant));
    let mut m = Map::new();
    let t = Instant::now();
    preload(&url, &identity, &p)
        .await
        .map_err(|e| err(format!("preload through the write path: {e}")))?;
    let secs = t.elapsed().as_secs_f64();
    say(format!(
        "v4catchup: preloaded {} entries over the socket in {secs:.1} s",
        p.entries
    ));
    m.insert("preload_s".into(), json!(round1(secs)));
    let mut conn = Conn::open(&url, &identity).await?;
    let rss_before = p.server_pid.and_then(rss_kib);
    let probe = CpuProbe::start(p.server_pid);
    let start = Instant::now();
    let id = conn.id();
    conn.sink
        .send(Message::Binary(changes_frame(
            id,
            &identity.public_key,
            STORE_ID,
            0,
        )))
        .await?;
    let mut decoder = ChangesDecoder::default();
    let (mut received, mut bytes, mut chunks, mut batches) = (0u64, 0u64, 0u64, 0u64);
    let mut first_ns = None;
    let mut peak_rss = 0u64;
    let mut last_ping = Instant::now();
    while received < p.entries {
        let msg = conn
            .inbound
            .next()
            .await
            .map_err(|e| err(format!("after {received} entries: {e}")))?;
        if first_ns.is_none() {
            first_ns = Some(start.elapsed().as_nanos() as u64);
        }
        match msg {
            FromServer::Chunk { request_id, values } => {
                conn.sink
                    .send(Message::Binary(ack_frame(request_id)))
                    .await?;
                chunks += 1;
                for b in decoder.decode(&values)? {
                    batches += 1;
                    received += b.entry_ids.len() as u64;
                    bytes += b.encrypted_batch.len() as u64;
                }
                if chunks.is_multiple_of(16)
                    && let Some(rss) = p.server_pid.and_then(rss_kib)
                {
                    peak_rss = peak_rss.max(rss);
                }
            }
            FromServer::Exit { exit, .. } => {
                return Err(err(format!(
                    "the Changes stream ended after {received} entries: {}",
                    String::from_utf8_lossy(&exit)
                )));
            }
            FromServer::Defect { defect } => {
                return Err(err(format!("defect: {}", String::from_utf8_lossy(&defect))));
            }
            FromServer::Pong => {}
        }
        if last_ping.elapsed() >= PING_EVERY {
            conn.sink.send(Message::Binary(ping_frame())).await?;
            last_ping = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    probe.finish(&mut m);
    catchup_metrics(
        &mut m,
        CatchupTally {
            entries: received,
            payload_bytes: bytes,
            wire_bytes: conn.inbound.wire_bytes,
            secs,
            first_frame_ns: first_ns,
            rss_before_kib: rss_before,
            rss_peak_kib: peak_rss,
        },
    );
    m.insert("batches".into(), json!(batches));
    m.insert("chunks".into(), json!(chunks));
    Ok(m)
}

/// Writes the store through one connection, 4 requests in flight.
async fn preload(url: &str, identity: &Identity, p: &V4CatchupParams) -> Result<()> {
    let mut conn = Conn::open(url, identity).await?;
    let mut maker = BatchMaker::new(p.batch_entries.max(1), p.size);
    let per_request = (p.batch_entries.max(1) * p.request_batches.max(1)) as u64;
    let window = 4;
    let mut inflight = 0;
    let mut written = 0u64;
    let mut last_log = Instant::now();
    let mut last_ping = Instant::now();
    while written < p.entries || inflight > 0 {
        while inflight < window && written < p.entries {
            let n = (p.entries - written).min(per_request);
            let mut batches = Vec::new();
            let mut left = n as usize;
            while left > 0 {
                let mut b = maker.batch();
                if left < b.entry_ids.len() {
                    b.entry_ids.truncate(left);
                    b.encrypted_batch = b.encrypted_batch.slice(..left * p.size);
                }
                left -= b.entry_ids.len();
                batches.push(b);
            }
            let id = conn.id();
            let (frame, _) = write_single_frame(id, &identity.public_key, STORE_ID, batches);
            conn.sink.send(Message::Binary(frame)).await?;
            inflight += 1;
            written += n;
        }
        match conn.inbound.next().await? {
            FromServer::Exit { exit, .. } => {
                write_result(&exit)?;
                inflight -= 1;
            }
            FromServer::Defect { defect } => {
                return Err(err(format!("defect: {}", String::from_utf8_lossy(&defect))));
            }
            _ => {}
        }
        if last_ping.elapsed() >= PING_EVERY {
            conn.sink.send(Message::Binary(ping_frame())).await?;
            last_ping = Instant::now();
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            say(format!("v4catchup: preloading, {written} written"));
            last_log = Instant::now();
        }
    }
    Ok(())
}
