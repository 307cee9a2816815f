//! Operators' tenant operations with the real binary (issue 15): list,
//! show, delete, export and import through `evsync admin` against a
//! running server, offline `evsync export`/`import`, and `evsync backup`
//! while writes go on. The invariant under test throughout: a tenant that
//! comes back keeps its remoteId and every entry its sequence, so a
//! replica's cursor stays valid.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod process;

use common::{Client, entries, sequences};
use evsync_core::storage::Storage;
use evsync_storage_sqlite::{SqliteStorage, tenant_path};
use process::Serve;

const ADMIN: &str = "admin-token-for-tenant-operations";
const ENV: &[(&str, &str)] = &[("SYNC_ADMIN_TOKEN", ADMIN)];

async fn admin(server: &Serve, args: &[&str]) -> std::process::Output {
    let url = format!("http://{}", server.addr);
    let mut all = vec!["admin", "--url", url.as_str()];
    all.extend_from_slice(args);
    process::output(&all, ENV).await
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failed(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "expected a refusal");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes 5 entries to `pk-a` and 3 to `pk-b` of `tenant`; its remoteId.
async fn seed(server: &Serve, tenant: &str) -> evsync_core::wire::RemoteId {
    let (mut client, remote_id) = Client::connect_hello(server.addr, tenant).await;
    assert_eq!(
        client.write("pk-a", 1, &entries(1..=5)).await,
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        client.write("pk-b", 2, &entries(11..=13)).await,
        vec![1, 2, 3]
    );
    remote_id
}

/// What a replica with cursor `from` on `pk-a` receives: the sequences.
async fn catch_up(
    server: &Serve,
    tenant: &str,
    from: u64,
    count: usize,
) -> (evsync_core::wire::RemoteId, Vec<u64>) {
    let (mut client, remote_id) = Client::connect_hello(server.addr, tenant).await;
    client.request_changes("pk-a", from).await;
    let got = if count == 0 {
        Vec::new()
    } else {
        sequences(&client.changes("pk-a", count).await)
    };
    // nothing more than that
    assert!(
        client.barrier(9).await.is_empty(),
        "more Changes than expected"
    );
    (remote_id, got)
}

#[tokio::test]
async fn delete_export_and_import_through_the_admin_api_keep_cursors_valid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Serve::start(&["--data", data.to_str().unwrap()], ENV).await;
    let original = seed(&server, "acme").await;

    // listed and shown
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&admin(&server, &["tenants"]).await)).unwrap();
    let acme = &listed["tenants"][0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["remoteId"], original.to_uuid_string());
    assert_eq!(
        (acme["logs"].as_u64(), acme["entries"].as_u64()),
        (Some(2), Some(8))
    );
    assert!(acme["bytesOnDisk"].as_u64().unwrap() > 0);
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&admin(&server, &["show", "acme"]).await)).unwrap();
    assert_eq!(shown["entries"], 8);

    // exported to a file that checks whole
    let file = dir.path().join("acme.jsonl");
    ok(&admin(
        &server,
        &["export", "acme", "--out", file.to_str().unwrap()],
    )
    .await);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.lines().count(),
        1 + 8 + 1,
        "header, 8 entries, trailer"
    );
    assert!(text.contains(&original.to_uuid_string()));

    // deleted: an open socket is closed with the reason, the next
    // connection gets a new, empty tenant
    let (mut open, _) = Client::connect_hello(server.addr, "acme").await;
    ok(&admin(&server, &["delete", "acme"]).await);
    let closed = open.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1001), "tenant deleted by an operator")
    );
    let (fresh, got) = catch_up(&server, "acme", 1, 0).await;
    assert_ne!(
        fresh, original,
        "a deleted tenant comes back with a new remoteId"
    );
    assert!(got.is_empty());
    assert!(failed(&admin(&server, &["delete", "nobody"]).await).contains("404"));

    // import over a tenant with data needs --replace
    let refused =
        failed(&admin(&server, &["import", "acme", "--in", file.to_str().unwrap()]).await);
    assert!(refused.contains("409"), "{refused}");

    // a damaged or a truncated file is refused and changes nothing
    let at = text.find("\"data\":\"").unwrap() + 9;
    let mut damaged = text.clone().into_bytes();
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    let truncated = text.as_bytes()[..text.len() / 2].to_vec();
    for (name, bytes, reason) in [
        ("damaged", damaged, "checksum mismatch"),
        ("truncated", truncated, "truncated"),
    ] {
        let bad = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&bad, bytes).unwrap();
        let args = ["import", "acme", "--in", bad.to_str().unwrap(), "--replace"];
        let refused = failed(&admin(&server, &args).await);
        assert!(refused.contains(reason), "{name}: {refused}");
    }
    assert_eq!(
        catch_up(&server, "acme", 1, 0).await.0,
        fresh,
        "still the fresh tenant"
    );

    // imported with --replace: the original remoteId and sequences are
    // back, so a replica whose cursor is at 2 gets exactly 3, 4, 5
    let (mut open, _) = Client::connect_hello(server.addr, "acme").await;
    let imported = ok(&admin(
        &server,
        &[
            "import",
            "acme",
            "--in",
            file.to_str().unwrap(),
            "--replace",
        ],
    )
    .await);
    assert!(imported.contains("2 logs, 8 entries"), "{imported}");
    let closed = open.closed().await;
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (Some(1001), "tenant replaced by an import")
    );
    let (remote_id, got) = catch_up(&server, "acme", 3, 3).await;
    assert_eq!(remote_id, original);
    assert_eq!(got, vec![3, 4, 5]);
    // and it goes on from there
    let (mut writer, _) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(writer.write("pk-a", 7, &entries(6..=6)).await, vec![6]);
    // an entry already in the log is still recognised after the move
    assert_eq!(writer.write("pk-a", 8, &entries(2..=2)).await, vec![2]);

    // into a new tenant name, without --replace
    ok(&admin(&server, &["import", "copy", "--in", file.to_str().unwrap()]).await);
    assert_eq!(
        catch_up(&server, "copy", 1, 5).await,
        (original, vec![1, 2, 3, 4, 5])
    );
    server.stop_and_collect().await;
}

