//! Writes: `EventLog.WriteSingle`/`WriteChunked` payloads, the
//! `WriteEntries`/`WriteEntriesUnencrypted` frames they carry, and the acks
//! (EventLogMessage.ts, EventLogEncryption.ts, EventJournal.ts).

use bytes::Bytes;

use super::fields;
use crate::proto::v4::error::{Result, err};
use crate::proto::v4::schema_binary::fnv::field_id;
use crate::proto::v4::schema_binary::frame::PREALLOCATE;
use crate::proto::v4::schema_binary::reader::{StructReader, field, required};
use crate::proto::v4::schema_binary::rows::{Row, RowField, read_rows, write_rows};
use crate::proto::v4::schema_binary::{Reader, Text, Value, Writer};

pub(super) const DATA: u32 = field_id("data");
pub(super) const ID: u32 = field_id("id");
pub(super) const TAG: u32 = field_id("_tag");
pub(super) const PART: u32 = field_id("part");
pub(super) const STORE_ID: u32 = field_id("storeId");
pub(super) const PUBLIC_KEY: u32 = field_id("publicKey");
pub(super) const SEQUENCE: u32 = field_id("sequence");
const BATCHES: u32 = field_id("batches");
const ENTRIES: u32 = field_id("entries");
const IV: u32 = field_id("iv");
const ENCRYPTED_BATCH: u32 = field_id("encryptedBatch");
const ENTRY_IDS: u32 = field_id("entryIds");
const PAYLOAD: u32 = field_id("payload");
const PRIMARY_KEY: u32 = field_id("primaryKey");
const EVENT: u32 = field_id("event");
const ENTRY_ID: u32 = field_id("entryId");

/// The payload of `EventLog.WriteSingle` (and a Changes `Single` value):
/// `data` is a whole frame of `WriteEntries`/`WriteEntriesUnencrypted`
/// (or of the Changes batch array).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteSinglePayload {
    /// The inner frame.
    pub data: Bytes,
}

impl Value for WriteSinglePayload {
    const NAME: &'static str = "WriteSingle";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(WriteSinglePayload {
            data: decode_data(r)?,
        })
    }

    fn encode(&self, w: &mut Writer) {
        w.field_bytes(DATA, &self.data);
    }
}

/// A struct whose one field is `data` (`{data}` payloads, `Single`).
pub(super) fn decode_data(r: &mut Reader<'_>) -> Result<Bytes> {
    let mut data = None;
    let mut s = StructReader::new(r, &[DATA]);
    while let Some((_, v)) = s.next_field()? {
        data = fields::bytes(v);
    }
    required(data, "data")
}

/// One piece of a message over 512,000 bytes: the `WriteChunked` payload
/// (a struct with `_tag: "Chunked"`) and a Changes `Chunked` value (a
/// union variant, whose tag replaces the `_tag` field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedMessage {
    /// The message's id (pieces of one message share it).
    pub id: i64,
    /// This piece's index, below `total`.
    pub index: u64,
    /// How many pieces the message has.
    pub total: u64,
    /// This piece's bytes.
    pub data: Bytes,
}

/// The pieces of a message are at most this long (`ChunkedMessage.chunkSize`).
pub const CHUNK_SIZE: usize = 512_000;

impl ChunkedMessage {
    /// Decodes the fields; `with_tag` for the standalone struct, which must
    /// carry `_tag: "Chunked"` (in a union the variant tag stands for it).
    pub(super) fn decode_fields(r: &mut Reader<'_>, with_tag: bool) -> Result<Self> {
        let (mut id, mut tag, mut part, mut data) = (None, None, None, None);
        let mut s = StructReader::new(r, &[ID, TAG, PART, DATA]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => id = fields::int("id", v)?,
                // In a variant `_tag` is not a field, so it is skipped as an
                // unknown one would be.
                1 if !with_tag => {}
                1 => tag = fields::literal("_tag", "Chunked", v)?,
                2 => {
                    part = v
                        .sized()
                        .map(|r| field("part", r, decode_part))
                        .transpose()?
                }
                _ => data = fields::bytes(v),
            }
        }
        if with_tag {
            required(tag, "_tag")?;
        }
        let (index, total) = required(part, "part")?;
        Ok(ChunkedMessage {
            id: required(id, "id")?,
            index,
            total,
            data: required(data, "data")?,
        })
    }

    /// Encodes the fields (see [`decode_fields`](Self::decode_fields)).
    pub(super) fn encode_fields(&self, w: &mut Writer, with_tag: bool) {
        w.field_int(ID, self.id);
        if with_tag {
            w.field_str(TAG, "Chunked");
        }
        w.field(PART, |w| {
            w.nv(self.index as i64);
            w.nv(self.total as i64);
        });
        w.field_bytes(DATA, &self.data);
    }
}

