//! Frames: `uv(len)` + envelope byte [+ 8-byte fingerprint] + value, and
//! the streaming splitter that finds them in a byte stream.
//!
//! `len` counts everything after itself and is never 0. The envelope byte
//! is `0x20` (default mode: payloads and every nested "hole" frame) or
//! `0x21` (fingerprint/positional mode: only the RPC envelope), and a
//! fingerprinted frame carries the 8-byte layout fingerprint of
//! `RpcMessage.EncodedSchema`. Effect's parsers are streaming on both ends,
//! so one WebSocket message may hold several frames and one frame may span
//! messages: [`FrameSplitter`] handles both.

use bytes::{Bytes, BytesMut};

use super::Value;
use super::reader::Reader;
use super::varint::{MAX_UV_LEN, read_uv, write_uv};
use super::writer::Writer;
use crate::proto::v4::error::{DecodeError, DecodeErrorKind, Result, err};

/// The envelope byte of default-mode frames (version nibble 2, no flags).
pub const ENVELOPE_DEFAULT: u8 = 0x20;
/// The envelope byte of fingerprinted frames (flag bit 0).
pub const ENVELOPE_FINGERPRINT: u8 = 0x21;
/// The layout fingerprint of `RpcMessage.EncodedSchema` in effect 4.1.0.
/// Any change to that schema changes it, so a frame with another one comes
/// from an incompatible Effect version.
pub const RPC_FINGERPRINT: [u8; 8] = [0xa7, 0x1f, 0xbf, 0x48, 0x86, 0x12, 0xff, 0x6b];
/// Effect's default `maxFrameSize` for RPC over SchemaBinary (16 MiB): a
/// larger frame fails the client's whole connection.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// How many elements a decoder allocates for before reading them (counts
/// are checked against the bytes left, but an element of one byte can
/// decode to a value of dozens).
pub(crate) const PREALLOCATE: usize = 256;

/// Which framing a value uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Field-tagged structs, kind-byte unions (`0x20`).
    Default,
    /// Positional structs with presence bitmaps, position-selected unions,
    /// checked against [`RPC_FINGERPRINT`] (`0x21`).
    Fingerprint,
}

/// Decodes a whole frame (length prefix included) holding one `T`.
pub fn decode_frame<T: Value>(frame: &Bytes, mode: Mode) -> Result<T> {
    let mut r = open_frame(frame, mode)?;
    let value = T::decode(&mut r).map_err(|e| e.in_field(T::NAME))?;
    r.finish().map_err(|e| e.in_field(T::NAME))?;
    Ok(value)
}

/// Encodes `value` as a whole frame.
pub fn encode_frame<T: Value>(value: &T, mode: Mode) -> Vec<u8> {
    write_frame(mode, |w| value.encode(w))
}

/// Checks a frame's length prefix, envelope byte and (fingerprint mode)
/// fingerprint, and returns a reader over its value.
pub fn open_frame(frame: &Bytes, mode: Mode) -> Result<Reader<'_>> {
    let mut r = Reader::new(frame);
    let len = r.len_uv()?;
    if len == 0 {
        return Err(err!(EmptyFrame, "a frame length of 0"));
    }
    let mut body = r.region(len)?;
    r.finish()?;
    let envelope = body.byte()?;
    let expected = match mode {
        Mode::Default => ENVELOPE_DEFAULT,
        Mode::Fingerprint => ENVELOPE_FINGERPRINT,
    };
    if envelope != expected {
        return Err(err!(
            BadEnvelope,
            "envelope byte {envelope:#04x}, expected {expected:#04x}"
        ));
    }
    if mode == Mode::Fingerprint {
        let fingerprint = body.take_slice(RPC_FINGERPRINT.len())?;
        if fingerprint != RPC_FINGERPRINT {
            return Err(err!(
                BadFingerprint,
                "layout fingerprint {}, expected {} (effect 4.1.0's RpcMessage): another Effect version?",
                hex(fingerprint),
                hex(&RPC_FINGERPRINT)
            ));
        }
    }
    Ok(body)
}

