//! One v4 WebSocket: the RPC envelope both ways, calls that wait for their
//! `Exit`, and the session handshake (`Hello`, then `Authenticate` with
//! the identity's Ed25519 key). Knows nothing of reconnects or streams; the
//! driver does.

use crate::config::Config;
use crate::connection::{ConnectTimings, Ws, handshake_request, install_crypto_provider};
use crate::error::Error;
use crate::v4::keys::Keys;
use bytes::Bytes;
use evsync_core::proto::v4::{
    self as proto, Authenticate, AuthenticateExit, ErrorCode, EventLogProtocolError, Exit,
    FrameSplitter, FromClient, FromServer, HelloExit, HelloResponse, PING_FRAME, Reason, Request,
    RequestId,
};
use evsync_core::wire::RemoteId;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// RPC tags of the eventlog protocol.
pub(crate) const HELLO: &str = "EventLog.Hello";
pub(crate) const AUTHENTICATE: &str = "EventLog.Authenticate";
pub(crate) const WRITE_SINGLE: &str = "EventLog.WriteSingle";
pub(crate) const WRITE_CHUNKED: &str = "EventLog.WriteChunked";
pub(crate) const CHANGES: &str = "EventLog.Changes";

/// A connection's two halves and its inbound framing.
pub(crate) struct Conn {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    splitter: FrameSplitter,
    /// Messages read while waiting for a call's `Exit`, handed out first.
    backlog: VecDeque<FromServer>,
}

/// An authenticated connection.
pub(crate) struct Opened {
    pub conn: Conn,
    pub remote_id: RemoteId,
    pub first_sequence: u64,
    pub timings: ConnectTimings,
}

/// Connects, says Hello and authenticates, within `config.connect_timeout`.
pub(crate) async fn open(config: &Config, keys: &Keys, ids: &AtomicI64) -> Result<Opened, Error> {
    let limit = config.connect_timeout;
    tokio::time::timeout(limit, async {
        let started = Instant::now();
        let request = handshake_request(config)?;
        install_crypto_provider();
        // Nagle off: a request is one small frame, and waiting for the
        // previous segment's ACK would add a delayed-ACK pause (Node's `ws`,
        // under Effect's client, turns it off too).
        let (ws, _response) =
            tokio_tungstenite::connect_async_with_config(request, None, true).await?;
        let upgraded = Instant::now();
        let mut conn = Conn::new(ws);
        let hello = conn.hello(ids).await.map_err(|e| match e {
            // A v3 server speaks first, in msgpack.
            Error::Protocol(reason) if reason.starts_with("undecodable") => {
                Error::Protocol(format!(
                    "{reason}: is {} an Effect v4 endpoint? (evsync: /v4/event-log/<tenant>)",
                    config.url
                ))
            }
            other => other,
        })?;
        conn.authenticate(keys, &hello, ids).await?;
        Ok(Opened {
            conn,
            remote_id: remote_id(&hello)?,
            first_sequence: hello.first_sequence.unwrap_or(0),
            timings: ConnectTimings {
                websocket: upgraded - started,
                hello: upgraded.elapsed(),
            },
        })
    })
    .await
    .map_err(|_| Error::Timeout {
        what: "the WebSocket handshake, Hello and Authenticate",
        after: limit,
    })?
}

fn remote_id(hello: &HelloResponse) -> Result<RemoteId, Error> {
    let bytes: [u8; 16] = hello.remote_id.as_ref().try_into().map_err(|_| {
        Error::Protocol(format!(
            "Hello has a remoteId of {} bytes",
            hello.remote_id.len()
        ))
    })?;
    Ok(RemoteId(bytes))
}

/// A v4 frame the client could not decode.
pub(crate) fn decode_error(what: &str, e: proto::DecodeError) -> Error {
    Error::Protocol(format!("undecodable {what}: {e}"))
}

/// The error of a failed `Exit`: the first `EventLogProtocolError`, a
/// defect, or an interruption.
pub(crate) fn failure<E: Into<Error>>(tag: &str, reasons: Vec<Reason<E>>) -> Error {
    for reason in reasons {
        match reason {
            Reason::Fail(e) => return e.into(),
            Reason::Die(defect) => {
                return Error::Protocol(format!("{tag} died: {}", defect.as_json_text()));
            }
            Reason::Interrupt(_) => {}
        }
    }
    Error::Protocol(format!("{tag} was interrupted"))
}

