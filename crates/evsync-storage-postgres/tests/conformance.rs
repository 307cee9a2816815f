//! The shared storage conformance suite on PostgreSQL, plus what only this
//! backend has: tenants in one database, versioned migrations, the tenant
//! operations of `PgDatabase`, and reads bounded inside the database.

use evsync_core::storage::conformance::{REVOKED_AT, batch, entry_id, run_all, run_persistence};
use evsync_core::storage::{AppendBatch, AsyncStorage, ReadLimit};
use evsync_core::wire::EncryptedEntry;
use evsync_storage_postgres::testing::TestPostgres;
use evsync_storage_postgres::{PgConfig, PgDatabase, TenantLogHead, schema};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

/// A migrated database of its own on the shared server.
async fn fresh_db(pg: &TestPostgres) -> PgDatabase {
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 4).unwrap()).unwrap();
    assert_eq!(db.migrate().await.unwrap(), schema::SCHEMA_VERSION);
    db
}

#[tokio::test]
async fn conformance_suite_one_tenant_per_check() {
    let pg = TestPostgres::shared();
    let db = fresh_db(&pg).await;
    let n = AtomicUsize::new(0);
    // Every check's store is a fresh tenant of ONE database: the suite's
    // logs ("pk", "a", ...) repeat across checks, so passing also shows
    // that tenants never see each other's logs, remoteIds or revocations.
    run_all(|| {
        let store = db.tenant(&format!("t{}", n.fetch_add(1, Ordering::Relaxed)));
        async move { store }
    })
    .await;
    assert!(
        n.load(Ordering::Relaxed) >= 10,
        "every check got a fresh tenant"
    );
    let tenants = db.tenants().await.unwrap();
    assert!(tenants.len() >= 10, "{tenants:?}");
}

#[tokio::test]
async fn conformance_suite_one_database_per_check() {
    let pg = TestPostgres::shared();
    // at least one per check of run_all (31 today), a few to spare
    let mut dbs = Vec::new();
    for _ in 0..36 {
        dbs.push(fresh_db(&pg).await);
    }
    let mut dbs = dbs.into_iter();
    run_all(|| {
        let store = dbs.next().expect("a database per check").tenant("acme");
        async move { store }
    })
    .await;
}

#[tokio::test]
async fn persistence_suite_across_pools() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    PgDatabase::new(&PgConfig::parse(&url, 2).unwrap())
        .unwrap()
        .migrate()
        .await
        .unwrap();
    // "Reopening" is a new pool (a restarted node) over the same database.
    run_persistence(|| {
        let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
        async move { db.tenant("acme") }
    })
    .await;
}

#[tokio::test]
async fn migrations_record_their_version_and_refuse_a_newer_database() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    assert_eq!(db.migrate().await.unwrap(), schema::SCHEMA_VERSION);
    assert_eq!(
        db.migrate().await.unwrap(),
        schema::SCHEMA_VERSION,
        "a second migration finds nothing to do"
    );
    let recorded = pg.psql(&url, "SELECT version FROM evsync_schema_version");
    assert_eq!(recorded.trim(), schema::SCHEMA_VERSION.to_string());
    let tables = pg.psql(
        &url,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
         WHERE schemaname = 'public'",
    );
    assert_eq!(
        tables.trim(),
        "evsync_entries,evsync_logs,evsync_schema_version,evsync_tenant_settings,evsync_tenants,\
         evsync_v4_batches,evsync_v4_entry_ids,evsync_v4_signing_keys,evsync_v4_stores"
    );
    pg.psql(
        &url,
        &format!(
            "UPDATE evsync_schema_version SET version = {}",
            schema::SCHEMA_VERSION + 1
        ),
    );
    let err = db.migrate().await.unwrap_err();
    assert!(err.message.contains("newer evsync"), "{err}");
    assert_eq!(
        pg.psql(&url, "SELECT version FROM evsync_schema_version")
            .trim(),
        (schema::SCHEMA_VERSION + 1).to_string(),
        "a refused database is left as it is"
    );
}

