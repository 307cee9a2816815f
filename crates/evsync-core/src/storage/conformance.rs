//! The conformance suite every storage backend runs.
//!
//! Each backend's tests call [`run_all`] with a function that opens a fresh,
//! empty store, and [`run_persistence`] with one that reopens the same data.
//! The checks panic with a message naming the rule that was broken. They are
//! written against [`AsyncStorage`] so that synchronous and asynchronous
//! backends share them; [`block_on`] runs them where no runtime exists.

use super::{
    AppendBatch, Appended, AsyncStorage, LogHead, MAX_TOKENS_NOT_BEFORE_MS, ReadLimit, StoreStats,
    entry_bytes,
};
use crate::wire::RemoteId;
use crate::wire::{EncryptedEntry, RemoteEntry};
use bytes::Bytes;
use std::future::Future;

mod batches;
mod joins;
pub use batches::{batch_write, store};
pub use joins::run_joins;

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

pub use super::block_on;

/// A 16-byte entry id derived from `n`, distinct for distinct `n`.
pub fn entry_id(n: u64) -> Bytes {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8] = 0x70;
    Bytes::copy_from_slice(&id)
}

/// An entry with id `entry_id(n)` and a payload that names `n`.
pub fn entry(n: u64) -> EncryptedEntry {
    EncryptedEntry {
        entry_id: entry_id(n),
        encrypted_entry: Bytes::from(format!("payload-{n}").into_bytes()),
    }
}

/// A batch for `public_key` with entries numbered `ns` and an iv made of `iv`.
pub fn batch(public_key: &str, iv: u8, ns: &[u64]) -> AppendBatch {
    AppendBatch {
        public_key: public_key.to_string(),
        iv: Bytes::from(vec![iv; 12]),
        entries: ns.iter().map(|&n| entry(n)).collect(),
    }
}

fn seqs(outcome: &[Appended]) -> Vec<u64> {
    outcome.iter().map(|a| a.sequence).collect()
}

fn inserted(outcome: &[Appended]) -> Vec<bool> {
    outcome.iter().map(|a| a.inserted).collect()
}

async fn read_all<S: AsyncStorage>(store: &mut S, public_key: &str) -> Vec<RemoteEntry> {
    store
        .read(public_key, 0, ALL)
        .await
        .expect("read must succeed")
}

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run_all<S, F, Fut>(mut fresh: F)
where
    S: AsyncStorage,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    remote_id_is_stable(fresh().await).await;
    sequences_start_at_one_per_log(fresh().await).await;
    duplicates_report_original_sequence(fresh().await).await;
    duplicates_inside_one_call(fresh().await).await;
    same_entry_id_in_two_logs(fresh().await).await;
    entries_keep_their_batch_iv_and_bytes(fresh().await).await;
    read_ranges(fresh().await).await;
    read_limits(fresh().await).await;
    empty_appends(fresh().await).await;
    large_and_many_entries(fresh().await).await;
    unusual_public_keys(fresh().await).await;
    tokens_not_before_never_moves_backwards(fresh().await).await;
    tokens_not_before_is_kept_apart_from_logs(fresh().await).await;
    tokens_not_before_range(fresh().await).await;
    stats_count_what_is_stored(fresh().await).await;
    logs_list_heads_in_key_order(fresh().await).await;
    adopted_remote_id_is_kept(fresh().await).await;
    adopting_refuses_another_remote_id(fresh().await).await;
    batches::run_all(&mut fresh).await;
}

