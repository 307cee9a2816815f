//! Operators' whole-tenant operations: list, delete, export, import.
//!
//! Each works on SQLite (a tenant is one file: see
//! `evsync_storage_sqlite::files` for why a rename makes delete and import
//! all-or-nothing), on memory storage, and on PostgreSQL, where an import
//! is staged under a name no tenant can have and put in place with one
//! transaction, and a delete or an import reaches every node serving the
//! tenant. A delete or an import first
//! takes the tenant from its connections ([`Registry::hold`]): sockets
//! closed, store closed, new connections refused until the files are in
//! their final state.

use crate::datadir::{STAGING_DIR, TRASH_DIR};
use crate::registry::Registry;
use crate::shared::{Backend, Shared, lock};
use bytes::Bytes;
use evsync_core::export::{
    ExportHeader, ExportReader, ExportSummary, Exporter, Importer, ReadItem, export_store,
};
use evsync_core::proto::close::code;
use evsync_core::storage::block_on;
use evsync_core::storage::{AsyncStorage, MemoryStorage, Storage, StoreStats, V4Figures};
use evsync_storage_sqlite::{SqliteStorage, files, tenant_file_name, tenant_path};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The close reasons operators' operations give the tenant's sockets.
pub(crate) const DELETED: &str = "tenant deleted by an operator";
pub(crate) const REPLACED: &str = "tenant replaced by an import";

/// One tenant in `GET /admin/tenants`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Listing {
    pub tenant: String,
    pub remote_id: String,
    /// The store's size on disk (file and WAL); 0 in memory.
    pub bytes_on_disk: u64,
    pub logs: u64,
    pub entries: u64,
    pub bytes: u64,
    pub last_write_ms: Option<u64>,
    pub connections: usize,
    /// Its Effect v4 stores (the figures above count v3 logs).
    pub v4_stores: u64,
    pub v4_entries: u64,
}

/// What a listing says of one store: its remoteId, v3 and v4 figures.
type Figures = (String, StoreStats, V4Figures);

async fn figures(store: &mut impl AsyncStorage) -> Result<Figures, String> {
    let remote_id = store.remote_id().await.map_err(|e| e.message)?;
    let stats = store.stats().await.map_err(|e| e.message)?;
    let v4 = V4Figures::of(&store.stores().await.map_err(|e| e.message)?);
    Ok((remote_id.to_uuid_string(), stats, v4))
}

/// Every tenant with a store, by name.
pub(crate) async fn list(registry: &Registry) -> Result<Vec<Listing>, String> {
    let shared = registry.shared().clone();
    let mut listings = match shared.backend() {
        Backend::Postgres(db) => {
            let mut out = Vec::new();
            for tenant in db.tenants().await.map_err(|e| e.message)? {
                let figures = figures(&mut db.tenant(&tenant)).await?;
                out.push(listing(tenant, figures, 0));
            }
            out
        }
        Backend::Sqlite(dir) => {
            tokio::task::spawn_blocking(move || -> Result<Vec<Listing>, String> {
                let mut out = Vec::new();
                for tenant in files::list_tenants(&dir).map_err(|e| e.message)? {
                    let path = tenant_path(&dir, &tenant);
                    let mut store = SqliteStorage::open(&path).map_err(|e| e.message)?;
                    let figures = block_on(figures(&mut store))?;
                    out.push(listing(
                        tenant.clone(),
                        figures,
                        files::disk_bytes(&dir, &tenant),
                    ));
                }
                Ok(out)
            })
            .await
            .map_err(|e| format!("listing tenants failed: {e}"))??
        }
        Backend::Memory => {
            let stores: Vec<(String, Arc<Mutex<MemoryStorage>>)> = lock(&shared.memory)
                .iter()
                .map(|(t, s)| (t.clone(), s.clone()))
                .collect();
            let mut out = Vec::new();
            for (tenant, store) in stores {
                let figures = block_on(figures(&mut *lock(&store)))?;
                out.push(listing(tenant, figures, 0));
            }
            out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
            out
        }
    };
    for l in &mut listings {
        l.connections = registry.connections_of(&l.tenant).await;
    }
    Ok(listings)
}

