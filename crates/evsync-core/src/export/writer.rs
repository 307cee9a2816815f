//! Writes an export, line by line, as the entries come out of storage.

use super::record::{ExportHeader, ExportSummary, LogOrder, entry_line, trailer_line};
use crate::wire::RemoteEntry;
use sha2::{Digest, Sha256};

/// Produces an export's lines in order and keeps the running checksum.
/// Each call returns the bytes to write next; the caller streams them
/// wherever it likes (a file, an HTTP body), so no export is ever held
/// whole in memory.
///
/// The writer checks what it is given with the reader's rules (a log's
/// entries together, sequences 1, 2, 3 …), so that it never writes a file
/// the reader would refuse.
pub struct ExportWriter {
    sha: Sha256,
    order: LogOrder,
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
            order: LogOrder::default(),
            summary: ExportSummary::default(),
        };
        (writer, line)
    }

    /// The line of `entry` of `public_key`'s log.
    pub fn entry(&mut self, public_key: &str, entry: &RemoteEntry) -> Result<String, String> {
        let new_log = self.order.accept(public_key, entry.sequence)?;
        if new_log {
            self.summary.logs += 1;
        }
        self.summary.entries += 1;
        let line = entry_line(public_key, entry);
        self.sha.update(line.as_bytes());
        Ok(line)
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
