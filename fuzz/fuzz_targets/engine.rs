//! Random event sequences against the v3 engine and its log service:
//! connections opening and closing, requests (and garbage) arriving,
//! storage answers arriving late, out of order or failed, sent-bytes
//! reports held back (slow readers), time passing, shutdown. Storage is a
//! real `MemoryStorage`. After every step the engine's outputs are checked
//! against what storage holds:
//!
//! - it never panics, never sends to a connection it closed, and every
//!   frame it sends decodes;
//! - an `Ack` answers a write of that connection once, only after that
//!   write's append committed, with the sequences storage gave its entries;
//! - `Changes` go only to a subscribed connection, run gaplessly from where
//!   its subscription starts (or continued) — leaving out only entries
//!   acked to that same connection (its own writes) — and carry storage's
//!   bytes;
//! - at most one append is in flight at a time.
#![no_main]

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::chunk::{ChunkLimits, Reassembler};
use evsync_core::codec::{decode_response, encode_request};
use evsync_core::log::LogConfig;
use evsync_core::proto::v3::{Action, ConnId, Engine, EngineConfig};
use evsync_core::storage::{MemoryStorage, ReadLimit, Storage, StorageOp, StorageRequest, StorageResponse};
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, RemoteId, Request, Response};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use std::collections::{HashMap, HashSet};

const KEYS: [&str; 3] = ["pk-a", "pk-b", "pk-c"];
const ALL: ReadLimit = ReadLimit { max_entries: usize::MAX, max_bytes: usize::MAX };

struct Conn {
    /// Writes sent and not yet acked: id → (log, entry ids).
    writes: HashMap<i64, (String, Vec<Bytes>)>,
    acked: HashSet<i64>,
    /// `(log, sequence)` of entries acked to this connection: live
    /// `Changes` leave out a subscriber's own writes (it learns them from
    /// its Ack, as Effect's client expects), so these may be skipped.
    own: HashSet<(String, u64)>,
    /// log → the next sequence this connection is owed, once subscribed.
    owed: HashMap<String, u64>,
    /// Bytes sent but not reported back (a slow reader).
    unreported: usize,
    paused: bool,
    chunks: Reassembler,
}

