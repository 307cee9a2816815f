//! Effect's `EventJournal.Entry`: the plaintext inside every encrypted entry.
//!
//! An Effect replica decodes what a Rust replica writes (and the reverse)
//! only if the bytes are the msgpack of Effect's
//! `Entry { id, event, primaryKey, payload }`. Effect encodes the class
//! through msgpackr as a map16 with the fields in declaration order; we write
//! exactly that, and read the four fields in any order and header width.

use crate::msgpack::{self, MsgPackError, Reader};
use std::fmt;

/// An entry id: the 16 bytes of a UUID v7, unique per entry and the dedup
/// key on the server. Its first 48 bits are the creation time in ms, which
/// is how Effect dates entries (`entryIdMillis`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub [u8; 16]);

impl EntryId {
    /// A new UUID v7 for now, as Effect's `makeEntryId`.
    pub fn new_v7() -> Self {
        EntryId(*uuid::Uuid::now_v7().as_bytes())
    }

    /// Milliseconds since the Unix epoch when the entry was made.
    pub fn created_at_millis(&self) -> u64 {
        self.0[..6]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | b as u64)
    }

    /// The hyphenated UUID text (Effect's `entry.idString`).
    pub fn to_uuid_string(&self) -> String {
        uuid::Uuid::from_bytes(self.0).hyphenated().to_string()
    }

    /// Reads an id from wire bytes; `None` unless exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(EntryId)
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryId({})", self.to_uuid_string())
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uuid_string())
    }
}

/// One event as Effect's journal keeps it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub id: EntryId,
    /// The event tag, e.g. `"Note"` for `EventGroup.add({ tag: "Note" })`.
    pub event: String,
    /// What Effect compacts and detects conflicts by.
    pub primary_key: String,
    /// The event payload, itself msgpack of the payload schema's encoded
    /// form (opaque bytes to the journal).
    pub payload: Vec<u8>,
}

impl Entry {
    /// The msgpack bytes Effect produces for this entry (what gets sealed).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(48 + self.event.len() + self.primary_key.len() + self.payload.len());
        msgpack::write_map16(&mut out, 4);
        msgpack::write_str(&mut out, "id");
        msgpack::write_bin(&mut out, &self.id.0);
        msgpack::write_str(&mut out, "event");
        msgpack::write_str(&mut out, &self.event);
        msgpack::write_str(&mut out, "primaryKey");
        msgpack::write_str(&mut out, &self.primary_key);
        msgpack::write_str(&mut out, "payload");
        msgpack::write_bin(&mut out, &self.payload);
        out
    }

    /// Reads an entry from decrypted bytes. Keys may come in any order;
    /// extra keys are ignored (as Effect's Schema does); the four fields
    /// are required with their types.
    pub fn decode(bytes: &[u8]) -> Result<Entry, MsgPackError> {
        let mut r = Reader::new(bytes);
        let len = r.map_len()?;
        let (mut id, mut event, mut primary_key, mut payload) = (None, None, None, None);
        for _ in 0..len {
            match r.str()? {
                "id" => {
                    let offset = bytes.len() - r.remaining();
                    let b = r.bin()?;
                    id = Some(EntryId::from_slice(b).ok_or_else(|| MsgPackError {
                        offset,
                        detail: format!("entry id has {} bytes, expected 16", b.len()),
                    })?);
                }
                "event" => event = Some(r.str()?.to_owned()),
                "primaryKey" => primary_key = Some(r.str()?.to_owned()),
                "payload" => payload = Some(r.bin()?.to_vec()),
                _ => r.skip()?,
            }
        }
        let missing = |name: &str| MsgPackError {
            offset: bytes.len() - r.remaining(),
            detail: format!("entry has no {name}"),
        };
        let entry = Entry {
            id: id.ok_or_else(|| missing("id"))?,
            event: event.ok_or_else(|| missing("event"))?,
            primary_key: primary_key.ok_or_else(|| missing("primaryKey"))?,
            payload: payload.ok_or_else(|| missing("payload"))?,
        };
        if r.remaining() != 0 {
            return Err(MsgPackError {
                offset: bytes.len() - r.remaining(),
                detail: "trailing bytes after the entry".into(),
            });
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_effect() {
        // `Entry.encodeArray([new Entry({ id: 16 × 0x01, event: "Note",
        // primaryKey: "k", payload: msgpack({a: 1}) })])` in node.
        let entry = Entry {
            id: EntryId([1; 16]),
            event: "Note".into(),
            primary_key: "k".into(),
            payload: vec![0x81, 0xa1, 0x61, 1],
        };
        let expected = "de0004a26964c41001010101010101010101010101010101a56576656e74a44e6f7465aa7072696d6172794b6579a16ba77061796c6f6164c40481a16101";
        assert_eq!(msgpack::hex(&entry.encode()), expected);
        assert_eq!(Entry::decode(&entry.encode()).unwrap(), entry);
    }

    #[test]
    fn decodes_any_key_order_and_rejects_missing_fields() {
        let mut out = Vec::new();
        out.push(0x85);
        msgpack::write_str(&mut out, "payload");
        msgpack::write_bin(&mut out, b"p");
        msgpack::write_str(&mut out, "extra");
        out.push(0xc0);
        msgpack::write_str(&mut out, "primaryKey");
        msgpack::write_str(&mut out, "pk");
        msgpack::write_str(&mut out, "event");
        msgpack::write_str(&mut out, "E");
        msgpack::write_str(&mut out, "id");
        msgpack::write_bin(&mut out, &[9; 16]);
        let e = Entry::decode(&out).unwrap();
        assert_eq!((e.event.as_str(), e.primary_key.as_str()), ("E", "pk"));
        assert_eq!(e.id, EntryId([9; 16]));

        let mut short = Vec::new();
        short.push(0x81);
        msgpack::write_str(&mut short, "event");
        msgpack::write_str(&mut short, "E");
        assert!(Entry::decode(&short).unwrap_err().detail.contains("no id"));
    }

    #[test]
    fn v7_ids_carry_the_time() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = EntryId::new_v7();
        let ms = id.created_at_millis();
        assert!(ms >= before && ms < before + 60_000, "{ms} vs {before}");
        assert_eq!(id.0[6] >> 4, 7, "version 7");
    }
}
