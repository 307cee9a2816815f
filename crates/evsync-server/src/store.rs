//! A loaded tenant's storage, as its actor drives it: which backend, the
//! requests queued on its two lanes (`lanes`), SQLite's WAL checkpoints
//! (`checkpoints`), and the reads and writes
//! operators make outside the lanes (revocation, figures).
//!
//! Memory storage answers at once, on the actor's thread.

use crate::checkpoints::{CheckpointDone, Checkpoints};
use crate::lanes::{self, CloneShell, Finished, JoinDoor, LaneKind, Lanes};
use crate::shared::{Backend, Shared, lock};
use evsync_core::storage::{
    AsyncStorage, MemoryStorage, RequestId, Storage, StorageError, StorageRequest, StorageResponse,
    StoreStats, V4Figures,
};
use evsync_core::wire::RemoteId;
use evsync_storage_postgres::PgStorage;
use evsync_storage_sqlite::{SqliteStorage, tenant_path};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What a tenant's storage work reports to its actor when it ends.
// Nearly every message is a `Request`: boxing it to shrink the rare
// `Checkpoint` would allocate once per storage answer for nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Done {
    /// A lane's request.
    Request(Finished),
    /// A SQLite WAL checkpoint.
    Checkpoint(CheckpointDone),
}

impl From<Finished> for Done {
    fn from(finished: Finished) -> Self {
        Done::Request(finished)
    }
}

impl From<CheckpointDone> for Done {
    fn from(done: CheckpointDone) -> Self {
        Done::Checkpoint(done)
    }
}

/// What a tenant's store says when it opens.
pub(crate) struct Opened {
    pub remote_id: RemoteId,
    /// Signed tokens minted before this (Unix ms) are refused.
    pub tokens_not_before: Option<u64>,
    /// PostgreSQL: what had committed before anything was read, so a
    /// notice of a deletion it includes is known to be stale.
    pub snapshot: Option<evsync_storage_postgres::Snapshot>,
    /// PostgreSQL: the generation of the tenant's row, read after its
    /// remoteId: a re-check that reads another one finds it replaced.
    pub generation: Option<i64>,
}

