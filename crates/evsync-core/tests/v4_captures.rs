//! Real Effect v4 traffic through the v4 codec.
//!
//! `tests/fixtures/v4-captures/*.jsonl` were recorded by a logging
//! WebSocket proxy between effect 4.1.0's own eventlog client and server
//! (`tap-enc`: encrypted mode, `tap-unenc`: unencrypted, `tap-kill`: the
//! proxy killed the first socket and the client reconnected). Every frame
//! of every connection goes through the frame splitter, decodes as an
//! envelope, and every hole inside it decodes by its RPC; each decoded value
//! re-encodes to a frame that decodes to the same value, and envelopes
//! re-encode byte for byte.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use evsync_core::proto::v4::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Encrypted,
    Unencrypted,
}

/// Decodes `frame` as `T`, checks the typed round trip, and reports whether
/// our encoding is byte-identical to Effect's.
fn check<T: Value + PartialEq + std::fmt::Debug>(
    what: &str,
    frame: &Bytes,
    stats: &mut Stats,
) -> T {
    let value = decode::<T>(frame).unwrap_or_else(|e| panic!("{what}: {e} ({frame:x?})"));
    let again = Bytes::from(encode(&value));
    assert_eq!(decode::<T>(&again).unwrap(), value, "{what}: round trip");
    stats.holes += 1;
    if again == *frame {
        stats.identical += 1;
    } else {
        stats.differing.push(what.to_owned());
    }
    value
}

#[derive(Default, Debug)]
struct Stats {
    envelopes: usize,
    holes: usize,
    identical: usize,
    differing: Vec<String>,
}