struct World {
    engine: Engine,
    store: MemoryStorage,
    pending: Vec<StorageRequest>,
    answers: Vec<StorageResponse>,
    conns: HashMap<ConnId, Conn>,
    closed: HashSet<ConnId>,
    now: u64,
    next_id: i64,
    /// After `handle_shutdown` the engine ignores frames: the model must
    /// not expect them to take effect.
    shutting_down: bool,
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

fn entry(n: u8, size: usize) -> EncryptedEntry {
    let mut id = [0u8; 16];
    id[0] = n;
    id[6] = 0x70;
    id[8] = 0x80;
    EncryptedEntry {
        entry_id: Bytes::copy_from_slice(&id),
        encrypted_entry: Bytes::from(vec![n; size]),
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut log = LogConfig::default();
    // small limits, so that backpressure, caches and reads in pages are hit
    log.outbound_soft_limit = u.int_in_range(64..=4096)?;
    log.outbound_hard_limit = log.outbound_soft_limit * u.int_in_range(2..=8)?;
    log.read_max_entries = u.int_in_range(1..=8)?;
    log.read_max_bytes = u.int_in_range(64..=4096)?;
    log.append_max_entries = u.int_in_range(1..=16)?;
    log.tail_cache_entries = u.int_in_range(0..=8)?;
    log.max_subscriptions_per_connection = u.int_in_range(1..=3)?;
    log.max_unacked_write_bytes = u.int_in_range(256..=65536)?;
    if std::env::var_os("EVSYNC_FUZZ_TRACE").is_some() {
        eprintln!("{log:?}");
    }
    let config = EngineConfig { log, ..EngineConfig::default() };
    let remote_id = RemoteId::from_random_bytes([3; 16]);
    let mut w = World {
        engine: Engine::new(remote_id, config),
        store: MemoryStorage::new(remote_id),
        pending: Vec::new(),
        answers: Vec::new(),
        conns: HashMap::new(),
        closed: HashSet::new(),
        now: 0,
        next_id: 0,
        shutting_down: false,
    };
    let mut next_conn = 0u64;
    let trace = std::env::var_os("EVSYNC_FUZZ_TRACE").is_some();

    while !u.is_empty() {
        let op = u.int_in_range(0..=11)?;
        if trace {
            eprintln!("op {op} (now {}, pending {}, answers {})", w.now, w.pending.len(), w.answers.len());
        }
        match op {
            0 if w.conns.len() < 4 => {
                next_conn += 1;
                let conn = ConnId(next_conn);
                w.conns.insert(conn, Conn {
                    writes: HashMap::new(),
                    acked: HashSet::new(),
                    own: HashSet::new(),
                    owed: HashMap::new(),
                    unreported: 0,
                    paused: false,
                    chunks: Reassembler::new(ChunkLimits::default()),
                });
                w.engine.handle_open(conn, Grant::full(), Timestamp(w.now));
            }
            1 => {
                if let Some(conn) = pick(u, &w)? {
                    w.conns.remove(&conn);
                    w.closed.insert(conn);
                    w.engine.handle_close(conn);
                }
            }
            2 | 3 => {
                if let Some(conn) = pick(u, &w)? {
                    let log = *u.choose(&KEYS)?;
                    let n = u.int_in_range(1..=4)?;
                    let entries: Vec<EncryptedEntry> = (0..n)
                        .map(|_| Ok(entry(u.int_in_range(0..=20)?, u.int_in_range(0..=300)?)))
                        .collect::<Result<_>>()?;
                    w.next_id += 1;
                    let id = w.next_id;
                    let ids = entries.iter().map(|e| e.entry_id.clone()).collect();
                    if !w.shutting_down {
                        w.conns.get_mut(&conn).unwrap().writes.insert(id, (log.to_owned(), ids));
                    }
                    let request = Request::WriteEntries {
                        public_key: log.into(),
                        id,
                        iv: Bytes::from(vec![id as u8; 12]),
                        encrypted_entries: entries,
                    };
                    frame(&mut w, conn, &request);
                }
            }
            4 => {
                if let Some(conn) = pick(u, &w)? {
                    let log = *u.choose(&KEYS)?;
                    let start: u64 = u.int_in_range(0..=6)?;
                    if !w.shutting_down {
                        w.conns.get_mut(&conn).unwrap().owed.insert(log.to_owned(), start.max(1));
                    }
                    frame(&mut w, conn, &Request::RequestChanges { public_key: log.into(), start_sequence: start });
                }
            }
            5 => {
                if let Some(conn) = pick(u, &w)? {
                    let log = *u.choose(&KEYS)?;
                    if !w.shutting_down {
                        w.conns.get_mut(&conn).unwrap().owed.remove(log);
                    }
                    frame(&mut w, conn, &Request::StopChanges { public_key: log.into() });
                }
            }
            6 => {
                if let Some(conn) = pick(u, &w)? {
                    if u.ratio(1, 2)? {
                        let id = u.int_in_range(0..=1000)?;
                        frame(&mut w, conn, &Request::Ping { id });
                    } else {
                        let junk: Vec<u8> = u.arbitrary()?;
                        w.engine.handle_frame(conn, Bytes::from(junk), Timestamp(w.now));
                    }
                }
            }
            7 | 8 => {
                // run a storage request (maybe failing); its answer waits
                if !w.pending.is_empty() {
                    let i = u.choose_index(w.pending.len())?;
                    let request = w.pending.remove(i);
                    let response = if u.ratio(1, 8)? {
                        w.store.fail_next_call("injected failure");
                        request.execute(&mut w.store)
                    } else {
                        request.execute(&mut w.store)
                    };
                    w.answers.push(response);
                }
            }
            9 => {
                if !w.answers.is_empty() {
                    let i = u.choose_index(w.answers.len())?;
                    let response = w.answers.remove(i);
                    w.engine.handle_storage_response(response);
                }
            }
            10 => {
                if let Some(conn) = pick(u, &w)? {
                    let c = w.conns.get_mut(&conn).unwrap();
                    c.paused = !c.paused;
                    if !c.paused {
                        let bytes = std::mem::take(&mut c.unreported);
                        w.engine.handle_sent(conn, bytes);
                    }
                }
            }
            11 => {
                if u.ratio(1, 16)? {
                    w.shutting_down = true;
                    w.engine.handle_shutdown();
                } else {
                    w.now += u.int_in_range(0..=120_000)?;
                    w.engine.handle_timeout(Timestamp(w.now));
                }
            }
            _ => {}
        }
        pump(&mut w);
    }
    Ok(())
}

fn pick(u: &mut Unstructured<'_>, w: &World) -> Result<Option<ConnId>> {
    let mut open: Vec<ConnId> = w.conns.keys().copied().collect();
    if open.is_empty() {
        return Ok(None);
    }
    open.sort();
    Ok(Some(*u.choose(&open)?))
}

fn frame(w: &mut World, conn: ConnId, request: &Request) {
    if std::env::var_os("EVSYNC_FUZZ_TRACE").is_some() {
        eprintln!("  {conn:?} sends {request:?}");
    }
    w.engine.handle_frame(conn, Bytes::from(encode_request(request)), Timestamp(w.now));
}

fn pump(w: &mut World) {
    while let Some(action) = w.engine.poll_action() {
        match action {
            Action::Storage(request) => {
                if let StorageOp::Append(_) = &request.op {
                    let in_flight = w.pending.iter().filter(|r| matches!(r.op, StorageOp::Append(_))).count()
                        + w.answers.iter().filter(|a| matches!(a, StorageResponse::Appended { .. })).count();
                    assert_eq!(in_flight, 0, "a second append while one is in flight");
                }
                w.pending.push(request);
            }
            Action::Close { conn, .. } => {
                w.conns.remove(&conn);
                w.closed.insert(conn);
            }
            Action::Send { conn, frame } => {
                assert!(!w.closed.contains(&conn), "a frame for {conn:?} after its close");
                let Some(c) = w.conns.get_mut(&conn) else {
                    panic!("a frame for {conn:?}, which never opened");
                };
                let len = frame.len();
                if c.paused {
                    c.unreported += len;
                } else {
                    w.engine.handle_sent(conn, len);
                }
                let response = decode_response(&frame).expect("the engine sent an undecodable frame");
                let response = match response {
                    Response::Chunked(part) => c
                        .chunks
                        .push(part, Timestamp(w.now))
                        .expect("a bad chunk")
                        .map(|whole| decode_response(&whole).expect("a bad chunked message")),
                    other => Some(other),
                };
                if let Some(response) = response {
                    check(w, conn, response);
                }
            }
        }
    }
    while w.engine.poll_event().is_some() {}
}

fn check(w: &mut World, conn: ConnId, response: Response) {
    if std::env::var_os("EVSYNC_FUZZ_TRACE").is_some() {
        eprintln!("  {conn:?} gets {response:?}");
    }
    let store = &mut w.store;
    let c = w.conns.get_mut(&conn).unwrap();
    match response {
        Response::Ack { id, sequence_numbers } => {
            assert!(c.acked.insert(id), "request {id} acked twice");
            let (log, ids) = c.writes.remove(&id).expect("an Ack for a write this connection did not send");
            assert_eq!(ids.len(), sequence_numbers.len(), "one sequence per entry");
            let stored = store.read(&log, 1, ALL).expect("read");
            for (entry_id, sequence) in ids.iter().zip(&sequence_numbers) {
                let at = stored.iter().find(|e| &e.entry_id == entry_id).expect("an acked entry is not in storage");
                assert_eq!(at.sequence, *sequence, "acked at a sequence other than storage's");
                c.own.insert((log.clone(), *sequence));
            }
        }
        Response::Changes { public_key, entries } => {
            let owed = c.owed.get_mut(&public_key).expect("Changes for a log this connection does not follow");
            let stored = store.read(&public_key, 1, ALL).expect("read");
            for e in entries {
                while e.sequence > *owed && c.own.contains(&(public_key.clone(), *owed)) {
                    *owed += 1; // its own write, left out of live Changes
                }
                assert_eq!(e.sequence, *owed, "Changes out of order, with a gap or a repeat");
                let at = &stored[(e.sequence - 1) as usize];
                assert_eq!((&at.entry_id, &at.encrypted_entry, &at.iv), (&e.entry_id, &e.encrypted_entry, &e.iv));
                *owed += 1;
            }
        }
        Response::Hello { .. } | Response::Pong { .. } => {}
        other => panic!("unexpected {other:?}"),
    }
}
