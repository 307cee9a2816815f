//! Moving a tenant's store into and out of the export format, over any
//! backend ([`AsyncStorage`]): the one export loop and the one import
//! loop that the native server, the CLI and the Worker share.

use super::page::TRANSFER_PAGE;
use super::reader::ReadItem;
use super::record::{ExportHeader, ExportSummary};
use super::v4_transfer::{V4Export, V4Import};
use super::writer::ExportWriter;
use crate::storage::{AppendBatch, AsyncStorage, LogHead};
use crate::wire::{EncryptedEntry, RemoteEntry, Sequence};

/// Writes `store` as an export of `tenant`, handing each line to `emit` as
/// soon as it exists: [`Exporter`] driven to the end. `emit`'s error stops
/// the export.
pub async fn export_store<S, E>(
    store: &mut S,
    tenant: &str,
    mut emit: E,
) -> Result<ExportSummary, String>
where
    S: AsyncStorage,
    E: FnMut(String) -> Result<(), String>,
{
    let (mut exporter, header) = Exporter::start(store, tenant).await?;
    emit(header)?;
    while let Some(lines) = exporter.next_lines(store).await? {
        for line in lines {
            emit(line)?;
        }
    }
    Ok(exporter.summary())
}

/// An export taken a page at a time, for a consumer that asks for the
/// next bytes when it has room for them (an HTTP body that the client
/// reads at its own pace: the Worker's export), so that no more than one
/// page ([`TRANSFER_PAGE`]) is ever held.
///
/// The cut: every log up to the head [`AsyncStorage::logs`] listed when
/// the export began, every v4 store up to the head [`AsyncStorage::stores`]
/// listed, and the bindings [`AsyncStorage::bindings`] listed, so
/// everything acked before the export started is in it, and an append
/// during the export is either wholly in a log's (store's) run or not at
/// all. The store must stay the same tenant's store between calls
/// (a caller that may delete or replace the tenant meanwhile must stop).
pub struct Exporter {
    writer: Option<ExportWriter>,
    logs: Vec<LogHead>,
    /// Index in `logs` of the log being read.
    log: usize,
    /// Its next sequence to read.
    next: Sequence,
    /// Effect v4's stores and bindings, after the logs.
    v4: V4Export,
    summary: ExportSummary,
}

impl Exporter {
    /// Reads the tenant's remoteId, revocation instant and log heads;
    /// returns the exporter and the header line.
    pub async fn start<S: AsyncStorage>(
        store: &mut S,
        tenant: &str,
    ) -> Result<(Self, String), String> {
        let remote_id = store
            .remote_id()
            .await
            .map_err(failed("reading the remoteId"))?;
        let tokens_not_before = store
            .tokens_not_before()
            .await
            .map_err(failed("reading the revocation instant"))?;
        let logs = store.logs().await.map_err(failed("listing the logs"))?;
        let v4 = V4Export::start(store).await?;
        let (writer, header) = ExportWriter::new(&ExportHeader {
            tenant: tenant.to_owned(),
            remote_id,
            tokens_not_before,
        });
        let exporter = Exporter {
            writer: Some(writer),
            logs,
            log: 0,
            next: 1,
            v4,
            summary: ExportSummary::default(),
        };
        Ok((exporter, header))
    }

    /// The next lines: one page of entries read from `store`, then of v4
    /// batches and bindings, then the trailer alone; `None` once the
    /// trailer was given.
    pub async fn next_lines<S: AsyncStorage>(
        &mut self,
        store: &mut S,
    ) -> Result<Option<Vec<String>>, String> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(None);
        };
        while let Some(log) = self.logs.get(self.log) {
            if self.next > log.head {
                self.log += 1;
                self.next = 1;
                continue;
            }
            let page = store
                .read(&log.public_key, self.next, TRANSFER_PAGE)
                .await
                .map_err(failed("reading entries"))?;
            let Some(last) = page.last().map(|e| e.sequence) else {
                return Err(format!(
                    "log {}: the store listed head {} but has no entry from {} on",
                    log.public_key, log.head, self.next
                ));
            };
            let mut lines = Vec::with_capacity(page.len());
            for entry in page.iter().take_while(|e| e.sequence <= log.head) {
                lines.push(writer.entry(&log.public_key, entry)?);
            }
            self.next = last + 1;
            self.summary = writer.summary();
            return Ok(Some(lines));
        }
        if let Some(lines) = self.v4.next_lines(store, writer).await? {
            self.summary = writer.summary();
            return Ok(Some(lines));
        }
        writer.check_complete()?;
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        self.summary = writer.summary();
        Ok(Some(vec![writer.finish()]))
    }

    /// Logs, entries, stores, batches and bindings given so far (all of
    /// them once done).
    pub fn summary(&self) -> ExportSummary {
        self.summary
    }
}

fn failed(what: &str) -> impl Fn(crate::storage::StorageError) -> String {
    let what = what.to_owned();
    move |e| format!("{what}: {e}")
}

