//! Scenario 2: fan-out. One writer sends one entry per WriteEntries at a
//! fixed rate; `subscribers` sockets of the same tenant subscribe to the
//! same publicKey. Each entry carries its send time (ns on this process's
//! clock) in its first 8 bytes; a subscriber's latency is receipt time minus
//! that stamp: write → commit → fan-out → delivery.

use crate::common::*;
use bytes::{BufMut, Bytes, BytesMut};
use evsync_core::wire::{EncryptedEntry, Request, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct FanoutParams {
    pub url: String,
    pub tenant: String,
    pub subscribers: usize,
    /// Entries per second.
    pub rate: u64,
    pub size: usize,
    pub duration: Duration,
    /// Sockets opened concurrently while setting up.
    pub connect_concurrency: usize,
    /// How long to wait for the last deliveries after the last write.
    pub drain: Duration,
    pub server_pid: Option<u32>,
}

/// Marks the warm-up entry (stamp 0): every subscriber must receive it
/// before the measured writes start, which proves its subscription is live.
const WARMUP_STAMP: u64 = 0;

pub async fn run(p: FanoutParams) -> Result<Map<String, Value>> {
    let url = tenant_url(&p.url, &p.tenant);
    let key = format!("{}-fanout", p.tenant);
    let warmed = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    // Changes messages received after the warm-up: deliveries per message
    // shows how much the server batched.
    let messages = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(p.connect_concurrency.max(1)));
    let setup = Instant::now();
    let mut subs = Vec::with_capacity(p.subscribers);
    // Latencies per subscriber, readable even if it never finishes.
    let mut lats = Vec::with_capacity(p.subscribers);
    for _ in 0..p.subscribers {
        let (url, key, warmed, delivered, messages, gate) = (
            url.clone(),
            key.clone(),
            warmed.clone(),
            delivered.clone(),
            messages.clone(),
            gate.clone(),
        );
        let lat = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        lats.push(lat.clone());
        subs.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            let (mut sink, mut stream, mut incoming) = connect_hello(&url).await?;
            let req = Request::RequestChanges {
                public_key: key.clone(),
                start_sequence: 0,
            };
            send_frames(&mut sink, frames_for(&req, &mut 0)).await?;
            drop(permit);
            let mut seen_warmup = false;
            while let Some(msg) = stream.next().await {
                let msg = msg.map_err(BoxError::from)?;
                let now = now_ns();
                if let Some(Response::Changes { entries, .. }) = incoming.decode(msg)? {
                    if seen_warmup {
                        messages.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut batch = Vec::with_capacity(entries.len());
                    let mut done = false;
                    for e in entries {
                        let stamp = stamp_of(&e.encrypted_entry);
                        if stamp == WARMUP_STAMP {
                            if !seen_warmup {
                                seen_warmup = true;
                                warmed.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if stamp == u64::MAX {
                            // End marker: the writer is done.
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
                        return Ok(sink);
                    }
                }
            }
            Err(err("server closed a subscriber"))
        }));
    }
    // The writer.
    let (mut wsink, mut wstream, mut wincoming) = connect_hello(&url).await?;
    let mut payloads = Payloads::new(p.size.max(8));
    let mut id: i64 = 0;
    let mut write = |stamp: u64, payloads: &mut Payloads| {
        id += 1;
        let mut bytes = BytesMut::with_capacity(p.size.max(8));
        bytes.put_u64(stamp);
        bytes.extend_from_slice(&payloads.payload()[8..]);
        Request::WriteEntries {
            public_key: key.clone(),
            id,
            iv: Payloads::iv(),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: payloads.entry_id(),
                encrypted_entry: bytes.freeze(),
            }],
        }
    };
    // Warm-up: repeat the stamp-0 entry until every subscriber saw one.
    let warm_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = write(WARMUP_STAMP, &mut payloads);
        send_frames(&mut wsink, frames_for(&req, &mut 0)).await?;
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
        "fanout: {} subscribers live after {setup_secs:.1} s",
        p.subscribers
    ));
    // Acks are read (and dropped) by a task so the writer's socket drains.
    let acks = tokio::spawn(async move {
        while let Some(Ok(msg)) = wstream.next().await {
            let _ = wincoming.decode(msg);
        }
    });
    let probe = CpuProbe::start(p.server_pid);
    let start = Instant::now();
    let interval_ns = 1_000_000_000 / p.rate.max(1);
    let total = (p.duration.as_secs_f64() * p.rate as f64).round() as u64;
    let mut sent = 0u64;
    while sent < total {
        let due = start + Duration::from_nanos(interval_ns * sent);
        tokio::time::sleep_until(due.into()).await;
        let req = write(now_ns().max(1), &mut payloads);
        send_frames(&mut wsink, frames_for(&req, &mut 0)).await?;
        sent += 1;
    }
    let send_secs = start.elapsed().as_secs_f64();
    // Wait for the deliveries to land, then send the end marker.
    let expected = sent * p.subscribers as u64;
    let drain_deadline = Instant::now() + p.drain;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivery_secs = start.elapsed().as_secs_f64();
    let mut m = Map::new();
    probe.finish(&mut m);
    let got = delivered.load(Ordering::Relaxed);
    let req = write(u64::MAX, &mut payloads);
    send_frames(&mut wsink, frames_for(&req, &mut 0)).await?;
    let end_deadline = Instant::now() + Duration::from_secs(10);
    let mut unfinished = 0usize;
    for t in subs {
        let left = end_deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(Ok(Ok(_sink))) => {}
            _ => unfinished += 1,
        }
    }
    acks.abort();
    fanout_metrics(
        &mut m,
        FanoutTally {
            subscribers: p.subscribers,
            rate: p.rate,
            sent,
            send_secs,
            delivered: got,
            expected,
            messages: messages.load(Ordering::Relaxed),
            delivery_secs,
            setup_secs,
            latencies: &lats,
        },
    );
    if unfinished > 0 {
        m.insert("subscribers_unfinished".into(), json!(unfinished));
    }
    Ok(m)
}

fn stamp_of(payload: &Bytes) -> u64 {
    if payload.len() < 8 {
        return u64::MAX - 1;
    }
    u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"))
}
