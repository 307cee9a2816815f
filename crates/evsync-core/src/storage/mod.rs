//! The storage contract every backend implements (SQLite, Postgres, Durable
//! Object SQL, D1, memory), and the requests the engine asks storage to run.
//!
//! The engine never calls storage itself: it emits a [`StorageRequest`], the
//! adapter runs it against its backend (synchronously with
//! [`StorageRequest::execute`], or asynchronously with
//! [`StorageRequest::execute_async`]) and hands the [`StorageResponse`] back to
//! the engine. That keeps the engine free of I/O and lets one engine drive a
//! synchronous store (SQLite, DO SQL) and an asynchronous one (D1, Postgres).

mod async_storage;
mod batches;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod memory;
mod owned;
mod request;
pub mod schema;

pub use async_storage::AsyncStorage;
pub use batches::{
    BatchAppended, BatchWrite, ENTRY_ID_LEN, SigningKeyBinding, StoreHead, StoreKey, StoredBatch,
    V4Figures, batch_bytes, check_writes, join_entry_ids, split_entry_ids,
};
pub use memory::MemoryStorage;
pub use owned::{owned_batch, owned_entry, owned_entry_ids};
pub use request::{RequestId, StorageOp, StorageRequest, StorageResponse};

use crate::wire::{EncryptedEntry, RemoteEntry, RemoteId, Sequence};
use bytes::Bytes;

/// Entries of one `WriteEntries` request, to be appended to one log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendBatch {
    pub public_key: String,
    /// Stored with every entry of the batch.
    pub iv: Bytes,
    pub entries: Vec<EncryptedEntry>,
}

/// What happened to one entry of an [`AppendBatch`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Appended {
    /// The entry's sequence: new, or the one it was first stored at.
    pub sequence: Sequence,
    /// True when this call stored the entry; false when its `entryId` was
    /// already in the log (before this call, or earlier in the same call).
    pub inserted: bool,
}

/// How much one read may return. A read returns at least one entry when
/// one is available, even if that entry alone exceeds `max_bytes`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadLimit {
    pub max_entries: usize,
    /// Budget over `iv + entryId + encryptedEntry` lengths.
    pub max_bytes: usize,
}

/// What a tenant's store holds, for operators (the Worker's
/// `GET /admin/tenants/<t>/stats`): counted by the store itself, so the
/// figures include what other writers stored.
///
/// v3 logs only: Effect v4's batch stores ([`Storage::append_batches`])
/// are not counted. The figures keep the meaning they had before v4
/// existed (operators' dashboards and alerts compare them over time), and
/// a v4 store's unit is a batch, not an entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StoreStats {
    /// Logs (publicKeys) with at least one entry.
    pub logs: u64,
    /// Entries stored, every log together.
    pub entries: u64,
    /// Sum of `iv + entryId + encryptedEntry` lengths over every entry (as
    /// [`entry_bytes`] counts one), not the size on disk.
    pub bytes: u64,
    /// When the tenant's entries last changed (Unix ms), if the backend
    /// knows it without extra work; `None` otherwise. No backend records a
    /// time per commit for this: the figure is not worth a write.
    pub last_write_ms: Option<u64>,
}

/// One log of a tenant and its highest sequence, as [`Storage::logs`]
/// lists them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LogHead {
    pub public_key: String,
    /// The log's highest sequence (its entries are `1..=head`).
    pub head: Sequence,
}

/// A storage failure. The engine answers it by closing the connections whose
/// requests failed (their replicas retry), never by acknowledging.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StorageError {
    pub message: String,
}

impl StorageError {
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
        }
    }
}

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

/// Where an append transaction gets the appends that join it: each call
/// yields the next one's writes, `None` once there are no more (and from
/// then on no more can join: the caller may commit). Implementations call
/// it until `None` before committing, unless they fail first; what joined
/// is answered with the transaction's result either way.
pub type Joins<'a, T> = &'a mut dyn FnMut() -> Option<Vec<T>>;

/// `first` followed by everything `joins` yields (the default of
/// [`Storage::append_with_joins`] and of its v4 counterpart).
fn with_joins<T: Clone>(first: &[T], joins: Joins<'_, T>) -> Vec<T> {
    let mut all = first.to_vec();
    while let Some(more) = joins() {
        all.extend(more);
    }
    all
}

/// A tenant's log store with synchronous calls (SQLite, Durable Object SQL,
/// memory). Asynchronous stores implement [`AsyncStorage`] instead; every
/// `Storage` is also an `AsyncStorage`.
///
/// One value serves one tenant: logs of different tenants never meet.
pub trait Storage {
    /// The tenant's remoteId, created and persisted on first call. It must
    /// not change while the tenant's data exists.
    fn remote_id(&mut self) -> Result<RemoteId, StorageError>;

