//! The public handle: connect, write, subscribe, watch the connection,
//! close. All network work happens in one background task (see `driver`);
//! the handle talks to it through channels, so it is cheap to clone and
//! safe to use from many tasks.

use crate::config::Config;
use crate::connection::{self, ConnectTimings};
use crate::crypto;
use crate::driver::{Command, Driver, PendingWrite};
use crate::entry::{Entry, EntryId};
use crate::error::{EntryError, Error};
pub use crate::outcome::{DecryptedEntry, Status, WriteReceipt};
use bytes::Bytes;
use evsync_core::wire::{EncryptedEntry, Request};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot, watch};

/// A replica's connection to an EventLogRemote server, kept alive across
/// network failures.
///
/// Cloning gives another handle to the same connection. The connection ends
/// when [`Client::close`] is called or every handle is dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    /// Request ids and chunk ids; shared so they never collide.
    ids: Arc<AtomicI64>,
    timings: ConnectTimings,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The entries of this client's log written by *others* (other
/// connections, other processes), in sequence order, each exactly once.
///
/// Entries this client writes once subscribed are not delivered back:
/// their [`WriteReceipt`] already tells where they went (and the server
/// omits a socket's own writes from its live stream). Entries it wrote
/// before its first [`Client::subscribe`] are history like any other and
/// are delivered. An entry that cannot be
/// decrypted or decoded arrives as an `Err` and the stream goes on. The
/// buffer is unbounded: a consumer must keep up.
pub struct Subscription {
    pub(crate) rx: mpsc::UnboundedReceiver<Result<DecryptedEntry, EntryError>>,
}

impl Subscription {
    /// The next entry; `None` once the client is closed.
    pub async fn recv(&mut self) -> Option<Result<DecryptedEntry, EntryError>> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Subscription {
    type Item = Result<DecryptedEntry, EntryError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Client {
    /// Connects and waits for the server's `Hello`.
    ///
    /// Fails if this first attempt fails (bad URL, refused token, nothing
    /// listening, no `Hello` within `connect_timeout`), so configuration
    /// mistakes surface at once. Once connected, any later loss is retried
    /// forever with backoff and is visible only through [`Client::status`].
    pub async fn connect(config: Config) -> Result<Client, Error> {
        let config = Arc::new(config);
        let state = config.state.load()?;
        let opened = connection::open(&config).await?;
        let timings = opened.timings;
        let (commands, command_rx) = mpsc::unbounded_channel();
        // The first connection is already up: say so before anyone looks.
        let (status_tx, status) = watch::channel(Status {
            connected: true,
            remote_id: Some(opened.remote_id),
            sessions: 1,
            ..Status::default()
        });
        let ids = Arc::new(AtomicI64::new(1));
        let driver = Driver::new(config.clone(), command_rx, status_tx, state, ids.clone());
        let task = tokio::spawn(driver.run(opened));
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                commands,
                status,
                ids,
                timings,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// How long the first connection took to open and to get `Hello`.
    pub fn connect_timings(&self) -> ConnectTimings {
        self.inner.timings
    }

    /// The configuration this client runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A watch of the connection state, e.g. to await a reconnect with
    /// `status.wait_for(|s| s.sessions >= 2)`.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Appends an event to the log and waits for the server's `Ack`.
    ///
    /// The entry is sealed under a fresh random iv and sent alone in its
    /// `WriteEntries` (never one iv for several entries, unlike Effect v3).
    /// Writes are pipelined: concurrent calls do not wait for each other's
    /// `Ack`. If the connection drops before the `Ack`, the same bytes are
    /// sent again after reconnecting; the server stores an entry id once,
    /// so a retried write is never duplicated. A write waits across
    /// reconnects for as long as the caller waits: bound it with
    /// `tokio::time::timeout` if needed.
    pub async fn write(
        &self,
        event: impl Into<String>,
        primary_key: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<WriteReceipt, Error> {
        self.write_entry(Entry {
            id: EntryId::new_v7(),
            event: event.into(),
            primary_key: primary_key.into(),
            payload: payload.into(),
        })
        .await
    }

    /// [`Client::write`] for an entry built by the caller (e.g. to choose
    /// its id).
    pub async fn write_entry(&self, entry: Entry) -> Result<WriteReceipt, Error> {
        let identity = &self.inner.config.identity;
        let (iv, sealed) = crypto::seal(identity.private_key(), &entry.encode());
        let id = self
            .inner
            .ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = Request::WriteEntries {
            public_key: identity.public_key().to_owned(),
            id,
            iv: Bytes::copy_from_slice(&iv),
            encrypted_entries: vec![EncryptedEntry {
                entry_id: Bytes::copy_from_slice(&entry.id.0),
                encrypted_entry: Bytes::from(sealed),
            }],
        };
        let frames = connection::frames(&request, &self.inner.ids);
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Write(PendingWrite {
                id,
                entry_id: entry.id,
                frames,
                reply,
            }))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Starts receiving the log's entries written by others.
    ///
    /// The first call subscribes on the server (`RequestChanges` from the
    /// last sequence seen, so a restarted client with a state file resumes
    /// where it stopped); later calls get the entries arriving from then on.
    pub fn subscribe(&self) -> Result<Subscription, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .commands
            .send(Command::Subscribe(tx))
            .map_err(|_| Error::Closed)?;
        Ok(Subscription { rx })
    }

    /// Closes the connection and waits for the background task to end.
    /// Pending writes fail with [`Error::Closed`]; subscriptions end.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close);
        let task = self.inner.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
