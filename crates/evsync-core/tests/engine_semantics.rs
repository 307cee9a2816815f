//! The engine driven without sockets through every rule of PROTOCOL.md's
//! "Semantics a correct server keeps".

mod support;

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::codec::encode_request;
use evsync_core::log::LogConfig;
use evsync_core::proto::close::code as close_code;
use evsync_core::proto::v3::{ConnId, EngineConfig};
use evsync_core::storage::Storage;
use evsync_core::time::Timestamp;
use evsync_core::wire::{CHUNK_SIZE, ChunkedMessage, EncryptedEntry, Request, Response};
use support::{Harness, REMOTE_ID};

#[test]
fn hello_is_the_first_frame() {
    let mut h = Harness::new();
    let a = h.open(1);
    assert_eq!(
        h.responses(a),
        &[Response::Hello {
            remote_id: REMOTE_ID
        }]
    );
}

#[test]
fn ack_is_positional_and_reports_duplicates_at_their_original_sequence() {
    let mut h = Harness::new();
    let a = h.open(1);
    let first = h.write(a, "pk", &[1, 2]);
    h.settle();
    assert_eq!(h.ack(a, first), Some(vec![1, 2]));
    let second = h.write(a, "pk", &[3, 1, 3, 2, 4]);
    h.settle();
    assert_eq!(
        h.ack(a, second),
        Some(vec![3, 1, 3, 2, 4]),
        "stored and repeated entries keep their first sequence, in request order"
    );
    assert_eq!(h.store.head("pk"), 4, "nothing stored twice");
}

#[test]
fn ack_is_sent_only_after_the_commit() {
    let mut h = Harness::new();
    let a = h.open(1);
    let id = h.write(a, "pk", &[1]);
    assert_eq!(h.ack(a, id), None, "no Ack before storage answered");
    assert_eq!(h.store.head("pk"), 0);
    h.settle();
    assert_eq!(h.ack(a, id), Some(vec![1]));
}

#[test]
fn an_empty_write_is_acked_empty() {
    let mut h = Harness::new();
    let a = h.open(1);
    let id = h.write(a, "pk", &[]);
    assert_eq!(h.ack(a, id), Some(vec![]));
    assert!(h.pending.is_empty(), "an empty write needs no storage");
}

#[test]
fn concurrent_writes_are_merged_into_one_transaction() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    let w1 = h.write(a, "pk", &[1]);
    let w2 = h.write(b, "pk", &[2]);
    let w3 = h.write(a, "other", &[3]);
    assert_eq!(h.pending.len(), 1, "one append in flight");
    h.settle();
    assert_eq!(
        h.appends_run, 2,
        "the queued writes went in one transaction"
    );
    assert_eq!(h.ack(a, w1), Some(vec![1]));
    assert_eq!(h.ack(b, w2), Some(vec![2]));
    assert_eq!(h.ack(a, w3), Some(vec![1]));
}

#[test]
fn request_changes_sends_backlog_from_start_sequence_then_live() {
    let mut h = Harness::new();
    let w = h.open(1);
    h.write(w, "pk", &[1, 2, 3]);
    h.settle();
    let a = h.open(2);
    h.request_changes(a, "pk", 2);
    h.settle();
    assert_eq!(h.changes(a, "pk"), vec![2, 3], "sequence >= startSequence");
    h.write(w, "pk", &[4]);
    h.settle();
    assert_eq!(h.changes(a, "pk"), vec![2, 3, 4], "then live");
    let entries = h.change_entries(a, "pk");
    assert_eq!(entries[2].entry_id, support::entry_id(4));
    assert_eq!(
        entries[2].encrypted_entry,
        support::entry(4).encrypted_entry
    );
    let b = h.open(3);
    h.request_changes(b, "pk", 0);
    h.settle();
    assert_eq!(
        h.changes(b, "pk"),
        vec![1, 2, 3, 4],
        "0 means from the start"
    );
}

