//! The handshake timeout (issue 17, slowloris): a connection that never
//! finishes sending its HTTP request headers is closed after
//! `--handshake-timeout`, logged with its address and counted, while a
//! normal replica connects and syncs meanwhile. And the accept thread
//! that reads those headers apart from the workers, at its nice value.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod process;

use common::{Client, entries, http_get};
use process::{Serve, within};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; the bytes it sent.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_are_closed() {
    let mut server = Serve::start(&["--storage", "memory", "--handshake-timeout", "1"], &[]).await;

    // one sends nothing; one drips its headers a line a while
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut dripping = TcpStream::connect(server.addr).await.unwrap();
    dripping
        .write_all(b"GET /event-log/acme HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..20 {
            if dripping.write_all(b"X-Slow: 1\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        until_closed(&mut dripping).await
    });

    // meanwhile a replica works
    let (mut client, _) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(client.write("pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);

    // both stalled connections are closed by the server, long before the
    // drip would have ended (20 × 300 ms)
    let started = std::time::Instant::now();
    within(
        "the silent connection to be closed",
        until_closed(&mut silent),
    )
    .await;
    within("the dripping connection to be closed", drip)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );

    // logged with the reason and counted
    let line = server
        .line_with(&["upgrade refused", "handshake timeout"])
        .await;
    assert!(line.contains("127.0.0.1"), "the peer's address: {line}");
    within("the refusals to be counted", async {
        loop {
            let metrics = http_get(server.addr, "/metrics", &[]).await.body;
            if metrics.contains("evsync_connections_refused_total{limit=\"handshake_timeout\"} 2") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // the replica is still fine
    assert_eq!(client.write("pk", 2, &entries(4..=4)).await, vec![4]);
    drop(client);
    server.stop_and_collect().await;
}

#[tokio::test]
async fn a_handshake_timeout_that_is_not_a_number_stops_startup() {
    let out = process::output(
        &[
            "serve",
            "--storage",
            "memory",
            "--handshake-timeout",
            "soon",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SYNC_HANDSHAKE_TIMEOUT"), "{stderr}");
}

/// The nice value of each of `pid`'s threads named `name` (Linux:
/// `/proc/PID/task/TID/stat`, field 19).
fn nice_of_threads(pid: u32, name: &str) -> Vec<i32> {
    let mut nice = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // after "pid (comm) ": state is field 3, nice field 19
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        nice.push(fields[16].parse().unwrap());
    }
    nice
}

#[tokio::test]
async fn connections_are_admitted_on_a_thread_of_their_own_at_the_nice_given() {
    let server = Serve::start(&["--storage", "memory", "--accept-nice", "7"], &[]).await;
    let pid = server.child.id().unwrap();

    // a replica's handshake read there, its socket served by the workers
    let (mut client, _) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(client.write("pk", 1, &entries(1..=3)).await, vec![1, 2, 3]);
    let status = http_get(server.addr, "/healthz", &[]).await.status;
    assert_eq!(status, 200);

    assert_eq!(nice_of_threads(pid, "evsync-accept"), vec![7]);
    let workers = nice_of_threads(pid, "tokio-rt-worker");
    assert!(
        !workers.is_empty() && workers.iter().all(|&n| n == 0),
        "{workers:?}"
    );

    assert_eq!(client.write("pk", 2, &entries(4..=4)).await, vec![4]);
    drop(client);
    server.stop_and_collect().await;
}

#[tokio::test]
async fn an_accept_nice_value_out_of_range_stops_startup() {
    let out = process::output(
        &["serve", "--storage", "memory", "--accept-nice", "20"],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--accept-nice"), "{stderr}");
}
