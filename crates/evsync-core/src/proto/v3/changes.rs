//! Packing entries into `Changes` messages: as few as the message budget
//! allows, each split into `ChunkedMessage` parts when over the chunk size.
//!
//! Why few, large messages rather than many under the chunk size: Effect's
//! client handles incoming frames concurrently and decrypts asynchronously,
//! so a small `Changes` sent right after a large one can overtake it and the
//! replica then runs its handlers out of log order (interop scenario
//! S3-order-after-large). Entries that are available together therefore go
//! out in one message, as Effect's own server sends them.

use super::framer::FrameEncoder;
use crate::codec::{changes_overhead, remote_entry_encoded_len};
use crate::wire::{RemoteEntry, Response};
use bytes::Bytes;

/// Frames carrying `entries` of `public_key` as `Changes` messages of at
/// most `max_message` encoded bytes each (a single larger entry goes alone).
pub(super) fn changes_frames<'a>(
    public_key: &str,
    entries: impl IntoIterator<Item = &'a RemoteEntry>,
    max_message: usize,
    encoder: &mut FrameEncoder,
) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch: Vec<RemoteEntry> = Vec::new();
    let mut batch_bytes = 0usize;
    for entry in entries {
        let len = remote_entry_encoded_len(entry);
        if !batch.is_empty()
            && changes_overhead(public_key, batch.len() + 1) + batch_bytes + len > max_message
        {
            flush(public_key, &mut batch, encoder, &mut frames);
            batch_bytes = 0;
        }
        batch_bytes += len;
        batch.push(entry.clone());
    }
    if !batch.is_empty() {
        flush(public_key, &mut batch, encoder, &mut frames);
    }
    frames
}

fn flush(
    public_key: &str,
    batch: &mut Vec<RemoteEntry>,
    encoder: &mut FrameEncoder,
    frames: &mut Vec<Bytes>,
) {
    let response = Response::Changes {
        public_key: public_key.to_string(),
        entries: std::mem::take(batch),
    };
    encoder.encode_into(&response, frames);
}
