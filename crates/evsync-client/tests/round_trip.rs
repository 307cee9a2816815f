//! Two Rust replicas of one identity through a real evsync server.

mod support;

use evsync_client::{Client, Config, EntryError, Error, Identity, msgpack};
use support::{TestServer, connect, fast, next, within};

#[tokio::test]
async fn two_clients_exchange_entries_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let a = connect(server.url("t"), &identity).await;
    let b = connect(server.url("t"), &identity).await;
    let mut a_in = a.subscribe().unwrap();
    let mut b_in = b.subscribe().unwrap();

    let payload = msgpack::encode_json_text(r#"{"id":"a1","text":"from a","n":1}"#).unwrap();
    let ra = within("ack", a.write("Note", "a1", payload.clone()))
        .await
        .unwrap();
    assert_eq!(ra.sequence, 1);
    let got = next(&mut b_in).await;
    assert_eq!(
        (got.sequence, got.id, got.event.as_str()),
        (1, ra.entry_id, "Note")
    );
    assert_eq!(got.primary_key, "a1");
    assert_eq!(got.payload, payload);
    assert_eq!(
        got.payload_json().unwrap(),
        serde_json::json!({"id": "a1", "text": "from a", "n": 1})
    );
    assert_eq!(got.created_at_millis, ra.entry_id.created_at_millis());
    assert_eq!(got.remote_id, ra.remote_id);

    let rb = within("ack", b.write("Note", "b1", b"raw".to_vec()))
        .await
        .unwrap();
    assert_eq!(rb.sequence, 2);
    // A's next entry is B's: its own write is not echoed back.
    let got = next(&mut a_in).await;
    assert_eq!((got.sequence, got.id), (2, rb.entry_id));
    assert_eq!(got.payload, b"raw");

    a.close().await;
    b.close().await;
    assert!(matches!(
        a.write("Note", "x", vec![]).await,
        Err(Error::Closed)
    ));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_writes_get_increasing_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let writer = connect(server.url("t"), &identity).await;
    let reader = connect(server.url("t"), &identity).await;
    let mut entries = reader.subscribe().unwrap();

    // Twenty writes in flight at once, each its own WriteEntries and iv.
    let writes = (0..20).map(|i| {
        let w = writer.clone();
        tokio::spawn(async move { w.write("E", format!("k{i}"), vec![i as u8]).await })
    });
    let mut sequences = Vec::new();
    for w in writes.collect::<Vec<_>>() {
        sequences.push(within("ack", w).await.unwrap().unwrap().sequence);
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=20).collect::<Vec<_>>());
    for expected in 1..=20 {
        assert_eq!(next(&mut entries).await.sequence, expected);
    }
    writer.close().await;
    reader.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_chunked_one_and_a_half_megabyte_entry_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let writer = connect(server.url("t"), &identity).await;
    let reader = connect(server.url("t"), &identity).await;
    let mut entries = reader.subscribe().unwrap();

    let payload: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let receipt = within("ack", writer.write("Blob", "big", payload.clone()))
        .await
        .unwrap();
    let got = next(&mut entries).await;
    assert_eq!(got.id, receipt.entry_id);
    assert_eq!(got.payload.len(), payload.len());
    assert!(got.payload == payload, "payload intact");

    // A late subscriber gets it from storage too (catch-up path).
    let late = connect(server.url("t"), &identity).await;
    let mut late_entries = late.subscribe().unwrap();
    assert!(next(&mut late_entries).await.payload == payload);
    for c in [writer, reader, late] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn an_entry_under_another_key_is_reported_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    // Same log id, another key: its entries cannot be opened by `identity`.
    let forger = Identity::from_parts(identity.public_key(), [9u8; 32]);
    let bad = connect(server.url("t"), &forger).await;
    let good = connect(server.url("t"), &identity).await;
    let reader = connect(server.url("t"), &identity).await;
    let mut entries = reader.subscribe().unwrap();

    within("ack", bad.write("E", "k", vec![1])).await.unwrap();
    within("ack", good.write("E", "k", vec![2])).await.unwrap();
    let first = within("an item", entries.recv()).await.unwrap();
    assert!(
        matches!(first, Err(EntryError::Decrypt { sequence: 1, .. })),
        "{first:?}"
    );
    let second = next(&mut entries).await;
    assert_eq!(
        (second.sequence, second.payload.as_slice()),
        (2, &[2u8][..])
    );
    for c in [bad, good, reader] {
        c.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn tokens_by_header_or_subprotocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with_token(dir.path(), "s3cret").await;
    let identity = Identity::generate();
    let url = server.url("t");

    let refused = Client::connect(fast(url.clone(), identity.clone())).await;
    assert!(
        matches!(refused, Err(Error::Http { status: 401, .. })),
        "{:?}",
        refused.err()
    );
    let wrong =
        Client::connect(fast(url.clone(), identity.clone()).with_bearer_token("nope")).await;
    assert!(matches!(wrong, Err(Error::Http { status: 401, .. })));

    let by_header =
        Client::connect(fast(url.clone(), identity.clone()).with_bearer_token("s3cret"))
            .await
            .unwrap();
    let by_protocol =
        Client::connect(fast(url.clone(), identity.clone()).with_subprotocol_token("s3cret"))
            .await
            .unwrap();
    let mut entries = by_protocol.subscribe().unwrap();
    let r = within("ack", by_header.write("E", "k", vec![7]))
        .await
        .unwrap();
    assert_eq!(next(&mut entries).await.id, r.entry_id);
    by_header.close().await;
    by_protocol.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_dead_url_fails_fast_with_a_typed_error() {
    // Bind and drop a listener: nothing listens on that port now.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = Config::new(format!("ws://{addr}/event-log/t"), Identity::generate());
    let err = within("a refusal", Client::connect(config))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::WebSocket(_)), "{err:?}");

    let bad = Config::new("http://example.invalid/event-log/t", Identity::generate());
    assert!(matches!(
        Client::connect(bad).await,
        Err(Error::InvalidUrl { .. })
    ));
}
