//! Arbitrary bytes against every decoding entry point of the Effect v4
//! codec (`evsync_core::proto::v4`):
//!
//! * the frame splitter, fed the bytes whole and in fuzzer-chosen pieces
//!   with a small maximum frame size: both runs find the same frames (each a
//!   prefix-consistent slice of the input) and end the same way;
//! * the envelope decoders of both directions and the default-mode decoder
//!   of every eventlog schema, on the bytes as a frame and on the bytes as a
//!   frame body (a length prefix added, so the fuzzer reaches the typed
//!   paths without learning lengths).
//!
//! Nothing may panic, and whatever decodes must re-encode to a frame that
//! decodes to the same value and re-encodes to the same bytes.
#![no_main]

use std::fmt::Debug;

use bytes::Bytes;
use evsync_core::proto::v4::schema_binary::frame::frame_with_prefix;
use evsync_core::proto::v4::*;
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Value + PartialEq + Debug>(frame: &Bytes) {
    let Ok(value) = decode::<T>(frame) else { return };
    let encoded = encode(&value);
    let again = decode::<T>(&Bytes::from(encoded.clone()))
        .unwrap_or_else(|e| panic!("re-encoded {} {value:?} does not decode: {e}", T::NAME));
    assert_eq!(again, value, "{}", T::NAME);
    assert_eq!(encode(&again), encoded, "{}: not a fixpoint", T::NAME);
}

fn envelopes(frame: &Bytes) {
    if let Ok(msg) = FromClient::decode(frame) {
        let encoded = msg.encode();
        let again = FromClient::decode(&Bytes::from(encoded.clone()))
            .unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
        assert_eq!(again, msg);
        assert_eq!(again.encode(), encoded);
    }
    if let Ok(msg) = FromServer::decode(frame) {
        let encoded = msg.encode();
        let again = FromServer::decode(&Bytes::from(encoded.clone()))
            .unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
        assert_eq!(again, msg);
        assert_eq!(again.encode(), encoded);
    }
    if let Ok(error) = EventLogProtocolError::decode_standalone(frame) {
        let encoded = error.encode_standalone();
        let again = EventLogProtocolError::decode_standalone(&Bytes::from(encoded.clone()))
            .unwrap_or_else(|e| panic!("re-encoded {error:?} does not decode: {e}"));
        assert_eq!(again, error);
        assert_eq!(again.encode_standalone(), encoded);
    }
}

fn values(frame: &Bytes) {
    round_trip::<()>(frame);
    round_trip::<HelloResponse>(frame);
    round_trip::<Authenticate>(frame);
    round_trip::<WriteSinglePayload>(frame);
    round_trip::<ChunkedMessage>(frame);
    round_trip::<ChangesPayload>(frame);
    round_trip::<Vec<ChangesValue>>(frame);
    round_trip::<WriteEntries>(frame);
    round_trip::<WriteEntriesUnencrypted>(frame);
    round_trip::<Vec<EncryptedRemoteBatch>>(frame);
    round_trip::<Vec<RemoteEntry>>(frame);
    round_trip::<Vec<WriteAck>>(frame);
    round_trip::<HelloExit>(frame);
    round_trip::<AuthenticateExit>(frame);
    round_trip::<WriteExit>(frame);
    round_trip::<ChangesExit>(frame);
    round_trip::<EventLogProtocolError>(frame);
    round_trip::<Defect>(frame);
}

/// Runs a splitter over `pieces`; returns its frames and how it ended.
fn split<'a>(
    max: usize,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> (Vec<Bytes>, Result<usize, DecodeErrorKind>) {
    let mut s = FrameSplitter::new(max);
    let mut frames = Vec::new();
    for piece in pieces {
        s.push(Bytes::copy_from_slice(piece));
        loop {
            match s.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    // Spent: it stays failed.
                    assert_eq!(s.next_frame().unwrap_err().kind(), e.kind());
                    return (frames, Err(e.kind()));
                }
            }
        }
    }
    let end = s.buffered_len();
    assert_eq!(s.finish().is_ok(), end == 0);
    (frames, Ok(end))
}

fn splitter(data: &[u8]) {
    let Some((&knobs, data)) = data.split_first() else { return };
    let max = 1 + usize::from(knobs & 0x0f) * 37;
    let whole = split(max, std::iter::once(data));
    // Piece sizes from the input's own bytes (1..=16).
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut i = usize::from(knobs >> 4);
    while !rest.is_empty() {
        let n = (1 + usize::from(data[i % data.len()] & 0x0f)).min(rest.len());
        pieces.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    let pieced = split(max, pieces.into_iter());
    assert_eq!(whole, pieced, "whole vs pieces");
    // The frames are consecutive slices of the input, each within the limit.
    let mut at = 0;
    for frame in &whole.0 {
        assert_eq!(&data[at..at + frame.len()], &frame[..]);
        at += frame.len();
        assert!(frame.len() <= max + 10);
    }
    if let Ok(buffered) = whole.1 {
        assert_eq!(at + buffered, data.len());
    }
}

fuzz_target!(|data: &[u8]| {
    splitter(data);
    let raw = Bytes::copy_from_slice(data);
    let framed = Bytes::from(frame_with_prefix(data));
    for frame in [&raw, &framed] {
        envelopes(frame);
        values(frame);
    }
});
