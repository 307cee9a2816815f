//! The socket ceiling: a minimal EventLogRemote (v3) server with no engine
//! and no storage, for the churn and fan-out ceilings of the bench.
//!
//! It answers `Hello` on open, `Ack` (sequences counted in memory) for
//! `WriteEntries`, the backlog and then every new entry for
//! `RequestChanges`, `Pong` for `Ping`, through evsync-core's codec and
//! framer over tokio-tungstenite on one thread. What evsync does on top of
//! that (tenants, the log service, storage, limits, metrics) is absent, so
//! the same load generator against it measures what the socket work alone
//! costs on this machine: the ceiling a server's churn and fan-out can be
//! compared with.
//!
//! Fan-out has two modes. `inline` (the default) writes a new entry's
//! `Changes` to the subscribers one after the other from the writer's task,
//! in the order they subscribed: the delivery order evsync promises.
//! `tasks` hands the frame to each subscriber's own writer task, whose
//! scheduling picks the order (what evsync did before it promised one).

use crate::common::{Result, err, say};
use bytes::Bytes;
use evsync_core::chunk::ChunkLimits;
use evsync_core::proto::v3::framer::{self, FrameDecoder};
use evsync_core::time::Timestamp;
use evsync_core::wire::{RemoteEntry, RemoteId, Request, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// How a new entry reaches the subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// The writer's task writes each subscriber's socket, in subscription order.
    Inline,
    /// Each subscriber's own task writes its socket.
    Tasks,
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// Where a connection's frames go.
#[derive(Clone)]
enum Out {
    Inline(Rc<tokio::sync::Mutex<Sink>>),
    Task(mpsc::UnboundedSender<Bytes>),
}

impl Out {
    async fn send(&self, frame: Bytes) {
        match self {
            // A broken socket ends its own connection task; nothing to do here.
            Out::Inline(sink) => {
                let _ = sink.lock().await.send(Message::Binary(frame)).await;
            }
            Out::Task(tx) => {
                let _ = tx.send(frame);
            }
        }
    }
}

#[derive(Default)]
struct Log {
    entries: Vec<RemoteEntry>,
    /// In subscription order.
    subscribers: Vec<(u64, Out)>,
}

#[derive(Default)]
struct State {
    logs: HashMap<String, Log>,
    next_conn: u64,
}

/// Serves on `listen` until killed; prints `listening on ADDR` once bound
/// (what scripts/bench waits for).
pub fn serve(listen: &str, mode: FanoutMode) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let _ = std::io::stdout().flush();
        say(format!("ceiling server, fan-out {mode:?}"));
        let state = Rc::new(RefCell::new(State::default()));
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let state = state.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = connection(tcp, state, mode).await {
                    say(format!("ceiling server: connection ended: {e}"));
                }
            });
        }
    })
}

async fn connection(tcp: TcpStream, state: Rc<RefCell<State>>, mode: FanoutMode) -> Result<()> {
    let ws = tokio_tungstenite::accept_async(tcp).await?;
    let (sink, mut stream) = ws.split();
    let out = match mode {
        FanoutMode::Inline => Out::Inline(Rc::new(tokio::sync::Mutex::new(sink))),
        FanoutMode::Tasks => {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::task::spawn_local(write_task(sink, rx));
            Out::Task(tx)
        }
    };
    let conn = {
        let mut state = state.borrow_mut();
        state.next_conn += 1;
        state.next_conn
    };
    let hello = Response::Hello {
        remote_id: RemoteId([7; 16]),
    };
    send_all(&out, framer::encode(&hello, || 0)).await;
    let mut decoder = FrameDecoder::<Request>::new(ChunkLimits::default());
    let mut chunk_id = 0;
    let result = async {
        while let Some(msg) = stream.next().await {
            let frame = match msg? {
                Message::Binary(b) => b,
                Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some(request) = decoder
                .decode(&frame, Timestamp(0))
                .map_err(|e| err(format!("{e:?}")))?
            else {
                continue;
            };
            let mut next_chunk = || {
                chunk_id += 1;
                chunk_id
            };
            match request {
                Request::WriteEntries {
                    public_key,
                    id,
                    iv,
                    encrypted_entries,
                } => {
                    let (ack, changes, subscribers) = {
                        let mut state = state.borrow_mut();
                        let log = state.logs.entry(public_key.clone()).or_default();
                        let first = log.entries.len() as u64 + 1;
                        let added: Vec<RemoteEntry> = encrypted_entries
                            .into_iter()
                            .zip(first..)
                            .map(|(e, sequence)| RemoteEntry {
                                sequence,
                                iv: iv.clone(),
                                entry_id: e.entry_id,
                                encrypted_entry: e.encrypted_entry,
                            })
                            .collect();
                        let sequence_numbers = added.iter().map(|e| e.sequence).collect();
                        log.entries.extend(added.iter().cloned());
                        let subscribers: Vec<Out> = log
                            .subscribers
                            .iter()
                            .filter(|(c, _)| *c != conn)
                            .map(|(_, o)| o.clone())
                            .collect();
                        let changes = (!added.is_empty() && !subscribers.is_empty()).then(|| {
                            let changes = Response::Changes {
                                public_key,
                                entries: added,
                            };
                            framer::encode(&changes, &mut next_chunk)
                        });
                        (
                            Response::Ack {
                                id,
                                sequence_numbers,
                            },
                            changes,
                            subscribers,
                        )
                    };
                    send_all(&out, framer::encode(&ack, &mut next_chunk)).await;
                    if let Some(frames) = changes {
                        for subscriber in &subscribers {
                            send_all(subscriber, frames.clone()).await;
                        }
                    }
                }
                Request::RequestChanges {
                    public_key,
                    start_sequence,
                } => {
                    let backlog = {
                        let mut state = state.borrow_mut();
                        let log = state.logs.entry(public_key.clone()).or_default();
                        log.subscribers.retain(|(c, _)| *c != conn);
                        log.subscribers.push((conn, out.clone()));
                        let from = start_sequence.saturating_sub(1) as usize;
                        log.entries.get(from..).unwrap_or_default().to_vec()
                    };
                    if !backlog.is_empty() {
                        let changes = Response::Changes {
                            public_key,
                            entries: backlog,
                        };
                        send_all(&out, framer::encode(&changes, &mut next_chunk)).await;
                    }
                }
                Request::StopChanges { public_key } => {
                    if let Some(log) = state.borrow_mut().logs.get_mut(&public_key) {
                        log.subscribers.retain(|(c, _)| *c != conn);
                    }
                }
                Request::Ping { id } => {
                    send_all(
                        &out,
                        framer::encode(&Response::Pong { id }, &mut next_chunk),
                    )
                    .await
                }
                Request::Chunked(_) => {}
            }
        }
        Ok(())
    }
    .await;
    for log in state.borrow_mut().logs.values_mut() {
        log.subscribers.retain(|(c, _)| *c != conn);
    }
    result
}

async fn send_all(out: &Out, frames: Vec<Bytes>) {
    for frame in frames {
        out.send(frame).await;
    }
}

/// A subscriber's writer in `tasks` mode: what queued meanwhile goes out
/// in one flush.
async fn write_task(mut sink: Sink, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if sink.feed(Message::Binary(frame)).await.is_err() {
            return;
        }
        while let Ok(frame) = rx.try_recv() {
            if sink.feed(Message::Binary(frame)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
