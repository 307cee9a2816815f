//! The PostgreSQL schema: every tenant in one set of tables, versioned the
//! way the SQLite backends are ([`Schema`]: numbered steps, the missing ones
//! run in one transaction with the new version, a newer database refused).
//!
//! Several nodes share the database, so the layout is shaped by their
//! concurrency as much as by the data:
//!
//! - `evsync_logs` has one row per (tenant, publicKey) with the log's
//!   `head`. An append locks the rows of the logs it writes (in publicKey
//!   order, so two nodes never deadlock) and assigns sequences from `head`:
//!   gapless and in commit order whatever the number of writers, without a
//!   `max(sequence)` scan.
//! - `evsync_entries` is keyed by (log id, sequence), so a catch-up read is
//!   one range scan of the primary key, and rows carry an 8-byte log id
//!   rather than the tenant and publicKey.
//! - Uniqueness of a publicKey in its tenant and of an entryId in its log is
//!   kept by unique indexes over their SHA-256, not the values: both come
//!   from clients unbounded in length, and a B-tree refuses a key over
//!   about 2.7 kB. An append carrying one such key would fail, and with it
//!   every write of the tenant committed with it (group commit). A digest
//!   has a fixed size; a collision would need a SHA-256 collision.
//! - publicKeys are `bytea` holding the UTF-8 bytes, as SQLite's BLOB does:
//!   any string round-trips (PostgreSQL `text` cannot hold NUL), and
//!   `ORDER BY public_key` is byte order, as [`Storage::logs`] requires.
//! - ciphertext is stored `EXTERNAL`: out of line and not compressed
//!   (encrypted bytes do not compress), and `octet_length` of an
//!   out-of-line value reads its pointer, not the value, which is how
//!   [`READ`] sums sizes without pulling entries it will not return.
//!
//! [`Storage::logs`]: evsync_core::storage::Storage::logs

use crate::{PgError, pg_error};
use evsync_core::storage::StorageError;
use evsync_core::storage::schema::{Migration, Schema};

/// The version table: one row. Created (if missing) under the migration
/// lock before the version is read, so it is not a step itself.
pub const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS evsync_schema_version (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
)";

/// The recorded version (no row in a new database).
pub const SELECT_VERSION: &str = "SELECT version FROM evsync_schema_version WHERE id = 1";

/// Records the version (`$1`) in the migration's transaction.
pub const RECORD_VERSION: &str = "INSERT INTO evsync_schema_version (id, version) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET version = excluded.version";

/// The key of the transaction-scoped advisory lock every migration takes
/// first: nodes starting at once migrate one after the other, and the
/// later ones find the work done. ASCII "evsync" and a 1.
pub const MIGRATION_LOCK: i64 = 0x6576_7379_6e63_0001;

/// The tables. Every tenant column is `COLLATE "C"`: tenant names are
/// ASCII, and byte order is what listings promise and the fastest to
/// compare.
const V1: Migration = Migration {
    version: 1,
    statements: &[
        "CREATE TABLE evsync_tenants (
            tenant text COLLATE \"C\" PRIMARY KEY,
            remote_id bytea NOT NULL CHECK (octet_length(remote_id) = 16)
        )",
        "CREATE TABLE evsync_logs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant text COLLATE \"C\" NOT NULL,
            public_key bytea NOT NULL,
            head bigint NOT NULL DEFAULT 0 CHECK (head >= 0)
        )",
        "CREATE UNIQUE INDEX evsync_logs_by_key ON evsync_logs (tenant, sha256(public_key))",
        "CREATE TABLE evsync_entries (
            log_id bigint NOT NULL,
            sequence bigint NOT NULL CHECK (sequence >= 1),
            entry_id bytea NOT NULL,
            iv bytea NOT NULL,
            encrypted_entry bytea NOT NULL,
            PRIMARY KEY (log_id, sequence)
        )",
        "ALTER TABLE evsync_entries ALTER COLUMN encrypted_entry SET STORAGE EXTERNAL",
        "CREATE UNIQUE INDEX evsync_entries_by_entry_id ON evsync_entries (log_id, sha256(entry_id))",
        "CREATE TABLE evsync_tenant_settings (
            tenant text COLLATE \"C\" PRIMARY KEY,
            tokens_not_before_ms bigint NOT NULL CHECK (tokens_not_before_ms >= 0)
        )",
    ],
};

