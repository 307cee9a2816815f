//! Codec unit and property tests. Byte-compatibility with Effect itself is
//! tested against its own output in `tests/codec_golden.rs`.

use super::*;
use crate::wire::{ChunkedMessage, EncryptedEntry, RemoteId};
use proptest::prelude::*;

fn hex(s: &str) -> Bytes {
    let s: String = s.split_whitespace().collect();
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn ack_matches_effect_bytes() {
    // Produced by Effect 3.19 / @effect/experimental 0.58.0.
    let want = hex(
        "de0003 a26964 03 af73657175656e63654e756d62657273 93 01 02 cd012c a45f746167 a341636b",
    );
    let msg = Response::Ack {
        id: 3,
        sequence_numbers: vec![1, 2, 300],
    };
    assert_eq!(encode_response(&msg), want);
    assert_eq!(decode_response(&want).unwrap(), msg);
}

#[test]
fn hello_matches_effect_bytes() {
    let want = hex(
        "de0002 a872656d6f74654964 c410 000102030405060708090a0b0c0d0e0f a45f746167 a548656c6c6f",
    );
    let msg = Response::Hello {
        remote_id: RemoteId(core::array::from_fn(|i| i as u8)),
    };
    assert_eq!(encode_response(&msg), want);
    assert_eq!(decode_response(&want).unwrap(), msg);
}

fn request_err(frame: &str) -> DecodeError {
    decode_request(&hex(frame)).unwrap_err()
}

fn response_err(frame: &str) -> DecodeError {
    decode_response(&hex(frame)).unwrap_err()
}

#[test]
fn errors_say_what_and_where() {
    // WriteEntries whose encryptedEntries[0].entryId is a str.
    let mut frame = Vec::new();
    writer::map16(&mut frame, 5);
    writer::key(&mut frame, "publicKey");
    writer::str(&mut frame, "pk");
    writer::key(&mut frame, "id");
    writer::i64(&mut frame, 1);
    writer::key(&mut frame, "iv");
    writer::bin(&mut frame, &[0; 12]);
    writer::key(&mut frame, "encryptedEntries");
    writer::array_header(&mut frame, 2);
    for bad in [false, true] {
        writer::map16(&mut frame, 2);
        writer::key(&mut frame, "entryId");
        if bad {
            writer::str(&mut frame, "not bytes");
        } else {
            writer::bin(&mut frame, &[1; 16]);
        }
        writer::key(&mut frame, "encryptedEntry");
        writer::bin(&mut frame, &[2; 3]);
    }
    writer::key(&mut frame, "_tag");
    writer::key(&mut frame, "WriteEntries");
    let err = decode_request(&Bytes::from(frame)).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::WrongType);
    assert_eq!(
        err.to_string(),
        "WriteEntries.encryptedEntries[1].entryId: expected bin, found str"
    );

    // {_tag: "Nope"}
    let err = request_err("81 a45f746167 a44e6f7065");
    assert_eq!(err.kind(), DecodeErrorKind::UnknownTag);
    assert_eq!(err.path(), "_tag");
    // A response tag is unknown as a request.
    let err = request_err("81 a45f746167 a4506f6e67");
    assert_eq!(err.kind(), DecodeErrorKind::UnknownTag);
    // {id: 1}
    assert_eq!(
        request_err("81 a26964 01").kind(),
        DecodeErrorKind::MissingTag
    );
    // {_tag: 1}
    let err = request_err("81 a45f746167 01");
    assert_eq!(err.to_string(), "_tag: expected str, found int");
    // Ping without id.
    let err = request_err("81 a45f746167 a450696e67");
    assert_eq!(err.kind(), DecodeErrorKind::MissingField);
    assert_eq!(err.to_string(), "Ping.id: missing field");
    // Ping{id: 1.5}
    let err = request_err("82 a26964 cb3ff8000000000000 a45f746167 a450696e67");
    assert_eq!(err.kind(), DecodeErrorKind::NotAnInteger);
    assert_eq!(err.path(), "Ping.id");
    // Trailing byte.
    let err = request_err("82 a26964 01 a45f746167 a450696e67 00");
    assert_eq!(err.kind(), DecodeErrorKind::TrailingBytes);
    // Truncated inside the tag string.
    let err = request_err("82 a26964 01 a45f746167 a450696e");
    assert_eq!(err.kind(), DecodeErrorKind::Truncated);
    assert_eq!(request_err("").kind(), DecodeErrorKind::Truncated);
    // Reserved byte as a value.
    let err = request_err("82 a26964 c1 a45f746167 a450696e67");
    assert_eq!(err.kind(), DecodeErrorKind::ReservedByte);
    // Not a map.
    let err = request_err("91 01");
    assert_eq!(err.to_string(), "message: expected map, found array");
    // Ack with a negative sequence.
    let err =
        response_err("83 a26964 01 af73657175656e63654e756d62657273 92 01 ff a45f746167 a341636b");
    assert_eq!(err.kind(), DecodeErrorKind::OutOfRange);
    assert_eq!(err.path(), "Ack.sequenceNumbers[1]");
    // Hello with a 15-byte remoteId.
    let err = response_err(
        "82 a872656d6f74654964 c40f 000102030405060708090a0b0c0d0e a45f746167 a548656c6c6f",
    );
    assert_eq!(err.kind(), DecodeErrorKind::WrongLength);
    assert_eq!(
        err.to_string(),
        "Hello.remoteId: expected 16 bytes, found 15"
    );
    // ChunkedMessage with a 3-element part and with a negative total.
    let err = request_err(
        "84 a26964 01 a470617274 93 00 01 02 a464617461 c400 a45f746167 ae4368756e6b65644d657373616765",
    );
    assert_eq!(err.kind(), DecodeErrorKind::WrongLength);
    let err = request_err(
        "84 a26964 01 a470617274 92 00 ff a464617461 c400 a45f746167 ae4368756e6b65644d657373616765",
    );
    assert_eq!(err.path(), "ChunkedMessage.part[1]");
    assert_eq!(err.kind(), DecodeErrorKind::OutOfRange);
    // Invalid UTF-8 in publicKey.
    let err = request_err("82 a97075626c69634b6579 a2c328 a45f746167 ab53746f704368616e676573");
    assert_eq!(err.kind(), DecodeErrorKind::InvalidUtf8);
    assert_eq!(err.path(), "StopChanges.publicKey");
}

