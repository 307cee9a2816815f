//! The native server's tenant file (evsync-storage-sqlite): one SQLite file
//! per tenant, its version in the `user_version` header.

use super::{Migration, Schema};

/// Marks a SQLite file as an evsync tenant store (`PRAGMA application_id`),
/// so that tools such as `file(1)` and our own open can tell it apart from
/// other SQLite databases. ASCII "evsy".
pub const APPLICATION_ID: i32 = 0x6576_7379;

/// Every log of a tenant in ONE set of tables.
///
/// - `remote_id`: one row, the tenant's UUID v4 sent in `Hello`.
/// - `logs`: one row per publicKey. `public_key` is a BLOB holding the UTF-8
///   bytes, so any string (including NUL) compares byte for byte; `head` is
///   the highest sequence of the log, so an append needs no `MAX()` scan.
/// - `entries`: a rowid table whose rowid `key` packs the log and the
///   sequence, `log_id << 40 | sequence` (see [`SEQUENCE_BITS`]). Entries are
///   thus clustered by (log, sequence): a catch-up read is one forward range
///   scan of the table b-tree, and an append writes at the right edge of its
///   log's range. The unique index on `(log_id, entry_id)` is the dedup
///   check.
///
/// Measured against the obvious alternatives (200 B / 1 KB / 4 KB entries,
/// 10 logs, 100-entry transactions, release build; the measurement is
/// evsync-storage-sqlite's `layout` example): a `WITHOUT ROWID` table
/// clustered on `(log_id, sequence)` reads as fast for small entries but
/// writes slower and, for ~1 KB entries, makes the file 3.3x larger (its
/// b-tree cells overflow at ~1 KB on 4 KB pages); a rowid table with a
/// separate `(log_id, sequence)` index is 6x slower to read small entries
/// (one index probe per row). The packed key has neither cost.
///
/// A table per publicKey (Effect's SQL layout) would make thousands of
/// identities cost thousands of schema entries parsed at every open.
const V1: Migration = Migration {
    version: 1,
    statements: &[
        "CREATE TABLE remote_id (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            remote_id BLOB NOT NULL CHECK (length(remote_id) = 16)
        )",
        "CREATE TABLE logs (
            id INTEGER PRIMARY KEY,
            public_key BLOB NOT NULL UNIQUE,
            head INTEGER NOT NULL DEFAULT 0
        )",
        "CREATE TABLE entries (
            key INTEGER PRIMARY KEY,
            log_id INTEGER NOT NULL,
            entry_id BLOB NOT NULL,
            iv BLOB NOT NULL,
            encrypted_entry BLOB NOT NULL
        )",
        "CREATE UNIQUE INDEX entries_by_entry_id ON entries (log_id, entry_id)",
    ],
};

/// The tenant's settings, one row (none until one is set): its "tokens not
/// before" instant in ms since the Unix epoch, see
/// [`Storage::set_tokens_not_before`](crate::storage::Storage::set_tokens_not_before).
/// A table of its own rather than a column of `remote_id`, so that revoking
/// tokens never creates the remoteId and reading it never needs one.
const V2: Migration = Migration {
    version: 2,
    statements: &["CREATE TABLE tenant_settings (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            tokens_not_before_ms INTEGER NOT NULL CHECK (tokens_not_before_ms >= 0)
        )"],
};

/// Effect v4's batch stores ([`Storage::append_batches`]), beside and
/// apart from the v3 logs.
///
/// - `v4_stores`: one row per (publicKey, storeId), both BLOBs of UTF-8
///   bytes (any string, byte order), with `head`, the last sequence taken,
///   so an append needs no `MAX()` scan.
/// - `v4_batches`: a rowid table whose rowid `key` packs the store and the
///   batch's LAST sequence ([`batch_key`], the packing of `entries.key`).
///   A read ("every batch whose last sequence is >= from") is then one
///   forward range scan of the table b-tree, with no index to probe per
///   row, and an append writes at the right edge of its store's range. A
///   rowid table rather than `WITHOUT ROWID` for the reason v1 gives:
///   batches are large (up to ~256 KiB and beyond) and would overflow
///   b-tree cells. `sequence` is the batch's first; the ids are
///   concatenated, 16 bytes each, as Effect's SQL storage keeps them.
///   `encrypted_batch` is the last column, so reading the others never
///   walks its overflow pages.
/// - `v4_entry_ids`: where each id of a store was first stored, the dedup
///   check. `WITHOUT ROWID`: its rows are small and only ever found by
///   their key.
/// - `v4_signing_keys`: the session-auth binding publicKey → Ed25519
///   public key ([`Storage::bind_signing_key`]).
///
/// [`Storage::append_batches`]: crate::storage::Storage::append_batches
/// [`Storage::bind_signing_key`]: crate::storage::Storage::bind_signing_key
const V3: Migration = Migration {
    version: 3,
    statements: &[
        "CREATE TABLE v4_stores (
            id INTEGER PRIMARY KEY,
            public_key BLOB NOT NULL,
            store_id BLOB NOT NULL,
            head INTEGER NOT NULL DEFAULT 0,
            UNIQUE (public_key, store_id)
        )",
        "CREATE TABLE v4_batches (
            key INTEGER PRIMARY KEY,
            sequence INTEGER NOT NULL,
            iv BLOB NOT NULL,
            entry_ids BLOB NOT NULL,
            encrypted_batch BLOB NOT NULL
        )",
        "CREATE TABLE v4_entry_ids (
            store INTEGER NOT NULL,
            entry_id BLOB NOT NULL,
            sequence INTEGER NOT NULL,
            PRIMARY KEY (store, entry_id)
        ) WITHOUT ROWID",
        "CREATE TABLE v4_signing_keys (
            public_key BLOB PRIMARY KEY,
            signing_key BLOB NOT NULL CHECK (length(signing_key) = 32)
        ) WITHOUT ROWID",
    ],
};

