//! Test kit: an in-process evsync server on an ephemeral port (restartable
//! on the same address and data), fast client configs, and bounded waits.
//!
//! Every wait awaits an event (an entry, a status change, a task's end);
//! timeouts only bound failures.
#![allow(dead_code)]

use evsync_client::{Backoff, Client, Config, DecryptedEntry, Identity, Subscription};
use evsync_server::{AuthConfig, Server, ServerConfig, StorageConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

fn config(listen: SocketAddr, data: &Path, auth: AuthConfig) -> ServerConfig {
    let mut config = ServerConfig::new(
        listen,
        StorageConfig::Sqlite {
            data_dir: data.to_path_buf(),
        },
    );
    config.auth = auth;
    config.close_timeout = Duration::from_millis(200);
    config
}

impl TestServer {
    /// A SQLite-backed server on 127.0.0.1:<free port> storing in `data`.
    pub async fn start(data: &Path) -> TestServer {
        Self::start_with(data, "127.0.0.1:0".parse().unwrap(), AuthConfig::open()).await
    }

    /// As [`TestServer::start`] with every tenant requiring `token`.
    pub async fn start_with_token(data: &Path, token: &str) -> TestServer {
        let auth = AuthConfig::new(Some(token), None, false).unwrap();
        Self::start_with(data, "127.0.0.1:0".parse().unwrap(), auth).await
    }

    pub async fn start_with(data: &Path, listen: SocketAddr, auth: AuthConfig) -> TestServer {
        let server = Server::bind(config(listen, data, auth))
            .await
            .expect("bind");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            data: data.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The endpoint of `tenant`.
    pub fn url(&self, tenant: &str) -> String {
        format!("ws://{}/event-log/{tenant}", self.addr)
    }

    /// Shuts down gracefully (sockets closed with 1001) and waits for it.
    pub async fn stop(mut self) -> (SocketAddr, PathBuf) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        within("the server to stop", task)
            .await
            .expect("server task")
            .expect("server run");
        (self.addr, self.data.clone())
    }

    /// Starts a server again on the same address and data (same remoteId).
    pub async fn restart(self) -> TestServer {
        let (addr, data) = self.stop().await;
        TestServer::start_with(&data, addr, AuthConfig::open()).await
    }
}

/// A config that notices losses and reconnects fast, for tests.
pub fn fast(url: String, identity: Identity) -> Config {
    Config::new(url, identity)
        .with_ping(Some(Duration::from_millis(500)), Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5))
        .with_backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        })
}

pub async fn connect(url: String, identity: &Identity) -> Client {
    within("connect", Client::connect(fast(url, identity.clone())))
        .await
        .expect("connect")
}

/// The next entry, which must decrypt.
pub async fn next(sub: &mut Subscription) -> DecryptedEntry {
    within("an entry", sub.recv())
        .await
        .expect("subscription ended")
        .expect("entry decrypts")
}

/// Waits until `client` has had `n` connections with Hello.
pub async fn wait_sessions(client: &Client, n: u64) {
    let mut status = client.status();
    within(
        "a reconnect",
        status.wait_for(|s| s.sessions >= n && s.connected),
    )
    .await
    .expect("client alive");
}
