//! A Durable Object's own SQLite (the Worker's default backend). One object
//! per tenant, so no tenant column; the version and the remoteId live in
//! `evsync_meta`, a key/value table created before anything else (it is
//! where the version is read from, so it cannot be a step itself), the
//! tenant's settings in `evsync_tenant_settings` (version 2).

use super::{Migration, Schema};

/// The meta table: `schema_version` (integer) and `remote_id` (16 bytes).
/// `IF NOT EXISTS`: it runs at every open, before the version is read.
pub const CREATE_META: &str =
    "CREATE TABLE IF NOT EXISTS evsync_meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)";

/// The recorded version (one row, or none in a new database).
pub const SELECT_VERSION: &str = "SELECT value FROM evsync_meta WHERE key = 'schema_version'";

/// Records the version (`?1`), inside the migration's transaction.
pub const RECORD_VERSION: &str =
    "INSERT OR REPLACE INTO evsync_meta (key, value) VALUES ('schema_version', ?1)";

/// Stores the remoteId unless one is stored (`?1`: 16 bytes).
pub const INSERT_REMOTE_ID: &str =
    "INSERT OR IGNORE INTO evsync_meta (key, value) VALUES ('remote_id', ?1)";

/// The stored remoteId, if any.
pub const SELECT_REMOTE_ID: &str = "SELECT value FROM evsync_meta WHERE key = 'remote_id'";

/// One row per entry, keyed by (publicKey, sequence); `(publicKey,
/// entryId)` is the dedup check. `IF NOT EXISTS` because objects created
/// before versions were recorded may hold the table already.
const V1: Migration = Migration {
    version: 1,
    statements: &["CREATE TABLE IF NOT EXISTS evsync_entries (
        public_key TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        iv BLOB NOT NULL,
        entry_id BLOB NOT NULL,
        encrypted_entry BLOB NOT NULL,
        PRIMARY KEY (public_key, sequence),
        UNIQUE (public_key, entry_id)
    )"],
};

/// The tenant's settings, one row (none until one is set): its "tokens not
/// before" instant in ms since the Unix epoch, see
/// [`Storage::set_tokens_not_before`](crate::storage::Storage::set_tokens_not_before).
/// A typed table rather than another `evsync_meta` key, whose values are
/// untyped blobs. `IF NOT EXISTS` like the other steps here.
const V2: Migration = Migration {
    version: 2,
    statements: &["CREATE TABLE IF NOT EXISTS evsync_tenant_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        tokens_not_before_ms INTEGER NOT NULL CHECK (tokens_not_before_ms >= 0)
    )"],
};

/// Effect v4's batch stores, per (publicKey, storeId), apart from the v3
/// entries, in the layout of v1 (keys as TEXT, no store table: the object
/// is its tenant's only writer, so a store's head is read as the largest
/// last sequence, one index probe):
///
/// - `evsync_v4_batches`: keyed by (publicKey, storeId, LAST sequence), so
///   a read of "every batch whose last sequence is >= from" is one range of
///   the primary key's index; `sequence` is the first; ids concatenated, 16
///   bytes each, as Effect's SQL storage keeps them.
/// - `evsync_v4_entry_ids`: where each id of a store was first stored (the
///   dedup check).
/// - `evsync_v4_signing_keys`: the session-auth binding publicKey → Ed25519
///   public key.
///
/// `IF NOT EXISTS` like the other steps here.
const V3: Migration = Migration {
    version: 3,
    statements: &[
        "CREATE TABLE IF NOT EXISTS evsync_v4_batches (
        public_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        last_sequence INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        iv BLOB NOT NULL,
        entry_ids BLOB NOT NULL,
        encrypted_batch BLOB NOT NULL,
        PRIMARY KEY (public_key, store_id, last_sequence)
    )",
        "CREATE TABLE IF NOT EXISTS evsync_v4_entry_ids (
        public_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        entry_id BLOB NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (public_key, store_id, entry_id)
    )",
        "CREATE TABLE IF NOT EXISTS evsync_v4_signing_keys (
        public_key TEXT PRIMARY KEY,
        signing_key BLOB NOT NULL CHECK (length(signing_key) = 32)
    )",
    ],
};

/// Durable Object SQLite's schema.
pub const SCHEMA: Schema = Schema {
    name: "Durable Object storage",
    steps: &[V1, V2, V3],
};

/// Raises the "tokens not before" instant to `?1` (ms), creating the row if
/// needed and never lowering it: two racing revocations keep the later.
pub const RAISE_TOKENS_NOT_BEFORE: &str =
    "INSERT INTO evsync_tenant_settings (id, tokens_not_before_ms) VALUES (1, ?1)
    ON CONFLICT (id) DO UPDATE SET tokens_not_before_ms = excluded.tokens_not_before_ms
    WHERE excluded.tokens_not_before_ms > evsync_tenant_settings.tokens_not_before_ms";

/// The stored "tokens not before" instant (ms), if any.
pub const SELECT_TOKENS_NOT_BEFORE: &str =
    "SELECT tokens_not_before_ms FROM evsync_tenant_settings WHERE id = 1";

/// What the object's store holds
/// ([`Storage::stats`](crate::storage::Storage::stats)), as one row:
/// `logs` (publicKeys with entries), `entries`, `bytes` (iv + entryId +
/// ciphertext lengths). Scans `evsync_entries`: every row counts as read.
pub const SELECT_STATS: &str = "SELECT
        count(DISTINCT public_key) AS logs,
        count(*) AS entries,
        coalesce(sum(length(iv) + length(entry_id) + length(encrypted_entry)), 0) AS bytes
    FROM evsync_entries";

/// Every log with entries and its head, as columns `public_key` and
/// `head` ([`Storage::logs`](crate::storage::Storage::logs)), in publicKey
/// byte order: `public_key` is TEXT, which SQLite compares with memcmp
/// under the default BINARY collation, and that is byte order for UTF-8.
/// One statement, so one snapshot. Walks the primary key's index
/// (publicKey, sequence), not the blobs: every entry counts as a row read.
pub const SELECT_LOG_HEADS: &str = "SELECT public_key, max(sequence) AS head
    FROM evsync_entries GROUP BY public_key ORDER BY public_key";
