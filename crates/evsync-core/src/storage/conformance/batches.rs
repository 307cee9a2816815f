//! The conformance checks of Effect v4 batch storage
//! ([`AsyncStorage::append_batches`], [`AsyncStorage::read_batches`],
//! [`AsyncStorage::bind_signing_key`]), run by [`super::run_all`] and
//! [`super::run_persistence`].

use super::{ALL, batch as v3_batch, entry_id};
use crate::storage::{
    AsyncStorage, BatchAppended, BatchWrite, ReadLimit, SigningKeyBinding, StoreHead, StoreKey,
    StoreStats, StoredBatch, batch_bytes,
};
use crate::wire::Sequence;
use bytes::Bytes;

/// A store key.
pub fn store(public_key: &str, store_id: &str) -> StoreKey {
    StoreKey::new(public_key, store_id)
}

/// A batch for `store` with entry ids `entry_id(n)` for `ns`, an iv made of
/// `iv` and a ciphertext that names `ns`.
pub fn batch_write(store: &StoreKey, iv: u8, ns: &[u64]) -> BatchWrite {
    BatchWrite {
        store: store.clone(),
        iv: Bytes::from(vec![iv; 12]),
        entry_ids: ns.iter().map(|&n| entry_id(n)).collect(),
        encrypted_batch: Bytes::from(format!("batch-{ns:?}").into_bytes()),
    }
}

fn stored(first: Sequence, n: u64) -> BatchAppended {
    BatchAppended {
        stored_at: Some(first),
        sequences: (first..first + n).collect(),
    }
}

fn skipped(sequences: &[Sequence]) -> BatchAppended {
    BatchAppended {
        stored_at: None,
        sequences: sequences.to_vec(),
    }
}

async fn append<S: AsyncStorage>(store: &mut S, writes: &[BatchWrite]) -> Vec<BatchAppended> {
    store
        .append_batches(writes)
        .await
        .expect("append_batches must succeed")
}

async fn read_all<S: AsyncStorage>(store: &mut S, key: &StoreKey) -> Vec<StoredBatch> {
    store
        .read_batches(key, 0, ALL)
        .await
        .expect("read_batches must succeed")
}

/// The spans of `key`'s batches read from `from`.
async fn spans_from<S: AsyncStorage>(
    s: &mut S,
    key: &StoreKey,
    from: Sequence,
) -> Vec<(Sequence, Sequence)> {
    spans(&s.read_batches(key, from, ALL).await.expect("read_batches"))
}

async fn bind<S: AsyncStorage>(s: &mut S, public_key: &str, key: [u8; 32]) -> [u8; 32] {
    s.bind_signing_key(public_key, &key)
        .await
        .expect("bind_signing_key")
}

/// (first sequence, last sequence) of each batch.
fn spans(batches: &[StoredBatch]) -> Vec<(Sequence, Sequence)> {
    batches.iter().map(|b| (b.sequence, b.last())).collect()
}

/// Runs every batch check, each on a fresh store from `fresh`.
pub(super) async fn run_all<S, F, Fut>(fresh: &mut F)
where
    S: AsyncStorage,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    batch_sequences_start_at_one_per_store(fresh().await).await;
    batches_of_known_ids_are_skipped(fresh().await).await;
    a_partly_known_batch_is_stored_whole(fresh().await).await;
    batch_stores_are_independent(fresh().await).await;
    v3_logs_and_v4_stores_never_meet(fresh().await).await;
    batches_are_read_by_last_sequence(fresh().await).await;
    batch_read_limits(fresh().await).await;
    batches_round_trip_byte_for_byte(fresh().await).await;
    empty_writes_and_refused_ids(fresh().await).await;
    unusual_store_keys(fresh().await).await;
    a_large_batch(fresh().await).await;
    signing_keys_first_offer_wins(fresh().await).await;
    stores_and_bindings_are_listed_in_key_order(fresh().await).await;
}

/// Stores a batch and binds a key on the first store `open` gives; the
/// second must still have both, and continue sequences and dedup.
pub(super) async fn persistence_first<S: AsyncStorage>(store: &mut S) {
    let key = store_key_for_persistence();
    assert_eq!(
        append(store, &[batch_write(&key, 1, &[101, 102, 103])]).await,
        vec![stored(1, 3)]
    );
    assert_eq!(
        store.bind_signing_key("pk", &[1; 32]).await.expect("bind"),
        [1; 32]
    );
}