/// Checks that data and the remoteId survive reopening: `open` must return a
/// store over the same underlying data each time it is called.
pub async fn run_persistence<S, F, Fut>(mut open: F)
where
    S: AsyncStorage,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let (remote_id, first) = {
        let mut store = open().await;
        assert_eq!(
            store.tokens_not_before().await.expect("tokens_not_before"),
            None,
            "a fresh tenant's tokens were never revoked"
        );
        let remote_id = store.remote_id().await.expect("remote_id");
        let first = store
            .append(&[batch("pk", 1, &[1, 2, 3])])
            .await
            .expect("append");
        assert_eq!(
            store
                .set_tokens_not_before(REVOKED_AT)
                .await
                .expect("set_tokens_not_before"),
            REVOKED_AT
        );
        batches::persistence_first(&mut store).await;
        (remote_id, first)
    };
    assert_eq!(seqs(&first[0]), vec![1, 2, 3]);
    let mut store = open().await;
    assert_eq!(
        store.remote_id().await.expect("remote_id"),
        remote_id,
        "the remoteId must not change when the store is reopened"
    );
    assert_eq!(
        store
            .tokens_not_before()
            .await
            .expect("tokens_not_before after reopen"),
        Some(REVOKED_AT),
        "a revocation must survive reopening"
    );
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT - 1)
            .await
            .expect("set_tokens_not_before after reopen"),
        REVOKED_AT,
        "a reopened store still never lowers the stored instant"
    );
    assert_eq!(
        read_all(&mut store, "pk").await.len(),
        3,
        "stored entries must survive reopening"
    );
    let stats = store.stats().await.expect("stats after reopen");
    assert_eq!(
        (stats.logs, stats.entries),
        (1, 3),
        "stats count the entries stored before reopening"
    );
    let again = store
        .append(&[batch("pk", 2, &[3, 4])])
        .await
        .expect("append after reopen");
    assert_eq!(
        again[0],
        vec![
            Appended {
                sequence: 3,
                inserted: false
            },
            Appended {
                sequence: 4,
                inserted: true
            }
        ],
        "dedup and sequences must continue across reopening"
    );
    batches::persistence_second(&mut store).await;
}

/// A realistic revocation instant (2026-01-01T00:00:00Z in ms): past 2^32,
/// so a backend that narrows it to 32 bits fails.
pub const REVOKED_AT: u64 = 1_767_225_600_000;

async fn remote_id_is_stable<S: AsyncStorage>(mut store: S) {
    let a = store.remote_id().await.expect("remote_id");
    store.append(&[batch("pk", 1, &[1])]).await.expect("append");
    let b = store.remote_id().await.expect("remote_id");
    assert_eq!(a, b, "the remoteId must not change while data exists");
    assert_eq!(a.0[6] >> 4, 4, "the remoteId must be a UUID v4");
}

async fn sequences_start_at_one_per_log<S: AsyncStorage>(mut store: S) {
    let out = store
        .append(&[batch("a", 1, &[1, 2]), batch("b", 1, &[3])])
        .await
        .expect("append");
    assert_eq!(out.len(), 2, "one result per batch");
    assert_eq!(seqs(&out[0]), vec![1, 2], "log a starts at 1");
    assert_eq!(seqs(&out[1]), vec![1], "log b has its own sequence");
    assert_eq!(inserted(&out[0]), vec![true, true]);
    let out = store.append(&[batch("a", 2, &[4])]).await.expect("append");
    assert_eq!(seqs(&out[0]), vec![3], "sequences increase in commit order");
}

async fn duplicates_report_original_sequence<S: AsyncStorage>(mut store: S) {
    store
        .append(&[batch("pk", 1, &[1, 2, 3])])
        .await
        .expect("append");
    let out = store
        .append(&[batch("pk", 2, &[4, 2, 5, 1])])
        .await
        .expect("append");
    assert_eq!(
        seqs(&out[0]),
        vec![4, 2, 5, 1],
        "an already stored entry reports its original sequence in its position"
    );
    assert_eq!(inserted(&out[0]), vec![true, false, true, false]);
    let all = read_all(&mut store, "pk").await;
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "a duplicate is not stored twice"
    );
    assert_eq!(
        all[1].iv,
        Bytes::from(vec![1u8; 12]),
        "a duplicate keeps its first iv"
    );
}

async fn duplicates_inside_one_call<S: AsyncStorage>(mut store: S) {
    let out = store
        .append(&[batch("pk", 1, &[7, 8, 7]), batch("pk", 2, &[8, 9])])
        .await
        .expect("append");
    assert_eq!(seqs(&out[0]), vec![1, 2, 1], "repeat inside one batch");
    assert_eq!(inserted(&out[0]), vec![true, true, false]);
    assert_eq!(
        seqs(&out[1]),
        vec![2, 3],
        "repeat across batches of one call"
    );
    assert_eq!(inserted(&out[1]), vec![false, true]);
    assert_eq!(read_all(&mut store, "pk").await.len(), 3);
}

async fn same_entry_id_in_two_logs<S: AsyncStorage>(mut store: S) {
    store
        .append(&[batch("a", 1, &[1, 2])])
        .await
        .expect("append");
    let out = store.append(&[batch("b", 1, &[2])]).await.expect("append");
    assert_eq!(
        out[0],
        vec![Appended {
            sequence: 1,
            inserted: true
        }],
        "dedup is per log, not per tenant"
    );
}

