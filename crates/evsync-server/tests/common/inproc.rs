//! An in-process server on an ephemeral loopback port.
#![allow(dead_code)]

use crate::common::within;
use evsync_server::{Server, ServerConfig, ServerHandle, StorageConfig};
use std::net::SocketAddr;
use std::path::Path;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Test clients that stop reading would make every shutdown wait for
/// their close answer; a short wait keeps the suite fast.
fn quick(mut config: ServerConfig) -> ServerConfig {
    config.close_timeout = std::time::Duration::from_millis(200);
    config
}

pub fn memory_config() -> ServerConfig {
    quick(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        StorageConfig::Memory,
    ))
}

pub fn sqlite_config(data_dir: &Path) -> ServerConfig {
    quick(ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        StorageConfig::Sqlite {
            data_dir: data_dir.to_path_buf(),
        },
    ))
}

pub async fn start(config: ServerConfig) -> TestServer {
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0, "the actual port is reported");
    let handle = server.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        handle,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    /// Starts a graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and waits until `run` returned.
    pub async fn shutdown(mut self) {
        self.trigger_shutdown();
        let task = self.task.take().unwrap();
        within("the server to stop", task)
            .await
            .expect("server task")
            .expect("server run");
    }
}
