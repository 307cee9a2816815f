//! Scenario 1: write throughput. `writers` connections each keep up to
//! `window` WriteEntries of `batch` entries of `size` bytes in flight and
//! measure acked entries/s, MB/s and the ack latency (send of the first
//! frame of a request to receipt of its Ack).

use crate::common::*;
use bytes::Bytes;
use evsync_client::crypto;
use evsync_client::entry::{Entry, EntryId};
use evsync_core::wire::{EncryptedEntry, Request, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct WriteParams {
    pub url: String,
    pub tenant: String,
    pub writers: usize,
    pub batch: usize,
    pub size: usize,
    pub window: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Build each entry as a replica does (Effect journal entry, msgpack)
    /// and seal it with evsync-client's AES-256-GCM (`size` is then the
    /// event payload size; the stored entry is ~60 bytes larger).
    pub encrypt: bool,
    /// All writers write the same publicKey (else one each).
    pub shared_key: bool,
    pub server_pid: Option<u32>,
}

/// How long in-flight requests may take to be acknowledged after the
/// measured window before the run gives up on them.
pub(crate) const DRAIN: Duration = Duration::from_secs(15);

/// Requests in flight: id → (sent at ns, entries, payload bytes).
pub(crate) type Pending = HashMap<i64, (u64, usize, usize)>;

/// One acknowledged request.
pub(crate) struct Acked {
    pub sent_ns: u64,
    pub acked_ns: u64,
    pub entries: usize,
    pub bytes: usize,
}

/// The write metrics of a run (v3 or v4): throughput over the requests
/// acknowledged in the measured window (`probe_start..probe_end`, ns) and
/// the latencies of those sent in it. `false` when none sent in it was
/// acknowledged (the caller says why).
pub(crate) fn window_throughput(
    m: &mut Map<String, Value>,
    all: &[Acked],
    probe_start: u64,
    probe_end: u64,
) -> bool {
    let window_ns = (probe_end - probe_start).max(1);
    let in_window: Vec<&Acked> = all
        .iter()
        .filter(|a| a.acked_ns >= probe_start && a.acked_ns < probe_end)
        .collect();
    let entries: usize = in_window.iter().map(|a| a.entries).sum();
    let bytes: usize = in_window.iter().map(|a| a.bytes).sum();
    let latencies: Vec<u64> = all
        .iter()
        .filter(|a| a.sent_ns >= probe_start && a.sent_ns < probe_end)
        .map(|a| a.acked_ns - a.sent_ns)
        .collect();
    if latencies.is_empty() {
        return false;
    }
    throughput_metrics(m, entries, bytes, window_ns as f64 / 1e9, latencies);
    true
}

/// Bytes counted for MB/s: the entry payloads (`encryptedEntry`), i.e. what
/// the replica asked the server to store, without protocol framing.
pub async fn run(p: WriteParams) -> Result<Map<String, Value>> {
    let url = tenant_url(&p.url, &p.tenant);
    let mut p = p;
    if p.window == 0 {
        p.window = auto_window(p.batch, p.size);
    }
    let mut conns = Vec::new();
    for w in 0..p.writers {
        let (sink, stream, incoming) = connect_hello(&url).await?;
        let key = if p.shared_key {
            format!("{}-pk", p.tenant)
        } else {
            format!("{}-pk{w}", p.tenant)
        };
        conns.push((sink, stream, incoming, key));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = now_ns();
    let probe_start = t0 + p.warmup.as_nanos() as u64;
    let mut tasks = Vec::new();
    for (w, (mut sink, mut stream, mut incoming, key)) in conns.into_iter().enumerate() {
        let p = p.clone();
        let permits = Arc::new(Semaphore::new(p.window));
        let pending: Arc<Mutex<Pending>> = Arc::new(Mutex::new(HashMap::new()));
        let sender_done = Arc::new(AtomicBool::new(false));
        let sender = {
            let sender_done = sender_done.clone();
            let permits = permits.clone();
            let pending = pending.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut payloads = Payloads::new(p.size);
                let cipher = p.encrypt.then(|| {
                    let mut key = [0u8; 32];
                    fill_random(&mut key);
                    key
                });
                let mut chunk_id = (w as i64) << 32;
                let mut id: i64 = 0;
                loop {
                    let permit = permits.acquire().await.map_err(|e| err(e.to_string()))?;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    permit.forget();
                    id += 1;
                    let mut iv = Payloads::iv();
                    let mut entries = Vec::with_capacity(p.batch);
                    let mut bytes = 0;
                    for _ in 0..p.batch {
                        let e = match &cipher {
                            None => payloads.entry(),
                            Some(key) => seal(key, &mut iv, p.batch, payloads.payload()),
                        };
                        bytes += e.encrypted_entry.len();
                        entries.push(e);
                    }
                    let req = Request::WriteEntries {
                        public_key: key.clone(),
                        id,
                        iv,
                        encrypted_entries: entries,
                    };
                    let frames = frames_for(&req, &mut chunk_id);
                    pending
                        .lock()
                        .expect("lock")
                        .insert(id, (now_ns(), p.batch, bytes));
                    send_frames(&mut sink, frames).await?;
                }
                sender_done.store(true, Ordering::Release);
                Ok::<_, BoxError>(sink)
            })
        };
        let stop_seen = stop.clone();
        let receiver = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut errors = 0usize;
            let mut stopped_at: Option<Instant> = None;
            loop {
                if sender_done.load(Ordering::Acquire) && pending.lock().expect("lock").is_empty() {
                    break;
                }
                if stop_seen.load(Ordering::Relaxed) {
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > DRAIN {
                        // The server stopped answering: report what was
                        // acknowledged; the rest counts as unacked.
                        break;
                    }
                }
                let msg =
                    match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                        Err(_) => continue,
                        Ok(None) => return Err(err("server closed the connection")),
                        Ok(Some(msg)) => msg?,
                    };
                let Some(resp) = incoming.decode(msg)? else {
                    continue;
                };
                if let Response::Ack {
                    id,
                    sequence_numbers,
                } = resp
                {
                    let now = now_ns();
                    let Some((sent, entries, bytes)) = pending.lock().expect("lock").remove(&id)
                    else {
                        errors += 1;
                        continue;
                    };
                    if sequence_numbers.len() != entries {
                        errors += 1;
                    }
                    acked.push(Acked {
                        sent_ns: sent,
                        acked_ns: now,
                        entries,
                        bytes,
                    });
                    permits.add_permits(1);
                }
            }
            let unacked = pending.lock().expect("lock").len();
            Ok::<_, BoxError>((acked, errors, unacked, stream))
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
    let mut errors = 0;
    let mut unacked = 0;
    for (sender, receiver) in tasks {
        // A sender blocked on a permit wakes when the next Ack frees one,
        // sees `stop` and ends; the receiver then drains what is in flight.
        let (acked, errs, left, _stream) = receiver.await.map_err(|e| err(e.to_string()))??;
        // Ends at once if the receiver gave up while it waited for a permit.
        sender.abort();
        unacked += left;
        all.extend(acked);
        errors += errs;
    }
    if !window_throughput(&mut m, &all, probe_start, probe_end) {
        return Err(err("no request was acknowledged in the measured window"));
    }
    m.insert("window".into(), json!(p.window));
    m.insert("bad_acks".into(), json!(errors));
    if unacked > 0 {
        m.insert("unacked_at_end".into(), json!(unacked));
    }
    Ok(m)
}

