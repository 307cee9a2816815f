//! The export format: what the writer writes the reader reads back, in any
//! slicing, and every kind of damage is refused with a clear error.

use bytes::Bytes;
use evsync_core::export::{ExportHeader, ExportReader, ExportWriter, ReadItem, parse_remote_id};
use evsync_core::wire::{RemoteEntry, RemoteId};

/// Format version 2's Effect v4 records.
#[path = "export_format/v4.rs"]
mod v4;

fn entry(sequence: u64, tag: u8) -> RemoteEntry {
    RemoteEntry {
        sequence,
        iv: Bytes::from(vec![tag; 12]),
        entry_id: Bytes::from(vec![tag; 16]),
        encrypted_entry: Bytes::from(vec![tag ^ 0x5a; 40 + tag as usize]),
    }
}

fn header() -> ExportHeader {
    ExportHeader {
        tenant: "acme".into(),
        remote_id: RemoteId::from_random_bytes([7; 16]),
        tokens_not_before: Some(1_700_000_000_000),
    }
}

/// Two logs: `pk-a` with 3 entries, `pk-b` with 2.
fn sample() -> (Vec<(String, RemoteEntry)>, String) {
    let entries: Vec<(String, RemoteEntry)> = vec![
        ("pk-a".into(), entry(1, 1)),
        ("pk-a".into(), entry(2, 2)),
        ("pk-a".into(), entry(3, 3)),
        ("pk-b".into(), entry(1, 4)),
        ("pk-b".into(), entry(2, 5)),
    ];
    let (mut writer, mut file) = ExportWriter::new(&header());
    for (pk, e) in &entries {
        file.push_str(&writer.entry(pk, e).unwrap());
    }
    file.push_str(&writer.finish());
    (entries, file)
}

fn read_all(bytes: &[u8], slice: usize) -> Result<Vec<ReadItem>, String> {
    let mut reader = ExportReader::new();
    let mut items = Vec::new();
    for part in bytes.chunks(slice.max(1)) {
        reader.push(part);
        while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
            items.push(item);
        }
    }
    reader.finish().map_err(|e| e.to_string())?;
    Ok(items)
}

