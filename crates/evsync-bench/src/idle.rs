//! Scenarios 4 and 5: what idle load costs the server.
//!
//! - `idle`: N sockets to one tenant, each greeted (Hello) and subscribed
//!   (RequestChanges, then a Ping whose Pong proves the subscription was
//!   handled); server VmRSS before and after, per connection.
//! - `tenants`: N tenants, each connected, written once (one entry, Ack)
//!   and closed; after `idle_wait` (longer than the server's unload grace)
//!   the server's VmRSS and open file descriptors.

use crate::common::*;
use evsync_core::wire::{Request, Response};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The load generator's own read buffer per socket (its RSS, not the
/// server's; kept small so 10,000 sockets fit one process comfortably).
const SMALL_READ_BUFFER: usize = 4096;

#[derive(Clone, Debug)]
pub struct IdleParams {
    pub url: String,
    pub tenant: String,
    pub connections: usize,
    pub concurrency: usize,
    /// Each socket subscribes to its own publicKey (else all to one).
    pub unique_keys: bool,
    pub settle: Duration,
    /// Stop opening sockets after this long and measure those open.
    pub open_limit: Duration,
    pub server_pid: u32,
    /// This process's open-files limit (raised by the binary at start).
    pub open_files: u64,
}

pub async fn run_idle(p: IdleParams) -> Result<Map<String, Value>> {
    let limit = p.open_files;
    if (limit as usize) < p.connections + 64 {
        return Err(err(format!(
            "open-file limit {limit} is too low for {} sockets (raise ulimit -n)",
            p.connections
        )));
    }
    let url = tenant_url(&p.url, &p.tenant);
    // Warm the tenant (loaded, store open) so that "before" excludes the
    // tenant's own cost and counts only connections.
    let warm = open_one(&url, &format!("{}-pk", p.tenant)).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(p.server_pid).ok_or_else(|| err("cannot read server RSS"))?;
    let fds_before = fd_count(p.server_pid).unwrap_or(0);
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(p.connections);
    for i in 0..p.connections {
        let url = url.clone();
        let gate = gate.clone();
        let key = if p.unique_keys {
            format!("{}-pk{i}", p.tenant)
        } else {
            format!("{}-pk", p.tenant)
        };
        let deadline = start + p.open_limit;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            if Instant::now() > deadline {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline.into(), open_one(&url, &key)).await {
                Ok(held) => held.map(Some),
                Err(_) => Ok(None),
            }
        }));
    }
    let mut conns = Vec::with_capacity(p.connections);
    let mut failed = 0usize;
    let mut skipped = 0usize;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(Some(c))) => conns.push(c),
            Ok(Ok(None)) => skipped += 1,
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    say(format!(
        "idle: {} sockets open in {open_secs:.1} s ({failed} failed)",
        conns.len()
    ));
    tokio::time::sleep(p.settle).await;
    let rss_after = rss_kib(p.server_pid).ok_or_else(|| err("server is gone"))?;
    let fds_after = fd_count(p.server_pid).unwrap_or(0);
    let n = conns.len().max(1) as f64;
    let mut m = Map::new();
    m.insert("connections".into(), json!(conns.len()));
    m.insert("failed".into(), json!(failed));
    m.insert("not_opened_in_time".into(), json!(skipped));
    m.insert("open_s".into(), json!(round1(open_secs)));
    m.insert(
        "rss_before_mib".into(),
        json!(round1(rss_before as f64 / 1024.0)),
    );
    m.insert(
        "rss_after_mib".into(),
        json!(round1(rss_after as f64 / 1024.0)),
    );
    m.insert(
        "rss_per_conn_kib".into(),
        json!(round1(rss_after.saturating_sub(rss_before) as f64 / n)),
    );
    m.insert("fds_before".into(), json!(fds_before));
    m.insert("fds_after".into(), json!(fds_after));
    if failed > 0 && conns.is_empty() {
        return Err(err(format!(
            "no socket could be opened: {}",
            first_error.unwrap_or_default()
        )));
    }
    if let Some(e) = first_error {
        m.insert("first_error".into(), json!(e));
    }
    drop(conns);
    Ok(m)
}

/// A socket held open: greeted and subscribed.
struct Held {
    _sink: WsSink,
    _stream: WsStream,
}