/// Writes a frame whose value `f` writes.
pub fn write_frame(mode: Mode, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    w.sized(|w| {
        match mode {
            Mode::Default => w.byte(ENVELOPE_DEFAULT),
            Mode::Fingerprint => {
                w.byte(ENVELOPE_FINGERPRINT);
                w.bytes(&RPC_FINGERPRINT);
            }
        }
        f(w);
    });
    w.into_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Splits a byte stream (WebSocket messages, in order) into whole frames.
///
/// Frames that arrive whole are handed out as zero-copy slices of the
/// message; only a frame split across messages is copied, into a buffer
/// that grows as its parts arrive. A frame's declared length is checked
/// against the maximum as soon as its prefix is complete, before its bytes
/// are buffered. After an error the splitter is spent: the stream has lost
/// its framing, and every later call fails the same way.
#[derive(Debug)]
pub struct FrameSplitter {
    max_frame_size: usize,
    /// The unread rest of the latest message, while nothing is buffered.
    direct: Bytes,
    /// A partial frame (and whatever followed it) spanning messages.
    buffered: BytesMut,
    failed: Option<DecodeError>,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        FrameSplitter::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl FrameSplitter {
    /// A splitter refusing frames longer than `max_frame_size` (the length
    /// after the prefix, as Effect counts it).
    pub fn new(max_frame_size: usize) -> Self {
        FrameSplitter {
            max_frame_size,
            direct: Bytes::new(),
            buffered: BytesMut::new(),
            failed: None,
        }
    }

    /// Adds the next message's bytes.
    pub fn push(&mut self, data: Bytes) {
        if self.failed.is_some() || data.is_empty() {
            return;
        }
        if self.direct.is_empty() && self.buffered.is_empty() {
            self.direct = data;
            return;
        }
        if !self.direct.is_empty() {
            let direct = core::mem::take(&mut self.direct);
            self.buffered.extend_from_slice(&direct);
        }
        self.buffered.extend_from_slice(&data);
    }

    /// The next whole frame (length prefix included), `None` until more
    /// bytes arrive, or the error that ended the stream.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let pending: &[u8] = if self.direct.is_empty() {
            &self.buffered
        } else {
            &self.direct
        };
        let (prefix, len) = match self.frame_extent(pending) {
            Ok(Some(extent)) => extent,
            Ok(None) => {
                // Incomplete: keep what there is (copying a direct tail).
                if !self.direct.is_empty() {
                    let direct = core::mem::take(&mut self.direct);
                    self.buffered.extend_from_slice(&direct);
                }
                return Ok(None);
            }
            Err(e) => {
                self.failed = Some(e.clone());
                self.direct = Bytes::new();
                self.buffered = BytesMut::new();
                return Err(e);
            }
        };
        let total = prefix + len;
        let frame = if self.direct.is_empty() {
            let frame = self.buffered.split_to(total).freeze();
            if self.buffered.is_empty() {
                // Release a large partial-frame buffer once it is used up.
                self.buffered = BytesMut::new();
            }
            frame
        } else {
            self.direct.split_to(total)
        };
        Ok(Some(frame))
    }

    /// The prefix length and frame length of the frame at the start of
    /// `pending`, once all of it is there.
    fn frame_extent(&self, pending: &[u8]) -> Result<Option<(usize, usize)>> {
        if pending.is_empty() {
            return Ok(None);
        }
        let (len, prefix) = match read_uv(pending) {
            Ok(v) => v,
            Err(e) if e.kind() == DecodeErrorKind::Truncated && pending.len() < MAX_UV_LEN => {
                return Ok(None);
            }
            Err(e) => return Err(e.in_field("frame length")),
        };
        if len == 0 {
            return Err(err!(EmptyFrame, "a frame length of 0"));
        }
        if len > self.max_frame_size as u64 {
            return Err(err!(
                FrameTooLarge,
                "a frame of {len} bytes (at most {})",
                self.max_frame_size
            ));
        }
        let len = len as usize;
        if pending.len() - prefix < len {
            return Ok(None);
        }
        Ok(Some((prefix, len)))
    }

    /// Bytes held for a frame not yet complete.
    pub fn buffered_len(&self) -> usize {
        self.direct.len() + self.buffered.len()
    }

    /// Fails if the stream ended inside a frame (or had failed).
    pub fn finish(&self) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.buffered_len() > 0 {
            return Err(err!(
                Truncated,
                "the stream ended inside a frame ({} bytes buffered)",
                self.buffered_len()
            ));
        }
        Ok(())
    }
}

