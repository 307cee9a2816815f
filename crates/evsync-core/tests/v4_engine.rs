//! The v4 engine (`proto::v4::Engine`, Effect 4's eventlog RPCs) driven
//! without sockets: engines over one `MemoryStorage`, clients that build
//! their frames with the codec's own encoders as Effect 4.1.0's client does,
//! fixed randomness and a clock that moves only when a test moves it
//! (harness: `support/v4.rs`).
//!
//! Covered, one rule per test (PROTOCOL-V4.md §1.3, §1.4, §2):
//! - Hello: the tenant's remoteId, a 32-byte challenge from the engine's
//!   randomness, `firstSequence` 1, no compaction; the challenge is reused
//!   for 30 s until an Authenticate consumes it.
//! - Authenticate: a good signature binds the signing key (one storage
//!   request, remembered for later connections); an impostor key, a missing
//!   or expired challenge, a flipped signature bit and a storage error
//!   while binding are each `Forbidden` with Effect's message.
//! - `Forbidden` for every request of a connection that authenticated no
//!   identity ("Unauthenticated request") or another one ("Identity is not
//!   authenticated").
//! - Writes: acks per entry in request order, idempotent resends, what the
//!   store holds, empty writes, malformed entry ids, unencrypted writes, a
//!   failed append (1011, nothing acked).
//! - WriteChunked: out-of-order and duplicated pieces, the chunk limits
//!   (1009), the age limit at `poll_timeout`.
//! - Changes: backlog from a sequence inside a batch, then live; one
//!   unacknowledged Chunk per stream; no echo of a connection's own writes
//!   (also when they are read back from storage);
//!   Interrupt; a second Changes on a store replaces the first; a backlog
//!   over Effect's 16 MiB frame limit in Chunk frames of at most 1 MiB.
//! - Ping/Pong, framing across and within messages, bad input closing only
//!   its connection, unknown RPC tags.
//! - The request log (SYNC_DEBUG): one summary per decoded message when on,
//!   none when off.
//! - Two engines over one storage: `handle_log_advanced` delivers another
//!   engine's commits.

#[path = "support/v4.rs"]
mod v4_support;

use bytes::Bytes;
use evsync_core::log::ConnId;
use evsync_core::proto::close::{CloseKind, code};
use evsync_core::proto::event::RequestLine;
use evsync_core::proto::v4::{
    self, ChangesValue, Defect, Entry, ErrorCode, EventLogProtocolError, Exit, FromClient,
    HelloExit, HelloResponse, PING_FRAME, PONG_FRAME, Reason, RequestId, SessionConfig, Text,
    WriteAck, WriteEntriesUnencrypted,
};
use evsync_core::storage::{BatchWrite, ReadLimit, Storage, StoreKey, StoredBatch};
use evsync_core::time::Timestamp;
use v4_support::*;

const STORE: &str = "todos";

fn alice() -> Identity {
    Identity::new("0b6a7e0e-63b5-4b41-9a43-2f5a3c1e8d10", 1)
}

fn bob() -> Identity {
    Identity::new("5d2f8c4a-1e9b-4c7d-8f60-7a3b2c1d0e9f", 2)
}

fn hello_response(h: &Harness, conn: ConnId, id: &RequestId) -> HelloResponse {
    match h.try_exit::<HelloExit>(conn, id) {
        Some(Exit::Success(hello)) => hello,
        other => panic!("Hello {id:?}: {other:?}"),
    }
}

fn everything(h: &mut Harness, identity: &Identity) -> Vec<StoredBatch> {
    let limit = ReadLimit {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
    };
    h.store
        .read_batches(&StoreKey::new(identity.public_key.clone(), STORE), 1, limit)
        .unwrap()
}

/// The acks a write of `batches` is owed when they are stored from
/// sequence `first` on: one per entry, in request order.
fn expected_acks(batches: &[v4::EncryptedBatch], first: u64) -> Vec<WriteAck> {
    batches
        .iter()
        .flat_map(|b| b.entry_ids.iter().cloned())
        .zip(first..)
        .map(|(entry_id, sequence)| WriteAck { sequence, entry_id })
        .collect()
}

fn forbidden<T: std::fmt::Debug>(
    exit: Exit<T, EventLogProtocolError>,
    message: &str,
) -> EventLogProtocolError {
    assert_protocol_error(exit, ErrorCode::Forbidden, message)
}

fn assert_open(h: &mut Harness, conn: ConnId) {
    assert_eq!(h.closed.get(&conn), None, "{conn:?} was closed");
    let before = h.got(conn).len();
    h.send(conn, &FromClient::Ping);
    assert!(
        matches!(h.got(conn)[before..], [Got::Pong]),
        "{conn:?} no longer answers Ping"
    );
}

// ------------------------------------------------------------------ Hello

#[test]
fn hello_answers_the_tenants_remote_id_a_32_byte_random_challenge_first_sequence_1_and_no_compaction()
 {
    let mut h = Harness::new();
    let conn = h.open(1);
    let id = h.hello(conn);
    let hello = hello_response(&h, conn, &id);
    assert_eq!(&hello.remote_id[..], &REMOTE_ID.0[..]);
    assert_eq!(hello.challenge.len(), 32);
    assert_eq!(
        &hello.challenge[..],
        &challenge_no(1)[..],
        "from the randomness"
    );
    assert_eq!(hello.first_sequence, Some(1));
    assert!(!hello.compaction);
    assert!(h.storage_ops.is_empty(), "Hello needs no storage");
}

