//! The first request's head of a new connection, read before HTTP is
//! parsed, and the stream that replays it.
//!
//! Why: the accept thread ([`crate::accept_thread`]) waits for a new
//! connection's request headers (a slowloris attacker drips them for ever)
//! and hands the connection to the workers only once they are all there.
//! Reading up to the blank line that ends them is all it needs to know;
//! hyper then parses them on the workers from [`Replay`], which gives the
//! bytes already read before the socket's own.

use crate::write_through::write_through;
use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::TcpStream;

/// More than any request head evsync serves (hyper's own buffer limit is
/// ~400 KB): a longer one goes to hyper unfinished, and hyper refuses it.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Reads from `peer` until the request head's blank line (`\r\n\r\n`) or
/// [`MAX_HEAD_BYTES`], and returns what it read (maybe some bytes past the
/// head too). An error if the peer closed or reset first.
pub(crate) async fn read_head(peer: &mut (impl AsyncRead + Unpin)) -> io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        let searched_to = buf.len().saturating_sub(3);
        if peer.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if buf[searched_to..].windows(4).any(|w| w == b"\r\n\r\n") || buf.len() >= MAX_HEAD_BYTES {
            return Ok(buf.freeze());
        }
        if buf.capacity() == buf.len() {
            buf.reserve(buf.len());
        }
    }
}

/// A TCP stream whose first bytes were read already: reads give those
/// first, then the socket's.
pub(crate) struct Replay {
    read: Bytes,
    tcp: TcpStream,
}

impl Replay {
    pub(crate) fn new(read: Bytes, tcp: TcpStream) -> Replay {
        Replay { read, tcp }
    }

    /// The stream back, with the bytes read from it that its reader has not
    /// taken: `reader_kept`, what the reader read from this and did not use
    /// (hyper's buffer after an upgrade), comes before what was never
    /// replayed to it.
    pub(crate) fn into_unread(self, reader_kept: Bytes) -> (Bytes, TcpStream) {
        let unread = if self.read.is_empty() {
            reader_kept
        } else {
            [&reader_kept[..], &self.read[..]].concat().into()
        };
        (unread, self.tcp)
    }
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.tcp).poll_read(cx, out);
        }
        let n = this.read.len().min(out.remaining());
        out.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

write_through!(Replay, tcp);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_through::loopback_pair;
    use tokio::io::AsyncWriteExt;

    /// A reader that yields `pieces` one per read, as a peer's separate
    /// TCP segments would arrive.
    struct Pieces(std::collections::VecDeque<&'static [u8]>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(piece) = self.0.pop_front() {
                out.put_slice(piece);
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_head_whose_blank_line_spans_reads_is_read_to_its_end() {
        // "\r\n\r\n" split across the second and third reads
        let pieces = [
            &b"GET / HTTP/1.1\r"[..],
            b"\nHost: x\r\n\r",
            b"\nafter",
            b"never read",
        ];
        let mut peer = Pieces(pieces.into());
        let head = read_head(&mut peer).await.unwrap();
        assert_eq!(&head[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\nafter");
        assert_eq!(peer.0.len(), 1, "no read past the blank line's");
    }

    #[tokio::test]
    async fn the_head_is_replayed_before_the_sockets_own_bytes() {
        let (mut client, server) = loopback_pair().await;
        client.write_all(b"after").await.unwrap();
        let head = Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n");
        let mut replay = Replay::new(head.clone(), server);
        let mut got = vec![0u8; head.len() + 5];
        replay.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..head.len()], &head[..]);
        assert_eq!(&got[head.len()..], b"after");
    }

    #[tokio::test]
    async fn what_its_reader_kept_comes_back_before_what_was_never_replayed() {
        let (_client, server) = loopback_pair().await;
        let mut replay = Replay::new(Bytes::from_static(b"GET / HTTP/1.1\r\n\r\nframe"), server);
        let mut taken = [0u8; 20];
        replay.read_exact(&mut taken).await.unwrap();
        // the reader used 18 bytes (the head) and kept "fr"
        let (unread, _tcp) = replay.into_unread(Bytes::copy_from_slice(&taken[18..]));
        assert_eq!(&unread[..], b"frame");
    }

    #[tokio::test]
    async fn a_peer_that_closes_before_the_end_of_its_head_is_an_error() {
        let (mut client, mut server) = loopback_pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        drop(client);
        assert!(read_head(&mut server).await.is_err());
    }

    #[tokio::test]
    async fn a_head_without_its_end_stops_at_the_limit() {
        let (mut client, mut server) = loopback_pair().await;
        let writer = tokio::spawn(async move {
            let _ = client.write_all(&vec![b'x'; MAX_HEAD_BYTES + 10]).await;
            client
        });
        let head = read_head(&mut server).await.unwrap();
        assert!(head.len() >= MAX_HEAD_BYTES, "{}", head.len());
        drop(writer.await.unwrap());
    }
}
