//! Property tests: random interleavings of writes, subscribes, stops,
//! disconnects, slow readers and out-of-order storage completions over
//! several connections and publicKeys. Every subscriber must receive every
//! entry of its log from its start sequence exactly once, in order (its own
//! writes may be left out), and every Ack must agree with storage.

mod support;

use evsync_core::log::LogConfig;
use evsync_core::proto::v3::{ConnId, EngineConfig};
use evsync_core::storage::{ReadLimit, Storage, StorageOp};
use evsync_core::wire::{RemoteEntry, Response};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use support::Harness;

const SLOTS: usize = 3;
const KEYS: [&str; 2] = ["alice", "bob"];

#[derive(Clone, Debug)]
enum Op {
    Reopen(usize),
    Write(usize, usize, Vec<u64>),
    Subscribe(usize, usize, u64),
    Stop(usize, usize),
    RunStorage(usize),
    ExecuteStorage(usize),
    DeliverStorage(usize),
    Pause(usize),
    Drain(usize),
    /// A writer lane takes the next append into the running one's
    /// transaction (only with `join_open_appends`).
    JoinAppends,
    /// A writer lane hands an append back: the one before it commits.
    PutBackAppend,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let key = 0..KEYS.len();
    prop_oneof![
        1 => slot.clone().prop_map(Op::Reopen),
        4 => (slot.clone(), key.clone(), prop::collection::vec(0u64..24, 0..5))
            .prop_map(|(s, k, ns)| Op::Write(s, k, ns)),
        2 => (slot.clone(), key.clone(), 0u64..10).prop_map(|(s, k, start)| Op::Subscribe(s, k, start)),
        1 => (slot.clone(), key.clone()).prop_map(|(s, k)| Op::Stop(s, k)),
        4 => (0usize..8).prop_map(Op::RunStorage),
        2 => (0usize..8).prop_map(Op::ExecuteStorage),
        2 => (0usize..8).prop_map(Op::DeliverStorage),
        1 => slot.clone().prop_map(Op::Pause),
        1 => slot.prop_map(Op::Drain),
        2 => Just(Op::JoinAppends),
        1 => Just(Op::PutBackAppend),
    ]
}

/// One subscription as the client sees it.
struct Session {
    start: u64,
    /// Index in the connection's responses where this session began.
    from_response: usize,
}

