//! Carries out what the engine asks for: frames to send, sockets to close,
//! storage requests to run (feeding the answers back), until no action is
//! left; then saves each touched socket's subscriptions in its attachment
//! and sets the object's alarm to the engine's next deadline (`alarm`).
//!
//! Storage on D1 is asynchronous, and a Durable Object delivers the next
//! event while one awaits I/O. So only one pump runs at a time: an event
//! that arrives meanwhile feeds the engine and returns, and the running pump
//! picks up the actions it caused. The engine is never borrowed across an
//! `await`.

use crate::alarm::Alarm;
use crate::attachment::{self, Saved};
use crate::js;
use crate::log;
use crate::storage::Backend;
use evsync_core::access::Protocol;
use evsync_core::proto::event::Event;
use evsync_core::proto::tenant::TenantEngines;
use evsync_core::proto::v3::{Action, ConnId};
use evsync_core::storage::{StorageOp, StorageResponse};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use worker::{SqlStorage, Storage, WebSocket};

/// The in-memory half of a tenant's Durable Object, created when the first
/// event needs it (and again after hibernation).
pub struct Live {
    pub tenant: String,
    /// The tenant's v3 and v4 engines.
    pub engine: TenantEngines,
    pub backend: Backend,
    /// Open sockets by connection id.
    pub sockets: HashMap<ConnId, WebSocket>,
    /// What was last saved in each socket's attachment.
    pub saved: HashMap<ConnId, Saved>,
    /// Connections whose subscriptions may have moved since the last save.
    pub touched: BTreeSet<ConnId>,
    /// The next connection id to hand out (above every restored one).
    pub next_conn: u64,
    pub debug: bool,
    /// Signed tokens minted before this (Unix ms) are refused: the
    /// tenant's stored revocation, read when the engine starts and raised
    /// by a revocation (which runs in this object, the tenant's only one).
    pub tokens_not_before: Option<u64>,
}

/// The engine's state, the single-pump guard and the timeout alarm.
#[derive(Default)]
pub struct Driver {
    pub live: RefCell<Option<Live>>,
    pumping: Cell<bool>,
    pub alarm: Alarm,
    /// When this object last committed a new entry (Unix ms), since it
    /// was created (in memory only: storing it would cost a write per
    /// commit). The tenant's only writer is this object, so it sees every
    /// commit while it is awake.
    pub last_write_ms: Cell<Option<u64>>,
    /// The engine's appends that succeeded since this object was created
    /// (in memory, as `last_write_ms`): with the writes that wait behind
    /// one (see `drain`), fewer than the `WriteEntries` they stored.
    pub appends: Cell<u64>,
    /// Raised by [`Driver::stop`]: which engine a storage answer is for.
    generation: Cell<u64>,
}

/// How many 10 ms ticks [`Driver::settle`] waits at most (30 s).
const SETTLE_TICKS: u32 = 3_000;

enum Step {
    Done,
    Storage(Backend, evsync_core::storage::StorageRequest),
    Continue,
}

impl Driver {
    /// True once the engine exists.
    pub fn is_live(&self) -> bool {
        self.live.borrow().is_some()
    }

    /// Runs `f` on the live state, if any.
    pub fn with<R>(&self, f: impl FnOnce(&mut Live) -> R) -> Option<R> {
        self.live.borrow_mut().as_mut().map(f)
    }

    /// Stops the engine (an operator deletes or replaces the tenant): its
    /// state is dropped, so no new storage work starts, and the answer to
    /// work it started is dropped too; the next event that needs an engine
    /// creates one on what is then stored.
    pub fn stop(&self) {
        self.live.borrow_mut().take();
        self.generation.set(self.generation.get() + 1);
        self.last_write_ms.set(None);
        self.appends.set(0);
    }

    /// Waits until no pump runs, so that storage work already started (a
    /// D1 append awaiting its batch) has finished before an operator's
    /// change; at most [`SETTLE_TICKS`] ticks of 10 ms.
    pub async fn settle(&self) -> Result<(), String> {
        for _ in 0..SETTLE_TICKS {
            if !self.pumping.get() {
                return Ok(());
            }
            worker::Delay::from(Duration::from_millis(10)).await;
        }
        Err("the tenant's storage work in flight did not finish within 30 s".into())
    }

    /// Drains the engine's actions, saves positions and syncs the alarm
    /// (see the module docs).
    pub async fn pump(&self, storage: &Storage) {
        if self.pumping.replace(true) {
            return;
        }
        let sql = storage.sql();
        loop {
            self.drain().await;
            self.with(|live| save_positions(live, &sql));
            let deadline = self.with(|live| live.engine.poll_timeout()).flatten();
            // Setting the alarm awaits storage, and events that arrive
            // meanwhile only feed the engine: drain again after it.
            if !self.alarm.sync(storage, deadline).await {
                break;
            }
        }
        self.pumping.set(false);
    }

