//! Per-connection state: chunk reassembly, outbound accounting and the
//! subscriptions held on that socket.

use crate::chunk::{ChunkLimits, Reassembler};
use crate::storage::RequestId;
use crate::wire::Sequence;
use std::collections::HashMap;

#[derive(Debug)]
pub(super) struct Conn {
    pub reassembler: Reassembler,
    /// Bytes handed to the adapter and not yet reported sent.
    pub queued_bytes: usize,
    /// Bytes of this connection's writes not yet acknowledged.
    pub unacked_write_bytes: usize,
    /// Subscriptions by publicKey; each log's is independent.
    pub subs: HashMap<String, Sub>,
}

impl Conn {
    pub fn new(limits: ChunkLimits) -> Self {
        Conn {
            reassembler: Reassembler::new(limits),
            queued_bytes: 0,
            unacked_write_bytes: 0,
            subs: HashMap::new(),
        }
    }
}

/// One subscription (`RequestChanges`) of a connection to a log.
#[derive(Debug)]
pub(super) struct Sub {
    /// The next sequence this subscriber must receive; everything before it
    /// (from its start sequence) has been queued for it, without a gap.
    pub next_seq: Sequence,
    pub state: SubState,
    /// The last sequence a read of this catch-up returned, so that an empty
    /// read right after it proves where the head is.
    pub confirmed_through: Option<Sequence>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum SubState {
    /// Caught up: new commits are pushed to it as they happen.
    Live,
    /// A catch-up read is in flight.
    Reading(RequestId),
    /// Its outbound queue is too full; it resumes catch-up once drained.
    Stalled,
}