async fn entries_keep_their_batch_iv_and_bytes<S: AsyncStorage>(mut store: S) {
    let binary = EncryptedEntry {
        entry_id: Bytes::from_static(&[0u8; 16]),
        encrypted_entry: Bytes::from((0..=255u8).collect::<Vec<_>>()),
    };
    let first = AppendBatch {
        public_key: "pk".into(),
        iv: Bytes::from_static(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
        entries: vec![binary.clone(), entry(1)],
    };
    store
        .append(&[first.clone(), batch("pk", 9, &[2])])
        .await
        .expect("append");
    let all = read_all(&mut store, "pk").await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].iv, first.iv);
    assert_eq!(all[0].entry_id, binary.entry_id, "entry ids round-trip");
    assert_eq!(
        all[0].encrypted_entry, binary.encrypted_entry,
        "ciphertext round-trips byte for byte"
    );
    assert_eq!(all[1].iv, first.iv, "every entry keeps its batch iv");
    assert_eq!(all[2].iv, Bytes::from(vec![9u8; 12]));
    assert_eq!(all[2].encrypted_entry, entry(2).encrypted_entry);
}

async fn read_ranges<S: AsyncStorage>(mut store: S) {
    store
        .append(&[batch("pk", 1, &[1, 2, 3, 4, 5])])
        .await
        .expect("append");
    let from = |v: Vec<RemoteEntry>| v.iter().map(|e| e.sequence).collect::<Vec<_>>();
    assert_eq!(
        from(store.read("pk", 0, ALL).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        from(store.read("pk", 1, ALL).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        from(store.read("pk", 4, ALL).await.unwrap()),
        vec![4, 5],
        "read includes start sequence"
    );
    assert!(store.read("pk", 6, ALL).await.unwrap().is_empty());
    assert!(
        store
            .read("pk", u64::MAX / 2, ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.read("other", 0, ALL).await.unwrap().is_empty(),
        "an unknown log reads as empty"
    );
}

async fn read_limits<S: AsyncStorage>(mut store: S) {
    store
        .append(&[batch("pk", 1, &[1, 2, 3, 4, 5])])
        .await
        .expect("append");
    let limited = store
        .read(
            "pk",
            2,
            ReadLimit {
                max_entries: 2,
                max_bytes: usize::MAX,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        limited.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![2, 3]
    );
    let one = store
        .read(
            "pk",
            1,
            ReadLimit {
                max_entries: 100,
                max_bytes: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(one.len(), 1, "a read returns one entry even over max_bytes");
    let size = super::entry_bytes(&one[0]);
    let two = store
        .read(
            "pk",
            1,
            ReadLimit {
                max_entries: 100,
                max_bytes: size * 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(two.len(), 2, "max_bytes counts iv + entryId + ciphertext");
}

async fn empty_appends<S: AsyncStorage>(mut store: S) {
    let out = store.append(&[]).await.expect("empty append");
    assert!(out.is_empty());
    let out = store
        .append(&[batch("pk", 1, &[])])
        .await
        .expect("append of an empty batch");
    assert_eq!(out, vec![vec![]]);
    let out = store.append(&[batch("pk", 1, &[1])]).await.expect("append");
    assert_eq!(seqs(&out[0]), vec![1], "empty batches consume no sequence");
}

async fn large_and_many_entries<S: AsyncStorage>(mut store: S) {
    let big = EncryptedEntry {
        entry_id: entry_id(1),
        encrypted_entry: Bytes::from(vec![0xab; 1_500_000]),
    };
    store
        .append(&[AppendBatch {
            public_key: "pk".into(),
            iv: Bytes::from(vec![1u8; 12]),
            entries: vec![big.clone()],
        }])
        .await
        .expect("append of a 1.5 MB entry");
    let ns: Vec<u64> = (2..=1001).collect();
    let out = store
        .append(&[batch("pk", 2, &ns)])
        .await
        .expect("append of 1,000 entries in one batch");
    assert_eq!(seqs(&out[0]), (2..=1001).collect::<Vec<_>>());
    let all = read_all(&mut store, "pk").await;
    assert_eq!(all.len(), 1001);
    assert_eq!(all[0].encrypted_entry, big.encrypted_entry);
    assert!(all.windows(2).all(|w| w[0].sequence + 1 == w[1].sequence));
}

async fn unusual_public_keys<S: AsyncStorage>(mut store: S) {
    let keys = [
        "",
        "ключ-🔑",
        "'; DROP TABLE entries; --",
        "a\0b",
        &"k".repeat(2000),
    ];
    for (i, key) in keys.iter().enumerate() {
        let out = store
            .append(&[batch(key, 1, &[i as u64])])
            .await
            .expect("append under an unusual publicKey");
        assert_eq!(seqs(&out[0]), vec![1], "{key:?} has its own log");
    }
    for (i, key) in keys.iter().enumerate() {
        let all = read_all(&mut store, key).await;
        assert_eq!(all.len(), 1, "{key:?} reads back its own entry");
        assert_eq!(all[0].entry_id, entry_id(i as u64));
    }
}

async fn tokens_not_before_never_moves_backwards<S: AsyncStorage>(mut store: S) {
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        None,
        "a fresh tenant's tokens were never revoked"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        None,
        "reading stores nothing"
    );
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT)
            .await
            .expect("set_tokens_not_before"),
        REVOKED_AT,
        "the first revocation is stored as given"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(REVOKED_AT),
        "a revocation reads back exactly"
    );
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT - 60_000)
            .await
            .expect("set_tokens_not_before lower"),
        REVOKED_AT,
        "an earlier instant does not lower the stored one; the stored one is returned"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(REVOKED_AT),
        "an earlier instant leaves the stored one"
    );
    assert_eq!(
        store
            .set_tokens_not_before(0)
            .await
            .expect("set_tokens_not_before 0"),
        REVOKED_AT,
        "0 does not clear a revocation"
    );
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT)
            .await
            .expect("set_tokens_not_before same"),
        REVOKED_AT,
        "the same instant again is a no-op"
    );
    assert_eq!(
        store
            .set_tokens_not_before(REVOKED_AT + 1)
            .await
            .expect("set_tokens_not_before higher"),
        REVOKED_AT + 1,
        "a later instant raises it, by as little as 1 ms"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(REVOKED_AT + 1)
    );
}

async fn tokens_not_before_is_kept_apart_from_logs<S: AsyncStorage>(mut store: S) {
    assert_eq!(
        store
            .set_tokens_not_before(0)
            .await
            .expect("set_tokens_not_before 0"),
        0,
        "0 (the epoch) is an instant like any other"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(0),
        "a revocation at the epoch is not \"never revoked\""
    );
    let remote_id = store.remote_id().await.expect("remote_id");
    store
        .append(&[batch("pk", 1, &[1, 2])])
        .await
        .expect("append");
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(0),
        "appending leaves the revocation"
    );
    store
        .set_tokens_not_before(REVOKED_AT)
        .await
        .expect("set_tokens_not_before");
    assert_eq!(
        store.remote_id().await.expect("remote_id"),
        remote_id,
        "a revocation leaves the remoteId"
    );
    assert_eq!(
        read_all(&mut store, "pk").await.len(),
        2,
        "a revocation leaves the logs"
    );
    let out = store.append(&[batch("pk", 1, &[3])]).await.expect("append");
    assert_eq!(seqs(&out[0]), vec![3], "and their sequences");
}