    /// Runs actions until the engine has none left.
    async fn drain(&self) {
        loop {
            match self.step() {
                Step::Done => break,
                Step::Continue => {}
                Step::Storage(backend, request) => {
                    // The engine that asked may be stopped while this
                    // awaits (an operator's delete or import): its answer
                    // must not reach the next engine, whose request ids
                    // start over.
                    let generation = self.generation.get();
                    // Let messages that already arrived run first (one
                    // timer tick): each is its own event, which feeds the
                    // engine and returns while this pump awaits.
                    // - Before a read: DO SQL answers synchronously, so
                    //   without this a catch-up always goes out before the
                    //   Ack of the empty upload Effect sends right after
                    //   RequestChanges; the native server (storage on
                    //   another thread) acks first. Effect's client keeps a
                    //   write made before that Ack local until its next
                    //   write (docs/effect-client-notes.md #3), so the Ack
                    //   should come as early as it can.
                    // - Before an append: the writes that arrived meanwhile
                    //   queue behind it in the engine and go out as the
                    //   next append, in this same event: one transaction
                    //   (one commit) for the burst instead of one per
                    //   message, the Durable Object's group commit.
                    if matches!(
                        request.op,
                        StorageOp::Read { .. }
                            | StorageOp::ReadBatches { .. }
                            | StorageOp::Append(_)
                            | StorageOp::AppendBatches(_)
                    ) {
                        worker::Delay::from(Duration::ZERO).await;
                        if self.generation.get() != generation {
                            continue;
                        }
                    }
                    let response = backend.execute(&request).await;
                    if self.generation.get() != generation {
                        continue;
                    }
                    if matches!(
                        &response,
                        StorageResponse::Appended { result: Ok(_), .. }
                            | StorageResponse::BatchesAppended { result: Ok(_), .. }
                    ) {
                        self.appends.set(self.appends.get() + 1);
                    }
                    let stored = match &response {
                        StorageResponse::Appended {
                            result: Ok(out), ..
                        } => out.iter().flatten().any(|a| a.inserted),
                        StorageResponse::BatchesAppended {
                            result: Ok(out), ..
                        } => out.iter().any(|a| a.stored_at.is_some()),
                        _ => false,
                    };
                    if stored {
                        self.last_write_ms.set(Some(js::now_ms()));
                    }
                    self.with(|live| live.engine.handle_storage_response(response));
                }
            }
        }
    }

    /// Carries out one action, unless it is storage work (which the caller
    /// awaits without holding the engine).
    fn step(&self) -> Step {
        let mut guard = self.live.borrow_mut();
        let Some(live) = guard.as_mut() else {
            return Step::Done;
        };
        log_events(live);
        let Some(action) = live.engine.poll_action() else {
            return Step::Done;
        };
        match action {
            Action::Send { conn, frame } => {
                let sent = live.sockets.get(&conn).map(|ws| ws.send_with_bytes(&frame));
                match sent {
                    Some(Ok(())) => {
                        live.engine.handle_sent(conn, frame.len());
                        live.touched.insert(conn);
                    }
                    // The socket is gone or closing: forget the connection.
                    Some(Err(_)) => {
                        live.sockets.remove(&conn);
                        live.saved.remove(&conn);
                        live.engine.handle_close(conn);
                    }
                    None => live.engine.handle_close(conn),
                }
            }
            Action::Close { conn, code, reason } => {
                if live.debug {
                    log::info!(
                        "closing socket",
                        tenant = live.tenant,
                        conn = conn.0,
                        code = code,
                        reason = reason
                    );
                }
                live.saved.remove(&conn);
                live.touched.remove(&conn);
                if let Some(ws) = live.sockets.remove(&conn) {
                    let _ = ws.close(Some(code), Some(reason));
                }
            }
            Action::Storage(request) => return Step::Storage(live.backend.clone(), request),
        }
        Step::Continue
    }
}

/// Writes the subscriptions of every touched socket whose positions moved.
fn save_positions(live: &mut Live, sql: &SqlStorage) {
    for conn in std::mem::take(&mut live.touched) {
        let Some(ws) = live.sockets.get(&conn) else {
            continue;
        };
        let saved = match live.engine.protocol_of(conn) {
            Protocol::V3 => Saved::V3(live.engine.v3().subscription_positions(conn)),
            Protocol::V4 | Protocol::V4Unencrypted => match live.engine.v4().saved_session(conn) {
                Some(session) => Saved::V4(session),
                None => continue,
            },
        };
        if live.saved.get(&conn) == Some(&saved) {
            continue;
        }
        let grant = live.engine.grant(conn);
        match attachment::save(sql, ws, conn, &grant, &saved) {
            Ok(()) => {
                live.saved.insert(conn, saved);
            }
            Err(err) => log::error!(
                "cannot save the subscriptions",
                tenant = live.tenant,
                conn = conn.0,
                error = err
            ),
        }
    }
}

/// Logs the engine's events: requests only with SYNC_DEBUG (the engine
/// records them only then), closes and storage failures always.
fn log_events(live: &mut Live) {
    while let Some(event) = live.engine.poll_event() {
        match event {
            Event::Request { conn, line } => log::info!(
                "request",
                tenant = live.tenant,
                conn = conn.0,
                protocol = line.protocol,
                tag = line.tag,
                id = line.id,
                public_key = line.public_key,
                store_id = line.store_id,
                batches = line.batches,
                entries = line.entries,
                start_sequence = line.start_sequence,
                part = line.part,
                peers = live.engine.connection_count()
            ),
            Event::Closing { conn, code, reason } => log::warning!(
                "closing connection",
                tenant = live.tenant,
                conn = conn.0,
                code = code,
                reason = reason
            ),
            Event::StorageFailed { message } => {
                log::error!("storage failed", tenant = live.tenant, error = message)
            }
        }
    }
}

/// The engine's clock: wall time in milliseconds.
pub fn now() -> evsync_core::time::Timestamp {
    evsync_core::time::Timestamp(js::now_ms())
}
