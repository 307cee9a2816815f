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
//!   with the request and comes back in [`Finished`].
//! - PostgreSQL work is a task on a pooled connection (the pool, not the
//!   lane, owns connections).
//!
//! Either way a request that panics still answers, with an error: a lane
//! left busy would stall its tenant for ever.
//!
//! A SQLite append takes in, before its `COMMIT`, the appends of its kind
//! submitted while its inserts run ([`OpenAppend`]): the engine sends the
//! next group without waiting (`LogConfig::join_open_appends`) and is told
//! that it joined.

use crate::lock::lock;
use evsync_core::storage::{RequestId, StorageError, StorageOp, StorageRequest, StorageResponse};
use evsync_storage_postgres::PgStorage;
use evsync_storage_sqlite::SqliteStorage;
use evsync_storage_sqlite::checkpoint::take_wal_pages;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
pub(crate) struct Finished {
    pub lane: LaneKind,
    pub store: Option<SqliteStorage>,
    pub response: StorageResponse,
    /// From the start of the request's transaction to its end.
    pub took: Duration,
    /// The WAL's size after the request's commit, on a SQLite writer
    /// lane (whose connection defers its checkpoints).
    pub wal_pages: Option<u32>,
}

/// What a lane's task hands back: the connection, the answer, how long the
/// transaction took, the WAL's size after it.
type Outcome = (
    Option<SqliteStorage>,
    StorageResponse,
    Duration,
    Option<u32>,
);

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

    /// Requests waiting on lane `kind` (the running one not counted).
    pub fn queued(&self, kind: LaneKind) -> usize {
        match kind {
            LaneKind::Writer => self.writer.queue.len(),
            LaneKind::Reader => self.reader.queue.len(),
        }
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

/// The append a SQLite writer lane is running, while its transaction still
/// inserts, and the appends that joined it and wait to be inserted. Shared
/// by the tenant's actor (which joins) and the blocking thread (which
/// takes them in, and closes the door once none is left: from then on
/// nothing joins and the next append waits for the next transaction).
#[derive(Default)]
pub(crate) struct OpenAppend {
    /// The running append (its payload left out), while it takes joins.
    open: Option<StorageRequest>,
    joined: VecDeque<StorageOp>,
}

/// A writer lane's [`OpenAppend`], shared with its blocking thread.
pub(crate) type JoinDoor = Arc<Mutex<OpenAppend>>;

/// Puts `req` into the transaction of the append running behind `door`,
/// if that one still takes joins of its kind: returns the running append's
/// id. Otherwise gives `req` back.
pub(crate) fn join(door: &JoinDoor, req: StorageRequest) -> Result<RequestId, StorageRequest> {
    let mut door = lock(door);
    match &door.open {
        Some(open) if open.takes_joins_of(&req.op) => {
            let into = open.id;
            door.joined.push_back(req.op);
            Ok(into)
        }
        _ => Err(req),
    }
}

/// Runs `req` on a blocking thread with the lane's SQLite connection
/// (opened at `path` if the lane has none yet). An append takes in what
/// joins it through `door` (the writer lane's) until its inserts are done.
pub(crate) fn start_sqlite(
    kind: LaneKind,
    req: StorageRequest,
    conn: Option<SqliteStorage>,
    path: PathBuf,
    door: Option<JoinDoor>,
    done: mpsc::UnboundedSender<impl From<Finished> + Send + 'static>,
) {
    let shell = req.clone_shell();
    if let Some(door) = &door {
        lock(door).open = Some(shell.clone_shell());
    }
    let door_after = door.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut store = match conn {
            Some(store) => store,
            None => match SqliteStorage::open(&path) {
                Ok(store) => {
                    if kind == LaneKind::Writer {
                        store.defer_checkpoints();
                    }
                    store
                }
                Err(err) => {
                    let response = failed(&req, err.message);
                    return (
                        None,
                        close_door(door.as_ref(), &req, response),
                        Duration::ZERO,
                        None,
                    );
                }
            },
        };
        let started = Instant::now();
        let response = match &door {
            Some(door) => {
                let mut next = || {
                    let mut door = lock(door);
                    let op = door.joined.pop_front();
                    if op.is_none() {
                        door.open = None;
                    }
                    op
                };
                req.execute_with_joins(&mut store, &mut next)
            }
            None => req.execute(&mut store),
        };
        let took = started.elapsed();
        // On this thread, which ran the commit (if any): its WAL hook
        // noted the size here.
        let wal_pages = take_wal_pages().filter(|_| kind == LaneKind::Writer);
        let response = close_door(door.as_ref(), &req, response);
        (Some(store), response, took, wal_pages)
    });
    report(kind, shell, task, door_after, done);
}

