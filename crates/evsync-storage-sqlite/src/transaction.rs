//! One append transaction, whatever it appends (v3 entries in `lib.rs`, v4
//! batches in `batches.rs`): `BEGIN IMMEDIATE`, the writes, then those that
//! join it while it is open
//! ([`Storage::append_with_joins`](evsync_core::storage::Storage::append_with_joins)),
//! the new heads, `COMMIT`.

use crate::error::sqlite_error;
use evsync_core::storage::{Joins, StorageError};
use rusqlite::{Connection, TransactionBehavior};

/// A write an append transaction stores.
pub(crate) trait Appendable: Sized {
    /// What the write is answered with.
    type Outcome;
    /// Refuses writes no transaction may take, before any of them is
    /// inserted.
    fn check(writes: &[Self]) -> Result<(), StorageError>;
    /// The answer of a write that stores nothing (it has no entries);
    /// `None` when it has some.
    fn nothing_to_store(&self) -> Option<Self::Outcome>;
}

/// The statements and per-log state of one transaction storing `W`s.
pub(crate) trait Inserter<'t, W: Appendable>: Sized {
    /// Prepares (from the connection's cache) what the inserts use.
    fn new(tx: &'t Connection) -> Result<Self, StorageError>;
    /// Stores `write` (or finds it stored) and says where.
    fn insert(&mut self, write: &W) -> Result<W::Outcome, StorageError>;
    /// Writes each log's new head, once per transaction.
    fn set_heads(&mut self) -> Result<(), StorageError>;
}

/// Names the [`Inserter`] of `W` for any transaction's lifetime.
pub(crate) trait Inserts<W: Appendable> {
    type In<'t>: Inserter<'t, W>;
}

/// Stores `writes`, then every write `joins` yields while the transaction
/// is still open, in one IMMEDIATE transaction (`I`'s inserter inserts
/// them). Writes that store nothing take no transaction, unless something
/// joins.
pub(crate) fn append<W, I>(
    conn: &mut Connection,
    writes: &[W],
    joins: Joins<'_, W>,
) -> Result<Vec<W::Outcome>, StorageError>
where
    W: Appendable,
    I: Inserts<W>,
{
    W::check(writes)?;
    let nothing: Option<Vec<W::Outcome>> = writes.iter().map(W::nothing_to_store).collect();
    if let Some(mut results) = nothing {
        let Some(more) = joins() else {
            return Ok(results);
        };
        results.extend(append::<W, I>(conn, &more, joins)?);
        return Ok(results);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error("begin"))?;
    let mut results = Vec::with_capacity(writes.len());
    {
        let mut inserter = I::In::new(&tx)?;
        for write in writes {
            results.push(inserter.insert(write)?);
        }
        // What arrived while the inserts ran joins this transaction: its
        // fsync then covers it too.
        while let Some(more) = joins() {
            W::check(&more)?;
            for write in &more {
                results.push(inserter.insert(write)?);
            }
        }
        inserter.set_heads()?;
    }
    tx.commit().map_err(sqlite_error("commit"))?;
    Ok(results)
}
