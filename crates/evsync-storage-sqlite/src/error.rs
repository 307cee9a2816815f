//! SQLite's errors as the storage trait's, named by what was being done.

use evsync_core::storage::StorageError;

/// Maps a rusqlite error to a [`StorageError`] saying `context` (what the
/// call was doing), for `map_err`.
pub(crate) fn sqlite_error(context: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |e| StorageError::new(format!("sqlite: {context}: {e}"))
}
