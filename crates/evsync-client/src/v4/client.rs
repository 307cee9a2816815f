//! The v4 replica: a handle ([`Client`]) and the task behind it, which
//! keeps one authenticated connection, reconnects with backoff, resumes the
//! `Changes` stream from its cursor, re-sends unacknowledged writes, pings
//! every 5 s and re-authenticates when the server answers `Forbidden`.

use crate::client::Subscription;
use crate::config::Config;
use crate::connection::ConnectTimings;
use crate::entry::{Entry, EntryId};
use crate::error::{EntryError, Error};
use crate::outcome::{DecryptedEntry, Status, WriteReceipt};
use crate::state::SyncState;
use crate::v4::batch;
use crate::v4::connection::{
    self, CHANGES, Conn, Opened, WRITE_CHUNKED, WRITE_SINGLE, decode_error, failure, is_forbidden,
    request,
};
use crate::v4::keys::Keys;
use bytes::Bytes;
use evsync_core::proto::v4::{
    self as proto, CHUNK_SIZE, ChangesPayload, ChangesValue, ChunkedMessage, EncryptedRemoteBatch,
    Exit, FromServer, RequestId, WriteAck, WriteEntries, WriteExit, WriteSinglePayload,
};
use evsync_core::wire::{RemoteId, Sequence};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

/// How often a v4 client pings (Effect's RpcClient default).
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Consecutive `Forbidden` answers after which the connection is dropped
/// (Effect retries a refused request 5 times).
const MAX_FORBIDDEN: u32 = 5;

/// The largest Changes value reassembled from `Chunked` pieces.
const MAX_REASSEMBLED: usize = 64 * 1024 * 1024;

/// A replica of one (identity, storeId) on an Effect v4 eventlog server
/// (evsync's `/v4/event-log/<tenant>`, or Effect's own
/// `EventLogServerEncrypted`). Cloning gives another handle to the same
/// connection; it ends when [`Client::close`] is called or every handle is
/// dropped.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    keys: Arc<Keys>,
    store_id: String,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    timings: ConnectTimings,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

enum Command {
    Write(PendingWrite),
    Subscribe(mpsc::UnboundedSender<Result<DecryptedEntry, EntryError>>),
    Close,
}

/// A write not yet acknowledged: the encoded `WriteEntries` frame, sent as
/// one `WriteSingle` or as `WriteChunked` pieces.
struct PendingWrite {
    entry_ids: Vec<EntryId>,
    frame: Bytes,
    reply: oneshot::Sender<Result<Vec<WriteReceipt>, Error>>,
    /// Requests of the current connection still unanswered.
    requests: BTreeSet<i64>,
    acks: Vec<WriteAck>,
}

impl Client {
    /// Connects, says Hello and authenticates as `config.identity` for the
    /// store `store_id` (Effect's default is `"default"`).
    ///
    /// Fails if this first attempt fails; later losses are retried forever
    /// with backoff and show in [`Client::status`]. `config.url` is the
    /// v4 endpoint, e.g. `ws://127.0.0.1:8787/v4/event-log/<tenant>`;
    /// `config.ping_interval` is not used (v4 pings every 5 s), a missing
    /// answer for `config.ping_timeout` drops the connection.
    pub async fn connect(config: Config, store_id: impl Into<String>) -> Result<Client, Error> {
        let config = Arc::new(config);
        let keys = Arc::new(Keys::derive(&config.identity));
        let store_id = store_id.into();
        let state = config.state.load()?;
        let ids = Arc::new(AtomicI64::new(1));
        let opened = connection::open(&config, &keys, &ids).await?;
        let timings = opened.timings;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status {
            connected: true,
            remote_id: Some(opened.remote_id),
            sessions: 1,
            ..Status::default()
        });
        let driver = Driver {
            config: config.clone(),
            keys: keys.clone(),
            store_id: store_id.clone(),
            state_key: format!("v4:{}:{store_id}", keys.public_key()),
            commands: command_rx,
            status: status_tx,
            state,
            state_dirty: false,
            ids,
            chunk_ids: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            subscribers: Vec::new(),
            subscribed: false,
            start_override: config.start_sequence,
            remote: None,
            next: 0,
            own: BTreeSet::new(),
        };
        let task = tokio::spawn(driver.run(opened));
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                keys,
                store_id,
                commands,
                status,
                timings,
                task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// How long the first connection took: the WebSocket, then Hello and
    /// Authenticate.
    pub fn connect_timings(&self) -> ConnectTimings {
        self.inner.timings
    }