#[test]
fn leniency() {
    // Keys in another order, fixmap, extra keys (of a non-string type too),
    // id as float64, duplicate key (last wins).
    let frame = hex(
        "85 a45f746167 a450696e67 a26964 05 a5657874726192c0c3 01 02 a26964 cb4000000000000000",
    );
    assert_eq!(decode_request(&frame).unwrap(), Request::Ping { id: 2 });
    // map32 header, int64 id.
    let frame = hex("df00000002 a26964 d3fffffffffffffffe a45f746167 a450696e67");
    assert_eq!(decode_request(&frame).unwrap(), Request::Ping { id: -2 });
    // RequestChanges with a negative startSequence clamps to 0.
    let frame = hex(
        "83 a97075626c69634b6579 a16b ad737461727453657175656e6365 d0f0 a45f746167 ae526571756573744368616e676573",
    );
    assert_eq!(
        decode_request(&frame).unwrap(),
        Request::RequestChanges {
            public_key: "k".into(),
            start_sequence: 0
        }
    );
    // A field of another message kind with the wrong type is ignored.
    let frame = hex("83 a97075626c69634b6579 01 a26964 07 a45f746167 a450696e67");
    assert_eq!(decode_request(&frame).unwrap(), Request::Ping { id: 7 });
    // ...but unknown keys must still be well-formed.
    let frame = hex("83 a178 c1 a26964 07 a45f746167 a450696e67");
    assert_eq!(
        decode_request(&frame).unwrap_err().kind(),
        DecodeErrorKind::ReservedByte
    );
}

#[test]
fn last_duplicate_wins_even_over_an_ill_typed_value() {
    // Changes entry with `sequence: "x"` then `sequence: 4`.
    let frame = hex("83 a97075626c69634b6579 a16b a7656e7472696573 91 \
         85 a873657175656e6365 a178 a8 73657175656e6365 04 a26976 c400 a7656e7472794964 c400 \
         ae656e63727970746564456e747279 c400 \
         a45f746167 a74368616e676573");
    let Response::Changes { entries, .. } = decode_response(&frame).unwrap() else {
        panic!()
    };
    assert_eq!(entries[0].sequence, 4);
}