/// `Tuple([Natural, Natural])` checked `index < total`: two raw `nv`s.
fn decode_part(r: &mut Reader<'_>) -> Result<(u64, u64)> {
    let index = r.natural().map_err(|e| e.in_index(0))?;
    let total = r.natural().map_err(|e| e.in_index(1))?;
    if index >= total {
        return Err(err!(
            InvalidValue,
            "chunk part {index} of {total}: the index must be below the total"
        ));
    }
    Ok((index, total))
}

impl Value for ChunkedMessage {
    const NAME: &'static str = "ChunkedMessage";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        ChunkedMessage::decode_fields(r, true)
    }

    fn encode(&self, w: &mut Writer) {
        self.encode_fields(w, true);
    }
}

/// An encrypted batch as a client writes it: entries with consecutive
/// sequences-to-be, one AES-GCM ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedBatch {
    /// The AES-GCM nonce (12 bytes).
    pub iv: Bytes,
    /// The ciphertext of the batch's entries.
    pub encrypted_batch: Bytes,
    /// The entries' ids (16 bytes each), in order; never empty.
    pub entry_ids: Vec<Bytes>,
}

/// `NonEmptyArray(EntryId)`: a count, then `uv(len)` + id each.
pub(super) fn decode_entry_ids(r: &mut Reader<'_>) -> Result<Vec<Bytes>> {
    let count = r.count()?;
    if count == 0 {
        return Err(err!(InvalidValue, "an empty NonEmptyArray"));
    }
    let mut ids = Vec::with_capacity(count.min(PREALLOCATE));
    for i in 0..count {
        ids.push(
            r.sized()
                .map(|mut id| id.rest_bytes())
                .map_err(|e| e.in_index(i))?,
        );
    }
    Ok(ids)
}

pub(super) fn encode_entry_ids(ids: &[Bytes], w: &mut Writer) {
    w.uv(ids.len() as u64);
    for id in ids {
        w.sized_bytes(id);
    }
}

/// A batch row's fields so far.
#[doc(hidden)]
#[derive(Default)]
pub struct BatchPartial {
    pub sequence: Option<u64>,
    pub iv: Option<Bytes>,
    pub encrypted_batch: Option<Bytes>,
    pub entry_ids: Option<Vec<Bytes>>,
}

/// Decodes one of the batch fields `iv`, `encryptedBatch`, `entryIds`
/// (shared with the remote batch, whose field list adds `sequence`).
pub(super) fn batch_cell(p: &mut BatchPartial, name: &str, r: &mut Reader<'_>) -> Result<()> {
    match name {
        "iv" => p.iv = Some(r.rest_bytes()),
        "encryptedBatch" => p.encrypted_batch = Some(r.rest_bytes()),
        _ => p.entry_ids = Some(decode_entry_ids(r)?),
    }
    Ok(())
}

pub(super) const fn row_field(name: &'static str, interned: bool) -> RowField {
    RowField {
        id: field_id(name),
        name,
        interned,
    }
}

impl Row for EncryptedBatch {
    const FIELDS: &'static [RowField] = &[
        row_field("iv", false),
        row_field("encryptedBatch", false),
        row_field("entryIds", false),
    ];
    type Partial = BatchPartial;

    fn cell(p: &mut BatchPartial, index: usize, r: &mut Reader<'_>) -> Result<()> {
        batch_cell(p, Self::FIELDS[index].name, r)
    }

    fn text_cell(_: &mut BatchPartial, _: usize, _: Text) -> Result<()> {
        Err(err!(BadReference, "a text cell in a batch"))
    }

    fn finish(p: BatchPartial) -> Result<Self> {
        Ok(EncryptedBatch {
            iv: required(p.iv, "iv")?,
            encrypted_batch: required(p.encrypted_batch, "encryptedBatch")?,
            entry_ids: required(p.entry_ids, "entryIds")?,
        })
    }

    fn write_cell(&self, index: usize, w: &mut Writer) {
        match index {
            0 => w.bytes(&self.iv),
            1 => w.bytes(&self.encrypted_batch),
            _ => encode_entry_ids(&self.entry_ids, w),
        }
    }
}

