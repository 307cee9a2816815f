//! Test kit shared by the server's and the CLI's integration tests: raw
//! HTTP requests, a WebSocket client speaking the protocol through
//! evsync-core's codec, and an in-process server on an ephemeral port.
//!
//! Every wait is bounded by [`WAIT`] and awaits an event (a frame, a close,
//! a status line); nothing sleeps to synchronise.
#![allow(dead_code)]

use bytes::Bytes;
use evsync_core::chunk::ChunkLimits;
use evsync_core::codec::encode_request;
use evsync_core::proto::v3::framer::{FrameDecoder, FrameEncoder};
use evsync_core::time::Timestamp;
use evsync_core::wire::{EncryptedEntry, RemoteEntry, RemoteId, Request, Response};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound on any single wait; a broken server fails the test instead
/// of hanging it.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

// ---------------------------------------------------------------- HTTP

/// A parsed HTTP response head and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 GET with `headers` and reads the response. For a 101
/// only the head is read (the socket then speaks WebSocket).
pub async fn http_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, "GET", target, headers).await
}

/// Sends one HTTP/1.1 request without a body (`method`, `headers`) and
/// reads the response, as [`http_get`].
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    within("an HTTP response", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            request.push_str("Connection: close\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a full response head");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        let mut response = HttpResponse {
            status,
            headers,
            body: String::new(),
        };
        if status == 101 {
            return response;
        }
        let len: usize = response
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut chunk).await.expect("read body");
            assert!(n > 0, "connection closed inside the body");
            body.extend_from_slice(&chunk[..n]);
        }
        response.body = String::from_utf8(body).unwrap();
        response
    })
    .await
}

