//! `EventLog.Changes`: the stream's payload, its chunk values, and the
//! batch/entry arrays inside a `Single` value's frame.

use bytes::Bytes;

use super::fields;
use super::write::{
    BatchPartial, ChunkedMessage, DATA, Entry, PUBLIC_KEY, STORE_ID, batch_cell, decode_data,
    encode_entry_ids, row_field,
};
use crate::proto::v4::error::{Result, err};
use crate::proto::v4::schema_binary::fnv::{field_id, variant_tag};
use crate::proto::v4::schema_binary::frame::PREALLOCATE;
use crate::proto::v4::schema_binary::reader::{StructReader, required};
use crate::proto::v4::schema_binary::rows::{Row, RowField, read_rows, write_rows};
use crate::proto::v4::schema_binary::{Reader, Text, Value, Writer};

const START_SEQUENCE: u32 = field_id("startSequence");

/// The payload of `EventLog.Changes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesPayload {
    /// The store to follow.
    pub store_id: String,
    /// The first sequence the client wants (its cursor: max seen + 1).
    pub start_sequence: u64,
    /// The identity whose store it is.
    pub public_key: String,
}

impl Value for ChangesPayload {
    const NAME: &'static str = "Changes";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let (mut store_id, mut start_sequence, mut public_key) = (None, None, None);
        let mut s = StructReader::new(r, &[STORE_ID, START_SEQUENCE, PUBLIC_KEY]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => store_id = fields::string("storeId", v)?,
                1 => start_sequence = fields::natural_field("startSequence", v)?,
                _ => public_key = fields::string("publicKey", v)?,
            }
        }
        Ok(ChangesPayload {
            store_id: required(store_id, "storeId")?,
            start_sequence: required(start_sequence, "startSequence")?,
            public_key: required(public_key, "publicKey")?,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.field_str(STORE_ID, &self.store_id);
        w.field_int(START_SEQUENCE, self.start_sequence as i64);
        w.field_str(PUBLIC_KEY, &self.public_key);
    }
}

/// `Single` (`0xc640300c`).
pub const SINGLE_TAG: u32 = variant_tag("Single");
/// `Chunked` (`0x85c3bb47`).
pub const CHUNKED_TAG: u32 = variant_tag("Chunked");

/// One value of a Changes stream chunk: `Union(SingleMessage,
/// ChunkedMessage)`. The data is a frame of the batch array (encrypted) or
/// entry array (unencrypted), whole or in pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangesValue {
    /// A whole frame (≤ 512,000 bytes).
    Single {
        /// The frame.
        data: Bytes,
    },
    /// A piece of a larger frame.
    Chunked(ChunkedMessage),
}

impl Value for ChangesValue {
    const NAME: &'static str = "ChangesValue";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match fields::variant_tag(r)? {
            SINGLE_TAG => Ok(ChangesValue::Single {
                data: decode_data(r).map_err(|e| e.in_field("Single"))?,
            }),
            CHUNKED_TAG => ChunkedMessage::decode_fields(r, false)
                .map(ChangesValue::Chunked)
                .map_err(|e| e.in_field("Chunked")),
            tag => Err(err!(UnknownVariant, "variant tag {tag:#010x}")),
        }
    }

    fn encode(&self, w: &mut Writer) {
        match self {
            ChangesValue::Single { data } => {
                fields::write_variant_tag(w, SINGLE_TAG);
                w.field_bytes(DATA, data);
            }
            ChangesValue::Chunked(chunk) => {
                fields::write_variant_tag(w, CHUNKED_TAG);
                chunk.encode_fields(w, false);
            }
        }
    }
}

/// `NonEmptyArray(Union(Single, Chunked))`: the `values` hole of a Changes
/// `Chunk` envelope. Each element is `uv(len)` + the union member.
impl Value for Vec<ChangesValue> {
    const NAME: &'static str = "ChangesChunk";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let count = non_empty_count(r)?;
        let mut values = Vec::with_capacity(count.min(PREALLOCATE));
        for i in 0..count {
            let value = r
                .sized()
                .and_then(|mut v| {
                    let value = ChangesValue::decode(&mut v)?;
                    v.finish()?;
                    Ok(value)
                })
                .map_err(|e| e.in_index(i))?;
            values.push(value);
        }
        Ok(values)
    }

    fn encode(&self, w: &mut Writer) {
        w.uv(self.len() as u64);
        for value in self {
            w.sized(|w| value.encode(w));
        }
    }
}