async fn open_one(url: &str, key: &str) -> Result<Held> {
    let (mut sink, mut stream, mut incoming) =
        connect_hello_with(url, Some(SMALL_READ_BUFFER)).await?;
    let sub = Request::RequestChanges {
        public_key: key.to_owned(),
        start_sequence: 0,
    };
    send_frames(&mut sink, frames_for(&sub, &mut 0)).await?;
    send_frames(&mut sink, frames_for(&Request::Ping { id: 1 }, &mut 0)).await?;
    loop {
        match next_response(&mut stream, &mut incoming).await? {
            Response::Pong { .. } => break,
            _ => continue,
        }
    }
    Ok(Held {
        _sink: sink,
        _stream: stream,
    })
}

#[derive(Clone, Debug)]
pub struct TenantsParams {
    pub url: String,
    /// Tenant names are `<prefix><i>`.
    pub prefix: String,
    pub tenants: usize,
    pub concurrency: usize,
    pub size: usize,
    pub idle_wait: Duration,
    /// Stop starting tenants after this long and measure those written.
    pub write_limit: Duration,
    pub server_pid: u32,
}

pub async fn run_tenants(p: TenantsParams) -> Result<Map<String, Value>> {
    let rss_before = rss_kib(p.server_pid).ok_or_else(|| err("cannot read server RSS"))?;
    let fds_before = fd_count(p.server_pid).unwrap_or(0);
    let probe = CpuProbe::start(Some(p.server_pid));
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(p.tenants);
    for i in 0..p.tenants {
        let url = tenant_url(&p.url, &format!("{}{i}", p.prefix));
        let gate = gate.clone();
        let size = p.size;
        let deadline = start + p.write_limit;
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| err(e.to_string()))?;
            if Instant::now() > deadline {
                return Ok(false);
            }
            let (mut sink, mut stream, mut incoming) =
                connect_hello_with(&url, Some(SMALL_READ_BUFFER)).await?;
            let mut payloads = Payloads::new(size);
            let req = Request::WriteEntries {
                public_key: "pk".into(),
                id: 1,
                iv: Payloads::iv(),
                encrypted_entries: vec![payloads.entry()],
            };
            send_frames(&mut sink, frames_for(&req, &mut 0)).await?;
            loop {
                if let Response::Ack { .. } = next_response(&mut stream, &mut incoming).await? {
                    break;
                }
            }
            let mut ws = sink.reunite(stream).map_err(|e| err(e.to_string()))?;
            let _ = ws.close(None).await;
            // Read until the server's close answer (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            Ok::<_, BoxError>(true)
        }));
    }
    let mut failed = 0usize;
    let mut skipped = 0usize;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => skipped += 1,
            Ok(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    let write_secs = start.elapsed().as_secs_f64();
    let mut m = Map::new();
    probe.finish(&mut m);
    let rss_busy = rss_kib(p.server_pid).unwrap_or(0);
    let fds_busy = fd_count(p.server_pid).unwrap_or(0);
    let written = p.tenants - failed - skipped;
    say(format!(
        "tenants: {written} written in {write_secs:.1} s ({failed} failed, {skipped} not started in time); waiting {} s for idle unload",
        p.idle_wait.as_secs()
    ));
    tokio::time::sleep(p.idle_wait).await;
    let rss_idle = rss_kib(p.server_pid).ok_or_else(|| err("server is gone"))?;
    let fds_idle = fd_count(p.server_pid).unwrap_or(0);
    let ok = written.max(1) as f64;
    m.insert("tenants".into(), json!(written));
    m.insert("failed".into(), json!(failed));
    m.insert("not_started_in_time".into(), json!(skipped));
    m.insert("tenants_per_s".into(), json!(round1(ok / write_secs)));
    m.insert(
        "rss_before_mib".into(),
        json!(round1(rss_before as f64 / 1024.0)),
    );
    m.insert(
        "rss_busy_mib".into(),
        json!(round1(rss_busy as f64 / 1024.0)),
    );
    m.insert(
        "rss_idle_mib".into(),
        json!(round1(rss_idle as f64 / 1024.0)),
    );
    m.insert(
        "rss_idle_per_tenant_kib".into(),
        json!(round3(rss_idle.saturating_sub(rss_before) as f64 / ok)),
    );
    m.insert("fds_before".into(), json!(fds_before));
    m.insert("fds_busy".into(), json!(fds_busy));
    m.insert("fds_idle".into(), json!(fds_idle));
    if let Some(e) = first_error {
        m.insert("first_error".into(), json!(e));
    }
    if written == 0 {
        return Err(err(format!("every tenant failed: {}", m["first_error"])));
    }
    Ok(m)
}