struct Model {
    h: Harness,
    slots: [ConnId; SLOTS],
    next_conn: u64,
    sessions: HashMap<(ConnId, &'static str), Session>,
    /// Entry numbers each connection has written (its "own" entries).
    written: HashMap<ConnId, HashSet<u64>>,
    /// (conn, request id, public key, entry numbers) of every write.
    writes: Vec<(ConnId, i64, &'static str, Vec<u64>)>,
    /// Appends may join the running one (`LogConfig::join_open_appends`):
    /// storage then runs appends as a writer lane does, one at a time, in
    /// order.
    joins: bool,
}

impl Model {
    fn new(config: EngineConfig) -> Self {
        let joins = config.log.join_open_appends;
        let mut h = Harness::with_config(config);
        let slots = [h.open(0), h.open(1), h.open(2)];
        Model {
            h,
            slots,
            next_conn: 3,
            sessions: HashMap::new(),
            written: HashMap::new(),
            writes: Vec::new(),
            joins,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Reopen(s) => {
                let old = self.slots[s];
                self.end_sessions_of(old);
                self.h.close(old);
                self.slots[s] = self.h.open(self.next_conn);
                self.next_conn += 1;
            }
            Op::Write(s, k, ns) => {
                let conn = self.slots[s];
                if self.h.closed.contains_key(&conn) {
                    return;
                }
                let id = self.h.write(conn, KEYS[k], &ns);
                self.written
                    .entry(conn)
                    .or_default()
                    .extend(ns.iter().map(|n| n * 10 + k as u64));
                self.writes.push((conn, id, KEYS[k], ns));
            }
            Op::Subscribe(s, k, start) => {
                let conn = self.slots[s];
                if self.h.closed.contains_key(&conn) {
                    return;
                }
                self.check_session(conn, KEYS[k], false);
                let from_response = self.h.responses(conn).len();
                self.h.request_changes(conn, KEYS[k], start);
                self.sessions.insert(
                    (conn, KEYS[k]),
                    Session {
                        start,
                        from_response,
                    },
                );
            }
            Op::Stop(s, k) => {
                let conn = self.slots[s];
                self.check_session(conn, KEYS[k], false);
                self.sessions.remove(&(conn, KEYS[k]));
                self.h.stop_changes(conn, KEYS[k]);
            }
            Op::RunStorage(i) => {
                if let Some(index) = self.runnable(i) {
                    self.h.run_storage_at(index);
                }
            }
            Op::ExecuteStorage(i) => {
                if let Some(index) = self.runnable(i) {
                    self.h.execute_at(index);
                }
            }
            Op::DeliverStorage(i) => {
                if !self.h.executed.is_empty() {
                    let index = i % self.h.executed.len();
                    self.h.deliver_at(index);
                }
            }
            Op::Pause(s) => {
                self.h.paused.insert(self.slots[s]);
            }
            Op::Drain(s) => self.h.drain(self.slots[s]),
            Op::JoinAppends => {
                if self.joins {
                    self.h.join_appends();
                }
            }
            Op::PutBackAppend => {
                if self.joins {
                    self.h.put_back_append();
                }
            }
        }
    }

    /// The pending request the `i`th pick runs. With joins, an append can
    /// run only as a writer lane would run it: the oldest, alone.
    fn runnable(&self, i: usize) -> Option<usize> {
        if self.h.pending.is_empty() {
            return None;
        }
        let index = i % self.h.pending.len();
        let append = matches!(self.h.pending[index].op, StorageOp::Append(_));
        if self.joins && append {
            return self.h.next_lane_append();
        }
        Some(index)
    }

    fn end_sessions_of(&mut self, conn: ConnId) {
        for key in KEYS {
            self.check_session(conn, key, false);
            self.sessions.remove(&(conn, key));
        }
    }

    fn stored(&mut self, key: &str) -> Vec<RemoteEntry> {
        self.h
            .store
            .read(
                key,
                1,
                ReadLimit {
                    max_entries: usize::MAX,
                    max_bytes: usize::MAX,
                },
            )
            .unwrap()
    }

    /// Checks what a session received: strictly increasing sequences, each
    /// equal to the stored entry; when `complete`, nothing is missing.
    fn check_session(&mut self, conn: ConnId, key: &'static str, complete: bool) {
        let Some(session) = self.sessions.get(&(conn, key)) else {
            return;
        };
        let (start, from_response) = (session.start, session.from_response);
        if self.h.closed.contains_key(&conn) && complete {
            return;
        }
        let stored = self.stored(key);
        let got: Vec<RemoteEntry> = self.h.responses(conn)[from_response..]
            .iter()
            .filter_map(|r| match r {
                Response::Changes {
                    public_key,
                    entries,
                } if public_key == key => Some(entries.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        let seqs: Vec<u64> = got.iter().map(|e| e.sequence).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{conn:?}/{key}: out of order or duplicated: {seqs:?}"
        );
        for entry in &got {
            assert!(
                entry.sequence >= start.max(1),
                "{conn:?}/{key}: before start"
            );
            assert_eq!(
                Some(entry),
                stored.get(entry.sequence as usize - 1),
                "{conn:?}/{key}: entry differs from storage"
            );
        }
        let received: HashSet<u64> = seqs.iter().copied().collect();
        let own = self.written.get(&conn).cloned().unwrap_or_default();
        let upto = if complete {
            u64::MAX
        } else {
            seqs.last().copied().unwrap_or(0)
        };
        for entry in &stored {
            if entry.sequence < start.max(1) || entry.sequence > upto {
                continue;
            }
            if received.contains(&entry.sequence) {
                continue;
            }
            let n = u64::from_be_bytes(entry.entry_id[..8].try_into().unwrap());
            let k = KEYS.iter().position(|x| *x == key).unwrap() as u64;
            assert!(
                own.contains(&(n * 10 + k)),
                "{conn:?}/{key}: missed sequence {} (start {start}, got {seqs:?})",
                entry.sequence
            );
        }
    }

    fn finish(&mut self) {
        for s in 0..SLOTS {
            self.h.drain(self.slots[s]);
        }
        self.h.settle();
        let sessions: Vec<(ConnId, &'static str)> = self.sessions.keys().copied().collect();
        for (conn, key) in sessions {
            self.check_session(conn, key, true);
        }
        // Every Ack agrees with storage, position by position.
        for (conn, id, key, ns) in self.writes.clone() {
            let Some(seqs) = self.h.ack(conn, id) else {
                continue;
            };
            assert_eq!(seqs.len(), ns.len(), "one sequence per entry");
            let stored = self.stored(key);
            for (n, seq) in ns.iter().zip(seqs) {
                assert_eq!(
                    stored[seq as usize - 1].entry_id,
                    support::entry_id(*n),
                    "Ack position maps to the stored entry"
                );
            }
        }
        for (conn, id, _, _) in &self.writes {
            if self.slots.contains(conn) && !self.h.closed.contains_key(conn) {
                assert!(
                    self.h.ack(*conn, *id).is_some(),
                    "an open writer gets its Ack"
                );
            }
        }
    }
}

fn small_config() -> EngineConfig {
    EngineConfig {
        log: LogConfig {
            read_max_entries: 3,
            outbound_soft_limit: 400,
            tail_cache_entries: 4,
            append_max_entries: 6,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_subscriber_gets_every_entry_once_in_order(ops in prop::collection::vec(op(), 1..60)) {
        let mut m = Model::new(small_config());
        for op in ops {
            m.apply(op);
        }
        m.finish();
    }

    #[test]
    fn same_with_default_limits(ops in prop::collection::vec(op(), 1..60)) {
        let mut m = Model::new(EngineConfig::default());
        for op in ops {
            m.apply(op);
        }
        m.finish();
    }

    /// Appends joining the running one's transaction, or put back because
    /// it was committing, keep every promise above.
    #[test]
    fn same_when_appends_join_open_transactions(ops in prop::collection::vec(op(), 1..60)) {
        let mut config = small_config();
        config.log.join_open_appends = true;
        let mut m = Model::new(config);
        for op in ops {
            m.apply(op);
        }
        m.finish();
    }
}