fn listing(tenant: String, (remote_id, stats, v4): Figures, bytes_on_disk: u64) -> Listing {
    Listing {
        tenant,
        remote_id,
        bytes_on_disk,
        logs: stats.logs,
        entries: stats.entries,
        bytes: stats.bytes,
        last_write_ms: stats.last_write_ms,
        connections: 0,
        v4_stores: v4.stores,
        v4_entries: v4.entries,
    }
}

/// Deletes `tenant`'s data (its sockets closed with 1001 and
/// [`DELETED`]); false when it had none. The next connection starts a new
/// tenant with a new remoteId.
pub(crate) async fn delete(registry: &Arc<Registry>, tenant: &str) -> Result<bool, String> {
    let _hold = registry.hold(tenant, code::GOING_AWAY, DELETED).await?;
    let shared = registry.shared();
    if let Backend::Postgres(db) = shared.backend() {
        // The deleting transaction notifies every node, which drops the
        // tenant (nodes also find it gone at their next re-check).
        return db.delete_tenant(tenant).await.map_err(|e| e.message);
    }
    match (shared.tenants_dir(), shared.data_subdir(TRASH_DIR)) {
        (Some(dir), Some(trash)) => {
            let tenant = tenant.to_owned();
            tokio::task::spawn_blocking(move || files::remove_tenant(&dir, &trash, &tenant))
                .await
                .map_err(|e| format!("deleting failed: {e}"))?
                .map_err(|e| e.message)
        }
        _ => Ok(lock(&shared.memory).remove(tenant).is_some()),
    }
}

/// Whether `tenant` has a store (SQLite file or memory entry).
pub(crate) fn exists(shared: &Shared, tenant: &str) -> bool {
    match shared.tenants_dir() {
        Some(dir) => tenant_path(&dir, tenant).exists(),
        None => lock(&shared.memory).contains_key(tenant),
    }
}

/// Logs how `tenant`'s export ended; on failure, the error that ends the
/// stream (the receiver then holds a file without its trailer).
fn exported(tenant: &str, result: Result<ExportSummary, String>) -> Option<std::io::Error> {
    match result {
        Ok(summary) => {
            tracing::info!(
                tenant,
                logs = summary.logs,
                entries = summary.entries,
                stores = summary.stores,
                batches = summary.batches,
                bindings = summary.bindings,
                "admin: tenant exported"
            );
            None
        }
        Err(reason) => {
            tracing::error!(tenant, %reason, "admin: export failed");
            Some(std::io::Error::other(reason))
        }
    }
}