/// An encrypted write: the frame inside `WriteSingle.data` (or reassembled
/// from `WriteChunked` pieces) of an encrypted client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteEntries {
    /// The store written to (scoped by `public_key`).
    pub store_id: String,
    /// The batches, in order.
    pub batches: Vec<EncryptedBatch>,
    /// The identity writing.
    pub public_key: String,
}

/// A `{storeId, <rows>, publicKey}` struct: the write frames of both modes.
fn decode_store_write<T: Row>(
    r: &mut Reader<'_>,
    rows_id: u32,
    rows_name: &'static str,
) -> Result<(String, Vec<T>, String)> {
    let (mut store_id, mut rows, mut public_key) = (None, None, None);
    let mut s = StructReader::new(
        r,
        if rows_id == BATCHES {
            &[STORE_ID, BATCHES, PUBLIC_KEY]
        } else {
            &[STORE_ID, ENTRIES, PUBLIC_KEY]
        },
    );
    while let Some((i, v)) = s.next_field()? {
        match i {
            0 => store_id = fields::string("storeId", v)?,
            1 => {
                rows = v
                    .sized()
                    .map(|r| field(rows_name, r, read_rows::<T>))
                    .transpose()?
            }
            _ => public_key = fields::string("publicKey", v)?,
        }
    }
    Ok((
        required(store_id, "storeId")?,
        required(rows, rows_name)?,
        required(public_key, "publicKey")?,
    ))
}

fn encode_store_write<T: Row>(
    w: &mut Writer,
    store_id: &str,
    rows_id: u32,
    rows: &[T],
    public_key: &str,
) {
    w.field_str(STORE_ID, store_id);
    w.field(rows_id, |w| write_rows(w, rows));
    w.field_str(PUBLIC_KEY, public_key);
}

impl Value for WriteEntries {
    const NAME: &'static str = "WriteEntries";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let (store_id, batches, public_key) = decode_store_write(r, BATCHES, "batches")?;
        Ok(WriteEntries {
            store_id,
            batches,
            public_key,
        })
    }

    fn encode(&self, w: &mut Writer) {
        encode_store_write(w, &self.store_id, BATCHES, &self.batches, &self.public_key);
    }
}

/// A plaintext journal entry (`EventJournal.Entry`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The event's payload: a SchemaBinary frame of the event's schema.
    pub payload: Bytes,
    /// The entry id (a 16-byte UUIDv7).
    pub id: Bytes,
    /// The event's primary key.
    pub primary_key: Text,
    /// The event's tag.
    pub event: Text,
}

/// An entry's fields so far.
#[doc(hidden)]
#[derive(Default)]
pub struct EntryPartial {
    payload: Option<Bytes>,
    id: Option<Bytes>,
    primary_key: Option<Text>,
    event: Option<Text>,
}

impl EntryPartial {
    fn finish(self) -> Result<Entry> {
        Ok(Entry {
            payload: required(self.payload, "payload")?,
            id: required(self.id, "id")?,
            primary_key: required(self.primary_key, "primaryKey")?,
            event: required(self.event, "event")?,
        })
    }
}

/// An entry as a struct (inside a `RemoteEntry` cell).
impl Value for Entry {
    const NAME: &'static str = "Entry";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let mut p = EntryPartial::default();
        let mut s = StructReader::new(r, &[PAYLOAD, ID, PRIMARY_KEY, EVENT]);
        while let Some((i, v)) = s.next_field()? {
            match i {
                0 => p.payload = fields::bytes(v),
                1 => p.id = fields::bytes(v),
                2 => {
                    p.primary_key = v
                        .sized()
                        .map(|r| field("primaryKey", r, |r| r.rest_text()))
                        .transpose()?
                }
                _ => {
                    p.event = v
                        .sized()
                        .map(|r| field("event", r, |r| r.rest_text()))
                        .transpose()?
                }
            }
        }
        p.finish()
    }

    fn encode(&self, w: &mut Writer) {
        w.field_bytes(PAYLOAD, &self.payload);
        w.field_bytes(ID, &self.id);
        w.field_bytes(PRIMARY_KEY, self.primary_key.as_bytes());
        w.field_bytes(EVENT, self.event.as_bytes());
    }
}