/// The default window: 16 requests, fewer when requests are large, so that
/// at most ~16 MiB per writer are unacknowledged (evsync closes a writer past
/// 64 MiB of unacked writes; Node buffers whatever arrives).
pub fn auto_window(batch: usize, size: usize) -> usize {
    let request = (batch * (size + 40)).max(1);
    (16 * 1024 * 1024 / request).clamp(2, 16)
}

/// Builds and seals one entry with evsync-client's code, as a replica
/// does: the Effect journal entry (UUID v7 id, event, primaryKey, payload)
/// encoded as msgpack, then AES-256-GCM under the identity key. A batch of
/// one gets a fresh iv (evsync-client's way: one entry per WriteEntries);
/// a larger batch seals every entry under the batch iv, as Effect v3 does.
fn seal(key: &[u8; 32], iv: &mut Bytes, batch: usize, payload: Bytes) -> EncryptedEntry {
    let entry = Entry {
        id: EntryId::new_v7(),
        event: "BenchEvent".into(),
        primary_key: "bench".into(),
        payload: payload.to_vec(),
    };
    let plaintext = entry.encode();
    let sealed = if batch == 1 {
        let (fresh, sealed) = crypto::seal(key, &plaintext);
        *iv = Bytes::copy_from_slice(&fresh);
        sealed
    } else {
        let batch_iv: [u8; crypto::IV_LEN] = iv[..].try_into().expect("12-byte iv");
        crypto::seal_with_iv(key, &batch_iv, &plaintext)
    };
    EncryptedEntry {
        entry_id: Bytes::copy_from_slice(&entry.id.0),
        encrypted_entry: Bytes::from(sealed),
    }
}
