//! What both SQL backends share for Effect v4 batches: deciding what an
//! append does (skip or store each write, which ids are new) from the heads
//! and known ids read first, packing the id rows into statements within
//! the bound-parameter limit, and the read by last sequence.
//!
//! The tenant's Durable Object is its only writer (on D1 as on DO SQLite),
//! so the heads and ids read before the writes stay true until they land;
//! a second writer would hit the primary keys and fail, never corrupt.

use super::plan::MAX_BOUND_PARAMETERS;
use bytes::Bytes;
use evsync_core::storage::{BatchAppended, BatchWrite, StoreKey};
use evsync_core::wire::Sequence;
use std::collections::HashMap;
use std::ops::Range;

/// Ids already stored, per store: where each was first stored.
pub type KnownIds = HashMap<StoreKey, HashMap<Bytes, Sequence>>;

/// A batch to insert.
#[derive(Debug)]
pub struct BatchRow<'a> {
    pub write: &'a BatchWrite,
    /// Its first sequence.
    pub sequence: Sequence,
    pub last: Sequence,
}

/// An id seen for the first time, and the sequence it records.
#[derive(Debug)]
pub struct IdRow<'a> {
    pub store: &'a StoreKey,
    pub entry_id: &'a Bytes,
    pub sequence: Sequence,
}

/// The outcome of an append before it is written.
#[derive(Debug)]
pub struct BatchPlan<'a> {
    /// One per write, in request order.
    pub results: Vec<BatchAppended>,
    pub batches: Vec<BatchRow<'a>>,
    /// Grouped by store in write order, so runs of one store are long.
    pub ids: Vec<IdRow<'a>>,
}

/// The stores `writes` may store into (those with ids), each once, in
/// request order: the stores whose heads and ids are read first.
pub fn stores_written(writes: &[BatchWrite]) -> Vec<&StoreKey> {
    let mut stores: Vec<&StoreKey> = Vec::new();
    for write in writes.iter().filter(|w| !w.entry_ids.is_empty()) {
        if !stores.contains(&&write.store) {
            stores.push(&write.store);
        }
    }
    stores
}

/// Decides every write: skipped when all its ids are known (in `known`,
/// or stored earlier in this call), else stored whole after its store's
/// head (`heads`, missing means 0), its new ids recording their position.
pub fn plan_batches<'a>(
    writes: &'a [BatchWrite],
    known: &KnownIds,
    heads: &HashMap<StoreKey, Sequence>,
) -> BatchPlan<'a> {
    let mut next: HashMap<&StoreKey, Sequence> = HashMap::new();
    let mut added: HashMap<(&StoreKey, &[u8]), Sequence> = HashMap::new();
    let mut plan = BatchPlan {
        results: Vec::with_capacity(writes.len()),
        batches: Vec::new(),
        ids: Vec::new(),
    };
    for write in writes {
        let store = &write.store;
        let lookup = |id: &Bytes| {
            known
                .get(store)
                .and_then(|ids| ids.get(id))
                .or_else(|| added.get(&(store, &id[..])))
                .copied()
        };
        let found: Vec<Option<Sequence>> = write.entry_ids.iter().map(lookup).collect();
        if found.iter().all(Option::is_some) {
            plan.results.push(BatchAppended {
                stored_at: None,
                sequences: found.into_iter().flatten().collect(),
            });
            continue;
        }
        let head = next
            .entry(store)
            .or_insert_with(|| heads.get(store).copied().unwrap_or(0));
        let first = *head + 1;
        *head += write.entry_ids.len() as Sequence;
        let last = *head;
        for (i, (id, was_known)) in write.entry_ids.iter().zip(&found).enumerate() {
            if was_known.is_none() && !added.contains_key(&(store, &id[..])) {
                let sequence = first + i as Sequence;
                added.insert((store, &id[..]), sequence);
                plan.ids.push(IdRow {
                    store,
                    entry_id: id,
                    sequence,
                });
            }
        }
        plan.batches.push(BatchRow {
            write,
            sequence: first,
            last,
        });
        plan.results.push(BatchAppended {
            stored_at: Some(first),
            sequences: (first..=last).collect(),
        });
    }
    plan.ids.sort_by_key(|row| row.store);
    plan
}

/// Splits `ids` into runs for multi-row inserts: rows of one store only,
/// at most `(MAX_BOUND_PARAMETERS - fixed) / per_row` rows per run.
pub fn id_runs(ids: &[IdRow<'_>], fixed: usize, per_row: usize) -> Vec<Range<usize>> {
    let max_rows = (MAX_BOUND_PARAMETERS - fixed) / per_row;
    let mut runs = Vec::new();
    let mut start = 0;
    for (i, row) in ids.iter().enumerate() {
        if i - start >= max_rows || ids[start].store != row.store {
            runs.push(start..i);
            start = i;
        }
    }
    if start < ids.len() {
        runs.push(start..ids.len());
    }
    runs
}

/// The read of one store: batches whose last sequence is at least
/// `?{first}`, at most `?{first+1}` of them and `?{first+2}` bytes (iv +
/// ids + ciphertext; the first batch always passes), `sequence, iv,
/// entry_ids, encrypted_batch` in order. The budget is applied in SQL, as
/// v3's read does (`plan::read_sql` says why). `store` picks the store
/// with parameters before `?{first}`.
pub fn read_sql(store: &str, first: usize) -> String {
    let (from, rows, bytes) = (first, first + 1, first + 2);
    format!(
        "SELECT sequence, iv, entry_ids, encrypted_batch FROM (
            SELECT last_sequence, sequence, iv, entry_ids, encrypted_batch,
                SUM(length(iv) + length(entry_ids) + length(encrypted_batch))
                    OVER (ORDER BY last_sequence ROWS UNBOUNDED PRECEDING) AS running,
                ROW_NUMBER() OVER (ORDER BY last_sequence) AS n
            FROM (
                SELECT last_sequence, sequence, iv, entry_ids, encrypted_batch
                FROM evsync_v4_batches
                WHERE {store} AND last_sequence >= ?{from}
                ORDER BY last_sequence LIMIT ?{rows}
            )
        ) WHERE n = 1 OR running <= ?{bytes} ORDER BY last_sequence"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use evsync_core::storage::conformance::{batch_write, entry_id, store};

    #[test]
    fn skips_known_and_stores_partly_known_whole() {
        let a = store("pk", "a");
        let b = store("pk", "b");
        let writes = vec![
            batch_write(&a, 1, &[1, 2]),
            batch_write(&a, 2, &[2, 3]),
            batch_write(&b, 3, &[1]),
            batch_write(&a, 4, &[3, 1]),
        ];
        let known = KnownIds::from([(a.clone(), HashMap::from([(entry_id(1), 4)]))]);
        let heads = HashMap::from([(a.clone(), 5)]);
        let plan = plan_batches(&writes, &known, &heads);
        let results: Vec<(Option<u64>, Vec<u64>)> = plan
            .results
            .iter()
            .map(|r| (r.stored_at, r.sequences.clone()))
            .collect();
        assert_eq!(
            results,
            vec![
                (Some(6), vec![6, 7]),
                (Some(8), vec![8, 9]),
                (Some(1), vec![1]),
                (None, vec![9, 4]),
            ]
        );
        let ids: Vec<(&str, u64)> = plan
            .ids
            .iter()
            .map(|r| (r.store.store_id.as_str(), r.sequence))
            .collect();
        assert_eq!(ids, vec![("a", 7), ("a", 9), ("b", 1)]);
        assert_eq!(id_runs(&plan.ids, 3, 2), vec![0..2, 2..3]);
    }
}
