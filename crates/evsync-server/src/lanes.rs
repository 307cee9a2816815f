//! The two lanes of a loaded tenant's store, and how a request runs on
//! each backend.
//!
//! Appends go to the writer lane, reads to the reader lane. Each lane runs
//! one request at a time, in order; the two run concurrently, so a
//! catch-up read never waits behind a commit (the engine accepts a read
//! that did or did not see an append in flight, and keeps at most one
//! append in flight itself).
//!
//! - SQLite work blocks (an append waits for an fsync): it runs on tokio's
//!   blocking threads, each lane on a connection of its own that travels
//!   with the request and comes back in [`Done`].
//! - PostgreSQL work is a task on a pooled connection (the pool, not the
//!   lane, owns connections).
//!
//! Either way a request that panics still answers, with an error: a lane
//! left busy would stall its tenant for ever.

use evsync_core::storage::{StorageError, StorageOp, StorageRequest, StorageResponse};
use evsync_storage_postgres::PgStorage;
use evsync_storage_sqlite::SqliteStorage;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which lane a request runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneKind {
    Writer,
    Reader,
}

impl LaneKind {
    /// The lane of `op`.
    pub fn of(op: &StorageOp) -> LaneKind {
        match op {
            StorageOp::Append(_)
            | StorageOp::AppendBatches(_)
            | StorageOp::BindSigningKey { .. } => LaneKind::Writer,
            StorageOp::Read { .. } | StorageOp::ReadBatches { .. } => LaneKind::Reader,
        }
    }
}

/// A finished request. A SQLite lane's connection comes back with it
/// (`None` if the request panicked, or on PostgreSQL; a SQLite lane then
/// reopens on next use).
pub(crate) struct Done {
    pub lane: LaneKind,
    pub store: Option<SqliteStorage>,
    pub response: StorageResponse,
    /// From the start of the request's transaction to its end.
    pub took: Duration,
}

/// One lane: its queue, whether a request runs, and what the lane keeps
/// between requests (`C`: a SQLite connection, or nothing).
#[derive(Default)]
pub(crate) struct Lane<C> {
    busy: bool,
    queue: VecDeque<StorageRequest>,
    pub conn: C,
}

/// The writer and reader lanes of one tenant.
pub(crate) struct Lanes<C> {
    writer: Lane<C>,
    reader: Lane<C>,
}

impl<C> Lanes<C> {
    pub fn new(writer: C, reader: C) -> Self {
        let lane = |conn| Lane {
            busy: false,
            queue: VecDeque::new(),
            conn,
        };
        Lanes {
            writer: lane(writer),
            reader: lane(reader),
        }
    }

    fn get_mut(&mut self, kind: LaneKind) -> &mut Lane<C> {
        match kind {
            LaneKind::Writer => &mut self.writer,
            LaneKind::Reader => &mut self.reader,
        }
    }

    /// Queues `req` on its lane.
    pub fn push(&mut self, req: StorageRequest) -> LaneKind {
        let kind = LaneKind::of(&req.op);
        self.get_mut(kind).queue.push_back(req);
        kind
    }

    /// The next request of lane `kind` and the lane's connection, unless
    /// a request runs there already; the lane is busy from now on.
    pub fn take_next(&mut self, kind: LaneKind) -> Option<(StorageRequest, &mut C)> {
        let lane = self.get_mut(kind);
        if lane.busy {
            return None;
        }
        let req = lane.queue.pop_front()?;
        lane.busy = true;
        Some((req, &mut lane.conn))
    }

    /// Lane `kind`'s request finished; its connection, to put back.
    pub fn finished(&mut self, kind: LaneKind) -> &mut C {
        let lane = self.get_mut(kind);
        lane.busy = false;
        &mut lane.conn
    }

    /// No request queued or running on either lane.
    pub fn is_idle(&self) -> bool {
        [&self.writer, &self.reader]
            .iter()
            .all(|lane| !lane.busy && lane.queue.is_empty())
    }
}

/// Runs `req` on a blocking thread with the lane's SQLite connection
/// (opened at `path` if the lane has none yet).
pub(crate) fn start_sqlite(
    kind: LaneKind,
    req: StorageRequest,
    conn: Option<SqliteStorage>,
    path: PathBuf,
    done: mpsc::UnboundedSender<Done>,
) {
    let shell = req.clone_shell();
    let task = tokio::task::spawn_blocking(move || {
        let mut store = match conn {
            Some(store) => store,
            None => match SqliteStorage::open(&path) {
                Ok(store) => store,
                Err(err) => return (None, failed(&req, err.message), Duration::ZERO),
            },
        };
        let started = Instant::now();
        let response = req.execute(&mut store);
        (Some(store), response, started.elapsed())
    });
    report(kind, shell, task, done);
}

/// Runs `req` as a task on one of the pool's connections.
pub(crate) fn start_postgres(
    kind: LaneKind,
    req: StorageRequest,
    mut store: PgStorage,
    done: mpsc::UnboundedSender<Done>,
) {
    let shell = req.clone_shell();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let response = req.execute_async(&mut store).await;
        (None, response, started.elapsed())
    });
    report(kind, shell, task, done);
}

/// Sends `task`'s answer as a [`Done`] once it finished, or an error
/// answer to `shell` if it panicked.
fn report(
    kind: LaneKind,
    shell: StorageRequest,
    task: JoinHandle<(Option<SqliteStorage>, StorageResponse, Duration)>,
    done: mpsc::UnboundedSender<Done>,
) {
    tokio::spawn(async move {
        let (store, response, took) = task.await.unwrap_or_else(|err| {
            let message = format!("storage task failed: {err}");
            (None, failed(&shell, message), Duration::ZERO)
        });
        let _ = done.send(Done {
            lane: kind,
            store,
            response,
            took,
        });
    });
}

/// An error answer to `req`, for a request that could not run.
fn failed(req: &StorageRequest, message: String) -> StorageResponse {
    let err = StorageError::new(message);
    match req.op {
        StorageOp::Append(_) => StorageResponse::Appended {
            id: req.id,
            result: Err(err),
        },
        StorageOp::Read { .. } => StorageResponse::Read {
            id: req.id,
            result: Err(err),
        },
        StorageOp::AppendBatches(_) => StorageResponse::BatchesAppended {
            id: req.id,
            result: Err(err),
        },
        StorageOp::ReadBatches { .. } => StorageResponse::BatchesRead {
            id: req.id,
            result: Err(err),
        },
        StorageOp::BindSigningKey { .. } => StorageResponse::SigningKeyBound {
            id: req.id,
            result: Err(err),
        },
    }
}

/// A copy of a request without its payload: enough to answer it with an
/// error if its task dies.
trait CloneShell {
    fn clone_shell(&self) -> StorageRequest;
}

impl CloneShell for StorageRequest {
    fn clone_shell(&self) -> StorageRequest {
        StorageRequest {
            id: self.id,
            op: match &self.op {
                StorageOp::Append(_) => StorageOp::Append(Vec::new()),
                StorageOp::AppendBatches(_) => StorageOp::AppendBatches(Vec::new()),
                StorageOp::Read {
                    public_key,
                    from,
                    limit,
                } => StorageOp::Read {
                    public_key: public_key.clone(),
                    from: *from,
                    limit: *limit,
                },
                op @ (StorageOp::ReadBatches { .. } | StorageOp::BindSigningKey { .. }) => {
                    op.clone()
                }
            },
        }
    }
}