/// [`export`] from PostgreSQL: a page per message, read when the channel
/// has room (the client's pace), as the Worker's export does.
async fn export_postgres(
    db: &evsync_storage_postgres::PgDatabase,
    tenant: &str,
) -> Result<Option<mpsc::Receiver<Result<Bytes, std::io::Error>>>, String> {
    if !db.tenant_exists(tenant).await.map_err(|e| e.message)? {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let mut store = db.tenant(tenant);
    let tenant = tenant.to_owned();
    tokio::spawn(async move {
        let result = async {
            let (mut exporter, header) = Exporter::start(&mut store, &tenant).await?;
            let mut page = header;
            loop {
                if tx.send(Ok(Bytes::from(page))).await.is_err() {
                    return Err("the receiver went away".to_owned());
                }
                match exporter.next_lines(&mut store).await? {
                    Some(lines) => page = lines.concat(),
                    None => return Ok(exporter.summary()),
                }
            }
        }
        .await;
        if let Some(failure) = exported(&tenant, result) {
            let _ = tx.send(Err(failure)).await;
        }
    });
    Ok(Some(rx))
}

/// Streams `tenant` as an export: lines go out in chunks as the store
/// yields them (never the whole tenant in memory). `None` when the tenant
/// has no store. A failure midway ends the stream with an error, so the
/// receiver holds a file without its trailer, which an import refuses.
pub(crate) async fn export(
    shared: &Arc<Shared>,
    tenant: &str,
) -> Result<Option<mpsc::Receiver<Result<Bytes, std::io::Error>>>, String> {
    if let Backend::Postgres(db) = shared.backend() {
        return export_postgres(db, tenant).await;
    }
    if !exists(shared, tenant) {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let tenant = tenant.to_owned();
    let dir = shared.tenants_dir();
    let memory = lock(&shared.memory).get(&tenant).cloned();
    tokio::task::spawn_blocking(move || {
        let mut chunk = String::new();
        let send = |chunk: &mut String| -> Result<(), String> {
            let bytes = Bytes::from(std::mem::take(chunk));
            tx.blocking_send(Ok(bytes))
                .map_err(|_| "the receiver went away".to_owned())
        };
        let emit = |line: String| -> Result<(), String> {
            chunk.push_str(&line);
            if chunk.len() >= 64 * 1024 {
                send(&mut chunk)
            } else {
                Ok(())
            }
        };
        let result = match (&dir, &memory) {
            (Some(dir), _) => SqliteStorage::open(tenant_path(dir, &tenant))
                .map_err(|e| e.message)
                .and_then(|mut store| block_on(export_store(&mut store, &tenant, emit))),
            (None, Some(store)) => block_on(export_store(&mut *lock(store), &tenant, emit)),
            (None, None) => Err("the tenant was deleted".into()),
        };
        let result = result.and_then(|summary| send(&mut chunk).map(|()| summary));
        if let Some(failure) = exported(&tenant, result) {
            let _ = tx.blocking_send(Err(failure));
        }
    });
    Ok(Some(rx))
}

/// Why an import was refused.
#[derive(Debug)]
pub enum ImportError {
    /// The tenant has data and `replace` was not asked for: `409`.
    HasData,
    /// The file is damaged, truncated or not an export: `400`.
    BadFile(String),
    /// Storage failed: `503`.
    Storage(String),
}

/// What an import stored.
pub(crate) struct Imported {
    pub header: ExportHeader,
    pub summary: ExportSummary,
    pub replaced: bool,
}

/// Imports an export (its bytes arrive on `chunks`) as `tenant`: staged
/// first, and put in the tenant's place only once the whole file was read
/// and checked, so a bad file changes nothing. Refused with
/// [`ImportError::HasData`] if the tenant has data, unless `replace`.
pub(crate) async fn import(
    registry: &Arc<Registry>,
    tenant: &str,
    replace: bool,
    chunks: mpsc::Receiver<Bytes>,
) -> Result<Imported, ImportError> {
    let shared = registry.shared().clone();
    if let Backend::Postgres(db) = shared.backend() {
        return import_postgres(registry, db, tenant, replace, chunks).await;
    }
    if !replace && exists(&shared, tenant) {
        return Err(ImportError::HasData);
    }
    match (shared.tenants_dir(), shared.data_subdir(STAGING_DIR)) {
        (Some(dir), Some(staging)) => {
            let tenant_name = tenant.to_owned();
            let read = tokio::task::spawn_blocking(move || {
                let mut chunks = chunks;
                stage_import(&staging, &tenant_name, || Ok(chunks.blocking_recv()))
            })
            .await
            .map_err(|e| ImportError::Storage(format!("import failed: {e}")))
            .and_then(|r| r);
            let (staged, header, summary) = match read {
                Ok(done) => done,
                Err(err) => return Err(err),
            };
            let installed = install(registry, &dir, &staged, tenant, replace).await;
            if installed.is_err() {
                remove_staged(&staged);
            }
            installed.map(|replaced| Imported {
                header,
                summary,
                replaced,
            })
        }
        _ => {
            let mut store = MemoryStorage::new(evsync_core::wire::RemoteId([0; 16]));
            let chunks_read = tokio::task::spawn_blocking(move || {
                let mut chunks = chunks;
                read_into(&mut store, || Ok(chunks.blocking_recv())).map(|done| (store, done))
            })
            .await
            .map_err(|e| ImportError::Storage(format!("import failed: {e}")))??;
            let (store, (header, summary)) = chunks_read;
            let _hold = registry
                .hold(tenant, code::GOING_AWAY, REPLACED)
                .await
                .map_err(ImportError::Storage)?;
            let mut memory = lock(&shared.memory);
            let replaced = memory.contains_key(tenant);
            if replaced && !replace {
                return Err(ImportError::HasData);
            }
            memory.insert(tenant.to_owned(), Arc::new(Mutex::new(store)));
            Ok(Imported {
                header,
                summary,
                replaced,
            })
        }
    }
}

/// [`import`] into PostgreSQL: the export is read into a staging tenant
/// (`~import~<tenant>~<random>`, a name no tenant can have, left out of
/// listings), then put in `tenant`'s place in one transaction while the
/// tenant is held here; other nodes are told by that transaction. A bad
/// file or a failure removes the staging rows and changes nothing.
async fn import_postgres(
    registry: &Arc<Registry>,
    db: &evsync_storage_postgres::PgDatabase,
    tenant: &str,
    replace: bool,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<Imported, ImportError> {
    let storage = |e: evsync_core::storage::StorageError| ImportError::Storage(e.message);
    if !replace && db.tenant_exists(tenant).await.map_err(storage)? {
        return Err(ImportError::HasData);
    }
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| ImportError::Storage(e.to_string()))?;
    let staged = format!(
        "~import~{tenant}~{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut store = db.tenant(&staged);
    let read = async {
        let mut intake = Intake::default();
        while let Some(chunk) = chunks.recv().await {
            intake.feed(&mut store, &chunk).await?;
        }
        intake.finish()
    }
    .await;
    let installed = match read {
        Ok(done) => {
            let hold = registry.hold(tenant, code::GOING_AWAY, REPLACED).await;
            match hold {
                Ok(_hold) => match db.install_tenant(&staged, tenant, replace).await {
                    Ok(Some(replaced)) => Ok((done, replaced)),
                    Ok(None) => Err(ImportError::HasData),
                    Err(e) => Err(storage(e)),
                },
                Err(reason) => Err(ImportError::Storage(reason)),
            }
        }
        Err(err) => Err(err),
    };
    match installed {
        Ok(((header, summary), replaced)) => Ok(Imported {
            header,
            summary,
            replaced,
        }),
        Err(err) => {
            if let Err(e) = db.delete_tenant(&staged).await {
                tracing::error!(staged, reason = %e.message, "admin: removing a refused import's staging rows failed");
            }
            Err(err)
        }
    }
}

/// Puts the sealed `staged` store in `tenant`'s place, the tenant held.
async fn install(
    registry: &Arc<Registry>,
    dir: &std::path::Path,
    staged: &std::path::Path,
    tenant: &str,
    replace: bool,
) -> Result<bool, ImportError> {
    let _hold = registry
        .hold(tenant, code::GOING_AWAY, REPLACED)
        .await
        .map_err(ImportError::Storage)?;
    let shared = registry.shared();
    let trash = shared
        .data_subdir(TRASH_DIR)
        .ok_or_else(|| ImportError::Storage("no trash directory".into()))?;
    let (dir, staged, tenant) = (dir.to_path_buf(), staged.to_path_buf(), tenant.to_owned());
    tokio::task::spawn_blocking(move || install_staged(&dir, &trash, &staged, &tenant, replace))
        .await
        .map_err(|e| ImportError::Storage(format!("import failed: {e}")))?
}

/// Builds `tenant`'s new store in `staging_dir` from an export whose bytes
/// `next_chunk` yields, sealed and ready for [`install_staged`]; removed
/// again when the file is refused. Blocking (SQLite).
pub fn stage_import(
    staging_dir: &Path,
    tenant: &str,
    next_chunk: impl FnMut() -> Result<Option<Bytes>, String>,
) -> Result<(PathBuf, ExportHeader, ExportSummary), ImportError> {
    let staged = staging_dir.join(files::unique_name(&tenant_file_name(tenant)));
    let done = SqliteStorage::open(&staged)
        .map_err(|e| ImportError::Storage(e.message))
        .and_then(|mut store| read_into(&mut store, next_chunk))
        .and_then(|done| {
            files::seal(&staged)
                .map(|()| done)
                .map_err(|e| ImportError::Storage(e.message))
        });
    match done {
        Ok((header, summary)) => Ok((staged, header, summary)),
        Err(err) => {
            remove_staged(&staged);
            Err(err)
        }
    }
}

/// Puts the staged store in `tenant`'s place (one rename), first moving
/// its present store to `trash_dir` if `replace` (refused with
/// [`ImportError::HasData`] otherwise); true if a store was replaced. The
/// tenant must not be open (held, or the server stopped). Blocking.
pub fn install_staged(
    tenants_dir: &Path,
    trash_dir: &Path,
    staged: &Path,
    tenant: &str,
    replace: bool,
) -> Result<bool, ImportError> {
    let present = tenant_path(tenants_dir, tenant).exists();
    if present && !replace {
        return Err(ImportError::HasData);
    }
    if present {
        files::remove_tenant(tenants_dir, trash_dir, tenant)
            .map_err(|e| ImportError::Storage(e.message))?;
    }
    files::install_tenant(staged, tenants_dir, tenant)
        .map_err(|e| ImportError::Storage(e.message))?;
    Ok(present)
}

/// Writes `tenant`'s store in `tenants_dir` as an export to `out`
/// (blocking); `Ok(None)` when the tenant has no store.
pub fn export_file(
    tenants_dir: &Path,
    tenant: &str,
    out: &mut impl std::io::Write,
) -> Result<Option<ExportSummary>, String> {
    let path = tenant_path(tenants_dir, tenant);
    if !path.exists() {
        return Ok(None);
    }
    let mut store = SqliteStorage::open(&path).map_err(|e| e.message)?;
    block_on(export_store(&mut store, tenant, |line| {
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())
    }))
    .map(Some)
}

/// Reads an export from `chunks` into the empty `store`; the header and
/// summary once the trailer was read and checked. Blocking.
fn read_into(
    store: &mut impl Storage,
    mut next_chunk: impl FnMut() -> Result<Option<Bytes>, String>,
) -> Result<(ExportHeader, ExportSummary), ImportError> {
    let mut intake = Intake::default();
    while let Some(chunk) = next_chunk().map_err(ImportError::BadFile)? {
        block_on(intake.feed(store, &chunk))?;
    }
    intake.finish()
}

/// An export being read into a store, chunk by chunk, whatever brings the
/// chunks (a blocking reader for SQLite, a channel for PostgreSQL).
#[derive(Default)]
struct Intake {
    reader: ExportReader,
    importer: Importer,
    ended: Option<ExportSummary>,
}

impl Intake {
    /// Applies every whole line of `chunk` (and what earlier chunks left).
    async fn feed(
        &mut self,
        store: &mut impl AsyncStorage,
        chunk: &[u8],
    ) -> Result<(), ImportError> {
        self.reader.push(chunk);
        while let Some(item) = self
            .reader
            .next_item()
            .map_err(|e| ImportError::BadFile(e.to_string()))?
        {
            if let ReadItem::End(summary) = item {
                self.ended = Some(summary);
            }
            self.importer
                .apply(store, item)
                .await
                .map_err(ImportError::BadFile)?;
        }
        Ok(())
    }

    /// The header and summary, once the trailer was read and checked.
    fn finish(self) -> Result<(ExportHeader, ExportSummary), ImportError> {
        self.reader
            .finish()
            .map_err(|e| ImportError::BadFile(e.to_string()))?;
        let header = self
            .importer
            .header()
            .cloned()
            .ok_or_else(|| ImportError::BadFile("no header".into()))?;
        let summary = self
            .ended
            .ok_or_else(|| ImportError::BadFile("no trailer".into()))?;
        Ok((header, summary))
    }
}

fn remove_staged(staged: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(PathBuf::from(format!("{}{suffix}", staged.display())));
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::HasData => {
                f.write_str("the tenant has data (use --replace to replace it)")
            }
            ImportError::BadFile(reason) => write!(f, "import refused, nothing changed: {reason}"),
            ImportError::Storage(reason) => write!(f, "import failed, nothing changed: {reason}"),
        }
    }
}