/// The tenant file's schema.
pub const SCHEMA: Schema = Schema {
    name: "the tenant file",
    steps: &[V1, V2, V3],
};

/// The `v4_batches.key` of the batch of store `store` that ends at
/// `last_sequence`: the packing of [`entry_key`], so the same bounds hold
/// (`1..=MAX_LOG_ID` stores, sequences up to [`MAX_SEQUENCE`]).
pub fn batch_key(store: i64, last_sequence: i64) -> i64 {
    entry_key(store, last_sequence)
}

/// Stores the remoteId unless one is stored (`?1`: 16 bytes).
pub const INSERT_REMOTE_ID: &str = "INSERT OR IGNORE INTO remote_id (id, remote_id) VALUES (1, ?1)";

/// The stored remoteId, if any.
pub const SELECT_REMOTE_ID: &str = "SELECT remote_id FROM remote_id WHERE id = 1";

/// Raises the "tokens not before" instant to `?1` (ms), creating the row if
/// needed and never lowering it: two racing revocations keep the later.
pub const RAISE_TOKENS_NOT_BEFORE: &str =
    "INSERT INTO tenant_settings (id, tokens_not_before_ms) VALUES (1, ?1)
    ON CONFLICT (id) DO UPDATE SET tokens_not_before_ms = excluded.tokens_not_before_ms
    WHERE excluded.tokens_not_before_ms > tenant_settings.tokens_not_before_ms";

/// The stored "tokens not before" instant (ms), if any.
pub const SELECT_TOKENS_NOT_BEFORE: &str =
    "SELECT tokens_not_before_ms FROM tenant_settings WHERE id = 1";

/// Every log with entries and its head, in publicKey byte order (the
/// `public_key` BLOBs compare with memcmp).
pub const SELECT_LOG_HEADS: &str =
    "SELECT public_key, head FROM logs WHERE head > 0 ORDER BY public_key";

/// What the tenant file holds
/// ([`Storage::stats`](crate::storage::Storage::stats)), as one row:
/// `logs` (with entries), `entries`, `bytes` (iv + entryId + ciphertext
/// lengths). Scans `entries`, reading each row's lengths, not its blobs.
pub const SELECT_STATS: &str = "SELECT
        (SELECT count(*) FROM logs WHERE head > 0) AS logs,
        count(*) AS entries,
        coalesce(sum(length(iv) + length(entry_id) + length(encrypted_entry)), 0) AS bytes
    FROM entries";

/// Bits of `entries.key` that hold the sequence: a log holds up to 2^40 - 1
/// (about 10^12) entries, and a tenant up to 2^23 - 1 (about 8 million)
/// logs, within SQLite's positive 64-bit rowids.
pub const SEQUENCE_BITS: u32 = 40;

/// The largest sequence a log can hold.
pub const MAX_SEQUENCE: i64 = (1 << SEQUENCE_BITS) - 1;

/// The largest log id a tenant can hold. A log beyond it must be refused
/// (its keys would wrap into the sign bit and other logs' ranges), which
/// [`entry_key`] leaves to the caller: it runs once per stored entry.
pub const MAX_LOG_ID: i64 = (1 << (63 - SEQUENCE_BITS)) - 1;

/// The `entries.key` of `sequence` in log `log_id`. Both must be in range
/// (`1..=MAX_LOG_ID`, `0..=MAX_SEQUENCE`).
pub fn entry_key(log_id: i64, sequence: i64) -> i64 {
    debug_assert!((0..=MAX_LOG_ID).contains(&log_id), "log id {log_id}");
    debug_assert!(
        (0..=MAX_SEQUENCE).contains(&sequence),
        "sequence {sequence}"
    );
    (log_id << SEQUENCE_BITS) | sequence
}

/// The sequence part of an `entries.key`.
pub fn key_sequence(key: i64) -> i64 {
    key & MAX_SEQUENCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_pack_log_and_sequence_in_order() {
        assert_eq!(key_sequence(entry_key(3, 17)), 17);
        assert!(
            entry_key(1, MAX_SEQUENCE) < entry_key(2, 1),
            "logs do not overlap"
        );
        assert!(
            entry_key(MAX_LOG_ID, MAX_SEQUENCE) > 0,
            "keys stay positive"
        );
        assert_eq!(entry_key(MAX_LOG_ID, MAX_SEQUENCE), i64::MAX);
    }
}