/// The second half of [`persistence_first`], on the reopened store.
pub(super) async fn persistence_second<S: AsyncStorage>(store: &mut S) {
    let key = store_key_for_persistence();
    let batches = read_all(store, &key).await;
    assert_eq!(
        batches,
        vec![StoredBatch {
            sequence: 1,
            iv: Bytes::from(vec![1u8; 12]),
            entry_ids: vec![entry_id(101), entry_id(102), entry_id(103)],
            encrypted_batch: batch_write(&key, 1, &[101, 102, 103]).encrypted_batch,
        }],
        "stored batches must survive reopening"
    );
    assert_eq!(
        store.bind_signing_key("pk", &[2; 32]).await.expect("bind"),
        [1; 32],
        "a signing key binding must survive reopening"
    );
    assert_eq!(
        append(
            store,
            &[
                batch_write(&key, 2, &[102]),
                batch_write(&key, 3, &[104, 105])
            ]
        )
        .await,
        vec![skipped(&[2]), stored(4, 2)],
        "batch dedup and sequences must continue across reopening"
    );
}

fn store_key_for_persistence() -> StoreKey {
    store("pk", "default")
}

async fn batch_sequences_start_at_one_per_store<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    assert_eq!(
        append(
            &mut s,
            &[batch_write(&key, 1, &[1, 2]), batch_write(&key, 2, &[3])]
        )
        .await,
        vec![stored(1, 2), stored(3, 1)],
        "a store's sequences start at 1; a batch takes one per entry id"
    );
    assert_eq!(
        append(&mut s, &[batch_write(&key, 3, &[4, 5, 6])]).await,
        vec![stored(4, 3)],
        "sequences continue in commit order, without gaps"
    );
    assert_eq!(
        spans(&read_all(&mut s, &key).await),
        vec![(1, 2), (3, 3), (4, 6)]
    );
}

async fn batches_of_known_ids_are_skipped<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    append(&mut s, &[batch_write(&key, 1, &[1, 2])]).await;
    assert_eq!(
        append(&mut s, &[batch_write(&key, 2, &[2, 1])]).await,
        vec![skipped(&[2, 1])],
        "a batch of known ids is skipped; each id acks where it was first stored"
    );
    assert_eq!(
        append(
            &mut s,
            &[
                batch_write(&key, 3, &[7, 8]),
                batch_write(&key, 4, &[8, 7]),
                batch_write(&key, 5, &[9, 9]),
                batch_write(&key, 6, &[9]),
            ]
        )
        .await,
        vec![stored(3, 2), skipped(&[4, 3]), stored(5, 2), skipped(&[5])],
        "ids stored earlier in the same call count as known; a repeated id keeps its first sequence"
    );
    let batches = read_all(&mut s, &key).await;
    assert_eq!(
        spans(&batches),
        vec![(1, 2), (3, 4), (5, 6)],
        "skipped batches are not stored"
    );
    assert_eq!(
        batches[0].iv,
        Bytes::from(vec![1u8; 12]),
        "a replay keeps the first copy"
    );
    assert_eq!(
        append(&mut s, &[batch_write(&key, 7, &[10])]).await,
        vec![stored(7, 1)],
        "skipped batches take no sequence"
    );
}

async fn a_partly_known_batch_is_stored_whole<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    append(&mut s, &[batch_write(&key, 1, &[1, 2])]).await;
    assert_eq!(
        append(&mut s, &[batch_write(&key, 2, &[2, 3])]).await,
        vec![stored(3, 2)],
        "a batch with one new id is stored whole; its acks are its positions"
    );
    assert_eq!(
        append(
            &mut s,
            &[batch_write(&key, 3, &[2]), batch_write(&key, 4, &[3])]
        )
        .await,
        vec![skipped(&[2]), skipped(&[4])],
        "an id already known keeps its first sequence; a new one records its position"
    );
    let batches = read_all(&mut s, &key).await;
    assert_eq!(spans(&batches), vec![(1, 2), (3, 4)]);
    assert_eq!(
        batches[1].entry_ids,
        vec![entry_id(2), entry_id(3)],
        "the whole batch is stored, known id included"
    );
}