impl From<EventLogProtocolError> for Error {
    fn from(e: EventLogProtocolError) -> Self {
        Error::Refused {
            code: e.code.as_str().to_owned(),
            message: e.message,
        }
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

/// Whether `error` is the server's `Forbidden` (re-authenticate and retry).
pub(crate) fn is_forbidden(error: &Error) -> bool {
    matches!(error, Error::Refused { code, .. } if code == ErrorCode::Forbidden.as_str())
}

/// A request frame.
pub(crate) fn request(id: i64, tag: &str, payload: Vec<u8>) -> Bytes {
    Bytes::from(
        FromClient::Request(Request::new(
            RequestId::Number(id),
            tag,
            Bytes::from(payload),
        ))
        .encode(),
    )
}

impl Conn {
    fn new(ws: Ws) -> Conn {
        let (sink, stream) = ws.split();
        Conn {
            sink,
            stream,
            splitter: FrameSplitter::default(),
            backlog: VecDeque::new(),
        }
    }

    /// Queues frames and flushes them.
    pub(crate) async fn send(&mut self, frames: &[Bytes]) -> Result<(), Error> {
        for frame in frames {
            self.sink.feed(Message::Binary(frame.clone())).await?;
        }
        self.sink.flush().await?;
        Ok(())
    }

    pub(crate) async fn ping(&mut self) -> Result<(), Error> {
        self.send(&[Bytes::from_static(&PING_FRAME)]).await
    }

    pub(crate) async fn ack(&mut self, request_id: RequestId) -> Result<(), Error> {
        let frame = Bytes::from(FromClient::Ack { request_id }.encode());
        self.send(&[frame]).await
    }

    /// Best effort: a close frame, never waiting long.
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.sink.close()).await;
    }

    /// The next message from the server. Cancel-safe: the only await is the
    /// socket's.
    pub(crate) async fn recv(&mut self) -> Result<FromServer, Error> {
        match self.backlog.pop_front() {
            Some(msg) => Ok(msg),
            None => self.recv_socket().await,
        }
    }

    /// The next message off the socket, past the backlog.
    async fn recv_socket(&mut self) -> Result<FromServer, Error> {
        loop {
            if let Some(frame) = self
                .splitter
                .next_frame()
                .map_err(|e| decode_error("frame", e))?
            {
                return FromServer::decode(&frame).map_err(|e| decode_error("envelope", e));
            }
            let data = match self.stream.next().await {
                None => {
                    return Err(Error::ServerClosed {
                        reason: String::new(),
                    });
                }
                Some(msg) => match msg? {
                    Message::Binary(b) => b,
                    Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                    Message::Close(frame) => {
                        return Err(Error::ServerClosed {
                            reason: frame
                                .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                                .unwrap_or_default(),
                        });
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                },
            };
            self.splitter.push(data);
        }
    }

    /// Sends a request and waits for its `Exit` (other messages meanwhile
    /// wait in the backlog for [`Conn::recv`]).
    pub(crate) async fn call(
        &mut self,
        ids: &AtomicI64,
        tag: &str,
        payload: Vec<u8>,
    ) -> Result<Bytes, Error> {
        let id = ids.fetch_add(1, Ordering::Relaxed);
        self.send(&[request(id, tag, payload)]).await?;
        let want = RequestId::Number(id);
        loop {
            match self.recv_socket().await? {
                FromServer::Exit { request_id, exit } if request_id == want => return Ok(exit),
                FromServer::Defect { defect } => {
                    return Err(Error::Protocol(format!(
                        "the server sent a defect: {}",
                        String::from_utf8_lossy(&defect)
                    )));
                }
                other => self.backlog.push_back(other),
            }
        }
    }

    /// `EventLog.Hello`.
    pub(crate) async fn hello(&mut self, ids: &AtomicI64) -> Result<HelloResponse, Error> {
        let exit = self.call(ids, HELLO, proto::encode(&())).await?;
        match proto::decode::<HelloExit>(&exit).map_err(|e| decode_error("Hello exit", e))? {
            Exit::Success(hello) => Ok(hello),
            Exit::Failure(reasons) => Err(failure(HELLO, reasons)),
        }
    }

    /// `EventLog.Authenticate` for `keys`, answering `hello`'s challenge.
    pub(crate) async fn authenticate(
        &mut self,
        keys: &Keys,
        hello: &HelloResponse,
        ids: &AtomicI64,
    ) -> Result<(), Error> {
        let remote = remote_id(hello)?;
        let signature = keys.sign_challenge(&remote, &hello.challenge);
        let payload = Authenticate {
            signature: Bytes::copy_from_slice(&signature),
            public_key: keys.public_key().to_owned(),
            signing_public_key: Bytes::copy_from_slice(&keys.signing_public_key()),
        };
        let exit = self
            .call(ids, AUTHENTICATE, proto::encode(&payload))
            .await?;
        match proto::decode::<AuthenticateExit>(&exit)
            .map_err(|e| decode_error("Authenticate exit", e))?
        {
            Exit::Success(()) => Ok(()),
            Exit::Failure(reasons) => Err(failure(AUTHENTICATE, reasons)),
        }
    }
}
