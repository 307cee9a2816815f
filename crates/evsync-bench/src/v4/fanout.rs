//! v4 fan-out: `subscribers` connections, all authenticated as one
//! identity, follow one store (`Changes` from 0, every Chunk acked as
//! Effect's client does); a writer on its own connection sends one batch
//! of one entry per WriteSingle at a fixed rate. Each batch's ciphertext
//! starts with the time it was due to be sent (ns on this process's
//! clock); latency = receipt − stamp, per delivery: write → commit →
//! fan-out → socket, plus any wait of the writer for the in-flight cap.

use super::client::*;
use crate::common::*;
use evsync_core::proto::v4::FromServer;
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Debug)]
pub struct V4FanoutParams {
    pub url: String,
    pub tenant: String,
    pub subscribers: usize,
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    pub connect_concurrency: usize,
    pub drain: Duration,
    pub server_pid: Option<u32>,
}

const WARMUP_STAMP: u64 = 0;
/// Writes the writer keeps awaiting their Exit: evsync's limit per
/// connection (`SessionConfig::max_pending_writes`, 64), past which it
/// closes the connection (1008). Effect's client has one write in flight
/// (four WriteChunked pieces). A write that has to wait is counted
/// (`writer_waits`); every write is stamped with the time it was due, so
/// the wait is part of its latency (`fanout` stamps the send time, which
/// is the same there: its writer never waits).
const MAX_IN_FLIGHT: usize = 64;
const END_STAMP: u64 = u64::MAX;