async fn batch_stores_are_independent<S: AsyncStorage>(mut s: S) {
    let a = store("p", "a");
    let b = store("p", "b");
    let c = store("q", "a");
    assert_eq!(
        append(
            &mut s,
            &[
                batch_write(&a, 1, &[1, 2]),
                batch_write(&b, 2, &[1, 2]),
                batch_write(&c, 3, &[1, 2]),
                batch_write(&a, 4, &[3]),
            ]
        )
        .await,
        vec![stored(1, 2), stored(1, 2), stored(1, 2), stored(3, 1)],
        "each (publicKey, storeId) has its own sequences and entry ids"
    );
    assert_eq!(spans(&read_all(&mut s, &a).await), vec![(1, 2), (3, 3)]);
    assert_eq!(spans(&read_all(&mut s, &b).await), vec![(1, 2)]);
    let in_c = read_all(&mut s, &c).await;
    assert_eq!(spans(&in_c), vec![(1, 2)]);
    assert_eq!(in_c[0].iv, Bytes::from(vec![3u8; 12]), "q's own batch");
    assert!(
        read_all(&mut s, &store("q", "b")).await.is_empty(),
        "an unknown store reads as empty"
    );
}

/// A v3 log and a v4 store of one publicKey have their own sequences and
/// dedup; v3's listings and figures count v3 logs only.
async fn v3_logs_and_v4_stores_never_meet<S: AsyncStorage>(mut s: S) {
    let v3 = s
        .append(&[v3_batch("P", 1, &[1, 2])])
        .await
        .expect("v3 append");
    assert_eq!(v3[0].iter().map(|a| a.sequence).collect::<Vec<_>>(), [1, 2]);
    let v4 = store("P", "default");
    assert_eq!(
        append(&mut s, &[batch_write(&v4, 2, &[1, 2])]).await,
        vec![stored(1, 2)],
        "a v4 store starts at 1 beside a v3 log of its publicKey, and the same ids are new to it"
    );
    append(&mut s, &[batch_write(&store("Q", "default"), 3, &[5])]).await;
    let v3 = s
        .append(&[v3_batch("P", 1, &[3])])
        .await
        .expect("v3 append");
    assert_eq!(v3[0][0].sequence, 3, "v3 sequences ignore v4 writes");
    let heads = s.logs().await.expect("logs");
    assert_eq!(
        heads
            .iter()
            .map(|h| (h.public_key.as_str(), h.head))
            .collect::<Vec<_>>(),
        vec![("P", 3)],
        "logs() lists v3 logs only"
    );
    let stats = s.stats().await.expect("stats");
    assert_eq!(
        (stats.logs, stats.entries),
        (1, 3),
        "stats count v3 logs only"
    );
    assert_eq!(
        s.read("P", 0, ALL).await.expect("v3 read").len(),
        3,
        "a v3 read sees no batch"
    );
    assert!(
        s.read("Q", 0, ALL).await.expect("v3 read").is_empty(),
        "a v4 store makes no v3 log"
    );
    assert_eq!(spans(&read_all(&mut s, &v4).await), vec![(1, 2)]);
}

async fn batches_are_read_by_last_sequence<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    append(
        &mut s,
        &[
            batch_write(&key, 1, &[1, 2, 3]),
            batch_write(&key, 2, &[4]),
            batch_write(&key, 3, &[5, 6]),
        ],
    )
    .await;
    let all = vec![(1, 3), (4, 4), (5, 6)];
    assert_eq!(spans_from(&mut s, &key, 0).await, all);
    assert_eq!(spans_from(&mut s, &key, 1).await, all);
    assert_eq!(
        spans_from(&mut s, &key, 2).await,
        all,
        "a from inside a batch returns that batch"
    );
    assert_eq!(
        spans_from(&mut s, &key, 3).await,
        all,
        "a batch ending at from is read"
    );
    assert_eq!(spans_from(&mut s, &key, 4).await, vec![(4, 4), (5, 6)]);
    assert_eq!(spans_from(&mut s, &key, 6).await, vec![(5, 6)]);
    assert!(
        spans_from(&mut s, &key, 7).await.is_empty(),
        "past the head: nothing"
    );
    assert!(spans_from(&mut s, &key, u64::MAX / 2).await.is_empty());
    assert!(spans_from(&mut s, &key, u64::MAX).await.is_empty());
    assert!(
        read_all(&mut s, &store("pk", "other")).await.is_empty(),
        "an unknown store reads as empty"
    );
    assert_eq!(
        append(&mut s, &[batch_write(&store("pk", "other"), 1, &[1])]).await,
        vec![stored(1, 1)],
        "reading created nothing"
    );
}