#[test]
fn a_repeated_hello_within_30_seconds_returns_the_same_challenge_until_authenticate_consumes_it() {
    let mut h = Harness::new();
    let conn = h.open(1);
    let first = h.hello(conn);
    let first = hello_response(&h, conn, &first).challenge;

    h.now = T0.plus_millis(29_999);
    let again = h.hello(conn);
    assert_eq!(hello_response(&h, conn, &again).challenge, first);
    assert_eq!(
        h.challenges_issued
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // Another connection has its own challenge.
    let other = h.open(2);
    let theirs = h.hello(other);
    assert_eq!(
        &hello_response(&h, other, &theirs).challenge[..],
        &challenge_no(2)[..]
    );

    let auth = h.authenticate(conn, &alice());
    assert_eq!(
        h.exit::<(), EventLogProtocolError>(conn, &auth),
        Exit::Success(())
    );
    let after = h.hello(conn);
    let after = hello_response(&h, conn, &after).challenge;
    assert_ne!(after, first, "Authenticate consumed the challenge");
    assert_eq!(&after[..], &challenge_no(3)[..]);

    // Unused, a challenge is replaced once 30 s old.
    h.now = h.now.plus_millis(30_000);
    let expired = h.hello(conn);
    assert_eq!(
        &hello_response(&h, conn, &expired).challenge[..],
        &challenge_no(4)[..]
    );
}

// ----------------------------------------------------------- Authenticate

#[test]
fn authenticate_with_a_good_signature_binds_the_key_once_and_later_connections_need_no_storage() {
    let mut h = Harness::new();
    let first = h.open(1);
    h.hello(first);
    let id = h.authenticate(first, &alice());
    assert_eq!(
        h.exit::<(), EventLogProtocolError>(first, &id),
        Exit::Success(())
    );
    assert_eq!(h.ops(OpKind::BindSigningKey), 1);
    assert_eq!(h.storage_ops.len(), 1, "nothing but the binding");
    // The binding is in storage: another key for this publicKey gets the
    // first one back.
    let bound = h
        .store
        .bind_signing_key(&alice().public_key, &[7; 32])
        .unwrap();
    assert_eq!(bound, alice().signing_public_key());

    let second = h.open(2);
    h.hello(second);
    let id = h.authenticate(second, &alice());
    assert_eq!(
        h.exit::<(), EventLogProtocolError>(second, &id),
        Exit::Success(())
    );
    assert_eq!(h.storage_ops.len(), 1, "the binding is remembered");

    // And the second connection is authenticated for real.
    let write = h.write(second, &alice(), STORE, &[batch(1..=1, 10)]);
    assert_eq!(h.acks(second, &write).len(), 1);
}

#[test]
fn another_signing_key_for_a_bound_public_key_is_forbidden_whether_the_binding_is_remembered_or_read()
 {
    let mut h = Harness::with_nodes(2, SessionConfig::default());
    h.connect(0, 1, &alice());
    let impostor = alice().with_key(9);

    // Node 0 remembers the binding.
    let conn = h.open_on(0, 2);
    h.hello(conn);
    let id = h.authenticate(conn, &impostor);
    let error = forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &id),
        "Session auth signature verification failed",
    );
    assert_eq!(
        error.public_key.as_deref(),
        Some(alice().public_key.as_str())
    );

    // Node 1 has to read it from storage, which keeps the first key.
    let binds = h.ops(OpKind::BindSigningKey);
    let conn1 = h.open_on(1, 3);
    h.hello(conn1);
    let id = h.authenticate(conn1, &impostor);
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn1, &id),
        "Session auth signature verification failed",
    );
    assert_eq!(h.ops(OpKind::BindSigningKey), binds + 1);

    // Neither connection may act as alice.
    for conn in [conn, conn1] {
        let write = h.write(conn, &alice(), STORE, &[batch(1..=1, 10)]);
        forbidden(
            h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &write),
            "Unauthenticated request",
        );
        assert_open(&mut h, conn);
    }
    assert!(everything(&mut h, &alice()).is_empty());
}

#[test]
fn a_storage_error_while_binding_is_forbidden_binding_lookup_failed_and_nothing_is_remembered() {
    let mut h = Harness::new();
    let conn = h.open(1);
    h.hello(conn);
    h.store.fail_next_call("disk on fire");
    let id = h.authenticate(conn, &alice());
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &id),
        "Session auth binding lookup failed",
    );
    assert_open(&mut h, conn);

    // The next attempt binds, and the key it binds is the one that counts.
    h.login(conn, &alice());
    assert_eq!(h.ops(OpKind::BindSigningKey), 2);
    let other = h.open(2);
    h.hello(other);
    let id = h.authenticate(other, &alice().with_key(9));
    forbidden(
        h.exit::<(), EventLogProtocolError>(other, &id),
        "Session auth signature verification failed",
    );
}

#[test]
fn authenticate_without_hello_is_forbidden_the_challenge_has_expired() {
    let mut h = Harness::new();
    let conn = h.open(1);
    let id = h.authenticate(conn, &alice());
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &id),
        "Session auth challenge has expired",
    );
    assert_eq!(h.ops(OpKind::BindSigningKey), 0, "refused before storage");
    assert_open(&mut h, conn);
}

#[test]
fn authenticate_30_seconds_after_hello_is_forbidden_the_challenge_has_expired() {
    let mut h = Harness::new();
    let late = h.open(1);
    h.hello(late);
    h.now = T0.plus_millis(30_000);
    let id = h.authenticate(late, &alice());
    forbidden(
        h.exit::<(), EventLogProtocolError>(late, &id),
        "Session auth challenge has expired",
    );

    // Just inside the 30 s it works.
    let in_time = h.open(2);
    h.hello(in_time);
    h.now = h.now.plus_millis(29_999);
    let id = h.authenticate(in_time, &alice());
    assert_eq!(
        h.exit::<(), EventLogProtocolError>(in_time, &id),
        Exit::Success(())
    );

    // The late one starts again with Hello, as Effect's client does.
    h.login(late, &alice());
}

#[test]
fn a_signature_with_one_flipped_bit_is_forbidden_and_its_challenge_is_spent() {
    let mut h = Harness::new();
    let conn = h.open(1);
    let hello = h.hello(conn);
    let challenge = hello_response(&h, conn, &hello).challenge;
    let good = alice().authenticate(&challenge);
    let mut bad = good.clone();
    let mut signature = bad.signature.to_vec();
    signature[17] ^= 0x10;
    bad.signature = Bytes::from(signature);

    let id = h.send_authenticate(conn, &bad);
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &id),
        "Session auth signature verification failed",
    );
    // The refused attempt consumed the challenge: even the good signature
    // over it is too late now.
    let id = h.send_authenticate(conn, &good);
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &id),
        "Session auth challenge has expired",
    );
    let write = h.write(conn, &alice(), STORE, &[batch(1..=1, 10)]);
    forbidden(
        h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &write),
        "Unauthenticated request",
    );
}

