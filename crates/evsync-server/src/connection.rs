//! One WebSocket: frames in to the tenant actor, frames and closes out.
//!
//! The socket task does no protocol work. It forwards every complete
//! message (text as its UTF-8 bytes) to the actor, writes what the actor
//! sends back and reports each written frame (the engine's outbound
//! accounting). tungstenite answers WebSocket-level pings by itself.
//!
//! Inbound backpressure: each forwarded frame holds permits of a
//! per-connection byte budget until the actor has handled it, so a peer
//! that sends faster than its tenant processes stops being read (TCP flow
//! control pushes back on it) instead of growing the actor's inbox.

use crate::registry::Attached;
use crate::tenant::{Outbound, TenantMsg};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use evsync_core::proto::close::{code as close_code, truncate_reason};
use evsync_core::proto::v3::ConnId;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{Semaphore, mpsc};

/// Bytes of one connection's frames that may wait in its tenant's inbox.
/// Larger than any accepted frame, so a single frame always fits.
const INBOUND_BUDGET: usize = 64 * 1024 * 1024;

/// How the write side ended.
enum WriteEnd {
    /// The engine closed the connection; our close frame is out.
    Closed,
    /// The actor is gone (panic): our 1011 close frame is out.
    ActorGone,
    /// Writing failed: the socket is broken.
    Broken,
}

/// How the read side ended.
enum ReadEnd {
    /// The peer sent a close frame or the stream ended.
    PeerClosed,
    /// A message over the size limit: answer 1009.
    TooBig(String),
    /// Anything else (bad framing, reset): the socket is unusable.
    Broken(String),
}

/// Drives `socket` for the connection registered as `attached`.
pub(crate) async fn run(socket: WebSocket, mut attached: Attached) {
    let shared = attached.shared.clone();
    let close_timeout = shared.config.close_timeout;
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let write_end;
    let read_end;
    {
        let reader = read_loop(&mut stream, attached.conn, attached.tx.clone());
        let tx = attached.tx.clone();
        let conn = attached.conn;
        let writer = write_loop(&mut sink, &mut attached.outbound, |bytes| {
            let _ = tx.send(TenantMsg::Sent { conn, bytes });
        });
        tokio::pin!(reader, writer);
        tokio::select! {
            end = &mut writer => { write_end = Some(end); read_end = None; }
            end = &mut reader => { read_end = Some(end); write_end = None; }
        }
    }
    match (write_end, read_end) {
        (Some(WriteEnd::Closed), _) | (Some(WriteEnd::ActorGone), _) => {
            attached.closed_by_engine = true;
            // Our close frame is out: wait (bounded) for the peer's answer
            // so the TCP connection ends cleanly, discarding data frames.
            let _ = tokio::time::timeout(close_timeout, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
        }
        (Some(WriteEnd::Broken), _) => {}
        (None, Some(ReadEnd::PeerClosed)) => {
            // tungstenite queued the answer to the peer's close frame;
            // flush it.
            let _ = tokio::time::timeout(close_timeout, sink.close()).await;
        }
        (None, Some(ReadEnd::TooBig(reason))) => {
            tracing::debug!(tenant = %attached.tenant, conn = attached.conn.0, %reason, "closing");
            let frame = CloseFrame {
                code: close_code::MESSAGE_TOO_BIG,
                reason: reason.into(),
            };
            let _ =
                tokio::time::timeout(close_timeout, sink.send(Message::Close(Some(frame)))).await;
        }
        (None, Some(ReadEnd::Broken(reason))) => {
            tracing::debug!(tenant = %attached.tenant, conn = attached.conn.0, %reason, "socket error");
        }
        (None, None) => {}
    }
    shared.connections.fetch_sub(1, Ordering::Relaxed);
    // Dropping `attached` tells the actor, unless the engine closed it.
}

async fn read_loop(
    stream: &mut SplitStream<WebSocket>,
    conn: ConnId,
    tx: mpsc::UnboundedSender<TenantMsg>,
) -> ReadEnd {
    let budget = Arc::new(Semaphore::new(INBOUND_BUDGET));
    loop {
        let Some(message) = stream.next().await else {
            return ReadEnd::PeerClosed;
        };
        let frame = match message {
            Ok(Message::Binary(data)) => data,
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return ReadEnd::PeerClosed,
            Err(err) => {
                let reason = err.to_string();
                return if is_size_error(&reason) {
                    ReadEnd::TooBig(truncate_reason(reason))
                } else {
                    ReadEnd::Broken(reason)
                };
            }
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
            // The actor is gone; the writer will see its channel close.
            std::future::pending::<()>().await;
        }
    }
}

/// Bytes written before one flush (and one `Sent` report) at most.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Writes what the actor sends. Frames that queued up meanwhile are fed to
/// the socket together and flushed once: one syscall and one `Sent`
/// report for a burst of Acks and Changes instead of one per frame.
async fn write_loop(
    sink: &mut SplitSink<WebSocket, Message>,
    outbound: &mut mpsc::UnboundedReceiver<Outbound>,
    sent: impl Fn(usize),
) -> WriteEnd {
    while let Some(first) = outbound.recv().await {
        let mut next = Some(first);
        let mut written = 0usize;
        while let Some(out) = next.take() {
            match out {
                Outbound::Frame(frame) => {
                    written += frame.len();
                    if sink.feed(Message::Binary(frame)).await.is_err() {
                        return WriteEnd::Broken;
                    }
                }
                Outbound::Close { code, reason } => {
                    if sink.flush().await.is_err() {
                        return WriteEnd::Broken;
                    }
                    sent(written);
                    let frame = CloseFrame {
                        code,
                        reason: truncate_reason(reason).into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return WriteEnd::Closed;
                }
            }
            if written < WRITE_BATCH_BYTES {
                next = outbound.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return WriteEnd::Broken;
        }
        sent(written);
    }
    let frame = CloseFrame {
        code: close_code::INTERNAL_ERROR,
        reason: "internal error".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
    WriteEnd::ActorGone
}

/// tungstenite's capacity errors ("Space limit exceeded: Message too long",
/// "Message too long: N > M") have no stable variant through axum.
fn is_size_error(reason: &str) -> bool {
    reason.contains("too long") || reason.contains("too big") || reason.contains("Space limit")
}
