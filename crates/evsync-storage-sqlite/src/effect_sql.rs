//! Reads a database written by Effect v3's own sync server
//! (`SqlEventLogServer` from `@effect/sql`, on SQLite) and writes it as an
//! evsync tenant export, so that the replicas of an app that ran Effect's
//! server can switch to evsync without reading their history again.
//!
//! What Effect's server keeps (read from `@effect/sql` 0.49.0's
//! `SqlEventLogServer.ts`):
//!
//! - `effect_remote_id (remote_id BLOB PRIMARY KEY)`: one row, the
//!   server's remoteId (16 bytes, a UUID), created at first start.
//! - per publicKey, `effect_events_<h> (sequence INTEGER PRIMARY KEY
//!   AUTOINCREMENT, iv BLOB, entry_id BLOB UNIQUE, encrypted_entry BLOB)`,
//!   where `<h>` is the first 16 hex digits of the SHA-256 of the
//!   publicKey's UTF-8 bytes. The table is created the first time a
//!   replica writes *or subscribes* to that publicKey.
//!
//! Both names have configurable prefixes in Effect ([`EffectLayout`]).
//!
//! Why the conversion keeps what it keeps, and refuses what it refuses: an
//! Effect replica remembers, per remoteId, the last sequence it received of
//! its log, and asks the server for everything after it. Its cursor stays
//! valid on evsync only if the tenant has the same remoteId and every entry
//! the same sequence. evsync numbers a log 1, 2, 3 … without gaps (its
//! storage assigns sequences that way, and its export format requires it),
//! so a log that does not start at 1, has a gap, numbers two entries alike
//! or holds one entry id twice cannot be moved without breaking cursors,
//! and is refused, naming the table and the problem.
//!
//! Gaps are not only made by hand: Effect's server stores with `INSERT …
//! ON CONFLICT DO NOTHING` into an `AUTOINCREMENT` table, and SQLite uses
//! up a number for every ignored row, so each upload of an entry the server
//! already has (a replica whose `Ack` was lost uploads it again) skips a
//! sequence before the next new entry. Such a log cannot keep its numbers
//! on evsync. Numbers used up after the last entry, on the other hand, are
//! harmless (no entry has them, and Effect acknowledges a repeated upload
//! with the stored entry's own sequence, so no replica ever saw them), so
//! `sqlite_sequence` is not consulted.
//!
//! The publicKey itself is not in the file, only its hash in the table
//! name; the hash cannot be reversed, so the caller names the publicKeys
//! (an app knows its identities' publicKeys: `Identity.publicKey`, a UUID
//! for `Identity.makeRandom()`). A table with entries whose publicKey is not among them is
//! refused: its entries could not be served to anyone. An empty one (a
//! replica only subscribed) holds nothing to keep and is skipped.
//!
//! Everything is checked, in one read transaction (one snapshot, so a
//! server still writing cannot make the checks and the copy disagree),
//! before the first line is written. The file is opened read-only and never
//! changed.

use evsync_core::export::{ExportHeader, ExportSummary, ExportWriter};
use evsync_core::wire::{RemoteEntry, RemoteId};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The table names of an Effect `SqlEventLogServer` database; the defaults
/// are Effect's (`makeStorage`'s `entryTablePrefix` and `remoteIdTable`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectLayout {
    pub entry_table_prefix: String,
    pub remote_id_table: String,
}

impl Default for EffectLayout {
    fn default() -> Self {
        EffectLayout {
            entry_table_prefix: "effect_events".into(),
            remote_id_table: "effect_remote_id".into(),
        }
    }
}

impl EffectLayout {
    /// The table Effect's server keeps `public_key`'s log in:
    /// `<prefix>_` and the first 16 hex digits of SHA-256(publicKey).
    pub fn table_for(&self, public_key: &str) -> String {
        let digest = Sha256::digest(public_key.as_bytes());
        let mut name = format!("{}_", self.entry_table_prefix);
        for b in &digest[..8] {
            name.push_str(&format!("{b:02x}"));
        }
        name
    }

