//! One WebSocket: frames in to the tenant actor, frames and closes out.
//!
//! The socket task does no protocol work. It forwards every complete
//! message (text as its UTF-8 bytes) to the actor, and writes what the
//! actor could not write at once (the connection's [`Outlet`] backlog),
//! reporting each flushed byte (the engine's outbound accounting).
//! tungstenite answers WebSocket-level pings by itself.
//!
//! [`Outlet`]: crate::outlet::Outlet
//!
//! Inbound backpressure: each forwarded frame holds permits of a
//! per-connection byte budget until the actor has handled it, so a peer
//! that sends faster than its tenant processes stops being read (TCP flow
//! control pushes back on it) instead of growing the actor's inbox.

use crate::on_demand_read::{IncompleteMessage, MessageTaken};
use crate::outlet::{Drained, WsSink};
use crate::registry::Attached;
use crate::socket::Socket;
use crate::tenant::TenantMsg;
use bytes::Bytes;
use evsync_core::proto::close::{code as close_code, truncate_reason};
use evsync_core::proto::v3::ConnId;
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Bytes of one connection's frames that may wait in its tenant's inbox.
/// Larger than any accepted frame, so a single frame always fits.
const INBOUND_BUDGET: usize = 64 * 1024 * 1024;

/// How the read side ended.
enum ReadEnd {
    /// The peer sent a close frame or the stream ended.
    PeerClosed,
    /// The peer broke a limit below the protocol: a message over the size
    /// limit (1009), or bytes that waited too long for the rest of their
    /// message (1002). The engine closes it with `code` and `reason`.
    Violation { code: u16, reason: String },
    /// Anything else (bad framing, reset): the socket is unusable.
    Broken(String),
}

/// Drives `socket` for the connection registered as `attached`.
pub(crate) async fn run(socket: Socket, mut attached: Attached) {
    let shared = attached.shared.clone();
    let close_timeout = shared.config.close_timeout;
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let taken = socket.get_ref().message_taken();
    let (sink, mut stream) = socket.split();
    let outlet = attached.outlet.clone();
    outlet.install(sink);
    let mut write_end = None;
    let mut read_end = None;
    {
        let reader = read_loop(&mut stream, attached.conn, attached.tx.clone(), taken);
        let tx = attached.tx.clone();
        let conn = attached.conn;
        let writer = outlet.drive(|bytes| {
            let _ = tx.send(TenantMsg::Sent { conn, bytes });
        });
        tokio::pin!(reader, writer);
        let first = tokio::select! {
            end = &mut writer => Ok(end),
            end = &mut reader => Err(end),
        };
        match first {
            Ok(end) => write_end = Some(end),
            Err(ReadEnd::Violation { code, reason }) => {
                // Closed as the engine closes for bad input of its own:
                // logged, counted by its code, shown among the recent
                // closes; the writer sends the close frame.
                // Bounded: a connection the engine had already forgotten
                // gets no close from it (then the socket is just dropped).
                let _ = attached
                    .tx
                    .send(TenantMsg::Violation { conn, code, reason });
                write_end = tokio::time::timeout(close_timeout, writer).await.ok();
            }
            Err(end) => read_end = Some(end),
        }
    }
    let sink = outlet.end();
    match (write_end, read_end) {
        (Some(Drained::Close { sink, code, reason }), _) => {
            attached.closed_by_engine = true;
            close_and_linger(sink, &mut stream, code, reason, close_timeout).await;
        }
        (Some(Drained::ActorGone(sink)), _) => {
            attached.closed_by_engine = true;
            let reason = "internal error".to_string();
            close_and_linger(
                sink,
                &mut stream,
                close_code::INTERNAL_ERROR,
                reason,
                close_timeout,
            )
            .await;
        }
        (Some(Drained::Broken), _) => {}
        (None, Some(ReadEnd::PeerClosed)) => {
            // tungstenite queued the answer to the peer's close frame;
            // flush it.
            if let Some(mut sink) = sink {
                let _ = tokio::time::timeout(close_timeout, sink.close()).await;
            }
        }
        (None, Some(ReadEnd::Broken(reason))) => {
            tracing::debug!(tenant = %attached.tenant, conn = attached.conn.0, %reason, "socket error");
        }
        // A violation went to the engine above; its close then came back
        // as the writer's end, or did not come in time.
        (None, None | Some(ReadEnd::Violation { .. })) => {}
    }
    // Dropping `attached` tells the actor, unless the engine closed it, and
    // frees its place under the connection limit: before the socket stops
    // counting as open, so that a client that sees the count drop also
    // finds the room.
    drop(attached);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Sends our close frame, then waits (bounded) for the peer's answer so
/// the TCP connection ends cleanly, discarding data frames.
async fn close_and_linger(
    mut sink: WsSink,
    stream: &mut SplitStream<Socket>,
    code: u16,
    reason: String,
    timeout: std::time::Duration,
) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: truncate_reason(reason).into(),
    };
    let _ = tokio::time::timeout(timeout, sink.send(Message::Close(Some(frame)))).await;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

async fn read_loop(
    stream: &mut SplitStream<Socket>,
    conn: ConnId,
    tx: mpsc::UnboundedSender<TenantMsg>,
    taken: MessageTaken,
) -> ReadEnd {
    let budget = Arc::new(Semaphore::new(INBOUND_BUDGET));
    loop {
        let Some(message) = stream.next().await else {
            return ReadEnd::PeerClosed;
        };
        if message.is_ok() {
            taken.note();
        }
        let frame = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => return ReadEnd::PeerClosed,
            Err(WsError::Capacity(err)) => {
                return ReadEnd::Violation {
                    code: close_code::MESSAGE_TOO_BIG,
                    reason: err.to_string(),
                };
            }
            Err(WsError::Io(err)) => {
                return match IncompleteMessage::of(&err) {
                    Some(reason) => ReadEnd::Violation {
                        code: close_code::PROTOCOL_ERROR,
                        reason,
                    },
                    None => ReadEnd::Broken(err.to_string()),
                };
            }
            Err(err) => return ReadEnd::Broken(err.to_string()),
        };
        let cost = frame.len().clamp(1, INBOUND_BUDGET) as u32;
        let Ok(permit) = budget.clone().acquire_many_owned(cost).await else {
            return ReadEnd::Broken("inbound budget closed".into());
        };
        if tx
            .send(TenantMsg::Frame {
                conn,
                frame,
                permit,
            })
            .is_err()
        {
            // The actor is gone; the writer sees it (`Drained::ActorGone`).
            std::future::pending::<()>().await;
        }
    }
}
