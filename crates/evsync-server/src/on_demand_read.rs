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

use bytes::Bytes;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// `TcpStream` with an on-demand read buffer; writes go straight through.
#[derive(Debug)]
pub(crate) struct OnDemandRead {
    stream: TcpStream,
    pending: Option<Pending>,
}

impl OnDemandRead {
    /// `already_read`: bytes the HTTP layer read past the upgrade request
    /// (a client may send its first frames without waiting for the 101).
    pub(crate) fn new(stream: TcpStream, already_read: Bytes) -> Self {
        let pending = (!already_read.is_empty()).then(|| Pending {
            end: already_read.len(),
            chunk: already_read.to_vec().into_boxed_slice(),
            start: 0,
        });
        Self { stream, pending }
    }
}

impl AsyncRead for OnDemandRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
            ready!(this.stream.poll_read_ready(cx))?;
            let mut chunk = take_chunk();
            match this.stream.try_read(&mut chunk) {
                Ok(0) => {
                    give_back(chunk);
                    return Poll::Ready(Ok(()));
                }
                Ok(end) => {
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

impl AsyncWrite for OnDemandRead {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// The bytes come out whole and in order through reads far smaller
    /// than a chunk, the HTTP layer's leftover first; EOF is EOF.
    #[tokio::test]
    async fn small_reads_see_every_byte_in_order() {
        let (mut client, server) = pair().await;
        let mut reader = OnDemandRead::new(server, Bytes::from_static(b"head:"));
        let body: Vec<u8> = (0..3 * CHUNK_BYTES + 17).map(|i| (i % 251) as u8).collect();
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
    }

    /// Writes pass through untouched.
    #[tokio::test]
    async fn writes_go_straight_to_the_socket() {
        let (mut client, server) = pair().await;
        let mut stream = OnDemandRead::new(server, Bytes::new());
        stream.write_all(b"pong").await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
