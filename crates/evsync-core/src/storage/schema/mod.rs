//! The schemas of the SQL backends and the one way they are migrated.
//!
//! The native server's SQLite files, Durable Object SQLite and D1 are all
//! SQLite dialects, so their tables are declared here, next to each other,
//! as versioned lists of plain SQL statements ([`Schema`]). Each backend
//! only supplies what really differs: how it runs a statement, and where it
//! records the version (SQLite's `user_version` header, a meta table in a
//! Durable Object, a one-row table in D1). The decision of what to run is
//! [`Schema::pending`], the same for all three:
//!
//! - a database at the current version runs nothing;
//! - an older one (0: empty) runs every missing step, oldest first, in ONE
//!   transaction together with recording the new version, so a database is
//!   never left half-migrated;
//! - a newer one (written by a later evsync) is refused rather than guessed
//!   at, with the same error everywhere.
//!
//! The layouts differ because their deployments do: a native tenant file
//! packs (log, sequence) into the rowid ([`sqlite`]), a Durable Object is a
//! tenant and keeps its logs by publicKey ([`do_sql`]), D1 holds every
//! tenant in one set of tables ([`d1`]). Databases written by earlier
//! builds keep their recorded version and open unchanged. Never edit a
//! released step: append a new one.
//!
//! A tenant's remoteId is made one way too: [`remote_id`].

pub mod d1;
pub mod do_sql;
pub mod remote_id;
pub mod sqlite;

use super::StorageError;

/// One step of a schema: the statements that move a database from
/// `version - 1` to `version`. One statement per string (D1 prepares each
/// on its own), run in order.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub statements: &'static [&'static str],
}

/// A backend's tables, as the steps that build them from an empty database.
#[derive(Debug)]
pub struct Schema {
    /// Names the storage in errors ("D1 storage", ...).
    pub name: &'static str,
    /// Oldest first; `steps[i].version == i + 1`.
    pub steps: &'static [Migration],
}

impl Schema {
    /// The version this build writes: the last step's.
    pub const fn version(&self) -> i64 {
        self.steps.len() as i64
    }

    /// The steps a database recorded at `stored` (0 when it records none)
    /// must run, oldest first; empty when it is current. A version newer
    /// than this build knows is an error.
    pub fn pending(&self, stored: i64) -> Result<&'static [Migration], StorageError> {
        let current = self.version();
        if stored > current {
            return Err(StorageError::new(format!(
                "{} was written by a newer evsync (schema version {stored}, this build knows up to {current})",
                self.name
            )));
        }
        if stored < 0 {
            return Err(StorageError::new(format!(
                "{} records an invalid schema version {stored}",
                self.name
            )));
        }
        Ok(&self.steps[stored as usize..])
    }

    /// The error for a failed step, the same wording for every backend.
    pub fn step_failed(&self, step: &Migration, cause: impl core::fmt::Display) -> StorageError {
        StorageError::new(format!(
            "{}: migration to schema version {} failed: {cause}",
            self.name, step.version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_numbers_its_steps_from_one() {
        for schema in [&sqlite::SCHEMA, &do_sql::SCHEMA, &d1::SCHEMA] {
            for (i, step) in schema.steps.iter().enumerate() {
                assert_eq!(step.version, i as i64 + 1, "{}", schema.name);
                assert!(!step.statements.is_empty(), "{}", schema.name);
            }
        }
    }

    #[test]
    fn pending_runs_what_is_missing_and_refuses_newer() {
        let schema = &sqlite::SCHEMA;
        assert_eq!(schema.pending(0).unwrap().len(), schema.steps.len());
        assert!(schema.pending(schema.version()).unwrap().is_empty());
        let err = schema.pending(schema.version() + 1).unwrap_err();
        assert!(err.message.contains("newer evsync"), "{err}");
        assert!(schema.pending(-1).is_err());
    }
}