#[test]
fn malformed_msgpack_beats_a_type_error_before_it() {
    // Ping whose extra-looking `id` holds [ "x", <truncated str> ].
    let frame = hex("82 a45f746167 a450696e67 a26964 92 a178 a5 61");
    let err = decode_request(&frame).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::Truncated);
    assert_eq!(err.path(), "");
    // The same with a well-formed tail is a type error of `id`.
    let frame = hex("82 a45f746167 a450696e67 a26964 92 a178 a0");
    let err = decode_request(&frame).unwrap_err();
    assert_eq!(err.to_string(), "Ping.id: expected int, found array");
}

#[test]
fn depth_is_limited() {
    let mut frame = hex("82 a45f746167 a450696e67 a178").to_vec();
    frame.extend(std::iter::repeat_n(0x91, 100_000));
    frame.push(0xc0);
    let err = decode_request(&Bytes::from(frame)).unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::TooDeep);
}

#[test]
fn forged_lengths_do_not_allocate() {
    // encryptedEntries claims 2^32-1 elements in a tiny frame.
    let frame = hex(
        "84 a97075626c69634b6579 a16b a26964 01 a26976 c400 b0656e63727970746564456e7472696573 ddffffffff",
    );
    assert_eq!(
        decode_request(&frame).unwrap_err().kind(),
        DecodeErrorKind::Truncated
    );
}

#[test]
fn binaries_are_zero_copy() {
    let msg = Request::WriteEntries {
        public_key: "pk".into(),
        id: 1,
        iv: Bytes::from_static(&[9; 12]),
        encrypted_entries: vec![EncryptedEntry {
            entry_id: Bytes::from_static(&[1; 16]),
            encrypted_entry: Bytes::from(vec![7; 1000]),
        }],
    };
    let frame = Bytes::from(encode_request(&msg));
    let Request::WriteEntries {
        encrypted_entries, ..
    } = decode_request(&frame).unwrap()
    else {
        panic!()
    };
    let range = frame.as_ptr_range();
    assert!(range.contains(&encrypted_entries[0].encrypted_entry.as_ptr()));
}

// ---- property tests ----

fn bytes_strategy(max: usize) -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..=max.min(40)),
        1 => (0..=max).prop_map(|n| vec![0xab; n]),
    ]
    .prop_map(Bytes::from)
}

fn id_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -70_000i64..70_000,
        Just(i32::MIN as i64),
        Just(u32::MAX as i64),
        Just(1 << 32),
        Just((1 << 53) - 1),
        Just(1 << 53),
        Just((1 << 53) + 1),
        Just(i64::MIN),
        Just(i64::MAX),
    ]
}

fn seq_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..70_000,
        Just(u32::MAX as u64),
        Just(1 << 53),
        Just((1 << 53) + 1),
        Just(u64::MAX),
        Just(1 << 63),
    ]
}

fn string_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        (0usize..400).prop_map(|n| "é".repeat(n)),
        Just("a".repeat(31)),
        Just("a".repeat(32)),
        Just("a".repeat(256)),
    ]
}

fn chunk_strategy() -> impl Strategy<Value = ChunkedMessage> {
    (
        id_strategy(),
        any::<u32>(),
        any::<u32>(),
        bytes_strategy(300),
    )
        .prop_map(|(id, index, total, data)| ChunkedMessage {
            id,
            index,
            total,
            data,
        })
}

fn remote_entry_strategy() -> impl Strategy<Value = RemoteEntry> {
    (
        seq_strategy(),
        bytes_strategy(20),
        bytes_strategy(20),
        bytes_strategy(70_000),
    )
        .prop_map(|(sequence, iv, entry_id, encrypted_entry)| RemoteEntry {
            sequence,
            iv,
            entry_id,
            encrypted_entry,
        })
}

fn request_strategy() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            string_strategy(),
            id_strategy(),
            bytes_strategy(16),
            proptest::collection::vec(
                (bytes_strategy(20), bytes_strategy(300)).prop_map(
                    |(entry_id, encrypted_entry)| {
                        EncryptedEntry {
                            entry_id,
                            encrypted_entry,
                        }
                    }
                ),
                0..20,
            )
        )
            .prop_map(
                |(public_key, id, iv, encrypted_entries)| Request::WriteEntries {
                    public_key,
                    id,
                    iv,
                    encrypted_entries
                }
            ),
        (string_strategy(), seq_strategy()).prop_map(|(public_key, start_sequence)| {
            Request::RequestChanges {
                public_key,
                start_sequence,
            }
        }),
        string_strategy().prop_map(|public_key| Request::StopChanges { public_key }),
        chunk_strategy().prop_map(Request::Chunked),
        id_strategy().prop_map(|id| Request::Ping { id }),
    ]
}