// -------------------------------------------------------------- Forbidden

#[test]
fn writes_and_changes_before_authenticate_are_forbidden_as_unauthenticated_requests() {
    let mut h = Harness::new();
    let conn = h.open(1);
    h.hello(conn);

    let single = h.write(conn, &alice(), STORE, &[batch(1..=2, 10)]);
    let data = write_entries_frame(&alice().public_key, STORE, &[batch(3..=3, 10)]);
    let chunked = h.write_chunked(conn, &split(0, &data)[0]);
    let changes = h.changes(conn, &alice().public_key, STORE, 1);

    for id in [&single, &chunked] {
        let error = forbidden(
            h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, id),
            "Unauthenticated request",
        );
        assert_eq!(error.public_key, None);
    }
    forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &changes),
        "Unauthenticated request",
    );
    assert_eq!(h.chunk_count(conn), 0);
    assert!(h.storage_ops.is_empty(), "nothing reached the log service");
    assert_open(&mut h, conn);
}

#[test]
fn a_write_or_changes_for_an_identity_the_connection_did_not_authenticate_is_forbidden() {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());

    let write = h.write(conn, &bob(), STORE, &[batch(1..=1, 10)]);
    let error = forbidden(
        h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &write),
        "Identity is not authenticated",
    );
    assert_eq!(error.public_key.as_deref(), Some(bob().public_key.as_str()));

    let changes = h.changes(conn, &bob().public_key, STORE, 1);
    let error = forbidden(
        h.exit::<(), EventLogProtocolError>(conn, &changes),
        "Identity is not authenticated",
    );
    assert_eq!(error.public_key.as_deref(), Some(bob().public_key.as_str()));
    assert_eq!(h.ops(OpKind::AppendBatches) + h.ops(OpKind::ReadBatches), 0);
    assert!(everything(&mut h, &bob()).is_empty());

    // A connection may authenticate several identities.
    h.login(conn, &bob());
    let write = h.write(conn, &bob(), STORE, &[batch(1..=1, 10)]);
    assert_eq!(h.acks(conn, &write).len(), 1);
}

// ------------------------------------------------------------------ writes

#[test]
fn a_write_of_three_batches_is_acked_per_entry_in_request_order_at_sequences_1_to_6_once() {
    let mut h = Harness::new();
    let writer = h.connect(0, 1, &alice());
    let subscriber = h.connect(0, 2, &alice());
    h.auto_ack.insert(subscriber);
    let stream = h.changes(subscriber, &alice().public_key, STORE, 1);

    // Entry ids deliberately not in ascending order across batches.
    let batches = [
        batch([40, 41], 100),
        batch([7], 50),
        batch([90, 12, 55], 70),
    ];
    let appends_before = h.ops(OpKind::AppendBatches);
    let id = h.write(writer, &alice(), STORE, &batches);
    assert_eq!(h.exits(writer, &id).len(), 1, "one Exit for the request");
    assert_eq!(
        h.ops(OpKind::AppendBatches) - appends_before,
        1,
        "a request's batches are stored in one transaction"
    );
    let acks = h.acks(writer, &id);
    assert_eq!(acks, expected_acks(&batches, 1));
    assert_eq!(
        acks.iter().map(|a| a.sequence).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );

    let stored = everything(&mut h, &alice());
    assert_eq!(
        stored.iter().map(|b| b.sequence).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    for (stored, sent) in stored.iter().zip(&batches) {
        assert_eq!(stored.iv, sent.iv);
        assert_eq!(stored.entry_ids, sent.entry_ids);
        assert_eq!(stored.encrypted_batch, sent.encrypted_batch);
    }
    assert_eq!(h.sequences(subscriber, &stream), [1, 3, 4]);

    // A resend (the client retrying) gets the same sequences; nothing new
    // is stored or delivered.
    let chunks = h.chunk_count(subscriber);
    let again = h.write(writer, &alice(), STORE, &batches);
    assert_eq!(h.acks(writer, &again), acks);
    assert_eq!(h.chunk_count(subscriber), chunks);
    assert_eq!(everything(&mut h, &alice()), stored);
}

#[test]
fn a_write_with_no_batches_is_acked_with_no_acks() {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let id = h.write(conn, &alice(), STORE, &[]);
    assert_eq!(
        h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &id),
        Exit::Success(vec![])
    );
    assert_eq!(h.ops(OpKind::AppendBatches), 0);
}

#[test]
fn an_entry_id_of_15_bytes_is_an_invalid_request_and_nothing_is_stored() {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let mut short = batch([2], 10);
    short.entry_ids[0] = short.entry_ids[0].slice(..15);
    let id = h.write(conn, &alice(), STORE, &[batch([1], 10), short]);
    assert_protocol_error(
        h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &id),
        ErrorCode::InvalidRequest,
        "every batch needs entry ids of 16 bytes",
    );
    assert_eq!(h.ops(OpKind::AppendBatches), 0);
    assert!(
        everything(&mut h, &alice()).is_empty(),
        "not even the good batch"
    );
    assert_open(&mut h, conn);
}

