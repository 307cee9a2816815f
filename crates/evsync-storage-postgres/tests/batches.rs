//! Effect v4 batch stores on PostgreSQL beyond the shared conformance
//! suite: several nodes appending to one store at once, the tenant
//! operations covering v4 rows, and a database at schema version 1
//! migrated in place.

use evsync_core::storage::conformance::{batch, batch_write, store};
use evsync_core::storage::{AsyncStorage, BatchAppended, ReadLimit, StoreKey};
use evsync_storage_postgres::testing::TestPostgres;
use evsync_storage_postgres::{PgConfig, PgDatabase, schema};
use futures_util::future::join_all;

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

/// Two nodes (pools) over one fresh, migrated database, and its URL.
async fn two_nodes(pg: &TestPostgres) -> (PgDatabase, PgDatabase, String) {
    let url = pg.fresh_database();
    let node = || PgDatabase::new(&PgConfig::parse(&url, 8).unwrap()).unwrap();
    let (one, two) = (node(), node());
    one.migrate().await.unwrap();
    (one, two, url)
}

/// Every batch of `key` read back: contiguous sequences from 1, and what
/// each stored write was told matches what was stored.
async fn check_contiguous(db: &PgDatabase, key: &StoreKey, results: &[BatchAppended]) -> u64 {
    let batches = db.tenant("acme").read_batches(key, 0, ALL).await.unwrap();
    let mut next = 1;
    for b in &batches {
        assert_eq!(b.sequence, next, "gapless, in commit order");
        next = b.last() + 1;
    }
    let mut firsts: Vec<u64> = results.iter().filter_map(|r| r.stored_at).collect();
    firsts.sort_unstable();
    assert_eq!(
        firsts,
        batches.iter().map(|b| b.sequence).collect::<Vec<_>>(),
        "one stored batch per write told it was stored"
    );
    next - 1
}

#[tokio::test]
async fn two_nodes_appending_to_one_store_get_one_gapless_order() {
    let pg = TestPostgres::shared();
    let (one, two, _) = two_nodes(&pg).await;
    let key = store("pk", "default");
    let appends = (0..40u64).map(|n| {
        let node = if n % 2 == 0 { &one } else { &two };
        let mut s = node.tenant("acme");
        let write = batch_write(&key, n as u8, &[3 * n, 3 * n + 1, 3 * n + 2]);
        async move { s.append_batches(&[write]).await.unwrap().remove(0) }
    });
    let results = join_all(appends).await;
    assert!(results.iter().all(|r| r.stored_at.is_some()));
    assert_eq!(check_contiguous(&one, &key, &results).await, 120);
}

#[tokio::test]
async fn the_same_batch_from_two_nodes_at_once_is_stored_once() {
    let pg = TestPostgres::shared();
    let (one, two, _) = two_nodes(&pg).await;
    let key = store("pk", "default");
    let mut results = Vec::new();
    for n in 0..20u64 {
        let write = batch_write(&key, n as u8, &[2 * n, 2 * n + 1]);
        let (mut a, mut b) = (one.tenant("acme"), two.tenant("acme"));
        let (ra, rb) = tokio::join!(
            a.append_batches(std::slice::from_ref(&write)),
            b.append_batches(std::slice::from_ref(&write)),
        );
        let (ra, rb) = (ra.unwrap().remove(0), rb.unwrap().remove(0));
        assert_eq!(
            [ra.stored_at.is_some(), rb.stored_at.is_some()]
                .iter()
                .filter(|s| **s)
                .count(),
            1,
            "exactly one node stores it: {ra:?} {rb:?}"
        );
        assert_eq!(
            ra.sequences, rb.sequences,
            "both are acked with the stored sequences"
        );
        results.push(ra);
        results.push(rb);
    }
    assert_eq!(check_contiguous(&one, &key, &results).await, 40);
}

#[tokio::test]
async fn crossed_store_sets_from_two_nodes_never_deadlock() {
    let pg = TestPostgres::shared();
    let (one, two, _) = two_nodes(&pg).await;
    let (x, y) = (store("pk", "x"), store("pk", "y"));
    let appends = (0..30u64).map(|n| {
        // Node one writes x then y, node two y then x: locks are taken in
        // key order whatever the request order.
        let (node, first, second) = if n % 2 == 0 {
            (&one, &x, &y)
        } else {
            (&two, &y, &x)
        };
        let mut s = node.tenant("acme");
        let writes = [
            batch_write(first, 1, &[2 * n]),
            batch_write(second, 2, &[2 * n + 1]),
        ];
        async move { s.append_batches(&writes).await }
    });
    let results: Vec<BatchAppended> = join_all(appends)
        .await
        .into_iter()
        .flat_map(|r| r.expect("no deadlock, no error"))
        .collect();
    assert_eq!(results.len(), 60);
    for key in [&x, &y] {
        let batches = one.tenant("acme").read_batches(key, 0, ALL).await.unwrap();
        assert_eq!(
            batches.iter().map(|b| b.sequence).collect::<Vec<_>>(),
            (1..=30).collect::<Vec<_>>(),
            "{key:?}: gapless"
        );
    }
}

