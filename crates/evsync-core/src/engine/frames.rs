//! Turning responses into WebSocket frames: entries packed into as few
//! `Changes` messages as the message budget allows, and any message over the
//! chunk size split into `ChunkedMessage` parts.
//!
//! Why few, large messages rather than many under the chunk size: Effect's
//! client handles incoming frames concurrently and decrypts asynchronously,
//! so a small `Changes` sent right after a large one can overtake it and the
//! replica then runs its handlers out of log order (interop scenario
//! S3-order-after-large). Entries that are available together therefore go
//! out in one message, as Effect's own server sends them.

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

/// Frames carrying `entries` of `public_key` as `Changes` messages of at
/// most `max_message` encoded bytes each (a single larger entry goes alone);
/// a message over the chunk size is sent as chunks.
pub(super) fn changes_frames<'a>(
    public_key: &str,
    entries: impl IntoIterator<Item = &'a RemoteEntry>,
    max_message: usize,
    next_chunk_id: &mut MessageId,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch: Vec<RemoteEntry> = Vec::new();
    let mut batch_bytes = 0usize;
    for entry in entries {
        let len = remote_entry_encoded_len(entry);
        if !batch.is_empty()
            && changes_overhead(public_key, batch.len() + 1) + batch_bytes + len > max_message
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