async fn batch_read_limits<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    append(
        &mut s,
        &[
            batch_write(&key, 1, &[1, 2]),
            batch_write(&key, 2, &[3]),
            batch_write(&key, 3, &[4, 5]),
        ],
    )
    .await;
    let read = |max_entries, max_bytes| ReadLimit {
        max_entries,
        max_bytes,
    };
    let two = s
        .read_batches(&key, 2, read(2, usize::MAX))
        .await
        .expect("read");
    assert_eq!(
        spans(&two),
        vec![(1, 2), (3, 3)],
        "max_entries counts batches"
    );
    let one = s.read_batches(&key, 1, read(100, 1)).await.expect("read");
    assert_eq!(
        spans(&one),
        vec![(1, 2)],
        "a read returns one batch even over max_bytes"
    );
    let size = batch_bytes(&one[0]);
    assert_eq!(size, 12 + 2 * 16 + one[0].encrypted_batch.len());
    let second = batch_bytes(&two[1]);
    let both = s
        .read_batches(&key, 1, read(100, size + second))
        .await
        .expect("read");
    assert_eq!(
        both.len(),
        2,
        "max_bytes counts iv + entry ids + ciphertext"
    );
    let short = s
        .read_batches(&key, 1, read(100, size + second - 1))
        .await
        .expect("read");
    assert_eq!(short.len(), 1, "a batch over the budget is left for later");
    assert!(
        s.read_batches(&key, 1, read(0, usize::MAX))
            .await
            .expect("read")
            .is_empty(),
        "max_entries 0 reads nothing"
    );
}

async fn batches_round_trip_byte_for_byte<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    let write = BatchWrite {
        store: key.clone(),
        iv: Bytes::from_static(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xff]),
        entry_ids: vec![
            Bytes::from_static(&[0u8; 16]),
            Bytes::from_static(&[0xffu8; 16]),
            entry_id(3),
        ],
        encrypted_batch: Bytes::from((0..=255u8).collect::<Vec<_>>()),
    };
    append(&mut s, std::slice::from_ref(&write)).await;
    assert_eq!(
        read_all(&mut s, &key).await,
        vec![StoredBatch {
            sequence: 1,
            iv: write.iv,
            entry_ids: write.entry_ids,
            encrypted_batch: write.encrypted_batch,
        }],
        "iv, entry ids and ciphertext round-trip byte for byte"
    );
}

async fn empty_writes_and_refused_ids<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    assert_eq!(append(&mut s, &[]).await, vec![], "no writes, no results");
    assert_eq!(
        append(&mut s, &[batch_write(&key, 1, &[])]).await,
        vec![skipped(&[])],
        "a batch without ids (refused by the protocol layer) is skipped"
    );
    let mut bad = batch_write(&key, 2, &[2]);
    bad.entry_ids.push(Bytes::from_static(&[7u8; 15]));
    let err = s
        .append_batches(&[batch_write(&key, 1, &[1]), bad])
        .await
        .expect_err("an entry id of 15 bytes is refused");
    assert!(err.message.contains("entry id"), "{err}");
    assert!(
        read_all(&mut s, &key).await.is_empty(),
        "a refused call stores none of its writes"
    );
    assert_eq!(
        append(&mut s, &[batch_write(&key, 1, &[1])]).await,
        vec![stored(1, 1)],
        "and takes no sequence"
    );
}

async fn unusual_store_keys<S: AsyncStorage>(mut s: S) {
    let long = "k".repeat(2000);
    let keys = [
        store("pk", ""),
        store("", "default"),
        store("", ""),
        store("a/b", "c"),
        store("a", "b/c"),
        store("ключ-🔑", "магазин-🏪"),
        store("'; DROP TABLE v4_batches; --", "x"),
        store("a\0b", "c\0d"),
        store(&long, &long),
    ];
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            append(&mut s, &[batch_write(key, i as u8, &[1])]).await,
            vec![stored(1, 1)],
            "{key:?} is a store of its own"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        let batches = read_all(&mut s, key).await;
        assert_eq!(batches.len(), 1, "{key:?} reads back its own batch");
        assert_eq!(batches[0].iv, Bytes::from(vec![i as u8; 12]), "{key:?}");
    }
}

async fn a_large_batch<S: AsyncStorage>(mut s: S) {
    let key = store("pk", "default");
    let ns: Vec<u64> = (1..=100).collect();
    let mut write = batch_write(&key, 1, &ns);
    write.encrypted_batch = Bytes::from(vec![0xab; 1_500_000]);
    assert_eq!(
        append(&mut s, std::slice::from_ref(&write)).await,
        vec![stored(1, 100)],
        "a 1.5 MB batch of 100 entries"
    );
    let batches = read_all(&mut s, &key).await;
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].entry_ids, write.entry_ids);
    assert_eq!(batches[0].encrypted_batch, write.encrypted_batch);
    assert_eq!(
        append(&mut s, &[batch_write(&key, 2, &[101])]).await,
        vec![stored(101, 1)]
    );
    assert_eq!(
        spans(&s.read_batches(&key, 100, ALL).await.expect("read")),
        vec![(1, 100), (101, 101)]
    );
}

