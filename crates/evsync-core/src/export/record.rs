//! The lines of an export file and how each is written and parsed.

use super::fields::only_keys;
use super::v4_record::{self, V4Line};
use crate::storage::{SigningKeyBinding, StoreHead, StoredBatch};
use crate::wire::{RemoteEntry, RemoteId, Sequence};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::HashSet;

/// The `format` field of every export's header.
pub const FORMAT_NAME: &str = "evsync-export";
/// The version this build writes (and the newest it reads). Version 2 adds
/// Effect v4's stores, batches and session-auth bindings after the v3
/// entries; version 1 files (v3 entries only) are still read.
pub const FORMAT_VERSION: u64 = 2;
/// The oldest version this build reads.
pub const OLDEST_FORMAT_VERSION: u64 = 1;

/// The first line: which tenant, under which remoteId.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ExportHeader {
    /// The tenant's name where it was exported (an import may give it
    /// another).
    pub tenant: String,
    /// Kept by the import: replicas' cursors are per remoteId.
    pub remote_id: RemoteId,
    /// The tenant's revocation instant (Unix ms), kept so that a move does
    /// not bring revoked tokens back to life.
    pub tokens_not_before: Option<u64>,
}

/// What the trailer states, checked by the reader.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ExportSummary {
    /// Logs with at least one entry.
    pub logs: u64,
    pub entries: u64,
    /// Effect v4 stores with at least one batch (0 in a version 1 file).
    pub stores: u64,
    pub batches: u64,
    /// Session-auth bindings (publicKey → signing key).
    pub bindings: u64,
}

impl ExportHeader {
    pub(super) fn to_line(&self) -> String {
        let mut line = json!({
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "tenant": self.tenant,
            "remoteId": self.remote_id.to_uuid_string(),
            "tokensNotBefore": self.tokens_not_before,
        })
        .to_string();
        line.push('\n');
        line
    }

    /// The header and the file's format version.
    pub(super) fn parse(line: &str) -> Result<(Self, u64), String> {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("the header is not JSON: {e}"))?;
        let object = value.as_object().ok_or("the header is not a JSON object")?;
        match object.get("format").and_then(Value::as_str) {
            Some(FORMAT_NAME) => {}
            _ => {
                return Err(format!(
                    "not an evsync export (no \"format\":\"{FORMAT_NAME}\")"
                ));
            }
        }
        let version = object
            .get("version")
            .and_then(Value::as_u64)
            .ok_or("the header has no version")?;
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(format!(
                "export format version {version} is not supported by this evsync (it reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            ));
        }
        only_keys(
            object,
            &["format", "version", "tenant", "remoteId", "tokensNotBefore"],
            "header",
        )?;
        let tenant = object
            .get("tenant")
            .and_then(Value::as_str)
            .ok_or("the header has no tenant")?
            .to_owned();
        let remote_id = object
            .get("remoteId")
            .and_then(Value::as_str)
            .ok_or("the header has no remoteId")
            .map_err(str::to_owned)
            .and_then(parse_remote_id)?;
        let tokens_not_before = match object.get("tokensNotBefore") {
            None | Some(Value::Null) => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .ok_or("the header's tokensNotBefore is not an instant")?,
            ),
        };
        let header = ExportHeader {
            tenant,
            remote_id,
            tokens_not_before,
        };
        Ok((header, version))
    }
}

/// One entry line.
pub(super) fn entry_line(public_key: &str, entry: &RemoteEntry) -> String {
    let mut line = json!({
        "log": public_key,
        "seq": entry.sequence,
        "entryId": STANDARD.encode(&entry.entry_id),
        "iv": STANDARD.encode(&entry.iv),
        "data": STANDARD.encode(&entry.encrypted_entry),
    })
    .to_string();
    line.push('\n');
    line
}

/// The trailer line (`sha256` over every byte before it), with the counts
/// of the version written ([`FORMAT_VERSION`]).
pub(super) fn trailer_line(summary: ExportSummary, sha256_hex: &str) -> String {
    let mut line = json!({
        "end": {
            "logs": summary.logs,
            "entries": summary.entries,
            "stores": summary.stores,
            "batches": summary.batches,
            "bindings": summary.bindings,
            "sha256": sha256_hex,
        }
    })
    .to_string();
    line.push('\n');
    line
}

