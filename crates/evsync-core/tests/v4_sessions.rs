//! The v4 engine's two session variants beyond the encrypted socket, with
//! the deterministic harness of `v4_engine.rs` (no sockets, time passed in):
//! - a connection restored after its engine restarted (a Durable Object
//!   woken from hibernation): identities kept, each Changes stream resumed
//!   from the first sequence its client had not acknowledged;
//! - the unencrypted endpoint (`EventLogRemote.layerUnencrypted` clients):
//!   plaintext entries relayed through stores shared by every identity,
//!   stored in entry-id order, acked in request order, sent as
//!   `RemoteEntry` rows, apart from encrypted stores.

#[path = "support/v4.rs"]
mod v4_support;

use bytes::Bytes;
use evsync_core::access::Grant;
use evsync_core::log::ConnId;
use evsync_core::proto::v4::{
    self, ChangesValue, Entry, RemoteEntry, SessionConfig, WriteEntriesUnencrypted,
};
use v4_support::*;

const STORE: &str = "notes";

fn alice() -> Identity {
    Identity::new("alice-public-key", 1)
}

fn bob() -> Identity {
    Identity::new("bob-public-key", 2)
}

/// Opens `conn` on `node` as the unencrypted endpoint does and logs
/// `identity` in.
fn connect_plaintext(h: &mut Harness, node: usize, conn: u64, identity: &Identity) -> ConnId {
    let conn = ConnId(conn);
    h.conn_node.insert(conn, node);
    h.nodes[node].handle_open(conn, Grant::full(), true, h.now);
    h.pump(node);
    h.login(conn, identity);
    conn
}

fn entry(n: u64, text: &str) -> Entry {
    Entry {
        payload: Bytes::from(text.as_bytes().to_vec()),
        id: entry_id(n),
        primary_key: format!("pk-{n}").into(),
        event: "Note".into(),
    }
}

/// The `RemoteEntry` rows stream `id` delivered to `conn` (whole values).
fn remote_entries(h: &Harness, conn: ConnId, id: &v4::RequestId) -> Vec<RemoteEntry> {
    h.chunks(conn, id)
        .into_iter()
        .flatten()
        .flat_map(|value| match value {
            ChangesValue::Single { data } => {
                v4::decode::<Vec<RemoteEntry>>(&data).expect("a plaintext Changes value")
            }
            ChangesValue::Chunked(_) => panic!("small entries come in Single values"),
        })
        .collect()
}

#[test]
fn a_restored_connection_keeps_its_identities_and_resumes_each_stream_where_its_client_acked() {
    let mut h = Harness::with_nodes(2, SessionConfig::default());
    let writer = h.connect(0, 1, &alice());
    let reader = h.connect(0, 2, &alice());
    let stream = h.changes(reader, &alice().public_key, STORE, 1);
    for n in 0..3u64 {
        h.write(
            writer,
            &alice(),
            STORE,
            &[batch([10 * n + 1, 10 * n + 2], 40)],
        );
    }
    // The reader never acknowledged its first Chunk: one was sent, the rest wait.
    assert_eq!(h.chunk_count(reader), 1);
    assert_eq!(h.sequences(reader, &stream), [1]);

    let saved = h.nodes[0]
        .saved_session(reader)
        .expect("an open connection");
    assert!(!saved.plaintext);
    assert_eq!(saved.identities, [alice().public_key]);
    assert_eq!(saved.streams.len(), 1);
    assert_eq!(saved.streams[0].request_id, stream);
    assert_eq!(saved.streams[0].store.store_id, STORE);
    assert_eq!(
        saved.streams[0].resume_from, 1,
        "the unacknowledged Chunk is where the stream resumes"
    );

    // The engine is gone (node 0 stands for the old object); a new one
    // restores the socket from what was saved.
    h.conn_node.insert(reader, 1);
    h.nodes[1].restore_connection(reader, Grant::full(), saved, h.now);
    h.auto_ack.insert(reader);
    h.pump(1);
    assert_eq!(
        h.sequences(reader, &stream),
        [1, 1, 3, 5],
        "the Chunk in flight is sent again, then the rest, each batch once after the restart"
    );

    // Still authenticated: it writes without a new Authenticate.
    let id = h.write(reader, &alice(), STORE, &[batch([99], 40)]);
    assert_eq!(h.acks(reader, &id).len(), 1);
    assert!(h.closed.is_empty(), "{:?}", h.closed);
}

#[test]
fn unencrypted_entries_are_relayed_in_id_order_acked_in_request_order_and_shared_by_identities() {
    let mut h = Harness::new();
    let writer = connect_plaintext(&mut h, 0, 1, &alice());
    let reader = connect_plaintext(&mut h, 0, 2, &bob());
    h.auto_ack.insert(reader);
    // Bob reads the store Alice writes: plaintext stores are keyed by
    // storeId alone.
    let stream = h.changes(reader, &bob().public_key, STORE, 1);

    let request = WriteEntriesUnencrypted {
        store_id: STORE.into(),
        entries: vec![entry(30, "c"), entry(10, "a"), entry(20, "b")],
        public_key: alice().public_key,
    };
    let id = h.write_single(writer, Bytes::from(v4::encode(&request)));
    let acks = h.acks(writer, &id);
    let acked: Vec<(Bytes, u64)> = acks
        .iter()
        .map(|a| (a.entry_id.clone(), a.sequence))
        .collect();
    assert_eq!(
        acked,
        [(entry_id(30), 3), (entry_id(10), 1), (entry_id(20), 2)],
        "stored in id order, acked in the request's order"
    );
    let got = remote_entries(&h, reader, &stream);
    let got: Vec<(u64, Entry)> = got
        .into_iter()
        .map(|r| (r.remote_sequence, r.entry))
        .collect();
    assert_eq!(
        got,
        [
            (1, entry(10, "a")),
            (2, entry(20, "b")),
            (3, entry(30, "c"))
        ],
        "each entry as written, at its sequence"
    );

    // Written again with one new entry: the known ones keep their sequences.
    let again = WriteEntriesUnencrypted {
        store_id: STORE.into(),
        entries: vec![entry(20, "b"), entry(40, "d")],
        public_key: alice().public_key,
    };
    let id = h.write_single(writer, Bytes::from(v4::encode(&again)));
    let acked: Vec<u64> = h.acks(writer, &id).iter().map(|a| a.sequence).collect();
    assert_eq!(acked, [2, 4]);
    let sequences: Vec<u64> = remote_entries(&h, reader, &stream)
        .iter()
        .map(|r| r.remote_sequence)
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4], "only the new entry is delivered");

    // The encrypted side of the tenant holds none of it.
    let encrypted = h.connect(0, 3, &alice());
    h.auto_ack.insert(encrypted);
    let enc_stream = h.changes(encrypted, &alice().public_key, STORE, 1);
    assert!(h.sequences(encrypted, &enc_stream).is_empty());
    assert!(h.closed.is_empty(), "{:?}", h.closed);
}

#[test]
fn the_owner_of_plaintext_stores_cannot_authenticate() {
    let mut h = Harness::new();
    let conn = h.open(1);
    h.hello(conn);
    let nobody = Identity::new(v4::PLAINTEXT_OWNER, 3);
    let id = h.authenticate(conn, &nobody);
    assert_protocol_error(
        h.exit::<(), v4::EventLogProtocolError>(conn, &id),
        v4::ErrorCode::Forbidden,
        "Session auth signature verification failed",
    );
}
