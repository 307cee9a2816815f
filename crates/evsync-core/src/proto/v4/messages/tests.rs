//! Hand-made frames against the eventlog decoders: the protocol notes'
//! captured holes, and the inputs each decoder must refuse.

use bytes::Bytes;

use super::*;
use crate::proto::v4::error::DecodeErrorKind;
use crate::proto::v4::schema_binary::{Exit, Reason};
use crate::proto::v4::{decode, encode};

fn hex(s: &str) -> Bytes {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    Bytes::from(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

fn utf8(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn id16(n: u8) -> String {
    format!("{n:02x}").repeat(16)
}

#[test]
fn the_forbidden_hole_of_the_notes() {
    let frame = hex(&format!(
        "52 20 01 01 4e 00 0a 6973bb46 a08ec1bc12 1d {} d092b7d452 07 {} f8efc0827a 03 05 {} a0cfadcc7c 09 {}",
        utf8("Identity is not authenticated"),
        utf8("Changes"),
        utf8("pk"),
        utf8("Forbidden")
    ));
    let exit: ChangesExit = decode(&frame).unwrap();
    let error = EventLogProtocolError {
        message: "Identity is not authenticated".into(),
        store_id: None,
        request_tag: "Changes".into(),
        public_key: Some("pk".into()),
        code: ErrorCode::Forbidden,
    };
    assert_eq!(exit, Exit::Failure(vec![Reason::Fail(error)]));
    assert_eq!(encode(&exit), frame);
}

#[test]
fn the_three_ack_exit_of_the_notes() {
    let frame = hex(&format!(
        "4c 20 00 03 1e 00 e8de8fe203 02 00 feb096b70a 20 {} 14 01 02 02 20 {} 14 01 02 04 20 {}",
        id16(1),
        id16(2),
        id16(3)
    ));
    let Exit::Success(acks) = decode::<WriteExit>(&frame).unwrap() else {
        panic!("not a success")
    };
    let sequences: Vec<u64> = acks.iter().map(|a| a.sequence).collect();
    assert_eq!(sequences, [0, 1, 2]);
    assert_eq!(&acks[2].entry_id[..], &[3; 16]);
    // Our writer declares the shape once and reuses it, as Effect does.
    assert_eq!(
        encode(&Exit::<_, EventLogProtocolError>::Success(acks)),
        frame
    );
}

#[test]
fn interned_strings_are_read_back_by_reference() {
    // WriteEntriesUnencrypted with two entries; the second row reuses the
    // shape and refers to the first row's event (code 1 = table entry 0).
    let payload_id = "a5efbd9803"; // payload (856651685), a row-run id
    let row1 = format!(
        "00 {payload_id} 02 aa e0d5e1b903 20 {} 90e4f8b10c 04 {} 9fa1c3f10f 08 {}",
        id16(1),
        utf8("k1"),
        utf8("Todo")
    );
    let frame = |event_ref: &str| {
        let row2 = format!("01 02 bb 20 {} 04 {} {event_ref}", id16(2), utf8("k2"));
        let body = |r: &str| format!("{:02x}{r}", hex(r).len());
        let rows = format!("02 {} {}", body(&row1), body(&row2));
        let value = format!(
            "9885f1a826 01 {} 98af90d637 {:02x} {rows} f8efc0827a 01 {}",
            utf8("s"),
            hex(&rows).len(),
            utf8("p")
        );
        hex(&format!("{:02x} 20 {value}", hex(&value).len() + 1))
    };
    let w: WriteEntriesUnencrypted = decode(&frame("01")).unwrap();
    assert_eq!(w.store_id, "s");
    assert_eq!(w.public_key, "p");
    assert_eq!(w.entries.len(), 2);
    assert_eq!(w.entries[1].event, "Todo");
    assert_eq!(w.entries[1].primary_key, "k2");
    assert_eq!(&w.entries[1].payload[..], &[0xbb]);
    // A reference past the table (entry 1 of a table of one).
    let e = decode::<WriteEntriesUnencrypted>(&frame("03")).unwrap_err();
    assert_eq!(e.kind(), DecodeErrorKind::BadReference);
    assert_eq!(e.path(), "WriteEntriesUnencrypted.entries[1].event");
}

#[test]
fn schema_violations_are_refused() {
    let kind = |frame: Vec<u8>, f: fn(&Bytes) -> Result<(), crate::proto::v4::DecodeError>| {
        f(&Bytes::from(frame)).unwrap_err().kind()
    };
    // Authenticate with another algorithm.
    let auth = Authenticate {
        signature: Bytes::from_static(&[1; 64]),
        public_key: "pk".into(),
        signing_public_key: Bytes::from_static(&[2; 32]),
    };
    let mut frame = encode(&auth);
    let at = frame.windows(7).position(|w| w == b"Ed25519").unwrap();
    frame[at] = b'X';
    assert_eq!(
        kind(frame, |b| decode::<Authenticate>(b).map(drop)),
        DecodeErrorKind::InvalidValue
    );
    // A chunk part whose index is not below its total.
    let chunk = ChunkedMessage {
        id: 1,
        index: 1,
        total: 2,
        data: Bytes::new(),
    };
    let mut frame = encode(&chunk);
    let part = frame.windows(3).position(|w| w == [2, 2, 4]).unwrap();
    frame[part + 1] = 4;
    let e = decode::<ChunkedMessage>(&Bytes::from(frame)).unwrap_err();
    assert_eq!(
        (e.kind(), e.path()),
        (DecodeErrorKind::InvalidValue, "ChunkedMessage.part")
    );
    // A standalone ChunkedMessage without `_tag`; a chunk value with it
    // (ignored there: the variant tag stands for it).
    let mut w = crate::proto::v4::schema_binary::Writer::new();
    chunk.encode_fields(&mut w, false);
    let frame = crate::proto::v4::schema_binary::frame::write_frame(
        crate::proto::v4::schema_binary::Mode::Default,
        |out| out.bytes(&w.into_vec()),
    );
    assert_eq!(
        kind(frame, |b| decode::<ChunkedMessage>(b).map(drop)),
        DecodeErrorKind::MissingField
    );
    // An unknown error code.
    let error = EventLogProtocolError {
        message: "m".into(),
        store_id: Some("s".into()),
        request_tag: "t".into(),
        public_key: None,
        code: ErrorCode::NotFound,
    };
    let mut frame = error.encode_standalone();
    let at = frame.windows(8).position(|w| w == b"NotFound").unwrap();
    frame[at] = b'n';
    assert_eq!(
        kind(frame, |b| EventLogProtocolError::decode_standalone(b)
            .map(drop)),
        DecodeErrorKind::InvalidValue
    );
    // Standalone and union forms are not interchangeable.
    let standalone = Bytes::from(error.encode_standalone());
    assert_eq!(
        decode::<EventLogProtocolError>(&standalone)
            .unwrap_err()
            .kind(),
        DecodeErrorKind::UnknownVariant
    );
    assert_eq!(
        EventLogProtocolError::decode_standalone(&standalone).unwrap(),
        error
    );
    // Empty NonEmptyArrays.
    assert_eq!(
        decode::<Vec<ChangesValue>>(&hex("02 20 00"))
            .unwrap_err()
            .kind(),
        DecodeErrorKind::InvalidValue
    );
    assert_eq!(
        decode::<Vec<EncryptedRemoteBatch>>(&hex("02 20 00"))
            .unwrap_err()
            .kind(),
        DecodeErrorKind::InvalidValue
    );
    assert_eq!(decode::<Vec<WriteAck>>(&hex("02 20 00")).unwrap(), vec![]);
    // A chunk value of an unknown variant, or not a variant at all.
    assert_eq!(
        decode::<Vec<ChangesValue>>(&hex("08 20 01 05 0a 00 00 00 00"))
            .unwrap_err()
            .kind(),
        DecodeErrorKind::UnknownVariant
    );
    assert_eq!(
        decode::<Vec<ChangesValue>>(&hex("04 20 01 01 05"))
            .unwrap_err()
            .kind(),
        DecodeErrorKind::UnknownVariant
    );
    // Changes with startSequence as a sized field: the wrong wire kind for an
    // Int, so absent (as in Effect), so missing.
    let payload = ChangesPayload {
        store_id: "s".into(),
        start_sequence: 3,
        public_key: "p".into(),
    };
    let mut frame = encode(&payload);
    let tag = frame.iter().position(|&b| b == 0xb1).unwrap();
    frame[tag] = 0xb0; // varint → sized; the nv 06 now reads as a length 6
    assert!(decode::<ChangesPayload>(&Bytes::from(frame)).is_err());
}

#[test]
fn hello_optionals() {
    let base = HelloResponse {
        challenge: Bytes::from_static(&[7; 32]),
        compaction: false,
        remote_id: Bytes::from_static(&[9; 16]),
        first_sequence: None,
    };
    for (compaction, first_sequence) in [
        (false, None),
        (true, None),
        (false, Some(0)),
        (true, Some(1 << 52)),
    ] {
        let hello = HelloResponse {
            compaction,
            first_sequence,
            ..base.clone()
        };
        assert_eq!(
            decode::<HelloResponse>(&Bytes::from(encode(&hello))).unwrap(),
            hello
        );
    }
    // The notes' self-check frame: firstSequence 1 = `04 02`.
    let frame = encode(&Exit::<_, core::convert::Infallible>::Success(
        HelloResponse {
            first_sequence: Some(1),
            ..base.clone()
        },
    ));
    assert!(frame.ends_with(&hex("e0bc96f95a 02 04 02")));
    // compaction: false is not the literal true.
    let mut frame = encode(&HelloResponse {
        compaction: true,
        ..base.clone()
    });
    let at = frame.windows(3).position(|w| w == [2, 1, 1]).unwrap();
    frame[at + 2] = 0;
    assert_eq!(
        decode::<HelloResponse>(&Bytes::from(frame))
            .unwrap_err()
            .kind(),
        DecodeErrorKind::InvalidValue
    );
    // A kind this optional does not have (a string) reads as absent.
    let mut frame = encode(&HelloResponse {
        compaction: true,
        ..base
    });
    frame[at + 1] = 5;
    let hello = decode::<HelloResponse>(&Bytes::from(frame)).unwrap();
    assert!(!hello.compaction);
}
