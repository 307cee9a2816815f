//! One WebSocket to the server: the authenticated handshake, waiting for
//! `Hello`, and turning protocol messages into frames and back (chunking
//! both ways). Knows nothing of reconnects or subscriptions; the driver
//! does.

use crate::config::{Auth, Config};
use crate::error::Error;
use bytes::Bytes;
use evsync_core::chunk::ChunkLimits;
use evsync_core::proto::v3::framer::{self, FrameDecoder, FrameError};
use evsync_core::time::Timestamp;
use evsync_core::wire::{RemoteId, Request, Response};
use futures_util::StreamExt as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long the two steps of a connection took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectTimings {
    /// TCP (+ TLS) connect and the WebSocket upgrade.
    pub websocket: Duration,
    /// From the upgrade to the server's `Hello`.
    pub hello: Duration,
}

/// An open connection that has received `Hello`.
pub(crate) struct Opened {
    pub ws: Ws,
    pub remote_id: RemoteId,
    pub timings: ConnectTimings,
    /// Reassembly state, already used if `Hello` came chunked.
    pub inbound: Inbound,
}

/// Connects, authenticates and waits for `Hello`, all within
/// `config.connect_timeout`.
pub(crate) async fn open(config: &Config) -> Result<Opened, Error> {
    let limit = config.connect_timeout;
    tokio::time::timeout(limit, open_inner(config))
        .await
        .map_err(|_| Error::Timeout {
            what: "the WebSocket handshake and Hello",
            after: limit,
        })?
}

async fn open_inner(config: &Config) -> Result<Opened, Error> {
    let started = Instant::now();
    let request = handshake_request(config)?;
    install_crypto_provider();
    // Nagle off: a request is one small frame, and waiting for the
    // previous segment's ACK would add a delayed-ACK pause (Node's `ws`,
    // under Effect's client, turns it off too).
    let (mut ws, _response) =
        tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    let upgraded = Instant::now();
    let mut inbound = Inbound::new();
    loop {
        let Some(msg) = ws.next().await else {
            return Err(Error::ServerClosed {
                reason: "before Hello".into(),
            });
        };
        match inbound.accept(msg?)? {
            Some(Response::Hello { remote_id }) => {
                let hello = Instant::now();
                return Ok(Opened {
                    ws,
                    remote_id,
                    timings: ConnectTimings {
                        websocket: upgraded - started,
                        hello: hello - upgraded,
                    },
                    inbound,
                });
            }
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "expected Hello first, got {}",
                    other.tag()
                )));
            }
            None => {}
        }
    }
}

pub(crate) fn handshake_request(
    config: &Config,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Error> {
    let url = config.url.trim();
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if url.starts_with("wss://") && !cfg!(feature = "tls") {
        return Err(invalid("wss:// needs the `tls` feature".into()));
    }
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(invalid("expected a ws:// or wss:// URL".into()));
    }
    let mut request = url
        .into_client_request()
        .map_err(|e| invalid(e.to_string()))?;
    let header = |v: String| {
        HeaderValue::from_str(&v)
            .map_err(|_| invalid("the token contains characters not allowed in a header".into()))
    };
    match &config.auth {
        None => {}
        Some(Auth::Bearer(token)) => {
            request
                .headers_mut()
                .insert("authorization", header(format!("Bearer {token}"))?);
        }
        Some(Auth::Subprotocol(token)) => {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                header(format!("sync-auth.{token}"))?,
            );
        }
    }
    Ok(request)
}

#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider is installed already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(not(feature = "tls"))]
pub(crate) fn install_crypto_provider() {}

/// Incoming frames to messages through evsync-core's one v3 framer
/// ([`FrameDecoder`]: decode, bounded reassembly of chunked messages). What
/// is left here is the client's view of the WebSocket: text frames count as
/// their bytes, control frames are tungstenite's business, and a close
/// frame ends the connection.
pub(crate) struct Inbound {
    decoder: FrameDecoder<Response>,
    /// Origin of the reassembler's clock, which only measures the age of
    /// incomplete messages.
    epoch: Instant,
}

impl Inbound {
    pub(crate) fn new() -> Self {
        Inbound {
            decoder: FrameDecoder::new(ChunkLimits::default()),
            epoch: Instant::now(),
        }
    }