/// Closes `door` after its append ran. Appends that joined and were not
/// taken in (the append failed first, or a store broke the contract of
/// `Joins`) are covered by `response`: if it says committed, it becomes an
/// error, so nothing that was not stored is acknowledged.
fn close_door(
    door: Option<&JoinDoor>,
    req: &StorageRequest,
    response: StorageResponse,
) -> StorageResponse {
    let Some(door) = door else {
        return response;
    };
    let left = {
        let mut door = lock(door);
        door.open = None;
        std::mem::take(&mut door.joined).len()
    };
    let committed = match &response {
        StorageResponse::Appended { result, .. } => result.is_ok(),
        StorageResponse::BatchesAppended { result, .. } => result.is_ok(),
        _ => false,
    };
    if left > 0 && committed {
        let message = format!("{left} joined appends were not taken into the transaction");
        return failed(req, message);
    }
    response
}

/// Runs `req` as a task on one of the pool's connections.
pub(crate) fn start_postgres(
    kind: LaneKind,
    req: StorageRequest,
    mut store: PgStorage,
    done: mpsc::UnboundedSender<impl From<Finished> + Send + 'static>,
) {
    let shell = req.clone_shell();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let response = req.execute_async(&mut store).await;
        (None, response, started.elapsed(), None)
    });
    report(kind, shell, task, None, done);
}

/// Sends `task`'s answer as a [`Finished`] once it finished, or an error
/// answer to `shell` if it panicked (then its join door, left open, is
/// closed: what joined is covered by that error).
fn report(
    kind: LaneKind,
    shell: StorageRequest,
    task: JoinHandle<Outcome>,
    door: Option<JoinDoor>,
    done: mpsc::UnboundedSender<impl From<Finished> + Send + 'static>,
) {
    tokio::spawn(async move {
        let (store, response, took, wal_pages) = task.await.unwrap_or_else(|err| {
            let message = format!("storage task failed: {err}");
            let response = failed(&shell, message);
            (
                None,
                close_door(door.as_ref(), &shell, response),
                Duration::ZERO,
                None,
            )
        });
        let _ = done.send(
            Finished {
                lane: kind,
                store,
                response,
                took,
                wal_pages,
            }
            .into(),
        );
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
pub(crate) trait CloneShell {
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

#[cfg(test)]
mod tests {
    use super::*;
    use evsync_core::storage::conformance::{batch, batch_write, store};

    fn batches_request(id: u64, n: u64) -> StorageRequest {
        StorageRequest {
            id: RequestId(id),
            op: StorageOp::AppendBatches(vec![batch_write(&store("pk", "default"), 1, &[n])]),
        }
    }

    #[test]
    fn only_appends_of_the_running_kind_join_and_only_while_the_door_is_open() {
        let door = JoinDoor::default();
        let v4 = batches_request(2, 2);
        assert!(join(&door, v4.clone()).is_err(), "nothing runs: no join");
        lock(&door).open = Some(batches_request(1, 1).clone_shell());
        let v3 = StorageRequest {
            id: RequestId(3),
            op: StorageOp::Append(vec![batch("alice", 1, &[1])]),
        };
        assert!(join(&door, v3).is_err(), "a v3 append never joins a v4 one");
        assert_eq!(join(&door, v4.clone()).ok(), Some(RequestId(1)));
        lock(&door).open = None;
        assert!(join(&door, v4).is_err(), "a closed door takes nothing");
    }

    #[tokio::test]
    async fn a_sqlite_append_takes_in_what_joined_and_closes_its_door() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let door = JoinDoor::default();
        // Joined before the transaction reaches its end: taken in.
        let StorageOp::AppendBatches(joined) = batches_request(2, 2).op else {
            unreachable!()
        };
        lock(&door)
            .joined
            .push_back(StorageOp::AppendBatches(joined));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let first = batches_request(1, 1);
        start_sqlite(
            LaneKind::Writer,
            first,
            None,
            path.clone(),
            Some(door.clone()),
            tx,
        );
        let done: Finished = rx.recv().await.expect("the append answers");
        assert!(
            done.wal_pages.is_some(),
            "a writer's commit reports its WAL"
        );
        let StorageResponse::BatchesAppended { id, result } = done.response else {
            panic!("an append answer")
        };
        assert_eq!(id, RequestId(1), "answered as the running append");
        let sequences: Vec<_> = result
            .expect("committed")
            .into_iter()
            .map(|a| a.sequences)
            .collect();
        assert_eq!(
            sequences,
            [vec![1], vec![2]],
            "the joined write is in the same answer, after the first"
        );
        assert!(
            lock(&door).open.is_none() && lock(&door).joined.is_empty(),
            "the door is closed once the append is done"
        );
        assert!(join(&door, batches_request(3, 3)).is_err());
    }
}
