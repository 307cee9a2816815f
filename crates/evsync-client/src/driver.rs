//! The background task behind a [`Client`](crate::Client): one connection
//! at a time, reconnected with backoff after any loss, and the bookkeeping
//! that makes losses invisible to callers:
//! - writes wait in `pending` until their `Ack` and are re-sent (same bytes,
//!   same entry id) on every new connection until then;
//! - delivered entries advance a position per (remoteId, publicKey); a new
//!   connection asks for changes from there and drops what it has seen, so
//!   every entry is delivered once, in order;
//! - a `Ping` every interval; a missing `Pong` drops the connection.

use crate::config::Config;
use crate::connection::{self, Inbound, Opened};
use crate::crypto;
use crate::entry::{Entry, EntryId};
use crate::error::{EntryError, Error};
use crate::outcome::{DecryptedEntry, Status, WriteReceipt};
use crate::state::SyncState;
use bytes::Bytes;
use evsync_core::wire::{MessageId, RemoteEntry, RemoteId, Request, Response, Sequence};
use futures_util::{SinkExt as _, StreamExt as _};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

/// What a [`Client`](crate::Client) handle asks of the task.
pub(crate) enum Command {
    Write(PendingWrite),
    Subscribe(mpsc::UnboundedSender<Result<DecryptedEntry, EntryError>>),
    Close,
}

/// A write not yet acknowledged, kept ready to (re)send.
pub(crate) struct PendingWrite {
    pub id: MessageId,
    pub entry_id: EntryId,
    /// The encoded `WriteEntries` (or its chunks).
    pub frames: Vec<Bytes>,
    pub reply: oneshot::Sender<Result<WriteReceipt, Error>>,
}

/// How a connection ended.
enum End {
    /// The client was closed: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost(Error),
}

type Sink = futures_util::stream::SplitSink<connection::Ws, Message>;

pub(crate) struct Driver {
    config: Arc<Config>,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<Status>,
    state: SyncState,
    ids: Arc<AtomicI64>,
    pending: BTreeMap<MessageId, PendingWrite>,
    subscribers: Vec<mpsc::UnboundedSender<Result<DecryptedEntry, EntryError>>>,
    /// `RequestChanges` is sent on every connection once this is set.
    subscribed: bool,
    /// `Config::start_sequence`, applied to the first server seen.
    start_override: Option<Sequence>,
    /// The server of the current (or last) connection.
    remote: Option<RemoteId>,
    /// The highest sequence seen on `remote` for our publicKey.
    last_seen: Sequence,
    /// Sequences of our acknowledged writes not yet passed by `last_seen`:
    /// a catch-up after a reconnect sends them back, and they are not
    /// delivered to subscribers.
    own_sequences: BTreeSet<Sequence>,
    /// `state` has changes not yet saved.
    state_dirty: bool,
}

impl Driver {
    pub(crate) fn new(
        config: Arc<Config>,
        commands: mpsc::UnboundedReceiver<Command>,
        status: watch::Sender<Status>,
        state: SyncState,
        ids: Arc<AtomicI64>,
    ) -> Self {
        let start_override = config.start_sequence;
        Driver {
            config,
            commands,
            status,
            state,
            ids,
            pending: BTreeMap::new(),
            subscribers: Vec::new(),
            subscribed: false,
            start_override,
            remote: None,
            last_seen: 0,
            own_sequences: BTreeSet::new(),
            state_dirty: false,
        }
    }

    fn public_key(&self) -> &str {
        self.config.identity.public_key()
    }