#[test]
fn live_changes_go_only_to_subscribers_of_that_public_key() {
    let mut h = Harness::new();
    let (w, sub, other, idle) = (h.open(1), h.open(2), h.open(3), h.open(4));
    h.request_changes(sub, "pk", 0);
    h.request_changes(other, "another", 0);
    h.settle();
    h.write(w, "pk", &[1]);
    h.settle();
    assert_eq!(h.changes(sub, "pk"), vec![1]);
    for conn in [other, idle] {
        assert!(
            !h.responses(conn)
                .iter()
                .any(|r| matches!(r, Response::Changes { .. })),
            "{conn:?} did not subscribe to pk"
        );
    }
}

#[test]
fn a_writers_own_entries_are_left_out_of_its_live_stream() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    h.request_changes(a, "pk", 0);
    h.request_changes(b, "pk", 0);
    h.settle();
    h.write(a, "pk", &[1]);
    h.write(b, "pk", &[2]);
    h.settle();
    assert_eq!(h.changes(a, "pk"), vec![2], "a already has 1 from its Ack");
    assert_eq!(h.changes(b, "pk"), vec![1], "b already has 2 from its Ack");
}

#[test]
fn stop_changes_ends_only_that_subscription() {
    let mut h = Harness::new();
    let (w, a) = (h.open(1), h.open(2));
    h.request_changes(a, "x", 0);
    h.request_changes(a, "y", 0);
    h.settle();
    h.stop_changes(a, "x");
    h.write(w, "x", &[1]);
    h.write(w, "y", &[2]);
    h.settle();
    assert!(h.changes(a, "x").is_empty(), "stopped");
    assert_eq!(h.changes(a, "y"), vec![1], "the other log is unaffected");
    h.request_changes(a, "x", 0);
    h.settle();
    assert_eq!(
        h.changes(a, "x"),
        vec![1],
        "resubscribing sends the backlog"
    );
}

#[test]
fn ping_is_answered_with_pong_of_the_same_id() {
    let mut h = Harness::new();
    let a = h.open(1);
    h.send(a, &Request::Ping { id: 42 });
    h.send(a, &Request::Ping { id: -7 });
    assert_eq!(
        &h.responses(a)[1..],
        &[Response::Pong { id: 42 }, Response::Pong { id: -7 }]
    );
}

#[test]
fn several_public_keys_on_one_socket_stay_independent() {
    let mut h = Harness::new();
    let w = h.open(1);
    h.write(w, "x", &[1, 2]);
    h.write(w, "y", &[3]);
    h.settle();
    let a = h.open(2);
    h.request_changes(a, "x", 2);
    h.request_changes(a, "y", 0);
    h.settle();
    h.write(w, "y", &[4]);
    h.settle();
    assert_eq!(h.changes(a, "x"), vec![2]);
    assert_eq!(h.changes(a, "y"), vec![1, 2]);
    assert_eq!(h.change_entries(a, "y")[1].entry_id, support::entry_id(4));
}

#[test]
fn a_large_backlog_goes_out_as_few_messages_each_sent_in_chunk_sized_frames() {
    let mut h = Harness::new();
    let w = h.open(1);
    let big = |n: u64| EncryptedEntry {
        entry_id: support::entry_id(n),
        encrypted_entry: Bytes::from(vec![n as u8; 100_000]),
    };
    h.send(
        w,
        &Request::WriteEntries {
            public_key: "pk".into(),
            id: 1,
            iv: Bytes::from(vec![0; 12]),
            encrypted_entries: (1..=60).map(big).collect(),
        },
    );
    h.settle();
    let a = h.open(2);
    h.request_changes(a, "pk", 0);
    h.settle();
    assert_eq!(h.changes(a, "pk"), (1..=60).collect::<Vec<_>>());
    let messages = h
        .responses(a)
        .iter()
        .filter(|r| matches!(r, Response::Changes { .. }))
        .count();
    assert!(
        (2..=4).contains(&messages),
        "6 MB goes out as a few messages bounded by the read size, not 12: {messages}"
    );
    let frames = &h.frames[&a][1..];
    assert!(
        frames.iter().all(|f| f.len() <= CHUNK_SIZE + 100),
        "every frame fits a 512,000-byte part"
    );
}

