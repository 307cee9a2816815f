//! The subset of Effect's SchemaBinary (`effect/encoding/SchemaBinary`,
//! effect 4.1.0) that the eventlog RPC protocol uses.
//!
//! | file | job |
//! |---|---|
//! | `varint.rs` | `uv` (unsigned LEB128) and `nv` (sign-magnitude) varints |
//! | `fnv.rs` | FNV-1a field ids and variant tags, as `const fn` |
//! | `reader.rs` | bounded regions; the default-mode struct field loop |
//! | `writer.rs` | output with back-filled length prefixes |
//! | `rows.rs` | row runs (arrays of structs) |
//! | `exit.rs` | `Exit`/`Cause` |
//! | `frame.rs` | frames, envelopes, the streaming frame splitter |
//! | `text.rs` | [`Text`], zero-copy UTF-8 |
//!
//! Only what Effect writes for the eventlog schemas is decoded: no index
//! signatures, no connection dictionary (RPC does not turn it on), no
//! bigint/date/duration leaves. Each file states the wire rules it
//! implements; the protocol notes (`PROTOCOL-V4.md` §1.2) give the context.

pub mod exit;
pub mod fnv;
pub mod frame;
pub mod reader;
pub mod rows;
pub mod text;
pub mod varint;
pub mod writer;

pub use exit::{Defect, Exit, Reason};
pub use frame::{
    DEFAULT_MAX_FRAME_SIZE, ENVELOPE_DEFAULT, ENVELOPE_FINGERPRINT, FrameSplitter, Mode,
    RPC_FINGERPRINT, decode_frame, encode_frame,
};
pub use reader::{MAX_DEPTH, Reader};
pub use text::Text;
pub use writer::Writer;

use crate::proto::v4::error::Result;

/// A value of a schema: decodes from the region it fills and encodes into
/// one. Frames ([`decode_frame`]/[`encode_frame`]) and nested holes are
/// built from these.
pub trait Value: Sized {
    /// The schema's name, the first segment of error paths.
    const NAME: &'static str;
    /// Decodes the value from `r`; the caller checks that `r` is used up.
    fn decode(r: &mut Reader<'_>) -> Result<Self>;
    /// Appends the value's encoding.
    fn encode(&self, w: &mut Writer);
}