    fn next_id(&self) -> MessageId {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs until closed, starting with the connection `Client::connect`
    /// opened.
    pub(crate) async fn run(mut self, first: Opened) {
        let mut next = Some(first);
        // Reconnect attempts since the last connection that stayed up for
        // a while: a server that accepts and drops at once (crash loop,
        // overload) keeps getting longer delays instead of 10 a second.
        let mut attempt = 0u32;
        loop {
            let opened = match next.take() {
                // `Client::connect` published this one's status already.
                Some(opened) => opened,
                None => match self.reconnect(&mut attempt).await {
                    Some(opened) => {
                        self.status.send_modify(|s| {
                            s.connected = true;
                            s.remote_id = Some(opened.remote_id);
                            s.sessions += 1;
                        });
                        opened
                    }
                    None => break,
                },
            };
            let started = Instant::now();
            let end = self.session(opened).await;
            if started.elapsed() >= self.config.backoff.max {
                attempt = 0;
            }
            match end {
                End::Closed => break,
                End::Lost(error) => {
                    warn!(%error, "connection lost; reconnecting");
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(error.to_string());
                    });
                }
            }
        }
        self.shutdown();
    }

    /// Waits out the backoff and connects, serving commands meanwhile.
    /// `None` when the client is closed first.
    async fn reconnect(&mut self, attempt: &mut u32) -> Option<Opened> {
        loop {
            let delay = self.config.backoff.delay(*attempt);
            *attempt = attempt.saturating_add(1);
            debug!(?delay, attempt = *attempt, "waiting before reconnecting");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.commands.recv() => if !self.offline_command(cmd) { return None },
                }
            }
            let config = self.config.clone();
            let open = async move { connection::open(&config).await };
            tokio::pin!(open);
            let result = loop {
                tokio::select! {
                    result = &mut open => break result,
                    cmd = self.commands.recv() => if !self.offline_command(cmd) { return None },
                }
            };
            match result {
                Ok(opened) => return Some(opened),
                Err(error) => {
                    warn!(%error, attempt = *attempt, "reconnect failed");
                    self.status
                        .send_modify(|s| s.last_error = Some(error.to_string()));
                }
            }
        }
    }

    /// Takes a command while disconnected; false when the client closes.
    fn offline_command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            None | Some(Command::Close) => false,
            Some(Command::Write(write)) => {
                self.pending.insert(write.id, write);
                true
            }
            Some(Command::Subscribe(tx)) => {
                self.subscribers.push(tx);
                self.subscribed = true;
                true
            }
        }
    }

    /// Drives one connection until it ends.
    async fn session(&mut self, opened: Opened) -> End {
        let Opened {
            ws,
            remote_id,
            mut inbound,
            timings,
        } = opened;
        self.enter_remote(remote_id);
        info!(
            remote_id = %remote_id.to_uuid_string(),
            websocket_ms = timings.websocket.as_millis() as u64,
            hello_ms = timings.hello.as_millis() as u64,
            "connected"
        );
        let (mut sink, mut stream) = ws.split();
        match self.resume(&mut sink).await {
            Ok(()) => {}
            Err(e) => return End::Lost(e),
        }

        let ping_timeout = self.config.ping_timeout;
        let mut ping_timer = self.config.ping_interval.map(|every| {
            let mut t = tokio::time::interval_at(Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let mut awaiting_pong: Option<(MessageId, Instant)> = None;

        let end = loop {
            let pong_deadline = awaiting_pong
                .map(|(_, at)| at)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = async { ping_timer.as_mut().expect("guarded").tick().await }, if ping_timer.is_some() => {
                    if awaiting_pong.is_none() {
                        let id = self.next_id();
                        awaiting_pong = Some((id, Instant::now() + ping_timeout));
                        if let Err(e) = send_request(&mut sink, &Request::Ping { id }).await {
                            break End::Lost(e);
                        }
                    }
                }
                _ = tokio::time::sleep_until(pong_deadline), if awaiting_pong.is_some() => {
                    break End::Lost(Error::Timeout { what: "Pong", after: ping_timeout });
                }
                cmd = self.commands.recv() => {
                    match self.online_command(cmd, &mut sink).await {
                        Ok(true) => {}
                        Ok(false) => break End::Closed,
                        Err(e) => break End::Lost(e),
                    }
                }
                msg = stream.next() => {
                    let msg = match msg {
                        None => break End::Lost(Error::ServerClosed { reason: String::new() }),
                        Some(Err(e)) => break End::Lost(e.into()),
                        Some(Ok(msg)) => msg,
                    };
                    match self.on_frame(msg, &mut inbound, remote_id, &mut awaiting_pong) {
                        Ok(()) => {}
                        Err(e) => break End::Lost(e),
                    }
                }
            }
        };
        if matches!(end, End::Closed) {
            // Best effort: tell the server, but never hang on it.
            let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
        }
        end
    }

    /// Sets the position for a (new) connection's server.
    fn enter_remote(&mut self, remote_id: RemoteId) {
        if let Some(n) = self.start_override.take() {
            let pk = self.config.identity.public_key().to_owned();
            self.state.set(&remote_id, &pk, n.saturating_sub(1));
        }
        if self.remote != Some(remote_id) {
            if self.remote.is_some() {
                warn!(
                    remote_id = %remote_id.to_uuid_string(),
                    "the server has a new remoteId: its sequences start over for this client"
                );
            }
            self.own_sequences.clear();
            self.remote = Some(remote_id);
        }
        self.last_seen = self.state.last_sequence(&remote_id, self.public_key());
    }

    /// On a new connection: subscribe again and re-send unacknowledged
    /// writes, oldest first.
    async fn resume(&mut self, sink: &mut Sink) -> Result<(), Error> {
        if self.subscribed {
            self.request_changes(sink).await?;
        }
        if !self.pending.is_empty() {
            debug!(
                count = self.pending.len(),
                "re-sending unacknowledged writes"
            );
        }
        for write in self.pending.values() {
            feed_frames(sink, &write.frames).await?;
        }
        sink.flush().await?;
        Ok(())
    }

    async fn request_changes(&mut self, sink: &mut Sink) -> Result<(), Error> {
        debug!(start_sequence = self.last_seen, "requesting changes");
        send_request(
            sink,
            &Request::RequestChanges {
                public_key: self.public_key().to_owned(),
                start_sequence: self.last_seen,
            },
        )
        .await
    }

    /// Takes a command while connected; false when the client closes.
    async fn online_command(
        &mut self,
        cmd: Option<Command>,
        sink: &mut Sink,
    ) -> Result<bool, Error> {
        match cmd {
            None | Some(Command::Close) => Ok(false),
            Some(Command::Write(write)) => {
                let frames = write.frames.clone();
                self.pending.insert(write.id, write);
                feed_frames(sink, &frames).await?;
                sink.flush().await?;
                Ok(true)
            }
            Some(Command::Subscribe(tx)) => {
                self.subscribers.push(tx);
                if !self.subscribed {
                    self.subscribed = true;
                    self.request_changes(sink).await?;
                }
                Ok(true)
            }
        }
    }

    fn on_frame(
        &mut self,
        msg: Message,
        inbound: &mut Inbound,
        remote_id: RemoteId,
        awaiting_pong: &mut Option<(MessageId, Instant)>,
    ) -> Result<(), Error> {
        let Some(response) = inbound.accept(msg)? else {
            return Ok(());
        };
        match response {
            Response::Hello { remote_id: again } => {
                if again != remote_id {
                    return Err(Error::Protocol(
                        "a second Hello with another remoteId on the same connection".into(),
                    ));
                }
            }
            Response::Pong { id } => {
                if awaiting_pong.is_some_and(|(want, _)| want == id) {
                    *awaiting_pong = None;
                }
            }
            Response::Ack {
                id,
                sequence_numbers,
            } => self.on_ack(id, sequence_numbers, remote_id),
            Response::Changes {
                public_key,
                entries,
            } => {
                if public_key == self.public_key() {
                    self.on_changes(entries, remote_id);
                } else {
                    debug!(%public_key, "ignoring changes of another log");
                }
            }
            Response::Chunked(_) => unreachable!("Inbound reassembles chunks"),
        }
        Ok(())
    }

    fn on_ack(&mut self, id: MessageId, sequences: Vec<Sequence>, remote_id: RemoteId) {
        let Some(write) = self.pending.remove(&id) else {
            debug!(id, "ack for no pending write (already answered)");
            return;
        };
        let result = match sequences.as_slice() {
            [sequence] => {
                // Only a subscribed client needs to recognise its writes in
                // its stream; entries written before the first subscribe()
                // are history like any other.
                if self.subscribed && *sequence > self.last_seen {
                    self.own_sequences.insert(*sequence);
                    self.fold_own_sequences();
                }
                Ok(WriteReceipt {
                    sequence: *sequence,
                    entry_id: write.entry_id,
                    remote_id,
                })
            }
            other => Err(Error::Protocol(format!(
                "Ack {id} has {} sequence numbers for one entry",
                other.len()
            ))),
        };
        let _ = write.reply.send(result);
    }

    fn on_changes(&mut self, entries: Vec<RemoteEntry>, remote_id: RemoteId) {
        let before = self.last_seen;
        for e in entries {
            if e.sequence <= self.last_seen {
                // Already seen: the start of a resumed subscription, or a
                // repeat.
                continue;
            }
            self.last_seen = e.sequence;
            if self.own_sequences.remove(&e.sequence) {
                continue;
            }
            let entry_id = EntryId::from_slice(&e.entry_id);
            if entry_id.is_some_and(|id| self.pending.values().any(|w| w.entry_id == id)) {
                // Our write committed before its Ack reached us (the
                // connection dropped); the re-sent write's Ack will come.
                continue;
            }
            let item = self.open_entry(&e, remote_id);
            if let Err(error) = &item {
                warn!(%error, "undecryptable entry");
            }
            self.subscribers.retain(|s| s.send(item.clone()).is_ok());
        }
        self.fold_own_sequences();
        if self.last_seen != before {
            self.own_sequences = self.own_sequences.split_off(&(self.last_seen + 1));
            let pk = self.config.identity.public_key().to_owned();
            self.state.advance(&remote_id, &pk, self.last_seen);
            self.state_dirty = true;
        }
        self.save_state();
    }

    /// Writes the positions to the state store if they changed.
    fn save_state(&mut self) {
        if !self.state_dirty {
            return;
        }
        match self.config.state.save(&self.state) {
            Ok(()) => self.state_dirty = false,
            Err(error) => warn!(%error, "could not save the sync state"),
        }
    }

    /// Moves `last_seen` over our own writes that directly follow it:
    /// nothing can sit between, and the server will not send them live, so
    /// without this a client that writes much more than it receives would
    /// remember every sequence it wrote.
    /// The position is advanced in memory (a reconnect resumes after these
    /// writes) and reaches the state file with the next batch or at close,
    /// not with an fsync per write.
    fn fold_own_sequences(&mut self) {
        let before = self.last_seen;
        while self.own_sequences.remove(&(self.last_seen + 1)) {
            self.last_seen += 1;
        }
        if self.last_seen != before
            && let Some(remote) = self.remote
        {
            let pk = self.config.identity.public_key().to_owned();
            self.state.advance(&remote, &pk, self.last_seen);
            self.state_dirty = true;
        }
    }

    fn open_entry(
        &self,
        e: &RemoteEntry,
        remote_id: RemoteId,
    ) -> Result<DecryptedEntry, EntryError> {
        let sequence = e.sequence;
        let plain = crypto::open(
            self.config.identity.private_key(),
            &e.iv,
            &e.encrypted_entry,
        )
        .map_err(|source| EntryError::Decrypt { sequence, source })?;
        let entry =
            Entry::decode(&plain).map_err(|source| EntryError::Decode { sequence, source })?;
        Ok(DecryptedEntry {
            sequence,
            remote_id,
            created_at_millis: entry.id.created_at_millis(),
            id: entry.id,
            event: entry.event,
            primary_key: entry.primary_key,
            payload: entry.payload,
        })
    }

    fn shutdown(&mut self) {
        for (_, write) in std::mem::take(&mut self.pending) {
            let _ = write.reply.send(Err(Error::Closed));
        }
        self.subscribers.clear();
        self.save_state();
        self.status.send_modify(|s| {
            s.connected = false;
            s.closed = true;
        });
        info!("client closed");
    }
}

async fn send_request(sink: &mut Sink, request: &Request) -> Result<(), Error> {
    let frames = connection::frames(request, &AtomicI64::new(0));
    debug_assert_eq!(frames.len(), 1, "control requests are never chunked");
    feed_frames(sink, &frames).await?;
    sink.flush().await?;
    Ok(())
}

async fn feed_frames(sink: &mut Sink, frames: &[Bytes]) -> Result<(), Error> {
    for frame in frames {
        sink.feed(Message::Binary(frame.clone())).await?;
    }
    Ok(())
}
