//! Format version 2: Effect v4 stores, batches and bindings after the v3
//! entries, read back in any slicing; version 1 files still read; every
//! kind of damage to the v4 part refused, and an import that would not
//! rebuild each store at its own sequences refused.

use super::{entry, header, read_all};
use bytes::Bytes;
use evsync_core::export::{ExportReader, ExportWriter, Importer, ReadItem, export_store};
use evsync_core::storage::conformance::{batch, batch_write, block_on, store};
use evsync_core::storage::{
    MemoryStorage, ReadLimit, SigningKeyBinding, Storage, StoreHead, StoreKey, StoredBatch,
};
use evsync_core::wire::RemoteId;
use sha2::{Digest, Sha256};

const ALL: ReadLimit = ReadLimit {
    max_entries: usize::MAX,
    max_bytes: usize::MAX,
};

fn id(n: u8) -> Bytes {
    Bytes::from(vec![n; 16])
}

fn stored(sequence: u64, ids: &[u8], tag: u8) -> StoredBatch {
    StoredBatch {
        sequence,
        iv: Bytes::from(vec![tag; 12]),
        entry_ids: ids.iter().map(|&n| id(n)).collect(),
        encrypted_batch: Bytes::from(vec![tag ^ 0x33; 30 + tag as usize]),
    }
}

fn head(public_key: &str, store_id: &str, head: u64) -> StoreHead {
    StoreHead {
        store: StoreKey::new(public_key, store_id),
        head,
    }
}

fn binding(public_key: &str, key: u8) -> SigningKeyBinding {
    SigningKeyBinding {
        public_key: public_key.into(),
        signing_key: [key; 32],
    }
}

/// One v3 log (2 entries); stores (pk-a, "default") with batches at 1
/// (2 entries) and 3, and (pk-b, "") with one at 1; two bindings.
fn sample_v2() -> String {
    let (mut w, mut file) = ExportWriter::new(&header());
    file.push_str(&w.entry("pk-a", &entry(1, 1)).unwrap());
    file.push_str(&w.entry("pk-a", &entry(2, 2)).unwrap());
    file.push_str(&w.store(&head("pk-a", "default", 3)).unwrap());
    file.push_str(&w.batch(&stored(1, &[1, 2], 1)).unwrap());
    file.push_str(&w.batch(&stored(3, &[3], 2)).unwrap());
    file.push_str(&w.store(&head("pk-b", "", 1)).unwrap());
    file.push_str(&w.batch(&stored(1, &[1], 3)).unwrap());
    file.push_str(&w.binding(&binding("pk-a", 7)).unwrap());
    file.push_str(&w.binding(&binding("pk-b", 8)).unwrap());
    w.check_complete().unwrap();
    file.push_str(&w.finish());
    file
}

fn lines(file: &str) -> Vec<String> {
    file.split_inclusive('\n').map(str::to_owned).collect()
}

/// `lines` (header and body) with a fresh trailer of `end` (a JSON object
/// without the checksum), so that only the order rules can refuse them.
fn sealed(lines: &[String], end: &str) -> String {
    let body = lines.concat();
    let digest: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut end: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&format!("{{{end}}}")).unwrap();
    end.insert("sha256".into(), digest.into());
    format!("{body}{}\n", serde_json::json!({ "end": end }))
}

/// The sample's lines without its trailer, `edit`ed, resealed with the
/// sample's counts.
fn edited(edit: impl FnOnce(&mut Vec<String>)) -> String {
    let mut body = lines(&sample_v2());
    body.pop();
    edit(&mut body);
    sealed(
        &body,
        "\"batches\":3,\"bindings\":2,\"entries\":2,\"logs\":1,\"stores\":2",
    )
}

