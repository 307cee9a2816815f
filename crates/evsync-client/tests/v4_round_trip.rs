//! Rust v4 replicas through a real evsync server's `/v4/event-log/<tenant>`:
//! both ways, no echo, batches of several entries, a write over 512,000
//! bytes (WriteChunked pieces out, Chunked values back), history for a late
//! joiner, another store seeing nothing, and resuming after a restart from
//! the state file without repeats, tokens both ways.

mod support;

use evsync_client::state::StateStore;
use evsync_client::v4::{self, payload};
use evsync_client::{Entry, EntryId, Identity};
use std::time::Duration;
use support::{TestServer, fast, next, within};

fn url(server: &TestServer, tenant: &str) -> String {
    format!("ws://{}/v4/event-log/{tenant}", server.addr)
}

async fn connect(url: String, identity: &Identity, store: &str) -> v4::Client {
    within(
        "v4 connect",
        v4::Client::connect(fast(url, identity.clone()), store),
    )
    .await
    .expect("v4 connect")
}

#[tokio::test]
async fn two_v4_clients_exchange_entries_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let a = connect(url(&server, "t"), &identity, "default").await;
    let b = connect(url(&server, "t"), &identity, "default").await;
    let mut a_in = a.subscribe().unwrap();
    let mut b_in = b.subscribe().unwrap();

    let note = payload::encode_json_text(r#"{"id":"a1","text":"from a","n":1}"#).unwrap();
    let ra = within("ack", a.write("Note", "a1", note.clone()))
        .await
        .unwrap();
    let got = next(&mut b_in).await;
    assert_eq!((got.sequence, got.id), (ra.sequence, ra.entry_id));
    assert_eq!(
        (got.event.as_str(), got.primary_key.as_str()),
        ("Note", "a1")
    );
    assert_eq!(got.payload, note);
    assert_eq!(
        payload::decode_json(&got.payload, &["id", "text", "n"]),
        Some(serde_json::json!({"id": "a1", "text": "from a", "n": 1}))
    );

    // A batch of three entries (one request, one batch, one iv).
    let entries: Vec<Entry> = (0..3)
        .map(|i| Entry {
            id: EntryId::new_v7(),
            event: "Note".into(),
            primary_key: format!("b{i}"),
            payload: vec![i as u8; 10],
        })
        .collect();
    let receipts = within("acks", b.write_entries(entries.clone()))
        .await
        .unwrap();
    let sequences: Vec<u64> = receipts.iter().map(|r| r.sequence).collect();
    assert_eq!(
        sequences,
        [ra.sequence + 1, ra.sequence + 2, ra.sequence + 3]
    );
    for e in &entries {
        let got = next(&mut a_in).await;
        assert_eq!(
            (got.id, &got.primary_key, &got.payload),
            (e.id, &e.primary_key, &e.payload)
        );
    }

    // Over 512,000 bytes: WriteChunked pieces, Chunked values.
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let rbig = within("big ack", a.write("Big", "big", big.clone()))
        .await
        .unwrap();
    let got = next(&mut b_in).await;
    assert_eq!(
        (got.sequence, got.payload.len()),
        (rbig.sequence, big.len())
    );
    assert!(got.payload == big);

    // Nothing echoed: A's next entry is a new one of B's.
    let rb = within("ack", b.write("Note", "b9", vec![9])).await.unwrap();
    let got = next(&mut a_in).await;
    assert_eq!(got.id, rb.entry_id);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), b_in.recv())
            .await
            .is_err(),
        "B's own write came back"
    );

    a.close().await;
    b.close().await;
    server.stop().await;
}

#[tokio::test]
async fn late_joiners_get_history_and_stores_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let writer = connect(url(&server, "t"), &identity, "default").await;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(
            within("ack", writer.write("E", format!("k{i}"), vec![i]))
                .await
                .unwrap(),
        );
    }
    let other_store = connect(url(&server, "t"), &identity, "other").await;
    let mut other_in = other_store.subscribe().unwrap();
    let late = connect(url(&server, "t"), &identity, "default").await;
    let mut late_in = late.subscribe().unwrap();
    for r in &ids {
        let got = next(&mut late_in).await;
        assert_eq!((got.sequence, got.id), (r.sequence, r.entry_id));
    }
    // A write to "other" is all the other store sees.
    let ro = within("ack", late.write("E", "x", vec![1])).await.unwrap();
    let lone = connect(url(&server, "t"), &identity, "other").await;
    let r_other = within("ack", lone.write("E", "o", vec![2])).await.unwrap();
    let got = next(&mut other_in).await;
    assert_eq!(got.id, r_other.entry_id);
    assert_ne!(got.id, ro.entry_id);
    for c in [writer, other_store, late, lone] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_and_client_resume_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let server = TestServer::start(&dir.path().join("data")).await;
    let identity = Identity::generate();
    let writer = connect(url(&server, "t"), &identity, "default").await;
    let config =
        fast(url(&server, "t"), identity.clone()).with_state(StateStore::File(state.clone()));
    let reader = within("connect", v4::Client::connect(config.clone(), "default"))
        .await
        .unwrap();
    let mut reader_in = reader.subscribe().unwrap();
    let first = within("ack", writer.write("E", "1", vec![1]))
        .await
        .unwrap();
    assert_eq!(next(&mut reader_in).await.id, first.entry_id);

    // The server restarts: the reader reconnects by itself and goes on.
    let server = server.restart().await;
    let second = within("ack", writer.write("E", "2", vec![2]))
        .await
        .unwrap();
    let got = next(&mut reader_in).await;
    assert_eq!(
        got.id, second.entry_id,
        "nothing repeated after the reconnect"
    );
    assert!(reader.status().borrow().sessions >= 2);
    reader.close().await;

    // A new process with the state file starts after what it has seen.
    let third = within("ack", writer.write("E", "3", vec![3]))
        .await
        .unwrap();
    let again = within("connect", v4::Client::connect(config, "default"))
        .await
        .unwrap();
    let mut again_in = again.subscribe().unwrap();
    let got = next(&mut again_in).await;
    assert_eq!(got.id, third.entry_id);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), again_in.recv())
            .await
            .is_err(),
        "nothing else"
    );
    for c in [writer, again] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn tokens_go_as_header_or_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_token(dir.path(), "tok").await;
    let identity = Identity::generate();
    let refused = v4::Client::connect(fast(url(&server, "t"), identity.clone()), "default").await;
    assert!(
        matches!(refused, Err(evsync_client::Error::Http { status: 401, .. })),
        "{:?}",
        refused.err()
    );
    let a = within(
        "connect",
        v4::Client::connect(
            fast(url(&server, "t"), identity.clone()).with_subprotocol_token("tok"),
            "default",
        ),
    )
    .await
    .unwrap();
    let b = within(
        "connect",
        v4::Client::connect(
            fast(url(&server, "t"), identity.clone()).with_bearer_token("tok"),
            "default",
        ),
    )
    .await
    .unwrap();
    let mut b_in = b.subscribe().unwrap();
    let r = within("ack", a.write("E", "k", vec![1])).await.unwrap();
    assert_eq!(next(&mut b_in).await.id, r.entry_id);
    a.close().await;
    b.close().await;
    server.stop().await;
}
