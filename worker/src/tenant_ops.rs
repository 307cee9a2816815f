//! Operators' whole-tenant operations, run in the tenant's Durable Object,
//! which owns its sockets, its engine and its storage: delete, export and
//! import (`DELETE /admin/tenants/<t>`, `GET …/export`, `POST …/import`,
//! forwarded by the Worker). Statuses, answers, close codes and log lines
//! are the native server's (`evsync-server`'s `admin.rs`, `tenant_ops.rs`),
//! so that `evsync admin` works against either.
//!
//! - **Sockets.** Once a delete or an import changes the data, every
//!   socket of the tenant (hibernated ones too) is closed with 1001 and the
//!   reason, the engine is stopped (the answers to storage work it had
//!   started are dropped) and the next connection starts an engine on what
//!   is stored (after a delete: a new remoteId). On DO SQLite the change
//!   is one synchronous `transactionSync` followed by the closes, with no
//!   await between: no other event of the object runs in between, and a
//!   failed change closes nothing. On D1 the change is an awaited
//!   `batch()`, so the tenant is first *held*: sockets closed, engine
//!   stopped, its D1 work in flight allowed to finish, connections refused
//!   with `503` and `Retry-After`; then the batch.
//! - **Delete**: one `transactionSync` on DO SQLite, one `batch()` on D1;
//!   on DO SQLite the tenant then leaves the tenant index
//!   (`crate::tenant_index`), and an import puts it there.
//! - **Import**: the tenant changes only once the whole file was read and
//!   its trailer (counts, SHA-256) checked, and then in one transaction;
//!   a bad file changes nothing. DO SQLite calls are synchronous, so a
//!   transaction cannot wait for a request body: the file is held in memory
//!   (at most [`MAX_BUFFERED_IMPORT_BYTES`]), checked, then the tenant's
//!   data replaced in one `transactionSync` (a file the store still
//!   refuses, such as a hand-made one with an entry twice, rolls it back).
//!   D1 is written as the body arrives, under a staging key
//!   ([`d1::staging_key`]; memory: one page), and switched in with one
//!   `batch()` once the file is checked.
//! - **Export**: streamed, one page ([`evsync_core::export::TRANSFER_PAGE`])
//!   read each time the client has taken the previous one, so its size has
//!   no bound from memory. A delete or import of the tenant meanwhile ends
//!   it with an error: the file then lacks its trailer and every import
//!   refuses it.

use crate::attachment;
use crate::driver::Driver;
use crate::http::{REFUSAL_HEADER, json, text};
use crate::log;
use crate::storage::Backend;
use crate::storage::d1::{self, D1Storage};
use crate::storage::do_sql::DoSqlStorage;
use crate::tenant_index;
use evsync_core::export::{ExportHeader, ExportReader, ExportSummary, Exporter, Importer};
use evsync_core::proto::close::code;
use evsync_core::storage::block_on;
use futures_util::StreamExt;
use serde::Serialize;
use std::cell::Cell;
use std::rc::Rc;
use worker::{ByteStream, Env, Headers, Request, Response, Result, State};

/// The close reasons operators' operations give the tenant's sockets.
pub const DELETED: &str = "tenant deleted by an operator";
pub const REPLACED: &str = "tenant replaced by an import";

/// The largest import file on DO SQLite, which holds it whole in the
/// object's memory (128 MB for the isolate, wasm memory never shrinks)
/// while it is checked and written. D1 imports stream and have no such
/// bound.
pub const MAX_BUFFERED_IMPORT_BYTES: usize = 32 * 1024 * 1024;

/// Bytes handed to the export reader at a time: it shifts its buffer once
/// per line, so a large body chunk is fed in slices.
const READ_SLICE: usize = 64 * 1024;