#[test]
fn v4_records_round_trip_in_any_slicing() {
    let file = sample_v2();
    assert!(file.starts_with("{\"format\":\"evsync-export\""));
    assert!(file.lines().next().unwrap().contains("\"version\":2"));
    for slice in [1, 9, 100, file.len()] {
        let items = read_all(file.as_bytes(), slice).unwrap();
        let v4: Vec<&ReadItem> = items
            .iter()
            .filter(|i| !matches!(i, ReadItem::Header(_) | ReadItem::Entry { .. }))
            .collect();
        let a = StoreKey::new("pk-a", "default");
        let b = StoreKey::new("pk-b", "");
        assert_eq!(
            v4[..7],
            [
                &ReadItem::Store(head("pk-a", "default", 3)),
                &ReadItem::Batch {
                    store: a.clone(),
                    batch: stored(1, &[1, 2], 1)
                },
                &ReadItem::Batch {
                    store: a,
                    batch: stored(3, &[3], 2)
                },
                &ReadItem::Store(head("pk-b", "", 1)),
                &ReadItem::Batch {
                    store: b,
                    batch: stored(1, &[1], 3)
                },
                &ReadItem::Binding(binding("pk-a", 7)),
                &ReadItem::Binding(binding("pk-b", 8)),
            ],
            "slice {slice}"
        );
        match v4.last() {
            Some(ReadItem::End(s)) => assert_eq!(
                (s.logs, s.entries, s.stores, s.batches, s.bindings),
                (1, 2, 2, 3, 2)
            ),
            other => panic!("no trailer: {other:?}"),
        }
    }
}

#[test]
fn a_version_1_file_is_still_read() {
    // what evsync wrote before v4: no v4 records, two counts
    let header_line = lines(&sample_v2())[0].replace("\"version\":2", "\"version\":1");
    let (mut w, _) = ExportWriter::new(&header());
    let body = vec![
        header_line,
        w.entry("pk-a", &entry(1, 1)).unwrap(),
        w.entry("pk-a", &entry(2, 2)).unwrap(),
    ];
    let file = sealed(&body, "\"entries\":2,\"logs\":1");
    let items = read_all(file.as_bytes(), 7).unwrap();
    assert_eq!(items[0], ReadItem::Header(header()));
    match items.last() {
        Some(ReadItem::End(s)) => {
            assert_eq!((s.logs, s.entries, s.stores, s.batches), (1, 2, 0, 0))
        }
        other => panic!("no trailer: {other:?}"),
    }
    // and it imports
    let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
    import(&file, &mut target).unwrap();
    assert_eq!(target.remote_id().unwrap(), header().remote_id);
    assert_eq!(target.read("pk-a", 1, ALL).unwrap().len(), 2);

    // a version 1 file cannot hold v4 records, nor a version 2 trailer
    let mut with_v4 = body.clone();
    with_v4.push(lines(&sample_v2())[3].clone());
    let err = read_all(sealed(&with_v4, "\"entries\":2,\"logs\":1").as_bytes(), 50).unwrap_err();
    assert!(err.contains("in a version 1 file"), "{err}");
    let err = read_all(
        sealed(
            &body,
            "\"batches\":0,\"bindings\":0,\"entries\":2,\"logs\":1,\"stores\":0",
        )
        .as_bytes(),
        50,
    )
    .unwrap_err();
    assert!(err.contains("unknown field \"batches\""), "{err}");
}

#[test]
fn the_sample_reseals_to_itself() {
    // the edits below change only what they say
    assert_eq!(edited(|_| {}), sample_v2());
}

