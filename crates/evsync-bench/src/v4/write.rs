//! v4 write throughput: `writers` connections, each its own identity
//! (publicKey) writing its own store, keep up to `window` WriteSingle
//! requests in flight, each holding `batches` encrypted batches of
//! `entries` entries of `size` bytes. Acked entries/s, MB/s of ciphertext
//! and the ack latency (request sent → its Exit received), measured as the
//! v3 write scenario does.

use super::client::*;
use crate::common::*;
use crate::write::{Acked, DRAIN, Pending, window_throughput};
use evsync_core::proto::v4::{FromServer, RequestId};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
pub struct V4WriteParams {
    pub url: String,
    pub tenant: String,
    pub writers: usize,
    /// Batches per WriteSingle.
    pub batches: usize,
    /// Entries per batch.
    pub entries: usize,
    /// Bytes of ciphertext per entry.
    pub size: usize,
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub server_pid: Option<u32>,
}

pub async fn run(p: V4WriteParams) -> Result<Map<String, Value>> {
    let url = v4_url(&p.url, &p.tenant);
    let mut p = p;
    if p.window == 0 {
        p.window = crate::write::auto_window(p.batches * p.entries, p.size);
    }
    let mut conns = Vec::new();
    for w in 0..p.writers {
        let id = Identity::new(format!("{}-pk{w}", p.tenant));
        let conn = Conn::open(&url, &id)
            .await
            .map_err(|e| err(format!("writer {w}: {e}")))?;
        conns.push((conn, id));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = now_ns();
    let probe_start = t0 + p.warmup.as_nanos() as u64;
    let mut tasks = Vec::new();
    let max_inner = Arc::new(Mutex::new(0usize));
    for (mut conn, identity) in conns {
        let p = p.clone();
        let permits = Arc::new(Semaphore::new(p.window));
        let pending: Arc<Mutex<Pending>> = Arc::new(Mutex::new(HashMap::new()));
        let sender_done = Arc::new(AtomicBool::new(false));
        // Request ids continue the connection's (past Hello, Authenticate).
        let first_id = conn.id();
        let sender = {
            let sender_done = sender_done.clone();
            let permits = permits.clone();
            let pending = pending.clone();
            let stop = stop.clone();
            let max_inner = max_inner.clone();
            let mut sink = conn.sink;
            tokio::spawn(async move {
                let mut maker = BatchMaker::new(p.entries, p.size);
                let mut id = first_id;
                let mut ping = tokio::time::interval(PING_EVERY);
                ping.tick().await;
                loop {
                    let permit = tokio::select! {
                        permit = permits.acquire() => permit.map_err(|e| err(e.to_string()))?,
                        _ = ping.tick() => {
                            sink.send(Message::Binary(ping_frame())).await?;
                            continue;
                        }
                    };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    permit.forget();
                    id += 1;
                    let batches: Vec<_> = (0..p.batches).map(|_| maker.batch()).collect();
                    let bytes: usize = batches.iter().map(|b| b.encrypted_batch.len()).sum();
                    let (frame, inner) =
                        write_single_frame(id, &identity.public_key, STORE_ID, batches);
                    {
                        let mut m = max_inner.lock().expect("lock");
                        *m = (*m).max(inner);
                    }
                    pending
                        .lock()
                        .expect("lock")
                        .insert(id, (now_ns(), p.batches * p.entries, bytes));
                    sink.send(Message::Binary(frame)).await?;
                }
                sender_done.store(true, Ordering::Release);
                Ok::<_, BoxError>(sink)
            })
        };
        let stop_seen = stop.clone();
        let mut inbound = conn.inbound;
        let receiver = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut bad_acks = 0usize;
            let mut failed = 0usize;
            let mut first_failure: Option<String> = None;
            let mut stopped_at: Option<Instant> = None;
            // Wakes the loop to look at the flags while nothing arrives;
            // one timer for the run, not one per message (a `timeout`
            // per message was a tenth of the load generator's CPU).
            let mut look = tokio::time::interval(Duration::from_millis(200));
            look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if sender_done.load(Ordering::Acquire) && pending.lock().expect("lock").is_empty() {
                    break;
                }
                if stop_seen.load(Ordering::Relaxed) {
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > DRAIN {
                        break;
                    }
                }
                let msg = tokio::select! {
                    biased;
                    msg = inbound.next() => msg?,
                    _ = look.tick() => continue,
                };
                let (request_id, exit) = match msg {
                    FromServer::Exit { request_id, exit } => (request_id, exit),
                    FromServer::Defect { defect } => {
                        return Err(err(format!(
                            "the server sent a defect: {}",
                            String::from_utf8_lossy(&defect)
                        )));
                    }
                    _ => continue,
                };
                let now = now_ns();
                let RequestId::Number(id) = request_id else {
                    bad_acks += 1;
                    continue;
                };
                let Some((sent, entries, bytes)) = pending.lock().expect("lock").remove(&id) else {
                    bad_acks += 1;
                    continue;
                };
                permits.add_permits(1);
                match write_result(&exit) {
                    Ok(acks) => {
                        if acks.len() != entries {
                            bad_acks += 1;
                        }
                        acked.push(Acked {
                            sent_ns: sent,
                            acked_ns: now,
                            entries,
                            bytes,
                        });
                    }
                    Err(e) => {
                        failed += 1;
                        first_failure.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            let unacked = pending.lock().expect("lock").len();
            Ok::<_, BoxError>((acked, bad_acks, failed, first_failure, unacked, inbound))
        });
        tasks.push((sender, receiver));
    }
    let probe_at = Instant::now() + p.warmup;
    tokio::time::sleep_until(probe_at.into()).await;
    let probe = CpuProbe::start(p.server_pid);
    tokio::time::sleep(p.duration).await;
    let probe_end = now_ns();
    let mut m = Map::new();
    probe.finish(&mut m);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let (mut bad, mut failed, mut unacked) = (0, 0, 0);
    let mut failure: Option<String> = None;
    for (sender, receiver) in tasks {
        let (acked, b, f, first, left, _inbound) =
            receiver.await.map_err(|e| err(e.to_string()))??;
        sender.abort();
        bad += b;
        failed += f;
        unacked += left;
        if failure.is_none() {
            failure = first;
        }
        all.extend(acked);
    }
    if !window_throughput(&mut m, &all, probe_start, probe_end) {
        return Err(err(match failure {
            Some(f) => format!("no write acknowledged in the measured window; {f}"),
            None => "no write acknowledged in the measured window".into(),
        }));
    }
    m.insert("window".into(), json!(p.window));
    m.insert("bad_acks".into(), json!(bad));
    m.insert(
        "request_frame_bytes".into(),
        json!(*max_inner.lock().expect("lock")),
    );
    if failed > 0 {
        m.insert("failed_writes".into(), json!(failed));
        m.insert("first_failure".into(), json!(failure));
    }
    if unacked > 0 {
        m.insert("unacked_at_end".into(), json!(unacked));
    }
    Ok(m)
}