/// Effect v4's batch stores, per (tenant, publicKey, storeId), apart from
/// the v3 logs and shaped by the same concurrency:
///
/// - `evsync_v4_stores`: one row per store with its `head` (the last
///   sequence taken). An append locks the rows of the stores it writes, in
///   (publicKey, storeId) byte order, and assigns sequences from `head`
///   (`storage::batches`). Unique over the SHA-256 of the two keys, for the
///   reason v1 gives (unbounded client strings in a B-tree).
/// - `evsync_v4_batches`: keyed by (store, LAST sequence), so a read of
///   "every batch whose last sequence is >= from" is one range scan of the
///   primary key; `sequence` is the first. Ids concatenated (16 bytes
///   each, as Effect's SQL storage keeps them); ciphertext `EXTERNAL` as
///   v3's, so the read's byte budget reads TOAST pointers, not values.
/// - `evsync_v4_entry_ids`: where each id of a store was first stored, the
///   dedup check. Ids are 16 bytes (storage refuses others), so the key
///   holds them directly. The primary key is also what stops two nodes
///   storing one id twice if their locks ever failed to order them.
/// - `evsync_v4_signing_keys`: the session-auth binding per (tenant,
///   publicKey), unique over the publicKey's SHA-256.
const V2: Migration = Migration {
    version: 2,
    statements: &[
        "CREATE TABLE evsync_v4_stores (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            tenant text COLLATE \"C\" NOT NULL,
            public_key bytea NOT NULL,
            store_id bytea NOT NULL,
            head bigint NOT NULL DEFAULT 0 CHECK (head >= 0)
        )",
        "CREATE UNIQUE INDEX evsync_v4_stores_by_key
            ON evsync_v4_stores (tenant, sha256(public_key), sha256(store_id))",
        "CREATE TABLE evsync_v4_batches (
            store bigint NOT NULL,
            last_sequence bigint NOT NULL,
            sequence bigint NOT NULL CHECK (sequence >= 1 AND sequence <= last_sequence),
            iv bytea NOT NULL,
            entry_ids bytea NOT NULL,
            encrypted_batch bytea NOT NULL,
            PRIMARY KEY (store, last_sequence)
        )",
        "ALTER TABLE evsync_v4_batches ALTER COLUMN encrypted_batch SET STORAGE EXTERNAL",
        "CREATE TABLE evsync_v4_entry_ids (
            store bigint NOT NULL,
            entry_id bytea NOT NULL CHECK (octet_length(entry_id) = 16),
            sequence bigint NOT NULL,
            PRIMARY KEY (store, entry_id)
        )",
        "CREATE TABLE evsync_v4_signing_keys (
            tenant text COLLATE \"C\" NOT NULL,
            public_key bytea NOT NULL,
            signing_key bytea NOT NULL CHECK (octet_length(signing_key) = 32)
        )",
        "CREATE UNIQUE INDEX evsync_v4_signing_keys_by_key
            ON evsync_v4_signing_keys (tenant, sha256(public_key))",
    ],
};

/// A generation per tenant row, from one sequence: every row gets a value
/// no row had before, existing rows included (a volatile default fills
/// each one). An import's staging row has its own, which the tenant keeps
/// when the import is installed, so a tenant replaced by an import whose
/// file kept its remoteId (a restore) still differs from what a node
/// loaded, and the node's re-check finds it when the import's notice was
/// lost.
const V3: Migration = Migration {
    version: 3,
    statements: &[
        "CREATE SEQUENCE evsync_tenant_generations",
        "ALTER TABLE evsync_tenants
            ADD COLUMN generation bigint NOT NULL DEFAULT nextval('evsync_tenant_generations')",
    ],
};

/// PostgreSQL's schema.
pub const SCHEMA: Schema = Schema {
    name: "PostgreSQL storage",
    steps: &[V1, V2, V3],
};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = SCHEMA.version() as u32;

/// Stores the remoteId (`$2`) of tenant `$1` unless it has one.
pub const INSERT_REMOTE_ID: &str = "INSERT INTO evsync_tenants (tenant, remote_id) VALUES ($1, $2)
    ON CONFLICT (tenant) DO NOTHING";

/// Tenant `$1`'s remoteId, if any.
pub const SELECT_REMOTE_ID: &str = "SELECT remote_id FROM evsync_tenants WHERE tenant = $1";

