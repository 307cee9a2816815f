//! Writes on the wire, seen by a scripted server: one entry and a fresh iv
//! per `WriteEntries`, pipelined without waiting for Acks, and the exact
//! same request re-sent after the connection dropped before its Ack.

mod support;

use evsync_client::{Backoff, Client, Config, Identity};
use evsync_core::codec::{decode_request, encode_response};
use evsync_core::wire::{RemoteId, Request, Response};
use futures_util::{SinkExt as _, StreamExt as _};
use std::time::Duration;
use support::within;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn unacknowledged_writes_are_resent_unchanged_after_a_drop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/event-log/t", listener.local_addr().unwrap());
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<Vec<Request>>();
    tokio::spawn(async move {
        for connection in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let hello = encode_response(&Response::Hello {
                remote_id: RemoteId([1; 16]),
            });
            ws.send(Message::Binary(hello.into())).await.unwrap();
            // Collect the two writes; no Ack has been sent, so both being
            // here proves they were pipelined.
            let mut writes = Vec::new();
            while writes.len() < 2 {
                let Some(Ok(Message::Binary(bytes))) = ws.next().await else {
                    panic!("connection {connection} ended early")
                };
                let request = decode_request(&bytes).unwrap();
                if matches!(request, Request::WriteEntries { .. }) {
                    writes.push(request);
                }
            }
            seen_tx.send(writes.clone()).unwrap();
            if connection == 0 {
                // Drop without acknowledging.
                drop(ws);
                continue;
            }
            for (i, w) in writes.iter().enumerate() {
                let Request::WriteEntries { id, .. } = w else {
                    unreachable!()
                };
                let ack = encode_response(&Response::Ack {
                    id: *id,
                    sequence_numbers: vec![10 + i as u64],
                });
                ws.send(Message::Binary(ack.into())).await.unwrap();
            }
            // Keep the connection open until the client closes it.
            while let Some(Ok(_)) = ws.next().await {}
        }
    });

    let config = Config::new(url, Identity::generate()).with_backoff(Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
    });
    let client = Client::connect(config).await.unwrap();
    let (a, b) = (client.clone(), client.clone());
    let first = tokio::spawn(async move { a.write("E", "a", b"one".to_vec()).await });
    let second = tokio::spawn(async move { b.write("E", "b", b"two".to_vec()).await });

    let sent = within("the first connection's writes", seen.recv())
        .await
        .unwrap();
    let mut ivs = Vec::new();
    for w in &sent {
        let Request::WriteEntries {
            iv,
            encrypted_entries,
            ..
        } = w
        else {
            unreachable!()
        };
        assert_eq!(encrypted_entries.len(), 1, "one entry per WriteEntries");
        assert_eq!(iv.len(), 12);
        ivs.push(iv.clone());
    }
    assert_ne!(ivs[0], ivs[1], "a fresh iv for every entry");

    let resent = within("the resent writes", seen.recv()).await.unwrap();
    let sorted = |mut v: Vec<Request>| {
        v.sort_by_key(|r| match r {
            Request::WriteEntries { id, .. } => *id,
            _ => 0,
        });
        v
    };
    assert_eq!(
        sorted(resent),
        sorted(sent),
        "the same requests, byte for byte"
    );

    let r1 = within("ack", first).await.unwrap().unwrap();
    let r2 = within("ack", second).await.unwrap().unwrap();
    let mut sequences = [r1.sequence, r2.sequence];
    sequences.sort_unstable();
    assert_eq!(sequences, [10, 11]);
    assert_eq!(client.status().borrow().sessions, 2);
    client.close().await;
}