fn response_strategy() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<[u8; 16]>().prop_map(|b| Response::Hello {
            remote_id: RemoteId(b)
        }),
        (
            id_strategy(),
            proptest::collection::vec(seq_strategy(), 0..40)
        )
            .prop_map(|(id, sequence_numbers)| Response::Ack {
                id,
                sequence_numbers
            }),
        (
            string_strategy(),
            proptest::collection::vec(remote_entry_strategy(), 0..20)
        )
            .prop_map(|(public_key, entries)| Response::Changes {
                public_key,
                entries
            }),
        chunk_strategy().prop_map(Response::Chunked),
        id_strategy().prop_map(|id| Response::Pong { id }),
    ]
}

proptest! {
    #[test]
    fn request_roundtrip(msg in request_strategy()) {
        let encoded = encode_request(&msg);
        prop_assert_eq!(encoded.len(), request_encoded_len(&msg));
        let decoded = decode_request(&Bytes::from(encoded)).unwrap();
        prop_assert_eq!(decoded, msg);
    }

    #[test]
    fn response_roundtrip(msg in response_strategy()) {
        let encoded = encode_response(&msg);
        prop_assert_eq!(encoded.len(), response_encoded_len(&msg));
        let decoded = decode_response(&Bytes::from(encoded)).unwrap();
        prop_assert_eq!(decoded, msg);
    }

    /// The engine packs Changes under the chunk size from these two
    /// functions alone, so they must add up to the real encoding exactly.
    #[test]
    fn changes_size_is_exact(
        public_key in string_strategy(),
        entries in proptest::collection::vec(remote_entry_strategy(), 0..40),
    ) {
        let want = changes_overhead(&public_key, entries.len())
            + entries.iter().map(remote_entry_encoded_len).sum::<usize>();
        let msg = Response::Changes { public_key, entries };
        prop_assert_eq!(encode_response(&msg).len(), want);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let frame = Bytes::from(bytes);
        let _ = decode_request(&frame);
        let _ = decode_response(&frame);
    }

    /// Flipping, truncating or extending a valid frame gives a value or an
    /// error, never a panic; a value re-encodes to something that decodes
    /// to itself.
    #[test]
    fn mutated_frames_never_panic(
        msg in request_strategy(),
        pos in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut encoded = encode_request(&msg);
        let i = pos.index(encoded.len());
        encoded[i] = byte;
        for frame in [encoded.clone(), encoded[..cut.index(encoded.len())].to_vec()] {
            if let Ok(decoded) = decode_request(&Bytes::from(frame)) {
                let again = decode_request(&Bytes::from(encode_request(&decoded))).unwrap();
                prop_assert_eq!(again, decoded);
            }
        }
    }
}

#[test]
fn changes_overhead_counts_array_header_growth() {
    for n in [0usize, 15, 16, 65_535, 65_536] {
        let entries = vec![
            RemoteEntry {
                sequence: 1,
                iv: Bytes::new(),
                entry_id: Bytes::new(),
                encrypted_entry: Bytes::new(),
            };
            n
        ];
        let want =
            changes_overhead("pk", n) + entries.iter().map(remote_entry_encoded_len).sum::<usize>();
        let msg = Response::Changes {
            public_key: "pk".into(),
            entries,
        };
        assert_eq!(encode_response(&msg).len(), want, "{n} entries");
    }
}

#[test]
fn encode_into_appends() {
    let mut out = vec![0xff];
    encode_response_into(&Response::Pong { id: 1 }, &mut out);
    assert_eq!(out[0], 0xff);
    assert_eq!(&out[1..], &encode_response(&Response::Pong { id: 1 })[..]);
    let mut out = Vec::new();
    encode_request_into(&Request::Ping { id: 1 }, &mut out);
    assert_eq!(out, encode_request(&Request::Ping { id: 1 }));
}
