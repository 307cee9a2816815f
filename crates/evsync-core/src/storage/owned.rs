//! Copies of records that own their bytes, for the places that keep a
//! record beyond the request that carried it (the log service's tail cache,
//! the memory store, a v4 connection's record of its own writes).
//!
//! A decoded request's fields are slices of the whole frame (or reassembled
//! message) it arrived in, and a kept slice pins all of it: a 16-byte entry
//! id held as an index key would keep a 1 MB upload alive. So a kept record
//! is copied. The copy puts a record's fields end to end in one buffer and
//! hands each out as a slice of it: one buffer per record (plus the
//! reference count `bytes` allocates once a buffer is shared) rather than
//! one allocation per field (102 for a v4 batch of 100 entries), and the
//! fields are kept and dropped together anyway.

use super::StoredBatch;
use crate::wire::{RemoteEntry, Sequence};
use bytes::{Bytes, BytesMut};

/// An entry whose bytes are copies of `iv`, `entry_id` and
/// `encrypted_entry`, in one buffer of its own. Takes the fields, not a
/// record, so that a store copying a request's entry builds nothing first.
pub fn owned_entry(
    sequence: Sequence,
    iv: &[u8],
    entry_id: &[u8],
    encrypted_entry: &[u8],
) -> RemoteEntry {
    let mut all = concatenated([iv, entry_id, encrypted_entry].into_iter());
    let iv = all.split_to(iv.len());
    let entry_id = all.split_to(entry_id.len());
    RemoteEntry {
        sequence,
        iv,
        entry_id,
        encrypted_entry: all,
    }
}

/// A batch whose bytes (iv, every entry id, ciphertext) are copies, in one
/// buffer of its own; takes the fields as [`owned_entry`] does.
pub fn owned_batch(
    sequence: Sequence,
    iv: &[u8],
    entry_ids: &[Bytes],
    encrypted_batch: &[u8],
) -> StoredBatch {
    let parts = core::iter::once(iv)
        .chain(entry_ids.iter().map(|id| &id[..]))
        .chain(core::iter::once(encrypted_batch));
    let mut all = concatenated(parts);
    let iv = all.split_to(iv.len());
    let entry_ids = entry_ids.iter().map(|id| all.split_to(id.len())).collect();
    StoredBatch {
        sequence,
        iv,
        entry_ids,
        encrypted_batch: all,
    }
}

/// `ids` copied into one buffer of their own: for entry ids kept apart
/// from their batch (a v4 connection's own writes, which its stream leaves
/// out until it has passed them).
pub fn owned_entry_ids(ids: &[Bytes]) -> Vec<Bytes> {
    let mut all = concatenated(ids.iter().map(|id| &id[..]));
    ids.iter().map(|id| all.split_to(id.len())).collect()
}

/// `parts` copied end to end into one new buffer of exactly their size.
fn concatenated<'a>(parts: impl Iterator<Item = &'a [u8]> + Clone) -> Bytes {
    let mut buf = BytesMut::with_capacity(parts.clone().map(<[u8]>::len).sum());
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A received frame and three fields sliced out of it, as a decoder
    /// hands them out.
    fn frame_and_fields() -> (Bytes, [Bytes; 3]) {
        let frame = Bytes::from((0u8..=99).collect::<Vec<u8>>());
        let fields = [frame.slice(2..14), frame.slice(14..30), frame.slice(30..90)];
        (frame, fields)
    }

    #[test]
    fn an_owned_entry_equals_its_source_and_pins_no_frame() {
        let (frame, [iv, entry_id, encrypted_entry]) = frame_and_fields();
        let source = RemoteEntry {
            sequence: 7,
            iv,
            entry_id,
            encrypted_entry,
        };
        let owned = owned_entry(7, &source.iv, &source.entry_id, &source.encrypted_entry);
        assert_eq!(owned, source);
        drop(source);
        assert!(frame.is_unique(), "the copy holds no slice of the frame");
        drop(frame);
        assert_eq!(&owned.iv[..], &(2u8..14).collect::<Vec<u8>>()[..]);
        assert_eq!(&owned.entry_id[..], &(14u8..30).collect::<Vec<u8>>()[..]);
        assert_eq!(
            &owned.encrypted_entry[..],
            &(30u8..90).collect::<Vec<u8>>()[..]
        );
    }

    #[test]
    fn an_owned_batch_equals_its_source_and_pins_no_frame() {
        let (frame, [iv, ids, encrypted_batch]) = frame_and_fields();
        let source = StoredBatch {
            sequence: 3,
            iv,
            entry_ids: vec![ids.slice(0..8), ids.slice(8..16)],
            encrypted_batch,
        };
        let owned = owned_batch(3, &source.iv, &source.entry_ids, &source.encrypted_batch);
        assert_eq!(owned, source);
        drop(source);
        drop(ids);
        assert!(frame.is_unique(), "the copy holds no slice of the frame");
        assert_eq!(owned.entry_ids.len(), 2);
        assert_eq!(
            &owned.entry_ids[1][..],
            &(22u8..30).collect::<Vec<u8>>()[..]
        );
    }

    #[test]
    fn owned_entry_ids_equal_their_source_and_pin_no_frame() {
        let (frame, [_, ids, _]) = frame_and_fields();
        let source = vec![ids.slice(0..8), ids.slice(8..16)];
        drop(ids);
        let owned = owned_entry_ids(&source);
        assert_eq!(owned, source);
        drop(source);
        assert!(frame.is_unique(), "the copy holds no slice of the frame");
    }

    #[test]
    fn empty_fields_copy_as_empty() {
        let source = StoredBatch {
            sequence: 1,
            iv: Bytes::new(),
            entry_ids: Vec::new(),
            encrypted_batch: Bytes::new(),
        };
        assert_eq!(owned_batch(1, &[], &[], &[]), source);
    }
}