#[test]
fn entries_committed_together_reach_a_subscriber_in_one_message() {
    // Effect's client handles frames concurrently: a small Changes sent
    // after a chunked one could overtake it, so they travel together.
    let mut h = Harness::new();
    let (w, a) = (h.open(1), h.open(2));
    h.request_changes(a, "pk", 0);
    h.settle();
    h.send(
        w,
        &Request::WriteEntries {
            public_key: "pk".into(),
            id: 1,
            iv: Bytes::from(vec![0; 12]),
            encrypted_entries: vec![
                EncryptedEntry {
                    entry_id: support::entry_id(1),
                    encrypted_entry: Bytes::from(vec![1u8; 1_500_000]),
                },
                support::entry(2),
            ],
        },
    );
    h.settle();
    let messages: Vec<Vec<u64>> = h
        .responses(a)
        .iter()
        .filter_map(|r| match r {
            Response::Changes { entries, .. } => Some(entries.iter().map(|e| e.sequence).collect()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, vec![vec![1, 2]]);
}

#[test]
fn a_single_entry_over_the_chunk_size_is_chunked() {
    let mut h = Harness::new();
    let (w, a) = (h.open(1), h.open(2));
    h.request_changes(a, "pk", 0);
    h.settle();
    let payload = Bytes::from(vec![9u8; 1_500_000]);
    h.send(
        w,
        &Request::WriteEntries {
            public_key: "pk".into(),
            id: 1,
            iv: Bytes::from(vec![0; 12]),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: support::entry_id(1),
                encrypted_entry: payload.clone(),
            }],
        },
    );
    h.settle();
    let got = h.change_entries(a, "pk");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].encrypted_entry, payload, "reassembled byte for byte");
    let frames = &h.frames[&a][1..];
    assert_eq!(frames.len(), 3, "1.5 MB in 512,000-byte parts");
    assert!(frames.iter().all(|f| f.len() < CHUNK_SIZE + 100));
}

#[test]
fn a_chunked_write_is_reassembled_and_acked() {
    let mut h = Harness::new();
    let a = h.open(1);
    let write = Request::WriteEntries {
        public_key: "pk".into(),
        id: 5,
        iv: Bytes::from(vec![0; 12]),
        encrypted_entries: vec![EncryptedEntry {
            entry_id: support::entry_id(1),
            encrypted_entry: Bytes::from(vec![1u8; 1_200_000]),
        }],
    };
    let encoded = Bytes::from(encode_request(&write));
    let mut parts = evsync_core::chunk::split(77, &encoded);
    parts.reverse();
    for part in parts {
        h.send(a, &Request::Chunked(part));
    }
    h.settle();
    assert_eq!(h.ack(a, 5), Some(vec![1]));
    let stored = h
        .store
        .read(
            "pk",
            1,
            evsync_core::storage::ReadLimit {
                max_entries: 10,
                max_bytes: usize::MAX,
            },
        )
        .unwrap();
    assert_eq!(stored[0].encrypted_entry.len(), 1_200_000);
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let mut h = Harness::new();
    let (bad, good) = (h.open(1), h.open(2));
    h.request_changes(good, "pk", 0);
    h.send_raw(bad, Bytes::from_static(&[0xc1, 0x00]));
    let (code, reason) = h.closed[&bad].clone();
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    assert!(reason.starts_with("invalid message"), "{reason}");
    assert!(!h.closed.contains_key(&good));
    let w = h.open(3);
    h.write(w, "pk", &[1]);
    h.settle();
    assert_eq!(h.changes(good, "pk"), vec![1], "others keep syncing");
    assert_eq!(h.engine.connection_count(), 2);
}