#[test]
fn an_unencrypted_write_is_an_invalid_request() {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let data = v4::encode(&WriteEntriesUnencrypted {
        store_id: STORE.into(),
        entries: vec![Entry {
            payload: Bytes::from_static(&[0x01, 0x20]),
            id: entry_id(1),
            primary_key: Text::from_static("todo-1"),
            event: Text::from_static("TodoCreated"),
        }],
        public_key: alice().public_key,
    });
    let id = h.write_single(conn, Bytes::from(data));
    // The message (which says where plaintext clients go) is not pinned.
    match h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &id) {
        Exit::Failure(reasons) => match &reasons[..] {
            [Reason::Fail(error)] => {
                assert_eq!(error.code, ErrorCode::InvalidRequest);
                assert!(!error.message.is_empty());
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ops(OpKind::AppendBatches), 0);
    assert_open(&mut h, conn);
}

#[test]
fn a_failed_append_closes_the_writers_connection_with_1011_and_acks_nothing() {
    let mut h = Harness::new();
    let writer = h.connect(0, 1, &alice());
    let bystander = h.connect(0, 2, &alice());
    h.store.fail_next_call("disk full");
    let id = h.write(writer, &alice(), STORE, &[batch([1], 10)]);
    assert_eq!(
        h.closed.get(&writer).map(|c| c.0),
        Some(code::INTERNAL_ERROR)
    );
    assert!(
        h.exits(writer, &id).is_empty(),
        "no ack for an unstored write"
    );
    assert!(everything(&mut h, &alice()).is_empty());

    // The replica resends on its next connection; the write then lands.
    let again = h.connect(0, 3, &alice());
    let id = h.write(again, &alice(), STORE, &[batch([1], 10)]);
    assert_eq!(h.acks(again, &id)[0].sequence, 1);
    assert_open(&mut h, bystander);
}

// ----------------------------------------------------------- WriteChunked

#[test]
fn a_write_over_512000_bytes_in_pieces_out_of_order_and_duplicated_is_acked_by_the_completing_piece()
 {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let batches = [
        batch([1, 2], 400_000),
        batch([3], 400_000),
        batch([4, 5], 400_000),
    ];
    let data = write_entries_frame(&alice().public_key, STORE, &batches);
    let pieces = split(0, &data);
    assert_eq!(pieces.len(), 3);

    let mut ids = Vec::new();
    for index in [2, 0, 0, 1] {
        ids.push(h.write_chunked(conn, &pieces[index]));
    }
    for id in &ids[..3] {
        assert_eq!(
            h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, id),
            Exit::Success(vec![]),
            "a piece that does not complete the message"
        );
    }
    assert_eq!(h.acks(conn, &ids[3]), expected_acks(&batches, 1));
    let stored = everything(&mut h, &alice());
    assert_eq!(
        stored.iter().map(|b| b.sequence).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    assert_eq!(stored[2].encrypted_batch, batches[2].encrypted_batch);
    assert_eq!(h.engine().poll_timeout(), None, "nothing left incomplete");
}

#[test]
fn pieces_over_the_chunk_limits_close_the_connection_with_1009_and_store_nothing() {
    // Too many parts (the default limit is 128).
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let bystander = h.connect(0, 2, &alice());
    let piece = v4::ChunkedMessage {
        id: 0,
        index: 0,
        total: 129,
        data: Bytes::from(vec![0; 100]),
    };
    h.write_chunked(conn, &piece);
    assert_eq!(
        h.closed.get(&conn).map(|c| c.0),
        Some(code::MESSAGE_TOO_BIG)
    );
    assert_open(&mut h, bystander);

    // A message over the size limit, found when its second piece arrives.
    let mut config = SessionConfig::default();
    config.chunks.max_message_bytes = 600_000;
    let mut h = Harness::with_config(config);
    let conn = h.connect(0, 1, &alice());
    let bystander = h.connect(0, 2, &alice());
    let batches = [batch([1], 700_000), batch([2], 500_000)];
    let pieces = split(
        3,
        &write_entries_frame(&alice().public_key, STORE, &batches),
    );
    let first = h.write_chunked(conn, &pieces[0]);
    assert_eq!(
        h.exit::<Vec<WriteAck>, EventLogProtocolError>(conn, &first),
        Exit::Success(vec![])
    );
    h.write_chunked(conn, &pieces[1]);
    assert_eq!(
        h.closed.get(&conn).map(|c| c.0),
        Some(code::MESSAGE_TOO_BIG)
    );
    assert_eq!(h.ops(OpKind::AppendBatches), 0);
    assert!(everything(&mut h, &alice()).is_empty());
    assert_open(&mut h, bystander);
    assert_eq!(h.engine().poll_timeout(), None, "its pieces are forgotten");
}

#[test]
fn an_incomplete_chunked_write_past_the_age_limit_closes_the_connection_at_its_deadline() {
    let mut h = Harness::new();
    let conn = h.connect(0, 1, &alice());
    let bystander = h.connect(0, 2, &alice());
    assert_eq!(h.engine().poll_timeout(), None);

    h.now = T0.plus_millis(5);
    let pieces = split(
        1,
        &write_entries_frame(&alice().public_key, STORE, &[batch([1], 600_000)]),
    );
    h.write_chunked(conn, &pieces[0]);
    let deadline = h.engine().poll_timeout().expect("a deadline for the piece");
    assert_eq!(deadline, T0.plus_millis(5 + 120_000));

    h.advance_to(Timestamp(deadline.0 - 1));
    assert_eq!(h.closed.get(&conn), None);
    h.advance_to(deadline);
    assert_eq!(h.closed.get(&conn).map(|c| c.0), Some(code::PROTOCOL_ERROR));
    assert_eq!(h.engine().poll_timeout(), None);
    assert_eq!(h.ops(OpKind::AppendBatches), 0);
    assert_open(&mut h, bystander);
}

// ----------------------------------------------------------------- Changes

#[test]
fn changes_sends_the_backlog_from_start_sequence_whole_batches_from_storage_or_cache_then_live() {
    let mut h = Harness::with_nodes(2, SessionConfig::default());
    let writer = h.connect(0, 1, &alice());
    let batches = [batch(1..=2, 30), batch(3..=3, 30), batch(4..=6, 30)];
    h.write(writer, &alice(), STORE, &batches);

    // Node 1 has never seen the store: it reads the backlog from storage.
    let from_storage = h.connect(1, 2, &alice());
    h.auto_ack.insert(from_storage);
    let reads = h.ops(OpKind::ReadBatches);
    let s_storage = h.changes(from_storage, &alice().public_key, STORE, 5);
    assert!(h.ops(OpKind::ReadBatches) > reads);
    // Node 0 committed the batches and serves them from its tail cache.
    let from_cache = h.connect(0, 3, &alice());
    h.auto_ack.insert(from_cache);
    let reads = h.ops(OpKind::ReadBatches);
    let s_cache = h.changes(from_cache, &alice().public_key, STORE, 5);
    assert_eq!(h.ops(OpKind::ReadBatches), reads);

    // Sequence 5 lies inside the batch at 4..=6: that batch comes whole.
    for (conn, stream) in [(from_storage, &s_storage), (from_cache, &s_cache)] {
        let got = h.batches(conn, stream);
        assert_eq!(got.len(), 1, "{conn:?}");
        assert_eq!(got[0].sequence, 4);
        assert_eq!(got[0].entry_ids, batches[2].entry_ids);
        assert_eq!(got[0].iv, batches[2].iv);
        assert_eq!(got[0].encrypted_batch, batches[2].encrypted_batch);
    }

    let from_start = h.connect(0, 4, &alice());
    h.auto_ack.insert(from_start);
    let s_start = h.changes(from_start, &alice().public_key, STORE, 2);
    assert_eq!(h.sequences(from_start, &s_start), [1, 3, 4]);

    // Then live.
    h.write(writer, &alice(), STORE, &[batch(7..=8, 30)]);
    assert_eq!(h.sequences(from_cache, &s_cache), [4, 7]);
    assert_eq!(h.sequences(from_start, &s_start), [1, 3, 4, 7]);
    h.log_advanced(1, &alice().public_key, STORE, 8);
    assert_eq!(h.sequences(from_storage, &s_storage), [4, 7]);
}

#[test]
fn a_stream_has_one_unacknowledged_chunk_at_a_time() {
    let config = SessionConfig {
        changes_value_bytes: 1, // one batch per Changes value, so one per Chunk
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let writer = h.connect(0, 1, &alice());
    for n in 1..=4 {
        h.write(writer, &alice(), STORE, &[batch([n], 20)]);
    }
    let reader = h.connect(0, 2, &alice());
    let stream = h.changes(reader, &alice().public_key, STORE, 1);
    assert_eq!(h.chunks(reader, &stream).len(), 1, "the first Chunk only");

    // An Ack of another request releases nothing.
    h.ack(reader, &RequestId::Number(999));
    assert_eq!(h.chunks(reader, &stream).len(), 1);
    for n in 2..=4 {
        h.ack(reader, &stream);
        assert_eq!(h.chunks(reader, &stream).len(), n, "one more per Ack");
    }
    assert_eq!(h.sequences(reader, &stream), [1, 2, 3, 4]);

    // Live: the next commit goes out at once (the last Chunk is acked)...
    h.ack(reader, &stream);
    h.write(writer, &alice(), STORE, &[batch([5], 20)]);
    assert_eq!(h.chunks(reader, &stream).len(), 5);
    // ... and the one after waits for its Ack.
    h.write(writer, &alice(), STORE, &[batch([6], 20)]);
    assert_eq!(h.chunks(reader, &stream).len(), 5);
    h.ack(reader, &stream);
    assert_eq!(h.sequences(reader, &stream), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn a_connection_is_not_sent_the_batches_it_wrote_but_other_subscribers_are() {
    let mut h = Harness::new();
    let one = h.connect(0, 1, &alice());
    let two = h.connect(0, 2, &alice());
    h.auto_ack.extend([one, two]);
    let s_one = h.changes(one, &alice().public_key, STORE, 1);
    let s_two = h.changes(two, &alice().public_key, STORE, 1);

    let w = h.write(one, &alice(), STORE, &[batch(1..=2, 10)]);
    assert_eq!(h.acks(one, &w).len(), 2, "the writer learns from its acks");
    assert_eq!(h.chunk_count(one), 0, "no echo");
    assert_eq!(h.sequences(two, &s_two), [1]);

    let w = h.write(two, &alice(), STORE, &[batch(3..=3, 10)]);
    assert_eq!(h.acks(two, &w).len(), 1);
    assert_eq!(h.sequences(one, &s_one), [3]);
    assert_eq!(h.sequences(two, &s_two), [1], "no echo");
}

/// What a connection remembers of its own writes, to leave them out of its
/// stream, must not pin the messages they came in: with its stream held back
/// (a Chunk awaiting its Ack), a connection that writes on would otherwise
/// keep every upload in memory until the stream caught up.
#[test]
fn a_held_back_stream_pins_none_of_the_messages_its_connection_wrote() {
    let mut h = Harness::new();
    let other = h.connect(0, 1, &alice());
    let writer = h.connect(0, 2, &alice());
    let stream = h.changes(writer, &alice().public_key, STORE, 1);
    // Another writer's 6 MB reach the stream, which sends one Chunk and
    // queues the rest behind its Ack: over the outbound soft limit (4 MiB),
    // so the subscription is held back and live deliveries stop.
    for n in 1..=6 {
        h.write(other, &alice(), STORE, &[batch([n], 1_000_000)]);
    }
    assert_eq!(h.chunks(writer, &stream).len(), 1, "a Chunk awaits its Ack");

    let data = write_entries_frame(&alice().public_key, STORE, &[batch([7, 8], 20_000)]);
    let payload = v4::encode(&v4::WriteSinglePayload { data });
    let (id, message) = h.request_keeping(writer, "EventLog.WriteSingle", payload);
    assert_eq!(h.acks(writer, &id).len(), 2, "the write is acked");
    assert!(
        message.is_unique(),
        "the engine holds part of a message it has answered"
    );

    // Its batch is still left out of its stream once the stream moves on.
    h.write(other, &alice(), STORE, &[batch([9], 20)]);
    h.auto_ack.insert(writer);
    h.ack(writer, &stream);
    assert_eq!(h.sequences(writer, &stream), [1, 2, 3, 4, 5, 6, 9]);
}

/// The writer's live subscription is held back by its own unsent ack and
/// resumes from the tail cache, or, for batches the cache (256 KB) cannot
/// hold (one full Effect batch is about that), from storage: neither may
/// echo its batches.
#[test]
fn a_connection_is_not_sent_its_own_batches_even_when_they_are_larger_than_the_tail_cache() {
    let mut h = Harness::new();
    let one = h.connect(0, 1, &alice());
    let two = h.connect(0, 2, &alice());
    h.auto_ack.extend([one, two]);
    h.changes(one, &alice().public_key, STORE, 1);
    let s_two = h.changes(two, &alice().public_key, STORE, 1);
    let reads = h.ops(OpKind::ReadBatches);
    h.write(one, &alice(), STORE, &[batch([1], 300_000)]);
    assert!(h.ops(OpKind::ReadBatches) > reads, "read back from storage");
    assert_eq!(h.sequences(two, &s_two), [1]);
    assert_eq!(h.chunk_count(one), 0, "no echo");

    // Another writer's batch still reaches it.
    let w = h.write(two, &alice(), STORE, &[batch([2], 300_000)]);
    assert_eq!(h.acks(two, &w)[0].sequence, 2);
    assert_eq!(h.chunk_count(one), 1);
    assert_eq!(h.sequences(two, &s_two), [1], "no echo to the other writer");
}

#[test]
fn interrupt_ends_a_stream_and_no_chunk_follows_even_when_new_batches_commit() {
    let config = SessionConfig {
        changes_value_bytes: 1,
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let writer = h.connect(0, 1, &alice());
    for n in 1..=3 {
        h.write(writer, &alice(), STORE, &[batch([n], 20)]);
    }
    let reader = h.connect(0, 2, &alice());
    let stream = h.changes(reader, &alice().public_key, STORE, 1);
    assert_eq!(h.chunk_count(reader), 1);

    h.interrupt(reader, &stream);
    h.ack(reader, &stream); // the Ack of the Chunk already received
    h.write(writer, &alice(), STORE, &[batch([4], 20)]);
    assert_eq!(h.chunk_count(reader), 1, "nothing after the Interrupt");

    // The connection is fine and may subscribe again.
    h.auto_ack.insert(reader);
    let again = h.changes(reader, &alice().public_key, STORE, 2);
    assert_eq!(h.sequences(reader, &again), [2, 3, 4]);
    assert_open(&mut h, reader);
}

#[test]
fn a_second_changes_on_the_same_store_replaces_the_first() {
    let config = SessionConfig {
        changes_value_bytes: 1,
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let writer = h.connect(0, 1, &alice());
    for n in 1..=3 {
        h.write(writer, &alice(), STORE, &[batch([n], 20)]);
    }
    let reader = h.connect(0, 2, &alice());
    let first = h.changes(reader, &alice().public_key, STORE, 1);
    assert_eq!(h.chunks(reader, &first).len(), 1);

    h.auto_ack.insert(reader);
    let second = h.changes(reader, &alice().public_key, STORE, 2);
    assert_eq!(h.sequences(reader, &second), [2, 3]);
    h.ack(reader, &first);
    h.write(writer, &alice(), STORE, &[batch([4], 20)]);
    assert_eq!(h.sequences(reader, &second), [2, 3, 4]);
    assert_eq!(
        h.chunks(reader, &first).len(),
        1,
        "the first stream is over"
    );

    // Another store is another stream, and leaves this one alone.
    let other = h.changes(reader, &alice().public_key, "notes", 1);
    let w = h.write(writer, &alice(), "notes", &[batch([1], 20)]);
    assert_eq!(h.acks(writer, &w)[0].sequence, 1, "stores count apart");
    h.write(writer, &alice(), STORE, &[batch([5], 20)]);
    assert_eq!(h.sequences(reader, &other), [1]);
    assert_eq!(h.sequences(reader, &second), [2, 3, 4, 5]);
}

#[test]
fn a_backlog_over_16_mib_syncs_in_chunk_frames_of_at_most_1_mib() {
    let mut h = Harness::new();
    // Twelve batches of 1.5 MB (Effect's reference server sends them as one
    // Chunk frame its client refuses).
    let store = StoreKey::new(alice().public_key, STORE);
    let writes: Vec<BatchWrite> = (0..12u64)
        .map(|k| {
            let b = batch([2 * k + 1, 2 * k + 2], 1_500_000);
            BatchWrite {
                store: store.clone(),
                iv: b.iv,
                entry_ids: b.entry_ids,
                encrypted_batch: b.encrypted_batch,
            }
        })
        .collect();
    h.store.append_batches(&writes).unwrap();
    let stored = everything(&mut h, &alice());
    assert_eq!(stored.len(), 12);

    let reader = h.connect(0, 1, &alice());
    h.auto_ack.insert(reader);
    let stream = h.changes(reader, &alice().public_key, STORE, 1);

    let chunk_frames: Vec<&Bytes> = h.frames[&reader]
        .iter()
        .zip(h.got(reader))
        .filter(|(_, got)| matches!(got, Got::Chunk { .. }))
        .map(|(frame, _)| frame)
        .collect();
    let total: usize = chunk_frames.iter().map(|f| f.len()).sum();
    assert!(total > 16 * 1024 * 1024, "{total} bytes of Chunks");
    for frame in &chunk_frames {
        assert!(
            frame.len() <= 1024 * 1024,
            "a Chunk frame of {}",
            frame.len()
        );
    }
    let got = h.batches(reader, &stream);
    let got_as_stored: Vec<StoredBatch> = got
        .into_iter()
        .map(|b| StoredBatch {
            sequence: b.sequence,
            iv: b.iv,
            entry_ids: b.entry_ids,
            encrypted_batch: b.encrypted_batch,
        })
        .collect();
    assert_eq!(got_as_stored, stored, "every batch once, in sequence order");
    assert!(
        h.chunks(reader, &stream)
            .iter()
            .flatten()
            .any(|v| matches!(v, ChangesValue::Chunked(_))),
        "batches over 512,000 bytes go as Chunked pieces"
    );
}

// --------------------------------------------------- Ping, framing, errors

#[test]
fn ping_is_answered_with_exactly_the_pong_frame_however_the_frames_are_split() {
    let mut h = Harness::new();
    let conn = h.open(1);
    h.send_raw(conn, Bytes::from_static(&PING_FRAME));
    assert_eq!(h.frames[&conn], [Bytes::from_static(&PONG_FRAME)]);

    // A frame across two messages, and two frames in one message.
    h.send_raw(conn, Bytes::from_static(&PING_FRAME[..4]));
    assert_eq!(h.frames[&conn].len(), 1);
    h.send_raw(conn, Bytes::from_static(&PING_FRAME[4..]));
    assert_eq!(h.frames[&conn].len(), 2);
    h.send_raw(conn, [PING_FRAME, PING_FRAME].concat());
    assert_eq!(h.frames[&conn].len(), 4);
    assert!(h.frames[&conn].iter().all(|f| f[..] == PONG_FRAME[..]));
    assert_eq!(h.closed.get(&conn), None);
}

#[test]
fn bad_input_closes_only_its_connection() {
    let mut h = Harness::new();
    let good = h.connect(0, 1, &alice());

    let garbage = h.open(2);
    h.send_raw(garbage, vec![0x04, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        h.closed.get(&garbage).map(|c| c.0),
        Some(code::PROTOCOL_ERROR)
    );

    let fingerprint = h.open(3);
    let mut ping = PING_FRAME;
    ping[4] ^= 0x01;
    h.send_raw(fingerprint, ping.to_vec());
    assert_eq!(
        h.closed.get(&fingerprint).map(|c| c.0),
        Some(code::PROTOCOL_ERROR)
    );

    // A length prefix over the frame limit (2 MiB), before its bytes come.
    let too_long = h.open(4);
    let mut prefix = Vec::new();
    let mut n: u64 = 3 * 1024 * 1024;
    while n >= 0x80 {
        prefix.push((n as u8) | 0x80);
        n >>= 7;
    }
    prefix.push(n as u8);
    prefix.extend_from_slice(&PING_FRAME[1..]);
    h.send_raw(too_long, prefix);
    assert_eq!(
        h.closed.get(&too_long).map(|c| c.0),
        Some(code::MESSAGE_TOO_BIG)
    );

    // A server message from a client.
    let wrong_way = h.open(5);
    h.send_raw(wrong_way, Bytes::from_static(&PONG_FRAME));
    assert_eq!(
        h.closed.get(&wrong_way).map(|c| c.0),
        Some(code::PROTOCOL_ERROR)
    );

    assert_open(&mut h, good);
    let w = h.write(good, &alice(), STORE, &[batch([1], 10)]);
    assert_eq!(h.acks(good, &w).len(), 1);
    assert_eq!(h.engine().connection_count(), 1);
}

#[test]
fn a_frame_left_unfinished_across_messages_closes_the_connection_at_the_age_limit() {
    let mut h = Harness::new();
    let parked = h.open(1);
    let finishing = h.open(2);
    let bystander = h.connect(0, 3, &alice());
    assert_eq!(h.engine().poll_timeout(), None);

    // Part of a frame on each: a deadline from its first byte.
    h.now = T0.plus_millis(5);
    h.send_raw(parked, Bytes::from_static(&PING_FRAME[..4]));
    h.send_raw(finishing, Bytes::from_static(&PING_FRAME[..4]));
    let deadline = h
        .engine()
        .poll_timeout()
        .expect("a deadline for the partial frame");
    assert_eq!(deadline, T0.plus_millis(5 + 120_000));

    // More of it does not move the deadline (a drip keeps no frame alive);
    // finishing it and starting the next restarts the clock.
    h.now = T0.plus_millis(60_000);
    h.send_raw(parked, Bytes::from_static(&PING_FRAME[4..6]));
    h.send_raw(finishing, [&PING_FRAME[4..], &PING_FRAME[..2]].concat());
    assert_eq!(
        h.frames[&finishing].len(),
        1,
        "the finished frame was answered"
    );
    assert_eq!(h.engine().poll_timeout(), Some(deadline));

    h.advance_to(Timestamp(deadline.0 - 1));
    assert_eq!(h.closed.get(&parked), None);
    h.advance_to(deadline);
    let (close_code, reason) = h
        .closed
        .get(&parked)
        .cloned()
        .expect("closed at the deadline");
    assert_eq!(close_code, code::PROTOCOL_ERROR);
    assert_eq!(reason, "a frame incomplete after 120000 ms (6 bytes held)");
    assert_eq!(
        h.closed.get(&finishing),
        None,
        "its clock restarted at 60 s"
    );
    assert_eq!(
        h.engine().poll_timeout(),
        Some(T0.plus_millis(60_000 + 120_000))
    );

    // Finished in time: no deadline left, and the connection is served.
    h.send_raw(finishing, Bytes::from_static(&PING_FRAME[2..]));
    assert_eq!(h.engine().poll_timeout(), None);
    assert_eq!(h.frames[&finishing].len(), 2);
    assert_eq!(h.closed.get(&finishing), None);
    assert_open(&mut h, bystander);
}

/// The adapter's close for input bad below this layer (a WebSocket message
/// never finished, or over the size limit) is the engine's: sent with its
/// code and reason, counted by that code (not as the peer's close), and
/// only that connection's.
#[test]
fn a_violation_the_adapter_found_closes_that_connection_as_the_engines_own() {
    let mut h = Harness::new();
    let bad = h.connect(0, 1, &alice());
    let bystander = h.connect(0, 2, &alice());
    h.engine().take_stats();
    let reason = "a WebSocket message incomplete after 120000 ms (9 bytes received)";
    h.engine()
        .handle_violation(bad, code::PROTOCOL_ERROR, reason.into());
    h.pump(0);
    assert_eq!(
        h.closed.get(&bad),
        Some(&(code::PROTOCOL_ERROR, reason.to_string()))
    );
    let stats = h.engine().take_stats();
    assert_eq!(stats.closes[CloseKind::ProtocolError.index()], 1);
    assert_eq!(stats.closes[CloseKind::Peer.index()], 0);
    assert_open(&mut h, bystander);
}

#[test]
fn an_unknown_request_tag_gets_a_die_exit_and_the_connection_stays_open() {
    let mut h = Harness::new();
    let conn = h.open(1);
    let id = h.request(conn, "EventLog.CompactionBegin", v4::encode(&()));
    let exit = h.exit::<(), EventLogProtocolError>(conn, &id);
    assert_eq!(
        exit,
        Exit::Failure(vec![Reason::Die(Defect::message(
            "Unknown request tag: EventLog.CompactionBegin"
        ))])
    );
    assert_open(&mut h, conn);
    h.login(conn, &alice());

    // A payload that does not decode fails only its request, as a defect.
    let id = h.request(conn, "EventLog.Changes", v4::encode(&()));
    match h.exit::<(), EventLogProtocolError>(conn, &id) {
        Exit::Failure(reasons) => assert!(matches!(reasons[..], [Reason::Die(_)])),
        other => panic!("{other:?}"),
    }
    assert_open(&mut h, conn);
}

// -------------------------------------------------------------- two nodes

#[test]
fn a_batch_written_through_one_engine_reaches_a_subscriber_on_another_after_log_advanced() {
    let mut h = Harness::with_nodes(2, SessionConfig::default());
    let writer = h.connect(0, 1, &alice());
    let reader = h.connect(1, 2, &alice());
    h.auto_ack.insert(reader);
    let stream = h.changes(reader, &alice().public_key, STORE, 1);
    assert!(h.batches(reader, &stream).is_empty());

    let w = h.write(writer, &alice(), STORE, &[batch(1..=2, 10), batch([3], 10)]);
    assert_eq!(h.acks(writer, &w).last().unwrap().sequence, 3);
    assert!(
        h.batches(reader, &stream).is_empty(),
        "node 1 has not heard"
    );

    h.log_advanced(1, &alice().public_key, STORE, 3);
    assert_eq!(h.sequences(reader, &stream), [1, 3]);
    // A repeated (late) notification delivers nothing twice.
    h.log_advanced(1, &alice().public_key, STORE, 3);
    assert_eq!(h.sequences(reader, &stream), [1, 3]);

    // And the other way round.
    h.auto_ack.insert(writer);
    let back = h.changes(writer, &alice().public_key, STORE, 4);
    let w = h.write(reader, &alice(), STORE, &[batch([4], 10)]);
    assert_eq!(h.acks(reader, &w)[0].sequence, 4);
    h.log_advanced(0, &alice().public_key, STORE, 4);
    assert_eq!(h.sequences(writer, &back), [4]);
}

// ------------------------------------------------------------- request log

fn request_lines(h: &Harness) -> Vec<RequestLine> {
    h.events
        .iter()
        .filter_map(|e| match e {
            v4::Event::Request { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn with_the_request_log_on_every_decoded_message_is_summarised_and_with_it_off_none_is() {
    let mut h = Harness::new();
    let quiet = h.connect(0, 1, &alice());
    h.write(quiet, &alice(), STORE, &[batch([1], 10)]);
    assert!(request_lines(&h).is_empty(), "off by default");

    h.engine().set_debug(true);
    let conn = h.connect(0, 2, &bob());
    let write = h.write(conn, &bob(), STORE, &[batch([2, 3], 10), batch([4], 10)]);
    h.auto_ack.insert(conn);
    let stream = h.changes(conn, &bob().public_key, STORE, 1);
    h.interrupt(conn, &stream);
    h.send(conn, &FromClient::Ping);
    let data = write_entries_frame(&bob().public_key, STORE, &[batch([5], 600_000)]);
    let pieces = split(7, &data);
    h.write_chunked(conn, &pieces[1]);

    let got = request_lines(&h);
    let tags: Vec<&str> = got.iter().map(|s| s.tag.as_str()).collect();
    assert_eq!(
        tags,
        [
            "EventLog.Hello",
            "EventLog.Authenticate",
            "EventLog.WriteSingle",
            "EventLog.Changes",
            "Ack",
            "Interrupt",
            "Ping",
            "EventLog.WriteChunked",
        ]
    );
    let bob_key = Some(bob().public_key);
    assert_eq!(
        got[1].public_key, bob_key,
        "Authenticate names its identity"
    );
    let RequestId::Number(n) = write else {
        panic!("numeric ids")
    };
    assert_eq!(
        got[2],
        RequestLine {
            protocol: "v4",
            tag: "EventLog.WriteSingle".into(),
            id: Some(n.to_string()),
            public_key: bob_key.clone(),
            store_id: Some(STORE.into()),
            batches: Some(2),
            entries: 3,
            start_sequence: None,
            part: None,
        }
    );
    assert_eq!(got[3].store_id.as_deref(), Some(STORE));
    assert_eq!(got[3].start_sequence, Some(1));
    let RequestId::Number(s) = stream else {
        panic!("numeric ids")
    };
    assert_eq!(got[4].id, Some(s.to_string()), "the Ack names its stream");
    assert_eq!(got[5].id, Some(s.to_string()));
    assert_eq!(got[7].part, Some(format!("1/{}", pieces.len())));
}

#[test]
fn the_idle_socket_timeout_closes_a_quiet_v4_connection_with_1000_and_spares_one_that_pings() {
    let config = SessionConfig {
        idle_socket_timeout_ms: Some(10_000),
        ..SessionConfig::default()
    };
    let mut h = Harness::with_config(config);
    let pinging = h.connect(0, 1, &alice());
    let quiet = h.connect(0, 2, &bob());
    assert_eq!(
        h.engine().poll_timeout(),
        Some(T0.plus_millis(10_000)),
        "the first idle deadline is a timer the adapter must set"
    );
    for second in [4, 8, 12] {
        h.advance_to(T0.plus_millis(second * 1000 - 1));
        h.send(pinging, &FromClient::Ping);
    }
    h.advance_to(T0.plus_millis(10_000));
    assert_eq!(
        h.closed.get(&quiet),
        Some(&(code::NORMAL, "idle: no frame received for 10 s".to_owned()))
    );
    assert_eq!(h.closed.get(&pinging), None);
    // Pinged last at 11.999 s: closed only 10 s after that.
    h.advance_to(T0.plus_millis(21_998));
    assert_eq!(h.closed.get(&pinging), None);
    h.advance_to(T0.plus_millis(21_999));
    assert_eq!(h.closed.get(&pinging).map(|c| c.0), Some(code::NORMAL));
}

#[test]
fn without_the_idle_socket_timeout_a_quiet_v4_connection_stays_open() {
    let mut h = Harness::new();
    let quiet = h.connect(0, 1, &alice());
    assert_eq!(h.engine().poll_timeout(), None);
    h.advance_to(T0.plus_millis(86_400_000));
    assert_open(&mut h, quiet);
}