#[tokio::test]
async fn tenants_listing_existence_heads_and_deletion() {
    let pg = TestPostgres::shared();
    let db = fresh_db(&pg).await;
    assert_eq!(db.tenants().await.unwrap(), Vec::<String>::new());
    assert!(!db.tenant_exists("b").await.unwrap());

    let mut b = db.tenant("b");
    let mut a = db.tenant("a");
    let mut revoked = db.tenant("r");
    let mut idle = db.tenant("idle");
    b.append(&[batch("pk", 1, &[1, 2]), batch("other", 1, &[3])])
        .await
        .unwrap();
    a.append(&[batch("pk", 1, &[1])]).await.unwrap();
    let b_id = b.remote_id().await.unwrap();
    revoked.set_tokens_not_before(REVOKED_AT).await.unwrap();
    assert_eq!(idle.tokens_not_before().await.unwrap(), None);
    assert_eq!(idle.stats().await.unwrap().entries, 0);
    assert_eq!(idle.logs().await.unwrap(), vec![]);
    assert_eq!(idle.read("pk", 0, ALL).await.unwrap(), vec![]);

    assert_eq!(
        db.tenants().await.unwrap(),
        vec!["a".to_string(), "b".into(), "r".into()],
        "tenants with a row, sorted; reading a tenant creates none"
    );
    assert!(db.tenant_exists("a").await.unwrap());
    assert!(db.tenant_exists("r").await.unwrap());
    assert!(!db.tenant_exists("idle").await.unwrap());

    let heads = db
        .heads(&["b".into(), "a".into(), "missing".into()])
        .await
        .unwrap();
    let head = |t: &str, k: &str, h: u64| TenantLogHead {
        tenant: t.into(),
        public_key: k.into(),
        head: h,
    };
    assert_eq!(
        heads,
        vec![
            head("a", "pk", 1),
            head("b", "other", 1),
            head("b", "pk", 2)
        ]
    );
    assert_eq!(db.heads(&[]).await.unwrap(), vec![]);

    assert!(db.delete_tenant("b").await.unwrap(), "b existed");
    assert!(!db.delete_tenant("b").await.unwrap(), "b is gone");
    assert!(!db.tenant_exists("b").await.unwrap());
    assert_eq!(b.read("pk", 0, ALL).await.unwrap(), vec![]);
    assert_eq!(b.logs().await.unwrap(), vec![]);
    assert_ne!(
        b.remote_id().await.unwrap(),
        b_id,
        "a deleted tenant starts over with a new remoteId"
    );
    let again = b.append(&[batch("pk", 1, &[1])]).await.unwrap();
    assert_eq!(again[0][0].sequence, 1, "and its logs start over at 1");
    assert_eq!(
        a.read("pk", 0, ALL).await.unwrap().len(),
        1,
        "a is untouched"
    );
    assert!(
        db.delete_tenant("r").await.unwrap(),
        "a revocation is a row"
    );
    assert_eq!(
        db.tenants().await.unwrap(),
        vec!["a".to_string(), "b".into()]
    );
}