#[test]
fn oversized_frames_and_bad_chunks_close_with_a_reason() {
    let config = EngineConfig {
        max_frame_bytes: 1000,
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let a = h.open(1);
    h.send_raw(a, Bytes::from(vec![0u8; 1001]));
    assert_eq!(h.closed[&a].0, close_code::MESSAGE_TOO_BIG);

    let b = h.open(2);
    let part = |index, total| {
        Request::Chunked(ChunkedMessage {
            id: 1,
            index,
            total,
            data: Bytes::from_static(b"x"),
        })
    };
    h.send(b, &part(0, 2));
    h.send(b, &part(1, 3));
    let (code, reason) = h.closed[&b].clone();
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    assert!(reason.contains("total changed"), "{reason}");

    let c = h.open(3);
    h.send(c, &part(0, 1000));
    assert_eq!(
        h.closed[&c].0,
        close_code::MESSAGE_TOO_BIG,
        "too many parts"
    );

    let d = h.open(4);
    h.send(d, &part(0, 1));
    assert_eq!(
        h.closed[&d].0,
        close_code::PROTOCOL_ERROR,
        "the reassembled bytes are not a message"
    );
}

#[test]
fn the_idle_socket_timeout_is_off_by_default() {
    let mut h = Harness::new();
    let a = h.open(1);
    assert_eq!(h.engine.poll_timeout(), None);
    h.engine.handle_timeout(Timestamp(u64::MAX / 2));
    h.pump();
    assert!(!h.closed.contains_key(&a));
}

#[test]
fn a_socket_silent_for_the_idle_timeout_is_closed_normally() {
    let mut h = Harness::with_config(EngineConfig {
        idle_socket_timeout_ms: Some(60_000),
        ..EngineConfig::default()
    });
    let quiet = h.open(1);
    let pinging = h.open(2);
    h.now = Timestamp(30_000);
    h.send(pinging, &Request::Ping { id: 1 });
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(60_000)));
    h.engine.handle_timeout(Timestamp(59_999));
    h.pump();
    assert!(h.closed.is_empty(), "nothing before the deadline");
    h.engine.handle_timeout(Timestamp(60_000));
    h.pump();
    let (code, reason) = h.closed[&quiet].clone();
    assert_eq!(code, close_code::NORMAL);
    assert_eq!(reason, "idle: no frame received for 60 s");
    assert!(
        !h.closed.contains_key(&pinging),
        "a frame 30 s ago restarts the clock"
    );
    // The frame moved its deadline: the next wake-up is exactly there.
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(90_000)));
    h.engine.handle_timeout(Timestamp(90_000));
    h.pump();
    assert_eq!(h.closed[&pinging].0, close_code::NORMAL);
    assert_eq!(h.engine.poll_timeout(), None);
    assert_eq!(h.engine.connection_count(), 0);
}

#[test]
fn the_idle_deadline_is_the_earliest_of_many_without_a_scan() {
    let mut h = Harness::with_config(EngineConfig {
        idle_socket_timeout_ms: Some(1_000),
        ..EngineConfig::default()
    });
    let conns: Vec<ConnId> = (1..=100)
        .map(|n| {
            h.now = Timestamp(n * 10);
            h.open(n)
        })
        .collect();
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(1_010)));
    // Odd connections speak at 1,005 ms: of those due by 1,500 (1..=50),
    // only the silent even ones go; the others are due at 2,005.
    h.now = Timestamp(1_005);
    for conn in conns.iter().step_by(2) {
        h.send(*conn, &Request::Ping { id: 7 });
    }
    h.engine.handle_timeout(Timestamp(1_500));
    h.pump();
    let closed: Vec<u64> = conns
        .iter()
        .filter(|c| h.closed.contains_key(c))
        .map(|c| c.0)
        .collect();
    let expected: Vec<u64> = (1..=25).map(|n| n * 2).collect();
    assert_eq!(closed, expected);
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(1_510)), "conn 51");
    h.close(conns[0]);
    h.engine.handle_timeout(Timestamp(2_005));
    h.pump();
    assert_eq!(h.engine.connection_count(), 0);
}

#[test]
fn a_restored_connection_keeps_its_idle_clock() {
    let mut h = Harness::with_config(EngineConfig {
        idle_socket_timeout_ms: Some(1_000),
        ..EngineConfig::default()
    });
    h.now = Timestamp(5_000);
    let a = ConnId(9);
    h.engine
        .restore_connection(a, Vec::new(), Grant::full(), Timestamp(4_500));
    assert_eq!(h.engine.last_heard(a), Some(Timestamp(4_500)));
    assert_eq!(h.engine.poll_timeout(), Some(Timestamp(5_500)));
    h.engine.handle_timeout(Timestamp(5_500));
    h.pump();
    assert_eq!(h.closed[&a].0, close_code::NORMAL);
}

