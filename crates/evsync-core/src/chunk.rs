//! Splitting large messages into `ChunkedMessage` parts and reassembling
//! them with bounded memory.
//!
//! Effect splits any message whose encoding exceeds [`CHUNK_SIZE`] into
//! 512,000-byte slices (Cloudflare refused incoming WebSocket messages over
//! 1 MiB). Its own reassembly trusts `total`, counts a repeated part twice
//! and never expires an incomplete message; [`Reassembler`] validates every
//! part and enforces [`ChunkLimits`], so a hostile peer costs bounded memory.

use crate::time::Timestamp;
use crate::wire::{CHUNK_SIZE, ChunkedMessage, MessageId};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;

/// Limits on reassembly of incoming chunked messages, per connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Most parts one message may declare (`total`).
    pub max_parts: u32,
    /// Most bytes of one reassembled message.
    pub max_message_bytes: usize,
    /// Most incomplete messages held at once.
    pub max_incomplete_messages: usize,
    /// Most bytes held across all incomplete messages.
    pub max_incomplete_bytes: usize,
    /// Most milliseconds an incomplete message may take, from its first part.
    pub max_incomplete_age_ms: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_parts: 128,
            max_message_bytes: 32 * 1024 * 1024,
            max_incomplete_messages: 8,
            max_incomplete_bytes: 64 * 1024 * 1024,
            max_incomplete_age_ms: 120_000,
        }
    }
}

/// Splits an encoded message into parts exactly as Effect's
/// `ChunkedMessage.split`: `ceil(len / 512000)` slices sharing `id`.
pub fn split(id: MessageId, encoded: &Bytes) -> Vec<ChunkedMessage> {
    let total = encoded.len().div_ceil(CHUNK_SIZE);
    (0..total)
        .map(|index| {
            let start = index * CHUNK_SIZE;
            let end = (start + CHUNK_SIZE).min(encoded.len());
            ChunkedMessage {
                id,
                index: index as u32,
                total: total as u32,
                data: encoded.slice(start..end),
            }
        })
        .collect()
}

/// Why a part was refused. Each is a protocol error for its connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum ChunkError {
    /// `total` was 0.
    ZeroTotal { id: MessageId },
    /// `index >= total`.
    IndexOutOfRange {
        id: MessageId,
        index: u32,
        total: u32,
    },
    /// A later part declared another `total` than the first.
    TotalChanged { id: MessageId, first: u32, now: u32 },
    /// `total` over [`ChunkLimits::max_parts`].
    TooManyParts { id: MessageId, total: u32, max: u32 },
    /// The message would exceed [`ChunkLimits::max_message_bytes`].
    MessageTooLarge { id: MessageId, max: usize },
    /// More than [`ChunkLimits::max_incomplete_messages`] at once.
    TooManyIncomplete { max: usize },
    /// Incomplete messages would hold over [`ChunkLimits::max_incomplete_bytes`].
    IncompleteBytesExceeded { max: usize },
    /// An incomplete message outlived [`ChunkLimits::max_incomplete_age_ms`].
    Expired { id: MessageId, age_ms: u64 },
}

impl ChunkError {
    /// True for errors about size, which close with "message too big"
    /// rather than "protocol error".
    pub fn is_size_limit(&self) -> bool {
        matches!(
            self,
            ChunkError::TooManyParts { .. }
                | ChunkError::MessageTooLarge { .. }
                | ChunkError::IncompleteBytesExceeded { .. }
        )
    }
}

impl core::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChunkError::ZeroTotal { id } => write!(f, "chunked message {id}: total is 0"),
            ChunkError::IndexOutOfRange { id, index, total } => {
                write!(
                    f,
                    "chunked message {id}: part {index} of {total} is out of range"
                )
            }
            ChunkError::TotalChanged { id, first, now } => {
                write!(
                    f,
                    "chunked message {id}: total changed from {first} to {now}"
                )
            }
            ChunkError::TooManyParts { id, total, max } => {
                write!(f, "chunked message {id}: {total} parts, limit {max}")
            }
            ChunkError::MessageTooLarge { id, max } => {
                write!(f, "chunked message {id}: over {max} bytes")
            }
            ChunkError::TooManyIncomplete { max } => {
                write!(f, "more than {max} incomplete chunked messages")
            }
            ChunkError::IncompleteBytesExceeded { max } => {
                write!(f, "incomplete chunked messages over {max} bytes")
            }
            ChunkError::Expired { id, age_ms } => {
                write!(f, "chunked message {id} incomplete after {age_ms} ms")
            }
        }
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug)]
struct Partial {
    total: u32,
    parts: Vec<Option<Bytes>>,
    received: u32,
    bytes: usize,
    started: Timestamp,
}