/// Creates the logs of tenant `$1` named in `$2` (publicKeys) that do not
/// exist, and locks every one of them, returning `id, public_key, head`.
///
/// One statement, rows taken in publicKey order: every append takes its
/// log locks in the same order, so two nodes appending to overlapping sets
/// of logs wait for each other but never deadlock. `DO UPDATE` (rather
/// than `DO NOTHING` and a `SELECT .. FOR UPDATE`) locks an existing row in
/// the same pass that creates a missing one, so no transaction ever holds
/// a lock taken out of order; under READ COMMITTED it returns the row's
/// latest committed head, the one sequences continue from.
pub const LOCK_LOGS: &str = "INSERT INTO evsync_logs AS l (tenant, public_key)
    SELECT $1, k FROM unnest($2::bytea[]) AS k ORDER BY k
    ON CONFLICT (tenant, sha256(public_key)) DO UPDATE SET head = l.head
    RETURNING l.id, l.public_key, l.head";

/// The entries of log `$1` whose entryId's SHA-256 is in `$2`, as
/// `entry_id, sequence`: the dedup check of an append, made while the
/// log's row is locked, so no other writer can add one meanwhile.
///
/// One probe of the unique index per digest, whatever the statistics say:
/// the LATERAL subquery (kept apart by its LIMIT) is run once per digest
/// with both index columns bound, which the planner costs at one row. A
/// plain `sha256(entry_id) = ANY($2)` let it scan the whole log and hash
/// every entry when its estimate of a log's size was off (no statistics
/// yet, or a big log among many small ones): milliseconds per append that
/// grew with the log.
pub const FIND_ENTRIES: &str = "SELECT e.entry_id, e.sequence
    FROM unnest($2::bytea[]) AS h(hash)
    CROSS JOIN LATERAL (
        SELECT entry_id, sequence FROM evsync_entries
        WHERE log_id = $1 AND sha256(entry_id) = h.hash
        LIMIT 1
    ) AS e";

/// Inserts entries given as parallel arrays: log ids, sequences, entryIds,
/// ivs, ciphertexts. One statement for every entry of an append.
pub const INSERT_ENTRIES: &str =
    "INSERT INTO evsync_entries (log_id, sequence, entry_id, iv, encrypted_entry)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[])";

/// Sets the heads of the logs `$1` (ids) to `$2`.
pub const SET_HEADS: &str = "UPDATE evsync_logs AS l SET head = u.head
    FROM unnest($1::bigint[], $2::bigint[]) AS u(id, head) WHERE l.id = u.id";

/// Queues one notification per payload in `$1` on [`crate::listen::CHANNEL`];
/// PostgreSQL delivers them at COMMIT, and only if it commits.
pub const NOTIFY: &str = "SELECT pg_notify('evsync_log', p) FROM unnest($1::text[]) AS p";

/// Entries of tenant `$1`'s log `$2` with `$3 <= sequence < $4`, at most
/// `$5`, while their running size (iv + entryId + ciphertext) stays within
/// `$6` bytes, the first one always.
///
/// `$4` is `$3` plus the entry limit: a log's sequences are gapless, so the
/// range holds exactly the entries the limit allows, and however the
/// planner reads it (an ordered index scan, or a bitmap scan and a sort
/// when its statistics are off) it never visits more.
///
/// The running sum is taken over `octet_length`, which for an out-of-line
/// value reads the TOAST pointer, so entries past the budget are never
/// fetched from TOAST nor sent: a read of 1,000 entries of 1.5 MB each with
/// a 4 MiB budget moves about 4 MiB, not 1.5 GB.
pub const READ: &str = "SELECT sequence, iv, entry_id, encrypted_entry FROM (
        SELECT e.sequence, e.iv, e.entry_id, e.encrypted_entry,
            row_number() OVER w AS n,
            sum(octet_length(e.iv) + octet_length(e.entry_id) + octet_length(e.encrypted_entry))
                OVER w AS running
        FROM evsync_entries AS e
        WHERE e.log_id = (SELECT id FROM evsync_logs
                WHERE tenant = $1 AND sha256(public_key) = sha256($2) AND public_key = $2)
            AND e.sequence >= $3 AND e.sequence < $4
        WINDOW w AS (ORDER BY e.sequence ROWS UNBOUNDED PRECEDING)
        ORDER BY e.sequence
        LIMIT $5
    ) AS s
    WHERE n = 1 OR running <= $6
    ORDER BY sequence";

/// Raises tenant `$1`'s "tokens not before" instant to `$2` (ms), never
/// lowering it, and returns the instant now stored: two racing revocations
/// (two nodes) keep the later, and each learns the committed value.
pub const RAISE_TOKENS_NOT_BEFORE: &str =
    "INSERT INTO evsync_tenant_settings AS s (tenant, tokens_not_before_ms) VALUES ($1, $2)
    ON CONFLICT (tenant) DO UPDATE
        SET tokens_not_before_ms = greatest(s.tokens_not_before_ms, excluded.tokens_not_before_ms)
    RETURNING tokens_not_before_ms";

