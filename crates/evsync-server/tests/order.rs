//! Live `Changes` of one commit leave the server in the order the sockets
//! subscribed (issue: the agent SDK keeps a replica's old socket open when
//! it reconnects, and whichever of its sockets gets an entry first decides
//! whether the replica applies it; Effect's server writes in subscription
//! order).
//!
//! "Leave" is measured by the kernel, not by the order a test task happens
//! to read in: every subscriber socket has `SO_TIMESTAMPNS` on, and on
//! loopback the receive timestamp is taken when the server's write hands
//! the bytes to the loopback device, i.e. in the order of the server's
//! writes. Each frame's timestamp is read with `MSG_PEEK` before the frame
//! is consumed.

mod common;
#[path = "common/inproc.rs"]
mod inproc;

use common::{Client, entry, within};
use inproc::{memory_config, start};
use std::os::fd::AsRawFd;
use tokio_tungstenite::MaybeTlsStream;

const SUBSCRIBERS: usize = 8;
const WRITES: u64 = 40;

fn enable_timestamps(client: &Client) {
    let fd = tcp(client).as_raw_fd();
    let on: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_TIMESTAMPNS");
}

fn tcp(client: &Client) -> &tokio::net::TcpStream {
    match client.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp,
        _ => panic!("plain TCP expected"),
    }
}

/// The kernel receive time (ns) of the first unread byte of `client`'s
/// socket, once one is there.
async fn peek_arrival(client: &Client) -> u128 {
    let stream = tcp(client);
    loop {
        within("a frame to arrive", stream.readable())
            .await
            .unwrap();
        let fd = stream.as_raw_fd();
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u8; 128];
        // SAFETY: msghdr is plain data; every pointer set below points to a
        // live buffer of the stated length for the duration of the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len() as _;
        // SAFETY: as above.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        if n < 0 {
            // Not readable after all (spurious readiness): wait again.
            let _ = stream.try_read(&mut []);
            continue;
        }
        assert_eq!(n, 1, "a byte to peek");
        // SAFETY: walking the control buffer the kernel filled in.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points into `control`.
            let header = unsafe { &*cmsg };
            if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_TIMESTAMPNS {
                // SAFETY: an SCM_TIMESTAMPNS payload is a timespec.
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                return ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128;
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
        }
        panic!("no receive timestamp on the frame");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_leaves_in_subscription_order() {
    let server = start(memory_config()).await;
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let (client, _) = Client::connect_hello(server.addr, "order").await;
        enable_timestamps(&client);
        subscribers.push(client);
    }
    // Subscribe in an order unlike the connection order, each proven
    // handled (Pong) before the next.
    let order = [5, 2, 7, 0, 3, 6, 1, 4];
    for (i, &s) in order.iter().enumerate() {
        subscribers[s].request_changes("pk", 0).await;
        subscribers[s].barrier(i as i64).await;
    }
    let (mut writer, _) = Client::connect_hello(server.addr, "order").await;
    let mut out_of_order = Vec::new();
    for n in 1..=WRITES {
        writer.write("pk", n as i64, &[entry(n, 100)]).await;
        let mut arrivals = Vec::new();
        for &s in &order {
            let at = peek_arrival(&subscribers[s]).await;
            let got = subscribers[s].changes("pk", 1).await;
            assert_eq!(got[0].sequence, n, "subscriber {s} gets entry {n}");
            arrivals.push((at, s));
        }
        arrivals.sort();
        let left: Vec<usize> = arrivals.iter().map(|&(_, s)| s).collect();
        if left != order {
            out_of_order.push((n, left));
        }
    }
    assert!(
        out_of_order.is_empty(),
        "frames left out of subscription order {order:?}: {out_of_order:?}"
    );
    server.shutdown().await;
}