/// Writes an export's items into a store, as a reader yields them. The
/// store must be empty (a fresh staging store: an adapter commits the
/// import by putting the staged store in the tenant's place only after
/// [`ReadItem::End`], so a damaged file changes nothing).
///
/// Entries are appended with the storage contract's own `append`, which
/// numbers a log's entries 1, 2, 3 …; the importer checks that each entry
/// got the sequence the file gives it, so replicas' cursors stay valid.
/// Effect v4 batches and bindings likewise ([`V4Import`]).
#[derive(Default)]
pub struct Importer {
    header: Option<ExportHeader>,
    pending: Vec<AppendBatch>,
    /// The file's sequence of each pending entry, in order.
    expected: Vec<Sequence>,
    pending_bytes: usize,
    v4: V4Import,
    summary: ExportSummary,
}

impl Importer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&ExportHeader> {
        self.header.as_ref()
    }

    /// Applies the next item. After `Ok` for [`ReadItem::End`], everything
    /// is in the store.
    pub async fn apply<S: AsyncStorage>(
        &mut self,
        store: &mut S,
        item: ReadItem,
    ) -> Result<(), String> {
        match item {
            ReadItem::Header(header) => {
                if self.header.is_some() {
                    return Err("a second header".into());
                }
                let logs = store
                    .logs()
                    .await
                    .map_err(|e| format!("listing the target's logs: {e}"))?;
                if !logs.is_empty() {
                    return Err(format!(
                        "the target store already holds {} logs; import into an empty store",
                        logs.len()
                    ));
                }
                let stores = store
                    .stores()
                    .await
                    .map_err(|e| format!("listing the target's v4 stores: {e}"))?;
                let bindings = store
                    .bindings()
                    .await
                    .map_err(|e| format!("listing the target's v4 bindings: {e}"))?;
                if !stores.is_empty() || !bindings.is_empty() {
                    return Err(format!(
                        "the target store already holds {} v4 stores and {} bindings; import into an empty store",
                        stores.len(),
                        bindings.len()
                    ));
                }
                store
                    .adopt_remote_id(header.remote_id)
                    .await
                    .map_err(|e| format!("keeping the remoteId: {e}"))?;
                if let Some(at) = header.tokens_not_before {
                    store
                        .set_tokens_not_before(at)
                        .await
                        .map_err(|e| format!("keeping the revocation instant: {e}"))?;
                }
                self.header = Some(header);
                Ok(())
            }
            ReadItem::Entry { public_key, entry } => {
                if self.header.is_none() {
                    return Err("an entry before the header".into());
                }
                self.push(public_key, entry);
                if self.expected.len() >= TRANSFER_PAGE.max_entries
                    || self.pending_bytes >= TRANSFER_PAGE.max_bytes
                {
                    self.flush(store).await?;
                }
                Ok(())
            }
            ReadItem::Store(_) => {
                self.started()?;
                // v3 entries all come before the first store.
                self.flush(store).await?;
                self.summary.stores += 1;
                Ok(())
            }
            ReadItem::Batch { store: key, batch } => {
                self.started()?;
                self.summary.batches += 1;
                self.v4.batch(store, key, batch).await
            }
            ReadItem::Binding(binding) => {
                self.started()?;
                self.summary.bindings += 1;
                self.v4.binding(store, &binding).await
            }
            ReadItem::End(summary) => {
                self.flush(store).await?;
                self.v4.flush(store).await?;
                if summary != self.summary {
                    return Err(format!(
                        "imported {:?}, the file states {:?}",
                        self.summary, summary
                    ));
                }
                Ok(())
            }
        }
    }

    /// What was imported so far.
    pub fn summary(&self) -> ExportSummary {
        self.summary
    }

    fn started(&self) -> Result<(), String> {
        match self.header {
            Some(_) => Ok(()),
            None => Err("a record before the header".into()),
        }
    }

    fn push(&mut self, public_key: String, entry: RemoteEntry) {
        if entry.sequence == 1 {
            self.summary.logs += 1;
        }
        self.summary.entries += 1;
        self.pending_bytes += crate::storage::entry_bytes(&entry);
        self.expected.push(entry.sequence);
        let encrypted = EncryptedEntry {
            entry_id: entry.entry_id,
            encrypted_entry: entry.encrypted_entry,
        };
        // One batch per run of entries of one log with one iv (a batch
        // stores its iv with each of its entries).
        match self.pending.last_mut() {
            Some(batch) if batch.public_key == public_key && batch.iv == entry.iv => {
                batch.entries.push(encrypted);
            }
            _ => self.pending.push(AppendBatch {
                public_key,
                iv: entry.iv,
                entries: vec![encrypted],
            }),
        }
    }

    async fn flush<S: AsyncStorage>(&mut self, store: &mut S) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let results = store
            .append(&self.pending)
            .await
            .map_err(|e| format!("storing entries: {e}"))?;
        let mut expected = self.expected.iter();
        for (batch, outcome) in self.pending.iter().zip(&results) {
            for (entry, appended) in batch.entries.iter().zip(outcome) {
                let want = expected.next().copied().unwrap_or_default();
                if !appended.inserted {
                    return Err(format!(
                        "log {}: entry {} appears twice (sequences {} and {want})",
                        batch.public_key,
                        hex_id(&entry.entry_id),
                        appended.sequence
                    ));
                }
                if appended.sequence != want {
                    return Err(format!(
                        "log {}: the store numbered an entry {} where the file has {want}",
                        batch.public_key, appended.sequence
                    ));
                }
            }
        }
        self.pending.clear();
        self.expected.clear();
        self.pending_bytes = 0;
        Ok(())
    }
}

fn hex_id(bytes: &[u8]) -> String {
    super::writer::hex(bytes)
}
