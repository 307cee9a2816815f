//! The v4 client against a scripted server: a `Forbidden` answer to a
//! write and to the Changes stream makes it say Hello and authenticate
//! again on the same connection (with a valid signature over the new
//! challenge) and retry; Changes chunks are acked one by one and a
//! `Chunked` value is reassembled; a Ping goes out after 5 s and a server
//! that sends nothing back for `ping_timeout` is dropped.

use bytes::Bytes;
use evsync_client::v4::{self, Keys, batch};
use evsync_client::{Config, Entry, EntryId, Identity};
use evsync_core::proto::v4::{
    self as proto, Authenticate, AuthenticateExit, ChangesExit, ChangesPayload, ChangesValue,
    ChunkedMessage, EncryptedRemoteBatch, ErrorCode, EventLogProtocolError, FromClient, FromServer,
    HelloExit, HelloResponse, Reason, RequestId, WriteAck, WriteEntries, WriteExit,
    WriteSinglePayload,
};
use evsync_core::wire::RemoteId;
use futures_util::{SinkExt as _, StreamExt as _};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

const REMOTE: [u8; 16] = [7; 16];

fn forbidden(tag: &str) -> EventLogProtocolError {
    EventLogProtocolError {
        message: "Identity is not authenticated".into(),
        store_id: None,
        request_tag: tag.into(),
        public_key: None,
        code: ErrorCode::Forbidden,
    }
}

fn exit(id: RequestId, bytes: Vec<u8>) -> Message {
    Message::Binary(
        FromServer::Exit {
            request_id: id,
            exit: Bytes::from(bytes),
        }
        .encode()
        .into(),
    )
}

/// What the scripted server saw.
#[derive(Debug, Default)]
struct Seen {
    hellos: u32,
    authenticated: u32,
    writes: u32,
    changes: Vec<u64>,
    acks: u32,
    pings: u32,
}

