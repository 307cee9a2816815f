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
/// just the detail when the problem is not inside a known field (bad
/// MessagePack is reported with its byte offset instead).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    path: String,
    detail: String,
}

impl DecodeError {
    /// An error at the current position; callers add the path on the way out.
    pub(crate) fn new(kind: DecodeErrorKind, detail: impl Into<String>) -> Self {
        DecodeError {
            kind,
            path: String::new(),
            detail: detail.into(),
        }
    }

    /// The class of the failure.
    pub fn kind(&self) -> DecodeErrorKind {
        self.kind
    }

    /// Where in the message it failed, e.g. `Ack.sequenceNumbers[2]`; empty
    /// when not inside a known field.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What was wrong, without the path.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Prefixes the path with a field (or message) name.
    pub(crate) fn in_field(mut self, name: &str) -> Self {
        if self.path.is_empty() {
            self.path = name.to_owned();
        } else if self.path.starts_with('[') {
            self.path.insert_str(0, name);
        } else {
            self.path.insert(0, '.');
            self.path.insert_str(0, name);
        }
        self
    }

    /// Prefixes the path with an array index.
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        let segment = format!("[{index}]");
        if !self.path.is_empty() && !self.path.starts_with('[') {
            self.path.insert(0, '.');
        }
        self.path.insert_str(0, &segment);
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.detail)
        } else {
            write!(f, "{}: {}", self.path, self.detail)
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
        let err = DecodeError::new(DecodeErrorKind::Truncated, "end");
        assert_eq!(err.to_string(), "end");
    }
}
