//! `evsync serve` as a process: the built binary on an ephemeral port,
//! found through its startup line. Configuration errors, durability across
//! SIGKILL, graceful SIGTERM, debug logs.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod process;

use common::{Client, entries, sequences};
use evsync_core::proto::close::code as close_code;
use process::{Serve, command, within};
use std::path::Path;

/// `evsync serve` on `data`, with `extra` options.
async fn serve(data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Serve {
    let mut args = vec!["--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    Serve::start(&args, envs).await
}

/// Runs the binary to completion: (exit code, stdout, stderr).
async fn run(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = within("evsync to exit", command(args, envs).output())
        .await
        .expect("run evsync");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn help_explains_every_option() {
    let (code, stdout, _) = run(&["serve", "--help"], &[]).await;
    assert_eq!(code, Some(0));
    for needle in [
        "--listen",
        "127.0.0.1:8787",
        "--data",
        "./evsync-data",
        "--storage",
        "SYNC_STORAGE",
        "--auth-token ",
        "SYNC_AUTH_TOKEN]",
        "--auth-tokens",
        "SYNC_AUTH_TOKENS",
        "--allow-query-token",
        "SYNC_ALLOW_QUERY_TOKEN",
        "--debug",
        "SYNC_DEBUG",
        "--idle-unload-ms",
        "--shutdown-timeout-secs",
        "--idle-socket-timeout",
        "SYNC_IDLE_SOCKET_TIMEOUT",
    ] {
        assert!(
            stdout.contains(needle),
            "--help lacks {needle:?}:\n{stdout}"
        );
    }
    let (code, stdout, _) = run(&["--help"], &[]).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("serve"));
}

#[tokio::test]
async fn bad_configuration_stops_startup_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![],
            vec![("SYNC_AUTH_TOKENS", "[\"not-an-object\"]")],
            "SYNC_AUTH_TOKENS",
        ),
        (
            vec![],
            vec![("SYNC_AUTH_TOKENS", "{\"acme\": \"\"}")],
            "SYNC_AUTH_TOKENS",
        ),
        (
            vec![],
            vec![("SYNC_AUTH_TOKENS", "{\"acme\": 5}")],
            "SYNC_AUTH_TOKENS",
        ),
        (
            vec![],
            vec![("SYNC_AUTH_TOKENS", "{oops")],
            "SYNC_AUTH_TOKENS",
        ),
        (vec!["--auth-tokens", "1"], vec![], "SYNC_AUTH_TOKENS"),
        (vec![], vec![("SYNC_STORAGE", "postgres")], "SYNC_STORAGE"),
        (vec![], vec![("SYNC_DEBUG", "maybe")], "SYNC_DEBUG"),
        (
            vec![],
            vec![("SYNC_ALLOW_QUERY_TOKEN", "yes")],
            "SYNC_ALLOW_QUERY_TOKEN",
        ),
        (
            vec![],
            vec![("SYNC_IDLE_SOCKET_TIMEOUT", "soon")],
            "SYNC_IDLE_SOCKET_TIMEOUT",
        ),
        (
            vec!["--idle-socket-timeout=-5"],
            vec![],
            "SYNC_IDLE_SOCKET_TIMEOUT",
        ),
        (
            vec![],
            vec![("SYNC_TENANT_WRITE_RATE", "fast")],
            "SYNC_TENANT_WRITE_RATE",
        ),
        (
            vec![],
            vec![("SYNC_TENANT_WRITE_BURST", "1000")],
            "SYNC_TENANT_WRITE_BURST",
        ),
        (
            vec!["--tenant-write-rate", "1000", "--tenant-write-burst", "0"],
            vec![],
            "SYNC_TENANT_WRITE_BURST",
        ),
        (vec!["--data", file.to_str().unwrap()], vec![], "--data"),
        (vec!["--listen", busy_addr.as_str()], vec![], "--listen"),
        (vec!["--listen", "not an address"], vec![], "--listen"),
    ];
    for (extra, envs, setting) in cases {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data", data];
        args.extend_from_slice(&extra);
        let (code, stdout, stderr) = run(&args, &envs).await;
        let case = format!("{extra:?} {envs:?}");
        assert_eq!(code, Some(2), "{case}: non-zero exit; stderr: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{case}: exactly one line, got {stderr:?}");
        assert!(
            lines[0].contains(setting),
            "{case}: names {setting}: {stderr:?}"
        );
        assert!(!stdout.contains("listening") && !stderr.contains("listening"));
    }
    drop(busy);
}

