//! Writes an export, line by line, as the entries come out of storage.

use super::order::BodyOrder;
use super::record::{ExportHeader, ExportSummary, entry_line, trailer_line};
use super::v4_record::{batch_line, binding_line, store_line};
use crate::storage::{SigningKeyBinding, StoreHead, StoredBatch};
use crate::wire::RemoteEntry;
use sha2::{Digest, Sha256};

/// Produces an export's lines in order and keeps the running checksum.
/// Each call returns the bytes to write next; the caller streams them
/// wherever it likes (a file, an HTTP body), so no export is ever held
/// whole in memory.
///
/// The writer checks what it is given with the reader's rules
/// ([`BodyOrder`]: a log's entries together, sequences 1, 2, 3 …; then
/// each v4 store's header and its batches without a gap up to its head;
/// then the bindings), so that it never writes a file the reader would
/// refuse.
pub struct ExportWriter {
    sha: Sha256,
    order: BodyOrder,
    summary: ExportSummary,
}

impl ExportWriter {
    /// Starts an export; returns the writer and the header line.
    pub fn new(header: &ExportHeader) -> (Self, String) {
        let line = header.to_line();
        let mut sha = Sha256::new();
        sha.update(line.as_bytes());
        let writer = ExportWriter {
            sha,
            order: BodyOrder::default(),
            summary: ExportSummary::default(),
        };
        (writer, line)
    }

    /// The line of `entry` of `public_key`'s log.
    pub fn entry(&mut self, public_key: &str, entry: &RemoteEntry) -> Result<String, String> {
        let new_log = self.order.entry(public_key, entry.sequence)?;
        if new_log {
            self.summary.logs += 1;
        }
        self.summary.entries += 1;
        Ok(self.hashed(entry_line(public_key, entry)))
    }

    /// The header line of a v4 store; its batches follow, from sequence 1
    /// up to `head.head`. After every v3 entry.
    pub fn store(&mut self, head: &StoreHead) -> Result<String, String> {
        self.order.store(head)?;
        self.summary.stores += 1;
        Ok(self.hashed(store_line(head)))
    }

    /// The line of the next batch of the store whose header came last.
    pub fn batch(&mut self, batch: &StoredBatch) -> Result<String, String> {
        self.order.batch(batch)?;
        self.summary.batches += 1;
        Ok(self.hashed(batch_line(batch)))
    }

    /// The line of a session-auth binding. After every store.
    pub fn binding(&mut self, binding: &SigningKeyBinding) -> Result<String, String> {
        self.order.binding(&binding.public_key)?;
        self.summary.bindings += 1;
        Ok(self.hashed(binding_line(binding)))
    }

    /// Refuses to end a file whose last store is missing batches (the
    /// reader would refuse it); [`ExportWriter::finish`] after `Ok`.
    pub fn check_complete(&mut self) -> Result<(), String> {
        self.order.end()
    }

    fn hashed(&mut self, line: String) -> String {
        self.sha.update(line.as_bytes());
        line
    }

    /// Entries written so far.
    pub fn summary(&self) -> ExportSummary {
        self.summary
    }

    /// The trailer line; the export is complete once it is written.
    pub fn finish(self) -> String {
        let digest = self.sha.finalize();
        trailer_line(self.summary, &hex(&digest))
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
