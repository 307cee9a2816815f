//! Reads an export incrementally and refuses a damaged one.

use super::order::BodyOrder;
use super::record::{BodyLine, ExportHeader, ExportSummary, parse_body_line};
use super::writer::hex;
use crate::storage::{SigningKeyBinding, StoreHead, StoreKey, StoredBatch};
use crate::wire::RemoteEntry;
use sha2::{Digest, Sha256};

/// The longest line the reader accepts: an entry of the largest message a
/// server takes, in base64, with room to spare. A longer line means a
/// damaged (or hostile) file, and refusing it bounds the reader's memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Why an export was refused. Carries the line number (1-based) when one
/// line is to blame.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExportError {
    pub line: Option<u64>,
    pub message: String,
}

impl core::fmt::Display for ExportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ExportError {}

/// One item of an export, in file order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ReadItem {
    Header(ExportHeader),
    Entry {
        public_key: String,
        entry: RemoteEntry,
    },
    /// An Effect v4 store's header (version 2): its batches follow, from
    /// sequence 1 to `head`.
    Store(StoreHead),
    /// One batch of `store`, at its exported sequence.
    Batch {
        store: StoreKey,
        batch: StoredBatch,
    },
    /// A v4 session-auth binding (version 2).
    Binding(SigningKeyBinding),
    /// The trailer, checked: counts and checksum match what was read.
    End(ExportSummary),
}

/// Reads an export from bytes pushed in any slicing ([`ExportReader::push`])
/// and hands out its items ([`ExportReader::next_item`]), checking as it
/// goes. Only after [`ReadItem::End`] is the file known to be whole: an
/// importer stages what it reads and commits only then.
pub struct ExportReader {
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for a newline.
    scanned: usize,
    line: u64,
    sha: Sha256,
    state: State,
    /// The format version the header states (once read).
    version: u64,
    order: BodyOrder,
    summary: ExportSummary,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    Ended,
}

impl Default for ExportReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ExportReader {
    pub fn new() -> Self {
        ExportReader {
            buffer: Vec::new(),
            scanned: 0,
            line: 0,
            sha: Sha256::new(),
            state: State::Header,
            version: 0,
            order: BodyOrder::default(),
            summary: ExportSummary::default(),
        }
    }

    /// Adds the file's next bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<ReadItem>, ExportError> {
        let Some(offset) = self.buffer[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buffer.len();
            if self.buffer.len() > MAX_LINE_BYTES {
                return Err(self.error_next(format!(
                    "a line longer than {MAX_LINE_BYTES} bytes (damaged file?)"
                )));
            }
            return Ok(None);
        };
        let end = self.scanned + offset;
        let raw: Vec<u8> = self.buffer.drain(..=end).collect();
        self.scanned = 0;
        self.line += 1;
        if self.state == State::Ended {
            return Err(self.error("bytes after the trailer (damaged file?)".into()));
        }
        let text = core::str::from_utf8(&raw[..raw.len() - 1])
            .map_err(|_| self.error("not UTF-8 text".into()))?;
        match self.state {
            State::Header => {
                let (header, version) = ExportHeader::parse(text).map_err(|m| self.error(m))?;
                self.sha.update(&raw);
                self.version = version;
                self.state = State::Body;
                Ok(Some(ReadItem::Header(header)))
            }
            State::Body => match parse_body_line(text, self.version).map_err(|m| self.error(m))? {
                BodyLine::Entry { public_key, entry } => {
                    let new_log = self
                        .order
                        .entry(&public_key, entry.sequence)
                        .map_err(|m| self.error(m))?;
                    if new_log {
                        self.summary.logs += 1;
                    }
                    self.summary.entries += 1;
                    self.sha.update(&raw);
                    Ok(Some(ReadItem::Entry { public_key, entry }))
                }
                BodyLine::Store(head) => {
                    self.order.store(&head).map_err(|m| self.error(m))?;
                    self.summary.stores += 1;
                    self.sha.update(&raw);
                    Ok(Some(ReadItem::Store(head)))
                }
                BodyLine::Batch(batch) => {
                    let store = match self.order.batch(&batch) {
                        Ok(store) => store.clone(),
                        Err(m) => return Err(self.error(m)),
                    };
                    self.summary.batches += 1;
                    self.sha.update(&raw);
                    Ok(Some(ReadItem::Batch { store, batch }))
                }
                BodyLine::Binding(binding) => {
                    self.order
                        .binding(&binding.public_key)
                        .map_err(|m| self.error(m))?;
                    self.summary.bindings += 1;
                    self.sha.update(&raw);
                    Ok(Some(ReadItem::Binding(binding)))
                }
                BodyLine::End {
                    summary,
                    sha256_hex,
                } => {
                    self.order.end().map_err(|m| self.error(m))?;
                    let digest = hex(&core::mem::take(&mut self.sha).finalize());
                    if digest != sha256_hex {
                        return Err(self.error(format!(
                            "checksum mismatch: the trailer says {sha256_hex}, the file hashes to {digest} (damaged file)"
                        )));
                    }
                    if summary != self.summary {
                        return Err(self.error(format!(
                            "the trailer counts {}, the file holds {}",
                            counts(&summary),
                            counts(&self.summary)
                        )));
                    }
                    self.state = State::Ended;
                    Ok(Some(ReadItem::End(summary)))
                }
            },
            State::Ended => unreachable!("checked above"),
        }
    }

    /// Call at the end of the file: refuses a file that stopped early.
    pub fn finish(&self) -> Result<ExportSummary, ExportError> {
        if !self.buffer.is_empty() && self.state != State::Ended {
            return Err(self.error_next("the file ends inside a line (truncated)".into()));
        }
        match self.state {
            State::Ended if self.buffer.is_empty() => Ok(self.summary),
            State::Ended => Err(self.error_next("bytes after the trailer (damaged file?)".into())),
            State::Header => Err(ExportError {
                line: None,
                message: "the file is empty (no header)".into(),
            }),
            State::Body => Err(ExportError {
                line: None,
                message: format!(
                    "the file ends after {} entries and {} v4 batches without its trailer (truncated)",
                    self.summary.entries, self.summary.batches
                ),
            }),
        }
    }

    fn error(&self, message: String) -> ExportError {
        ExportError {
            line: Some(self.line),
            message,
        }
    }

    fn error_next(&self, message: String) -> ExportError {
        ExportError {
            line: Some(self.line + 1),
            message,
        }
    }
}

/// A summary's counts as messages give them.
fn counts(summary: &ExportSummary) -> String {
    format!(
        "{} logs / {} entries / {} stores / {} batches / {} bindings",
        summary.logs, summary.entries, summary.stores, summary.batches, summary.bindings
    )
}
