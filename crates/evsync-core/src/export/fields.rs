//! Checks on the JSON objects of an export's lines, shared by the v3 and
//! the v4 records.

use serde_json::{Map, Value};

/// Refuses keys the format does not have: a file written by a newer
/// evsync under the same version number would otherwise lose data quietly.
pub(super) fn only_keys(
    object: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!("the {what} has an unknown field \"{key}\"")),
        None => Ok(()),
    }
}