/// An entry as a row (in `WriteEntriesUnencrypted.entries`), where Effect
/// interns `primaryKey` and `event`.
impl Row for Entry {
    const FIELDS: &'static [RowField] = &[
        row_field("payload", false),
        row_field("id", false),
        row_field("primaryKey", true),
        row_field("event", true),
    ];
    type Partial = EntryPartial;

    fn cell(p: &mut EntryPartial, index: usize, r: &mut Reader<'_>) -> Result<()> {
        match index {
            0 => p.payload = Some(r.rest_bytes()),
            _ => p.id = Some(r.rest_bytes()),
        }
        Ok(())
    }

    fn text_cell(p: &mut EntryPartial, index: usize, value: Text) -> Result<()> {
        match index {
            2 => p.primary_key = Some(value),
            _ => p.event = Some(value),
        }
        Ok(())
    }

    fn finish(p: EntryPartial) -> Result<Self> {
        p.finish()
    }

    fn write_cell(&self, index: usize, w: &mut Writer) {
        match index {
            0 => w.bytes(&self.payload),
            1 => w.bytes(&self.id),
            2 => w.bytes(self.primary_key.as_bytes()),
            _ => w.bytes(self.event.as_bytes()),
        }
    }
}

/// A plaintext write (the unencrypted mode's `WriteSingle.data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteEntriesUnencrypted {
    /// The store written to.
    pub store_id: String,
    /// The entries, in order.
    pub entries: Vec<Entry>,
    /// The identity writing.
    pub public_key: String,
}

impl Value for WriteEntriesUnencrypted {
    const NAME: &'static str = "WriteEntriesUnencrypted";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let (store_id, entries, public_key) = decode_store_write(r, ENTRIES, "entries")?;
        Ok(WriteEntriesUnencrypted {
            store_id,
            entries,
            public_key,
        })
    }

    fn encode(&self, w: &mut Writer) {
        encode_store_write(w, &self.store_id, ENTRIES, &self.entries, &self.public_key);
    }
}

/// The acknowledgement of one written entry: the sequence it is stored at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteAck {
    /// Its sequence, in the same space as Changes.
    pub sequence: u64,
    /// The entry's id.
    pub entry_id: Bytes,
}

/// An ack's fields so far.
#[doc(hidden)]
#[derive(Default)]
pub struct AckPartial {
    sequence: Option<u64>,
    entry_id: Option<Bytes>,
}

impl Row for WriteAck {
    const FIELDS: &'static [RowField] =
        &[row_field("sequence", false), row_field("entryId", false)];
    type Partial = AckPartial;

    fn cell(p: &mut AckPartial, index: usize, r: &mut Reader<'_>) -> Result<()> {
        match index {
            0 => p.sequence = Some(r.natural()?),
            _ => p.entry_id = Some(r.rest_bytes()),
        }
        Ok(())
    }

    fn text_cell(_: &mut AckPartial, _: usize, _: Text) -> Result<()> {
        Err(err!(BadReference, "a text cell in a write ack"))
    }

    fn finish(p: AckPartial) -> Result<Self> {
        Ok(WriteAck {
            sequence: required(p.sequence, "sequence")?,
            entry_id: required(p.entry_id, "entryId")?,
        })
    }

    fn write_cell(&self, index: usize, w: &mut Writer) {
        match index {
            0 => w.nv(self.sequence as i64),
            _ => w.bytes(&self.entry_id),
        }
    }
}

/// `Array(WriteAck)`: the success of `WriteSingle`/`WriteChunked` (empty
/// for a piece that does not complete its message).
impl Value for Vec<WriteAck> {
    const NAME: &'static str = "WriteAcks";

    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        read_rows(r)
    }

    fn encode(&self, w: &mut Writer) {
        write_rows(w, self);
    }
}

// Keep the ids the row lists name in step with the struct readers.
const _: () = {
    assert!(SEQUENCE == field_id("sequence"));
    assert!(ENTRY_ID == field_id("entryId"));
    assert!(IV < ENCRYPTED_BATCH && ENCRYPTED_BATCH < ENTRY_IDS);
    assert!(PAYLOAD < ID && ID < PRIMARY_KEY && PRIMARY_KEY < EVENT);
    assert!(SEQUENCE < ENTRY_ID);
    assert!(STORE_ID < BATCHES && BATCHES < PUBLIC_KEY);
    assert!(STORE_ID < ENTRIES && ENTRIES < PUBLIC_KEY);
    assert!(ID < TAG && TAG < PART && PART < DATA);
};