#[test]
fn damaged_or_reordered_v4_parts_are_refused() {
    // lines: 0 header, 1-2 entries, 3 store a, 4-5 its batches, 6 store b,
    // 7 its batch, 8-9 bindings
    let cases: Vec<(&str, String)> = vec![
        (
            "where 1 was due",
            edited(|l| {
                l.remove(4); // a's first batch: the next starts at 3, not 1
            }),
        ),
        (
            "batches missing",
            edited(|l| {
                l.remove(5); // a's last batch: a ends at 2, its head is 3
            }),
        ),
        (
            "ordered by publicKey then storeId",
            edited(|l| {
                let a: Vec<String> = l.drain(3..6).collect();
                l.splice(5..5, a); // store b before store a
            }),
        ),
        (
            "bindings come once each",
            edited(|l| {
                let again = l[8].clone();
                l[9] = again; // pk-a bound twice
            }),
        ),
        ("bindings come once each", edited(|l| l.swap(8, 9))),
        (
            "a store after the bindings",
            edited(|l| {
                let b: Vec<String> = l.drain(6..8).collect();
                l.extend(b);
            }),
        ),
        (
            "a v3 entry after the v4 records",
            edited(|l| {
                let e = l.remove(2);
                l.insert(4, e);
            }),
        ),
        (
            "without its store line",
            edited(|l| {
                l.remove(3);
            }),
        ),
        (
            "unknown kind of record \"compaction\"",
            edited(|l| l.insert(8, "{\"compaction\":{\"upTo\":3}}\n".into())),
        ),
        (
            "unknown field \"extra\"",
            edited(|l| l[4] = l[4].replacen("{\"data\"", "{\"extra\":1,\"data\"", 1)),
        ),
        (
            "signingKey is 3 bytes",
            edited(|l| {
                l[8] = "{\"binding\":{\"publicKey\":\"pk-a\",\"signingKey\":\"AAAA\"}}\n".into()
            }),
        ),
        (
            "has head 0",
            edited(|l| l[6] = l[6].replace("\"head\":1", "\"head\":0")),
        ),
        (
            "past the store's head",
            edited(|l| l[3] = l[3].replace("\"head\":3", "\"head\":2")),
        ),
    ];
    for (want, file) in cases {
        let err = read_all(file.as_bytes(), 64).unwrap_err();
        assert!(err.contains(want), "want {want:?}, got {err}");
    }

    // truncated inside the v4 part, and a damaged ciphertext byte
    let file = sample_v2();
    let cut: String = lines(&file)[..7].concat();
    let err = read_all(cut.as_bytes(), 64).unwrap_err();
    assert!(err.contains("without its trailer (truncated)"), "{err}");
    let at = file.find("{\"batch\":{\"data\":\"").unwrap() + 18;
    let mut bytes = file.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let err = read_all(&bytes, 64).unwrap_err();
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn the_writer_refuses_what_the_reader_would() {
    let (mut w, _) = ExportWriter::new(&header());
    assert!(w.batch(&stored(1, &[1], 1)).is_err(), "no store yet");
    w.store(&head("pk", "s", 2)).unwrap();
    let err = w.batch(&stored(2, &[1], 1)).unwrap_err();
    assert!(err.contains("where 1 was due"), "{err}");
    w.batch(&stored(1, &[1], 1)).unwrap();
    let err = w.check_complete().unwrap_err();
    assert!(err.contains("batches missing"), "{err}");
    let err = w.entry("pk", &entry(1, 1)).unwrap_err();
    assert!(err.contains("after the v4 records"), "{err}");
}

fn export(store: &mut MemoryStorage) -> String {
    let mut file = String::new();
    block_on(export_store(store, "acme", |line| {
        file.push_str(&line);
        Ok(())
    }))
    .unwrap();
    file
}

fn import(file: &str, into: &mut MemoryStorage) -> Result<(), String> {
    let mut reader = ExportReader::new();
    let mut importer = Importer::new();
    reader.push(file.as_bytes());
    while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
        block_on(importer.apply(into, item))?;
    }
    reader.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// A tenant with v3 logs, v4 stores (one over several pages, one batch
/// skipped as a replay) and bindings.
fn v4_tenant() -> MemoryStorage {
    let mut source = MemoryStorage::new(RemoteId::from_random_bytes([1; 16]));
    source.append(&[batch("pk", 1, &[1, 2])]).unwrap();
    let big = store("pk", "default");
    for chunk in (1..=2_600u64).collect::<Vec<_>>().chunks(2) {
        source
            .append_batches(&[batch_write(&big, 1, chunk)])
            .unwrap();
    }
    // a replay: skipped, so no sequence
    source
        .append_batches(&[batch_write(&big, 9, &[1, 2])])
        .unwrap();
    // a batch with one known id and one new: stored whole
    source
        .append_batches(&[batch_write(&big, 2, &[3, 9_999])])
        .unwrap();
    source
        .append_batches(&[
            batch_write(&store("other", ""), 3, &[1]),
            batch_write(&store("pk", "second"), 4, &[5, 6, 7]),
        ])
        .unwrap();
    source.bind_signing_key("pk", &[1; 32]).unwrap();
    source.bind_signing_key("other", &[2; 32]).unwrap();
    source.bind_signing_key("no-store", &[3; 32]).unwrap();
    source
}

#[test]
fn export_then_import_keeps_v4_stores_sequences_and_bindings() {
    let mut source = v4_tenant();
    let file = export(&mut source);
    let mut target = MemoryStorage::new(RemoteId::from_random_bytes([9; 16]));
    import(&file, &mut target).unwrap();
    assert_eq!(target.remote_id().unwrap(), source.remote_id().unwrap());
    assert_eq!(target.logs().unwrap(), source.logs().unwrap());
    assert_eq!(target.stores().unwrap(), source.stores().unwrap());
    assert_eq!(target.stores().unwrap().len(), 3);
    for h in source.stores().unwrap() {
        assert_eq!(
            target.read_batches(&h.store, 0, ALL).unwrap(),
            source.read_batches(&h.store, 0, ALL).unwrap(),
            "{:?}",
            h.store
        );
    }
    assert_eq!(target.bindings().unwrap(), source.bindings().unwrap());
    // the copy carries on: dedup and sequences continue where they were
    let big = store("pk", "default");
    let head = source.stores().unwrap()[1].head;
    assert_eq!(head, 2_602);
    let again = target
        .append_batches(&[
            batch_write(&big, 1, &[7, 8]),
            batch_write(&big, 1, &[20_000]),
        ])
        .unwrap();
    assert_eq!(again[0].stored_at, None, "a replay is still recognised");
    assert_eq!(again[1].stored_at, Some(head + 1));
    assert_eq!(target.bind_signing_key("pk", &[5; 32]).unwrap(), [1; 32]);
    // and the copy exports to the same bytes
    let mut copy = MemoryStorage::new(RemoteId::from_random_bytes([4; 16]));
    import(&file, &mut copy).unwrap();
    assert_eq!(export(&mut copy), file);
}

#[test]
fn import_into_a_store_with_v4_data_is_refused() {
    let file = export(&mut v4_tenant());
    let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
    target
        .append_batches(&[batch_write(&store("x", "y"), 1, &[1])])
        .unwrap();
    let err = import(&file, &mut target).unwrap_err();
    assert!(err.contains("already holds 1 v4 stores"), "{err}");
    let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
    target.bind_signing_key("x", &[1; 32]).unwrap();
    let err = import(&file, &mut target).unwrap_err();
    assert!(err.contains("0 v4 stores and 1 bindings"), "{err}");
}

#[test]
fn a_batch_that_would_not_land_at_its_sequence_is_refused() {
    // a hand-made file: the second batch repeats the first's ids, so the
    // store skips it and the file's sequences cannot be rebuilt
    let (mut w, mut file) = ExportWriter::new(&header());
    file.push_str(&w.store(&head("pk", "s", 2)).unwrap());
    file.push_str(&w.batch(&stored(1, &[1], 1)).unwrap());
    file.push_str(&w.batch(&stored(2, &[1], 2)).unwrap());
    w.check_complete().unwrap();
    file.push_str(&w.finish());
    let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
    let err = import(&file, &mut target).unwrap_err();
    assert!(err.contains("a batch twice?"), "{err}");
}
