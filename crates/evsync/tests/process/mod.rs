//! The built `evsync` binary as a child process, shared by the process
//! tests: a command with a clean environment, and a running `evsync serve`
//! on an ephemeral port found through its startup line.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long any one step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(30);

/// Variables that would change what the binary does; removed unless a test
/// sets them.
const CLEARED: &[&str] = &[
    "SYNC_AUTH_TOKEN",
    "SYNC_AUTH_TOKENS",
    "SYNC_ALLOW_QUERY_TOKEN",
    "SYNC_DEBUG",
    "SYNC_STORAGE",
    "SYNC_IDLE_SOCKET_TIMEOUT",
    "CLOUDFLARE_SYNC_URL",
    "CLOUDFLARE_SYNC_TENANT",
    "CLOUDFLARE_SYNC_TOKEN",
    "EVSYNC_IDENTITY",
];

/// Awaits `fut`, failing the test with `what` after [`WAIT`].
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// `evsync ARGS` with piped output, RUST_LOG=info unless `envs` says
/// otherwise, killed when dropped.
pub fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evsync"));
    cmd.args(args);
    for name in CLEARED {
        cmd.env_remove(name);
    }
    cmd.env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `evsync ARGS` to completion.
pub async fn output(args: &[&str], envs: &[(&str, &str)]) -> Output {
    within(
        &format!("evsync {args:?} to finish"),
        command(args, envs).output(),
    )
    .await
    .expect("run evsync")
}

/// Reads a server's stderr `lines` up to its startup line (`… listening on
/// ADDR …`); returns the line and the address.
pub async fn read_startup<R: AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> (String, SocketAddr) {
    let startup = within("the startup line", async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("evsync serve exited before its startup line");
            if line.contains("listening on ") {
                return line;
            }
        }
    })
    .await;
    let addr = startup
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .expect("an address in the startup line");
    (startup, addr)
}

/// A running `evsync serve --listen 127.0.0.1:0 …`.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub startup: String,
    /// stderr lines after the startup line.
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl Serve {
    /// Starts the server with `args` after `serve --listen 127.0.0.1:0` and
    /// waits for its startup line.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> Serve {
        Self::start_on("127.0.0.1:0", args, envs).await
    }

    /// [`Serve::start`] listening on `listen`.
    pub async fn start_on(listen: &str, args: &[&str], envs: &[(&str, &str)]) -> Serve {
        let mut all = vec!["serve", "--listen", listen];
        all.extend_from_slice(args);
        let mut child = command(&all, envs).spawn().expect("spawn evsync serve");
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let (startup, addr) = read_startup(&mut reader).await;
        // Keep draining stderr so the server never blocks on a full pipe.
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Serve {
            child,
            addr,
            startup,
            lines,
        }
    }

    /// The URL prefix of tenants: `ws://ADDR/event-log`.
    pub fn base(&self) -> String {
        format!("ws://{}/event-log", self.addr)
    }

    /// Waits for a log line containing every one of `needles`.
    pub async fn line_with(&mut self, needles: &[&str]) -> String {
        within("a log line", async {
            loop {
                let line = self.lines.recv().await.expect("stderr ended");
                if needles.iter().all(|n| line.contains(n)) {
                    return line;
                }
            }
        })
        .await
    }

    /// Sends signal `name` (e.g. `TERM`) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill(1)");
        assert!(status.success());
    }

    /// Sends SIGTERM, collects every stderr line until the server exits,
    /// and checks that it exited 0.
    pub async fn stop_and_collect(mut self) -> Vec<String> {
        self.signal("TERM");
        let mut lines = Vec::new();
        within("stderr to end", async {
            while let Some(line) = self.lines.recv().await {
                lines.push(line);
            }
        })
        .await;
        assert_eq!(self.exit_code().await, Some(0));
        lines
    }

    /// Waits for the server to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        within("evsync to exit", self.child.wait())
            .await
            .expect("wait for evsync")
            .code()
    }
}
