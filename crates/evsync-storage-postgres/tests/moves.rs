//! A tenant moved into PostgreSQL through the export format, the way the
//! server's staged import does it (imported under a staging name, then
//! installed in one transaction): its remoteId, v3 logs, Effect v4 stores
//! at their sequences and session-auth bindings arrive whole, and an
//! export from PostgreSQL gives back the same bytes.

use evsync_core::export::{ExportReader, Importer, export_store};
use evsync_core::storage::Storage as SyncStorage;
use evsync_core::storage::conformance::{batch, batch_write, block_on, store};
use evsync_core::storage::{AsyncStorage, MemoryStorage, ReadLimit};
use evsync_core::wire::RemoteId;
use evsync_storage_postgres::testing::TestPostgres;
use evsync_storage_postgres::{PgConfig, PgDatabase};

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

/// A tenant at home elsewhere (memory storage stands for SQLite, the
/// Durable Object or D1: the export is the same), exported.
fn exported_tenant() -> (MemoryStorage, String) {
    let mut source = MemoryStorage::new(RemoteId::from_random_bytes([5; 16]));
    SyncStorage::append(&mut source, &[batch("pk-a", 1, &[1, 2, 3])]).unwrap();
    let main = store("pk-a", "default");
    for n in 0..1_200u64 {
        SyncStorage::append_batches(
            &mut source,
            &[batch_write(&main, 2, &[2 * n + 1, 2 * n + 2])],
        )
        .unwrap();
    }
    SyncStorage::append_batches(
        &mut source,
        &[batch_write(&store("pk-b", ""), 3, &[1, 2, 3])],
    )
    .unwrap();
    SyncStorage::bind_signing_key(&mut source, "pk-a", &[7; 32]).unwrap();
    SyncStorage::bind_signing_key(&mut source, "pk-b", &[8; 32]).unwrap();
    let mut file = String::new();
    block_on(export_store(&mut source, "acme", |line| {
        file.push_str(&line);
        Ok(())
    }))
    .unwrap();
    (source, file)
}

async fn import(file: &str, into: &mut impl AsyncStorage) -> Result<(), String> {
    let mut reader = ExportReader::new();
    let mut importer = Importer::new();
    reader.push(file.as_bytes());
    while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
        importer.apply(into, item).await?;
    }
    reader.finish().map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_tenant_with_v4_stores_moves_into_postgres_and_back_out_unchanged() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 4).unwrap()).unwrap();
    db.migrate().await.unwrap();
    let (mut source, file) = exported_tenant();

    let staging = "~import~acme~test";
    import(&file, &mut db.tenant(staging)).await.unwrap();
    assert_eq!(
        db.install_tenant(staging, "acme", false).await.unwrap(),
        Some(false)
    );
    let mut moved = db.tenant("acme");
    assert_eq!(
        moved.remote_id().await.unwrap(),
        SyncStorage::remote_id(&mut source).unwrap()
    );
    assert_eq!(
        moved.logs().await.unwrap(),
        SyncStorage::logs(&mut source).unwrap()
    );
    assert_eq!(
        moved.stores().await.unwrap(),
        SyncStorage::stores(&mut source).unwrap()
    );
    for head in SyncStorage::stores(&mut source).unwrap() {
        assert_eq!(
            moved.read_batches(&head.store, 0, ALL).await.unwrap(),
            SyncStorage::read_batches(&mut source, &head.store, 0, ALL).unwrap(),
            "{:?} at the same sequences",
            head.store
        );
    }
    assert_eq!(
        moved.bindings().await.unwrap(),
        SyncStorage::bindings(&mut source).unwrap()
    );

    // an export from PostgreSQL is the same file
    let mut again = String::new();
    let (mut exporter, header) = evsync_core::export::Exporter::start(&mut moved, "acme")
        .await
        .unwrap();
    again.push_str(&header);
    while let Some(lines) = exporter.next_lines(&mut moved).await.unwrap() {
        again.extend(lines);
    }
    assert_eq!(again, file);

    // the moved stores carry on: a replay is recognised, sequences go on
    let main = store("pk-a", "default");
    let next = moved
        .append_batches(&[
            batch_write(&main, 9, &[1, 2]),
            batch_write(&main, 9, &[99_999]),
        ])
        .await
        .unwrap();
    assert_eq!(next[0].stored_at, None);
    assert_eq!(next[1].stored_at, Some(2_401));
    assert_eq!(
        moved.bind_signing_key("pk-a", &[1; 32]).await.unwrap(),
        [7; 32]
    );

    // a staging tenant that already holds v4 data is refused
    let mut dirty = db.tenant("~import~other~test");
    dirty.bind_signing_key("x", &[1; 32]).await.unwrap();
    let err = import(&file, &mut dirty).await.unwrap_err();
    assert!(err.contains("1 bindings"), "{err}");
}

#[tokio::test]
async fn a_tenant_restored_over_itself_keeps_its_remote_id_under_a_new_generation() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let db = PgDatabase::new(&PgConfig::parse(&url, 4).unwrap()).unwrap();
    db.migrate().await.unwrap();
    let (_, file) = exported_tenant();
    import(&file, &mut db.tenant("~import~acme~1"))
        .await
        .unwrap();
    db.install_tenant("~import~acme~1", "acme", false)
        .await
        .unwrap();
    let loaded = db.identity("acme").await.unwrap().expect("acme has a row");

    // The same file again over it (a restore): the remoteId is the file's,
    // the generation is not the one a node loaded, so its re-check tells.
    import(&file, &mut db.tenant("~import~acme~2"))
        .await
        .unwrap();
    assert_eq!(
        db.install_tenant("~import~acme~2", "acme", true)
            .await
            .unwrap(),
        Some(true)
    );
    let restored = db.identity("acme").await.unwrap().expect("acme has a row");
    assert_eq!(restored.remote_id, loaded.remote_id);
    assert_ne!(restored.generation, loaded.generation);
    let both = db
        .identities(&["acme".to_owned(), "none".to_owned()])
        .await
        .unwrap();
    assert_eq!(both, vec![("acme".to_owned(), restored)]);
    assert_eq!(db.identity("none").await.unwrap(), None);
}
