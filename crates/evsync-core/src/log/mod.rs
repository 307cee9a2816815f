//! The protocol-neutral log service of one tenant: group commit of writes,
//! subscriptions with their catch-up → live hand-over, the tail cache,
//! outbound backpressure and the bound on unacknowledged writes.
//!
//! It knows logs (named by a string: v3's publicKey), entries, sequences
//! and connections, never a wire format. Protocol layers ([`crate::proto`])
//! sit beside each other on top of it: they decode their messages into
//! calls on this service and encode what it hands back.
//!
//! Contract (sans-IO, like the protocol layers above it):
//! - inputs are method calls (`open`, `write`, `subscribe`,
//!   `handle_storage_response`, `handle_sent`, `handle_log_advanced`, …);
//! - outputs are typed events given, during the call, to the caller's
//!   [`LogSink`]: deliver these entries to this subscriber, these writes
//!   are committed at these sequences, close this connection for this
//!   reason, run this storage request. A delivery returns the exact bytes
//!   the protocol queued for it, so backpressure counts real bytes.
//!
//! The service is not a log's only writer. Storage assigns sequences inside
//! the append transaction; another engine, process or node may append to
//! the same log, and [`LogService::handle_log_advanced`] tells this one that
//! a log reached a sequence: subscribers then read what they miss, with no
//! gap, reorder or duplicate.

mod cache;
mod config;
mod delivery;
mod kind;
mod outbound;
mod quota;
mod service;
mod stats;
mod subscriptions;
mod writes;

pub use config::LogConfig;
pub use delivery::Delivery;
pub use kind::{
    BatchLog, Cached, EntryLog, KindResponse, LogKind, batch_log_name, parse_batch_log_name,
};
pub use quota::{SharedWriteQuota, WriteRate};
pub use service::LogService;
pub use stats::LogStats;

use crate::hash::{IdMap, IdSet};
use crate::storage::{StorageError, StorageRequest};
use crate::wire::Sequence;
use core::fmt;

/// An adapter-chosen id for one connection, unique within a tenant.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A map keyed by connection. Connection ids are chosen by the adapter
/// (counters), never by a peer (`crate::hash`).
pub type ConnMap<V> = IdMap<ConnId, V>;

/// A set of connections (see [`ConnMap`]).
pub type ConnSet = IdSet<ConnId>;

/// A protocol layer's handle for one write, given back with its commit
/// (v3: the `WriteEntries` id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct WriteToken(pub i64);

/// Why the log service closes a connection.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CloseReason {
    /// Its outbound queue would pass the hard limit.
    SlowConsumer { limit: usize },
    /// Its writes awaiting commit would pass the limit.
    TooManyUnackedWrites { limit: usize },
    /// It asked for more subscriptions than allowed.
    TooManySubscriptions { max: usize },
    /// An append failed: nothing of it was committed.
    WriteFailed { message: String },
    /// A catch-up read failed.
    ReadFailed { message: String },
    /// Graceful shutdown, after every received write was committed.
    ShuttingDown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::SlowConsumer { limit } => {
                write!(f, "consumer too slow: over {limit} bytes queued")
            }
            CloseReason::TooManyUnackedWrites { limit } => {
                write!(f, "over {limit} bytes of writes awaiting their Ack")
            }
            CloseReason::TooManySubscriptions { max } => {
                write!(f, "more than {max} subscriptions on one connection")
            }
            CloseReason::WriteFailed { message } => {
                write!(f, "storage error, nothing acknowledged: {message}")
            }
            CloseReason::ReadFailed { message } => {
                write!(f, "storage error while reading changes: {message}")
            }
            CloseReason::ShuttingDown => f.write_str("server shutting down"),
        }
    }
}

/// Where the log service's outputs go: implemented by a protocol layer for
/// the data model `K` it runs the service with.
///
/// `room` is how many more bytes the connection may have queued before it
/// counts as a consumer too slow to keep: a protocol layer that would need
/// more queues nothing and returns `None` (the service then closes it).
pub trait LogSink<K: LogKind = EntryLog> {
    /// Run this against the tenant's storage; feed the answer back with
    /// [`LogService::handle_storage_response`].
    fn storage(&mut self, request: StorageRequest);
    /// Send these records to subscriber `conn`. Returns the bytes queued.
    fn deliver(&mut self, conn: ConnId, delivery: Delivery<'_, K>, room: usize) -> Option<usize>;
    /// `conn`'s write `token` is committed; `sequences` has one sequence
    /// per entry, in request order (an entry already stored reports its
    /// original sequence). Returns the bytes queued.
    fn committed(
        &mut self,
        conn: ConnId,
        token: WriteToken,
        sequences: &[Sequence],
        room: usize,
    ) -> Option<usize>;
    /// Close `conn`: the service has already forgotten it.
    fn close(&mut self, conn: ConnId, reason: CloseReason);
    /// A storage request failed (for logs).
    fn storage_failed(&mut self, error: &StorageError);
}