/// What operators' operations on this object's tenant are doing.
#[derive(Default)]
pub struct Ops {
    /// A delete or an import is running: another is refused.
    busy: Cell<bool>,
    /// A D1 change holds the tenant (see the module docs).
    held: Cell<bool>,
    /// Raised whenever the data changes under the sockets: an export or an
    /// engine start that saw another value stops.
    epoch: Cell<u64>,
    /// The tenant was put in the tenant index (DO SQLite) by this object.
    indexed: Cell<bool>,
}

impl Ops {
    /// True while a delete or an import holds the tenant.
    pub fn held(&self) -> bool {
        self.held.get()
    }

    /// Changes whenever the tenant's data may have been deleted or
    /// replaced.
    pub fn epoch(&self) -> u64 {
        self.epoch.get()
    }

    /// True once per object lifetime (and again after a delete): the
    /// tenant is to be put in the tenant index.
    pub fn needs_indexing(&self) -> bool {
        !self.indexed.replace(true)
    }

    fn begin(&self) -> Option<Busy<'_>> {
        if self.busy.replace(true) {
            return None;
        }
        Some(Busy(self))
    }
}

/// An operation under way; ends when dropped.
struct Busy<'a>(&'a Ops);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

/// A hold of the tenant before a D1 change; released when dropped.
struct Held<'a>(&'a Ops);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.set(false);
    }
}

/// The object's parts an operation uses.
pub struct Object<'a> {
    pub state: &'a State,
    pub env: &'a Env,
    pub driver: &'a Driver,
    pub ops: &'a Rc<Ops>,
}

/// The answer to a connection (or an export) while the tenant is held, as
/// the native server gives it.
pub fn held_response() -> Result<Response> {
    let response = text(503, "Tenant is being changed by an operator.")?;
    let retry = evsync_core::settings::LIMIT_RETRY_AFTER_SECS.to_string();
    response.headers().set("Retry-After", &retry)?;
    response
        .headers()
        .set(REFUSAL_HEADER, "tenant held by an operator")?;
    Ok(response)
}

fn busy_response(tenant: &str) -> Result<Response> {
    let response = text(
        503,
        &format!("another operation on tenant {tenant} is under way"),
    )?;
    let retry = evsync_core::settings::LIMIT_RETRY_AFTER_SECS.to_string();
    response.headers().set("Retry-After", &retry)?;
    Ok(response)
}