    /// The configuration this client runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The identity's derived keys.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// The store this client writes to and follows.
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// A watch of the connection state.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// Appends one event and waits for its ack. `payload` is the event's
    /// SchemaBinary payload frame (what `Event.payloadSchemaBinary`
    /// encodes), opaque here. The entry travels alone in a batch under a
    /// fresh iv. Retried on the next connection until acknowledged (the
    /// server stores an entry id once).
    pub async fn write(
        &self,
        event: impl Into<String>,
        primary_key: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Result<WriteReceipt, Error> {
        let entry = Entry {
            id: EntryId::new_v7(),
            event: event.into(),
            primary_key: primary_key.into(),
            payload: payload.into(),
        };
        let mut receipts = self.write_entries(vec![entry]).await?;
        Ok(receipts.remove(0))
    }

    /// Appends entries in one request, packed into batches as Effect does
    /// (≤ 100 entries, ≤ 256 KiB of payload, each under its own iv), and
    /// waits for their acks: one receipt per entry, in order.
    pub async fn write_entries(&self, entries: Vec<Entry>) -> Result<Vec<WriteReceipt>, Error> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.inner.keys.encryption_key();
        let store = &self.inner.store_id;
        let batches = batch::to_batches(&entries)
            .into_iter()
            .map(|b| batch::encrypt(key, store, b))
            .collect();
        let frame = proto::encode(&WriteEntries {
            store_id: store.clone(),
            batches,
            public_key: self.inner.keys.public_key().to_owned(),
        });
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Write(PendingWrite {
                entry_ids: entries.iter().map(|e| e.id).collect(),
                frame: Bytes::from(frame),
                reply,
                requests: BTreeSet::new(),
                acks: Vec::new(),
            }))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Starts receiving the store's entries written by others, decrypted,
    /// in sequence order, each once. The first call opens the `Changes`
    /// stream (from the cursor: the state file's, `Config::start_sequence`
    /// or the server's first sequence).
    pub fn subscribe(&self) -> Result<Subscription, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .commands
            .send(Command::Subscribe(tx))
            .map_err(|_| Error::Closed)?;
        Ok(Subscription { rx })
    }

    /// Closes the connection and waits for the task to end.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close);
        let task = self.inner.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

enum End {
    Closed,
    Lost(Error),
}

struct Driver {
    config: Arc<Config>,
    keys: Arc<Keys>,
    store_id: String,
    /// Where the cursor lives in the state: `v4:<publicKey>:<storeId>`.
    state_key: String,
    commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<Status>,
    state: SyncState,
    state_dirty: bool,
    /// Request ids, across connections.
    ids: Arc<AtomicI64>,
    /// Ids of chunked messages.
    chunk_ids: i64,
    next_write: u64,
    pending: BTreeMap<u64, PendingWrite>,
    subscribers: Vec<mpsc::UnboundedSender<Result<DecryptedEntry, EntryError>>>,
    subscribed: bool,
    start_override: Option<Sequence>,
    remote: Option<RemoteId>,
    /// The next sequence wanted (Effect's `nextRemoteSequence`).
    next: Sequence,
    /// Sequences of our acknowledged writes at or after `next`.
    own: BTreeSet<Sequence>,
}

/// One connection's stream state.
#[derive(Default)]
struct Session {
    /// The request id of the open `Changes` stream.
    changes: Option<i64>,
    /// `Chunked` values being reassembled, by id.
    parts: HashMap<i64, Vec<Option<Bytes>>>,
    /// Request id → pending write.
    requests: HashMap<i64, u64>,
    /// `Forbidden` answers since the last successful authentication.
    forbidden: u32,
}

