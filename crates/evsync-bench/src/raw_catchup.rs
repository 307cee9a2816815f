//! The catch-up ceiling: the log a catch-up reads, scanned straight out of
//! the tenant file by a Rust loop, and optionally written to a loopback
//! TCP socket that another thread reads: no protocol, no framing, no
//! engine.
//!
//! The file is the one `evsync bench preload` wrote for the server (evsync's
//! schema); the loop's connection gets the store's own pragmas
//! (`evsync_storage_sqlite::configure`) and runs the store's own range
//! query (`schema::READ_ENTRIES`) over the packed `entries.key`, in one
//! statement with no row limit, reading each row's
//! blobs in place (no copy). `send` writes each row's bytes (iv, entry id,
//! ciphertext: what a `Changes` carries per entry) through a 256 KiB buffer
//! to the socket; the reader, pinned to the load generator's CPU, drains it
//! with 256 KiB reads. The clock stops when the reader has every byte.
//! MB/s counts ciphertext bytes, as the catch-up scenario does.

use crate::common::*;
use evsync_storage_sqlite::schema;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RawCatchupParams {
    /// The data directory `evsync bench preload` wrote (its `tenants/`).
    pub data: PathBuf,
    pub tenant: String,
    pub public_key: String,
    /// Also send the bytes through a loopback socket.
    pub send: bool,
}

/// CPU of the scanning thread (where the servers run) and of the reader
/// (the load generator's).
const SCAN_CPU: usize = 0;
const READ_CPU: usize = 1;

pub fn run(p: RawCatchupParams) -> Result<Map<String, Value>> {
    let path = evsync_storage_sqlite::tenant_path(&p.data.join("tenants"), &p.tenant);
    if !path.exists() {
        return Err(err(format!(
            "{} does not exist (preload first)",
            path.display()
        )));
    }
    let conn = Connection::open(&path)?;
    evsync_storage_sqlite::configure(&conn)?;
    let log_id: i64 = conn
        .query_row(schema::FIND_LOG_ID, [p.public_key.as_bytes()], |row| {
            row.get(0)
        })
        .optional()?
        .ok_or_else(|| err(format!("no log {} in {}", p.public_key, path.display())))?;
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if two_cpus {
        pin_current_thread(SCAN_CPU);
    }
    let (mut out, reader) = if p.send {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let reader = std::thread::spawn(move || -> Result<u64> {
            if two_cpus {
                pin_current_thread(READ_CPU);
            }
            let (mut socket, _) = listener.accept()?;
            let mut buf = vec![0u8; 256 << 10];
            let mut total = 0u64;
            loop {
                match socket.read(&mut buf)? {
                    0 => return Ok(total),
                    n => total += n as u64,
                }
            }
        });
        let socket = TcpStream::connect(addr)?;
        socket.set_nodelay(true)?;
        (
            Some(BufWriter::with_capacity(256 << 10, socket)),
            Some(reader),
        )
    } else {
        (None, None)
    };
    let probe = CpuProbe::start(None);
    let start = Instant::now();
    let mut stmt = conn.prepare(schema::READ_ENTRIES)?;
    let mut rows = stmt.query(params![
        schema::entry_key(log_id, 0),
        schema::entry_key(log_id, schema::MAX_SEQUENCE),
        i64::MAX
    ])?;
    let (mut entries, mut payload, mut sent) = (0u64, 0u64, 0u64);
    while let Some(row) = rows.next()? {
        let iv = row.get_ref(1)?.as_blob()?;
        let id = row.get_ref(2)?.as_blob()?;
        let ciphertext = row.get_ref(3)?.as_blob()?;
        entries += 1;
        payload += ciphertext.len() as u64;
        if let Some(out) = out.as_mut() {
            out.write_all(iv)?;
            out.write_all(id)?;
            out.write_all(ciphertext)?;
            sent += (iv.len() + id.len() + ciphertext.len()) as u64;
        }
    }
    drop(rows);
    if let Some(out) = out {
        // Flush and close, so that the reader sees the end.
        drop(out.into_inner().map_err(|e| err(e.to_string()))?);
    }
    if let Some(reader) = reader {
        let read = reader.join().map_err(|_| err("reader panicked"))??;
        if read != sent {
            return Err(err(format!("the reader got {read} of {sent} bytes")));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mut m = Map::new();
    probe.finish(&mut m);
    m.insert("entries".into(), json!(entries));
    m.insert("seconds".into(), json!(round3(secs)));
    m.insert(
        "mb_per_s".into(),
        json!(round1(payload as f64 / secs / 1e6)),
    );
    if p.send {
        m.insert(
            "wire_mb_per_s".into(),
            json!(round1(sent as f64 / secs / 1e6)),
        );
    }
    m.insert(
        "entries_per_s".into(),
        json!((entries as f64 / secs).round()),
    );
    Ok(m)
}

/// Moves the calling thread to `cpu` (best effort).
fn pin_current_thread(cpu: usize) {
    // SAFETY: sched_setaffinity reads the set we own; 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