impl Opened {
    async fn read(store: &mut impl AsyncStorage) -> Result<Self, StorageError> {
        Ok(Opened {
            remote_id: store.remote_id().await?,
            tokens_not_before: store.tokens_not_before().await?,
            snapshot: None,
            generation: None,
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
    /// Its Effect v4 stores (`stats` counts v3 logs).
    pub v4: V4Figures,
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
            v4: V4Figures::of(&store.stores().await?),
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

/// The lanes of a PostgreSQL tenant: the same order and bounds as
/// SQLite's, each request a task on a pooled connection.
pub(crate) struct PgLanes {
    store: PgStorage,
    lanes: Lanes<()>,
    done: mpsc::UnboundedSender<Done>,
}

impl PgLanes {
    fn start_next(&mut self, kind: LaneKind) {
        if let Some((req, ())) = self.lanes.take_next(kind) {
            lanes::start_postgres(kind, req, self.store.clone(), self.done.clone());
        }
    }
}

/// The lanes of a SQLite tenant, each with its own connection (the
/// reader's opened on first use), its WAL checkpoints, and where their
/// results go.
pub(crate) struct SqliteLanes {
    path: PathBuf,
    lanes: Lanes<Option<SqliteStorage>>,
    checkpoints: Checkpoints,
    /// The writer lane's running append, which later appends may join.
    door: JoinDoor,
    /// The writer lane's running request (its payload left out).
    writer_running: Option<StorageRequest>,
    done: mpsc::UnboundedSender<Done>,
}

impl SqliteLanes {
    fn start_next(&mut self, kind: LaneKind) {
        if let Some((req, conn)) = self.lanes.take_next(kind) {
            let conn = conn.take();
            let door = (kind == LaneKind::Writer).then(|| self.door.clone());
            if kind == LaneKind::Writer {
                self.writer_running = Some(req.clone_shell());
            }
            lanes::start_sqlite(kind, req, conn, self.path.clone(), door, self.done.clone());
        }
    }
}

/// What became of a request given to [`TenantStore::submit`].
pub(crate) enum Submitted {
    /// Answered at once (memory storage).
    Answered(StorageResponse),
    /// Queued or running; the answer arrives as a [`Done`].
    Started,
    /// Append `id` joined the transaction of the running append `into`,
    /// whose answer covers it (tell the engine).
    Joined { id: RequestId, into: RequestId },
    /// Not started: an append of the same kind runs and its commit has
    /// begun. Tell the engine to put it back (it waits for the next
    /// transaction); if the engine cannot, [`TenantStore::start`] it.
    Deferred(StorageRequest),
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
                // First: whatever is read next is at least this new.
                let snapshot = db.snapshot().await.map_err(|e| e.message)?;
                let mut store = db.tenant(tenant);
                let mut opened = Opened::read(&mut store).await.map_err(|e| e.message)?;
                opened.snapshot = Some(snapshot);
                let identity = db.identity(tenant).await.map_err(|e| e.message)?;
                opened.generation = identity.map(|row| row.generation);
                let lanes = PgLanes {
                    store,
                    lanes: Lanes::new((), ()),
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
            // The writer lane's connection (after the read above, whose
            // commit, if any, would report to nobody).
            store.defer_checkpoints();
            Ok::<_, StorageError>((store, opened))
        })
        .await
        .map_err(|e| format!("opening the tenant store failed: {e}"))?
        .map_err(|e| e.message)?;
        Ok((
            TenantStore::Sqlite(Box::new(SqliteLanes {
                path,
                lanes: Lanes::new(Some(store), None),
                checkpoints: Checkpoints::default(),
                door: JoinDoor::default(),
                writer_running: None,
                done,
            })),
            opened,
        ))
    }

    /// True when an append sent while another runs may join that one's
    /// transaction (`LogConfig::join_open_appends`): SQLite, whose commit
    /// waits for an fsync long enough for the next requests to arrive.
    pub fn takes_joins(&self) -> bool {
        matches!(self, TenantStore::Sqlite(_))
    }

    /// Starts `req`, lets it join the running append (SQLite), or defers
    /// it when that append is already committing.
    pub fn submit(&mut self, req: StorageRequest) -> Submitted {
        if let TenantStore::Sqlite(lanes) = self
            && lanes
                .writer_running
                .as_ref()
                .is_some_and(|running| running.takes_joins_of(&req.op))
        {
            // Joining ahead of queued requests would reorder the lane.
            if lanes.lanes.queued(LaneKind::Writer) > 0 {
                return Submitted::Deferred(req);
            }
            let id = req.id;
            return match lanes::join(&lanes.door, req) {
                Ok(into) => Submitted::Joined { id, into },
                Err(req) => Submitted::Deferred(req),
            };
        }
        match self.start(req) {
            Some(response) => Submitted::Answered(response),
            None => Submitted::Started,
        }
    }

    /// Starts `req` (in its lane's order). Returns the response at once
    /// for memory storage; otherwise it arrives later as a [`Done`].
    pub fn start(&mut self, req: StorageRequest) -> Option<StorageResponse> {
        match self {
            TenantStore::Memory(store) => Some(req.execute(&mut *lock(store))),
            TenantStore::Sqlite(lanes) => {
                let kind = lanes.lanes.push(req);
                lanes.start_next(kind);
                None
            }
            TenantStore::Postgres(lanes) => {
                let kind = lanes.lanes.push(req);
                lanes.start_next(kind);
                None
            }
        }
    }

    /// Takes back a lane's connection after a request finished, starts
    /// the lane's next request, and a WAL checkpoint if the request's
    /// commit left the WAL at `wal_pages` and one is due.
    pub fn complete(
        &mut self,
        kind: LaneKind,
        store: Option<SqliteStorage>,
        wal_pages: Option<u32>,
    ) {
        match self {
            TenantStore::Memory(_) => {}
            TenantStore::Sqlite(lanes) => {
                *lanes.lanes.finished(kind) = store;
                if kind == LaneKind::Writer {
                    lanes.writer_running = None;
                }
                lanes.start_next(kind);
                if let Some(pages) = wal_pages {
                    lanes.checkpoints.committed(pages, &lanes.path, &lanes.done);
                }
            }
            TenantStore::Postgres(lanes) => {
                lanes.lanes.finished(kind);
                lanes.start_next(kind);
            }
        }
    }

    /// A WAL checkpoint ended: the next may start.
    pub fn checkpointed(&mut self) {
        if let TenantStore::Sqlite(lanes) = self {
            lanes.checkpoints.finished();
        }
    }

    /// True when no request is queued or running.
    pub fn is_idle(&self) -> bool {
        match self {
            TenantStore::Memory(_) => true,
            TenantStore::Sqlite(lanes) => lanes.lanes.is_idle() && lanes.checkpoints.is_idle(),
            TenantStore::Postgres(lanes) => lanes.lanes.is_idle(),
        }
    }
}