impl Object<'_> {
    /// The tenant's store: the engine's, else opened for this request.
    async fn backend(&self, tenant: &str) -> std::result::Result<Backend, String> {
        match self.driver.with(|live| live.backend.clone()) {
            Some(backend) => Ok(backend),
            None => Backend::open(self.state, self.env, tenant).await,
        }
    }

    /// Closes every socket of the tenant (1001 and `reason`) and stops its
    /// engine; the number of sockets closed. Synchronous: on DO SQLite it
    /// follows the change with no await between.
    fn close_all(&self, reason: &str) -> usize {
        self.ops.epoch.set(self.ops.epoch.get() + 1);
        let mut closed = 0usize;
        for ws in self.state.get_websockets() {
            if attachment::is_retired(&ws) {
                continue;
            }
            attachment::retire(&ws);
            let _ = ws.close(Some(code::GOING_AWAY), Some(reason));
            closed += 1;
        }
        self.driver.stop();
        closed
    }

    /// Takes the tenant from its connections before a D1 change (see the
    /// module docs): sockets closed, engine stopped, its storage work in
    /// flight finished; connections refused until the hold is dropped.
    async fn hold(&self, reason: &str) -> std::result::Result<(Held<'_>, usize), String> {
        self.ops.held.set(true);
        let held = Held(self.ops);
        let closed = self.close_all(reason);
        self.driver.settle().await?;
        Ok((held, closed))
    }

    /// `DELETE /delete`: closes the tenant's sockets (1001, [`DELETED`]),
    /// deletes its data in one transaction; `404` when it has none.
    pub async fn delete(&self, tenant: &str) -> Result<Response> {
        let Some(_busy) = self.ops.begin() else {
            return busy_response(tenant);
        };
        let backend = match self.backend(tenant).await {
            Ok(backend) => backend,
            Err(reason) => return storage_failed(tenant, "admin: deleting failed", &reason),
        };
        match backend.has_data().await {
            Ok(true) => {}
            Ok(false) => return text(404, "No such tenant."),
            Err(reason) => return storage_failed(tenant, "admin: deleting failed", &reason),
        }
        let deleted = match &backend {
            Backend::DurableObject(store) => store
                .delete_tenant()
                .map(|()| self.close_all(DELETED))
                .map_err(|e| e.message),
            Backend::D1(store) => match self.hold(DELETED).await {
                Ok((_held, closed)) => store
                    .delete_tenant()
                    .await
                    .map(|()| closed)
                    .map_err(|e| e.message),
                Err(reason) => Err(reason),
            },
        };
        let closed = match deleted {
            Ok(closed) => closed,
            Err(reason) => return storage_failed(tenant, "admin: deleting failed", &reason),
        };
        if matches!(backend, Backend::DurableObject(_)) {
            // The next engine start registers it again.
            self.ops.indexed.set(false);
            tenant_index::deregister(self.env, tenant).await;
        }
        log::info!("admin: tenant deleted", tenant = tenant, closed = closed);
        let body = serde_json::json!({ "tenant": tenant, "deleted": true });
        json(200, &body.to_string())
    }

    /// `GET /export`: the tenant in the export format, streamed; `404`
    /// when it has no data.
    pub async fn export(&self, tenant: &str) -> Result<Response> {
        if self.ops.held() {
            return held_response();
        }
        let epoch = self.ops.epoch();
        let mut backend = match self.backend(tenant).await {
            Ok(backend) => backend,
            Err(reason) => return storage_failed(tenant, "admin: export failed", &reason),
        };
        match backend.has_data().await {
            Ok(true) => {}
            Ok(false) => return text(404, "No such tenant."),
            Err(reason) => return storage_failed(tenant, "admin: export failed", &reason),
        }
        let (exporter, header) = match Exporter::start(&mut backend, tenant).await {
            Ok(started) => started,
            Err(reason) => return storage_failed(tenant, "admin: export failed", &reason),
        };
        if self.ops.epoch() != epoch {
            return held_response();
        }
        let export = ExportStream {
            tenant: tenant.to_string(),
            exporter,
            backend,
            ops: Rc::clone(self.ops),
            epoch,
            header: Some(header),
            done: false,
        };
        let stream = futures_util::stream::unfold(export, |mut export| async move {
            let item = export.next().await?;
            Some((item, export))
        });
        let headers = Headers::new();
        headers.set("Content-Type", "application/x-ndjson")?;
        headers.set(
            "Content-Disposition",
            &format!("attachment; filename=\"{tenant}.evsync-export.jsonl\""),
        )?;
        Ok(Response::from_stream(stream)?.with_headers(headers))
    }

    /// `POST /import[?replace=true]`: loads the body (an export) as the
    /// tenant. `409` if it has data and `replace` is not asked for; `400`
    /// for a damaged, truncated or foreign file and `413` for one too large
    /// to hold (DO SQLite), with nothing changed; else the tenant's sockets
    /// are closed (1001, [`REPLACED`]) and its data replaced in one
    /// transaction.
    pub async fn import(&self, req: &mut Request, tenant: &str, replace: bool) -> Result<Response> {
        // No body reads as an empty file (which the reader refuses).
        let mut body = req.stream().ok();
        let outcome = self.import_from(body.as_mut(), tenant, replace).await;
        // Whatever was not read is read now, before the answer: the Worker
        // pipes the client's upload into this request and fails if the
        // answer leaves first.
        if let Some(body) = body.as_mut() {
            while let Some(Ok(_)) = body.next().await {}
        }
        import_answer(tenant, outcome)
    }

    async fn import_from(
        &self,
        body: Option<&mut ByteStream>,
        tenant: &str,
        replace: bool,
    ) -> std::result::Result<Imported, ImportError> {
        let Some(_busy) = self.ops.begin() else {
            return Err(ImportError::Busy(format!(
                "another operation on tenant {tenant} is under way"
            )));
        };
        let backend = self.backend(tenant).await.map_err(ImportError::Storage)?;
        if backend.has_data().await.map_err(ImportError::Storage)? && !replace {
            return Err(ImportError::HasData);
        }
        match &backend {
            Backend::DurableObject(store) => self.import_do(store, body, tenant, replace).await,
            Backend::D1(store) => self.import_d1(store, body, tenant, replace).await,
        }
    }

    /// DO SQLite: the whole file in memory, checked, then the tenant
    /// replaced in one `transactionSync` and its sockets closed, with no
    /// await from the last check to the closes (see the module docs).
    async fn import_do(
        &self,
        store: &DoSqlStorage,
        body: Option<&mut ByteStream>,
        tenant: &str,
        replace: bool,
    ) -> std::result::Result<Imported, ImportError> {
        let chunks = read_body(body, MAX_BUFFERED_IMPORT_BYTES).await?;
        check(&chunks).map_err(ImportError::BadFile)?;
        let present = store
            .has_data()
            .map_err(|e| ImportError::Storage(e.message))?;
        if present && !replace {
            return Err(ImportError::HasData);
        }
        let (header, summary) = store
            .replace_with(move |store| load(store, &chunks))
            .map_err(ImportError::BadFile)?;
        self.close_all(REPLACED);
        // A tenant created by the import is listed (failures are logged).
        self.ops.indexed.set(true);
        tenant_index::register(self.env, tenant).await;
        Ok(Imported {
            header,
            summary,
            replaced: present,
        })
    }

    /// D1: staged as the body arrives, checked, then switched in with one
    /// `batch()` (see the module docs). The staging key is emptied before
    /// and, on failure, after.
    async fn import_d1(
        &self,
        store: &D1Storage,
        body: Option<&mut ByteStream>,
        tenant: &str,
        replace: bool,
    ) -> std::result::Result<Imported, ImportError> {
        let mut staging = store.for_key(&d1::staging_key(tenant));
        staging
            .delete_tenant()
            .await
            .map_err(|e| ImportError::Storage(e.message))?;
        let outcome = async {
            let (header, summary) = stage(&mut staging, body).await?;
            // Checked before the hold (a refusal closes nothing) and again
            // under it (a connection may have created the tenant meanwhile).
            let tenant_store = Backend::D1(store.clone());
            let present = tenant_store
                .has_data()
                .await
                .map_err(ImportError::Storage)?;
            if present && !replace {
                return Err(ImportError::HasData);
            }
            let _held = self.hold(REPLACED).await.map_err(ImportError::Storage)?;
            let present = tenant_store
                .has_data()
                .await
                .map_err(ImportError::Storage)?;
            if present && !replace {
                return Err(ImportError::HasData);
            }
            store
                .replace_with(&staging)
                .await
                .map_err(|e| ImportError::Storage(e.message))?;
            Ok(Imported {
                header,
                summary,
                replaced: present,
            })
        }
        .await;
        if outcome.is_err()
            && let Err(e) = staging.delete_tenant().await
        {
            log::error!(
                "admin: cannot empty an import's staging rows",
                tenant = tenant,
                error = e.message
            );
        }
        outcome
    }
}

