//! Losing the server: reconnecting, resuming by sequence without
//! duplicates, and writes that wait across the outage.

mod support;

use evsync_client::{Client, Identity, StateStore};
use support::{TestServer, connect, fast, next, wait_sessions, within};

#[tokio::test]
async fn a_restarted_server_is_rejoined_and_the_stream_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let url = server.url("t");
    let reader = connect(url.clone(), &identity).await;
    let writer = connect(url.clone(), &identity).await;
    let mut entries = reader.subscribe().unwrap();
    let remote = reader.status().borrow().remote_id;

    let first = within("ack", writer.write("E", "k", b"before".to_vec()))
        .await
        .unwrap();
    assert_eq!(next(&mut entries).await.id, first.entry_id);

    // Stop the server under both clients; they notice.
    let (addr, data) = server.stop().await;
    let mut status = reader.status();
    within("the loss", status.wait_for(|s| !s.connected))
        .await
        .unwrap();

    // A write during the outage waits, then goes through after reconnecting.
    let pending = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.write("E", "k", b"during".to_vec()).await })
    };

    let server = TestServer::start_with(&data, addr, evsync_server::AuthConfig::open()).await;
    wait_sessions(&reader, 2).await;
    wait_sessions(&writer, 2).await;
    assert_eq!(
        reader.status().borrow().remote_id,
        remote,
        "same stored log"
    );

    let during = within("the retried write", pending).await.unwrap().unwrap();
    assert_eq!(during.sequence, 2);
    // Resumed from sequence 1: the next entry is the new one, not a repeat.
    let got = next(&mut entries).await;
    assert_eq!((got.sequence, got.payload.as_slice()), (2, &b"during"[..]));
    let after = within("ack", writer.write("E", "k", b"after".to_vec()))
        .await
        .unwrap();
    assert_eq!(next(&mut entries).await.id, after.entry_id);

    reader.close().await;
    writer.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_new_process_resumes_from_its_state_file_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let state = StateStore::File(state_dir.path().join("tail-state.json"));
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let url = server.url("t");
    let writer = connect(url.clone(), &identity).await;

    let reader = Client::connect(fast(url.clone(), identity.clone()).with_state(state.clone()))
        .await
        .unwrap();
    let mut entries = reader.subscribe().unwrap();
    for i in 1..=3u8 {
        within("ack", writer.write("E", "k", vec![i]))
            .await
            .unwrap();
    }
    for i in 1..=3 {
        assert_eq!(next(&mut entries).await.sequence, i);
    }
    reader.close().await;
    let saved = state.load().unwrap();
    let remote = writer.status().borrow().remote_id.unwrap();
    assert_eq!(saved.last_sequence(&remote, identity.public_key()), 3);

    for i in 4..=5u8 {
        within("ack", writer.write("E", "k", vec![i]))
            .await
            .unwrap();
    }
    // "Restart": a new client with the same state file.
    let reader = Client::connect(fast(url.clone(), identity.clone()).with_state(state.clone()))
        .await
        .unwrap();
    let mut entries = reader.subscribe().unwrap();
    assert_eq!(
        next(&mut entries).await.sequence,
        4,
        "3 is not delivered again"
    );
    assert_eq!(next(&mut entries).await.sequence, 5);
    within("ack", writer.write("E", "k", vec![6]))
        .await
        .unwrap();
    assert_eq!(next(&mut entries).await.sequence, 6);
    reader.close().await;

    // An explicit start overrides the state (tail --from 2).
    let reader = Client::connect(
        fast(url.clone(), identity.clone())
            .with_state(state.clone())
            .with_start_sequence(2),
    )
    .await
    .unwrap();
    let mut entries = reader.subscribe().unwrap();
    assert_eq!(next(&mut entries).await.sequence, 2);
    reader.close().await;
    writer.close().await;
    server.stop().await;
}

#[tokio::test]
async fn own_writes_resent_after_a_reconnect_are_not_delivered_as_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let identity = Identity::generate();
    let url = server.url("t");
    let a = connect(url.clone(), &identity).await;
    let b = connect(url.clone(), &identity).await;
    let mut a_in = a.subscribe().unwrap();

    within("ack", a.write("E", "mine", vec![1])).await.unwrap();
    let server = server.restart().await;
    wait_sessions(&a, 2).await;
    // After the reconnect A catches up from its last seen sequence (0): the
    // server sends A's own entry 1, which A must not deliver.
    let theirs = within("ack", b.write("E", "theirs", vec![2]))
        .await
        .unwrap();
    let got = next(&mut a_in).await;
    assert_eq!((got.sequence, got.id), (theirs.sequence, theirs.entry_id));
    a.close().await;
    b.close().await;
    server.stop().await;
}
