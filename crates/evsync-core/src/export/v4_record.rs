//! The Effect v4 lines of an export (format version 2): a store's header,
//! its batches, the session-auth bindings; how each is written and parsed.
//!
//! Each is one object under one key naming its kind, as the trailer is:
//!
//! ```text
//! {"store":{"head":7,"publicKey":"<publicKey>","storeId":"<storeId>"}}
//! {"batch":{"data":"<b64>","entryIds":["<b64>",…],"iv":"<b64>","seq":1}}
//! {"binding":{"publicKey":"<publicKey>","signingKey":"<b64>"}}
//! ```
//!
//! A batch belongs to the store line before it; `seq` is the sequence of
//! its first entry (a batch of `n` entries owns `n` sequences), so a
//! replica's cursor survives the move.

use super::fields::only_keys;
use crate::storage::{SigningKeyBinding, StoreHead, StoreKey, StoredBatch};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// A store's header line: which store, and the head its batches reach.
pub(super) fn store_line(head: &StoreHead) -> String {
    line(json!({
        "store": {
            "publicKey": head.store.public_key,
            "storeId": head.store.store_id,
            "head": head.head,
        }
    }))
}

/// One batch of the store whose header came last.
pub(super) fn batch_line(batch: &StoredBatch) -> String {
    let ids: Vec<String> = batch
        .entry_ids
        .iter()
        .map(|id| STANDARD.encode(id))
        .collect();
    line(json!({
        "batch": {
            "seq": batch.sequence,
            "iv": STANDARD.encode(&batch.iv),
            "entryIds": ids,
            "data": STANDARD.encode(&batch.encrypted_batch),
        }
    }))
}

/// One session-auth binding.
pub(super) fn binding_line(binding: &SigningKeyBinding) -> String {
    line(json!({
        "binding": {
            "publicKey": binding.public_key,
            "signingKey": STANDARD.encode(binding.signing_key),
        }
    }))
}

fn line(value: Value) -> String {
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// A parsed v4 line.
pub(super) enum V4Line {
    /// A store's header; its batches follow.
    Store(StoreHead),
    Batch(StoredBatch),
    Binding(SigningKeyBinding),
}

/// Parses a line that is neither a v3 entry nor the trailer.
pub(super) fn parse(object: &Map<String, Value>, version: u64) -> Result<V4Line, String> {
    let (kind, body) = match object.iter().next() {
        Some((kind, body)) if object.len() == 1 => (kind.as_str(), body),
        _ => {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            return Err(format!("an unknown kind of record (keys {keys:?})"));
        }
    };
    if !matches!(kind, "store" | "batch" | "binding") {
        return Err(format!("an unknown kind of record \"{kind}\""));
    }
    if version < 2 {
        return Err(format!(
            "a \"{kind}\" record in a version {version} file (v4 records exist from version 2 on)"
        ));
    }
    let what = format!("{kind} record");
    let body = body
        .as_object()
        .ok_or_else(|| format!("the {what} is not an object"))?;
    match kind {
        "store" => {
            only_keys(body, &["publicKey", "storeId", "head"], &what)?;
            Ok(V4Line::Store(StoreHead {
                store: StoreKey::new(
                    text(body, "publicKey", &what)?,
                    text(body, "storeId", &what)?,
                ),
                head: number(body, "head", &what)?,
            }))
        }
        "batch" => {
            only_keys(body, &["seq", "iv", "entryIds", "data"], &what)?;
            let ids = body
                .get("entryIds")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("the {what} has no entryIds list"))?;
            let entry_ids = ids
                .iter()
                .map(|id| {
                    id.as_str()
                        .ok_or_else(|| format!("the {what}'s entryIds holds a non-string"))
                        .and_then(|text| decode(text, "entryIds", &what))
                })
                .collect::<Result<Vec<Bytes>, String>>()?;
            Ok(V4Line::Batch(StoredBatch {
                sequence: number(body, "seq", &what)?,
                iv: decode(&text(body, "iv", &what)?, "iv", &what)?,
                entry_ids,
                encrypted_batch: decode(&text(body, "data", &what)?, "data", &what)?,
            }))
        }
        _ => {
            only_keys(body, &["publicKey", "signingKey"], &what)?;
            let key = decode(&text(body, "signingKey", &what)?, "signingKey", &what)?;
            let signing_key = <[u8; 32]>::try_from(&key[..])
                .map_err(|_| format!("the {what}'s signingKey is {} bytes, not 32", key.len()))?;
            Ok(V4Line::Binding(SigningKeyBinding {
                public_key: text(body, "publicKey", &what)?,
                signing_key,
            }))
        }
    }
}

fn text(body: &Map<String, Value>, key: &str, what: &str) -> Result<String, String> {
    body.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("the {what} has no {key}"))
}

fn number(body: &Map<String, Value>, key: &str, what: &str) -> Result<u64, String> {
    body.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("the {what} has no {key}"))
}

fn decode(text: &str, key: &str, what: &str) -> Result<Bytes, String> {
    STANDARD
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| format!("the {what}'s {key} is not base64: {e}"))
}
