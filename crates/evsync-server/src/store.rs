//! A loaded tenant's storage, as its actor drives it.
//!
//! SQLite work blocks (an append waits for an fsync), so it runs on tokio's
//! blocking threads, never on the actor's. Two lanes keep it ordered and
//! bounded: appends go to the writer connection, reads to a second
//! connection opened on first use. Each lane runs one request at a time, in
//! order; the lanes run concurrently, so a catch-up read never waits behind
//! a commit (SQLite WAL gives the reader a consistent snapshot, and the
//! engine is built to accept a read that did or did not see an append in
//! flight). The engine itself keeps at most one append in flight.
//!
//! PostgreSQL keeps the same two lanes, each request a task on a pooled
//! connection (the pool, not the lane, owns connections).
//!
//! Memory storage answers at once, on the actor's thread.

use crate::shared::{Backend, Shared, lock};
use evsync_core::storage::{
    AsyncStorage, MemoryStorage, Storage, StorageError, StorageOp, StorageRequest, StorageResponse,
    StoreStats,
};
use evsync_core::wire::RemoteId;
use evsync_storage_postgres::PgStorage;
use evsync_storage_sqlite::{SqliteStorage, tenant_path};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Which SQLite connection a request runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LaneKind {
    Writer,
    Reader,
}

/// A finished request. A SQLite lane's connection comes back with it
/// (`None` if the request panicked, or on PostgreSQL; a SQLite lane then
/// reopens on next use).
pub(crate) struct Done {
    pub lane: LaneKind,
    pub store: Option<SqliteStorage>,
    pub response: StorageResponse,
    /// From the start of the request's transaction to its end.
    pub took: std::time::Duration,
}

pub(crate) struct Lane {
    kind: LaneKind,
    /// `None` while a request holds it, or before first use (reader).
    store: Option<SqliteStorage>,
    busy: bool,
    queue: VecDeque<StorageRequest>,
}

impl Lane {
    fn new(kind: LaneKind, store: Option<SqliteStorage>) -> Self {
        Lane {
            kind,
            store,
            busy: false,
            queue: VecDeque::new(),
        }
    }
}

/// What a tenant's store says when it opens.
pub(crate) struct Opened {
    pub remote_id: RemoteId,
    /// Signed tokens minted before this (Unix ms) are refused.
    pub tokens_not_before: Option<u64>,
}

impl Opened {
    async fn read(store: &mut impl AsyncStorage) -> Result<Self, StorageError> {
        Ok(Opened {
            remote_id: store.remote_id().await?,
            tokens_not_before: store.tokens_not_before().await?,
        })
    }
}

/// `tenant`'s in-memory store (`SYNC_STORAGE=memory`), created on first use.
fn memory_store(shared: &Shared, tenant: &str) -> Arc<Mutex<MemoryStorage>> {
    lock(&shared.memory)
        .entry(tenant.to_owned())
        .or_insert_with(|| {
            let mut bytes = [0u8; 16];
            // Without randomness a memory tenant still works; its
            // remoteId is then only unique per tenant name.
            if getrandom::fill(&mut bytes).is_err() {
                bytes[..tenant.len().min(16)]
                    .copy_from_slice(&tenant.as_bytes()[..tenant.len().min(16)]);
            }
            Arc::new(Mutex::new(MemoryStorage::new(RemoteId::from_random_bytes(
                bytes,
            ))))
        })
        .clone()
}

/// Raises `tenant`'s tokens' "not before" to `at_ms` (Unix ms) in its
/// store, durably, whether or not the tenant is loaded (a SQLite tenant
/// gets a connection of its own for this one write, beside its lanes');
/// returns the instant now stored.
pub(crate) async fn revoke_tokens(
    shared: &Shared,
    tenant: &str,
    at_ms: u64,
) -> Result<u64, String> {
    let dir = match shared.backend() {
        Backend::Sqlite(dir) => dir,
        Backend::Memory => {
            let store = memory_store(shared, tenant);
            return Storage::set_tokens_not_before(&mut *lock(&store), at_ms)
                .map_err(|e| e.message);
        }
        Backend::Postgres(db) => {
            return AsyncStorage::set_tokens_not_before(&mut db.tenant(tenant), at_ms)
                .await
                .map_err(|e| e.message);
        }
    };
    let path = tenant_path(&dir, tenant);
    tokio::task::spawn_blocking(move || {
        let mut store = SqliteStorage::open(&path)?;
        Storage::set_tokens_not_before(&mut store, at_ms)
    })
    .await
    .map_err(|e| format!("revoking failed: {e}"))?
    .map_err(|e| e.message)
}

/// What `GET /admin/tenants/<t>/stats` reports from a tenant's storage.
pub(crate) struct TenantFigures {
    pub remote_id: RemoteId,
    pub stats: StoreStats,
    pub tokens_not_before: Option<u64>,
}