fn hex(s: &str) -> Bytes {
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

/// Everything decoded from one capture, for the assertions below.
#[derive(Default)]
struct Seen {
    hellos: Vec<HelloResponse>,
    auths: Vec<Authenticate>,
    changes: Vec<ChangesPayload>,
    writes: Vec<Bytes>,
    write_exits: Vec<WriteExit>,
    changes_exits: Vec<ChangesExit>,
    batches: Vec<EncryptedRemoteBatch>,
    entries: Vec<RemoteEntry>,
    written: Vec<(usize, usize)>,
    pings: usize,
    pongs: usize,
    acks: usize,
}

fn replay(file: &str, mode: Mode, stats: &mut Stats) -> Seen {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v4-captures")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut splitters: HashMap<(u64, String), FrameSplitter> = HashMap::new();
    let mut tags: HashMap<(u64, RequestId), String> = HashMap::new();
    let mut seen = Seen::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(h) = v["hex"].as_str() else { continue };
        let conn = v["conn"].as_u64().unwrap();
        let dir = v["dir"].as_str().unwrap().to_owned();
        let splitter = splitters.entry((conn, dir.clone())).or_default();
        splitter.push(hex(h));
        while let Some(frame) = splitter.next_frame().unwrap() {
            stats.envelopes += 1;
            if dir == "c2s" {
                let msg = FromClient::decode(&frame).unwrap();
                assert_eq!(msg.encode(), frame, "{file}: client envelope re-encodes");
                match msg {
                    FromClient::Request(r) => {
                        tags.insert((conn, r.id.clone()), r.tag.clone());
                        let what = format!("{file} #{conn} {} payload", r.tag);
                        match r.tag.as_str() {
                            "EventLog.Hello" => check::<()>(&what, &r.payload, stats),
                            "EventLog.Authenticate" => {
                                seen.auths.push(check(&what, &r.payload, stats));
                            }
                            "EventLog.Changes" => {
                                seen.changes.push(check(&what, &r.payload, stats));
                            }
                            "EventLog.WriteSingle" => {
                                let p: WriteSinglePayload = check(&what, &r.payload, stats);
                                let inner = format!("{what} data");
                                seen.written.push(match mode {
                                    Mode::Encrypted => {
                                        let w: WriteEntries = check(&inner, &p.data, stats);
                                        (
                                            w.batches.len(),
                                            w.batches.iter().map(|b| b.entry_ids.len()).sum(),
                                        )
                                    }
                                    Mode::Unencrypted => {
                                        let w: WriteEntriesUnencrypted =
                                            check(&inner, &p.data, stats);
                                        (0, w.entries.len())
                                    }
                                });
                                seen.writes.push(p.data);
                            }
                            other => panic!("{file}: unexpected request {other}"),
                        }
                    }
                    FromClient::Ack { .. } => seen.acks += 1,
                    FromClient::Ping => seen.pings += 1,
                    FromClient::Interrupt { .. } | FromClient::Eof => {}
                }
            } else {
                let msg = FromServer::decode(&frame).unwrap();
                assert_eq!(msg.encode(), frame, "{file}: server envelope re-encodes");
                match msg {
                    FromServer::Exit { request_id, exit } => {
                        let tag = &tags[&(conn, request_id)];
                        let what = format!("{file} #{conn} {tag} exit");
                        match tag.as_str() {
                            "EventLog.Hello" => match check::<HelloExit>(&what, &exit, stats) {
                                Exit::Success(hello) => seen.hellos.push(hello),
                                other => panic!("{what}: {other:?}"),
                            },
                            "EventLog.Authenticate" => {
                                let e: AuthenticateExit = check(&what, &exit, stats);
                                assert_eq!(e, Exit::Success(()));
                            }
                            "EventLog.WriteSingle" => {
                                seen.write_exits.push(check(&what, &exit, stats))
                            }
                            "EventLog.Changes" => {
                                seen.changes_exits.push(check(&what, &exit, stats))
                            }
                            other => panic!("{file}: exit of {other}"),
                        }
                    }
                    FromServer::Chunk { request_id, values } => {
                        assert_eq!(tags[&(conn, request_id)], "EventLog.Changes");
                        let what = format!("{file} #{conn} Changes chunk");
                        let values: Vec<ChangesValue> = check(&what, &values, stats);
                        for value in values {
                            let ChangesValue::Single { data } = value else {
                                panic!("{what}: a chunked value in a small capture")
                            };
                            let inner = format!("{what} data");
                            match mode {
                                Mode::Encrypted => {
                                    seen.batches.extend(check::<Vec<EncryptedRemoteBatch>>(
                                        &inner, &data, stats,
                                    ))
                                }
                                Mode::Unencrypted => seen
                                    .entries
                                    .extend(check::<Vec<RemoteEntry>>(&inner, &data, stats)),
                            }
                        }
                    }
                    FromServer::Pong => seen.pongs += 1,
                    FromServer::Defect { .. } => panic!("{file}: a defect"),
                }
            }
        }
    }
    for ((conn, dir), splitter) in &splitters {
        splitter
            .finish()
            .unwrap_or_else(|e| panic!("{file} #{conn} {dir}: {e}"));
    }
    seen
}

fn acks(exit: &WriteExit) -> Vec<u64> {
    match exit {
        Exit::Success(acks) => acks.iter().map(|a| a.sequence).collect(),
        other => panic!("{other:?}"),
    }
}

