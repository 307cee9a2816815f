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
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes of a socket's read buffer: tungstenite zero-fills its read
/// buffer (128 KiB by default) on the first read, so a minimal server keeps
/// it small, as evsync does (512 bytes there, over a stream that reads
/// 16 KiB per `recv`).
const READ_BUFFER: usize = 4096;

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
    /// Writes `frames` in one flush (one socket write when they fit).
    /// False if the socket is gone (its own task then ends the connection).
    async fn send_all(&self, frames: Vec<Bytes>) -> bool {
        match self {
            Out::Inline(sink) => {
                let mut sink = sink.lock().await;
                for frame in frames {
                    if sink.feed(Message::Binary(frame)).await.is_err() {
                        return false;
                    }
                }
                sink.flush().await.is_ok()
            }
            Out::Task(tx) => frames.into_iter().all(|frame| tx.send(frame).is_ok()),
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
    let state = Rc::new(RefCell::new(State::default()));
    serve_on_one_thread(
        listen,
        &format!("ceiling server, fan-out {mode:?}"),
        move |ws| connection(ws, state.clone(), mode),
    )
}

/// The ceiling servers' accept loop: one thread, each connection a local
/// task that accepts the WebSocket (Nagle off, a small read buffer) and
/// runs `connection` on it; prints `listening on ADDR` once bound (what
/// scripts/bench waits for) and logs how a connection ended.
pub(crate) fn serve_on_one_thread<F, Fut>(listen: &str, name: &str, connection: F) -> Result<()>
where
    F: Fn(WebSocketStream<TcpStream>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let connection = Rc::new(connection);
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let _ = std::io::stdout().flush();
        say(name);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let connection = connection.clone();
            let name = name.to_owned();
            tokio::task::spawn_local(async move {
                let mut config = WebSocketConfig::default();
                config.read_buffer_size = READ_BUFFER;
                let served = async {
                    let ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
                    connection(ws).await
                };
                if let Err(e) = served.await {
                    say(format!("{name}: connection ended: {e}"));
                }
            });
        }
    })
}

async fn connection(
    ws: WebSocketStream<TcpStream>,
    state: Rc<RefCell<State>>,
    mode: FanoutMode,
) -> Result<()> {
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
    out.send_all(framer::encode(&hello, || 0)).await;
    let mut decoder = FrameDecoder::<Request>::new(ChunkLimits::default());
    let mut encoder = framer::FrameEncoder::default();
    let result = async {
        let mut requests = Vec::new();
        let mut closed = false;
        while let Some(msg) = stream.next().await {
            // What else has arrived is taken too (up to BATCH): its writes
            // are acked together and their entries go to each subscriber in
            // one Changes, one socket write per subscriber, as evsync's
            // group commit does; without this a subscriber costs a write
            // per entry and 1,000 subscribers × 1,000 entries/s drown.
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match decode(&mut decoder, msg)? {
                    Decoded::Request(request) => requests.push(request),
                    Decoded::Nothing => {}
                    Decoded::Closed => closed = true,
                }
                if requests.len() < BATCH && !closed {
                    next = stream.next().now_or_never().flatten();
                }
            }
            if !handle(&requests, conn, &out, &state, &mut encoder).await || closed {
                break;
            }
            requests.clear();
        }
        Ok::<(), crate::common::BoxError>(())
    }
    .await;
    for log in state.borrow_mut().logs.values_mut() {
        log.subscribers.retain(|(c, _)| *c != conn);
    }
    result
}

/// Requests a connection's task takes at once.
const BATCH: usize = 64;

/// What one WebSocket message was.
enum Decoded {
    Request(Request),
    /// A control frame, or a part of a chunked message.
    Nothing,
    /// The peer's close frame: the connection ends (quietly, as it should).
    Closed,
}

/// A broken socket or a frame that does not decode is an error (logged).
fn decode(
    decoder: &mut FrameDecoder<Request>,
    msg: std::result::Result<Message, tokio_tungstenite::tungstenite::Error>,
) -> Result<Decoded> {
    let frame = match msg? {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
        Message::Close(_) => return Ok(Decoded::Closed),
        _ => return Ok(Decoded::Nothing),
    };
    let decoded = decoder
        .decode(&frame, Timestamp(0))
        .map_err(|e| err(format!("{e:?}")))?;
    Ok(decoded.map_or(Decoded::Nothing, Decoded::Request))
}

/// Answers a connection's batch of requests: Acks (and Pongs, backlogs)
/// to the connection, then each log's new entries to its subscribers.
/// False if the connection's socket is gone.
async fn handle(
    requests: &[Request],
    conn: u64,
    out: &Out,
    state: &Rc<RefCell<State>>,
    encoder: &mut framer::FrameEncoder,
) -> bool {
    let mut replies = Vec::new();
    // Per log written: its new entries and its subscribers but this one.
    let mut fanout: Vec<(String, Vec<RemoteEntry>, Vec<Out>)> = Vec::new();
    {
        let mut state = state.borrow_mut();
        for request in requests {
            match request {
                Request::WriteEntries {
                    public_key,
                    id,
                    iv,
                    encrypted_entries,
                } => {
                    let log = state.logs.entry(public_key.clone()).or_default();
                    let first = log.entries.len() as u64 + 1;
                    let added: Vec<RemoteEntry> = encrypted_entries
                        .iter()
                        .zip(first..)
                        .map(|(e, sequence)| RemoteEntry {
                            sequence,
                            iv: iv.clone(),
                            entry_id: e.entry_id.clone(),
                            encrypted_entry: e.encrypted_entry.clone(),
                        })
                        .collect();
                    let sequence_numbers = added.iter().map(|e| e.sequence).collect();
                    encoder.encode_into(
                        &Response::Ack {
                            id: *id,
                            sequence_numbers,
                        },
                        &mut replies,
                    );
                    log.entries.extend(added.iter().cloned());
                    match fanout.iter_mut().find(|(key, ..)| key == public_key) {
                        Some((_, entries, _)) => entries.extend(added),
                        None => {
                            let subscribers = log
                                .subscribers
                                .iter()
                                .filter(|(c, _)| *c != conn)
                                .map(|(_, o)| o.clone())
                                .collect();
                            fanout.push((public_key.clone(), added, subscribers));
                        }
                    }
                }
                Request::RequestChanges {
                    public_key,
                    start_sequence,
                } => {
                    let log = state.logs.entry(public_key.clone()).or_default();
                    log.subscribers.retain(|(c, _)| *c != conn);
                    log.subscribers.push((conn, out.clone()));
                    let from = start_sequence.saturating_sub(1) as usize;
                    let backlog = log.entries.get(from..).unwrap_or_default().to_vec();
                    if !backlog.is_empty() {
                        let changes = Response::Changes {
                            public_key: public_key.clone(),
                            entries: backlog,
                        };
                        encoder.encode_into(&changes, &mut replies);
                    }
                }
                Request::StopChanges { public_key } => {
                    if let Some(log) = state.logs.get_mut(public_key) {
                        log.subscribers.retain(|(c, _)| *c != conn);
                    }
                }
                Request::Ping { id } => {
                    encoder.encode_into(&Response::Pong { id: *id }, &mut replies)
                }
                Request::Chunked(_) => {}
            }
        }
    }
    if !out.send_all(replies).await {
        return false;
    }
    for (public_key, entries, subscribers) in fanout {
        if entries.is_empty() || subscribers.is_empty() {
            continue;
        }
        let frames = encoder.encode(&Response::Changes {
            public_key,
            entries,
        });
        for subscriber in &subscribers {
            subscriber.send_all(frames.clone()).await;
        }
    }
    true
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