#[test]
fn an_incomplete_chunked_message_expires() {
    let mut h = Harness::new();
    let a = h.open(1);
    assert_eq!(h.engine.poll_timeout(), None);
    h.send(
        a,
        &Request::Chunked(ChunkedMessage {
            id: 1,
            index: 0,
            total: 2,
            data: Bytes::from_static(b"x"),
        }),
    );
    let deadline = h.engine.poll_timeout().expect("a deadline");
    h.engine.handle_timeout(Timestamp(deadline.0 - 1));
    h.pump();
    assert!(!h.closed.contains_key(&a));
    h.engine.handle_timeout(deadline);
    h.pump();
    let (code, reason) = h.closed[&a].clone();
    assert_eq!(code, close_code::PROTOCOL_ERROR);
    assert!(reason.contains("incomplete"), "{reason}");
    assert_eq!(h.engine.poll_timeout(), None);
}

#[test]
fn a_failed_append_acks_nothing_and_closes_only_its_writers() {
    let mut h = Harness::new();
    let (a, b, c) = (h.open(1), h.open(2), h.open(3));
    let id = h.write(a, "pk", &[1]);
    h.store.fail_next_call("disk full");
    h.settle();
    assert_eq!(h.ack(a, id), None);
    assert_eq!(h.closed[&a].0, close_code::INTERNAL_ERROR);
    assert!(h.closed[&a].1.contains("disk full"));
    assert!(!h.closed.contains_key(&b));
    let id = h.write(b, "pk", &[2]);
    h.settle();
    assert_eq!(
        h.ack(b, id),
        Some(vec![1]),
        "the failed entry was not stored"
    );
    assert!(!h.closed.contains_key(&c));
}

#[test]
fn shutdown_acks_received_writes_then_closes_everyone() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    let id = h.write(a, "pk", &[1]);
    h.engine.handle_shutdown();
    h.pump();
    assert!(h.closed.is_empty(), "waits for the write in flight");
    h.send(b, &Request::Ping { id: 1 });
    assert_eq!(h.responses(b).len(), 1, "new frames are ignored");
    h.settle();
    assert_eq!(h.ack(a, id), Some(vec![1]));
    assert_eq!(h.closed[&a].0, close_code::GOING_AWAY);
    assert_eq!(h.closed[&b].0, close_code::GOING_AWAY);
    assert!(h.engine.is_idle());
}

#[test]
fn a_reconnect_near_the_head_is_served_without_a_storage_read() {
    let mut h = Harness::new();
    let w = h.open(1);
    h.write(w, "pk", &[1, 2, 3]);
    h.settle();
    for round in 0..3 {
        let conn = h.open(10 + round);
        h.request_changes(conn, "pk", 3);
        h.write(conn, "pk", &[]);
        h.settle();
        assert_eq!(h.changes(conn, "pk"), vec![3]);
        h.close(conn);
    }
    assert_eq!(h.reads_run, 0, "the tail cache served every catch-up");
}

#[test]
fn a_fresh_engine_reads_storage_to_find_the_head() {
    let mut h = Harness::new();
    let w = h.open(1);
    h.write(w, "pk", &[1, 2, 3]);
    h.settle();
    // A new engine over the same store knows nothing of the head.
    let store = std::mem::replace(
        &mut h.store,
        evsync_core::storage::MemoryStorage::new(REMOTE_ID),
    );
    let mut h = Harness::new();
    h.store = store;
    let a = h.open(1);
    h.request_changes(a, "pk", 3);
    h.settle();
    assert_eq!(h.changes(a, "pk"), vec![3]);
    let reads = h.reads_run;
    let b = h.open(2);
    h.request_changes(b, "pk", 3);
    h.settle();
    assert_eq!(h.changes(b, "pk"), vec![3]);
    assert_eq!(
        h.reads_run, reads,
        "the second catch-up is served from memory"
    );
}

