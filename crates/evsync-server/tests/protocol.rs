//! The EventLogRemote protocol end to end over real WebSockets, against an
//! in-process server: Hello, Ack, dedup, catch-up then live, StopChanges,
//! Ping, subscription isolation, chunking, bad input, limits.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use bytes::Bytes;
use common::{Client, entries, entry, http_get, sequences, write_request};
use evsync_core::proto::close::code as close_code;
use evsync_core::wire::{Request, Response};
use inproc::{memory_config, sqlite_config, start};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn hello_comes_first_with_a_stable_uuid_v4_remote_id() {
    let server = start(memory_config()).await;
    let (_a, id_a) = Client::connect_hello(server.addr, "acme").await;
    let (_b, id_b) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(id_a, id_b, "one tenant, one remoteId");
    assert_eq!(id_a.0[6] >> 4, 4, "UUID version 4");
    assert_eq!(id_a.0[8] & 0xc0, 0x80, "RFC 4122 variant");
    server.shutdown().await;
}

#[tokio::test]
async fn writes_are_acked_in_request_order_with_dedup() {
    let server = start(memory_config()).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(c.write("pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);
    let mixed = vec![entry(4, 8), entry(2, 8), entry(5, 8), entry(4, 8)];
    assert_eq!(
        c.write("pk", 2, &mixed).await,
        vec![4, 2, 5, 4],
        "stored entries report their original sequence, in position"
    );
    assert_eq!(
        c.write("pk", 3, &[]).await,
        Vec::<u64>::new(),
        "empty batch"
    );
    assert_eq!(
        c.write("other", 4, &entries(1..=1)).await,
        vec![1],
        "per-log sequences"
    );
    c.request_changes("pk", 0).await;
    let all = c.changes("pk", 5).await;
    assert_eq!(
        sequences(&all),
        vec![1, 2, 3, 4, 5],
        "duplicates are not stored twice"
    );
    assert!(all.iter().all(|e| e.iv[..] == [7u8; 12]));
    server.shutdown().await;
}

#[tokio::test]
async fn request_changes_sends_the_backlog_then_live_changes() {
    let server = start(memory_config()).await;
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut reader, _) = Client::connect_hello(server.addr, "acme").await;
    writer.write("pk", 1, &entries(1..=3)).await;
    reader.request_changes("pk", 2).await;
    let backlog = reader.changes("pk", 2).await;
    assert_eq!(sequences(&backlog), vec![2, 3], "from startSequence on");
    assert_eq!(backlog[0].entry_id, common::entry_id(2));
    writer.write("pk", 2, &entries(4..=5)).await;
    let live = reader.changes("pk", 2).await;
    assert_eq!(sequences(&live), vec![4, 5], "live, no gap, no repeat");
    assert_eq!(live[1].encrypted_entry, entry(5, 32).encrypted_entry);
    server.shutdown().await;
}

#[tokio::test]
async fn stop_changes_ends_the_subscription() {
    let server = start(memory_config()).await;
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut reader, _) = Client::connect_hello(server.addr, "acme").await;
    reader.request_changes("pk", 0).await;
    writer.write("pk", 1, &entries(1..=1)).await;
    assert_eq!(sequences(&reader.changes("pk", 1).await), vec![1]);
    reader
        .send(&Request::StopChanges {
            public_key: "pk".into(),
        })
        .await;
    assert!(reader.barrier(10).await.is_empty());
    writer.write("pk", 2, &entries(2..=2)).await;
    // The Ack went out after the commit; live Changes, had there been any,
    // were queued for the reader before its next Pong.
    let seen = reader.barrier(11).await;
    assert!(seen.is_empty(), "no Changes after StopChanges: {seen:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn ping_gets_pong_with_the_same_id() {
    let server = start(memory_config()).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    for id in [0, 1, 42, 1 << 40, -5] {
        c.ping(id).await;
        assert_eq!(c.recv().await, Response::Pong { id });
    }
    server.shutdown().await;
}

#[tokio::test]
async fn live_changes_go_only_to_subscribers_of_that_log() {
    let server = start(memory_config()).await;
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut bystander, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut other_log, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut subscriber, _) = Client::connect_hello(server.addr, "acme").await;
    other_log.request_changes("other", 0).await;
    subscriber.request_changes("pk", 0).await;
    assert!(
        other_log
            .barrier(1)
            .await
            .iter()
            .all(|r| matches!(r, Response::Changes { entries, .. } if entries.is_empty()))
    );
    assert!(
        subscriber
            .barrier(1)
            .await
            .iter()
            .all(|r| matches!(r, Response::Changes { entries, .. } if entries.is_empty()))
    );
    writer.write("pk", 1, &entries(1..=2)).await;
    assert_eq!(sequences(&subscriber.changes("pk", 2).await), vec![1, 2]);
    assert!(
        bystander.barrier(2).await.is_empty(),
        "not subscribed: nothing"
    );
    assert!(
        other_log.barrier(2).await.is_empty(),
        "another log: nothing"
    );
    let writer_saw = writer.barrier(2).await;
    assert!(
        writer_saw
            .iter()
            .all(|r| !matches!(r, Response::Changes { .. })),
        "the writer did not subscribe: {writer_saw:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn chunked_write_of_1_5_mb_and_chunked_changes_back() {
    let server = start(memory_config()).await;
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    let big = vec![entry(1, 700_000), entry(2, 800_000)];
    let parts = writer.send_chunked(&write_request("pk", 9, &big)).await;
    assert_eq!(parts, 3, "1.5 MB goes as three 512,000-byte parts");
    assert_eq!(writer.ack(9).await, vec![1, 2]);
    let (mut reader, _) = Client::connect_hello(server.addr, "acme").await;
    reader.request_changes("pk", 0).await;
    let back = reader.changes("pk", 2).await;
    assert_eq!(sequences(&back), vec![1, 2]);
    assert_eq!(back[0].encrypted_entry, big[0].encrypted_entry);
    assert_eq!(back[1].encrypted_entry, big[1].encrypted_entry);
    server.shutdown().await;
}

#[tokio::test]
async fn a_512000_byte_part_fits_the_frame_limit_and_an_oversized_frame_closes_1009() {
    let mut config = memory_config();
    config.engine.max_frame_bytes = 600_000;
    let server = start(config).await;
    let (mut ok, _) = Client::connect_hello(server.addr, "acme").await;
    let one = vec![entry(1, 1_200_000)];
    ok.send_chunked(&write_request("pk", 1, &one)).await;
    assert_eq!(ok.ack(1).await, vec![1], "full-size parts pass the limit");

    let (mut big, _) = Client::connect_hello(server.addr, "acme").await;
    big.send_raw(Message::Binary(vec![0u8; 700_000].into()))
        .await;
    let closed = big.closed().await;
    assert_eq!(closed.code, Some(close_code::MESSAGE_TOO_BIG), "{closed:?}");
    // The other socket is unaffected.
    assert!(ok.barrier(5).await.is_empty());
    let metrics = http_get(server.addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("evsync_connections_closed_total{reason=\"message_too_big\"} 1"),
        "the server's close, counted by its code: {metrics}"
    );
    server.shutdown().await;
}

/// Bytes of a WebSocket message wait for the rest at most as long as a
/// chunked message's parts may: a peer that starts a message and drips
/// more of it is closed 1002 with the reason, from its first byte on; a
/// socket quiet for longer after a whole message is still served.
#[tokio::test]
async fn a_websocket_message_left_unfinished_closes_its_socket_at_the_age_limit() {
    let limit = Duration::from_millis(1_000);
    let mut config = memory_config();
    config.engine.chunks.max_incomplete_age_ms = limit.as_millis() as u64;
    let server = start(config).await;
    let (mut quiet, _) = Client::connect_hello(server.addr, "acme").await;
    quiet.ping(1).await;
    assert_eq!(quiet.recv().await, Response::Pong { id: 1 });

    let (mut dripper, _) = Client::connect_hello(server.addr, "acme").await;
    // A masked binary frame that announces 1,000 bytes, and 100 of them.
    let mut start = vec![0x82, 0x80 | 126, 0x03, 0xe8, 1, 2, 3, 4];
    start.extend_from_slice(&[0u8; 100]);
    let began = Instant::now();
    dripper.write_tcp(&start).await;
    // Pacing, not synchronisation: one more byte of the same message
    // later on is counted but does not restart its wait.
    tokio::time::sleep(limit / 4).await;
    dripper.write_tcp(&[0]).await;
    let closed = dripper.closed().await;
    assert_eq!(closed.code, Some(close_code::PROTOCOL_ERROR), "{closed:?}");
    assert!(
        closed
            .reason
            .starts_with("a WebSocket message incomplete after")
            && closed.reason.ends_with("(109 bytes received)"),
        "{closed:?}"
    );
    assert!(began.elapsed() >= limit, "closed before the limit");

    quiet.ping(2).await;
    assert_eq!(
        quiet.recv().await,
        Response::Pong { id: 2 },
        "a socket quiet since a whole message stays open past the limit"
    );
    // Counted as the server's close for bad input, not as the peer's (the
    // Pong above came from the same tenant actor, after that count).
    let metrics = http_get(server.addr, "/metrics", &[]).await.body;
    assert!(
        metrics.contains("evsync_connections_closed_total{reason=\"protocol_error\"} 1"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_input_closes_only_that_socket_with_a_reason() {
    let server = start(memory_config()).await;
    let (mut good, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut bad, _) = Client::connect_hello(server.addr, "acme").await;
    bad.send_raw(Message::Binary(vec![0xc1, 0xff, 0x00].into()))
        .await;
    let closed = bad.closed().await;
    assert_eq!(closed.code, Some(close_code::PROTOCOL_ERROR), "{closed:?}");
    assert!(!closed.reason.is_empty(), "the close says why");
    good.ping(3).await;
    assert_eq!(good.recv().await, Response::Pong { id: 3 });
    let (mut again, _) = Client::connect_hello(server.addr, "acme").await;
    again.ping(4).await;
    assert_eq!(
        again.recv().await,
        Response::Pong { id: 4 },
        "the tenant lives on"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn text_frames_are_passed_to_the_engine_as_their_utf8_bytes() {
    // No msgpack map is valid UTF-8 (its first byte is 0x80-0x8f or
    // 0xde/0xdf), so a text frame can only ever be a malformed message: it
    // must reach the decoder (1002 "invalid message"), not be ignored or
    // refused as unsupported data (1003).
    let server = start(memory_config()).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    c.send_raw(Message::Text("{\"_tag\":\"Ping\",\"id\":1}".into()))
        .await;
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(close_code::PROTOCOL_ERROR), "{closed:?}");
    assert!(closed.reason.starts_with("invalid message"), "{closed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn websocket_pings_get_pongs() {
    let server = start(memory_config()).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    c.send_raw(Message::Ping(Bytes::from_static(b"hi"))).await;
    let pong = common::within("a websocket pong", async {
        use futures_util::StreamExt;
        loop {
            match c.ws.next().await {
                Some(Ok(Message::Pong(data))) => return data,
                Some(Ok(_)) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(&pong[..], b"hi");
    server.shutdown().await;
}

#[tokio::test]
async fn tenants_are_isolated() {
    let server = start(memory_config()).await;
    let (mut a, id_a) = Client::connect_hello(server.addr, "tenant-a").await;
    let (mut b, id_b) = Client::connect_hello(server.addr, "tenant-b").await;
    assert_ne!(id_a, id_b, "each tenant has its own remoteId");
    assert_eq!(a.write("same-pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);
    b.request_changes("same-pk", 0).await;
    let seen = b.barrier(1).await;
    assert!(
        seen.iter()
            .all(|r| matches!(r, Response::Changes { entries, .. } if entries.is_empty())),
        "tenant b sees nothing of tenant a: {seen:?}"
    );
    assert_eq!(
        b.write("same-pk", 2, &entries(3..=3)).await,
        vec![1],
        "the same publicKey in another tenant is another log"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn idle_tenants_unload_and_reload_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(dir.path());
    config.idle_grace = std::time::Duration::ZERO;
    let server = start(config).await;
    let (mut c, id) = Client::connect_hello(server.addr, "acme").await;
    c.write("pk", 1, &entries(1..=2)).await;
    assert_eq!(server.handle.loaded_tenants(), 1);
    drop(c);
    common::within(
        "the tenant to unload",
        server.handle.wait_loaded_tenants(|n| *n == 0),
    )
    .await;
    let (mut c, id_again) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(id, id_again, "reloaded from its file");
    c.request_changes("pk", 0).await;
    assert_eq!(sequences(&c.changes("pk", 2).await), vec![1, 2]);
    server.shutdown().await;
}

#[tokio::test]
async fn data_and_remote_id_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(sqlite_config(dir.path())).await;
    let (mut c, id) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(c.write("pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);
    server.shutdown().await;
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(close_code::GOING_AWAY));

    let server = start(sqlite_config(dir.path())).await;
    let (mut c, id_again) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(id, id_again, "the remoteId is stored with the data");
    c.request_changes("pk", 0).await;
    assert_eq!(sequences(&c.changes("pk", 3).await), vec![1, 2, 3]);
    assert_eq!(c.write("pk", 2, &entries(3..=4)).await, vec![3, 4]);
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_acks_received_writes_then_closes_1001() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(sqlite_config(dir.path())).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    let (mut idle, _) = Client::connect_hello(server.addr, "acme").await;
    c.send(&write_request("pk", 1, &entries(1..=50))).await;
    c.send(&write_request("pk", 2, &entries(51..=100))).await;
    // The Pong proves both writes reached the engine before the shutdown.
    let before = c.barrier(3).await;
    server.trigger_shutdown();
    let (after, closed) = c.until_closed().await;
    let acks: Vec<_> = before
        .iter()
        .chain(after.iter())
        .filter_map(|r| match r {
            Response::Ack {
                id,
                sequence_numbers,
            } => Some((*id, sequence_numbers.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        acks,
        vec![(1, 50), (2, 50)],
        "every received write is acked"
    );
    assert_eq!(closed.code, Some(close_code::GOING_AWAY));
    assert_eq!(idle.closed().await.code, Some(close_code::GOING_AWAY));
    let addr = server.addr;
    server.shutdown().await;
    let refused = Client::try_connect(addr, "acme", &[]).await;
    assert!(refused.is_err(), "a stopped server accepts nothing");
}
