//! The conformance checks of appends that take joins
//! ([`Storage::append_with_joins`], [`Storage::append_batches_with_joins`]):
//! what joined is answered after the first writes, in order, with the
//! same rules as one call, in one transaction. Synchronous stores only
//! (joins are offered by the writer lanes of blocking stores).

use super::batches::{batch_write, store};
use super::{ALL, batch, entry_id};
use crate::storage::{
    AppendBatch, Appended, BatchAppended, BatchWrite, Joins, Storage, StorageError,
};
use bytes::Bytes;
use std::collections::VecDeque;

/// Runs every check of joined appends on fresh stores from `fresh`.
pub fn run_joins<S: Storage>(mut fresh: impl FnMut() -> S) {
    joined_entries_are_answered_in_order(&mut fresh());
    joined_batches_are_answered_in_order(&mut fresh());
    a_bad_join_stores_nothing_of_the_transaction(&mut fresh());
    joins_reach_an_append_with_nothing_of_its_own(&mut fresh());
}

/// Yields `joins` one by one, then `None`, and counts the calls.
fn joins_of<'a, T: 'a>(
    joins: Vec<Vec<T>>,
    calls: &'a mut usize,
) -> impl FnMut() -> Option<Vec<T>> + 'a {
    let mut joins: VecDeque<Vec<T>> = joins.into();
    move || {
        *calls += 1;
        joins.pop_front()
    }
}

fn inserted(sequence: u64) -> Appended {
    Appended {
        sequence,
        inserted: true,
    }
}

fn joined_entries_are_answered_in_order<S: Storage>(s: &mut S) {
    let mut calls = 0;
    let mut joins = joins_of(
        vec![
            vec![batch("alice", 2, &[3])],
            vec![batch("alice", 3, &[1, 4])],
        ],
        &mut calls,
    );
    let first = [batch("alice", 1, &[1, 2])];
    let result = s
        .append_with_joins(&first, &mut joins as Joins<'_, AppendBatch>)
        .expect("an append with joins succeeds");
    assert_eq!(
        result,
        vec![
            vec![inserted(1), inserted(2)],
            vec![inserted(3)],
            vec![
                Appended {
                    sequence: 1,
                    inserted: false
                },
                inserted(4)
            ],
        ],
        "joins are answered after the first batches, in order, one call's rules"
    );
    drop(joins);
    assert_eq!(calls, 3, "joins are asked until they say there are none");
    let stored = s.read("alice", 1, ALL).expect("read");
    let ids: Vec<Bytes> = stored.into_iter().map(|e| e.entry_id).collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4].map(entry_id),
        "every joined entry is stored"
    );
}

fn joined_batches_are_answered_in_order<S: Storage>(s: &mut S) {
    let key = store("pk", "default");
    let mut calls = 0;
    let mut joins = joins_of(
        vec![
            vec![batch_write(&key, 2, &[3])],
            vec![batch_write(&key, 3, &[1, 2])],
        ],
        &mut calls,
    );
    let first = [batch_write(&key, 1, &[1, 2])];
    let result = s
        .append_batches_with_joins(&first, &mut joins as Joins<'_, BatchWrite>)
        .expect("an append with joins succeeds");
    let stored = |first: u64, n: u64| BatchAppended {
        stored_at: Some(first),
        sequences: (first..first + n).collect(),
    };
    assert_eq!(
        result,
        vec![
            stored(1, 2),
            stored(3, 1),
            BatchAppended {
                stored_at: None,
                sequences: vec![1, 2],
            },
        ],
        "joined batches are answered after the first, in order; a replay is skipped"
    );
    drop(joins);
    assert_eq!(calls, 3, "joins are asked until they say there are none");
    assert_eq!(s.read_batches(&key, 0, ALL).expect("read").len(), 2);
}

fn a_bad_join_stores_nothing_of_the_transaction<S: Storage>(s: &mut S) {
    let key = store("pk", "default");
    let mut bad = batch_write(&key, 2, &[2]);
    bad.entry_ids = vec![Bytes::from_static(b"short")];
    let mut calls = 0;
    let mut joins = joins_of(vec![vec![bad]], &mut calls);
    let first = [batch_write(&key, 1, &[1])];
    let result: Result<_, StorageError> =
        s.append_batches_with_joins(&first, &mut joins as Joins<'_, BatchWrite>);
    assert!(result.is_err(), "a joined write with a bad entry id fails");
    assert!(
        s.read_batches(&key, 0, ALL).expect("read").is_empty(),
        "the first writes of the failed transaction are not stored either"
    );
}

fn joins_reach_an_append_with_nothing_of_its_own<S: Storage>(s: &mut S) {
    let key = store("pk", "default");
    let mut calls = 0;
    let mut joins = joins_of(vec![vec![batch_write(&key, 1, &[1])]], &mut calls);
    let mut empty = batch_write(&key, 0, &[]);
    empty.encrypted_batch = Bytes::new();
    let result = s
        .append_batches_with_joins(&[empty], &mut joins as Joins<'_, BatchWrite>)
        .expect("an empty append with a join succeeds");
    assert_eq!(result.len(), 2, "one answer per write");
    assert_eq!(result[1].stored_at, Some(1), "the join is stored");
    drop(joins);
    assert_eq!(calls, 2);
    let mut calls = 0;
    let mut joins = joins_of(vec![vec![batch("bob", 1, &[1])]], &mut calls);
    let result = s
        .append_with_joins(
            &[batch("bob", 0, &[])],
            &mut joins as Joins<'_, AppendBatch>,
        )
        .expect("an empty v3 append with a join succeeds");
    assert_eq!(result, vec![vec![], vec![inserted(1)]]);
}