pub async fn run(p: V4FanoutParams) -> Result<Map<String, Value>> {
    let url = v4_url(&p.url, &p.tenant);
    let identity = Identity::new(format!("{}-fanout", p.tenant));
    let warmed = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let chunks = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(p.connect_concurrency.max(1)));
    let setup = Instant::now();
    let mut subs = Vec::with_capacity(p.subscribers);
    let mut lats = Vec::with_capacity(p.subscribers);
    for _ in 0..p.subscribers {
        let (url, identity, warmed, delivered, chunks, gate) = (
            url.clone(),
            identity.clone(),
            warmed.clone(),
            delivered.clone(),
            chunks.clone(),
            gate.clone(),
        );
        let lat = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        lats.push(lat.clone());
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            let mut conn = Conn::open(&url, &identity).await?;
            let id = conn.id();
            conn.sink
                .send(Message::Binary(changes_frame(
                    id,
                    &identity.public_key,
                    STORE_ID,
                    0,
                )))
                .await?;
            drop(permit);
            let mut decoder = ChangesDecoder::default();
            let mut seen_warmup = false;
            let mut ping = tokio::time::interval(PING_EVERY);
            ping.tick().await;
            loop {
                let msg = tokio::select! {
                    msg = conn.inbound.next() => msg?,
                    _ = ping.tick() => {
                        conn.sink.send(Message::Binary(ping_frame())).await?;
                        continue;
                    }
                };
                let now = now_ns();
                let (request_id, values) = match msg {
                    FromServer::Chunk { request_id, values } => (request_id, values),
                    FromServer::Exit { exit, .. } => {
                        return Err(err(format!(
                            "the Changes stream ended: {}",
                            String::from_utf8_lossy(&exit)
                        )));
                    }
                    FromServer::Defect { defect } => {
                        return Err(err(format!("defect: {}", String::from_utf8_lossy(&defect))));
                    }
                    FromServer::Pong => continue,
                };
                // Effect's client acks once it has queued the Chunk.
                conn.sink
                    .send(Message::Binary(ack_frame(request_id)))
                    .await?;
                if seen_warmup {
                    chunks.fetch_add(1, Ordering::Relaxed);
                }
                let mut batch = Vec::new();
                let mut done = false;
                for b in decoder.decode(&values)? {
                    let stamp = stamp_of(&b.encrypted_batch);
                    if stamp == WARMUP_STAMP {
                        if !seen_warmup {
                            seen_warmup = true;
                            warmed.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if stamp == END_STAMP {
                        done = true;
                    } else {
                        batch.push(now.saturating_sub(stamp));
                    }
                }
                if !batch.is_empty() {
                    delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    lat.lock().expect("lock").extend_from_slice(&batch);
                }
                if done {
                    return Ok::<_, BoxError>(());
                }
            }
        }));
    }
    // The writer.
    let mut conn = Conn::open(&url, &identity).await?;
    let mut maker = BatchMaker::new(1, p.size.max(8));
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    let mut warmups = 0usize;
    loop {
        warmups += 1;
        let id = conn.id();
        let frame = stamped_frame(id, &identity, &mut maker, WARMUP_STAMP);
        conn.sink.send(Message::Binary(frame)).await?;
        let wait_until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < wait_until && warmed.load(Ordering::Relaxed) < p.subscribers {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if warmed.load(Ordering::Relaxed) >= p.subscribers {
            break;
        }
        if let Some(failed) = subs.iter().position(|t| t.is_finished()) {
            let t = subs.swap_remove(failed);
            return Err(match t.await {
                Ok(Err(e)) => err(format!("subscriber failed while setting up: {e}")),
                _ => err("subscriber ended while setting up"),
            });
        }
        if Instant::now() > warm_deadline {
            return Err(err(format!(
                "only {} of {} subscribers live after 60 s",
                warmed.load(Ordering::Relaxed),
                p.subscribers
            )));
        }
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    say(format!(
        "v4fanout: {} subscribers live after {setup_secs:.1} s",
        p.subscribers
    ));
    // The writer's Exits are read (and checked) by a task.
    let write_errors = Arc::new(AtomicU64::new(0));
    let mut next_id = conn.id();
    let mut inbound = conn.inbound;
    let errs = write_errors.clone();
    // At most MAX_IN_FLIGHT writes awaiting their Exit (evsync closes a
    // connection with more than 64 awaiting their commit).
    // The warm-up writes are in flight too until their Exits are read here.
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT.saturating_sub(warmups)));
    let freed = in_flight.clone();
    let mut exits = tokio::spawn(async move {
        let why = loop {
            match inbound.next().await {
                Ok(FromServer::Exit { exit, .. }) => {
                    freed.add_permits(1);
                    if write_result(&exit).is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(e) => break e.to_string(),
            }
        };
        // A writer waiting for a permit fails instead of waiting forever.
        freed.close();
        why
    });
    let mut sink = conn.sink;
    let probe = CpuProbe::start(p.server_pid);
    let start = Instant::now();
    let interval_ns = 1_000_000_000 / p.rate.max(1);
    let total = (p.duration.as_secs_f64() * p.rate as f64).round() as u64;
    let mut sent = 0u64;
    let mut last_ping = Instant::now();
    let mut stamp_frame = |stamp: u64| {
        next_id += 1;
        stamped_frame(next_id, &identity, &mut maker, stamp)
    };
    let start_ns = now_ns();
    let (mut waits, mut wait_max) = (0u64, Duration::ZERO);
    let mut late = Vec::with_capacity(total as usize);
    while sent < total {
        let due = start + Duration::from_nanos(interval_ns * sent);
        let due_ns = start_ns + interval_ns * sent;
        tokio::time::sleep_until(due.into()).await;
        match in_flight.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(_) => {
                let t = Instant::now();
                match in_flight.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => {
                        let why = (&mut exits).await.unwrap_or_else(|e| e.to_string());
                        return Err(err(format!(
                            "the writer's connection ended after {sent} writes: {why}"
                        )));
                    }
                }
                waits += 1;
                wait_max = wait_max.max(t.elapsed());
            }
        }
        // Stamped with the time the write was due, so that a write held
        // back by the in-flight cap (or a late timer) counts its wait.
        late.push(now_ns().saturating_sub(due_ns));
        let frame = stamp_frame(due_ns.max(1));
        if let Err(e) = sink.send(Message::Binary(frame)).await {
            let why = match tokio::time::timeout(Duration::from_secs(1), &mut exits).await {
                Ok(Ok(why)) => why,
                _ => String::new(),
            };
            return Err(err(format!(
                "the writer could not send after {sent} writes: {e}; {why}"
            )));
        }
        sent += 1;
        if last_ping.elapsed() >= PING_EVERY {
            sink.send(Message::Binary(ping_frame())).await?;
            last_ping = Instant::now();
        }
    }
    let send_secs = start.elapsed().as_secs_f64();
    let expected = sent * p.subscribers as u64;
    let drain_deadline = Instant::now() + p.drain;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if last_ping.elapsed() >= PING_EVERY {
            sink.send(Message::Binary(ping_frame())).await?;
            last_ping = Instant::now();
        }
    }
    let delivery_secs = start.elapsed().as_secs_f64();
    let mut m = Map::new();
    probe.finish(&mut m);
    let got = delivered.load(Ordering::Relaxed);
    sink.send(Message::Binary(stamp_frame(END_STAMP))).await?;
    let end_deadline = Instant::now() + Duration::from_secs(10);
    let mut unfinished = 0usize;
    let mut sub_error: Option<String> = None;
    for t in subs {
        let left = end_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                unfinished += 1;
                sub_error.get_or_insert_with(|| e.to_string());
            }
            _ => unfinished += 1,
        }
    }
    exits.abort();
    fanout_metrics(
        &mut m,
        FanoutTally {
            subscribers: p.subscribers,
            rate: p.rate,
            sent,
            send_secs,
            delivered: got,
            expected,
            messages: chunks.load(Ordering::Relaxed),
            delivery_secs,
            setup_secs,
            latencies: &lats,
        },
    );
    late.sort_unstable();
    m.insert(
        "writer_late_p99_ms".into(),
        json!(ms(percentile(&late, 99.0))),
    );
    m.insert(
        "writer_late_max_ms".into(),
        json!(ms(late.last().copied().unwrap_or(0))),
    );
    if waits > 0 {
        m.insert("writer_waits".into(), json!(waits));
        m.insert(
            "writer_wait_max_ms".into(),
            json!(round3(wait_max.as_secs_f64() * 1e3)),
        );
    }
    let we = write_errors.load(Ordering::Relaxed);
    if we > 0 {
        m.insert("failed_writes".into(), json!(we));
    }
    if unfinished > 0 {
        m.insert("subscribers_unfinished".into(), json!(unfinished));
        if let Some(e) = sub_error {
            m.insert("subscriber_error".into(), json!(e));
        }
    }
    Ok(m)
}

fn stamp_of(payload: &bytes::Bytes) -> u64 {
    if payload.len() < 8 {
        return u64::MAX - 1;
    }
    u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"))
}

/// A WriteSingle of one batch of one entry whose ciphertext starts with
/// `stamp`.
fn stamped_frame(id: i64, identity: &Identity, maker: &mut BatchMaker, stamp: u64) -> bytes::Bytes {
    write_single_frame(
        id,
        &identity.public_key,
        STORE_ID,
        vec![maker.stamped(stamp)],
    )
    .0
}