#[tokio::test]
async fn startup_line_says_where_and_how_but_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(
        dir.path(),
        &[],
        &[("SYNC_AUTH_TOKEN", "hunter2-secret"), ("SYNC_DEBUG", "1")],
    )
    .await;
    let line = server.startup.clone();
    assert!(line.contains(dir.path().to_str().unwrap()), "{line}");
    assert!(line.contains("storage: sqlite"), "{line}");
    assert!(line.contains("auth: on"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
    let r = common::http_get(server.addr, "/healthz", &[]).await;
    assert_eq!(r.status, 200);
    let mut c = Client::connect_with(
        server.addr,
        "acme",
        &[("Authorization", "Bearer hunter2-secret")],
    )
    .await;
    c.hello().await;
    c.write("pk", 1, &entries(1..=3)).await;
    let logged = server
        .line_with(&["request", "WriteEntries", "entries=3"])
        .await;
    assert!(logged.contains("peers=1"), "{logged}");
    assert!(logged.contains("protocol=\"v3\""), "{logged}");
    server.signal("TERM");
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigkill_right_after_an_ack_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[]).await;
    let (mut c, remote_id) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(
        c.write("pk", 1, &entries(1..=100)).await,
        (1..=100).collect::<Vec<_>>()
    );
    assert_eq!(c.write("pk", 2, &entries(101..=101)).await, vec![101]);
    // SIGKILL at once: no shutdown, no checkpoint, no flush of ours.
    server.signal("KILL");
    let code = server.exit_code().await;
    assert_eq!(code, None, "killed by a signal");

    let server = serve(dir.path(), &[], &[]).await;
    let (mut c, again) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(remote_id, again, "same remoteId after a crash");
    c.request_changes("pk", 0).await;
    let back = c.changes("pk", 101).await;
    assert_eq!(sequences(&back), (1..=101).collect::<Vec<_>>());
    assert_eq!(
        c.write("pk", 3, &entries(100..=102)).await,
        vec![100, 101, 102],
        "dedup and sequences continue after the crash"
    );
    server.signal("TERM");
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigterm_acks_writes_closes_sockets_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], &[]).await;
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    c.send(&common::write_request("pk", 1, &entries(1..=20)))
        .await;
    let before = c.barrier(2).await; // the write reached the engine
    server.signal("TERM");
    server.line_with(&["SIGTERM"]).await;
    let (after, closed) = c.until_closed().await;
    let acked = before
        .iter()
        .chain(after.iter())
        .any(|r| matches!(r, evsync_core::wire::Response::Ack { id: 1, sequence_numbers } if sequence_numbers.len() == 20));
    assert!(
        acked,
        "the write received before SIGTERM is acknowledged: {before:?} {after:?}"
    );
    assert_eq!(closed.code, Some(close_code::GOING_AWAY), "{closed:?}");
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[]).await;
    let data = dir.path().to_str().unwrap();
    let (code, _, stderr) = run(&["serve", "--listen", "127.0.0.1:0", "--data", data], &[]).await;
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--data") && stderr.contains("in use"),
        "{stderr}"
    );
    server.signal("TERM");
    assert_eq!(server.exit_code().await, Some(0));
}

