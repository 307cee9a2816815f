//! `evsync serve` as a child process of a harness command that starts its
//! own server (`crash-test`, `hostile`): the command line with a clean
//! environment, a free port, a scratch data directory, and waiting for the
//! startup line.

use crate::common::{Result, err, now_ns};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

/// Stderr lines of a started server, after its startup line.
pub type ServerLines = Lines<BufReader<ChildStderr>>;

/// `bin serve --listen 127.0.0.1:PORT --data DATA`, with no `SYNC_*`
/// variable of the caller's environment (a harness checks what it
/// configured, never what the shell happened to set), stderr piped, the
/// child killed when dropped. The caller adds its own flags.
pub fn serve_command(bin: &Path, port: u16, data: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SYNC_") {
            cmd.env_remove(name);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Spawns `cmd` and waits (30 s at most) for the server's startup line;
/// `each` sees every stderr line up to and including it. Returns the child
/// and its further stderr lines, which the caller must keep draining.
pub async fn spawn_listening(
    cmd: &mut Command,
    mut each: impl FnMut(&str),
) -> Result<(Child, ServerLines)> {
    let mut child = cmd.spawn()?;
    let stderr = child.stderr.take().ok_or_else(|| err("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            each(&line);
            if line.contains("listening on ") {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await
    .map_err(|_| err("the server did not start within 30 s"))??;
    if !listening {
        return Err(err("the server exited before listening (port taken?)"));
    }
    Ok((child, lines))
}

/// A loopback port free right now (the server binds it a moment later).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A new scratch directory `evsync-<what>-<pid>-<ns>` under the temp dir.
pub fn scratch_dir(what: &str) -> Result<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("evsync-{what}-{}-{}", std::process::id(), now_ns()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `bin`, or this executable when none is given.
pub fn evsync_bin(bin: Option<&Path>) -> Result<PathBuf> {
    Ok(match bin {
        Some(bin) => bin.to_path_buf(),
        None => std::env::current_exe()?,
    })
}
