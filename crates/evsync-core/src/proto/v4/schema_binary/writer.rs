//! Writing SchemaBinary: a growable buffer with sized regions whose length
//! prefix is filled in after their content.
//!
//! A region's length is unknown until its value is written, so
//! [`Writer::sized`] reserves one prefix byte and, when the value turns out
//! to be 128 bytes or longer, shifts it right to make room for the longer
//! varint (as Effect's writer does). Fields whose length is known up front
//! (byte strings, strings) write their prefix directly.

use super::reader::Wire;
use super::varint::{put_uv, uv_len, write_nv, write_uv};

/// An output buffer.
#[derive(Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// The bytes written.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing is written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte.
    pub fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Raw bytes (a region's tail: bytes and strings carry no length of
    /// their own).
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A `uv`.
    pub fn uv(&mut self, n: u64) {
        write_uv(&mut self.buf, n);
    }

    /// An `nv`.
    pub fn nv(&mut self, n: i64) {
        write_nv(&mut self.buf, n);
    }

    /// A u32, little-endian.
    pub fn u32le(&mut self, n: u32) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// An f64, little-endian.
    pub fn f64le(&mut self, n: f64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// `uv(len)` + `b`.
    pub fn sized_bytes(&mut self, b: &[u8]) {
        self.uv(b.len() as u64);
        self.bytes(b);
    }

    /// A region written by `f`, prefixed with `uv(its length)`.
    pub fn sized(&mut self, f: impl FnOnce(&mut Writer)) {
        self.prefixed(1, f);
    }

    /// A row-run cell written by `f`: prefixed with `uv(2·length)` (an even
    /// code is a literal; odd codes are back-references).
    pub fn cell(&mut self, f: impl FnOnce(&mut Writer)) {
        self.prefixed(2, f);
    }

    fn prefixed(&mut self, factor: u64, f: impl FnOnce(&mut Writer)) {
        let mark = self.buf.len();
        self.buf.push(0);
        f(self);
        let len = (self.buf.len() - mark - 1) as u64;
        let code = len * factor;
        let size = uv_len(code);
        if size > 1 {
            let end = self.buf.len();
            self.buf.resize(end + size - 1, 0);
            self.buf.copy_within(mark + 1..end, mark + size);
        }
        // In place: this runs for every struct, array and row cell, so it
        // allocates nothing.
        put_uv(&mut self.buf[mark..mark + size], code);
    }

    /// A default-mode field tag `uv(id·8 + wire)`.
    pub fn tag(&mut self, id: u32, wire: Wire) {
        self.uv(u64::from(id) * 8 + wire as u64);
    }

    /// A sized field whose value `f` writes.
    pub fn field(&mut self, id: u32, f: impl FnOnce(&mut Writer)) {
        self.tag(id, Wire::Sized);
        self.sized(f);
    }

    /// A bytes field.
    pub fn field_bytes(&mut self, id: u32, b: &[u8]) {
        self.tag(id, Wire::Sized);
        self.sized_bytes(b);
    }

    /// A string field.
    pub fn field_str(&mut self, id: u32, s: &str) {
        self.field_bytes(id, s.as_bytes());
    }

    /// An `Int`/`Natural` field (varint wire kind).
    pub fn field_int(&mut self, id: u32, n: i64) {
        self.tag(id, Wire::Varint);
        self.nv(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::schema_binary::reader::Reader;
    use bytes::Bytes;

    #[test]
    fn sized_regions_grow_their_prefix() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut w = Writer::new();
            w.byte(0xaa);
            w.sized(|w| w.bytes(&vec![7; len]));
            w.byte(0xbb);
            let buf = Bytes::from(w.into_vec());
            let mut r = Reader::new(&buf);
            assert_eq!(r.byte().unwrap(), 0xaa);
            let inner = r.sized().unwrap();
            assert_eq!(inner.remaining(), len);
            assert!(inner.peek_rest().iter().all(|&b| b == 7));
            assert_eq!(r.byte().unwrap(), 0xbb);
            r.finish().unwrap();
        }
    }

    #[test]
    fn cells_prefix_twice_the_length() {
        let mut w = Writer::new();
        w.cell(|w| w.bytes(&[1, 2]));
        assert_eq!(w.into_vec(), [4, 1, 2]);
        let mut w = Writer::new();
        w.cell(|w| w.bytes(&[0; 64]));
        let v = w.into_vec();
        assert_eq!(&v[..2], &[0x80, 0x01]);
        assert_eq!(v.len(), 66);
    }

    #[test]
    fn field_tags() {
        let mut w = Writer::new();
        w.field_int(
            crate::proto::v4::schema_binary::fnv::field_id("sequence"),
            1,
        );
        // sequence = 1011085160; 1011085160·8 + 1 (varint) = 8088681281.
        assert_eq!(w.into_vec(), [0xc1, 0xf6, 0xfd, 0x90, 0x1e, 0x02]);
    }
}