/// `tenant`'s figures from its storage (its own connection for SQLite,
/// beside its lanes'), or `None` when the tenant has no data: reading
/// never creates a tenant.
pub(crate) async fn tenant_figures(
    shared: &Shared,
    tenant: &str,
) -> Result<Option<TenantFigures>, String> {
    async fn read(store: &mut impl AsyncStorage) -> Result<TenantFigures, StorageError> {
        Ok(TenantFigures {
            remote_id: store.remote_id().await?,
            stats: store.stats().await?,
            tokens_not_before: store.tokens_not_before().await?,
        })
    }
    let dir = match shared.backend() {
        Backend::Sqlite(dir) => dir,
        Backend::Memory => {
            let Some(store) = lock(&shared.memory).get(tenant).cloned() else {
                return Ok(None);
            };
            let mut store = lock(&store);
            return evsync_core::storage::block_on(read(&mut *store))
                .map(Some)
                .map_err(|e| e.message);
        }
        Backend::Postgres(db) => {
            if !db.tenant_exists(tenant).await.map_err(|e| e.message)? {
                return Ok(None);
            }
            return read(&mut db.tenant(tenant))
                .await
                .map(Some)
                .map_err(|e| e.message);
        }
    };
    let path = tenant_path(&dir, tenant);
    if !path.exists() {
        return Ok(None);
    }
    tokio::task::spawn_blocking(move || {
        evsync_core::storage::block_on(read(&mut SqliteStorage::open(&path)?))
    })
    .await
    .map_err(|e| format!("reading the tenant's figures failed: {e}"))?
    .map(Some)
    .map_err(|e| e.message)
}

/// One tenant's store.
pub(crate) enum TenantStore {
    Memory(Arc<Mutex<MemoryStorage>>),
    Sqlite(Box<SqliteLanes>),
    Postgres(Box<PgLanes>),
}

/// The two lanes of a PostgreSQL tenant: the same order and bounds as
/// SQLite's, each request a task on a pooled connection.
pub(crate) struct PgLanes {
    store: PgStorage,
    writer: PgLane,
    reader: PgLane,
    done: mpsc::UnboundedSender<Done>,
}

#[derive(Default)]
struct PgLane {
    busy: bool,
    queue: VecDeque<StorageRequest>,
}

impl PgLanes {
    fn lane(&mut self, kind: LaneKind) -> &mut PgLane {
        match kind {
            LaneKind::Writer => &mut self.writer,
            LaneKind::Reader => &mut self.reader,
        }
    }

    /// Starts lane `kind`'s next queued request unless one is running.
    fn start_next(&mut self, kind: LaneKind) {
        let mut store = self.store.clone();
        let done = self.done.clone();
        let lane = self.lane(kind);
        if lane.busy {
            return;
        }
        let Some(req) = lane.queue.pop_front() else {
            return;
        };
        lane.busy = true;
        let id_for_panic = req.clone_shell();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let response = req.execute_async(&mut store).await;
            (response, started.elapsed())
        });
        // A panicking request still answers (with an error), or its lane
        // would stay busy for ever.
        tokio::spawn(async move {
            let (response, took) = task.await.unwrap_or_else(|err| {
                let message = format!("storage task failed: {err}");
                (failed(&id_for_panic, message), std::time::Duration::ZERO)
            });
            let _ = done.send(Done {
                lane: kind,
                store: None,
                response,
                took,
            });
        });
    }
}

/// The two lanes of a SQLite tenant and where their results go.
pub(crate) struct SqliteLanes {
    path: PathBuf,
    writer: Lane,
    reader: Lane,
    done: mpsc::UnboundedSender<Done>,
}

impl SqliteLanes {
    fn lane(&mut self, kind: LaneKind) -> &mut Lane {
        match kind {
            LaneKind::Writer => &mut self.writer,
            LaneKind::Reader => &mut self.reader,
        }
    }

    /// Starts lane `kind`'s next queued request unless one is running.
    fn start_next(&mut self, kind: LaneKind) {
        // Field by field: the lane is borrowed mutably, path and done not.
        let lane = match kind {
            LaneKind::Writer => &mut self.writer,
            LaneKind::Reader => &mut self.reader,
        };
        start_next(lane, &self.path, &self.done);
    }
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
    }
}

