//! The v4 decode error: what went wrong, where in the value, and a detail a
//! log reader can act on without a hex dump, e.g.
//! `WriteEntries.batches[2].entryIds: unexpected end of region`.
//!
//! Every input a peer can send ends here or in a value: the decoders never
//! panic, never recurse on input-controlled depth, check counts against the
//! bytes that remain before allocating, and use checked arithmetic on every
//! length.

use core::fmt;

/// The class of a decoding failure; stable, so tests and metrics can match
/// on it without parsing the message text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// A value, varint or frame ended before its bytes did.
    Truncated,
    /// A region (frame, sized field, row, cell) had bytes left over after
    /// its value.
    TrailingBytes,
    /// A varint longer than its integer type, or with a redundant zero
    /// continuation group (Effect's writers never produce either).
    BadVarint,
    /// A frame length prefix of zero.
    EmptyFrame,
    /// A frame longer than the configured maximum frame size.
    FrameTooLarge,
    /// An envelope byte other than the one the schema is framed with
    /// (`0x20` default, `0x21` fingerprint).
    BadEnvelope,
    /// A fingerprinted frame whose 8-byte layout fingerprint is not the one
    /// of `RpcMessage.EncodedSchema` in effect 4.1.0: an incompatible peer.
    BadFingerprint,
    /// Regions nested deeper than [`MAX_DEPTH`](super::schema_binary::MAX_DEPTH).
    TooDeep,
    /// An element count larger than the bytes that could hold it.
    CountTooLarge,
    /// A required field was absent (or present with a wire kind its schema
    /// cannot have, which Effect also treats as absent).
    MissingField,
    /// The same field id twice in one struct or row.
    DuplicateField,
    /// A field id of 0 (the index-signature block, which no eventlog schema has).
    UnsupportedField,
    /// A union kind byte, variant tag, positional selector, cause reason tag
    /// or literal this schema does not have.
    UnknownVariant,
    /// A well-formed envelope of the other direction (e.g. an `Exit` sent to
    /// the server).
    UnexpectedMessage,
    /// A row-run shape reference or string back-reference to nothing.
    BadReference,
    /// A string that is not UTF-8, or a defect that is not JSON.
    InvalidText,
    /// A value outside its schema: a negative `Natural`, an integer beyond
    /// 2^53 - 1, a bool byte other than 0/1, a chunk part index ≥ its total,
    /// an empty `NonEmptyArray`, a non-integral number.
    InvalidValue,
}

impl DecodeErrorKind {
    /// A stable snake_case name (for logs, metrics and tests).
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Truncated => "truncated",
            DecodeErrorKind::TrailingBytes => "trailing_bytes",
            DecodeErrorKind::BadVarint => "bad_varint",
            DecodeErrorKind::EmptyFrame => "empty_frame",
            DecodeErrorKind::FrameTooLarge => "frame_too_large",
            DecodeErrorKind::BadEnvelope => "bad_envelope",
            DecodeErrorKind::BadFingerprint => "bad_fingerprint",
            DecodeErrorKind::TooDeep => "too_deep",
            DecodeErrorKind::CountTooLarge => "count_too_large",
            DecodeErrorKind::MissingField => "missing_field",
            DecodeErrorKind::DuplicateField => "duplicate_field",
            DecodeErrorKind::UnsupportedField => "unsupported_field",
            DecodeErrorKind::UnknownVariant => "unknown_variant",
            DecodeErrorKind::UnexpectedMessage => "unexpected_message",
            DecodeErrorKind::BadReference => "bad_reference",
            DecodeErrorKind::InvalidText => "invalid_text",
            DecodeErrorKind::InvalidValue => "invalid_value",
        }
    }

    /// True when the byte stream itself cannot be framed (as opposed to one
    /// well-framed value that does not fit its schema): after such an error
    /// nothing later on the connection can be trusted either.
    pub fn is_framing(self) -> bool {
        matches!(
            self,
            DecodeErrorKind::EmptyFrame
                | DecodeErrorKind::FrameTooLarge
                | DecodeErrorKind::BadEnvelope
                | DecodeErrorKind::BadFingerprint
        )
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a v4 frame (or value) could not be decoded. Displays as
/// `path: detail`, or just the detail outside any named field.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError(Box<Inner>);

/// Boxed so `Result<_, DecodeError>` stays one pointer wide on the hot paths,
/// where errors are rare.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Inner {
    kind: DecodeErrorKind,
    path: String,
    detail: String,
}

impl DecodeError {
    /// An error at the current position; callers add the path on the way out.
    #[cold]
    pub(crate) fn new(kind: DecodeErrorKind, detail: impl Into<String>) -> Self {
        DecodeError(Box::new(Inner {
            kind,
            path: String::new(),
            detail: detail.into(),
        }))
    }

    /// The class of the failure.
    pub fn kind(&self) -> DecodeErrorKind {
        self.0.kind
    }

    /// Where in the value it failed, e.g. `Exit.cause[0].error.code`; empty
    /// when not inside a named field.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// What was wrong, without the path.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// Prefixes the path with a field (or message) name.
    #[cold]
    pub(crate) fn in_field(mut self, name: &str) -> Self {
        let path = &mut self.0.path;
        if path.is_empty() {
            *path = name.to_owned();
        } else if path.starts_with('[') {
            path.insert_str(0, name);
        } else {
            path.insert(0, '.');
            path.insert_str(0, name);
        }
        self
    }

    /// Prefixes the path with an array index.
    #[cold]
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        let segment = format!("[{index}]");
        let path = &mut self.0.path;
        if !path.is_empty() && !path.starts_with('[') {
            path.insert(0, '.');
        }
        path.insert_str(0, &segment);
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.path.is_empty() {
            f.write_str(&self.0.detail)
        } else {
            write!(f, "{}: {}", self.0.path, self.0.detail)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Shorthand for the decoders.
pub(crate) type Result<T> = core::result::Result<T, DecodeError>;

/// Builds a [`DecodeError`] of a kind with a formatted detail.
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::proto::v4::error::DecodeError::new(
            $crate::proto::v4::error::DecodeErrorKind::$kind,
            format!($($arg)*),
        )
    };
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_composition() {
        let e = DecodeError::new(DecodeErrorKind::Truncated, "unexpected end")
            .in_field("entryIds")
            .in_index(2)
            .in_field("batches")
            .in_field("WriteEntries");
        assert_eq!(
            e.to_string(),
            "WriteEntries.batches[2].entryIds: unexpected end"
        );
        let e = DecodeError::new(DecodeErrorKind::InvalidValue, "x")
            .in_index(0)
            .in_field("cause");
        assert_eq!(e.path(), "cause[0]");
        assert_eq!(e.kind().as_str(), "invalid_value");
    }
}
