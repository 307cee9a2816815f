//! Several nodes (PgDatabase values with pools of their own) on one
//! database at the same moment: appends to one log, the same entry from
//! two nodes, migrations at startup.

use evsync_core::storage::conformance::{batch, entry_id};
use evsync_core::storage::{AppendBatch, Appended, AsyncStorage, ReadLimit};
use evsync_storage_postgres::testing::TestPostgres;
use evsync_storage_postgres::{PgConfig, PgDatabase, schema};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

fn node(url: &str, pool: usize) -> PgDatabase {
    PgDatabase::new(&PgConfig::parse(url, pool).unwrap()).unwrap()
}

const TASKS: u64 = 8;
const BATCHES: u64 = 200;

/// 8 tasks, half on each of two nodes, each appending 200 calls to the same
/// two logs; every call writes both logs, half of them in the other order,
/// so the lock order is exercised. Every log must come out gapless, each
/// entry once, at the sequence its `Appended` reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_appending_to_one_log_keep_it_gapless() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let nodes = [node(&url, 4), node(&url, 4)];
    nodes[0].migrate().await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let mut store = nodes[(task % 2) as usize].tenant("acme");
        tasks.push(tokio::spawn(async move {
            let mut reported: Vec<(String, u64, Appended)> = Vec::new();
            for i in 0..BATCHES {
                // 1 to 3 entries in log "a", 1 in log "b", numbered apart.
                let base = (task * BATCHES + i) * 10;
                let a: Vec<u64> = (0..=(i % 3)).map(|j| base + j).collect();
                let b = [base + 5];
                let mut batches = vec![batch("a", 1, &a), batch("b", 2, &b)];
                if (task + i) % 2 == 1 {
                    batches.reverse();
                }
                let out = store.append(&batches).await.expect("append");
                for (batch, outcome) in batches.iter().zip(out) {
                    for (entry, appended) in batch.entries.iter().zip(outcome) {
                        let n = u64::from_be_bytes(entry.entry_id[..8].try_into().unwrap());
                        reported.push((batch.public_key.clone(), n, appended));
                    }
                }
            }
            reported
        }));
    }
    let mut reported = Vec::new();
    for task in tasks {
        reported.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert!(
        reported.iter().all(|(_, _, a)| a.inserted),
        "every entry was new"
    );
    let mut store = nodes[1].tenant("acme");
    for log in ["a", "b"] {
        let stored = store.read(log, 0, ALL).await.unwrap();
        let sent: HashMap<u64, u64> = reported
            .iter()
            .filter(|(k, _, _)| k == log)
            .map(|(_, n, a)| (*n, a.sequence))
            .collect();
        assert_eq!(
            stored.len(),
            sent.len(),
            "log {log}: every entry stored once"
        );
        for (i, entry) in stored.iter().enumerate() {
            assert_eq!(entry.sequence, i as u64 + 1, "log {log}: gapless from 1");
            let n = u64::from_be_bytes(entry.entry_id[..8].try_into().unwrap());
            assert_eq!(
                sent.get(&n),
                Some(&entry.sequence),
                "log {log}: entry {n} is at the sequence its Appended said"
            );
        }
        let ids: HashSet<_> = stored.iter().map(|e| e.entry_id.clone()).collect();
        assert_eq!(ids.len(), stored.len(), "log {log}: no entry twice");
    }
    let heads = nodes[0].heads(&["acme".to_string()]).await.unwrap();
    let a_total = (0..BATCHES).map(|i| i % 3 + 1).sum::<u64>() * TASKS;
    assert_eq!(
        heads
            .iter()
            .map(|h| (h.public_key.as_str(), h.head))
            .collect::<Vec<_>>(),
        [("a", a_total), ("b", TASKS * BATCHES)]
    );
    eprintln!(
        "{} appends ({} entries) from 8 tasks on 2 nodes in {elapsed:?}",
        TASKS * BATCHES,
        reported.len()
    );
}

/// Both nodes append the same entry at the same moment, 50 times: each time
/// it is stored once, one node reports it inserted, and both report the
/// same sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_entry_from_two_nodes_is_stored_once() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let nodes = [node(&url, 2), node(&url, 2)];
    nodes[0].migrate().await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let rounds = 50u64;
    let mut tasks = Vec::new();
    for db in &nodes {
        let mut store = db.tenant("acme");
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for n in 0..rounds {
                barrier.wait().await;
                // The shared entry, and one of this node's own beside it.
                let batches = [AppendBatch {
                    public_key: "pk".into(),
                    iv: vec![7u8; 12].into(),
                    entries: vec![evsync_core::storage::conformance::entry(n)],
                }];
                out.push(store.append(&batches).await.expect("append")[0][0]);
            }
            out
        }));
    }
    let one = tasks.remove(0).await.unwrap();
    let two = tasks.remove(0).await.unwrap();
    for (n, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a.sequence, b.sequence, "round {n}: one sequence for both");
        assert!(
            a.inserted != b.inserted,
            "round {n}: exactly one node stored it ({a:?}, {b:?})"
        );
    }
    let stored = nodes[0].tenant("acme").read("pk", 0, ALL).await.unwrap();
    assert_eq!(stored.len() as u64, rounds, "each entry stored once");
    for (i, entry) in stored.iter().enumerate() {
        assert_eq!(entry.sequence, i as u64 + 1);
        assert_eq!(entry.entry_id, entry_id(i as u64));
    }
}

/// Four nodes starting at once on an empty database all migrate it
/// without error, to the same version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_migrating_at_once_all_succeed() {
    let pg = TestPostgres::shared();
    for _ in 0..3 {
        let url = pg.fresh_database();
        let nodes: Vec<PgDatabase> = (0..4).map(|_| node(&url, 1)).collect();
        let runs = nodes.iter().map(|db| {
            let db = db.clone();
            tokio::spawn(async move { db.migrate().await })
        });
        let versions: Vec<u32> = futures_util::future::join_all(runs)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().expect("migrate"))
            .collect();
        assert_eq!(versions, vec![schema::SCHEMA_VERSION; 4]);
        assert_eq!(
            pg.psql(&url, "SELECT count(*) FROM evsync_schema_version")
                .trim(),
            "1"
        );
    }
}

/// The server's tenant actors run these futures on a multi-threaded
/// runtime, so they must be Send.
#[test]
fn store_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let config = PgConfig::parse("postgres://u@127.0.0.1:1/x", 1).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let db = PgDatabase::new(&config).unwrap();
    let mut store = db.tenant("t");
    let batches = [batch("pk", 1, &[1])];
    send(&store.append(&batches));
    send(&store.read("pk", 0, ALL));
    send(&store.remote_id());
    send(&store.tokens_not_before());
    send(&store.set_tokens_not_before(1));
    send(&store.stats());
    send(&store.logs());
    send(&store.adopt_remote_id(evsync_core::wire::RemoteId([0; 16])));
    send(&db.migrate());
    send(&db.ping());
    send(&db.heads(&[]));
    send(&db.delete_tenant("t"));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    send(&evsync_storage_postgres::listen::listen(config, tx));
}