/// The headers of a valid WebSocket handshake.
pub const UPGRADE: &[(&str, &str)] = &[
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// UPGRADE plus `extra`.
pub fn upgrade_with<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h: Vec<(&str, &str)> = UPGRADE.to_vec();
    h.extend_from_slice(extra);
    h
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------- WebSocket

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client over one WebSocket. Splitting and reassembly go
/// through evsync-core's one v3 framer, the same code the server, the Rust
/// client and the bench use.
pub struct Client {
    pub ws: Ws,
    decoder: FrameDecoder<Response>,
    encoder: FrameEncoder,
}

/// How a socket ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

impl Client {
    /// Connects to `/event-log/<tenant>` with extra request headers.
    pub async fn connect_with(addr: SocketAddr, tenant: &str, headers: &[(&str, &str)]) -> Client {
        Self::try_connect(addr, tenant, headers)
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {tenant} failed: {e}"))
    }

    /// A client over a WebSocket the test opened itself.
    pub fn over(ws: Ws) -> Client {
        Client {
            ws,
            decoder: FrameDecoder::new(ChunkLimits::default()),
            encoder: FrameEncoder::starting_at(1),
        }
    }

    pub async fn connect(addr: SocketAddr, tenant: &str) -> Client {
        Self::connect_with(addr, tenant, &[]).await
    }

    pub async fn try_connect(
        addr: SocketAddr,
        tenant: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/event-log/{tenant}")
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let (ws, _) = within(
            "the websocket handshake",
            tokio_tungstenite::connect_async_with_config(request, Some(config), true),
        )
        .await?;
        Ok(Client::over(ws))
    }

    /// Connects and returns the remoteId of the `Hello` that must come first.
    pub async fn connect_hello(addr: SocketAddr, tenant: &str) -> (Client, RemoteId) {
        let mut client = Self::connect(addr, tenant).await;
        let id = client.hello().await;
        (client, id)
    }

    /// Expects the next message to be `Hello`.
    pub async fn hello(&mut self) -> RemoteId {
        match self.recv().await {
            Response::Hello { remote_id } => remote_id,
            other => panic!("the first message must be Hello, got {other:?}"),
        }
    }

    /// Sends `request` as one frame, however large (see
    /// [`Client::send_chunked`] for Effect's splitting).
    pub async fn send(&mut self, request: &Request) {
        let bytes = encode_request(request);
        self.send_raw(Message::Binary(bytes.into())).await;
    }

    /// Sends `request` split into 512,000-byte `ChunkedMessage` parts, as
    /// Effect does for a large message. Returns the number of parts.
    ///
    /// Panics if `request` is not over the chunk size: the framer would
    /// send it whole, and the test would not exercise reassembly.
    pub async fn send_chunked(&mut self, request: &Request) -> usize {
        let frames = self.encoder.encode(request);
        let n = frames.len();
        assert!(n > 1, "send_chunked needs a message over CHUNK_SIZE");
        for frame in frames {
            self.send_raw(Message::Binary(frame)).await;
        }
        n
    }

    /// Writes `bytes` to the TCP stream under the WebSocket as they are
    /// (part of a frame, say).
    pub async fn write_tcp(&mut self, bytes: &[u8]) {
        let MaybeTlsStream::Plain(tcp) = self.ws.get_mut() else {
            panic!("the test client speaks plain TCP");
        };
        within("a raw write", tcp.write_all(bytes))
            .await
            .expect("tcp write");
    }

    pub async fn send_raw(&mut self, message: Message) {
        within("a send", self.ws.send(message))
            .await
            .expect("websocket send");
    }

    /// The next protocol message (parts of a chunked one are reassembled).
    pub async fn recv(&mut self) -> Response {
        match self.recv_or_close().await {
            Ok(response) => response,
            Err(closed) => panic!("socket closed while a message was expected: {closed:?}"),
        }
    }

    /// The next protocol message, or how the socket closed.
    pub async fn recv_or_close(&mut self) -> Result<Response, Closed> {
        within("a message", async {
            loop {
                let frame = match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(frame))) => {
                        // Keep reading so tungstenite sends the closing
                        // handshake's answer and the server is not left
                        // waiting for it.
                        while let Some(Ok(_)) = self.ws.next().await {}
                        return Err(closed(frame));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Text(t))) => panic!("server sent a text frame: {t}"),
                    Some(Err(e)) => {
                        return Err(Closed {
                            code: None,
                            reason: e.to_string(),
                        });
                    }
                    None => {
                        return Err(Closed {
                            code: None,
                            reason: "stream ended".into(),
                        });
                    }
                };
                // One fixed time: every wait is bounded by WAIT, so the
                // age limit of incomplete messages has nothing to add.
                if let Some(response) = self
                    .decoder
                    .decode(&frame, Timestamp(0))
                    .unwrap_or_else(|e| panic!("server frame refused: {e}"))
                {
                    return Ok(response);
                }
            }
        })
        .await
    }

    /// Reads until the socket closes, returning the messages seen first.
    pub async fn until_closed(&mut self) -> (Vec<Response>, Closed) {
        let mut seen = Vec::new();
        loop {
            match self.recv_or_close().await {
                Ok(r) => seen.push(r),
                Err(c) => return (seen, c),
            }
        }
    }

    pub async fn ping(&mut self, id: i64) {
        self.send(&Request::Ping { id }).await;
    }

    /// Sends a Ping and returns everything received before its Pong: a
    /// barrier proving the server has processed all earlier frames of this
    /// socket and queued all it had for it at that point.
    pub async fn barrier(&mut self, id: i64) -> Vec<Response> {
        self.ping(id).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Response::Pong { id: got } if got == id => return before,
                other => before.push(other),
            }
        }
    }

    /// Writes `entries` and returns the Ack's sequence numbers.
    pub async fn write(
        &mut self,
        public_key: &str,
        id: i64,
        entries: &[EncryptedEntry],
    ) -> Vec<u64> {
        self.send(&write_request(public_key, id, entries)).await;
        self.ack(id).await
    }

    /// Waits for the Ack of request `id` (skipping other messages).
    pub async fn ack(&mut self, id: i64) -> Vec<u64> {
        loop {
            match self.recv().await {
                Response::Ack {
                    id: got,
                    sequence_numbers,
                } if got == id => return sequence_numbers,
                Response::Changes { .. } => continue,
                other => panic!("expected Ack {id}, got {other:?}"),
            }
        }
    }

    pub async fn request_changes(&mut self, public_key: &str, start_sequence: u64) {
        self.send(&Request::RequestChanges {
            public_key: public_key.into(),
            start_sequence,
        })
        .await;
    }

    /// Collects `Changes` entries for `public_key` until `count` arrived.
    pub async fn changes(&mut self, public_key: &str, count: usize) -> Vec<RemoteEntry> {
        let mut out = Vec::new();
        while out.len() < count {
            match self.recv().await {
                Response::Changes {
                    public_key: pk,
                    entries,
                } => {
                    assert_eq!(
                        pk, public_key,
                        "Changes for a log this socket did not ask for"
                    );
                    out.extend(entries);
                }
                other => panic!("expected Changes, got {other:?}"),
            }
        }
        out
    }

    /// Waits for the server's close frame.
    pub async fn closed(&mut self) -> Closed {
        self.until_closed().await.1
    }
}

fn closed(frame: Option<CloseFrame>) -> Closed {
    match frame {
        Some(f) => Closed {
            code: Some(u16::from(f.code)),
            reason: f.reason.to_string(),
        },
        None => Closed {
            code: None,
            reason: String::new(),
        },
    }
}

/// A 16-byte entry id from `n`.
pub fn entry_id(n: u64) -> Bytes {
    evsync_core::storage::conformance::entry_id(n)
}

/// An entry numbered `n` with `size` bytes of ciphertext.
pub fn entry(n: u64, size: usize) -> EncryptedEntry {
    let mut payload = vec![(n % 251) as u8; size];
    if let Some(first) = payload.first_mut() {
        *first = 0xee;
    }
    EncryptedEntry {
        entry_id: entry_id(n),
        encrypted_entry: Bytes::from(payload),
    }
}

pub fn entries(ns: std::ops::RangeInclusive<u64>) -> Vec<EncryptedEntry> {
    ns.map(|n| entry(n, 32)).collect()
}

pub fn write_request(public_key: &str, id: i64, entries: &[EncryptedEntry]) -> Request {
    Request::WriteEntries {
        public_key: public_key.into(),
        id,
        iv: Bytes::from(vec![7u8; 12]),
        encrypted_entries: entries.to_vec(),
    }
}

pub fn sequences(entries: &[RemoteEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.sequence).collect()
}