impl Driver {
    fn next_id(&self) -> i64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    async fn run(mut self, first: Opened) {
        let mut next = Some(first);
        let mut attempt = 0u32;
        loop {
            let opened = match next.take() {
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
                    warn!(%error, "v4 connection lost; reconnecting");
                    self.status.send_modify(|s| {
                        s.connected = false;
                        s.last_error = Some(error.to_string());
                    });
                }
            }
        }
        self.shutdown();
    }

    async fn reconnect(&mut self, attempt: &mut u32) -> Option<Opened> {
        loop {
            let delay = self.config.backoff.delay(*attempt);
            *attempt = attempt.saturating_add(1);
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.commands.recv() => if !self.offline_command(cmd) { return None },
                }
            }
            let (config, keys, ids) = (self.config.clone(), self.keys.clone(), self.ids.clone());
            let open = async move { connection::open(&config, &keys, &ids).await };
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
                    warn!(%error, attempt = *attempt, "v4 reconnect failed");
                    self.status
                        .send_modify(|s| s.last_error = Some(error.to_string()));
                }
            }
        }
    }

    fn offline_command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            None | Some(Command::Close) => false,
            Some(Command::Write(write)) => {
                let key = self.next_write;
                self.next_write += 1;
                self.pending.insert(key, write);
                true
            }
            Some(Command::Subscribe(tx)) => {
                self.subscribers.push(tx);
                self.subscribed = true;
                true
            }
        }
    }

    /// Sets the cursor for a connection to `remote_id`.
    fn enter_remote(&mut self, remote_id: RemoteId, first_sequence: Sequence) {
        if self.remote != Some(remote_id) {
            if self.remote.is_some() {
                warn!("the server has a new remoteId: its sequences start over");
            }
            self.own.clear();
            self.remote = Some(remote_id);
        }
        if let Some(n) = self.start_override.take() {
            self.state.set(&remote_id, &self.state_key, n);
            self.state_dirty = true;
        }
        self.next = self
            .state
            .last_sequence(&remote_id, &self.state_key)
            .max(first_sequence);
    }

    async fn session(&mut self, opened: Opened) -> End {
        let Opened {
            mut conn,
            remote_id,
            first_sequence,
            timings,
        } = opened;
        self.enter_remote(remote_id, first_sequence);
        info!(
            remote_id = %remote_id.to_uuid_string(),
            websocket_ms = timings.websocket.as_millis() as u64,
            auth_ms = timings.hello.as_millis() as u64,
            "v4 connected"
        );
        let mut session = Session::default();
        if let Err(e) = self.resume(&mut conn, &mut session).await {
            return End::Lost(e);
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let ping_timeout = self.config.ping_timeout;
        let mut silent_since: Option<Instant> = None;
        let end = loop {
            let deadline = silent_since
                .map(|at| at + ping_timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = ping.tick() => {
                    silent_since.get_or_insert_with(Instant::now);
                    if let Err(e) = conn.ping().await {
                        break End::Lost(e);
                    }
                }
                _ = tokio::time::sleep_until(deadline), if silent_since.is_some() => {
                    break End::Lost(Error::Timeout { what: "Pong", after: ping_timeout });
                }
                cmd = self.commands.recv() => {
                    match self.online_command(cmd, &mut conn, &mut session).await {
                        Ok(true) => {}
                        Ok(false) => break End::Closed,
                        Err(e) => break End::Lost(e),
                    }
                }
                msg = conn.recv() => {
                    // Any frame shows the connection is alive.
                    silent_since = None;
                    let result = match msg {
                        Ok(msg) => self.on_message(msg, &mut conn, &mut session, remote_id).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        break End::Lost(e);
                    }
                }
            }
        };
        self.save_state();
        if matches!(end, End::Closed) {
            conn.close().await;
        }
        end
    }

    /// On a (re)authenticated connection: open the Changes stream again
    /// and re-send every unacknowledged write.
    async fn resume(&mut self, conn: &mut Conn, session: &mut Session) -> Result<(), Error> {
        session.parts.clear();
        if self.subscribed {
            self.request_changes(conn, session).await?;
        }
        let keys: Vec<u64> = self.pending.keys().copied().collect();
        for key in keys {
            self.send_write(key, conn, session).await?;
        }
        Ok(())
    }

    async fn request_changes(
        &mut self,
        conn: &mut Conn,
        session: &mut Session,
    ) -> Result<(), Error> {
        let id = self.next_id();
        session.changes = Some(id);
        debug!(start_sequence = self.next, "requesting v4 changes");
        let payload = proto::encode(&ChangesPayload {
            store_id: self.store_id.clone(),
            start_sequence: self.next,
            public_key: self.keys.public_key().to_owned(),
        });
        conn.send(&[request(id, CHANGES, payload)]).await
    }

    /// Sends (or re-sends) pending write `key`: one `WriteSingle`, or one
    /// `WriteChunked` request per 512,000-byte piece.
    async fn send_write(
        &mut self,
        key: u64,
        conn: &mut Conn,
        session: &mut Session,
    ) -> Result<(), Error> {
        let Some(write) = self.pending.get(&key) else {
            return Ok(());
        };
        let frame = write.frame.clone();
        let mut frames = Vec::new();
        let mut requests = BTreeSet::new();
        if frame.len() <= CHUNK_SIZE {
            let id = self.next_id();
            let payload = proto::encode(&WriteSinglePayload { data: frame });
            frames.push(request(id, WRITE_SINGLE, payload));
            requests.insert(id);
        } else {
            let chunk_id = self.chunk_ids;
            self.chunk_ids += 1;
            let total = frame.len().div_ceil(CHUNK_SIZE) as u64;
            for (index, start) in (0..frame.len()).step_by(CHUNK_SIZE).enumerate() {
                let id = self.next_id();
                let piece = ChunkedMessage {
                    id: chunk_id,
                    index: index as u64,
                    total,
                    data: frame.slice(start..(start + CHUNK_SIZE).min(frame.len())),
                };
                frames.push(request(id, WRITE_CHUNKED, proto::encode(&piece)));
                requests.insert(id);
            }
        }
        for id in &requests {
            session.requests.insert(*id, key);
        }
        if let Some(write) = self.pending.get_mut(&key) {
            write.requests = requests;
            write.acks.clear();
        }
        conn.send(&frames).await
    }

    async fn online_command(
        &mut self,
        cmd: Option<Command>,
        conn: &mut Conn,
        session: &mut Session,
    ) -> Result<bool, Error> {
        match cmd {
            None | Some(Command::Close) => Ok(false),
            Some(Command::Write(write)) => {
                let key = self.next_write;
                self.next_write += 1;
                self.pending.insert(key, write);
                self.send_write(key, conn, session).await?;
                Ok(true)
            }
            Some(Command::Subscribe(tx)) => {
                self.subscribers.push(tx);
                if !self.subscribed {
                    self.subscribed = true;
                    self.request_changes(conn, session).await?;
                }
                Ok(true)
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: FromServer,
        conn: &mut Conn,
        session: &mut Session,
        remote_id: RemoteId,
    ) -> Result<(), Error> {
        match msg {
            FromServer::Pong => Ok(()),
            FromServer::Defect { defect } => Err(Error::Protocol(format!(
                "the server sent a defect: {}",
                String::from_utf8_lossy(&defect)
            ))),
            FromServer::Chunk { request_id, values } => {
                if session.changes.map(RequestId::Number) != Some(request_id.clone()) {
                    debug!(?request_id, "chunk of no open stream");
                    return Ok(());
                }
                let values: Vec<ChangesValue> =
                    proto::decode(&values).map_err(|e| decode_error("Changes chunk", e))?;
                for value in values {
                    session.forbidden = 0;
                    if let Some(data) = reassemble(session, value)? {
                        self.on_changes(&data, remote_id)?;
                    }
                }
                self.save_state();
                conn.ack(request_id).await
            }
            FromServer::Exit { request_id, exit } => {
                let RequestId::Number(id) = request_id else {
                    return Ok(());
                };
                if session.changes == Some(id) {
                    session.changes = None;
                    let error = match proto::decode::<proto::ChangesExit>(&exit)
                        .map_err(|e| decode_error("Changes exit", e))?
                    {
                        Exit::Success(()) => Error::Protocol("the Changes stream ended".into()),
                        Exit::Failure(reasons) => failure(CHANGES, reasons),
                    };
                    if is_forbidden(&error) {
                        return self.reauthenticate(conn, session).await;
                    }
                    return Err(error);
                }
                if let Some(key) = session.requests.remove(&id) {
                    self.on_write_exit(key, id, &exit, conn, session, remote_id)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn on_write_exit(
        &mut self,
        key: u64,
        id: i64,
        exit: &Bytes,
        conn: &mut Conn,
        session: &mut Session,
        remote_id: RemoteId,
    ) -> Result<(), Error> {
        let Some(write) = self.pending.get_mut(&key) else {
            return Ok(());
        };
        if !write.requests.remove(&id) {
            return Ok(());
        }
        match proto::decode::<WriteExit>(exit).map_err(|e| decode_error("write exit", e))? {
            Exit::Success(acks) => {
                session.forbidden = 0;
                write.acks.extend(acks);
                if write.requests.is_empty() {
                    let write = self.pending.remove(&key).expect("present");
                    let result = self.receipts(&write, remote_id);
                    let _ = write.reply.send(result);
                }
                Ok(())
            }
            Exit::Failure(reasons) => {
                let error = failure(WRITE_SINGLE, reasons);
                if is_forbidden(&error) {
                    // Drop the other pieces' answers: the whole write goes
                    // again after authenticating.
                    for other in std::mem::take(&mut write.requests) {
                        session.requests.remove(&other);
                    }
                    return self.reauthenticate(conn, session).await;
                }
                for other in std::mem::take(&mut write.requests) {
                    session.requests.remove(&other);
                }
                let write = self.pending.remove(&key).expect("present");
                let _ = write.reply.send(Err(error));
                Ok(())
            }
        }
    }

    /// One receipt per written entry from the acks (matched by entry id),
    /// and the sequences recorded as ours.
    fn receipts(
        &mut self,
        write: &PendingWrite,
        remote_id: RemoteId,
    ) -> Result<Vec<WriteReceipt>, Error> {
        let mut receipts = Vec::with_capacity(write.entry_ids.len());
        for entry_id in &write.entry_ids {
            let Some(ack) = write
                .acks
                .iter()
                .find(|a| a.entry_id.as_ref() == entry_id.0)
            else {
                return Err(Error::Protocol(format!("no ack for entry {entry_id}")));
            };
            receipts.push(WriteReceipt {
                sequence: ack.sequence,
                entry_id: *entry_id,
                remote_id,
            });
            if self.subscribed && ack.sequence >= self.next {
                self.own.insert(ack.sequence);
            }
        }
        self.fold_own();
        Ok(receipts)
    }

    /// After a `Forbidden`: says Hello and authenticates again on this
    /// connection, then re-opens the Changes stream if it was refused and
    /// re-sends every unacknowledged write (Authenticate clears the
    /// server's partial chunked writes; a write that was stored meanwhile
    /// is acked again from where it is, never stored twice).
    async fn reauthenticate(
        &mut self,
        conn: &mut Conn,
        session: &mut Session,
    ) -> Result<(), Error> {
        session.forbidden += 1;
        if session.forbidden > MAX_FORBIDDEN {
            return Err(Error::Refused {
                code: "Forbidden".into(),
                message: format!("still forbidden after {MAX_FORBIDDEN} authentications"),
            });
        }
        info!("forbidden: authenticating again");
        let hello = conn.hello(&self.ids).await?;
        conn.authenticate(&self.keys, &hello, &self.ids).await?;
        if self.subscribed && session.changes.is_none() {
            self.request_changes(conn, session).await?;
        }
        let keys: Vec<u64> = self.pending.keys().copied().collect();
        for key in keys {
            self.send_write(key, conn, session).await?;
        }
        Ok(())
    }

    /// Delivers the batches of one Changes value.
    fn on_changes(&mut self, data: &Bytes, remote_id: RemoteId) -> Result<(), Error> {
        let batches: Vec<EncryptedRemoteBatch> =
            proto::decode(data).map_err(|e| decode_error("Changes batches", e))?;
        let pending: BTreeSet<EntryId> = self
            .pending
            .values()
            .flat_map(|w| w.entry_ids.iter().copied())
            .collect();
        for b in batches {
            let last = b.sequence + b.entry_ids.len() as u64 - 1;
            if last < self.next {
                continue;
            }
            match batch::decrypt(self.keys.encryption_key(), &self.store_id, &b) {
                Ok(entries) => {
                    for (j, entry) in entries.into_iter().enumerate() {
                        let sequence = b.sequence + j as u64;
                        if sequence < self.next {
                            continue;
                        }
                        self.next = sequence + 1;
                        if self.own.remove(&sequence) || pending.contains(&entry.id) {
                            continue;
                        }
                        let item = Ok(DecryptedEntry {
                            sequence,
                            remote_id,
                            created_at_millis: entry.id.created_at_millis(),
                            id: entry.id,
                            event: entry.event,
                            primary_key: entry.primary_key,
                            payload: entry.payload,
                        });
                        self.subscribers.retain(|s| s.send(item.clone()).is_ok());
                    }
                }
                Err(source) => {
                    warn!(%source, sequence = b.sequence, "undecryptable batch");
                    let item = Err(EntryError::Batch {
                        sequence: b.sequence,
                        source,
                    });
                    self.next = last + 1;
                    self.subscribers.retain(|s| s.send(item.clone()).is_ok());
                }
            }
        }
        self.own = self.own.split_off(&self.next);
        self.fold_own();
        self.record_cursor();
        Ok(())
    }

    /// Moves the cursor over our own writes right after it.
    fn fold_own(&mut self) {
        while self.own.remove(&self.next) {
            self.next += 1;
        }
        self.record_cursor();
    }

    fn record_cursor(&mut self) {
        if let Some(remote) = self.remote
            && self.state.last_sequence(&remote, &self.state_key) < self.next
        {
            self.state.advance(&remote, &self.state_key, self.next);
            self.state_dirty = true;
        }
    }

    fn save_state(&mut self) {
        if !self.state_dirty {
            return;
        }
        match self.config.state.save(&self.state) {
            Ok(()) => self.state_dirty = false,
            Err(error) => warn!(%error, "could not save the sync state"),
        }
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
        info!("v4 client closed");
    }
}

/// The data of a Changes value once whole: a `Single`'s at once, a
/// `Chunked` one's when its last piece arrives.
fn reassemble(session: &mut Session, value: ChangesValue) -> Result<Option<Bytes>, Error> {
    let piece = match value {
        ChangesValue::Single { data } => return Ok(Some(data)),
        ChangesValue::Chunked(piece) => piece,
    };
    let total = piece.total as usize;
    if total.saturating_mul(CHUNK_SIZE) > MAX_REASSEMBLED + CHUNK_SIZE {
        return Err(Error::Protocol(format!(
            "a Changes value of {total} pieces (over {MAX_REASSEMBLED} bytes)"
        )));
    }
    let parts = session
        .parts
        .entry(piece.id)
        .or_insert_with(|| vec![None; total]);
    if parts.len() != total {
        return Err(Error::Protocol(format!(
            "Changes value {} changed its piece count",
            piece.id
        )));
    }
    parts[piece.index as usize].get_or_insert(piece.data);
    if parts.iter().any(Option::is_none) {
        return Ok(None);
    }
    let parts = session.parts.remove(&piece.id).expect("present");
    let mut whole = Vec::with_capacity(parts.iter().flatten().map(Bytes::len).sum());
    for part in parts.into_iter().flatten() {
        whole.extend_from_slice(&part);
    }
    Ok(Some(Bytes::from(whole)))
}