#[tokio::test]
async fn offline_export_import_and_a_backup_taken_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let server = Serve::start(&["--data", &data_arg], &[]).await;
    let original = seed(&server, "acme").await;

    // a backup while a writer keeps writing: everything acked before it
    // started is in the copy, and each log in the copy is gapless
    let (mut busy, _) = Client::connect_hello(server.addr, "busy").await;
    assert_eq!(busy.write("pk", 1, &entries(1..=50)).await.len(), 50);
    let writing = tokio::spawn(async move {
        for i in 0..200u64 {
            let n = 100 + i;
            busy.write("pk", 2 + i as i64, &entries(n..=n)).await;
        }
        busy
    });
    let backup = dir.path().join("backup");
    let out = process::output(
        &[
            "backup",
            "--data",
            &data_arg,
            "--out",
            backup.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(ok(&out).contains("2 tenant(s)"));
    drop(writing.await.unwrap());
    // a second backup into the same directory is refused
    let again = process::output(
        &[
            "backup",
            "--data",
            &data_arg,
            "--out",
            backup.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(failed(&again).contains("not empty"));

    // export needs no lock; import refuses a directory a server holds
    let file = dir.path().join("acme.jsonl");
    ok(&process::output(
        &[
            "export",
            "--data",
            &data_arg,
            "--tenant",
            "acme",
            "--out",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await);
    let refused = process::output(
        &[
            "import",
            "--data",
            &data_arg,
            "--tenant",
            "other",
            "--in",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(failed(&refused).contains("in use by another evsync server"));
    server.stop_and_collect().await;

    // the backup serves: acked entries there, gapless
    let copy = Serve::start(&["--data", backup.to_str().unwrap()], &[]).await;
    let (mut reader, _) = Client::connect_hello(copy.addr, "busy").await;
    reader.request_changes("pk", 1).await;
    // the catch-up comes in order, in whole batches: at least the 50 acked
    let got = sequences(&reader.changes("pk", 50).await);
    assert!(
        got.len() >= 50,
        "the 50 entries acked before the backup: got {}",
        got.len()
    );
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "gapless");
    assert_eq!(
        catch_up(&copy, "acme", 1, 5).await,
        (original, vec![1, 2, 3, 4, 5])
    );
    copy.stop_and_collect().await;

    // offline import into another directory: same remoteId and sequences
    let other = dir.path().join("other");
    let out = process::output(
        &[
            "import",
            "--data",
            other.to_str().unwrap(),
            "--tenant",
            "acme",
            "--in",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(ok(&out).contains("2 logs, 8 entries"));
    let moved = Serve::start(&["--data", other.to_str().unwrap()], &[]).await;
    assert_eq!(catch_up(&moved, "acme", 4, 2).await, (original, vec![4, 5]));
    moved.stop_and_collect().await;
}

/// Effect v4 data written into `tenant`'s file in the stopped server's
/// directory `data` through the storage API: store (pk-a, "default") with
/// batches at 1 (2 entries), 3 and 4 (3 entries), store (pk-b, "") with
/// one, a replay that is skipped, a binding, and a v3 log beside them.
fn seed_v4(data: &std::path::Path, tenant: &str) -> evsync_core::wire::RemoteId {
    use evsync_core::storage::conformance::{batch, batch_write, store};
    let tenants = data.join("tenants");
    std::fs::create_dir_all(&tenants).unwrap();
    let mut db = SqliteStorage::open(tenant_path(&tenants, tenant)).unwrap();
    let main = store("pk-a", "default");
    let stored: Vec<_> = db
        .append_batches(&[
            batch_write(&main, 1, &[1, 2]),
            batch_write(&main, 2, &[3]),
            batch_write(&main, 3, &[4, 5, 6]),
            batch_write(&store("pk-b", ""), 4, &[1]),
        ])
        .unwrap()
        .into_iter()
        .map(|a| a.stored_at)
        .collect();
    assert_eq!(stored, vec![Some(1), Some(3), Some(4), Some(1)]);
    let replay = db
        .append_batches(&[batch_write(&main, 9, &[1, 2])])
        .unwrap();
    assert_eq!(replay[0].stored_at, None);
    assert_eq!(db.bind_signing_key("pk-a", &[7; 32]).unwrap(), [7; 32]);
    db.append(&[batch("pk-c", 5, &[1, 2])]).unwrap();
    db.remote_id().unwrap()
}

/// Everything of a tenant's file a replica depends on: remoteId, v3 log
/// heads, v4 stores with their heads and batches, bindings.
type Snapshot = (
    evsync_core::wire::RemoteId,
    Vec<evsync_core::storage::LogHead>,
    Vec<(
        evsync_core::storage::StoreHead,
        Vec<evsync_core::storage::StoredBatch>,
    )>,
    Vec<evsync_core::storage::SigningKeyBinding>,
);

fn snapshot(data: &std::path::Path, tenant: &str) -> Snapshot {
    let path = tenant_path(&data.join("tenants"), tenant);
    assert!(path.exists(), "{}", path.display());
    let mut db = SqliteStorage::open(path).unwrap();
    let all = evsync_core::storage::ReadLimit {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
    };
    let stores = db
        .stores()
        .unwrap()
        .into_iter()
        .map(|head| {
            let batches = db.read_batches(&head.store, 0, all).unwrap();
            (head, batches)
        })
        .collect();
    (
        db.remote_id().unwrap(),
        db.logs().unwrap(),
        stores,
        db.bindings().unwrap(),
    )
}

/// A tenant with Effect v4 stores moves through every path the v3 logs
/// take (admin export/import, offline export/import, backup) with its
/// remoteId, its batches at their sequences and its bindings, so an
/// Effect 4 replica's cursor stays valid; a damaged v4 part is refused
/// and changes nothing.
#[tokio::test]
async fn v4_stores_and_bindings_move_with_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let original = seed_v4(&data, "acme");
    let before = snapshot(&data, "acme");
    assert_eq!(before.0, original);
    assert_eq!(before.2.len(), 2);
    assert_eq!(before.2[0].0.head, 6);

    let server = Serve::start(&["--data", data.to_str().unwrap()], ENV).await;
    let file = dir.path().join("acme.jsonl");
    ok(&admin(
        &server,
        &["export", "acme", "--out", file.to_str().unwrap()],
    )
    .await);
    let text = std::fs::read_to_string(&file).unwrap();
    let count = |kind: &str| text.lines().filter(|l| l.starts_with(kind)).count();
    assert!(text.lines().next().unwrap().contains("\"version\":2"));
    assert_eq!(
        (
            count("{\"store\":"),
            count("{\"batch\":"),
            count("{\"binding\":")
        ),
        (2, 4, 1),
        "{text}"
    );

    let imported = ok(&admin(&server, &["import", "copy", "--in", file.to_str().unwrap()]).await);
    assert!(
        imported.contains("1 logs, 2 entries, 2 v4 stores, 4 batches, 1 bindings"),
        "{imported}"
    );

    // a v4 part with a batch missing (the file resealed, so only the order
    // rule sees it) or a damaged ciphertext byte: refused, nothing changed
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let gap_at = lines
        .iter()
        .position(|l| l.starts_with("{\"batch\":") && l.contains("\"seq\":3"))
        .unwrap();
    let mut gap = lines.clone();
    gap.remove(gap_at);
    let at = text.find("{\"batch\":{\"data\":\"").unwrap() + 18;
    let mut damaged = text.clone().into_bytes();
    damaged[at] = if damaged[at] == b'A' { b'B' } else { b'A' };
    for (name, bytes, reason) in [
        ("gap", gap.concat().into_bytes(), "where 3 was due"),
        ("damaged", damaged, "checksum mismatch"),
    ] {
        let bad = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&bad, bytes).unwrap();
        for target in ["copy", "fresh"] {
            let args = ["import", target, "--in", bad.to_str().unwrap(), "--replace"];
            let refused = failed(&admin(&server, &args).await);
            assert!(refused.contains(reason), "{name}: {refused}");
        }
    }
    assert!(failed(&admin(&server, &["show", "fresh"]).await).contains("404"));
    server.stop_and_collect().await;
    assert_eq!(snapshot(&data, "copy"), before, "the admin API's copy");
    assert!(!tenant_path(&data.join("tenants"), "fresh").exists());

    // offline export (the same bytes), import elsewhere, and a backup
    let offline = dir.path().join("offline.jsonl");
    let data_arg = data.to_str().unwrap();
    let out = process::output(
        &[
            "export",
            "--data",
            data_arg,
            "--tenant",
            "acme",
            "--out",
            offline.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(ok(&out).contains("2 v4 stores, 4 batches, 1 bindings"));
    assert_eq!(std::fs::read_to_string(&offline).unwrap(), text);
    let other = dir.path().join("other");
    ok(&process::output(
        &[
            "import",
            "--data",
            other.to_str().unwrap(),
            "--tenant",
            "acme",
            "--in",
            offline.to_str().unwrap(),
        ],
        &[],
    )
    .await);
    assert_eq!(snapshot(&other, "acme"), before, "the offline import");
    let backup = dir.path().join("backup");
    ok(&process::output(
        &[
            "backup",
            "--data",
            data_arg,
            "--out",
            backup.to_str().unwrap(),
        ],
        &[],
    )
    .await);
    assert_eq!(snapshot(&backup, "acme"), before, "the backup");

    // the moved store carries on where it was: a replay is recognised,
    // the next batch is numbered 7, the binding holds
    let mut moved = SqliteStorage::open(tenant_path(&other.join("tenants"), "acme")).unwrap();
    let main = evsync_core::storage::conformance::store("pk-a", "default");
    let next = moved
        .append_batches(&[
            evsync_core::storage::conformance::batch_write(&main, 9, &[4, 5, 6]),
            evsync_core::storage::conformance::batch_write(&main, 9, &[7]),
        ])
        .unwrap();
    assert_eq!((next[0].stored_at, next[1].stored_at), (None, Some(7)));
    assert_eq!(moved.bind_signing_key("pk-a", &[1; 32]).unwrap(), [7; 32]);
}