async fn tokens_not_before_range<S: AsyncStorage>(mut store: S) {
    assert_eq!(
        store
            .set_tokens_not_before(MAX_TOKENS_NOT_BEFORE_MS + 1)
            .await
            .map_err(|e| e.message.contains("tokens_not_before")),
        Err(true),
        "an instant past MAX_TOKENS_NOT_BEFORE_MS is refused with a reason"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        None,
        "a refused instant stores nothing"
    );
    assert!(
        store.set_tokens_not_before(u64::MAX).await.is_err(),
        "u64::MAX is refused, not wrapped"
    );
    assert_eq!(
        store
            .set_tokens_not_before(MAX_TOKENS_NOT_BEFORE_MS)
            .await
            .expect("set_tokens_not_before max"),
        MAX_TOKENS_NOT_BEFORE_MS,
        "the largest storable instant is stored exactly"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(MAX_TOKENS_NOT_BEFORE_MS),
        "and reads back exactly"
    );
    assert!(
        store
            .set_tokens_not_before(MAX_TOKENS_NOT_BEFORE_MS + 1)
            .await
            .is_err(),
        "refused over a stored instant too"
    );
    assert_eq!(
        store.tokens_not_before().await.expect("tokens_not_before"),
        Some(MAX_TOKENS_NOT_BEFORE_MS)
    );
}

/// Sum of [`entry_bytes`] over `entries`.
fn total_bytes(entries: &[RemoteEntry]) -> u64 {
    entries.iter().map(|e| entry_bytes(e) as u64).sum()
}

