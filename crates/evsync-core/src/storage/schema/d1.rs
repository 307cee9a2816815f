//! The Worker's D1 database (`SYNC_DB`): every tenant in one set of tables,
//! `tenant` leading every key. The version lives in the one-row
//! `evsync_schema`, created before anything else (it is where the version
//! is read from, so it cannot be a step itself).

use super::{Migration, Schema};

/// The version table. `IF NOT EXISTS`: it runs at every open.
pub const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS evsync_schema (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
)";

/// The recorded version, as column `version` (no row in a new database).
pub const SELECT_VERSION: &str = "SELECT version FROM evsync_schema WHERE id = 1";

/// Records the version (`?1`) in the migration's batch, never lowering it:
/// isolates of a newer Worker may share the database during a deploy.
pub const RECORD_VERSION: &str = "INSERT INTO evsync_schema (id, version) VALUES (1, ?1)
    ON CONFLICT (id) DO UPDATE SET version = excluded.version
    WHERE excluded.version > evsync_schema.version";

/// Stores the remoteId of tenant `?1` unless one is stored (`?2`: 16 bytes).
pub const INSERT_REMOTE_ID: &str =
    "INSERT OR IGNORE INTO evsync_tenants (tenant, remote_id) VALUES (?1, ?2)";

/// The stored remoteId of tenant `?1` as column `hex` (D1 returns blobs in
/// several shapes; hex text has one).
pub const SELECT_REMOTE_ID: &str =
    "SELECT hex(remote_id) AS hex FROM evsync_tenants WHERE tenant = ?1";

/// The remoteId per tenant, and one row per entry keyed by (tenant,
/// publicKey, sequence); `(tenant, publicKey, entryId)` is the dedup check.
/// `IF NOT EXISTS`: Workers of one deploy may migrate concurrently.
const V1: Migration = Migration {
    version: 1,
    statements: &[
        "CREATE TABLE IF NOT EXISTS evsync_tenants (
        tenant TEXT PRIMARY KEY,
        remote_id BLOB NOT NULL
    )",
        "CREATE TABLE IF NOT EXISTS evsync_entries (
        tenant TEXT NOT NULL,
        public_key TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        iv BLOB NOT NULL,
        entry_id BLOB NOT NULL,
        encrypted_entry BLOB NOT NULL,
        PRIMARY KEY (tenant, public_key, sequence),
        UNIQUE (tenant, public_key, entry_id)
    )",
    ],
};

/// Per tenant, its settings: the "tokens not before" instant in ms since
/// the Unix epoch, see
/// [`Storage::set_tokens_not_before`](crate::storage::Storage::set_tokens_not_before).
/// No row until one is set. Keyed by tenant alone (not a column of
/// `evsync_tenants`), so that revoking a tenant's tokens never creates its
/// remoteId. `IF NOT EXISTS`: Workers of one deploy may migrate
/// concurrently.
const V2: Migration = Migration {
    version: 2,
    statements: &["CREATE TABLE IF NOT EXISTS evsync_tenant_settings (
        tenant TEXT PRIMARY KEY,
        tokens_not_before_ms INTEGER NOT NULL CHECK (tokens_not_before_ms >= 0)
    )"],
};

/// Effect v4's batch stores, per (tenant, publicKey, storeId), apart from
/// the v3 entries, in the layout of v1 (`tenant` leads every key; no store
/// table: the tenant's Durable Object is its only writer, so a store's
/// head is read as the largest last sequence, one index probe):
///
/// - `evsync_v4_batches`: keyed by (tenant, publicKey, storeId, LAST
///   sequence), so a read of "every batch whose last sequence is >= from"
///   is one range of the primary key's index; `sequence` is the first; ids
///   concatenated, 16 bytes each, as Effect's SQL storage keeps them.
/// - `evsync_v4_entry_ids`: where each id of a store was first stored (the
///   dedup check).
/// - `evsync_v4_signing_keys`: the session-auth binding per (tenant,
///   publicKey).
///
/// `IF NOT EXISTS`: Workers of one deploy may migrate concurrently.
const V3: Migration = Migration {
    version: 3,
    statements: &[
        "CREATE TABLE IF NOT EXISTS evsync_v4_batches (
        tenant TEXT NOT NULL,
        public_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        last_sequence INTEGER NOT NULL,
        sequence INTEGER NOT NULL,
        iv BLOB NOT NULL,
        entry_ids BLOB NOT NULL,
        encrypted_batch BLOB NOT NULL,
        PRIMARY KEY (tenant, public_key, store_id, last_sequence)
    )",
        "CREATE TABLE IF NOT EXISTS evsync_v4_entry_ids (
        tenant TEXT NOT NULL,
        public_key TEXT NOT NULL,
        store_id TEXT NOT NULL,
        entry_id BLOB NOT NULL,
        sequence INTEGER NOT NULL,
        PRIMARY KEY (tenant, public_key, store_id, entry_id)
    )",
        "CREATE TABLE IF NOT EXISTS evsync_v4_signing_keys (
        tenant TEXT NOT NULL,
        public_key TEXT NOT NULL,
        signing_key BLOB NOT NULL CHECK (length(signing_key) = 32),
        PRIMARY KEY (tenant, public_key)
    )",
    ],
};

/// D1's schema.
pub const SCHEMA: Schema = Schema {
    name: "D1 storage",
    steps: &[V1, V2, V3],
};

/// Raises tenant `?1`'s "tokens not before" instant to `?2` (ms), creating
/// its row if needed and never lowering it: two racing revocations (two
/// Worker isolates) keep the later.
pub const RAISE_TOKENS_NOT_BEFORE: &str =
    "INSERT INTO evsync_tenant_settings (tenant, tokens_not_before_ms) VALUES (?1, ?2)
    ON CONFLICT (tenant) DO UPDATE SET tokens_not_before_ms = excluded.tokens_not_before_ms
    WHERE excluded.tokens_not_before_ms > evsync_tenant_settings.tokens_not_before_ms";

/// Tenant `?1`'s stored "tokens not before" instant as column `ms`, if any.
pub const SELECT_TOKENS_NOT_BEFORE: &str =
    "SELECT tokens_not_before_ms AS ms FROM evsync_tenant_settings WHERE tenant = ?1";

/// What tenant `?1` holds
/// ([`Storage::stats`](crate::storage::Storage::stats)), as one row:
/// `logs` (publicKeys with entries), `entries`, `bytes` (iv + entryId +
/// ciphertext lengths). Scans the tenant's rows of `evsync_entries` (its
/// range of the primary key): every row counts as read.
pub const SELECT_STATS: &str = "SELECT
        count(DISTINCT public_key) AS logs,
        count(*) AS entries,
        coalesce(sum(length(iv) + length(entry_id) + length(encrypted_entry)), 0) AS bytes
    FROM evsync_entries WHERE tenant = ?1";

/// Every log of tenant `?1` with entries and its head, as columns
/// `public_key` and `head` ([`Storage::logs`](crate::storage::Storage::logs)),
/// in publicKey byte order: `public_key` is TEXT, which SQLite compares
/// with memcmp under the default BINARY collation, and that is byte order
/// for UTF-8. One statement, so one snapshot. Walks the tenant's range of
/// the primary key's index (tenant, publicKey, sequence), not the blobs:
/// every entry counts as a row read.
pub const SELECT_LOG_HEADS: &str = "SELECT public_key, max(sequence) AS head
    FROM evsync_entries WHERE tenant = ?1 GROUP BY public_key ORDER BY public_key";