#[tokio::test]
async fn forbidden_reauthenticates_and_retries() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let identity = Identity::generate();
    let keys = Keys::derive(&identity);
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Seen>();

    // Two batches Effect would send: one whole, one in two pieces.
    let entry = |pk: &str| Entry {
        id: EntryId::new_v7(),
        event: "Note".into(),
        primary_key: pk.into(),
        payload: vec![1, 2, 3],
    };
    let (e1, e2) = (entry("a"), entry("b"));
    let remote_batch = |seq: u64, e: &Entry| {
        let b = batch::encrypt(keys.encryption_key(), "default", std::slice::from_ref(e));
        proto::encode(&vec![EncryptedRemoteBatch {
            sequence: seq,
            iv: b.iv,
            encrypted_batch: b.encrypted_batch,
            entry_ids: b.entry_ids,
        }])
    };
    let (frame1, frame2) = (remote_batch(1, &e1), Bytes::from(remote_batch(2, &e2)));

    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut seen = Seen::default();
        let mut challenge = [0u8; 32];
        let mut authenticated = false;
        let mut forbid_write = true;
        let mut forbid_changes = true;
        let mut stream_id = None;
        let mut chunks_to_send: Vec<Vec<ChangesValue>> = vec![
            vec![ChangesValue::Single {
                data: Bytes::from(frame1),
            }],
            vec![ChangesValue::Chunked(ChunkedMessage {
                id: 0,
                index: 0,
                total: 2,
                data: frame2.slice(..10),
            })],
            vec![ChangesValue::Chunked(ChunkedMessage {
                id: 0,
                index: 1,
                total: 2,
                data: frame2.slice(10..),
            })],
        ];
        chunks_to_send.reverse();
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(data) = msg else { continue };
            match FromClient::decode(&data).unwrap() {
                FromClient::Ping => {
                    seen.pings += 1;
                    ws.send(Message::Binary(FromServer::Pong.encode().into()))
                        .await
                        .unwrap();
                }
                FromClient::Ack { request_id } => {
                    assert_eq!(Some(&request_id), stream_id.as_ref());
                    seen.acks += 1;
                    match chunks_to_send.pop() {
                        Some(values) => {
                            let chunk = FromServer::Chunk {
                                request_id,
                                values: Bytes::from(proto::encode(&values)),
                            };
                            ws.send(Message::Binary(chunk.encode().into()))
                                .await
                                .unwrap();
                        }
                        None => break,
                    }
                }
                FromClient::Interrupt { .. } | FromClient::Eof => {}
                FromClient::Request(r) => match r.tag.as_str() {
                    "EventLog.Hello" => {
                        seen.hellos += 1;
                        challenge = [seen.hellos as u8; 32];
                        authenticated = false;
                        let hello = HelloResponse {
                            challenge: Bytes::copy_from_slice(&challenge),
                            compaction: false,
                            remote_id: Bytes::copy_from_slice(&REMOTE),
                            first_sequence: Some(1),
                        };
                        ws.send(exit(r.id, proto::encode(&HelloExit::Success(hello))))
                            .await
                            .unwrap();
                    }
                    "EventLog.Authenticate" => {
                        let a: Authenticate = proto::decode(&r.payload).unwrap();
                        evsync_core::proto::v4::auth::verify(
                            &RemoteId(REMOTE),
                            &challenge,
                            &a.public_key,
                            &a.signing_public_key,
                            &a.signature,
                            &a.signing_public_key,
                        )
                        .expect("a valid signature over this connection's latest challenge");
                        seen.authenticated += 1;
                        authenticated = true;
                        ws.send(exit(r.id, proto::encode(&AuthenticateExit::Success(()))))
                            .await
                            .unwrap();
                    }
                    "EventLog.WriteSingle" => {
                        assert!(authenticated);
                        seen.writes += 1;
                        let reply = if forbid_write {
                            forbid_write = false;
                            WriteExit::Failure(vec![Reason::Fail(forbidden("WriteSingle"))])
                        } else {
                            let p: WriteSinglePayload = proto::decode(&r.payload).unwrap();
                            let w: WriteEntries = proto::decode(&p.data).unwrap();
                            let acks = w.batches[0]
                                .entry_ids
                                .iter()
                                .map(|id| WriteAck {
                                    sequence: 3,
                                    entry_id: id.clone(),
                                })
                                .collect();
                            WriteExit::Success(acks)
                        };
                        ws.send(exit(r.id, proto::encode(&reply))).await.unwrap();
                    }
                    "EventLog.Changes" => {
                        assert!(authenticated);
                        let c: ChangesPayload = proto::decode(&r.payload).unwrap();
                        seen.changes.push(c.start_sequence);
                        if forbid_changes {
                            forbid_changes = false;
                            let failure =
                                ChangesExit::Failure(vec![Reason::Fail(forbidden("Changes"))]);
                            ws.send(exit(r.id, proto::encode(&failure))).await.unwrap();
                        } else {
                            stream_id = Some(r.id.clone());
                            let values = chunks_to_send.pop().unwrap();
                            let chunk = FromServer::Chunk {
                                request_id: r.id,
                                values: Bytes::from(proto::encode(&values)),
                            };
                            ws.send(Message::Binary(chunk.encode().into()))
                                .await
                                .unwrap();
                        }
                    }
                    other => panic!("unexpected request {other}"),
                },
            }
        }
        seen_tx.send(seen).unwrap();
    });

    let url = format!("ws://{addr}/v4/event-log/t");
    let config = Config::new(url, identity.clone()).with_ping(None, Duration::from_secs(20));
    let client = v4::Client::connect(config, "default").await.unwrap();
    let mut sub = client.subscribe().unwrap();
    let receipt = tokio::time::timeout(Duration::from_secs(10), client.write("Note", "w", vec![9]))
        .await
        .expect("the write is retried after authenticating again")
        .unwrap();
    assert_eq!(receipt.sequence, 3);
    for want in [&e1, &e2] {
        let got = tokio::time::timeout(Duration::from_secs(10), sub.recv())
            .await
            .expect("an entry")
            .unwrap()
            .unwrap();
        assert_eq!((got.id, &got.primary_key), (want.id, &want.primary_key));
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), seen_rx.recv())
        .await
        .expect("the server saw the third ack")
        .unwrap();
    client.close().await;
    server.await.unwrap();
    assert_eq!(seen.changes, [1, 1], "Changes again from the same cursor");
    assert_eq!(seen.writes, 2, "the write again after Forbidden");
    assert!(
        seen.hellos >= 2 && seen.authenticated == seen.hellos,
        "{seen:?}"
    );
    assert_eq!(seen.acks, 3, "one Ack per Chunk");
}

#[tokio::test]
async fn pings_every_five_seconds_and_drops_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ping_tx, mut pings) = mpsc::unbounded_channel::<std::time::Instant>();
    let server = tokio::spawn(async move {
        // One connection: answer the handshake, then never a Pong.
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Binary(data) = msg else { continue };
            match FromClient::decode(&data).unwrap() {
                FromClient::Ping => ping_tx.send(std::time::Instant::now()).unwrap(),
                FromClient::Request(r) if r.tag == "EventLog.Hello" => {
                    let hello = HelloResponse {
                        challenge: Bytes::from_static(&[1; 32]),
                        compaction: false,
                        remote_id: Bytes::copy_from_slice(&REMOTE),
                        first_sequence: None,
                    };
                    ws.send(exit(r.id, proto::encode(&HelloExit::Success(hello))))
                        .await
                        .unwrap();
                }
                FromClient::Request(r) => {
                    ws.send(exit(r.id, proto::encode(&AuthenticateExit::Success(()))))
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    });
    let url = format!("ws://{addr}/v4/event-log/t");
    let config = Config::new(url, Identity::generate()).with_ping(None, Duration::from_secs(1));
    let started = std::time::Instant::now();
    let client = v4::Client::connect(config, "default").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), pings.recv())
        .await
        .expect("a Ping")
        .unwrap();
    let after = first - started;
    assert!(
        after >= Duration::from_millis(4_500) && after < Duration::from_secs(7),
        "{after:?}"
    );
    let mut status = client.status();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| !s.connected))
        .await
        .expect("dropped without a Pong")
        .unwrap();
    assert!(
        status
            .borrow()
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("Pong"),
        "{:?}",
        status.borrow()
    );
    client.close().await;
    server.abort();
}
