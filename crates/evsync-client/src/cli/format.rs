//! How `tail` shows an entry: one tab-separated line for people, or one
//! JSON object per line (NDJSON) for programs.

use crate::client::DecryptedEntry;
use crate::error::EntryError;
use crate::msgpack::{decode_to_json, hex};
use crate::v4;
use serde_json::{Value, json};

/// How payloads are shown.
pub(crate) enum Payloads {
    /// v3: a payload is MessagePack.
    MsgPack,
    /// v4: a payload is a SchemaBinary frame of the event's schema; fields
    /// are named from these candidates (the frame holds only their ids).
    SchemaBinary(Vec<String>),
}

impl Payloads {
    /// The payload as JSON, if it decodes.
    fn decode(&self, payload: &[u8]) -> Option<Value> {
        match self {
            Payloads::MsgPack => decode_to_json(payload).ok(),
            Payloads::SchemaBinary(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                v4::payload::decode_json(payload, &names)
            }
        }
    }
}

/// One NDJSON line for an entry. `payload` is the payload as JSON when it
/// decodes (v3: one MessagePack value, as Effect's schema'd payloads are;
/// v4: a SchemaBinary struct of scalar fields), else `null` with the bytes
/// in `payloadHex`. v4 lines always carry `payloadHex` (the decoding
/// guesses types and names that only the schema knows).
pub(crate) fn entry_json(e: &DecryptedEntry, payloads: &Payloads) -> Value {
    let mut v = json!({
        "sequence": e.sequence,
        "entryId": e.id.to_uuid_string(),
        "event": e.event,
        "primaryKey": e.primary_key,
        "createdAt": iso8601_millis(e.created_at_millis),
        "createdAtMillis": e.created_at_millis,
        "remoteId": e.remote_id.to_uuid_string(),
    });
    match payloads.decode(&e.payload) {
        Some(payload) => {
            v["payload"] = payload;
            if matches!(payloads, Payloads::SchemaBinary(_)) {
                v["payloadHex"] = Value::from(hex(&e.payload));
            }
        }
        None => {
            v["payload"] = Value::Null;
            v["payloadHex"] = Value::from(hex(&e.payload));
        }
    }
    v
}

/// The NDJSON line for an entry that could not be opened.
pub(crate) fn error_json(e: &EntryError) -> Value {
    json!({ "sequence": e.sequence(), "error": e.to_string() })
}

/// `sequence  time  event  primaryKey  payload` for people.
pub(crate) fn entry_text(e: &DecryptedEntry, payloads: &Payloads) -> String {
    let payload = match payloads.decode(&e.payload) {
        Some(v) => v.to_string(),
        None => format!("hex:{}", hex(&e.payload)),
    };
    format!(
        "{}\t{}\t{}\t{}\t{}",
        e.sequence,
        iso8601_millis(e.created_at_millis),
        e.event,
        e.primary_key,
        payload
    )
}

/// `2024-01-02T03:04:05.678Z` for ms since the Unix epoch (UTC), as JS's
/// `Date.prototype.toISOString`.
pub(crate) fn iso8601_millis(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_match_js() {
        // new Date(0).toISOString(), new Date(1700000000123).toISOString()
        assert_eq!(iso8601_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        // A leap day.
        assert_eq!(iso8601_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
