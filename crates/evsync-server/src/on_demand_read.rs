//! A TCP stream whose read buffer exists only while bytes are waiting.
//!
//! Why: tungstenite keeps a read buffer of its configured size for the
//! whole life of every socket (it is allocated when the socket is made),
//! and it reads at most that much per call. A 4 KiB buffer was 41 % of an
//! idle subscribed socket's memory; a small one alone would make a large
//! message cost one `recv` per few hundred bytes. So the WebSocket gets a
//! small buffer (`routes::READ_BUFFER_BYTES`) over this stream, which
//! waits for the socket to be readable *before* taking a chunk from a
//! per-thread pool, reads up to a whole chunk in one `recv`, hands it out
//! in as many small reads as the codec asks for (never more than its own
//! buffer), and gives the chunk back once it is drained. An idle socket
//! holds no chunk at all.
//!
//! It also bounds in time what it bounds in size: bytes of a WebSocket
//! message that has not come whole. The codec holds a partial message (up
//! to the frame limit) for as long as the socket is open, and a drip of a
//! byte now and then keeps the idle timeout away, so a peer could hold
//! that memory for ever. This stream knows when bytes arrive, and the
//! reader tells it when a message came whole ([`MessageTaken`]); once
//! bytes have waited longer than the limit for their message to end, the
//! read fails with [`IncompleteMessage`] and the connection is closed.
//! The one thing it cannot see is the codec's own small read buffer: bytes
//! already in it when a message ended are timed only from the next bytes
//! that arrive (at most `routes::READ_BUFFER_BYTES`, held until then).
//!
//! And it gives the CPU back to the kernel after every 64 KiB it receives
//! ([`CpuYield`]), so that a peer sending a large message does not keep
//! other threads waiting behind its worker.

use crate::cpu_yield::CpuYield;
use crate::write_through::write_through;
use bytes::Bytes;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Bytes read per `recv` while a socket has data waiting.
const CHUNK_BYTES: usize = 16 * 1024;

/// Drained chunks kept per thread for the next read (more are freed).
const POOLED_CHUNKS: usize = 8;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_chunk() -> Box<[u8]> {
    POOL.with(|pool| pool.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; CHUNK_BYTES].into_boxed_slice())
}

fn give_back(chunk: Box<[u8]>) {
    if chunk.len() != CHUNK_BYTES {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_CHUNKS {
            pool.push(chunk);
        }
    });
}

/// Read from the socket, not yet handed to the reader.
#[derive(Debug)]
struct Pending {
    chunk: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Why a read failed: bytes waited longer than the limit for their
/// WebSocket message to end.
#[derive(Debug)]
pub(crate) struct IncompleteMessage {
    waited: Duration,
    bytes: u64,
}

impl fmt::Display for IncompleteMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a WebSocket message incomplete after {} ms ({} bytes received)",
            self.waited.as_millis(),
            self.bytes
        )
    }
}

impl std::error::Error for IncompleteMessage {}

impl IncompleteMessage {
    /// The reason, if `err` is a read that failed this way.
    pub(crate) fn of(err: &io::Error) -> Option<String> {
        let this = err.get_ref()?.downcast_ref::<IncompleteMessage>()?;
        Some(this.to_string())
    }
}

/// The reader's side: counts the messages it took from the codec, each of
/// which ends the wait of the bytes that made it.
#[derive(Debug, Clone)]
pub(crate) struct MessageTaken(Arc<AtomicU64>);