#[test]
fn round_trip_in_any_slicing() {
    let (entries, file) = sample();
    for slice in [1, 7, 64, file.len()] {
        let items = read_all(file.as_bytes(), slice).unwrap();
        assert_eq!(items.first(), Some(&ReadItem::Header(header())));
        let read: Vec<(String, RemoteEntry)> = items
            .iter()
            .filter_map(|item| match item {
                ReadItem::Entry { public_key, entry } => Some((public_key.clone(), entry.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(read, entries, "slice {slice}");
        match items.last() {
            Some(ReadItem::End(summary)) => {
                assert_eq!((summary.logs, summary.entries), (2, 5));
            }
            other => panic!("no trailer: {other:?}"),
        }
    }
}

#[test]
fn an_empty_tenant_exports_header_and_trailer() {
    let (writer, mut file) = ExportWriter::new(&header());
    file.push_str(&writer.finish());
    let items = read_all(file.as_bytes(), 5).unwrap();
    assert_eq!(items.len(), 2);
}

#[test]
fn a_truncated_file_is_refused() {
    let (_, file) = sample();
    let lines: Vec<&str> = file.split_inclusive('\n').collect();
    // without the trailer
    let cut: String = lines[..lines.len() - 1].concat();
    let err = read_all(cut.as_bytes(), 100).unwrap_err();
    assert!(err.contains("without its trailer (truncated)"), "{err}");
    // inside a line
    let err = read_all(&file.as_bytes()[..file.len() - 10], 100).unwrap_err();
    assert!(err.contains("truncated"), "{err}");
    // nothing at all
    let err = read_all(b"", 100).unwrap_err();
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn a_damaged_byte_is_refused() {
    let (_, file) = sample();
    // one base64 character of an entry's data changed: still valid JSON and
    // base64, so only the checksum catches it
    let at = file.find("\"data\":\"").unwrap() + 9;
    let mut bytes = file.clone().into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let err = read_all(&bytes, 100).unwrap_err();
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn a_gap_a_wrong_start_or_a_split_log_is_refused() {
    let (mut writer, _) = ExportWriter::new(&header());
    writer.entry("pk-a", &entry(1, 1)).unwrap();
    let err = writer.entry("pk-a", &entry(3, 3)).unwrap_err();
    assert!(err.contains("without a gap"), "{err}");
    let err = writer.entry("pk-b", &entry(2, 3)).unwrap_err();
    assert!(err.contains("starts at sequence 2"), "{err}");
    writer.entry("pk-b", &entry(1, 3)).unwrap();
    let err = writer.entry("pk-a", &entry(2, 3)).unwrap_err();
    assert!(err.contains("appears again"), "{err}");

    // the reader keeps the same rule against a hand-edited file
    let (_, file) = sample();
    let mut lines: Vec<&str> = file.split_inclusive('\n').collect();
    lines.remove(2); // pk-a's sequence 2
    let err = read_all(lines.concat().as_bytes(), 100).unwrap_err();
    assert!(
        err.starts_with("line 3:") && err.contains("sequence 3 after 1"),
        "{err}"
    );
}

#[test]
fn bytes_after_the_trailer_and_unknown_fields_are_refused() {
    let (_, file) = sample();
    let err = read_all(format!("{file}\n").as_bytes(), 100).unwrap_err();
    assert!(err.contains("after the trailer"), "{err}");
    let err = read_all(format!("{file}x").as_bytes(), 100).unwrap_err();
    assert!(err.contains("after the trailer"), "{err}");

    let edited = file.replacen("\"log\":", "\"extra\":true,\"log\":", 1);
    let err = read_all(edited.as_bytes(), 100).unwrap_err();
    assert!(err.contains("unknown field \"extra\""), "{err}");
}

#[test]
fn another_format_or_version_is_refused() {
    let err = read_all(b"{\"hello\":1}\n", 100).unwrap_err();
    assert!(err.contains("not an evsync export"), "{err}");
    let (_, file) = sample();
    let newer = file.replacen("\"version\":2", "\"version\":3", 1);
    assert_ne!(newer, file);
    let err = read_all(newer.as_bytes(), 100).unwrap_err();
    assert!(err.contains("version 3 is not supported"), "{err}");
    let err = read_all(b"\xff\xfe\n", 100).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
}

#[test]
fn remote_ids_parse_from_their_uuid_text() {
    let id = RemoteId::from_random_bytes([0xab; 16]);
    assert_eq!(parse_remote_id(&id.to_uuid_string()).unwrap(), id);
    for bad in [
        "",
        "not-a-uuid",
        "+bababab-abab-4bab-abab-abababababab",
        "abababab_abab_4bab_abab_abababababab",
    ] {
        assert!(parse_remote_id(bad).is_err(), "{bad}");
    }
}

mod transfer {
    use super::*;
    use evsync_core::export::{Exporter, Importer, export_store};
    use evsync_core::storage::conformance::{batch, block_on};
    use evsync_core::storage::{MemoryStorage, ReadLimit, Storage};

    const ALL: ReadLimit = ReadLimit {
        max_entries: usize::MAX,
        max_bytes: usize::MAX,
    };

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

    #[test]
    fn export_then_import_keeps_remote_id_sequences_and_bytes() {
        let mut source = MemoryStorage::new(RemoteId::from_random_bytes([1; 16]));
        // 2,500 entries in one log (more than one page), two small logs,
        // several ivs, and a duplicate that must not show up twice
        let many: Vec<u64> = (1..=2_500).collect();
        source
            .append(&[batch("big", 1, &many[..1_200]), batch("x", 2, &[1, 2])])
            .unwrap();
        source
            .append(&[
                batch("big", 3, &many[1_200..]),
                batch("y", 4, &[7]),
                batch("x", 5, &[2, 3]),
            ])
            .unwrap();
        source.set_tokens_not_before(1_234).unwrap();
        let file = export(&mut source);

        let mut target = MemoryStorage::new(RemoteId::from_random_bytes([9; 16]));
        import(&file, &mut target).unwrap();
        assert_eq!(target.remote_id().unwrap(), source.remote_id().unwrap());
        assert_eq!(target.tokens_not_before().unwrap(), Some(1_234));
        assert_eq!(target.logs().unwrap(), source.logs().unwrap());
        for log in ["big", "x", "y"] {
            assert_eq!(
                target.read(log, 1, ALL).unwrap(),
                source.read(log, 1, ALL).unwrap(),
                "{log}"
            );
        }
        assert_eq!(target.stats().unwrap(), source.stats().unwrap());
        // and the copy exports to the same bytes
        assert_eq!(export(&mut target), file);
    }

    #[test]
    fn the_exporter_gives_a_page_at_a_time_and_keeps_its_cut() {
        let mut store = MemoryStorage::new(RemoteId::from_random_bytes([3; 16]));
        let many: Vec<u64> = (1..=2_500).collect();
        store.append(&[batch("big", 1, &many)]).unwrap();
        let (mut exporter, mut file) = block_on(Exporter::start(&mut store, "acme")).unwrap();
        let mut calls = 0u64;
        while let Some(lines) = block_on(exporter.next_lines(&mut store)).unwrap() {
            calls += 1;
            assert!(lines.len() <= 1_000, "one page at most");
            for line in lines {
                file.push_str(&line);
            }
            // writes between pages are after the cut: not in this export
            store
                .append(&[batch("big", 2, &[10_000 + calls]), batch("late", 3, &[1])])
                .unwrap();
        }
        assert_eq!(calls, 4, "three pages of entries, then the trailer");
        assert!(block_on(exporter.next_lines(&mut store)).unwrap().is_none());
        assert_eq!(exporter.summary().entries, 2_500);
        assert_eq!(exporter.summary().logs, 1);
        let mut target = MemoryStorage::new(RemoteId::from_random_bytes([4; 16]));
        import(&file, &mut target).unwrap();
        assert_eq!(target.logs().unwrap().len(), 1);
        assert_eq!(target.logs().unwrap()[0].head, 2_500);
    }

    #[test]
    fn import_into_a_store_with_entries_is_refused() {
        let mut source = MemoryStorage::new(RemoteId::from_random_bytes([1; 16]));
        source.append(&[batch("a", 1, &[1])]).unwrap();
        let file = export(&mut source);
        let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
        target.append(&[batch("b", 1, &[5])]).unwrap();
        let err = import(&file, &mut target).unwrap_err();
        assert!(err.contains("already holds 1 logs"), "{err}");
        assert_eq!(target.logs().unwrap().len(), 1, "nothing was imported");
    }

    #[test]
    fn an_entry_twice_in_one_log_is_refused() {
        // a hand-made file: the same entryId at sequences 1 and 2
        let (mut writer, mut file) = ExportWriter::new(&header());
        let mut twice = entry(2, 1);
        twice.entry_id = entry(1, 1).entry_id;
        file.push_str(&writer.entry("a", &entry(1, 1)).unwrap());
        file.push_str(&writer.entry("a", &twice).unwrap());
        file.push_str(&writer.finish());
        let mut target = MemoryStorage::new(RemoteId::from_random_bytes([2; 16]));
        let err = import(&file, &mut target).unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
    }
}