#[test]
fn a_slow_consumer_is_paced_and_catches_up_from_storage() {
    let config = EngineConfig {
        log: LogConfig {
            outbound_soft_limit: 1_000,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let (w, slow) = (h.open(1), h.open(2));
    h.request_changes(slow, "pk", 0);
    h.settle();
    h.paused.insert(slow);
    for n in 0..50 {
        h.write(w, "pk", &[n]);
        h.settle();
    }
    let before = h.changes(slow, "pk").len();
    assert!(before < 50, "live delivery stopped when the queue filled");
    h.drain(slow);
    h.settle();
    assert_eq!(
        h.changes(slow, "pk"),
        (1..=50).collect::<Vec<_>>(),
        "after draining it resumes from storage with no gap or duplicate"
    );
    assert!(!h.closed.contains_key(&slow));
}

#[test]
fn a_consumer_that_never_reads_is_disconnected_at_the_hard_limit() {
    let config = EngineConfig {
        log: LogConfig {
            outbound_hard_limit: 10_000,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let a = h.open(1);
    h.paused.insert(a);
    for id in 0..2_000 {
        if h.closed.contains_key(&a) {
            break;
        }
        h.send(a, &Request::Ping { id });
    }
    let (code, reason) = h.closed[&a].clone();
    assert_eq!(code, close_code::POLICY_VIOLATION);
    assert!(reason.contains("too slow"), "{reason}");
}

#[test]
fn too_many_subscriptions_on_one_socket_close_only_it() {
    let config = EngineConfig {
        log: LogConfig {
            max_subscriptions_per_connection: 3,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let greedy = h.open(1);
    let calm = h.open(2);
    h.request_changes(calm, "pk-0", 0);
    for n in 0..3 {
        h.request_changes(greedy, &format!("pk-{n}"), 0);
    }
    h.settle();
    assert!(!h.closed.contains_key(&greedy), "at the limit is allowed");
    h.request_changes(greedy, "pk-3", 0);
    h.settle();
    let (code, reason) = h.closed[&greedy].clone();
    assert_eq!(code, close_code::POLICY_VIOLATION);
    assert!(reason.contains("subscriptions"), "{reason}");
    // Its neighbour still gets its log live.
    let writer = h.open(3);
    h.write(writer, "pk-0", &[1]);
    h.settle();
    assert_eq!(h.changes(calm, "pk-0"), vec![1]);
    assert!(!h.closed.contains_key(&calm));
}

#[test]
fn a_write_flood_without_acks_is_bounded() {
    let config = EngineConfig {
        log: LogConfig {
            max_unacked_write_bytes: 1_000,
            ..LogConfig::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(config);
    let a = h.open(1);
    for n in 0..100 {
        if h.closed.contains_key(&a) {
            break;
        }
        h.write(a, "pk", &[n]);
    }
    assert_eq!(h.closed[&a].0, close_code::POLICY_VIOLATION);
    h.settle();
}

#[test]
fn handover_during_a_commit_has_no_gap_or_duplicate() {
    // Subscribe while an append is in flight; run the read before and
    // after the append in both orders.
    for read_first in [true, false] {
        // No tail cache, so that the backlog comes from a storage read.
        let mut h = Harness::with_config(EngineConfig {
            log: LogConfig {
                tail_cache_entries: 0,
                ..LogConfig::default()
            },
            ..EngineConfig::default()
        });
        let (w, a) = (h.open(1), h.open(2));
        h.write(w, "pk", &[1, 2]);
        h.settle();
        h.write(w, "pk", &[3, 4]);
        h.request_changes(a, "pk", 0);
        assert_eq!(h.pending.len(), 2, "append and read both pending");
        if read_first {
            h.run_storage_at(1);
        }
        h.settle();
        h.write(w, "pk", &[5]);
        h.settle();
        assert_eq!(
            h.changes(a, "pk"),
            vec![1, 2, 3, 4, 5],
            "read_first = {read_first}"
        );
    }
}

#[test]
fn closing_mid_write_still_commits() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    h.request_changes(b, "pk", 0);
    h.write(a, "pk", &[1]);
    h.close(a);
    h.settle();
    assert_eq!(h.store.head("pk"), 1);
    assert_eq!(h.changes(b, "pk"), vec![1]);
    assert!(
        h.responses(a)
            .iter()
            .all(|r| !matches!(r, Response::Ack { .. }))
    );
    h.close(b);
    assert!(h.engine.is_idle());
    let _ = ConnId(0);
}

#[test]
fn a_restored_connection_resumes_its_subscriptions_without_hello() {
    let mut h = Harness::new();
    let w = h.open(1);
    h.write(w, "pk", &[1, 2, 3]);
    h.settle();
    let a = h.open(2);
    h.request_changes(a, "pk", 0);
    h.settle();
    let positions = h.engine.subscription_positions(a);
    assert_eq!(positions, vec![("pk".to_string(), 4)]);
    // Hibernation: a new engine over the same store, the socket still open.
    let store = std::mem::replace(
        &mut h.store,
        evsync_core::storage::MemoryStorage::new(REMOTE_ID),
    );
    let mut h = Harness::new();
    h.store = store;
    h.engine
        .restore_connection(a, positions, Grant::full(), h.now);
    h.pump();
    h.settle();
    let w = h.open(3);
    h.write(w, "pk", &[4]);
    h.settle();
    assert_eq!(h.changes(a, "pk"), vec![4], "resumes where it was, live");
    assert!(
        !h.responses(a)
            .iter()
            .any(|r| matches!(r, Response::Hello { .. })),
        "no second Hello"
    );
}

/// Changes messages `conn` received for `public_key`, as lists of sequences.
fn changes_messages(h: &Harness, conn: ConnId, public_key: &str) -> Vec<Vec<u64>> {
    h.responses(conn)
        .iter()
        .filter_map(|r| match r {
            Response::Changes {
                public_key: pk,
                entries,
            } if pk == public_key => Some(entries.iter().map(|e| e.sequence).collect()),
            _ => None,
        })
        .collect()
}

#[test]
fn commits_made_while_a_socket_has_unsent_frames_reach_it_together() {
    let mut h = Harness::new();
    let (w, s) = (h.open(1), h.open(2));
    h.request_changes(s, "pk", 0);
    h.settle();
    h.paused.insert(s); // its socket has not reported anything written
    for n in 1..=5 {
        h.write(w, "pk", &[n]);
        h.settle();
    }
    assert_eq!(
        changes_messages(&h, s, "pk"),
        vec![vec![1]],
        "commits 2..5 are held back while commit 1 is unsent"
    );
    let reads = h.reads_run;
    h.drain(s);
    h.settle();
    assert_eq!(
        changes_messages(&h, s, "pk"),
        vec![vec![1], vec![2, 3, 4, 5]],
        "once written, everything held back goes out in one message"
    );
    assert_eq!(h.reads_run, reads, "served from the tail cache");
    h.write(w, "pk", &[6]);
    h.settle();
    assert_eq!(
        changes_messages(&h, s, "pk").last(),
        Some(&vec![6]),
        "live again"
    );
}

#[test]
fn a_held_back_subscriber_does_not_get_its_own_writes_back() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    h.request_changes(a, "pk", 0);
    h.request_changes(b, "pk", 0);
    h.settle();
    h.paused.insert(a);
    h.write(a, "pk", &[1]); // a's Ack stays unsent: a is held back
    h.settle();
    h.write(b, "pk", &[2]);
    h.settle();
    h.write(b, "pk", &[3]);
    h.settle();
    assert_eq!(h.changes(a, "pk"), Vec::<u64>::new());
    h.drain(a);
    h.settle();
    assert_eq!(
        changes_messages(&h, a, "pk"),
        vec![vec![2, 3]],
        "1 came in a's Ack"
    );
    assert_eq!(h.changes(b, "pk"), vec![1], "b is live throughout");
}

#[test]
fn a_commit_reaches_subscribers_in_the_order_they_subscribed() {
    let mut h = Harness::new();
    let writer = h.open(100);
    // Opened in one order, subscribed in another, one re-subscribing (it
    // moves to the end, as a new subscription does in Effect's server).
    let conns: Vec<ConnId> = [5, 2, 9, 1, 7].iter().map(|&c| h.open(c)).collect();
    for &c in &[9, 1, 5, 7, 2, 1] {
        h.request_changes(ConnId(c), "pk", 0);
        h.settle();
    }
    let expected = [ConnId(9), ConnId(5), ConnId(7), ConnId(2), ConnId(1)];
    for n in 1..=20u64 {
        h.send_order.clear();
        h.write(writer, "pk", &[n]);
        h.settle();
        let changes: Vec<ConnId> = h
            .send_order
            .iter()
            .copied()
            .filter(|c| conns.contains(c))
            .collect();
        assert_eq!(changes, expected, "commit {n}");
    }
}