    /// The message a frame completes, if any. Control frames yield nothing
    /// (tungstenite answers pings itself); a close frame is an error.
    pub(crate) fn accept(&mut self, msg: Message) -> Result<Option<Response>, Error> {
        let bytes: Bytes = match msg {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
            Message::Close(frame) => {
                return Err(Error::ServerClosed {
                    reason: frame
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_default(),
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(None),
        };
        let now = Timestamp(self.epoch.elapsed().as_millis() as u64);
        // The client keeps no timer for stale parts: a message the server
        // left half sent is noticed (and the connection ended) at the next
        // frame.
        self.decoder.check_expiry(now).map_err(frame_error)?;
        self.decoder.decode(&bytes, now).map_err(frame_error)
    }
}

/// The client's error for a refused frame: an undecodable frame or
/// reassembled message is [`Error::Decode`], broken chunking is
/// [`Error::Protocol`].
fn frame_error(err: FrameError) -> Error {
    match err {
        FrameError::Decode(e) | FrameError::Reassembled(e) => Error::Decode(e),
        other @ (FrameError::Chunk(_) | FrameError::Nested) => Error::Protocol(other.to_string()),
    }
}

/// The frames of one request, from evsync-core's one v3 framer: the
/// encoded message, or its `ChunkedMessage` parts when it is over 512,000
/// bytes (as Effect splits). Chunk ids come from `ids`, shared with request
/// ids, so they are unique among this client's in-flight messages.
pub(crate) fn frames(request: &Request, ids: &AtomicI64) -> Vec<Bytes> {
    framer::encode(request, || ids.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use evsync_core::codec;
    use evsync_core::wire::{CHUNK_SIZE, ChunkedMessage, EncryptedEntry};

    #[test]
    fn large_requests_are_chunked_and_reassemble() {
        let ids = AtomicI64::new(1);
        let request = Request::WriteEntries {
            public_key: "pk".into(),
            id: 99,
            iv: Bytes::from_static(&[0; 12]),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: Bytes::from_static(&[1; 16]),
                encrypted_entry: Bytes::from(vec![5u8; 1_500_000]),
            }],
        };
        let parts = frames(&request, &ids);
        assert_eq!(parts.len(), 3);
        assert_eq!(
            ids.load(Ordering::Relaxed),
            2,
            "the chunk id came from `ids`"
        );
        let mut decoder = FrameDecoder::<Request>::new(ChunkLimits::default());
        let mut whole = None;
        for p in &parts {
            assert!(p.len() < CHUNK_SIZE + 64);
            let Request::Chunked(part) = codec::decode_request(p).unwrap() else {
                panic!("expected a chunk")
            };
            assert_eq!(part.id, 1);
            assert!(whole.is_none(), "complete before its last part");
            whole = decoder.decode(p, Timestamp(0)).unwrap();
        }
        assert_eq!(whole, Some(request));

        let small = Request::Ping { id: 1 };
        assert_eq!(frames(&small, &ids).len(), 1);
        assert_eq!(
            ids.load(Ordering::Relaxed),
            2,
            "no chunk id for a whole frame"
        );
    }

    #[test]
    fn inbound_reassembles_chunked_responses() {
        let hello = Response::Hello {
            remote_id: RemoteId([4; 16]),
        };
        let encoded = Bytes::from(codec::encode_response(&hello));
        let mut inbound = Inbound::new();
        // Even a small message may arrive as parts.
        let half = encoded.len() / 2;
        let parts = [encoded.slice(..half), encoded.slice(half..)];
        let mut got = None;
        for (i, data) in parts.into_iter().enumerate() {
            let frame = codec::encode_response(&Response::Chunked(ChunkedMessage {
                id: 7,
                index: i as u32,
                total: 2,
                data,
            }));
            got = inbound.accept(Message::Binary(frame.into())).unwrap();
        }
        assert_eq!(got, Some(hello));
        assert_eq!(
            inbound
                .accept(Message::Ping(Bytes::from_static(b"hi")))
                .unwrap(),
            None,
            "control frames are ignored"
        );
        assert!(matches!(
            inbound.accept(Message::Close(None)),
            Err(Error::ServerClosed { .. })
        ));
    }

    #[test]
    fn refused_frames_map_to_decode_and_protocol_errors() {
        let mut inbound = Inbound::new();
        assert!(matches!(
            inbound.accept(Message::Binary(Bytes::from_static(&[0xc1]))),
            Err(Error::Decode(_))
        ));
        let nested = Response::Chunked(ChunkedMessage {
            id: 2,
            index: 0,
            total: 1,
            data: Bytes::from(codec::encode_response(&Response::Chunked(ChunkedMessage {
                id: 1,
                index: 0,
                total: 1,
                data: Bytes::from_static(b"x"),
            }))),
        });
        let frame = codec::encode_response(&nested);
        assert!(matches!(
            inbound.accept(Message::Binary(frame.into())),
            Err(Error::Protocol(_))
        ));
    }
}
