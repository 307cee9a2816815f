//! The v4 socket ceiling: a minimal Effect v4 eventlog server that answers
//! writes and nothing else, for the single-entry rows of `v4-write`.
//!
//! Why: with one core for the server and one for the load generator, a
//! single-entry write costs each side about as much (a `send` over
//! loopback runs the receiver's TCP path in the sender's context), so the
//! load generator can cap what any server shows. The 10× goal against
//! Effect's server means something only if this machine can carry 10×
//! Effect's rate at all. This server does the least a v4 server must:
//! `Hello` (fixed challenge), `Authenticate` (accepted unchecked),
//! `WriteSingle` decoded and acked with sequences counted per
//! (publicKey, storeId), `Pong` for `Ping`; no tenants, no sessions, no
//! log service, no storage. It takes what has arrived on a socket (up to
//! [`BATCH`] messages) at once and answers it in one flush, as evsync's
//! tenant actor does. The same load generator against it measures the
//! most a server can show on this machine: the ceiling of the table.

use super::client::{AUTHENTICATE, HELLO, WRITE_SINGLE};
use crate::ceiling_server::serve_on_one_thread;
use crate::common::{Result, err};
use bytes::Bytes;
use evsync_core::proto::v4::{
    self as proto, AuthenticateExit, Exit, FrameSplitter, FromClient, FromServer, HelloExit,
    HelloResponse, PONG_FRAME, Reason, Request, WriteAck, WriteEntries, WriteExit,
    WriteSinglePayload,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Messages a connection's task takes at once (evsync's tenant actor
/// handles up to 64 queued messages before it acts).
const BATCH: usize = 64;

/// The last sequence given out per (publicKey, storeId).
type Heads = Rc<RefCell<HashMap<(String, String), u64>>>;

/// Serves on `listen` until killed; prints `listening on ADDR` once bound
/// (what scripts/bench waits for).
pub fn serve(listen: &str) -> Result<()> {
    let heads = Heads::default();
    serve_on_one_thread(listen, "v4 ceiling server", move |ws| {
        connection(ws, heads.clone())
    })
}

async fn connection(ws: WebSocketStream<TcpStream>, heads: Heads) -> Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut splitter = FrameSplitter::default();
    while let Some(msg) = stream.next().await {
        let mut next = Some(msg);
        let mut taken = 0;
        let mut replies = 0;
        while let Some(msg) = next.take() {
            match msg? {
                Message::Binary(data) => splitter.push(data),
                Message::Close(_) => return Ok(()),
                _ => {}
            }
            while let Some(frame) = splitter.next_frame().map_err(|e| err(e.to_string()))? {
                let request = match FromClient::decode(&frame).map_err(|e| err(e.to_string()))? {
                    FromClient::Request(request) => request,
                    FromClient::Ping => {
                        sink.feed(Message::Binary(Bytes::from_static(&PONG_FRAME)))
                            .await?;
                        replies += 1;
                        continue;
                    }
                    FromClient::Eof => return Ok(()),
                    FromClient::Ack { .. } | FromClient::Interrupt { .. } => continue,
                };
                sink.feed(Message::Binary(answer(request, &heads)?)).await?;
                replies += 1;
            }
            taken += 1;
            if taken < BATCH {
                next = stream.next().now_or_never().flatten();
            }
        }
        if replies > 0 {
            sink.flush().await?;
        }
    }
    Ok(())
}

/// The Exit frame answering `request`.
fn answer(request: Request, heads: &Heads) -> Result<Bytes> {
    let exit = match request.tag.as_str() {
        HELLO => proto::encode(&HelloExit::Success(HelloResponse {
            challenge: Bytes::from_static(&[7; 32]),
            compaction: false,
            remote_id: Bytes::from_static(&[7; 16]),
            first_sequence: Some(1),
        })),
        AUTHENTICATE => proto::encode(&AuthenticateExit::Success(())),
        WRITE_SINGLE => {
            let payload: WriteSinglePayload =
                proto::decode(&request.payload).map_err(|e| err(e.to_string()))?;
            let write: WriteEntries =
                proto::decode(&payload.data).map_err(|e| err(e.to_string()))?;
            let mut heads = heads.borrow_mut();
            let head = heads.entry((write.public_key, write.store_id)).or_default();
            let acks: Vec<WriteAck> = write
                .batches
                .into_iter()
                .flat_map(|batch| batch.entry_ids)
                .map(|entry_id| {
                    *head += 1;
                    WriteAck {
                        sequence: *head,
                        entry_id,
                    }
                })
                .collect();
            proto::encode(&WriteExit::Success(acks))
        }
        tag => {
            let exit: WriteExit = Exit::Failure(vec![Reason::Die(proto::Defect::message(
                &format!("the v4 ceiling server answers writes only, not {tag}"),
            ))]);
            proto::encode(&exit)
        }
    };
    let envelope = FromServer::Exit {
        request_id: request.id,
        exit: Bytes::from(exit),
    };
    Ok(Bytes::from(envelope.encode()))
}
