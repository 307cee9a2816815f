//! `evsync import --effect-sqlite` with the real binary (issue 15, item 5):
//! a database in the layout of Effect's own `SqlEventLogServer` (built here
//! with Effect's DDL; the interop suite's S12 converts one the real Effect
//! server wrote) becomes a tenant with Effect's remoteId and sequences, so a
//! replica's cursor stays valid; a source that is refused changes nothing.

#[path = "../../evsync-server/tests/common/mod.rs"]
mod common;
mod process;

use common::{Client, entries, sequences};
use evsync_core::wire::RemoteId;
use evsync_storage_sqlite::effect_sql::EffectLayout;
use process::Serve;
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

const REMOTE_ID: [u8; 16] = [0x5a; 16];

/// An Effect database: `pk-a` with entries 1..=5, `pk-b` with 11..=13
/// (entry ids and bytes as the test client's `entries`).
fn effect_db(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE effect_remote_id (remote_id BLOB PRIMARY KEY)")
        .unwrap();
    conn.execute("INSERT INTO effect_remote_id VALUES (?1)", [&REMOTE_ID[..]])
        .unwrap();
    for (key, range) in [("pk-a", 1..=5), ("pk-b", 11..=13)] {
        let table = EffectLayout::default().table_for(key);
        conn.execute_batch(&format!(
            "CREATE TABLE {table} (sequence INTEGER PRIMARY KEY AUTOINCREMENT, iv BLOB NOT NULL,
             entry_id BLOB UNIQUE NOT NULL, encrypted_entry BLOB NOT NULL)"
        ))
        .unwrap();
        for entry in entries(range) {
            conn.execute(
                &format!("INSERT INTO {table} (iv, entry_id, encrypted_entry) VALUES (?1, ?2, ?3)"),
                params![
                    &[7u8; 12][..],
                    &entry.entry_id[..],
                    &entry.encrypted_entry[..]
                ],
            )
            .unwrap();
        }
    }
}

fn import(data: &Path, source: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "import",
        "--data",
        data.to_str().unwrap(),
        "--tenant",
        "acme",
        "--effect-sqlite",
        source.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn run(args: &[String]) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    process::output(&args, &[]).await
}

fn staging_is_empty(data: &Path) -> bool {
    std::fs::read_dir(data.join("staging"))
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[tokio::test]
async fn an_effect_database_becomes_a_tenant_with_its_remote_id_and_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("effect.sqlite");
    effect_db(&source);
    let data = dir.path().join("data");
    let tenant_file: PathBuf = data.join("tenants").join("acme.sqlite");

    // pk-b's table has entries but its publicKey is not named: refused,
    // naming the table and the flags, and nothing is created
    let out = run(&import(&data, &source, &["--public-key", "pk-a"])).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let table_b = EffectLayout::default().table_for("pk-b");
    assert!(
        stderr.contains("import refused, nothing changed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{table_b} (3 entries)")),
        "{stderr}"
    );
    assert!(
        stderr.contains("--public-key KEY or --public-keys FILE"),
        "{stderr}"
    );
    assert!(!tenant_file.exists());
    assert!(staging_is_empty(&data));

    // --in and --effect-sqlite together: a usage error
    let mut both = import(&data, &source, &["--in"]);
    both.push(source.to_str().unwrap().to_owned());
    assert_eq!(run(&both).await.status.code(), Some(2));

    // named (one on the command line, one in a file): imported
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "pk-b\n\npk-unused\n").unwrap();
    let out = run(&import(
        &data,
        &source,
        &[
            "--public-key",
            "pk-a",
            "--public-keys",
            keys.to_str().unwrap(),
        ],
    ))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "(remoteId {}, 2 logs, 8 entries)",
            RemoteId(REMOTE_ID).to_uuid_string()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("no entries in the Effect database for publicKey(s): pk-unused"),
        "{stdout}"
    );

    // a source with a gap, imported over the tenant with --replace: refused,
    // and the tenant is as it was
    let gapped = dir.path().join("gapped.sqlite");
    std::fs::copy(&source, &gapped).unwrap();
    let table_a = EffectLayout::default().table_for("pk-a");
    Connection::open(&gapped)
        .unwrap()
        .execute(&format!("DELETE FROM {table_a} WHERE sequence = 2"), [])
        .unwrap();
    let before = std::fs::read(&tenant_file).unwrap();
    let out = run(&import(
        &data,
        &gapped,
        &["--public-key", "pk-a", "--public-key", "pk-b", "--replace"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("table {table_a}: sequence 2 is missing")),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&tenant_file).unwrap(), before);
    assert!(staging_is_empty(&data));

    // served: Effect's remoteId in Hello, a cursor at 3 gets 4 and 5 (the
    // same entries), and the next write is number 6
    let server = Serve::start(&["--data", data.to_str().unwrap()], &[]).await;
    let (mut client, remote_id) = Client::connect_hello(server.addr, "acme").await;
    assert_eq!(remote_id, RemoteId(REMOTE_ID));
    client.request_changes("pk-a", 4).await;
    let got = client.changes("pk-a", 2).await;
    assert_eq!(sequences(&got), vec![4, 5]);
    let expected = entries(4..=5);
    for (got, want) in got.iter().zip(&expected) {
        assert_eq!(
            (&got.entry_id, &got.encrypted_entry),
            (&want.entry_id, &want.encrypted_entry)
        );
    }
    assert!(client.barrier(9).await.is_empty(), "nothing more");
    assert_eq!(client.write("pk-b", 10, &entries(14..=14)).await, vec![4]);
    assert_eq!(client.write("pk-a", 11, &entries(6..=6)).await, vec![6]);
    // an entry Effect's server had is recognised as already stored
    assert_eq!(client.write("pk-a", 12, &entries(2..=2)).await, vec![2]);
    server.stop_and_collect().await;
}
