//! [`Text`]: a UTF-8 string that shares the frame's bytes.
//!
//! Row runs let a string cell be a one-byte back-reference to an earlier
//! value of the same field (Effect interns `Entry.event` and
//! `Entry.primaryKey`). With owned `String`s each reference would copy the
//! string, so a frame of one long string and millions of references would
//! decode to gigabytes; a `Text` clone only bumps the frame's reference
//! count, and decoding stays proportional to the frame.

use core::fmt;
use core::ops::Deref;

use bytes::Bytes;

/// Immutable UTF-8 text backed by [`Bytes`] (often a slice of a frame).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Bytes);

impl Text {
    /// Checks that `bytes` are UTF-8 and wraps them without copying.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, core::str::Utf8Error> {
        core::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    /// A `Text` of a static string.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Bytes::from_static(s.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Checked at construction and never mutated, so this cannot fail;
        // re-checking (short strings: event names, keys) keeps the crate
        // free of `unsafe`.
        match core::str::from_utf8(&self.0) {
            Ok(s) => s,
            Err(_) => unreachable_utf8(),
        }
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

#[cold]
fn unreachable_utf8() -> &'static str {
    // Construction checks UTF-8 and the bytes never change; keep the
    // accessor total rather than panicking if that were ever violated.
    ""
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Bytes::from(s.into_bytes()))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_checked_utf8() {
        assert!(Text::from_utf8(Bytes::from_static(b"\xff")).is_err());
        let t = Text::from_utf8(Bytes::from_static("héllo".as_bytes())).unwrap();
        assert_eq!(t, "héllo");
        assert_eq!(t.len(), 6);
        assert_eq!(Text::from("a"), Text::from(String::from("a")));
        assert_eq!(format!("{t:?}"), "\"héllo\"");
    }
}
