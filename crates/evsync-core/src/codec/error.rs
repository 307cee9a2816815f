//! The decode error: what kind of problem, where in the message, and a
//! human-readable detail.
//!
//! Peers are untrusted, so a bad frame must produce an error that a log
//! reader (or a close reason) can act on without a hex dump, e.g.
//! `WriteEntries.encryptedEntries[3].entryId: expected bin, found str`.

use core::fmt;

/// The class of a decoding failure; stable, so tests and metrics can match
/// on it without parsing the message text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The frame ended inside a value (or was empty).
    Truncated,
    /// The reserved MessagePack byte `0xc1` appeared where a value starts.
    ReservedByte,
    /// Bytes followed the single message the frame must hold.
    TrailingBytes,
    /// Containers nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    TooDeep,
    /// A value had another MessagePack type than its field requires.
    WrongType,
    /// A required field was absent.
    MissingField,
    /// The message map had no `_tag` key.
    MissingTag,
    /// `_tag` named no message of this direction.
    UnknownTag,
    /// A string was not valid UTF-8.
    InvalidUtf8,
    /// A number where an integer is required was not integral (or NaN/inf).
    NotAnInteger,
    /// An integer outside its field's range (e.g. negative for a sequence).
    OutOfRange,
    /// A binary or tuple of the wrong length (`remoteId`, `part`).
    WrongLength,
}

impl DecodeErrorKind {
    /// A stable snake_case name, used by the golden fixtures.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorKind::Truncated => "truncated",
            DecodeErrorKind::ReservedByte => "reserved_byte",
            DecodeErrorKind::TrailingBytes => "trailing_bytes",
            DecodeErrorKind::TooDeep => "too_deep",
            DecodeErrorKind::WrongType => "wrong_type",
            DecodeErrorKind::MissingField => "missing_field",
            DecodeErrorKind::MissingTag => "missing_tag",
            DecodeErrorKind::UnknownTag => "unknown_tag",
            DecodeErrorKind::InvalidUtf8 => "invalid_utf8",
            DecodeErrorKind::NotAnInteger => "not_an_integer",
            DecodeErrorKind::OutOfRange => "out_of_range",
            DecodeErrorKind::WrongLength => "wrong_length",
        }
    }
}

impl DecodeErrorKind {
    /// True when the frame is not even one well-formed MessagePack value
    /// (as opposed to a well-formed value that is not a valid message).
    pub fn is_structural(self) -> bool {
        matches!(
            self,
            DecodeErrorKind::Truncated
                | DecodeErrorKind::ReservedByte
                | DecodeErrorKind::TrailingBytes
                | DecodeErrorKind::TooDeep
        )
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a frame could not be decoded. Decoding never panics; every bad input
/// ends here.
///
/// Displays as `path: detail`, e.g.
/// `WriteEntries.encryptedEntries[3].entryId: expected bin, found str`, or
/// just the detail when the problem is not inside a known field. Bad
/// MessagePack ([`DecodeErrorKind::is_structural`]) has no path; its detail
/// gives the byte offset instead.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError(Box<Inner>);

/// Boxed so that `Result<_, DecodeError>` stays one pointer wide on the
/// decoder's hot paths, where errors are rare.
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

    /// Where in the message it failed, e.g. `Ack.sequenceNumbers[2]`; empty
    /// when not inside a known field.
    pub fn path(&self) -> &str {
        &self.0.path
    }

    /// What was wrong, without the path.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// Prefixes the path with a field (or message) name. Structural errors
    /// keep an empty path: they carry a byte offset instead, since bad
    /// MessagePack has no meaningful field structure.
    pub(crate) fn in_field(mut self, name: &str) -> Self {
        if self.0.kind.is_structural() {
            return self;
        }
        if self.0.path.is_empty() {
            self.0.path = name.to_owned();
        } else if self.0.path.starts_with('[') {
            self.0.path.insert_str(0, name);
        } else {
            self.0.path.insert(0, '.');
            self.0.path.insert_str(0, name);
        }
        self
    }

    /// Prefixes the path with an array index (not for structural errors).
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        if self.0.kind.is_structural() {
            return self;
        }
        let segment = format!("[{index}]");
        if !self.0.path.is_empty() && !self.0.path.starts_with('[') {
            self.0.path.insert(0, '.');
        }
        self.0.path.insert_str(0, &segment);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_composition() {
        let err = DecodeError::new(DecodeErrorKind::WrongType, "expected bin, found str")
            .in_field("entryId")
            .in_index(3)
            .in_field("encryptedEntries")
            .in_field("WriteEntries");
        assert_eq!(
            err.to_string(),
            "WriteEntries.encryptedEntries[3].entryId: expected bin, found str"
        );
        let err = DecodeError::new(DecodeErrorKind::OutOfRange, "x")
            .in_index(1)
            .in_field("part");
        assert_eq!(err.path(), "part[1]");
        let err = DecodeError::new(DecodeErrorKind::Truncated, "end at byte 9")
            .in_index(0)
            .in_field("entries");
        assert_eq!(err.to_string(), "end at byte 9");
    }
}