/// The stored "tokens not before" instants (ms) of the tenants in `$1`.
pub const SELECT_REVOCATIONS: &str = "SELECT tenant, tokens_not_before_ms FROM evsync_tenant_settings WHERE tenant = ANY($1::text[])";

/// Tells every node that tenant `$1`'s tokens were revoked up to `$2` (ms):
/// `{"t": tenant, "r": instant}` on the channel appends notify.
pub const NOTIFY_REVOKED: &str =
    "SELECT pg_notify('evsync_log', json_build_object('t', $1::text, 'r', $2::bigint)::text)";

/// Tells every node that tenant `$1` was deleted (or replaced):
/// `{"t": tenant, "d": true, "x": id}`, sent inside the deleting
/// transaction, so delivered only once it committed. `x` is that
/// transaction's id: a node that loaded the tenant after it committed
/// ignores the notice ([`crate::Snapshot`]).
pub const NOTIFY_DROPPED: &str = "SELECT pg_notify('evsync_log',
    json_build_object('t', $1::text, 'd', true, 'x', pg_current_xact_id()::text::bigint)::text)";

/// The remoteIds and generations of those tenants in `$1` that have a row.
pub const SELECT_IDENTITIES: &str =
    "SELECT tenant, remote_id, generation FROM evsync_tenants WHERE tenant = ANY($1::text[])";

/// Tenant `$1`'s stored "tokens not before" instant (ms), if any.
pub const SELECT_TOKENS_NOT_BEFORE: &str =
    "SELECT tokens_not_before_ms FROM evsync_tenant_settings WHERE tenant = $1";

/// What tenant `$1` holds, as one row (one snapshot): logs with entries,
/// entries, and the sum of iv + entryId + ciphertext lengths. Reads the
/// tenant's entries log by log (a LATERAL subquery per log, so through the
/// primary key, never a scan of every tenant's entries), lengths, not
/// values.
pub const SELECT_STATS: &str = "SELECT
        count(*) FILTER (WHERE l.head > 0) AS logs,
        coalesce(sum(s.entries), 0)::bigint AS entries,
        coalesce(sum(s.bytes), 0)::bigint AS bytes
    FROM evsync_logs AS l
    CROSS JOIN LATERAL (
        SELECT count(*) AS entries,
            sum(octet_length(e.iv) + octet_length(e.entry_id)
                + octet_length(e.encrypted_entry)) AS bytes
        FROM evsync_entries AS e WHERE e.log_id = l.id
    ) AS s
    WHERE l.tenant = $1";

/// Every log of tenant `$1` with entries and its head, in publicKey byte
/// order (`bytea` compares as memcmp).
pub const SELECT_LOG_HEADS: &str = "SELECT public_key, head FROM evsync_logs
    WHERE tenant = $1 AND head > 0 ORDER BY public_key";

/// Every tenant with a row: a remoteId, a log or v4 store with entries,
/// settings or a v4 signing key (a revocation made before the tenant was
/// ever used is kept like data, as a SQLite tenant file would be created
/// for it). Byte order.
pub const SELECT_TENANTS: &str = "SELECT t FROM (
        SELECT tenant AS t FROM evsync_tenants
        UNION SELECT tenant FROM evsync_logs WHERE head > 0
        UNION SELECT tenant FROM evsync_tenant_settings
        UNION SELECT tenant FROM evsync_v4_stores WHERE head > 0
        UNION SELECT tenant FROM evsync_v4_signing_keys
    ) AS all_tenants WHERE t NOT LIKE '~%' ORDER BY 1";

/// Whether tenant `$1` has a row ([`SELECT_TENANTS`]'s rule).
pub const TENANT_EXISTS: &str = "SELECT
    EXISTS (SELECT 1 FROM evsync_tenants WHERE tenant = $1)
    OR EXISTS (SELECT 1 FROM evsync_logs WHERE tenant = $1 AND head > 0)
    OR EXISTS (SELECT 1 FROM evsync_tenant_settings WHERE tenant = $1)
    OR EXISTS (SELECT 1 FROM evsync_v4_stores WHERE tenant = $1 AND head > 0)
    OR EXISTS (SELECT 1 FROM evsync_v4_signing_keys WHERE tenant = $1)";

/// The heads of every log with entries of the tenants in `$1`, as
/// `tenant, public_key, head`.
pub const SELECT_HEADS: &str = "SELECT tenant, public_key, head FROM evsync_logs
    WHERE tenant = ANY($1::text[]) AND head > 0 ORDER BY tenant, public_key";

