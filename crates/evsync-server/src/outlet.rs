//! A connection's outbound half, shared by its tenant's actor and its
//! socket task.
//!
//! Why the actor writes: the engine hands a commit's live `Changes` to a
//! log's subscribers in the order they subscribed, and clients depend on
//! the order in which the frames actually leave (a replica with two
//! subscribed sockets applies an entry from whichever socket gets it first;
//! Effect's own server writes in subscription order). If every socket task
//! wrote on its own, the runtime's scheduling would pick the order. So the
//! actor writes each burst of frames itself, in the engine's order, when
//! the socket can take them without waiting (the usual case: the kernel's
//! send buffer has room), and reports them sent at once.
//!
//! What cannot be written at once (the socket does not exist yet, its
//! buffer is full, a close) goes to a backlog that the socket task drives
//! with a real waker, reporting the bytes as they are flushed. Once a
//! backlog exists, later frames of that connection queue behind it, so a
//! connection's own frames never reorder; a slow consumer never delays the
//! others.

use crate::socket::Socket;
use bytes::Bytes;
use futures_util::Sink;
use futures_util::stream::SplitSink;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio_tungstenite::tungstenite::Message;

/// The sink half of a sync socket.
pub(crate) type WsSink = SplitSink<Socket, Message>;

/// What the actor hands a connection, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    Frame(Bytes),
    /// Close the socket with this code and reason (after the frames before).
    Close {
        code: u16,
        reason: String,
    },
}

/// How the socket task's driving of the backlog ended.
#[derive(Debug)]
pub(crate) enum Drained {
    /// The actor closed the connection; every frame before is flushed and
    /// the sink is handed back to send the close frame.
    Close {
        sink: WsSink,
        code: u16,
        reason: String,
    },
    /// The actor is gone (panic): the sink is handed back for a 1011.
    ActorGone(WsSink),
    /// Writing failed: the socket is broken.
    Broken,
}

#[derive(Default)]
struct State {
    /// `None` before the socket exists and after the socket task took it.
    sink: Option<WsSink>,
    backlog: VecDeque<Outbound>,
    /// Bytes handed to the sink and not yet flushed.
    unflushed: usize,
    /// The socket task, waiting for work.
    driver: Option<Waker>,
    /// The socket task ended: nothing more will be written.
    ended: bool,
    actor_gone: bool,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Outlet {
    state: Mutex<State>,
}

impl Outlet {
    pub fn new() -> Arc<Self> {
        Arc::new(Outlet::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves the state consistent enough to
        // go on (at worst a frame is lost on a connection being torn down).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Actor side: hands `items` to the socket, in order, leaving `items`
    /// empty (its buffer is reused). Returns the bytes written and flushed
    /// now; the rest is left to the socket task, which reports it when
    /// flushed.
    pub fn send_all(&self, items: &mut Vec<Outbound>) -> usize {
        let mut state = self.lock();
        let state = &mut *state;
        if state.ended {
            items.clear();
            return 0;
        }
        let blocked = !state.backlog.is_empty() || state.unflushed > 0;
        let Some(sink) = state.sink.as_mut().filter(|_| !blocked) else {
            state.backlog.extend(items.drain(..));
            wake(&mut state.driver);
            return 0;
        };
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        let mut items = items.drain(..);
        for item in items.by_ref() {
            let Outbound::Frame(frame) = item else {
                state.backlog.push_back(item);
                break;
            };
            match Pin::new(&mut *sink).poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {
                    let len = frame.len();
                    if Pin::new(&mut *sink)
                        .start_send(Message::Binary(frame))
                        .is_err()
                    {
                        // Broken: the socket task finds out on its next poll.
                        break;
                    }
                    written += len;
                }
                Poll::Ready(Err(_)) => break,
                Poll::Pending => {
                    state.backlog.push_back(Outbound::Frame(frame));
                    break;
                }
            }
        }
        state.backlog.extend(items);
        let flushed =
            written > 0 && matches!(Pin::new(sink).poll_flush(&mut cx), Poll::Ready(Ok(())));
        if !flushed {
            state.unflushed += written;
        }
        if !state.backlog.is_empty() || state.unflushed > 0 {
            wake(&mut state.driver);
        }
        if flushed { written } else { 0 }
    }

    /// Socket side: the socket exists; frames queued before it go out now.
    pub fn install(&self, sink: WsSink) {
        self.lock().sink = Some(sink);
    }

    /// Socket side: writes the backlog whenever there is one, reporting
    /// flushed bytes to `sent`, until the actor closes the connection, the
    /// actor is gone, or writing fails.
    pub async fn drive(&self, sent: impl Fn(usize)) -> Drained {
        poll_fn(|cx| self.poll_drive(cx, &sent)).await
    }

    fn poll_drive(&self, cx: &mut Context<'_>, sent: &impl Fn(usize)) -> Poll<Drained> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(sink) = state.sink.as_mut() else {
            return Poll::Ready(Drained::Broken);
        };
        loop {
            match state.backlog.front() {
                Some(Outbound::Frame(_)) => match Pin::new(&mut *sink).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Some(Outbound::Frame(frame)) = state.backlog.pop_front() else {
                            unreachable!("front is a frame");
                        };
                        state.unflushed += frame.len();
                        if Pin::new(&mut *sink)
                            .start_send(Message::Binary(frame))
                            .is_err()
                        {
                            return Poll::Ready(Drained::Broken);
                        }
                        continue;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Drained::Broken),
                    Poll::Pending => return Poll::Pending,
                },
                Some(Outbound::Close { .. }) | None => {}
            }
            if state.unflushed > 0 {
                match Pin::new(&mut *sink).poll_flush(cx) {
                    Poll::Ready(Ok(())) => sent(std::mem::take(&mut state.unflushed)),
                    Poll::Ready(Err(_)) => return Poll::Ready(Drained::Broken),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if let Some(Outbound::Close { code, reason }) = state.backlog.pop_front() {
                let sink = state.sink.take().expect("checked above");
                state.ended = true;
                return Poll::Ready(Drained::Close { sink, code, reason });
            }
            if state.actor_gone {
                let sink = state.sink.take().expect("checked above");
                state.ended = true;
                return Poll::Ready(Drained::ActorGone(sink));
            }
            state.driver = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }

    /// Socket side: the socket is done; takes the sink back (to answer a
    /// peer's close) and drops whatever was still queued.
    pub fn end(&self) -> Option<WsSink> {
        let mut state = self.lock();
        state.ended = true;
        state.backlog.clear();
        state.sink.take()
    }

    /// Actor side: the actor is going away without closing this connection
    /// (it panicked); the socket task closes it with 1011.
    pub fn actor_gone(&self) {
        let mut state = self.lock();
        state.actor_gone = true;
        wake(&mut state.driver);
    }
}

fn wake(driver: &mut Option<Waker>) {
    if let Some(waker) = driver.take() {
        waker.wake();
    }
}