/// Reassembles one connection's incoming chunked messages.
#[derive(Debug)]
pub struct Reassembler {
    limits: ChunkLimits,
    partials: HashMap<MessageId, Partial>,
    held_bytes: usize,
}

impl Reassembler {
    pub fn new(limits: ChunkLimits) -> Self {
        Reassembler {
            limits,
            partials: HashMap::new(),
            held_bytes: 0,
        }
    }

    /// Takes one part. Returns the whole message once its last part arrives.
    /// A repeated part is ignored (not double-counted). On error the
    /// connection is to be closed; the reassembler's state stays bounded.
    pub fn push(
        &mut self,
        part: ChunkedMessage,
        now: Timestamp,
    ) -> Result<Option<Bytes>, ChunkError> {
        let ChunkedMessage {
            id,
            index,
            total,
            data,
        } = part;
        if total == 0 {
            return Err(ChunkError::ZeroTotal { id });
        }
        if index >= total {
            return Err(ChunkError::IndexOutOfRange { id, index, total });
        }
        if total > self.limits.max_parts {
            return Err(ChunkError::TooManyParts {
                id,
                total,
                max: self.limits.max_parts,
            });
        }
        if data.len() > self.limits.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                id,
                max: self.limits.max_message_bytes,
            });
        }
        if total == 1 && !self.partials.contains_key(&id) {
            return Ok(Some(data));
        }
        if !self.partials.contains_key(&id) {
            if self.partials.len() >= self.limits.max_incomplete_messages {
                return Err(ChunkError::TooManyIncomplete {
                    max: self.limits.max_incomplete_messages,
                });
            }
            self.partials.insert(
                id,
                Partial {
                    total,
                    parts: vec![None; total as usize],
                    received: 0,
                    bytes: 0,
                    started: now,
                },
            );
        }
        let partial = self.partials.get_mut(&id).expect("inserted above");
        if partial.total != total {
            return Err(ChunkError::TotalChanged {
                id,
                first: partial.total,
                now: total,
            });
        }
        let slot = &mut partial.parts[index as usize];
        if slot.is_some() {
            return Ok(None);
        }
        if partial.bytes + data.len() > self.limits.max_message_bytes {
            return Err(ChunkError::MessageTooLarge {
                id,
                max: self.limits.max_message_bytes,
            });
        }
        if self.held_bytes + data.len() > self.limits.max_incomplete_bytes {
            return Err(ChunkError::IncompleteBytesExceeded {
                max: self.limits.max_incomplete_bytes,
            });
        }
        partial.bytes += data.len();
        partial.received += 1;
        self.held_bytes += data.len();
        *slot = Some(data);
        if partial.received < partial.total {
            return Ok(None);
        }
        let partial = self.partials.remove(&id).expect("present");
        self.held_bytes -= partial.bytes;
        let mut whole = BytesMut::with_capacity(partial.bytes);
        for data in partial.parts.into_iter().flatten() {
            whole.extend_from_slice(&data);
        }
        Ok(Some(whole.freeze()))
    }

    /// Fails with [`ChunkError::Expired`] if an incomplete message is older
    /// than the age limit at `now`.
    pub fn check_expiry(&self, now: Timestamp) -> Result<(), ChunkError> {
        for (&id, partial) in &self.partials {
            let age_ms = now.millis_since(partial.started);
            if age_ms >= self.limits.max_incomplete_age_ms {
                return Err(ChunkError::Expired { id, age_ms });
            }
        }
        Ok(())
    }

    /// When the oldest incomplete message expires, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.partials
            .values()
            .map(|p| p.started.plus_millis(self.limits.max_incomplete_age_ms))
            .min()
    }

    /// Bytes held in incomplete messages.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Number of incomplete messages.
    pub fn incomplete_count(&self) -> usize {
        self.partials.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: MessageId, index: u32, total: u32, data: &[u8]) -> ChunkedMessage {
        ChunkedMessage {
            id,
            index,
            total,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn limits() -> ChunkLimits {
        ChunkLimits {
            max_parts: 4,
            max_message_bytes: 10,
            max_incomplete_messages: 2,
            max_incomplete_bytes: 12,
            max_incomplete_age_ms: 1000,
        }
    }

    #[test]
    fn split_matches_effect_sizes() {
        let data = Bytes::from(vec![7u8; CHUNK_SIZE * 2 + 1]);
        let parts = split(9, &data);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].data.len(), CHUNK_SIZE);
        assert_eq!(parts[2].data.len(), 1);
        assert!(parts.iter().all(|p| p.id == 9 && p.total == 3));
        assert_eq!(
            parts.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(split(1, &Bytes::from(vec![0u8; CHUNK_SIZE])).len(), 1);
    }

    #[test]
    fn reassembles_out_of_order_and_ignores_repeats() {
        let mut r = Reassembler::new(limits());
        let t = Timestamp(0);
        assert_eq!(r.push(part(1, 2, 3, b"gh"), t), Ok(None));
        assert_eq!(r.push(part(1, 0, 3, b"abc"), t), Ok(None));
        assert_eq!(r.push(part(1, 0, 3, b"abc"), t), Ok(None), "repeat ignored");
        assert_eq!(r.held_bytes(), 5, "repeat not double-counted");
        let whole = r.push(part(1, 1, 3, b"def"), t).unwrap().unwrap();
        assert_eq!(&whole[..], b"abcdefgh");
        assert_eq!(r.held_bytes(), 0);
        assert_eq!(r.incomplete_count(), 0);
    }

    #[test]
    fn rejects_bad_parts() {
        let mut r = Reassembler::new(limits());
        let t = Timestamp(0);
        assert_eq!(
            r.push(part(1, 0, 0, b""), t),
            Err(ChunkError::ZeroTotal { id: 1 })
        );
        assert!(matches!(
            r.push(part(1, 3, 3, b""), t),
            Err(ChunkError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            r.push(part(1, 0, 5, b""), t),
            Err(ChunkError::TooManyParts { .. })
        ));
        r.push(part(2, 0, 2, b"a"), t).unwrap();
        assert_eq!(
            r.push(part(2, 1, 3, b"b"), t),
            Err(ChunkError::TotalChanged {
                id: 2,
                first: 2,
                now: 3
            })
        );
    }

    #[test]
    fn enforces_memory_limits() {
        let mut r = Reassembler::new(limits());
        let t = Timestamp(0);
        r.push(part(1, 0, 2, b"123456"), t).unwrap();
        assert!(matches!(
            r.push(part(1, 1, 2, b"12345"), t),
            Err(ChunkError::MessageTooLarge { .. })
        ));
        r.push(part(2, 0, 2, b"123456"), t).unwrap();
        assert!(matches!(
            r.push(part(3, 0, 2, b"1"), t),
            Err(ChunkError::TooManyIncomplete { max: 2 })
        ));
        assert!(matches!(
            r.push(part(2, 1, 2, b"x"), t),
            Err(ChunkError::IncompleteBytesExceeded { max: 12 })
        ));
        assert_eq!(r.held_bytes(), 12);
    }

    #[test]
    fn expires_by_age_from_first_part() {
        let mut r = Reassembler::new(limits());
        assert_eq!(r.next_deadline(), None);
        r.push(part(1, 0, 2, b"a"), Timestamp(100)).unwrap();
        assert_eq!(r.next_deadline(), Some(Timestamp(1100)));
        assert_eq!(r.check_expiry(Timestamp(1099)), Ok(()));
        assert_eq!(
            r.check_expiry(Timestamp(1100)),
            Err(ChunkError::Expired {
                id: 1,
                age_ms: 1000
            })
        );
    }

    #[test]
    fn single_part_passes_through() {
        let mut r = Reassembler::new(limits());
        let out = r.push(part(5, 0, 1, b"xy"), Timestamp(0)).unwrap();
        assert_eq!(out.as_deref(), Some(&b"xy"[..]));
        assert_eq!(r.incomplete_count(), 0);
    }
}