/// A line after the header: an entry, a v4 record or the trailer.
pub(super) enum BodyLine {
    Entry {
        public_key: String,
        entry: RemoteEntry,
    },
    /// A v4 store's header line; its batches follow.
    Store(StoreHead),
    Batch(StoredBatch),
    Binding(SigningKeyBinding),
    End {
        summary: ExportSummary,
        sha256_hex: String,
    },
}

/// Parses a line after the header of a file of format `version`: a line
/// of one object whose only key names its kind (`end`, `store`, `batch`,
/// `binding`), or a v3 entry (keyed by `log`). v4 kinds exist from
/// version 2 on.
pub(super) fn parse_body_line(line: &str, version: u64) -> Result<BodyLine, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    if !object.contains_key("log") && !object.contains_key("end") {
        return Ok(match v4_record::parse(object, version)? {
            V4Line::Store(head) => BodyLine::Store(head),
            V4Line::Batch(batch) => BodyLine::Batch(batch),
            V4Line::Binding(binding) => BodyLine::Binding(binding),
        });
    }
    if let Some(end) = object.get("end") {
        only_keys(object, &["end"], "trailer")?;
        let end = end
            .as_object()
            .ok_or("the trailer's end is not an object")?;
        const V1: &[&str] = &["logs", "entries", "sha256"];
        const V2: &[&str] = &["logs", "entries", "stores", "batches", "bindings", "sha256"];
        only_keys(end, if version >= 2 { V2 } else { V1 }, "trailer")?;
        let count = |key: &str| {
            end.get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("the trailer has no {key} count"))
        };
        let sha256_hex = end
            .get("sha256")
            .and_then(Value::as_str)
            .ok_or("the trailer has no sha256")?
            .to_owned();
        return Ok(BodyLine::End {
            summary: ExportSummary {
                logs: count("logs")?,
                entries: count("entries")?,
                stores: if version >= 2 { count("stores")? } else { 0 },
                batches: if version >= 2 { count("batches")? } else { 0 },
                bindings: if version >= 2 { count("bindings")? } else { 0 },
            },
            sha256_hex,
        });
    }
    only_keys(object, &["log", "seq", "entryId", "iv", "data"], "entry")?;
    let public_key = object
        .get("log")
        .and_then(Value::as_str)
        .ok_or("the entry has no log")?
        .to_owned();
    let sequence = object
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("the entry has no seq")?;
    let bytes = |key: &str| -> Result<Bytes, String> {
        let text = object
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the entry has no {key}"))?;
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| format!("the entry's {key} is not base64: {e}"))
    };
    Ok(BodyLine::Entry {
        public_key,
        entry: RemoteEntry {
            sequence,
            iv: bytes("iv")?,
            entry_id: bytes("entryId")?,
            encrypted_entry: bytes("data")?,
        },
    })
}

/// Parses a UUID in its canonical text form (`8-4-4-4-12` hex digits) as a
/// remoteId.
pub fn parse_remote_id(text: &str) -> Result<RemoteId, String> {
    let bad = || format!("\"{text}\" is not a UUID");
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return Err(bad());
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Ok(RemoteId(out))
}

/// The order rule both sides keep: a log's entries come together, its
/// sequences run 1, 2, 3 … without a gap, and no log comes back later.
#[derive(Default)]
pub(super) struct LogOrder {
    current: Option<(String, Sequence)>,
    finished: HashSet<String>,
}

impl LogOrder {
    /// Accepts the next entry; true when it starts a new log.
    pub(super) fn accept(&mut self, public_key: &str, sequence: Sequence) -> Result<bool, String> {
        if let Some((log, last)) = &mut self.current
            && log == public_key
        {
            if sequence != *last + 1 {
                return Err(format!(
                    "log {public_key}: sequence {sequence} after {last} (sequences must run without a gap)"
                ));
            }
            *last = sequence;
            return Ok(false);
        }
        if self.finished.contains(public_key) {
            return Err(format!(
                "log {public_key} appears again after other logs (a log's entries must be together)"
            ));
        }
        if sequence != 1 {
            return Err(format!(
                "log {public_key} starts at sequence {sequence}, not 1"
            ));
        }
        if let Some((log, _)) = self.current.take() {
            self.finished.insert(log);
        }
        self.current = Some((public_key.to_owned(), 1));
        Ok(true)
    }
}