/// A storage failure of an operation: logged, `503` with the reason.
fn storage_failed(tenant: &str, message: &str, reason: &str) -> Result<Response> {
    log::error!(message, tenant = tenant, reason = reason);
    text(503, reason)
}

/// Why an import was refused.
enum ImportError {
    /// The tenant has data and `replace` was not asked for: `409`.
    HasData,
    /// The file is damaged, truncated or not an export: `400`.
    BadFile(String),
    /// Larger than the object can hold: `413`.
    TooLarge(String),
    /// Another delete or import runs: `503`.
    Busy(String),
    /// Storage failed: `503`.
    Storage(String),
}

/// What an import stored.
struct Imported {
    header: ExportHeader,
    summary: ExportSummary,
    replaced: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportAnswer<'a> {
    tenant: &'a str,
    remote_id: String,
    logs: u64,
    entries: u64,
    /// Effect v4 stores, their batches and the session-auth bindings.
    stores: u64,
    batches: u64,
    bindings: u64,
    replaced: bool,
}

/// The answer (and log line) for an import's outcome, as the native
/// server's.
fn import_answer(
    tenant: &str,
    outcome: std::result::Result<Imported, ImportError>,
) -> Result<Response> {
    match outcome {
        Ok(done) => {
            let remote_id = done.header.remote_id.to_uuid_string();
            log::info!(
                "admin: tenant imported",
                tenant = tenant,
                remote_id = remote_id,
                logs = done.summary.logs,
                entries = done.summary.entries,
                stores = done.summary.stores,
                batches = done.summary.batches,
                bindings = done.summary.bindings,
                replaced = done.replaced
            );
            let body = ImportAnswer {
                tenant,
                remote_id,
                logs: done.summary.logs,
                entries: done.summary.entries,
                stores: done.summary.stores,
                batches: done.summary.batches,
                bindings: done.summary.bindings,
                replaced: done.replaced,
            };
            json(200, &serde_json::to_string(&body).unwrap_or_default())
        }
        Err(ImportError::HasData) => text(
            409,
            "The tenant has data; import with ?replace=true to replace it.",
        ),
        Err(ImportError::BadFile(reason)) => {
            log::warning!(
                "admin: import refused, nothing changed",
                tenant = tenant,
                reason = reason
            );
            text(400, &format!("Import refused, nothing changed: {reason}"))
        }
        Err(ImportError::TooLarge(reason)) => {
            log::warning!(
                "admin: import refused, nothing changed",
                tenant = tenant,
                reason = reason
            );
            text(413, &format!("Import refused, nothing changed: {reason}"))
        }
        Err(ImportError::Busy(reason)) => {
            let response = text(503, &reason)?;
            let retry = evsync_core::settings::LIMIT_RETRY_AFTER_SECS.to_string();
            response.headers().set("Retry-After", &retry)?;
            Ok(response)
        }
        Err(ImportError::Storage(reason)) => {
            log::error!(
                "admin: import failed, nothing changed",
                tenant = tenant,
                reason = reason
            );
            text(503, &reason)
        }
    }
}

