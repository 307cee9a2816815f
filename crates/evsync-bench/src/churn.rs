//! Scenario: reconnect churn, the agent SDK's habit. Its SyncService drops
//! and reopens the socket every `syncInterval`, so each replica does,
//! again and again: connect, `Hello`, `RequestChanges` near the head of its
//! log, an empty `WriteEntries`, `Ack`. `concurrency` loops run exactly
//! that cycle on a fresh socket each time (Nagle off, as Effect's client
//! has it) and close it; cycles/s and the cycle's latency (connect to the
//! last answer) are measured.
//!
//! The log holds `preload` entries written before the loops start; each
//! cycle asks from the head, so it receives one entry (the one it already
//! has, as Effect's client asks) and then its Ack.

use crate::common::*;
use evsync_core::wire::{Request, Response};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct ChurnParams {
    pub url: String,
    pub tenant: String,
    pub concurrency: usize,
    /// Entries written to the log before the loops start.
    pub preload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub server_pid: Option<u32>,
}

/// Bytes of a cycle socket's read buffer: Hello, one small entry, Ack.
const READ_BUFFER: usize = 4096;

/// One finished cycle: when it started, and how long after that the
/// WebSocket was open, `Hello` had arrived and the last answer had.
type Cycle = (Instant, Phases);

#[derive(Clone, Copy, Debug)]
struct Phases {
    upgraded: Duration,
    hello: Duration,
    done: Duration,
}

pub async fn run(p: ChurnParams) -> Result<Map<String, Value>> {
    let url = tenant_url(&p.url, &p.tenant);
    let public_key = format!("{}-churn", p.tenant);
    let head = preload(&url, &public_key, p.preload.max(1)).await?;
    let start = Instant::now();
    let measured_from = start + p.warmup;
    let end = measured_from + p.duration;
    let failed = Arc::new(AtomicU64::new(0));
    let mut loops = Vec::with_capacity(p.concurrency);
    for _ in 0..p.concurrency.max(1) {
        let (url, public_key, failed) = (url.clone(), public_key.clone(), failed.clone());
        loops.push(tokio::spawn(async move {
            let mut cycles: Vec<Cycle> = Vec::new();
            let mut last_error = None;
            while Instant::now() < end {
                let began = Instant::now();
                match cycle(&url, &public_key, head).await {
                    Ok(phases) => cycles.push((began, phases)),
                    Err(e) => {
                        if began >= measured_from {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        last_error = Some(e.to_string());
                        // A refusing server must not turn this into a spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (cycles, last_error)
        }));
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let probe = CpuProbe::start(p.server_pid);
    tokio::time::sleep_until(end.into()).await;
    let mut m = Map::new();
    probe.finish(&mut m);
    let mut done_in_window = 0u64;
    let (mut latencies, mut upgraded, mut hello) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_error = None;
    for l in loops {
        let (cycles, error) = l.await.map_err(|e| err(e.to_string()))?;
        for (began, phases) in cycles {
            let finished = began + phases.done;
            if finished >= measured_from && finished < end {
                done_in_window += 1;
            }
            if began >= measured_from && began < end {
                latencies.push(phases.done.as_nanos() as u64);
                upgraded.push(phases.upgraded.as_nanos() as u64);
                hello.push(phases.hello.as_nanos() as u64);
            }
        }
        last_error = last_error.or(error);
    }
    latencies.sort_unstable();
    upgraded.sort_unstable();
    hello.sort_unstable();
    let secs = p.duration.as_secs_f64();
    m.insert("concurrency".into(), json!(p.concurrency));
    m.insert(
        "cycles_per_s".into(),
        json!((done_in_window as f64 / secs).round()),
    );
    m.insert("cycles".into(), json!(done_in_window));
    m.insert("p50_ms".into(), json!(ms(percentile(&latencies, 50.0))));
    m.insert("p90_ms".into(), json!(ms(percentile(&latencies, 90.0))));
    m.insert("p99_ms".into(), json!(ms(percentile(&latencies, 99.0))));
    m.insert(
        "max_ms".into(),
        json!(ms(latencies.last().copied().unwrap_or(0))),
    );
    // Where a cycle's time goes (medians): the WebSocket open (TCP and
    // HTTP upgrade), then Hello, then the head entry and the Ack.
    m.insert(
        "upgraded_p50_ms".into(),
        json!(ms(percentile(&upgraded, 50.0))),
    );
    m.insert("hello_p50_ms".into(), json!(ms(percentile(&hello, 50.0))));
    m.insert("seconds".into(), json!(round3(secs)));
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        m.insert("failed_cycles".into(), json!(failed));
        if let Some(e) = last_error {
            m.insert("last_error".into(), json!(e));
        }
    }
    if done_in_window == 0 {
        return Err(err(format!(
            "no cycle finished in the measured window ({failed} failed)"
        )));
    }
    Ok(m)
}

/// Writes `n` entries in one request; returns the log's head.
async fn preload(url: &str, public_key: &str, n: usize) -> Result<u64> {
    let (mut sink, mut stream, mut incoming) = connect_hello(url).await?;
    let mut payloads = Payloads::new(100);
    let req = Request::WriteEntries {
        public_key: public_key.to_owned(),
        id: 1,
        iv: Payloads::iv(),
        encrypted_entries: (0..n).map(|_| payloads.entry()).collect(),
    };
    send_frames(&mut sink, frames_for(&req, &mut 0)).await?;
    loop {
        if let Response::Ack {
            sequence_numbers, ..
        } = next_response(&mut stream, &mut incoming).await?
        {
            let _ = futures_util::SinkExt::close(&mut sink).await;
            return sequence_numbers
                .into_iter()
                .max()
                .ok_or_else(|| err("empty Ack for the preload"));
        }
    }
}

/// One SyncService reconnect: fresh socket, `Hello`, `RequestChanges` from
/// the head, an empty `WriteEntries`, until both the head entry and the
/// `Ack` have arrived; then the socket is closed.
async fn cycle(url: &str, public_key: &str, head: u64) -> Result<Phases> {
    let began = Instant::now();
    // A small read buffer: tungstenite zero-fills its default 128 KiB on
    // the first read, which was the load generator's largest cost per cycle.
    let ws = connect_with(url, Some(READ_BUFFER)).await?;
    let upgraded = began.elapsed();
    let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
    let mut incoming = Incoming::new();
    match next_response(&mut stream, &mut incoming).await? {
        Response::Hello { .. } => {}
        other => return Err(err(format!("expected Hello, got {}", other.tag()))),
    }
    let hello = began.elapsed();
    let subscribe = Request::RequestChanges {
        public_key: public_key.to_owned(),
        start_sequence: head,
    };
    let write = Request::WriteEntries {
        public_key: public_key.to_owned(),
        id: 1,
        iv: Payloads::iv(),
        encrypted_entries: Vec::new(),
    };
    send_frames(&mut sink, frames_for(&subscribe, &mut 0)).await?;
    send_frames(&mut sink, frames_for(&write, &mut 0)).await?;
    let (mut got_head, mut got_ack) = (false, false);
    while !(got_head && got_ack) {
        match next_response(&mut stream, &mut incoming).await? {
            Response::Changes { entries, .. } => {
                got_head |= entries.iter().any(|e| e.sequence >= head);
            }
            Response::Ack { id: 1, .. } => got_ack = true,
            _ => {}
        }
    }
    let done = began.elapsed();
    let _ = futures_util::SinkExt::close(&mut sink).await;
    Ok(Phases {
        upgraded,
        hello,
        done,
    })
}
