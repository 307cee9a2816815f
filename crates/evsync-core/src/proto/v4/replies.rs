//! The frames a v4 server sends, built from the codec's types: RPC exits
//! (results, typed failures, defects) and Changes stream chunks.

use super::schema_binary::Value;
use super::{
    ChangesValue, ChunkedMessage, Defect, EncryptedRemoteBatch, Entry, ErrorCode,
    EventLogProtocolError, Exit, FromServer, Reason, RemoteEntry, RequestId, decode, encode,
};
use crate::storage::StoredBatch;
use crate::wire::Sequence;
use bytes::Bytes;

/// The envelope frame of an RPC's exit.
pub fn exit_frame<T: Value, E: Value>(request_id: &RequestId, exit: &Exit<T, E>) -> Bytes {
    let envelope = FromServer::Exit {
        request_id: request_id.clone(),
        exit: Bytes::from(encode(exit)),
    };
    Bytes::from(envelope.encode())
}

/// A typed failure: the one way the eventlog RPCs report errors (the client
/// acts on `Forbidden` by authenticating again).
pub fn failure<T>(error: EventLogProtocolError) -> Exit<T, EventLogProtocolError> {
    Exit::Failure(vec![Reason::Fail(error)])
}

/// A defect, as Effect's RPC server answers an unknown tag or a payload it
/// cannot decode: it fails only that request.
pub fn die<T, E>(message: &str) -> Exit<T, E> {
    Exit::Failure(vec![Reason::Die(Defect::message(message))])
}

/// An `EventLogProtocolError` worded as Effect's server words it.
pub fn protocol_error(
    request_tag: &str,
    public_key: Option<&str>,
    code: ErrorCode,
    message: &str,
) -> EventLogProtocolError {
    EventLogProtocolError {
        message: message.to_string(),
        store_id: None,
        request_tag: request_tag.to_string(),
        public_key: public_key.map(str::to_string),
        code,
    }
}

/// The envelope frame of one stream Chunk holding `values`.
pub fn chunk_frame(request_id: &RequestId, values: &Vec<ChangesValue>) -> Bytes {
    let envelope = FromServer::Chunk {
        request_id: request_id.clone(),
        values: Bytes::from(encode(values)),
    };
    Bytes::from(envelope.encode())
}

/// Packs stored batches into Changes values: consecutive batches share a
/// `Single` frame of about `max_bytes`; a frame over Effect's 512,000-byte
/// piece size (one large batch) goes out as `Chunked` pieces numbered from
/// `next_chunk_id` (unique within the stream, as the client reassembles
/// by id). Each value comes with the first sequence it carries (where a
/// stream resumes if the value was never acknowledged).
pub fn changes_values<'a>(
    batches: impl Iterator<Item = &'a StoredBatch>,
    max_bytes: usize,
    next_chunk_id: &mut i64,
) -> Vec<(Sequence, ChangesValue)> {
    let mut values = Vec::new();
    let mut group: Vec<EncryptedRemoteBatch> = Vec::new();
    let mut group_bytes = 0;
    for batch in batches {
        let size = crate::storage::batch_bytes(batch) + 16;
        if !group.is_empty() && group_bytes + size > max_bytes {
            flush(&mut group, &mut values, next_chunk_id);
            group_bytes = 0;
        }
        group_bytes += size;
        group.push(EncryptedRemoteBatch {
            sequence: batch.sequence,
            iv: batch.iv.clone(),
            encrypted_batch: batch.encrypted_batch.clone(),
            entry_ids: batch.entry_ids.clone(),
        });
    }
    flush(&mut group, &mut values, next_chunk_id);
    values
}

/// Packs a plaintext store's records (one entry each, its `Entry` frame as
/// stored) into Changes values of `RemoteEntry` rows, framed as
/// [`changes_values`] frames batches. A record that does not hold an
/// `Entry` frame (never written by this layer) is left out.
pub fn plaintext_values<'a>(
    records: impl Iterator<Item = &'a StoredBatch>,
    max_bytes: usize,
    next_chunk_id: &mut i64,
) -> Vec<(Sequence, ChangesValue)> {
    let mut values = Vec::new();
    let mut group: Vec<RemoteEntry> = Vec::new();
    let mut group_bytes = 0;
    for record in records {
        let Ok(entry) = decode::<Entry>(&record.encrypted_batch) else {
            continue;
        };
        let size = record.encrypted_batch.len() + 16;
        if !group.is_empty() && group_bytes + size > max_bytes {
            let first = group[0].remote_sequence;
            flush_frame(
                first,
                Bytes::from(encode(&std::mem::take(&mut group))),
                &mut values,
                next_chunk_id,
            );
            group_bytes = 0;
        }
        group_bytes += size;
        group.push(RemoteEntry {
            entry,
            remote_sequence: record.sequence,
        });
    }
    if let Some(first) = group.first().map(|e| e.remote_sequence) {
        flush_frame(
            first,
            Bytes::from(encode(&group)),
            &mut values,
            next_chunk_id,
        );
    }
    values
}

fn flush(
    group: &mut Vec<EncryptedRemoteBatch>,
    values: &mut Vec<(Sequence, ChangesValue)>,
    next_chunk_id: &mut i64,
) {
    let Some(first) = group.first().map(|b| b.sequence) else {
        return;
    };
    let data = Bytes::from(encode(&std::mem::take(group)));
    flush_frame(first, data, values, next_chunk_id);
}

/// One frame of rows as a `Single` value, or as `Chunked` pieces when it
/// is over Effect's 512,000-byte piece size.
fn flush_frame(
    first: Sequence,
    data: Bytes,
    values: &mut Vec<(Sequence, ChangesValue)>,
    next_chunk_id: &mut i64,
) {
    if data.len() <= super::CHUNK_SIZE {
        values.push((first, ChangesValue::Single { data }));
        return;
    }
    let id = *next_chunk_id;
    *next_chunk_id += 1;
    let total = data.len().div_ceil(super::CHUNK_SIZE);
    for index in 0..total {
        let start = index * super::CHUNK_SIZE;
        let end = (start + super::CHUNK_SIZE).min(data.len());
        let piece = ChunkedMessage {
            id,
            index: index as u64,
            total: total as u64,
            data: data.slice(start..end),
        };
        values.push((first, ChangesValue::Chunked(piece)));
    }
}