/// Why a file too large for DO SQLite is refused (`413`).
pub fn too_large() -> String {
    format!(
        "the file is larger than {} MiB, the most a Durable Object SQLite tenant imports (it holds the file in memory); D1 storage (SYNC_DB) imports stream, or import it into evsync serve",
        MAX_BUFFERED_IMPORT_BYTES / (1024 * 1024)
    )
}

/// The request body as received, refused beyond `limit` bytes (the rest
/// is then left for the caller to drain).
async fn read_body(
    body: Option<&mut ByteStream>,
    limit: usize,
) -> std::result::Result<Vec<Vec<u8>>, ImportError> {
    let mut chunks = Vec::new();
    let Some(body) = body else {
        return Ok(chunks);
    };
    let mut total = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ImportError::BadFile(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total > limit {
            return Err(ImportError::TooLarge(too_large()));
        }
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// `chunks` in the reader's slices.
fn slices(chunks: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    chunks.iter().flat_map(|chunk| chunk.chunks(READ_SLICE))
}

/// Reads a whole file through the export reader: trailer, counts and
/// checksum, order and sequences.
fn check(chunks: &[Vec<u8>]) -> std::result::Result<(), String> {
    let mut reader = ExportReader::new();
    for slice in slices(chunks) {
        reader.push(slice);
        while reader.next_item().map_err(|e| e.to_string())?.is_some() {}
    }
    reader.finish().map(|_| ()).map_err(|e| e.to_string())
}

/// Writes a checked file into the emptied `store`, inside its
/// transaction ([`DoSqlStorage::replace_with`]).
fn load(
    store: &mut DoSqlStorage,
    chunks: &[Vec<u8>],
) -> std::result::Result<(ExportHeader, ExportSummary), String> {
    let mut reader = ExportReader::new();
    let mut importer = Importer::new();
    for slice in slices(chunks) {
        reader.push(slice);
        while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
            // DO SQL calls are synchronous: every future here is ready.
            block_on(importer.apply(store, item))?;
        }
    }
    let summary = reader.finish().map_err(|e| e.to_string())?;
    let header = importer.header().cloned().ok_or("no header")?;
    Ok((header, summary))
}

/// Reads the request body into the empty staging store as it arrives; the
/// header and counts once the trailer was read and checked.
async fn stage(
    staging: &mut D1Storage,
    body: Option<&mut ByteStream>,
) -> std::result::Result<(ExportHeader, ExportSummary), ImportError> {
    let mut reader = ExportReader::new();
    let mut importer = Importer::new();
    let bad = |e: String| ImportError::BadFile(e);
    if let Some(body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| bad(format!("reading the request body: {e}")))?;
            for slice in chunk.chunks(READ_SLICE) {
                reader.push(slice);
                while let Some(item) = reader.next_item().map_err(|e| bad(e.to_string()))? {
                    importer.apply(staging, item).await.map_err(bad)?;
                }
            }
        }
    }
    let summary = reader.finish().map_err(|e| bad(e.to_string()))?;
    let header = importer
        .header()
        .cloned()
        .ok_or_else(|| bad("no header".into()))?;
    Ok((header, summary))
}