#[tokio::test]
async fn long_public_keys_and_entry_ids_are_stored() {
    // Both are unique by their SHA-256: a B-tree would refuse keys over
    // about 2.7 kB, and fail every write committed with such an entry.
    let pg = TestPostgres::shared();
    let db = fresh_db(&pg).await;
    let mut store = db.tenant("acme");
    let noise = |n: usize, seed: u64| -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let key: String = noise(20_000, 7)
        .iter()
        .map(|b| char::from(b'a' + b % 26))
        .collect();
    let long_id = bytes::Bytes::from(noise(50_000, 9));
    let batch = AppendBatch {
        public_key: key.clone(),
        iv: vec![1u8; 12].into(),
        entries: vec![
            EncryptedEntry {
                entry_id: long_id.clone(),
                encrypted_entry: bytes::Bytes::from_static(b"x"),
            },
            evsync_core::storage::conformance::entry(2),
        ],
    };
    let out = store.append(std::slice::from_ref(&batch)).await.unwrap();
    assert_eq!(
        out[0].iter().map(|a| a.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    let again = store.append(&[batch]).await.unwrap();
    assert!(again[0].iter().all(|a| !a.inserted), "dedup by the long id");
    let read = store.read(&key, 0, ALL).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].entry_id, long_id);
    assert_eq!(read[1].entry_id, entry_id(2));
    assert_eq!(store.logs().await.unwrap()[0].public_key, key);
}

#[tokio::test]
async fn revocations_are_shared_by_every_node() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let node = || PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    let (one, two) = (node(), node());
    one.migrate().await.unwrap();
    let mut on_one = one.tenant("acme");
    let mut on_two = two.tenant("acme");
    assert_eq!(on_two.tokens_not_before().await.unwrap(), None);
    assert_eq!(
        on_one.set_tokens_not_before(REVOKED_AT).await.unwrap(),
        REVOKED_AT
    );
    assert_eq!(on_two.tokens_not_before().await.unwrap(), Some(REVOKED_AT));
    assert_eq!(
        on_two.set_tokens_not_before(REVOKED_AT - 1).await.unwrap(),
        REVOKED_AT,
        "the other node cannot lower it either"
    );
    assert_eq!(
        on_one.remote_id().await.unwrap(),
        on_two.remote_id().await.unwrap()
    );
}

/// A TCP proxy in front of the server that counts the bytes the server
/// sends, to see what a read really transfers.
async fn counting_proxy(port: u16) -> (u16, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match server_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counter.fetch_add(n as u64, Ordering::Relaxed);
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                up.abort();
            });
        }
    });
    (local, received)
}

#[tokio::test]
async fn a_read_transfers_its_budget_not_its_entry_limit() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let (port, received) = counting_proxy(pg.port()).await;
    let db = PgDatabase::new(
        &PgConfig::parse(&format!("postgres://postgres@127.0.0.1:{port}/{dbname}"), 1).unwrap(),
    )
    .unwrap();
    db.migrate().await.unwrap();
    let mut store = db.tenant("acme");
    const MB: usize = 1_000_000;
    for n in 0..30u64 {
        store
            .append(&[AppendBatch {
                public_key: "pk".into(),
                iv: vec![3u8; 12].into(),
                entries: vec![EncryptedEntry {
                    entry_id: entry_id(n),
                    encrypted_entry: vec![n as u8; 1_500_000].into(),
                }],
            }])
            .await
            .unwrap();
    }
    // Warm up: the statement is prepared once per connection.
    store
        .read(
            "pk",
            1,
            ReadLimit {
                max_entries: 1,
                max_bytes: 1,
            },
        )
        .await
        .unwrap();
    let before = received.load(Ordering::Relaxed);
    let read = store
        .read(
            "pk",
            1,
            ReadLimit {
                max_entries: 1000,
                max_bytes: 4 * 1024 * 1024,
            },
        )
        .await
        .unwrap();
    let transferred = received.load(Ordering::Relaxed) - before;
    assert_eq!(
        read.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2],
        "two 1.5 MB entries fit in 4 MiB, a third does not"
    );
    assert!(
        (read[0].encrypted_entry.iter().all(|&b| b == 0))
            && read[1].encrypted_entry.iter().all(|&b| b == 1)
    );
    assert!(
        transferred < (3 * MB + MB / 2) as u64,
        "the read moved {transferred} bytes for 3 MB of entries"
    );
    let first = store
        .read(
            "pk",
            5,
            ReadLimit {
                max_entries: 1000,
                max_bytes: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [5],
        "over budget, the first entry alone"
    );
}

