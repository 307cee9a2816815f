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
    /// A message over the size limit: answer 1009.
    TooBig(String),
    /// Bytes waited too long for their message to end: answer 1002.
    Incomplete(String),
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
    let write_end;
    let read_end;
    {
        let reader = read_loop(&mut stream, attached.conn, attached.tx.clone(), taken);
        let tx = attached.tx.clone();
        let conn = attached.conn;
        let writer = outlet.drive(|bytes| {
            let _ = tx.send(TenantMsg::Sent { conn, bytes });
        });
        tokio::pin!(reader, writer);
        tokio::select! {
            end = &mut writer => { write_end = Some(end); read_end = None; }
            end = &mut reader => { read_end = Some(end); write_end = None; }
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
        (None, Some(ReadEnd::TooBig(reason))) => {
            close_for_what_it_sent(&attached, sink, close_code::MESSAGE_TOO_BIG, reason).await;
        }
        (None, Some(ReadEnd::Incomplete(reason))) => {
            close_for_what_it_sent(&attached, sink, close_code::PROTOCOL_ERROR, reason).await;
        }
        (None, Some(ReadEnd::Broken(reason))) => {
            tracing::debug!(tenant = %attached.tenant, conn = attached.conn.0, %reason, "socket error");
        }
        (None, None) => {}
    }
    // Dropping `attached` tells the actor, unless the engine closed it, and
    // frees its place under the connection limit: before the socket stops
    // counting as open, so that a client that sees the count drop also
    // finds the room.
    drop(attached);
    shared.connections.fetch_sub(1, Ordering::Relaxed);
}

/// Closes a peer for what it sent, below the protocol (a message too big
/// or never finished), logged like the engine's closes: such a peer is
/// worth a line, with the code and the reason.
async fn close_for_what_it_sent(
    attached: &Attached,
    sink: Option<WsSink>,
    code: u16,
    reason: String,
) {
    tracing::info!(
        tenant = %attached.tenant,
        conn = attached.conn.0,
        code,
        %reason,
        "closing connection"
    );
    if let Some(mut sink) = sink {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: truncate_reason(reason).into(),
        };
        let send = sink.send(Message::Close(Some(frame)));
        let _ = tokio::time::timeout(attached.shared.config.close_timeout, send).await;
    }
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
    taken: Option<MessageTaken>,
) -> ReadEnd {
    let budget = Arc::new(Semaphore::new(INBOUND_BUDGET));
    loop {
        let Some(message) = stream.next().await else {
            return ReadEnd::PeerClosed;
        };
        if message.is_ok()
            && let Some(taken) = &taken
        {
            taken.note();
        }
        let frame = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => return ReadEnd::PeerClosed,
            Err(WsError::Capacity(err)) => return ReadEnd::TooBig(err.to_string()),
            Err(WsError::Io(err)) => {
                return match IncompleteMessage::of(&err) {
                    Some(reason) => ReadEnd::Incomplete(reason),
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