/// An export being streamed (see [`Object::export`]).
struct ExportStream {
    tenant: String,
    exporter: Exporter,
    backend: Backend,
    ops: Rc<Ops>,
    /// [`Ops::epoch`] when the export began.
    epoch: u64,
    /// The header line, until it is given.
    header: Option<String>,
    done: bool,
}

impl ExportStream {
    /// The next bytes of the body; `None` after the trailer, or after an
    /// error (which ends the body without its trailer).
    async fn next(&mut self) -> Option<Result<Vec<u8>>> {
        if self.done {
            return None;
        }
        if let Some(header) = self.header.take() {
            return Some(Ok(header.into_bytes()));
        }
        match self.page().await {
            Ok(Some(bytes)) => Some(Ok(bytes)),
            Ok(None) => {
                self.done = true;
                let summary = self.exporter.summary();
                log::info!(
                    "admin: tenant exported",
                    tenant = self.tenant,
                    logs = summary.logs,
                    entries = summary.entries,
                    stores = summary.stores,
                    batches = summary.batches,
                    bindings = summary.bindings
                );
                None
            }
            Err(reason) => {
                self.done = true;
                log::error!(
                    "admin: export failed",
                    tenant = self.tenant,
                    reason = reason
                );
                Some(Err(worker::Error::RustError(reason)))
            }
        }
    }

    async fn page(&mut self) -> std::result::Result<Option<Vec<u8>>, String> {
        self.unchanged()?;
        let lines = self.exporter.next_lines(&mut self.backend).await?;
        self.unchanged()?;
        Ok(lines.map(|lines| lines.concat().into_bytes()))
    }

    fn unchanged(&self) -> std::result::Result<(), String> {
        if self.ops.epoch() == self.epoch {
            Ok(())
        } else {
            Err("the tenant was deleted or replaced during the export".into())
        }
    }
}