/// The heads of every v4 store with batches of the tenants in `$1`.
pub const SELECT_STORE_HEADS: &str = "SELECT tenant, public_key, store_id, head
    FROM evsync_v4_stores WHERE tenant = ANY($1::text[]) AND head > 0
    ORDER BY tenant, public_key, store_id";

/// Locks every log of tenant `$1` in the order appends lock them, returning
/// their ids: a deletion then waits for appends in flight rather than
/// deadlocking with them.
pub const LOCK_TENANT_LOGS: &str =
    "SELECT id FROM evsync_logs WHERE tenant = $1 ORDER BY public_key FOR UPDATE";

/// Deletes the entries of log `$1` (one statement per log, each a range of
/// the primary key).
pub const DELETE_ENTRIES: &str = "DELETE FROM evsync_entries WHERE log_id = $1";

/// Deletes tenant `$1`'s logs, remoteId and settings.
pub const DELETE_LOGS: &str = "DELETE FROM evsync_logs WHERE tenant = $1";
pub const DELETE_REMOTE_ID: &str = "DELETE FROM evsync_tenants WHERE tenant = $1";
pub const DELETE_SETTINGS: &str = "DELETE FROM evsync_tenant_settings WHERE tenant = $1";

/// Locks every v4 store of tenant `$1` in the order appends lock them
/// (after its v3 logs: no append takes both kinds), returning their ids.
pub const LOCK_TENANT_STORES: &str = "SELECT id FROM evsync_v4_stores WHERE tenant = $1
    ORDER BY public_key, store_id FOR UPDATE";

/// Deletes the batches and entry ids of v4 store `$1` (ranges of their
/// primary keys).
pub const DELETE_STORE_ROWS: [&str; 2] = [
    "DELETE FROM evsync_v4_batches WHERE store = $1",
    "DELETE FROM evsync_v4_entry_ids WHERE store = $1",
];

/// Deletes tenant `$1`'s v4 stores and signing keys.
pub const DELETE_V4: [&str; 2] = [
    "DELETE FROM evsync_v4_stores WHERE tenant = $1",
    "DELETE FROM evsync_v4_signing_keys WHERE tenant = $1",
];

/// Moves every row of tenant `$1` (an import's staging name) to tenant
/// `$2`, which has none; entries and batches follow their logs' and
/// stores' ids.
pub const RENAME_TENANT: [&str; 5] = [
    "UPDATE evsync_tenants SET tenant = $2 WHERE tenant = $1",
    "UPDATE evsync_logs SET tenant = $2 WHERE tenant = $1",
    "UPDATE evsync_tenant_settings SET tenant = $2 WHERE tenant = $1",
    "UPDATE evsync_v4_stores SET tenant = $2 WHERE tenant = $1",
    "UPDATE evsync_v4_signing_keys SET tenant = $2 WHERE tenant = $1",
];

/// Brings the database up to [`SCHEMA_VERSION`] and returns the version in
/// place: in one transaction, under [`MIGRATION_LOCK`], the version is read,
/// the missing steps run and the new version is recorded. A database
/// written by a newer evsync is refused and left as it is.
pub(crate) async fn migrate(client: &mut deadpool_postgres::Client) -> Result<u32, StorageError> {
    let tx = client
        .transaction()
        .await
        .map_err(pg_error("begin migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_error("take the migration lock"))?;
    tx.batch_execute(CREATE_VERSION_TABLE)
        .await
        .map_err(pg_error("create the version table"))?;
    let stored: Option<i32> = tx
        .query_opt(SELECT_VERSION, &[])
        .await
        .map_err(pg_error("read the schema version"))?
        .map(|row| row.get(0));
    let steps = SCHEMA.pending(i64::from(stored.unwrap_or(0)))?;
    if steps.is_empty() {
        tx.commit().await.map_err(pg_error("end migration"))?;
        return Ok(SCHEMA_VERSION);
    }
    for step in steps {
        for sql in step.statements {
            tx.batch_execute(sql)
                .await
                .map_err(|e| SCHEMA.step_failed(step, PgError(&e)))?;
        }
    }
    tx.execute(RECORD_VERSION, &[&(SCHEMA_VERSION as i32)])
        .await
        .map_err(pg_error("record the schema version"))?;
    tx.commit().await.map_err(pg_error("commit migration"))?;
    Ok(SCHEMA_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_from_one() {
        for (i, step) in SCHEMA.steps.iter().enumerate() {
            assert_eq!(step.version, i as i64 + 1);
            assert!(!step.statements.is_empty());
        }
        assert_eq!(SCHEMA_VERSION as usize, SCHEMA.steps.len());
    }
}