#[tokio::test]
async fn tenant_operations_cover_v4_rows() {
    let pg = TestPostgres::shared();
    let (db, _, url) = two_nodes(&pg).await;
    let key = store("pk", "default");
    let mut only_v4 = db.tenant("v4only");
    only_v4
        .append_batches(&[batch_write(&key, 1, &[1, 2])])
        .await
        .unwrap();
    let mut only_binding = db.tenant("bound");
    only_binding.bind_signing_key("pk", &[1; 32]).await.unwrap();
    assert_eq!(
        db.tenants().await.unwrap(),
        vec!["bound".to_string(), "v4only".into()],
        "a tenant with only v4 rows is listed"
    );
    assert!(db.tenant_exists("v4only").await.unwrap());
    assert!(db.tenant_exists("bound").await.unwrap());

    assert!(db.delete_tenant("v4only").await.unwrap());
    assert!(db.delete_tenant("bound").await.unwrap());
    assert_eq!(db.tenants().await.unwrap(), Vec::<String>::new());
    assert!(only_v4.read_batches(&key, 0, ALL).await.unwrap().is_empty());
    assert_eq!(
        only_binding.bind_signing_key("pk", &[2; 32]).await.unwrap(),
        [2; 32],
        "a deleted tenant's bindings are gone"
    );
    let again = only_v4
        .append_batches(&[batch_write(&key, 1, &[1])])
        .await
        .unwrap();
    assert_eq!(again[0].stored_at, Some(1), "its stores start over at 1");
    for table in [
        "evsync_v4_stores",
        "evsync_v4_batches",
        "evsync_v4_entry_ids",
    ] {
        let left = pg.psql(&url, &format!("SELECT count(*) FROM {table}"));
        assert_eq!(left.trim(), "1", "{table}: only the new store's row");
    }

    let mut staged = db.tenant("~staged");
    staged
        .append_batches(&[batch_write(&key, 7, &[5])])
        .await
        .unwrap();
    staged.bind_signing_key("pk", &[7; 32]).await.unwrap();
    staged.remote_id().await.unwrap();
    assert_eq!(
        db.install_tenant("~staged", "moved", false).await.unwrap(),
        Some(false)
    );
    let mut moved = db.tenant("moved");
    let batches = moved.read_batches(&key, 0, ALL).await.unwrap();
    assert_eq!(batches.len(), 1, "an installed tenant's batches follow it");
    assert_eq!(batches[0].iv, bytes::Bytes::from(vec![7u8; 12]));
    assert_eq!(
        moved.bind_signing_key("pk", &[8; 32]).await.unwrap(),
        [7; 32]
    );
    assert!(staged.read_batches(&key, 0, ALL).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_logs() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let v1 = &schema::SCHEMA.steps[0];
    assert_eq!(v1.version, 1);
    let mut sql = format!("{};\n", schema::CREATE_VERSION_TABLE);
    for statement in v1.statements {
        sql.push_str(statement);
        sql.push_str(";\n");
    }
    sql.push_str("INSERT INTO evsync_schema_version (id, version) VALUES (1, 1);");
    pg.psql(&url, &sql);
    // One v3 log holding entry_id(1) at sequence 1.
    pg.psql(
        &url,
        "INSERT INTO evsync_logs (tenant, public_key, head)
            VALUES ('acme', convert_to('pk', 'UTF8'), 1);
         INSERT INTO evsync_entries (log_id, sequence, entry_id, iv, encrypted_entry)
            SELECT id, 1, decode('00000000000000017000000000000000', 'hex'), '\\x01', '\\x02'
            FROM evsync_logs;
         INSERT INTO evsync_tenants (tenant, remote_id)
            VALUES ('acme', decode(repeat('ab', 16), 'hex')), ('other', decode(repeat('cd', 16), 'hex'));",
    );
    let db = PgDatabase::new(&PgConfig::parse(&url, 2).unwrap()).unwrap();
    assert_eq!(db.migrate().await.unwrap(), schema::SCHEMA_VERSION);
    assert_eq!(
        pg.psql(&url, "SELECT version FROM evsync_schema_version")
            .trim(),
        schema::SCHEMA_VERSION.to_string()
    );
    // Rows made before version 3 get a generation each, all different.
    let rows = db
        .identities(&["acme".to_owned(), "other".to_owned()])
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_ne!(rows[0].1.generation, rows[1].1.generation);
    let mut acme = db.tenant("acme");
    let out = acme.append(&[batch("pk", 1, &[1, 2])]).await.unwrap();
    assert_eq!(
        out[0]
            .iter()
            .map(|a| (a.sequence, a.inserted))
            .collect::<Vec<_>>(),
        [(1, false), (2, true)],
        "the v3 log keeps its entry and continues"
    );
    let key = store("pk", "default");
    let out = acme
        .append_batches(&[batch_write(&key, 1, &[1, 2])])
        .await
        .unwrap();
    assert_eq!(out[0].stored_at, Some(1), "v4 stores start at 1");
    assert_eq!(
        acme.bind_signing_key("pk", &[1; 32]).await.unwrap(),
        [1; 32]
    );
}