    /// Appends every batch in ONE transaction: either all entries are
    /// durable when this returns `Ok`, or none is.
    ///
    /// Per log, sequences start at 1 and increase in commit order. An entry
    /// whose `entryId` is already in its log is not stored again and reports
    /// its existing sequence. The result has one `Vec` per batch, with one
    /// [`Appended`] per entry, in request order.
    fn append(&mut self, batches: &[AppendBatch]) -> Result<Vec<Vec<Appended>>, StorageError>;

    /// [`Storage::append`] whose transaction also takes in the batches that
    /// `joins` yields before its `COMMIT`: appends that arrived while it
    /// was inserting (see [`Joins`]). The result covers `batches`, then
    /// each yield in order, as if they had been one call.
    ///
    /// This default collects every join first and makes one call: correct
    /// for any store. A store whose inserts take long enough for requests
    /// to arrive meanwhile (an fsync-bound file) asks `joins` after its
    /// inserts instead, so its commit holds them.
    fn append_with_joins(
        &mut self,
        batches: &[AppendBatch],
        joins: Joins<'_, AppendBatch>,
    ) -> Result<Vec<Vec<Appended>>, StorageError> {
        let all = with_joins(batches, joins);
        self.append(&all)
    }

    /// Entries of `public_key`'s log with `sequence >= from`, in sequence
    /// order, within `limit`.
    fn read(
        &mut self,
        public_key: &str,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<RemoteEntry>, StorageError>;

    /// The tenant's "tokens not before" instant, in milliseconds since the
    /// Unix epoch: a signed token issued before it is refused. `None` when
    /// the tenant's tokens were never revoked (a fresh tenant).
    ///
    /// Revocation must outlive the process that ordered it and reach every
    /// place the tenant is served (a restarted server, another Worker
    /// isolate), so the instant is kept with the tenant's data rather than
    /// in memory or configuration. Never cached by the store: another
    /// connection to the same tenant may raise it at any time. Reading it
    /// creates nothing.
    fn tokens_not_before(&mut self) -> Result<Option<u64>, StorageError>;

    /// Raises the tenant's "tokens not before" instant to `not_before_ms`
    /// (milliseconds since the Unix epoch) and returns the instant now
    /// stored: `max(stored, not_before_ms)`, durable when this returns `Ok`.
    ///
    /// It never moves backwards, so two revocations racing (two operators,
    /// a retried request, clocks that disagree) cannot undo each other: the
    /// later instant wins whatever the order of the writes. Undoing a
    /// revocation is not a storage operation. A value above
    /// [`MAX_TOKENS_NOT_BEFORE_MS`] is refused and changes nothing.
    fn set_tokens_not_before(&mut self, not_before_ms: u64) -> Result<u64, StorageError>;

    /// What the tenant's store holds ([`StoreStats`]): its logs with
    /// entries, its entries and their bytes. For operators, not the hot
    /// path: a SQL backend may scan every entry of the tenant (reading
    /// lengths, not contents). Reading them creates nothing (no remoteId).
    fn stats(&mut self) -> Result<StoreStats, StorageError>;

    /// Every log with at least one entry and its head, ordered by
    /// publicKey (byte order), in one snapshot. For exports: reading each
    /// log up to the head listed here gives a cut that holds everything
    /// acked before the listing. Creates nothing.
    fn logs(&mut self) -> Result<Vec<LogHead>, StorageError>;

    /// Gives a store without a remoteId the remoteId `remote_id` (an
    /// import keeps the tenant's remoteId, because replicas keep their
    /// cursors per remoteId). A store that already has this remoteId is
    /// left as it is; one with another is refused and not changed.
    fn adopt_remote_id(&mut self, remote_id: RemoteId) -> Result<(), StorageError>;

    /// Stores Effect v4 batches, every write in ONE transaction: all are
    /// durable when this returns `Ok`, none is on `Err`. A write whose
    /// entry ids are not [`ENTRY_ID_LEN`] bytes is refused
    /// ([`check_writes`]) and the call stores nothing.
    ///
    /// Per store ([`StoreKey`]), sequences start at 1 (the `firstSequence`
    /// Effect's SQL server announces) and increase in commit order without
    /// gaps; a batch of `n` entries takes `n` of them. A batch whose entry
    /// ids are all already stored in its store (before this call or
    /// earlier in it; vacuously, one with no ids) is skipped: Effect's
    /// client re-sends its unacked batches after a lost ack, and the
    /// replay must not be stored twice. Any other batch is stored whole,
    /// and its ids seen for the first time record their sequence; an id
    /// already known keeps its first one (what a later skipped batch is
    /// acked with). Entry ids are per store. v3 logs never see these
    /// stores nor their sequences. Empty `writes`: `Ok(vec![])`, no
    /// transaction. One [`BatchAppended`] per write, in request order.
    fn append_batches(&mut self, writes: &[BatchWrite])
    -> Result<Vec<BatchAppended>, StorageError>;

    /// [`Storage::append_batches`] whose transaction also takes in the
    /// writes `joins` yields before its `COMMIT` (see
    /// [`Storage::append_with_joins`], whose default this one shares).
    fn append_batches_with_joins(
        &mut self,
        writes: &[BatchWrite],
        joins: Joins<'_, BatchWrite>,
    ) -> Result<Vec<BatchAppended>, StorageError> {
        let all = with_joins(writes, joins);
        self.append_batches(&all)
    }

    /// The batches of `store` whose LAST sequence is `>= from`, in sequence
    /// order, within `limit` (`max_entries` counts batches, `max_bytes`
    /// counts [`batch_bytes`]; at least one batch when one is available).
    /// A `from` inside a batch returns that batch: the replica drops the
    /// entries it has. Creates nothing; an unknown store reads as empty.
    fn read_batches(
        &mut self,
        store: &StoreKey,
        from: Sequence,
        limit: ReadLimit,
    ) -> Result<Vec<StoredBatch>, StorageError>;

    /// The Ed25519 key that signs Effect v4 session auth for `public_key`
    /// in this tenant: the first key ever offered is stored (durable when
    /// this returns) and returned; later calls return the stored key
    /// whatever they offer (Effect's `getOrCreateSessionAuthBinding`: the
    /// first client to present a publicKey owns it). Kept with the
    /// tenant's data, like [`Storage::tokens_not_before`], so it outlives
    /// restarts and reaches every place the tenant is served.
    fn bind_signing_key(
        &mut self,
        public_key: &str,
        signing_key: &[u8; 32],
    ) -> Result<[u8; 32], StorageError>;

    /// Every v4 store with at least one batch and its head, ordered by
    /// [`StoreKey`] (publicKey, then storeId, byte order), in one
    /// snapshot: what [`Storage::logs`] is to v3 logs, for exports.
    /// Creates nothing.
    fn stores(&mut self) -> Result<Vec<StoreHead>, StorageError>;

    /// Every session-auth binding ([`Storage::bind_signing_key`]), ordered
    /// by publicKey (byte order), in one snapshot. For exports: a tenant
    /// moved without them would let the first client to connect claim a
    /// publicKey. Creates nothing.
    fn bindings(&mut self) -> Result<Vec<SigningKeyBinding>, StorageError>;
}

/// The refusal of [`Storage::adopt_remote_id`] on a store that has another
/// remoteId, the same words on every backend.
pub fn remote_id_taken(held: RemoteId, wanted: RemoteId) -> StorageError {
    StorageError::new(format!(
        "the store already has remoteId {}, not {}",
        held.to_uuid_string(),
        wanted.to_uuid_string()
    ))
}

/// The largest "tokens not before" instant a store accepts, in milliseconds
/// since the Unix epoch: 2^53 - 1 (the year 287396), the largest integer a
/// JavaScript number holds exactly. D1 binds and returns numbers as JS
/// numbers, so every backend refuses a larger value the same way
/// ([`check_tokens_not_before`]) rather than one of them rounding it.
pub const MAX_TOKENS_NOT_BEFORE_MS: u64 = (1 << 53) - 1;

/// `not_before_ms` if a store accepts it (at most
/// [`MAX_TOKENS_NOT_BEFORE_MS`]); the same refusal on every backend.
pub fn check_tokens_not_before(not_before_ms: u64) -> Result<u64, StorageError> {
    if not_before_ms > MAX_TOKENS_NOT_BEFORE_MS {
        return Err(StorageError::new(format!(
            "tokens_not_before {not_before_ms} ms is beyond the largest storable instant ({MAX_TOKENS_NOT_BEFORE_MS} ms)"
        )));
    }
    Ok(not_before_ms)
}

/// A "tokens not before" instant read back from a SQL column (an integer,
/// or a JS number on D1), checked to be one a store could have written.
pub fn decode_tokens_not_before(stored: f64) -> Result<u64, StorageError> {
    if stored.fract() != 0.0 || !(0.0..=MAX_TOKENS_NOT_BEFORE_MS as f64).contains(&stored) {
        return Err(StorageError::new(format!(
            "stored tokens_not_before {stored} is not an instant evsync writes"
        )));
    }
    Ok(stored as u64)
}

/// Size of an entry as counted against [`ReadLimit::max_bytes`].
pub fn entry_bytes(entry: &RemoteEntry) -> usize {
    entry.iv.len() + entry.entry_id.len() + entry.encrypted_entry.len()
}

/// Runs a future to completion on the current thread by polling it in a
/// loop (the storage contract's futures over a synchronous [`Storage`] are
/// ready at once: exports and imports over SQLite, the conformance suite
/// and tests use this). Not a general executor: a future that waits on I/O
/// would spin here.
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    use core::task::{Context, Poll, Waker};
    let mut future = core::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}
