//! What both SQL backends share: deciding the sequence of every entry of an
//! append (new or duplicate), packing rows into statements that bind at
//! most [`MAX_BOUND_PARAMETERS`] values, and the catch-up read.
//!
//! Durable Object SQLite and D1 refuse statements with more than 100 bound
//! parameters. The original worker inserted 200 rows × 3 columns at once and
//! so never acknowledged a batch of more than 33 entries; here any batch is
//! split into as many statements as it needs, inside one transaction.

use bytes::Bytes;
use evsync_core::storage::{AppendBatch, Appended};
use evsync_core::wire::{EncryptedEntry, Sequence};
use std::collections::HashMap;
use std::ops::Range;

/// The platform's limit on bound parameters per statement.
pub const MAX_BOUND_PARAMETERS: usize = 100;

/// Bytes of entry data bound in one insert statement (a single larger
/// entry still goes alone). Keeps each statement's payload well under the
/// platform's request limits while 32 small rows still share one.
pub const MAX_STATEMENT_BYTES: usize = 1_000_000;

/// Entries already stored, by (publicKey, entryId): their sequence.
pub type Existing = HashMap<(String, Bytes), Sequence>;

/// One row to insert.
#[derive(Debug)]
pub struct NewRow<'a> {
    /// Index of the batch (in the append call) the entry came from; rows of
    /// one statement share their batch's publicKey and iv.
    pub batch: usize,
    pub sequence: Sequence,
    pub entry: &'a EncryptedEntry,
}

/// The outcome of an append before it is written.
#[derive(Debug)]
pub struct AppendPlan<'a> {
    /// One [`Appended`] per entry, per batch, in request order.
    pub outcomes: Vec<Vec<Appended>>,
    /// The entries to insert, grouped by batch, in sequence order per log.
    pub rows: Vec<NewRow<'a>>,
}

/// Decides every entry's sequence: an entry already stored (in `existing`,
/// or earlier in this call) keeps its sequence; a new one takes the next
/// after its log's head (`heads`, missing means 0).
pub fn plan_append<'a>(
    batches: &'a [AppendBatch],
    existing: &Existing,
    heads: &HashMap<String, Sequence>,
) -> AppendPlan<'a> {
    let mut next: HashMap<&str, Sequence> = HashMap::new();
    let mut added: HashMap<(&str, &[u8]), Sequence> = HashMap::new();
    let mut outcomes = Vec::with_capacity(batches.len());
    let mut rows = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        let key = batch.public_key.as_str();
        let mut outcome = Vec::with_capacity(batch.entries.len());
        for entry in &batch.entries {
            let stored = existing
                .get(&(batch.public_key.clone(), entry.entry_id.clone()))
                .or_else(|| added.get(&(key, &entry.entry_id[..])))
                .copied();
            if let Some(sequence) = stored {
                outcome.push(Appended {
                    sequence,
                    inserted: false,
                });
                continue;
            }
            let head = next
                .entry(key)
                .or_insert_with(|| heads.get(key).copied().unwrap_or(0));
            *head += 1;
            let sequence = *head;
            added.insert((key, &entry.entry_id[..]), sequence);
            rows.push(NewRow {
                batch: index,
                sequence,
                entry,
            });
            outcome.push(Appended {
                sequence,
                inserted: true,
            });
        }
        outcomes.push(outcome);
    }
    AppendPlan { outcomes, rows }
}