    /// Whether `table` is one of this layout's entry tables, and whether
    /// its name has the hash shape (16 lowercase hex digits) Effect gives it.
    fn entry_table_kind(&self, table: &str) -> Option<bool> {
        let suffix = table
            .strip_prefix(self.entry_table_prefix.as_str())?
            .strip_prefix('_')?;
        Some(
            suffix.len() == 16
                && suffix
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        )
    }
}

/// One log of the source, as converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectLog {
    pub public_key: String,
    pub table: String,
    /// Its entries, numbered 1 to `entries`.
    pub entries: u64,
}

/// What a conversion wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectExport {
    /// Effect's server's remoteId, now the tenant's.
    pub remote_id: RemoteId,
    pub summary: ExportSummary,
    /// The logs with entries, in publicKey order.
    pub logs: Vec<EffectLog>,
    /// Empty tables of publicKeys not given: nothing to keep, skipped.
    pub skipped_empty_tables: Vec<String>,
    /// Given publicKeys without a table, or with an empty one (no data).
    pub keys_without_entries: Vec<String>,
}

/// A table with entries whose publicKey was not given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedTable {
    pub table: String,
    pub entries: u64,
}

/// Why a source was refused.
#[derive(Debug)]
pub enum EffectSqlError {
    /// The source cannot be moved as it is: not an Effect SQLite database,
    /// or a log that would not keep replicas' cursors valid.
    Refused(String),
    /// Tables with entries whose publicKey was not given (their names
    /// carry only a hash of it).
    UnknownPublicKeys(Vec<UnmatchedTable>),
    /// Writing the export failed.
    Write(std::io::Error),
}

impl std::fmt::Display for EffectSqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EffectSqlError::Refused(reason) => f.write_str(reason),
            EffectSqlError::UnknownPublicKeys(tables) => {
                const SHOWN: usize = 10;
                let list: Vec<String> = tables
                    .iter()
                    .take(SHOWN)
                    .map(|t| format!("{} ({} entries)", t.table, t.entries))
                    .collect();
                write!(
                    f,
                    "{} table(s) with entries belong to publicKeys that were not given: {}{}. \
                     Effect's server names a log's table after a hash of its publicKey and does \
                     not store the publicKey, so every publicKey with entries must be named",
                    tables.len(),
                    list.join(", "),
                    if tables.len() > SHOWN {
                        format!(" and {} more", tables.len() - SHOWN)
                    } else {
                        String::new()
                    }
                )
            }
            EffectSqlError::Write(e) => write!(f, "writing the export: {e}"),
        }
    }
}

impl std::error::Error for EffectSqlError {}

fn refused(reason: impl Into<String>) -> EffectSqlError {
    EffectSqlError::Refused(reason.into())
}

