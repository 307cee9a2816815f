//! Turning responses into WebSocket frames: `Changes` packed under the chunk
//! size, and any message over it split into `ChunkedMessage` parts.

use crate::chunk;
use crate::codec::{changes_overhead, encode_response, remote_entry_encoded_len};
use crate::wire::{CHUNK_SIZE, MessageId, RemoteEntry, Response};
use bytes::Bytes;

/// Encodes `response` into one frame, or into chunk frames when its
/// encoding exceeds [`CHUNK_SIZE`] (`next_chunk_id` supplies the id).
pub(super) fn response_frames(
    response: &Response,
    next_chunk_id: &mut MessageId,
    out: &mut Vec<Bytes>,
) {
    let encoded = Bytes::from(encode_response(response));
    if encoded.len() <= CHUNK_SIZE {
        out.push(encoded);
        return;
    }
    let id = *next_chunk_id;
    *next_chunk_id = next_chunk_id.wrapping_add(1);
    for part in chunk::split(id, &encoded) {
        out.push(Bytes::from(encode_response(&Response::Chunked(part))));
    }
}

/// Frames carrying `entries` of `public_key` as `Changes` messages, each
/// under the chunk size; only a single entry larger than that is chunked.
pub(super) fn changes_frames<'a>(
    public_key: &str,
    entries: impl IntoIterator<Item = &'a RemoteEntry>,
    next_chunk_id: &mut MessageId,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch: Vec<RemoteEntry> = Vec::new();
    let mut batch_bytes = 0usize;
    for entry in entries {
        let len = remote_entry_encoded_len(entry);
        if !batch.is_empty()
            && changes_overhead(public_key, batch.len() + 1) + batch_bytes + len > CHUNK_SIZE
        {
            flush(public_key, &mut batch, next_chunk_id, &mut frames);
            batch_bytes = 0;
        }
        batch_bytes += len;
        batch.push(entry.clone());
    }
    if !batch.is_empty() {
        flush(public_key, &mut batch, next_chunk_id, &mut frames);
    }
    frames
}

fn flush(
    public_key: &str,
    batch: &mut Vec<RemoteEntry>,
    next_chunk_id: &mut MessageId,
    frames: &mut Vec<Bytes>,
) {
    let response = Response::Changes {
        public_key: public_key.to_string(),
        entries: std::mem::take(batch),
    };
    response_frames(&response, next_chunk_id, frames);
}