async fn stats_count_what_is_stored<S: AsyncStorage>(mut store: S) {
    let empty = StoreStats {
        logs: 0,
        entries: 0,
        bytes: 0,
        last_write_ms: None,
    };
    assert_eq!(
        store.stats().await.expect("stats of a fresh store"),
        empty,
        "a fresh store holds nothing and was never written"
    );
    store.remote_id().await.expect("remote_id");
    store
        .set_tokens_not_before(REVOKED_AT)
        .await
        .expect("set_tokens_not_before");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (stats.logs, stats.entries, stats.bytes),
        (0, 0, 0),
        "the remoteId and a revocation are not entries"
    );
    store
        .append(&[
            batch("a", 1, &[1, 2]),
            batch("b", 2, &[3]),
            batch("c", 3, &[]),
        ])
        .await
        .expect("append");
    store
        .append(&[batch("a", 4, &[2, 4])])
        .await
        .expect("append with a duplicate");
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats.logs, 2,
        "logs with entries: an empty batch makes no log"
    );
    assert_eq!(stats.entries, 4, "a duplicate is not counted twice");
    let a = read_all(&mut store, "a").await;
    let b = read_all(&mut store, "b").await;
    assert_eq!(
        stats.bytes,
        total_bytes(&a) + total_bytes(&b),
        "bytes are iv + entryId + encryptedEntry, as reads count them"
    );
    assert_eq!(
        stats.bytes,
        4 * (12 + 16 + "payload-n".len() as u64),
        "bytes are the stored lengths"
    );
    let big = EncryptedEntry {
        entry_id: entry_id(9),
        encrypted_entry: Bytes::from(vec![0xcd; 100_000]),
    };
    store
        .append(&[AppendBatch {
            public_key: "b".into(),
            iv: Bytes::from(vec![5u8; 12]),
            entries: vec![big],
        }])
        .await
        .expect("append of a 100 kB entry");
    let after = store.stats().await.expect("stats");
    assert_eq!((after.logs, after.entries), (2, 5));
    assert_eq!(
        after.bytes,
        stats.bytes + 12 + 16 + 100_000,
        "a large entry counts its whole length"
    );
}

/// `logs` lists every log with entries and its head, in publicKey byte
/// order, and creates nothing (no remoteId) on a fresh store.
async fn logs_list_heads_in_key_order<S: AsyncStorage>(mut store: S) {
    assert_eq!(
        store.logs().await.expect("logs"),
        Vec::<LogHead>::new(),
        "a fresh store has no logs"
    );
    assert_eq!(
        store.stats().await.expect("stats"),
        StoreStats::default(),
        "listing logs created nothing"
    );
    store
        .append(&[
            batch("b", 1, &[1, 2, 3]),
            batch("a", 2, &[4]),
            batch("B", 3, &[5, 6]),
        ])
        .await
        .expect("append");
    // a duplicate does not move a head
    store.append(&[batch("a", 4, &[4])]).await.expect("append");
    let heads = store.logs().await.expect("logs");
    let listed: Vec<(&str, u64)> = heads
        .iter()
        .map(|h| (h.public_key.as_str(), h.head))
        .collect();
    assert_eq!(
        listed,
        vec![("B", 2), ("a", 1), ("b", 3)],
        "logs: byte order, heads"
    );
}

/// A store given a remoteId by `adopt_remote_id` answers with it from then
/// on, and adopting the same one again is harmless.
async fn adopted_remote_id_is_kept<S: AsyncStorage>(mut store: S) {
    let wanted = RemoteId::from_random_bytes([0x42; 16]);
    store
        .adopt_remote_id(wanted)
        .await
        .expect("adopt on a fresh store");
    assert_eq!(
        store.remote_id().await.expect("remote_id"),
        wanted,
        "the adopted remoteId"
    );
    store
        .adopt_remote_id(wanted)
        .await
        .expect("adopting the same remoteId again");
    store.append(&[batch("pk", 1, &[1])]).await.expect("append");
    assert_eq!(
        store.remote_id().await.expect("remote_id"),
        wanted,
        "kept after an append"
    );
}

/// A store that has a remoteId refuses another and keeps its own.
async fn adopting_refuses_another_remote_id<S: AsyncStorage>(mut store: S) {
    let held = store.remote_id().await.expect("remote_id");
    let other = RemoteId::from_random_bytes([0x17; 16]);
    assert_ne!(held, other);
    let err = store
        .adopt_remote_id(other)
        .await
        .expect_err("adopting another remoteId must be refused");
    assert!(err.message.contains("already has remoteId"), "{err}");
    assert_eq!(
        store.remote_id().await.expect("remote_id"),
        held,
        "the remoteId did not change"
    );
}