impl TenantStore {
    /// Opens `tenant`'s store and reads (or creates) its remoteId and reads
    /// its tokens' "not before" (revocation). Finished SQLite requests will
    /// be reported on `done`.
    pub async fn open(
        shared: &Shared,
        tenant: &str,
        done: mpsc::UnboundedSender<Done>,
    ) -> Result<(TenantStore, Opened), String> {
        let dir = match shared.backend() {
            Backend::Sqlite(dir) => dir,
            Backend::Memory => {
                let store = memory_store(shared, tenant);
                let opened = {
                    let mut store = lock(&store);
                    evsync_core::storage::block_on(Opened::read(&mut *store))
                        .map_err(|e| e.message)?
                };
                return Ok((TenantStore::Memory(store), opened));
            }
            Backend::Postgres(db) => {
                let mut store = db.tenant(tenant);
                let opened = Opened::read(&mut store).await.map_err(|e| e.message)?;
                let lanes = PgLanes {
                    store,
                    writer: PgLane::default(),
                    reader: PgLane::default(),
                    done,
                };
                return Ok((TenantStore::Postgres(Box::new(lanes)), opened));
            }
        };
        let path = tenant_path(&dir, tenant);
        let open_path = path.clone();
        let (store, opened) = tokio::task::spawn_blocking(move || {
            let mut store = SqliteStorage::open(&open_path)?;
            let opened = evsync_core::storage::block_on(Opened::read(&mut store))?;
            Ok::<_, StorageError>((store, opened))
        })
        .await
        .map_err(|e| format!("opening the tenant store failed: {e}"))?
        .map_err(|e| e.message)?;
        Ok((
            TenantStore::Sqlite(Box::new(SqliteLanes {
                path,
                writer: Lane::new(LaneKind::Writer, Some(store)),
                reader: Lane::new(LaneKind::Reader, None),
                done,
            })),
            opened,
        ))
    }

    /// Starts `req`. Returns the response at once for memory storage; for
    /// SQLite the response arrives later as a [`Done`].
    pub fn submit(&mut self, req: StorageRequest) -> Option<StorageResponse> {
        let kind = match req.op {
            StorageOp::Append(_) => LaneKind::Writer,
            StorageOp::Read { .. } => LaneKind::Reader,
        };
        match self {
            TenantStore::Memory(store) => Some(req.execute(&mut *lock(store))),
            TenantStore::Sqlite(lanes) => {
                lanes.lane(kind).queue.push_back(req);
                lanes.start_next(kind);
                None
            }
            TenantStore::Postgres(lanes) => {
                lanes.lane(kind).queue.push_back(req);
                lanes.start_next(kind);
                None
            }
        }
    }

    /// Takes back a lane's connection after a request finished and starts
    /// the lane's next request.
    pub fn complete(&mut self, kind: LaneKind, store: Option<SqliteStorage>) {
        match self {
            TenantStore::Memory(_) => {}
            TenantStore::Sqlite(lanes) => {
                let lane = lanes.lane(kind);
                lane.busy = false;
                lane.store = store;
                lanes.start_next(kind);
            }
            TenantStore::Postgres(lanes) => {
                lanes.lane(kind).busy = false;
                lanes.start_next(kind);
            }
        }
    }

    /// True when no request is queued or running.
    pub fn is_idle(&self) -> bool {
        match self {
            TenantStore::Memory(_) => true,
            TenantStore::Sqlite(lanes) => {
                let SqliteLanes { writer, reader, .. } = &**lanes;
                !writer.busy && !reader.busy && writer.queue.is_empty() && reader.queue.is_empty()
            }
            TenantStore::Postgres(lanes) => {
                let PgLanes { writer, reader, .. } = &**lanes;
                !writer.busy && !reader.busy && writer.queue.is_empty() && reader.queue.is_empty()
            }
        }
    }
}

fn start_next(lane: &mut Lane, path: &std::path::Path, done: &mpsc::UnboundedSender<Done>) {
    if lane.busy {
        return;
    }
    let Some(req) = lane.queue.pop_front() else {
        return;
    };
    lane.busy = true;
    let kind = lane.kind;
    let store = lane.store.take();
    let path = path.to_path_buf();
    let done = done.clone();
    let id_for_panic = req.clone_shell();
    let task = tokio::task::spawn_blocking(move || {
        let mut store = match store {
            Some(store) => store,
            None => match SqliteStorage::open(&path) {
                Ok(store) => store,
                Err(err) => return (None, failed(&req, err.message), std::time::Duration::ZERO),
            },
        };
        let started = std::time::Instant::now();
        let response = req.execute(&mut store);
        (Some(store), response, started.elapsed())
    });
    tokio::spawn(async move {
        let (store, response, took) = match task.await {
            Ok(out) => out,
            Err(err) => (
                None,
                failed(&id_for_panic, format!("storage task failed: {err}")),
                std::time::Duration::ZERO,
            ),
        };
        let _ = done.send(Done {
            lane: kind,
            store,
            response,
            took,
        });
    });
}

/// A copy of a request without its payload: enough to answer it with an
/// error if the blocking task dies.
trait CloneShell {
    fn clone_shell(&self) -> StorageRequest;
}

impl CloneShell for StorageRequest {
    fn clone_shell(&self) -> StorageRequest {
        StorageRequest {
            id: self.id,
            op: match &self.op {
                StorageOp::Append(_) => StorageOp::Append(Vec::new()),
                StorageOp::Read {
                    public_key,
                    from,
                    limit,
                } => StorageOp::Read {
                    public_key: public_key.clone(),
                    from: *from,
                    limit: *limit,
                },
            },
        }
    }
}