fn non_empty_count(r: &mut Reader<'_>) -> Result<usize> {
    let count = r.count()?;
    if count == 0 {
        return Err(err!(InvalidValue, "an empty NonEmptyArray"));
    }
    Ok(count)
}

/// A stored encrypted batch as the server sends it: its entries hold the
/// sequences `sequence ..= sequence + entry_ids.len() − 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedRemoteBatch {
    /// The sequence of its first entry.
    pub sequence: u64,
    /// The AES-GCM nonce.
    pub iv: Bytes,
    /// The ciphertext.
    pub encrypted_batch: Bytes,
    /// The entries' ids, in order; never empty.
    pub entry_ids: Vec<Bytes>,
}

impl Row for EncryptedRemoteBatch {
    const FIELDS: &'static [RowField] = &[
        row_field("sequence", false),
        row_field("iv", false),
        row_field("encryptedBatch", false),
        row_field("entryIds", false),
    ];
    type Partial = BatchPartial;

    fn cell(p: &mut BatchPartial, index: usize, r: &mut Reader<'_>) -> Result<()> {
        match index {
            0 => {
                p.sequence = Some(r.natural()?);
                Ok(())
            }
            _ => batch_cell(p, Self::FIELDS[index].name, r),
        }
    }

    fn text_cell(_: &mut BatchPartial, _: usize, _: Text) -> Result<()> {
        Err(err!(BadReference, "a text cell in a batch"))
    }

    fn finish(p: BatchPartial) -> Result<Self> {
        Ok(EncryptedRemoteBatch {
            sequence: required(p.sequence, "sequence")?,
            iv: required(p.iv, "iv")?,
            encrypted_batch: required(p.encrypted_batch, "encryptedBatch")?,
            entry_ids: required(p.entry_ids, "entryIds")?,
        })
    }

    fn write_cell(&self, index: usize, w: &mut Writer) {
        match index {
            0 => w.nv(self.sequence as i64),
            1 => w.bytes(&self.iv),
            2 => w.bytes(&self.encrypted_batch),
            _ => encode_entry_ids(&self.entry_ids, w),
        }
    }
}

/// `NonEmptyArray(EncryptedRemoteBatch)`: the frame inside an encrypted
/// Changes value.
impl Value for Vec<EncryptedRemoteBatch> {
    const NAME: &'static str = "EncryptedRemoteBatches";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        non_empty(read_rows(r)?)
    }

    fn encode(&self, w: &mut Writer) {
        write_rows(w, self);
    }
}

fn non_empty<T>(rows: Vec<T>) -> Result<Vec<T>> {
    if rows.is_empty() {
        return Err(err!(InvalidValue, "an empty NonEmptyArray"));
    }
    Ok(rows)
}

/// A plaintext entry as the unencrypted server sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// The entry.
    pub entry: Entry,
    /// Its sequence on the server.
    pub remote_sequence: u64,
}

/// A remote entry's fields so far.
#[doc(hidden)]
#[derive(Default)]
pub struct RemoteEntryPartial {
    entry: Option<Entry>,
    remote_sequence: Option<u64>,
}

impl Row for RemoteEntry {
    const FIELDS: &'static [RowField] = &[
        row_field("entry", false),
        row_field("remoteSequence", false),
    ];
    type Partial = RemoteEntryPartial;

    fn cell(p: &mut RemoteEntryPartial, index: usize, r: &mut Reader<'_>) -> Result<()> {
        match index {
            0 => p.entry = Some(Entry::decode(r)?),
            _ => p.remote_sequence = Some(r.natural()?),
        }
        Ok(())
    }

    fn text_cell(_: &mut RemoteEntryPartial, _: usize, _: Text) -> Result<()> {
        Err(err!(BadReference, "a text cell in a remote entry"))
    }

    fn finish(p: RemoteEntryPartial) -> Result<Self> {
        Ok(RemoteEntry {
            entry: required(p.entry, "entry")?,
            remote_sequence: required(p.remote_sequence, "remoteSequence")?,
        })
    }

    fn write_cell(&self, index: usize, w: &mut Writer) {
        match index {
            0 => self.entry.encode(w),
            _ => w.nv(self.remote_sequence as i64),
        }
    }
}

/// `NonEmptyArray(RemoteEntry)`: the frame inside an unencrypted Changes
/// value.
impl Value for Vec<RemoteEntry> {
    const NAME: &'static str = "RemoteEntries";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        non_empty(read_rows(r)?)
    }

    fn encode(&self, w: &mut Writer) {
        write_rows(w, self);
    }
}