/// Appends a frame's length prefix and body (for callers that build the
/// body themselves).
pub fn frame_with_prefix(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + MAX_UV_LEN);
    write_uv(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &[u8] = &[
        0x0a, 0x21, 0xa7, 0x1f, 0xbf, 0x48, 0x86, 0x12, 0xff, 0x6b, 0x03,
    ];
    const ACK2: &[u8] = &[
        0x0d, 0x21, 0xa7, 0x1f, 0xbf, 0x48, 0x86, 0x12, 0xff, 0x6b, 0x00, 0x02, 0x00, 0x04,
    ];

    fn drain(s: &mut FrameSplitter) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(f) = s.next_frame().unwrap() {
            out.push(f);
        }
        out
    }

    #[test]
    fn several_frames_in_one_message() {
        let mut s = FrameSplitter::default();
        s.push(Bytes::from([PING, ACK2, PING].concat()));
        assert_eq!(drain(&mut s), [PING, ACK2, PING]);
        s.finish().unwrap();
    }

    #[test]
    fn a_frame_across_messages_byte_by_byte() {
        let mut s = FrameSplitter::default();
        let stream = [PING, ACK2].concat();
        let mut frames = Vec::new();
        for b in stream {
            s.push(Bytes::copy_from_slice(&[b]));
            frames.extend(drain(&mut s));
        }
        assert_eq!(frames, [PING, ACK2]);
        s.finish().unwrap();
        // A partial frame at the end.
        s.push(Bytes::from_static(&PING[..4]));
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.buffered_len(), 4);
        assert_eq!(s.finish().unwrap_err().kind(), DecodeErrorKind::Truncated);
        s.push(Bytes::from_static(&PING[4..]));
        assert_eq!(drain(&mut s), [PING]);
    }

    #[test]
    fn a_message_ending_mid_frame_then_more_frames() {
        let mut s = FrameSplitter::default();
        s.push(Bytes::from([PING, &ACK2[..5]].concat()));
        assert_eq!(drain(&mut s), [PING]);
        s.push(Bytes::from([&ACK2[5..], PING].concat()));
        assert_eq!(drain(&mut s), [ACK2, PING]);
    }

    #[test]
    fn bad_streams_fail_and_stay_failed() {
        let mut s = FrameSplitter::default();
        s.push(Bytes::from_static(&[0x00, 0x01]));
        assert_eq!(
            s.next_frame().unwrap_err().kind(),
            DecodeErrorKind::EmptyFrame
        );
        assert_eq!(
            s.next_frame().unwrap_err().kind(),
            DecodeErrorKind::EmptyFrame
        );
        s.push(Bytes::from_static(PING));
        assert!(s.next_frame().is_err());

        // Too large: refused from the prefix alone.
        let mut s = FrameSplitter::new(10);
        s.push(Bytes::from_static(&[0x0b]));
        assert_eq!(
            s.next_frame().unwrap_err().kind(),
            DecodeErrorKind::FrameTooLarge
        );
        let mut s = FrameSplitter::new(11);
        s.push(Bytes::from_static(PING));
        assert_eq!(drain(&mut s), [PING]);

        // An endless length prefix.
        let mut s = FrameSplitter::default();
        s.push(Bytes::from_static(&[0xff; 9]));
        assert!(s.next_frame().unwrap().is_none());
        s.push(Bytes::from_static(&[0xff]));
        assert_eq!(
            s.next_frame().unwrap_err().kind(),
            DecodeErrorKind::BadVarint
        );
    }

    #[test]
    fn open_checks_envelope_and_fingerprint() {
        let ping = Bytes::from_static(PING);
        let mut r = open_frame(&ping, Mode::Fingerprint).unwrap();
        assert_eq!(r.byte().unwrap(), 3);
        assert_eq!(
            open_frame(&ping, Mode::Default).unwrap_err().kind(),
            DecodeErrorKind::BadEnvelope
        );
        let mut other = PING.to_vec();
        other[9] ^= 1;
        assert_eq!(
            open_frame(&Bytes::from(other), Mode::Fingerprint)
                .unwrap_err()
                .kind(),
            DecodeErrorKind::BadFingerprint
        );
        // Length prefix disagreeing with the bytes.
        assert_eq!(
            open_frame(&Bytes::from_static(&[0x02, 0x20]), Mode::Default)
                .unwrap_err()
                .kind(),
            DecodeErrorKind::Truncated
        );
        assert_eq!(
            open_frame(&Bytes::from_static(&[0x01, 0x20, 0x00]), Mode::Default)
                .unwrap_err()
                .kind(),
            DecodeErrorKind::TrailingBytes
        );
        assert_eq!(
            open_frame(&Bytes::from_static(&[0x00]), Mode::Default)
                .unwrap_err()
                .kind(),
            DecodeErrorKind::EmptyFrame
        );
        assert_eq!(write_frame(Mode::Default, |_| {}), [0x01, 0x20]);
        assert_eq!(frame_with_prefix(&[0x20]), [0x01, 0x20]);
    }
}