fn interrupted(exits: &[ChangesExit]) -> Vec<Option<u64>> {
    exits
        .iter()
        .map(|e| match e {
            Exit::Failure(reasons) => match reasons[..] {
                [Reason::Interrupt(fiber)] => fiber,
                _ => panic!("{e:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect()
}

const PUBLIC_KEY: &str = "11111111-2222-4333-8444-555555555555";

#[test]
fn encrypted_session() {
    let mut stats = Stats::default();
    let seen = replay("tap-enc.jsonl", Mode::Encrypted, &mut stats);
    // Effect's memory server: compaction advertised, `firstSequence`
    // written as an explicit `undefined` (kind 3) = absent.
    assert_eq!(seen.hellos.len(), 2);
    for hello in &seen.hellos {
        assert!(hello.compaction);
        assert_eq!(hello.first_sequence, None);
        assert_eq!((hello.challenge.len(), hello.remote_id.len()), (32, 16));
    }
    assert_eq!(seen.hellos[0].remote_id, seen.hellos[1].remote_id);
    assert_eq!(seen.auths.len(), 2);
    for auth in &seen.auths {
        assert_eq!(auth.public_key, PUBLIC_KEY);
        assert_eq!(
            (auth.signature.len(), auth.signing_public_key.len()),
            (64, 32)
        );
    }
    assert_eq!(
        seen.changes,
        vec![
            ChangesPayload {
                store_id: "default".into(),
                start_sequence: 0,
                public_key: PUBLIC_KEY.into(),
            };
            2
        ]
    );
    // One batch of three entries, acked at sequences 0, 1, 2 (the row run
    // declares its shape in the first row and reuses it).
    assert_eq!(seen.written, [(1, 3)]);
    assert_eq!(
        seen.write_exits.iter().map(acks).collect::<Vec<_>>(),
        [vec![0, 1, 2]]
    );
    // The second replica receives that batch.
    assert_eq!(seen.batches.len(), 1);
    assert_eq!(seen.batches[0].sequence, 0);
    assert_eq!(seen.batches[0].entry_ids.len(), 3);
    assert_eq!(seen.batches[0].iv.len(), 12);
    // Both streams end with Interrupt from a fiber id (f64 LE).
    assert_eq!(interrupted(&seen.changes_exits), [Some(15), Some(25)]);
    assert_eq!(seen.acks, 1);
    println!("{stats:#?}");
    // Every hole but the two Hello exits (explicit `undefined`) re-encodes
    // byte for byte.
    assert_eq!(stats.differing.len(), 2, "{:?}", stats.differing);
    assert!(stats.differing.iter().all(|d| d.contains("Hello exit")));
}

#[test]
fn unencrypted_session() {
    let mut stats = Stats::default();
    let seen = replay("tap-unenc.jsonl", Mode::Unencrypted, &mut stats);
    // The unencrypted server: no compaction, firstSequence 1.
    for hello in &seen.hellos {
        assert!(!hello.compaction);
        assert_eq!(hello.first_sequence, Some(1));
    }
    assert_eq!(seen.written, [(0, 2)]);
    assert_eq!(
        seen.write_exits.iter().map(acks).collect::<Vec<_>>(),
        [vec![1, 2]]
    );
    assert_eq!(seen.entries.len(), 2);
    let sequences: Vec<u64> = seen.entries.iter().map(|e| e.remote_sequence).collect();
    assert_eq!(sequences, [1, 2]);
    for entry in &seen.entries {
        assert_eq!(entry.entry.event, "TodoCreated");
        assert_eq!(entry.entry.id.len(), 16);
    }
    assert_eq!(interrupted(&seen.changes_exits), [Some(12), Some(22)]);
    println!("{stats:#?}");
    // Effect interns repeated strings in entry rows (the second entry's
    // `event` is a back-reference); we never do, so that frame differs in
    // bytes (and decodes equal, checked above). The Hello exits write
    // `compaction` as an explicit `undefined`, which we omit. (Remote entry
    // rows hold the entry as a struct cell, which does not intern.)
    assert_eq!(stats.differing.len(), 3, "{:?}", stats.differing);
    for d in &stats.differing {
        assert!(
            d.contains("WriteSingle payload data") || d.contains("Hello exit"),
            "{d}"
        );
    }
}

#[test]
fn reconnect_session() {
    let mut stats = Stats::default();
    let seen = replay("tap-kill.jsonl", Mode::Encrypted, &mut stats);
    // After the kill the client says Hello again (request ids keep counting
    // across connections), re-authenticates, and resumes Changes.
    assert_eq!(seen.hellos.len(), 2);
    assert_eq!(seen.auths.len(), 2);
    assert_eq!(seen.changes.len(), 2);
    assert_eq!((seen.pings, seen.pongs), (1, 1));
    assert_eq!(interrupted(&seen.changes_exits), [Some(24)]);
    assert!(!seen.batches.is_empty());
}