fn sql_failed(what: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> EffectSqlError {
    move |e| refused(format!("{what}: {e}"))
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Converts the Effect `SqlEventLogServer` database at `path` (default
/// layout) into an export of `tenant`, written to `out`. See
/// [`export_effect_sqlite_with`].
pub fn export_effect_sqlite(
    path: &Path,
    tenant: &str,
    public_keys: &[String],
    out: &mut impl Write,
) -> Result<EffectExport, EffectSqlError> {
    export_effect_sqlite_with(&EffectLayout::default(), path, tenant, public_keys, out)
}

/// Converts the Effect `SqlEventLogServer` database at `path` into an
/// export of `tenant` (its remoteId, every entry with its sequence),
/// written to `out` line by line. `public_keys` names the logs' publicKeys.
///
/// Every check runs before the first line is written; on an error after
/// that (the source changed under a non-transactional reader, `out`
/// failed), what was written has no trailer, and an import refuses it.
pub fn export_effect_sqlite_with(
    layout: &EffectLayout,
    path: &Path,
    tenant: &str,
    public_keys: &[String],
    out: &mut impl Write,
) -> Result<EffectExport, EffectSqlError> {
    if !path.is_file() {
        return Err(refused(format!("{} is not a file", path.display())));
    }
    // Read-only: the source is never changed (nor is its WAL checkpointed).
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_failed(format!("cannot open {}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql_failed("cannot configure the connection"))?;
    // One snapshot for the checks and the copy.
    let tx = conn
        .transaction()
        .map_err(sql_failed("cannot start a read transaction"))?;
    let plan = plan(&tx, layout, path, public_keys)?;

    let (mut writer, header) = ExportWriter::new(&ExportHeader {
        tenant: tenant.to_owned(),
        remote_id: plan.remote_id,
        tokens_not_before: None,
    });
    out.write_all(header.as_bytes())
        .map_err(EffectSqlError::Write)?;
    for log in &plan.logs {
        copy_log(&tx, log, &mut writer, out)?;
    }
    let summary = writer.summary();
    out.write_all(writer.finish().as_bytes())
        .and_then(|()| out.flush())
        .map_err(EffectSqlError::Write)?;
    Ok(EffectExport {
        remote_id: plan.remote_id,
        summary,
        logs: plan.logs,
        skipped_empty_tables: plan.skipped_empty_tables,
        keys_without_entries: plan.keys_without_entries,
    })
}

struct Plan {
    remote_id: RemoteId,
    logs: Vec<EffectLog>,
    skipped_empty_tables: Vec<String>,
    keys_without_entries: Vec<String>,
}

/// Every check, before anything is written.
fn plan(
    conn: &Connection,
    layout: &EffectLayout,
    path: &Path,
    public_keys: &[String],
) -> Result<Plan, EffectSqlError> {
    let tables = list_tables(conn, path)?;
    if !tables.iter().any(|t| t == &layout.remote_id_table) {
        return Err(refused(format!(
            "{} is not a database of Effect's SqlEventLogServer: it has no {} table",
            path.display(),
            layout.remote_id_table
        )));
    }
    let remote_id = read_remote_id(conn, &layout.remote_id_table)?;

    // Which table each given publicKey's log lives in.
    let mut by_table: HashMap<String, &str> = HashMap::new();
    for key in public_keys {
        let table = layout.table_for(key);
        match by_table.get(&table) {
            Some(other) if *other != key.as_str() => {
                return Err(refused(format!(
                    "the publicKeys {other:?} and {key:?} share the table {table} \
                     (the first 64 bits of their SHA-256 collide): their entries cannot be told apart"
                )));
            }
            _ => {
                by_table.insert(table, key);
            }
        }
    }

    let mut logs = BTreeMap::new();
    let mut unmatched = Vec::new();
    let mut skipped_empty_tables = Vec::new();
    for table in &tables {
        let Some(hash_shaped) = layout.entry_table_kind(table) else {
            continue;
        };
        if !hash_shaped {
            return Err(refused(format!(
                "table {table} is named like Effect's entry tables but not after a publicKey's hash \
                 ({}_ and 16 hex digits), so its publicKey cannot be recovered",
                layout.entry_table_prefix
            )));
        }
        let entries = check_log(conn, table)?;
        match by_table.get(table) {
            Some(key) if entries > 0 => {
                logs.insert(
                    (*key).to_owned(),
                    EffectLog {
                        public_key: (*key).to_owned(),
                        table: table.clone(),
                        entries,
                    },
                );
            }
            Some(_) => {}
            None if entries > 0 => unmatched.push(UnmatchedTable {
                table: table.clone(),
                entries,
            }),
            None => skipped_empty_tables.push(table.clone()),
        }
    }
    if !unmatched.is_empty() {
        return Err(EffectSqlError::UnknownPublicKeys(unmatched));
    }
    let mut keys_without_entries: Vec<String> = public_keys
        .iter()
        .filter(|k| !logs.contains_key(k.as_str()))
        .cloned()
        .collect();
    keys_without_entries.sort();
    keys_without_entries.dedup();
    Ok(Plan {
        remote_id,
        logs: logs.into_values().collect(),
        skipped_empty_tables,
        keys_without_entries,
    })
}

fn list_tables(conn: &Connection, path: &Path) -> Result<Vec<String>, EffectSqlError> {
    conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        })
        .map_err(|e| {
            // SQLite finds out that a file is not a database at its first read.
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
                refused(format!(
                    "{} is not a SQLite database, so not one Effect's SqlEventLogServer wrote",
                    path.display()
                ))
            } else {
                refused(format!("cannot list the tables of {}: {e}", path.display()))
            }
        })
}

/// The one remoteId Effect's server created at its first start.
fn read_remote_id(conn: &Connection, table: &str) -> Result<RemoteId, EffectSqlError> {
    let what = format!("cannot read the remoteId from {table}");
    let mut stmt = conn
        .prepare(&format!("SELECT remote_id FROM {}", quoted(table)))
        .map_err(sql_failed(&what))?;
    let ids = stmt
        .query_map([], |row| {
            Ok(match row.get_ref(0)? {
                ValueRef::Blob(b) => <[u8; 16]>::try_from(b).ok(),
                _ => None,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_failed(&what))?;
    match ids.as_slice() {
        [Some(id)] => Ok(RemoteId(*id)),
        [None] => Err(refused(format!(
            "the remoteId in {table} is not 16 bytes, so it is not one Effect's server made"
        ))),
        [] => Err(refused(format!(
            "{table} holds no remoteId: Effect's server never started on this file, so no replica can hold a cursor for it"
        ))),
        more => Err(refused(format!(
            "{table} holds {} remoteIds, Effect's server makes one: which one replicas know cannot be told",
            more.len()
        ))),
    }
}

const COLUMNS: [&str; 4] = ["sequence", "iv", "entry_id", "encrypted_entry"];

/// Checks that `table` holds a log evsync can keep as it is: Effect's
/// columns, integer sequences and blob values, sequences 1 to n without a
/// gap or a repeat, no entry id twice. Returns n.
fn check_log(conn: &Connection, table: &str) -> Result<u64, EffectSqlError> {
    let t = quoted(table);
    let fail = |what: &str| sql_failed(format!("table {table}: cannot {what}"));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info({})",
            quoted_literal(table)
        ))
        .map_err(fail("read its columns"))?;
    let columns = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(fail("read its columns"))?;
    if let Some(missing) = COLUMNS
        .iter()
        .find(|c| !columns.iter().any(|have| have == *c))
    {
        return Err(refused(format!(
            "table {table} has no {missing} column: it is not an entry table of Effect's server"
        )));
    }

    let odd: Option<(String, String)> = conn
        .query_row(
            &format!(
                "SELECT quote(sequence), CASE \
                   WHEN typeof(sequence) != 'integer' THEN 'sequence' \
                   WHEN typeof(iv) != 'blob' THEN 'iv' \
                   WHEN typeof(entry_id) != 'blob' THEN 'entry_id' \
                   ELSE 'encrypted_entry' END \
                 FROM {t} WHERE typeof(sequence) != 'integer' OR typeof(iv) != 'blob' \
                   OR typeof(entry_id) != 'blob' OR typeof(encrypted_entry) != 'blob' \
                 LIMIT 1"
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(fail("check its values"))?;
    if let Some((sequence, column)) = odd {
        let expected = if column == "sequence" {
            "an integer"
        } else {
            "bytes"
        };
        return Err(refused(format!(
            "table {table}: the entry with sequence {sequence} has a {column} that is not {expected}"
        )));
    }

    let (count, min, max, distinct): (i64, Option<i64>, Option<i64>, i64) = conn
        .query_row(
            &format!(
                "SELECT count(*), min(sequence), max(sequence), count(DISTINCT sequence) FROM {t}"
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .map_err(fail("count its entries"))?;
    if let (Some(min), Some(max)) = (min, max) {
        if min != 1 {
            return Err(refused(format!(
                "table {table}: the log starts at sequence {min}, not 1 \
                 (evsync numbers every log from 1, so replicas' cursors would point elsewhere)"
            )));
        }
        if distinct != count {
            let repeated: i64 = conn
                .query_row(
                    &format!("SELECT sequence FROM {t} GROUP BY sequence HAVING count(*) > 1 ORDER BY sequence LIMIT 1"),
                    [],
                    |row| row.get(0),
                )
                .map_err(fail("find the repeated sequence"))?;
            return Err(refused(format!(
                "table {table}: two entries have sequence {repeated}"
            )));
        }
        if max != count {
            let missing: i64 = conn
                .query_row(
                    &format!(
                        "SELECT a.sequence + 1 FROM {t} a WHERE a.sequence < ?1 \
                         AND NOT EXISTS (SELECT 1 FROM {t} b WHERE b.sequence = a.sequence + 1) \
                         ORDER BY a.sequence LIMIT 1"
                    ),
                    [max],
                    |row| row.get(0),
                )
                .map_err(fail("find the gap"))?;
            return Err(refused(format!(
                "table {table}: sequence {missing} is missing ({count} entries numbered 1 to {max}). \
                 Effect's server leaves such a gap when a replica uploads an entry it already has \
                 (SQLite uses up an AUTOINCREMENT number for the ignored row); evsync numbers a log \
                 without gaps, so the cursors of replicas past the gap would point at other entries, \
                 and this log cannot move without its replicas reading it again"
            )));
        }
    }
    let twice: Option<(String, i64, i64)> = conn
        .query_row(
            &format!(
                "SELECT hex(entry_id), min(sequence), max(sequence) FROM {t} \
                 GROUP BY entry_id HAVING count(*) > 1 ORDER BY min(sequence) LIMIT 1"
            ),
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(fail("check its entry ids"))?;
    if let Some((id, first, second)) = twice {
        return Err(refused(format!(
            "table {table}: entry id {} is stored twice (sequences {first} and {second}); \
             evsync keeps an entry id once per log",
            id.to_ascii_lowercase()
        )));
    }
    Ok(count as u64)
}

/// `text` as an SQL string literal.
fn quoted_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Writes one checked log's entries, in sequence order.
fn copy_log(
    conn: &Connection,
    log: &EffectLog,
    writer: &mut ExportWriter,
    out: &mut impl Write,
) -> Result<(), EffectSqlError> {
    let fail = |what: &str| sql_failed(format!("table {}: cannot {what}", log.table));
    let mut stmt = conn
        .prepare(&format!(
            "SELECT sequence, iv, entry_id, encrypted_entry FROM {} ORDER BY sequence",
            quoted(&log.table)
        ))
        .map_err(fail("read its entries"))?;
    let mut rows = stmt.query([]).map_err(fail("read its entries"))?;
    let mut copied = 0u64;
    while let Some(row) = rows.next().map_err(fail("read its entries"))? {
        let sequence: i64 = row.get(0).map_err(fail("read a sequence"))?;
        let blob = |i: usize| -> Result<bytes::Bytes, EffectSqlError> {
            match row.get_ref(i).map_err(fail("read an entry"))? {
                ValueRef::Blob(b) => Ok(bytes::Bytes::copy_from_slice(b)),
                _ => Err(refused(format!(
                    "table {}: the entry with sequence {sequence} has a {} that is not bytes",
                    log.table, COLUMNS[i]
                ))),
            }
        };
        let entry = RemoteEntry {
            sequence: sequence as u64,
            iv: blob(1)?,
            entry_id: blob(2)?,
            encrypted_entry: blob(3)?,
        };
        let line = writer
            .entry(&log.public_key, &entry)
            .map_err(|e| refused(format!("table {}: {e}", log.table)))?;
        out.write_all(line.as_bytes())
            .map_err(EffectSqlError::Write)?;
        copied += 1;
    }
    if copied != log.entries {
        return Err(refused(format!(
            "table {}: {copied} entries read where {} were counted (the file changed while being read)",
            log.table, log.entries
        )));
    }
    Ok(())
}
