//! Keep-alive: a server that stops answering `Ping` is dropped and
//! reconnected to; one that answers keeps the connection. Uses a scripted
//! WebSocket server (evsync answers every ping, so it cannot show the
//! first case).

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

/// What the scripted server saw.
#[derive(Debug)]
enum Seen {
    Connection,
    Ping,
}

/// Accepts connections, says Hello, and answers pings if `answer`.
async fn scripted_server(answer: bool) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/event-log/t", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _ = tx.send(Seen::Connection);
                let hello = encode_response(&Response::Hello {
                    remote_id: RemoteId([5; 16]),
                });
                if ws.send(Message::Binary(hello.into())).await.is_err() {
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    let Message::Binary(bytes) = msg else {
                        continue;
                    };
                    if let Ok(Request::Ping { id }) = decode_request(&bytes) {
                        let _ = tx.send(Seen::Ping);
                        if answer {
                            let pong = encode_response(&Response::Pong { id });
                            let _ = ws.send(Message::Binary(pong.into())).await;
                        }
                    }
                }
            });
        }
    });
    (url, rx)
}

fn config(url: String) -> Config {
    Config::new(url, Identity::generate())
        .with_ping(Some(Duration::from_millis(50)), Duration::from_millis(150))
        .with_backoff(Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
        })
}

#[tokio::test]
async fn a_missing_pong_drops_the_connection_and_reconnects() {
    let (url, mut seen) = scripted_server(false).await;
    let client = Client::connect(config(url)).await.unwrap();
    let mut connections = 0;
    while connections < 2 {
        if let Seen::Connection = within("a reconnection", seen.recv()).await.unwrap() {
            connections += 1;
        }
    }
    let mut status = client.status();
    let s = within("the second Hello", status.wait_for(|s| s.sessions >= 2))
        .await
        .unwrap()
        .clone();
    assert!(s.last_error.unwrap_or_default().contains("Pong"));
    client.close().await;
}

#[tokio::test]
async fn answered_pings_keep_the_connection() {
    let (url, mut seen) = scripted_server(true).await;
    let client = Client::connect(config(url)).await.unwrap();
    // With a 150 ms Pong timeout, an ignored Pong would drop the connection
    // before the second ping; five answered pings on the first connection
    // prove they are matched.
    let mut pings = 0;
    while pings < 5 {
        match within("pings", seen.recv()).await.unwrap() {
            Seen::Ping => pings += 1,
            Seen::Connection => assert_eq!(pings, 0, "reconnected although pongs came"),
        }
    }
    assert_eq!(client.status().borrow().sessions, 1);
    client.close().await;
}