#[tokio::test]
async fn memory_storage_serves_without_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    // RUST_LOG=error hides info logs, but not the startup line.
    let server = serve(
        &data,
        &[],
        &[("SYNC_STORAGE", "memory"), ("RUST_LOG", "error")],
    )
    .await;
    assert!(
        server.startup.contains("storage: memory"),
        "{}",
        server.startup
    );
    let (mut c, _) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(c.write("pk", 1, &entries(1..=2)).await, vec![1, 2]);
    assert!(!data.exists(), "memory storage writes nothing to disk");
    server.signal("TERM");
    assert_eq!(server.exit_code().await, Some(0));
}

/// The hard open-files limit of this process, from /proc/self/limits.
fn hard_open_files_limit() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let hard = line.split_whitespace().nth(4).expect("hard limit");
    if hard == "unlimited" {
        u64::MAX.to_string()
    } else {
        hard.to_string()
    }
}

#[tokio::test]
async fn a_low_open_files_limit_is_raised_to_the_hard_limit() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let hard = hard_open_files_limit();
    // Started from a shell whose soft limit is 256 (below the hard one).
    let mut child = tokio::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 256 && exec \"$0\" serve --listen 127.0.0.1:0 --storage memory",
            env!("CARGO_BIN_EXE_evsync"),
        ])
        .env("RUST_LOG", "info")
        .env_remove("SYNC_STORAGE")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sh");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (startup, _) = process::read_startup(&mut lines).await;
    assert!(
        startup.contains(&format!("open files: {hard}")),
        "soft limit 256 raised to the hard limit {hard}: {startup}"
    );
}

#[tokio::test]
async fn the_idle_socket_timeout_closes_only_silent_sockets_with_1000() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], &[("SYNC_IDLE_SOCKET_TIMEOUT", "1")]).await;
    assert!(
        server.startup.contains("idle socket timeout: 1 s"),
        "{}",
        server.startup
    );
    let (mut silent, _) = Client::connect_hello(server.addr, "idle").await;
    let (mut pinging, _) = Client::connect_hello(server.addr, "idle").await;
    let started = std::time::Instant::now();
    // Pings every 300 ms for 2.5 s: well past the silent one's deadline.
    for id in 1..=8 {
        pinging.barrier(id).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let closed = silent.closed().await;
    assert_eq!(closed.code, Some(close_code::NORMAL));
    assert_eq!(closed.reason, "idle: no frame received for 1 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    pinging.barrier(99).await;
    server
        .line_with(&["closing connection", "code=1000", "idle"])
        .await;
    let closed = within("the pinging socket to go idle", pinging.closed()).await;
    assert_eq!(
        closed.code,
        Some(close_code::NORMAL),
        "once it stops pinging"
    );
}

/// The same setting closes v4 sockets: one that never sent a frame (an
/// abandoned socket; a v4 server stays silent until `Hello`) is closed with
/// 1000 after 1 s, one that sends Effect's v4 `Ping` every 300 ms is not.
#[tokio::test]
async fn the_idle_socket_timeout_closes_silent_v4_sockets_too() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[("SYNC_IDLE_SOCKET_TIMEOUT", "1")]).await;
    let url = format!("ws://{}/v4/event-log/idle-v4", server.addr);
    let (mut silent, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut pinging, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let ping = bytes::Bytes::from_static(&evsync_core::proto::v4::PING_FRAME);
    for _ in 0..8 {
        pinging.send(Message::Binary(ping.clone())).await.unwrap();
        let pong = within("a Pong", pinging.next()).await.unwrap().unwrap();
        assert_eq!(
            pong,
            Message::Binary(bytes::Bytes::from_static(
                &evsync_core::proto::v4::PONG_FRAME
            ))
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let close = within("the silent socket's close", async {
        loop {
            match silent.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), close_code::NORMAL);
    assert_eq!(close.reason.as_str(), "idle: no frame received for 1 s");
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // The pinging one is still served.
    pinging.send(Message::Binary(ping.clone())).await.unwrap();
    assert!(matches!(
        within("a last Pong", pinging.next()).await,
        Some(Ok(Message::Binary(_)))
    ));
}