/// Splits `rows` into runs for multi-row inserts: rows of one batch only,
/// at most `(MAX_BOUND_PARAMETERS - fixed) / per_row` rows and
/// [`MAX_STATEMENT_BYTES`] of entry data per run (at least one row).
pub fn insert_runs(rows: &[NewRow<'_>], fixed: usize, per_row: usize) -> Vec<Range<usize>> {
    let max_rows = (MAX_BOUND_PARAMETERS - fixed) / per_row;
    assert!(max_rows >= 1, "a row must fit in one statement");
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, row) in rows.iter().enumerate() {
        let size = row.entry.entry_id.len() + row.entry.encrypted_entry.len();
        let full = i - start >= max_rows
            || rows[start].batch != row.batch
            || (i > start && bytes + size > MAX_STATEMENT_BYTES);
        if full {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < rows.len() {
        runs.push(start..rows.len());
    }
    runs
}

/// `INSERT … SELECT <fixed>, column1, … FROM (VALUES (…), (…))`: binds the
/// `fixed` values (?1..?fixed) once and `per_row` values per row after them.
/// `head` is everything up to and including `SELECT`, `select` the select
/// list naming the fixed parameters and the `columnN` of the rows.
pub fn multi_row_insert(
    head: &str,
    select: &str,
    fixed: usize,
    per_row: usize,
    rows: usize,
) -> String {
    let mut sql = format!("{head} {select} FROM (VALUES ");
    let mut param = fixed;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..per_row {
            if col > 0 {
                sql.push_str(", ");
            }
            param += 1;
            sql.push_str(&format!("?{param}"));
        }
        sql.push(')');
    }
    sql.push(')');
    debug_assert!(param <= MAX_BOUND_PARAMETERS);
    sql
}

/// Splits `ids` into lookups of at most `MAX_BOUND_PARAMETERS - fixed` ids.
pub fn lookup_chunks<T>(ids: &[T], fixed: usize) -> std::slice::Chunks<'_, T> {
    ids.chunks(MAX_BOUND_PARAMETERS - fixed)
}

/// `?{first}, ?{first+1}, …` for `n` parameters, for `IN (…)` lists.
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The catch-up read of one log: rows from a sequence on, at most N rows
/// and M bytes, `sequence, iv, entry_id, encrypted_entry` in order. The
/// byte budget is applied in SQL (a running total; the first row always
/// passes), so no row is shipped only to be dropped and every cursor is
/// read to its end (a half-read DO SQL cursor keeps its statement open and
/// blocks schema changes). `log` is the condition that picks the log with
/// parameters before `?{first}`; then `?{first}` is the first sequence,
/// the next the row limit and the next the byte limit.
pub fn read_sql(log: &str, first: usize) -> String {
    let (from, rows, bytes) = (first, first + 1, first + 2);
    format!(
        "SELECT sequence, iv, entry_id, encrypted_entry FROM (
            SELECT sequence, iv, entry_id, encrypted_entry,
                SUM(length(iv) + length(entry_id) + length(encrypted_entry))
                    OVER (ORDER BY sequence ROWS UNBOUNDED PRECEDING) AS running,
                ROW_NUMBER() OVER (ORDER BY sequence) AS n
            FROM (
                SELECT sequence, iv, entry_id, encrypted_entry FROM evsync_entries
                WHERE {log} AND sequence >= ?{from}
                ORDER BY sequence LIMIT ?{rows}
            )
        ) WHERE n = 1 OR running <= ?{bytes} ORDER BY sequence"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use evsync_core::storage::conformance::batch;

    #[test]
    fn sequences_and_duplicates() {
        let batches = vec![
            batch("a", 1, &[1, 2, 1]),
            batch("b", 1, &[2]),
            batch("a", 2, &[3, 9]),
        ];
        let mut existing = Existing::new();
        existing.insert(("a".into(), batches[2].entries[1].entry_id.clone()), 4);
        let heads = HashMap::from([("a".to_string(), 5)]);
        let plan = plan_append(&batches, &existing, &heads);
        let seqs: Vec<Vec<u64>> = plan
            .outcomes
            .iter()
            .map(|o| o.iter().map(|a| a.sequence).collect())
            .collect();
        assert_eq!(seqs, vec![vec![6, 7, 6], vec![1], vec![8, 4]]);
        assert_eq!(plan.rows.len(), 4);
    }

    #[test]
    fn runs_respect_the_parameter_limit() {
        let batches = vec![
            batch("a", 1, &(0..1000).collect::<Vec<_>>()),
            batch("a", 2, &[5000]),
        ];
        let plan = plan_append(&batches, &Existing::new(), &HashMap::new());
        let runs = insert_runs(&plan.rows, 3, 3);
        assert!(runs.iter().all(|r| 3 + 3 * r.len() <= MAX_BOUND_PARAMETERS));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 1001);
        assert_eq!(
            runs.last().unwrap().len(),
            1,
            "a new batch starts a new run"
        );
        let sql = multi_row_insert(
            "INSERT INTO t (a, b, c) SELECT",
            "?1, column1, column2",
            1,
            2,
            2,
        );
        assert_eq!(
            sql,
            "INSERT INTO t (a, b, c) SELECT ?1, column1, column2 FROM (VALUES (?2, ?3), (?4, ?5))"
        );
    }
}