impl MessageTaken {
    pub(crate) fn note(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Since when bytes have waited for their message to end.
#[derive(Debug)]
struct Waiting {
    limit: Duration,
    taken: MessageTaken,
    /// `taken`'s count when `since` was last brought up to date.
    seen: u64,
    since: Option<Instant>,
    bytes: u64,
    /// Armed only while bytes wait and the socket has nothing to read.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Waiting {
    /// A message was taken since the last look: what waited made it, and
    /// bytes still unread here (`left`) start a wait of their own.
    fn catch_up(&mut self, left: usize) {
        let taken = self.taken.0.load(Ordering::Relaxed);
        if taken == self.seen {
            return;
        }
        self.seen = taken;
        self.timer = None;
        self.since = (left > 0).then(Instant::now);
        self.bytes = left as u64;
    }

    fn arrived(&mut self, bytes: usize) {
        self.since.get_or_insert_with(Instant::now);
        self.bytes += bytes as u64;
    }

    /// Ready with the failure once the bytes have waited too long.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<IncompleteMessage> {
        let Some(since) = self.since else {
            return Poll::Pending;
        };
        let deadline = since + self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(IncompleteMessage {
            waited: since.elapsed(),
            bytes: self.bytes,
        })
    }
}

/// `TcpStream` with an on-demand read buffer; writes go straight through.
#[derive(Debug)]
pub(crate) struct OnDemandRead {
    stream: TcpStream,
    pending: Option<Pending>,
    waiting: Waiting,
    cpu: CpuYield,
}

impl OnDemandRead {
    /// `already_read`: bytes the HTTP layer read past the upgrade request
    /// (a client may send its first frames without waiting for the 101).
    /// `message_limit`: how long bytes may wait for their WebSocket
    /// message to end.
    pub(crate) fn new(stream: TcpStream, already_read: Bytes, message_limit: Duration) -> Self {
        let pending = (!already_read.is_empty()).then(|| Pending {
            end: already_read.len(),
            chunk: already_read.to_vec().into_boxed_slice(),
            start: 0,
        });
        let waiting = Waiting {
            limit: message_limit,
            taken: MessageTaken(Arc::default()),
            seen: 0,
            since: pending.is_some().then(Instant::now),
            bytes: already_read.len() as u64,
            timer: None,
        };
        Self {
            stream,
            pending,
            waiting,
            cpu: CpuYield::default(),
        }
    }

    /// The handle the reader notes each message it takes with.
    pub(crate) fn message_taken(&self) -> MessageTaken {
        self.waiting.taken.clone()
    }
}

impl AsyncRead for OnDemandRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.pending.as_ref().map_or(0, |p| p.end - p.start);
        this.waiting.catch_up(left);
        loop {
            if let Some(pending) = &mut this.pending {
                let n = (pending.end - pending.start).min(buf.remaining());
                buf.put_slice(&pending.chunk[pending.start..pending.start + n]);
                pending.start += n;
                if pending.start == pending.end
                    && let Some(drained) = this.pending.take()
                {
                    give_back(drained.chunk);
                }
                return Poll::Ready(Ok(()));
            }
            if this.stream.poll_read_ready(cx)?.is_pending() {
                let expired = ready!(this.waiting.poll_expired(cx));
                return Poll::Ready(Err(io::Error::other(expired)));
            }
            let mut chunk = take_chunk();
            match this.stream.try_read(&mut chunk) {
                Ok(0) => {
                    give_back(chunk);
                    return Poll::Ready(Ok(()));
                }
                Ok(end) => {
                    this.waiting.arrived(end);
                    this.cpu.after_read(end);
                    this.pending = Some(Pending {
                        chunk,
                        start: 0,
                        end,
                    })
                }
                // Readiness was stale; `poll_read_ready` waits again.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => give_back(chunk),
                Err(err) => {
                    give_back(chunk);
                    return Poll::Ready(Err(err));
                }
            }
        }
    }
}

write_through!(OnDemandRead, stream);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_through::loopback_pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Longer than any test: no read here is meant to expire.
    const UNLIMITED: Duration = Duration::from_secs(3600);

    /// The bytes come out whole and in order through reads far smaller
    /// than a chunk, the HTTP layer's leftover first; EOF is EOF.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let (mut client, server) = loopback_pair().await;
        let mut reader = OnDemandRead::new(server, Bytes::from_static(b"head:"), UNLIMITED);
        let body: Vec<u8> = (0..9 * CHUNK_BYTES + 17).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        let mut small = [0u8; 300];
        loop {
            let n = reader.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        writer.await.unwrap();
        let mut expected = b"head:".to_vec();
        expected.extend_from_slice(&body);
        assert_eq!(got, expected);
        assert!(reader.pending.is_none(), "a drained socket holds no chunk");
        let received = expected.len() - b"head:".len();
        assert_eq!(
            reader.cpu.yields(),
            (received / CpuYield::EVERY_BYTES) as u64,
            "gave the CPU back once per 64 KiB received"
        );
    }

    /// Writes pass through untouched.
    #[tokio::test]
    async fn writes_go_straight_to_the_socket() {
        let (mut client, server) = loopback_pair().await;
        let mut stream = OnDemandRead::new(server, Bytes::new(), UNLIMITED);
        stream.write_all(b"pong").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