#[tokio::test]
async fn pooled_sessions_are_named_and_bound_idle_transactions() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let dbname = url.rsplit('/').next().unwrap().to_string();
    let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    db.migrate().await.unwrap();
    db.ping().await.unwrap();
    let names = pg.psql(
        &pg.url(),
        &format!(
            "SELECT string_agg(DISTINCT application_name, ',') FROM pg_stat_activity \
             WHERE datname = '{dbname}'"
        ),
    );
    assert_eq!(
        names.trim(),
        "evsync",
        "what pg_stat_activity shows an operator"
    );
    // A node partitioned away mid-append must not hold a log's row lock
    // for long: every pooled session bounds its idleness in a transaction.
    assert_eq!(
        db.show("idle_in_transaction_session_timeout")
            .await
            .unwrap(),
        "30s"
    );
}

#[tokio::test]
async fn a_failed_append_stores_none_of_its_batches() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    db.migrate().await.unwrap();
    let mut store = db.tenant("acme");
    store.append(&[batch("a", 1, &[1])]).await.unwrap();
    // Rewind log a's head behind the store's back, so the append's insert
    // hits the (log, sequence) key after log b's row was created and its
    // entry queued in the same transaction.
    pg.psql(
        &url,
        "UPDATE evsync_logs SET head = 0 WHERE public_key = convert_to('a', 'UTF8')",
    );
    let err = store
        .append(&[batch("b", 1, &[5]), batch("a", 1, &[2])])
        .await
        .unwrap_err();
    assert!(err.message.contains("postgres"), "{err}");
    assert!(
        !err.message.contains("ERROR 23505: ") || err.message.contains("insert"),
        "{err}"
    );
    assert_eq!(
        store.read("b", 0, ALL).await.unwrap(),
        vec![],
        "a failed append stores nothing, not even its other batches"
    );
    assert_eq!(
        pg.psql(&url, "SELECT count(*) FROM evsync_logs").trim(),
        "1",
        "nor log b's head row"
    );
}

/// The plans of the two hot statements stay bounded by the request, not by
/// the log, even before the table has statistics (a fresh deployment) —
/// the case in which a plain `= ANY(digests)` once had the planner hash
/// every entry of the log on each append.
#[tokio::test]
async fn dedup_and_read_plans_probe_the_index_without_statistics() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    db.migrate().await.unwrap();
    let mut store = db.tenant("acme");
    for round in 0..5u64 {
        let ns: Vec<u64> = (round * 1000..(round + 1) * 1000).collect();
        store.append(&[batch("pk", 1, &ns)]).await.unwrap();
    }
    let digests = (0..100)
        .map(|n| format!("sha256(int8send({n}::bigint))"))
        .collect::<Vec<_>>()
        .join(",");
    for mode in ["force_generic_plan", "force_custom_plan"] {
        let plan = pg.psql(
            &url,
            &format!(
                "SET plan_cache_mode = {mode};
                 PREPARE find(bigint, bytea[]) AS {};
                 EXPLAIN EXECUTE find(1, ARRAY[{digests}]);",
                schema::FIND_ENTRIES
            ),
        );
        assert!(
            plan.contains("Index Scan using evsync_entries_by_entry_id")
                && plan.contains("sha256(entry_id) = h.hash"),
            "{mode}: one unique-index probe per digest:\n{plan}"
        );
        let plan = pg.psql(
            &url,
            &format!(
                "SET plan_cache_mode = {mode};
                 PREPARE read(text, bytea, bigint, bigint, bigint, bigint) AS {};
                 EXPLAIN EXECUTE read('acme', 'pk', 100, 200, 100, 1000000);",
                schema::READ
            ),
        );
        assert!(
            plan.contains("sequence >=") && plan.contains("sequence <"),
            "{mode}: the read is a range of at most its entry limit:\n{plan}"
        );
    }
}