async fn signing_keys_first_offer_wins<S: AsyncStorage>(mut s: S) {
    assert_eq!(bind(&mut s, "pk", [1; 32]).await, [1; 32], "first offer");
    assert_eq!(
        bind(&mut s, "pk", [2; 32]).await,
        [1; 32],
        "a later offer gets the stored key"
    );
    assert_eq!(
        bind(&mut s, "other", [2; 32]).await,
        [2; 32],
        "per publicKey"
    );
    assert_eq!(bind(&mut s, "", [3; 32]).await, [3; 32], "empty publicKey");
    assert_eq!(bind(&mut s, "ключ-🔑", [4; 32]).await, [4; 32]);
    let mut binary = [0u8; 32];
    binary[31] = 0xff;
    assert_eq!(bind(&mut s, "a\0b", binary).await, binary);
    assert_eq!(bind(&mut s, "a\0b", [5; 32]).await, binary);
    let long = "k".repeat(2000);
    assert_eq!(
        s.bind_signing_key(&long, &[6; 32]).await.expect("bind"),
        [6; 32]
    );
    assert_eq!(
        s.bind_signing_key(&long, &[7; 32]).await.expect("bind"),
        [6; 32]
    );
    assert_eq!(
        s.logs().await.expect("logs"),
        vec![],
        "a binding is not a log"
    );
    assert_eq!(
        bind(&mut s, "pk", [9; 32]).await,
        [1; 32],
        "still the first"
    );
}

/// `stores` lists every store with batches and its head, by (publicKey,
/// storeId) in byte order; `bindings` every binding by publicKey; both
/// create nothing. What an export reads its cut from.
async fn stores_and_bindings_are_listed_in_key_order<S: AsyncStorage>(mut s: S) {
    assert_eq!(s.stores().await.expect("stores"), vec![], "a fresh store");
    assert_eq!(
        s.bindings().await.expect("bindings"),
        vec![],
        "a fresh store"
    );
    assert_eq!(
        s.stats().await.expect("stats"),
        StoreStats::default(),
        "listing created nothing"
    );
    let keys = [
        store("b", "x"),
        store("a", "z"),
        store("a", ""),
        store("B", "default"),
        store("ключ-🔑", "магазин"),
        store("a", "y"),
    ];
    for (i, key) in keys.iter().enumerate() {
        let n = 10 * i as u64;
        append(&mut s, &[batch_write(key, 1, &[n + 1, n + 2])]).await;
    }
    // a second batch moves one head; a skipped one (ids known) does not
    append(&mut s, &[batch_write(&keys[1], 2, &[100])]).await;
    append(&mut s, &[batch_write(&keys[0], 3, &[1])]).await;
    let listed: Vec<(String, String, u64)> = s
        .stores()
        .await
        .expect("stores")
        .into_iter()
        .map(|h: StoreHead| (h.store.public_key, h.store.store_id, h.head))
        .collect();
    let want = |pk: &str, id: &str, head: u64| (pk.to_string(), id.to_string(), head);
    assert_eq!(
        listed,
        vec![
            want("B", "default", 2),
            want("a", "", 2),
            want("a", "y", 2),
            want("a", "z", 3),
            want("b", "x", 2),
            want("ключ-🔑", "магазин", 2),
        ],
        "stores: (publicKey, storeId) byte order, heads"
    );
    assert_eq!(
        s.logs().await.expect("logs"),
        vec![],
        "a store is not a log"
    );
    assert_eq!(s.bindings().await.expect("bindings"), vec![]);

    bind(&mut s, "pk", [1; 32]).await;
    bind(&mut s, "Pk", [2; 32]).await;
    bind(&mut s, "ключ-🔑", [3; 32]).await;
    bind(&mut s, "pk", [4; 32]).await; // the first offer stays
    let binding = |public_key: &str, key: u8| SigningKeyBinding {
        public_key: public_key.to_string(),
        signing_key: [key; 32],
    };
    assert_eq!(
        s.bindings().await.expect("bindings"),
        vec![binding("Pk", 2), binding("pk", 1), binding("ключ-🔑", 3)],
        "bindings: publicKey byte order, the first key offered"
    );
    assert_eq!(s.stores().await.expect("stores").len(), 6, "unchanged");
}
