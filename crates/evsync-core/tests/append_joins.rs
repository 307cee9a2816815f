//! Appends that join the running transaction
//! (`LogConfig::join_open_appends`, what a SQLite writer lane offers):
//! a second append goes out while one is in flight; if storage takes it
//! in, it is answered with the first; if it came too late, it is put back
//! and waits for the next transaction with what arrives meanwhile.

mod support;

use evsync_core::proto::v3::EngineConfig;
use evsync_core::storage::StorageOp;
use support::Harness;

fn joining() -> Harness {
    let mut config = EngineConfig::default();
    config.log.join_open_appends = true;
    Harness::with_config(config)
}

fn pending_appends(h: &Harness) -> Vec<usize> {
    h.pending
        .iter()
        .filter_map(|r| match &r.op {
            StorageOp::Append(batches) => Some(batches.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_joined_append_is_answered_with_the_transaction_it_joined() {
    let mut h = joining();
    let (a, b) = (h.open(1), h.open(2));
    let w1 = h.write(a, "alice", &[1]);
    let w2 = h.write(b, "alice", &[2]);
    assert_eq!(
        pending_appends(&h),
        [1, 1],
        "the second append goes out while the first is in flight"
    );
    let w3 = h.write(a, "alice", &[3]);
    assert_eq!(pending_appends(&h).len(), 2, "at most two in flight");
    assert!(h.join_appends());
    assert_eq!(
        pending_appends(&h),
        [2, 1],
        "joined: its slot is free, the next write goes out at once"
    );
    assert!(h.put_back_append(), "the third came too late: put back");
    let w4 = h.write(b, "alice", &[4]);
    assert_eq!(
        pending_appends(&h),
        [2],
        "after a put-back nothing more goes out until the running one is answered"
    );
    h.run_storage_at(0);
    assert_eq!(h.ack(a, w1), Some(vec![1]));
    assert_eq!(h.ack(b, w2), Some(vec![2]), "the joined write is acked");
    assert_eq!(h.ack(a, w3), None);
    assert_eq!(
        pending_appends(&h),
        [2],
        "what was put back and what came meanwhile make one transaction"
    );
    h.settle();
    assert_eq!(h.ack(a, w3), Some(vec![3]));
    assert_eq!(h.ack(b, w4), Some(vec![4]));
    assert_eq!(h.appends_run, 2, "four writes, two transactions");
}

#[test]
fn a_failed_transaction_fails_the_appends_that_joined_it() {
    let mut h = joining();
    let (a, b) = (h.open(1), h.open(2));
    h.write(a, "alice", &[1]);
    let w2 = h.write(b, "alice", &[2]);
    assert!(h.join_appends());
    // The transaction fails: neither write is stored, both are closed.
    let request = h.pending.pop_front().expect("the running append");
    let StorageOp::Append(_) = request.op else {
        panic!("an append")
    };
    h.engine
        .handle_storage_response(evsync_core::storage::StorageResponse::Appended {
            id: request.id,
            result: Err(evsync_core::storage::StorageError::new("disk full")),
        });
    h.pump();
    assert_eq!(h.ack(b, w2), None, "no Ack for what was not committed");
    assert!(h.closed.contains_key(&a) && h.closed.contains_key(&b));
    assert_eq!(
        h.closed[&b].0, 1011,
        "the joined writer gets the write failure"
    );
}

#[test]
fn without_joins_one_append_is_in_flight() {
    let mut h = Harness::new();
    let (a, b) = (h.open(1), h.open(2));
    h.write(a, "alice", &[1]);
    h.write(b, "alice", &[2]);
    assert_eq!(pending_appends(&h), [1], "the second waits for the first");
}
