//! WAL checkpoints off the writer's path.
//!
//! In WAL mode every commit appends pages to the `-wal` file, and a
//! *checkpoint* copies them back into the database file (and fsyncs it) so
//! the WAL can start over. By default SQLite runs that checkpoint inside
//! the commit that takes the WAL past 1,000 pages: that writer then copies
//! ~4 MiB and waits for a second fsync before its caller hears that its
//! commit is durable. On the server, where an `Ack` waits for the commit,
//! that is a stall of every write in the group, and for batched writes it
//! was 15 % of the writer's time (2026-12-03, one writer of 100 × 1 KB
//! batches: 87–91 k entries/s with in-line checkpoints, 100–108 k with
//! none).
//!
//! So a writer connection can hand its checkpoints to another connection
//! ([`SqliteStorage::defer_checkpoints`]): each commit reports the WAL's
//! size ([`take_wal_pages`]), and the server runs a [`Checkpointer`] on a
//! thread of its own when the WAL has grown by [`CHECKPOINT_EVERY_PAGES`].
//! A checkpoint never changes what is durable (every commit already fsynced
//! the WAL): it only moves the same pages into the main file.
//!
//! A background checkpoint cannot always let the WAL start over: that
//! happens only when a writer begins a transaction after a checkpoint
//! copied *every* page, and a busy writer commits while one runs. So the
//! writer keeps a backstop: at [`BACKSTOP_PAGES`] it checkpoints in line,
//! as SQLite would, which by then copies only what the last background
//! checkpoint had not; its next transaction restarts the WAL. The WAL file
//! stays under ~`BACKSTOP_PAGES` pages (32 MiB), and `journal_size_limit`
//! truncates it when it restarts.

use crate::SqliteStorage;
use crate::error::sqlite_error;
use evsync_core::storage::StorageError;
use rusqlite::hooks::{CheckpointMode, Wal};
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::ffi::c_int;
use std::path::Path;

/// WAL growth, in pages (4 KiB), after which the server runs a background
/// checkpoint: SQLite's own default for its in-line one.
pub const CHECKPOINT_EVERY_PAGES: u32 = 1000;

/// WAL size, in pages, at which a writer that defers its checkpoints runs
/// one in line after all (see the module's doc).
pub const BACKSTOP_PAGES: u32 = 8000;

thread_local! {
    /// The WAL's size after the last commit on this thread by a connection
    /// that defers its checkpoints: SQLite calls the WAL hook on the
    /// committing thread, and a plain function is all the hook can be.
    static WAL_PAGES: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The WAL's size in pages after the last commit made on this thread by a
/// connection that defers its checkpoints, if one was made since the last
/// call. Call it on the thread that ran the commit, right after it.
pub fn take_wal_pages() -> Option<u32> {
    WAL_PAGES.with(Cell::take)
}

/// SQLite's WAL hook for a connection that defers its checkpoints: notes
/// the WAL's size, and checkpoints in line at the backstop. It never
/// fails: SQLite reports a hook's error as the commit's own, although the
/// commit has happened, and a failed checkpoint loses nothing (SQLite's
/// own automatic checkpoint ignores its errors too).
fn after_commit(wal: &Wal, pages: c_int) -> rusqlite::Result<()> {
    let pages = u32::try_from(pages).unwrap_or(0);
    WAL_PAGES.with(|cell| cell.set(Some(pages)));
    if pages >= BACKSTOP_PAGES {
        let _ = wal.checkpoint_v2(CheckpointMode::PASSIVE);
    }
    Ok(())
}

/// From now on `conn` does not checkpoint the WAL itself (until the
/// backstop) and reports the WAL's size after each commit through
/// [`take_wal_pages`]; the caller runs a [`Checkpointer`] when
/// [`CheckpointSchedule::due`] says.
pub fn defer_checkpoints(conn: &Connection) {
    // Replaces the hook `wal_autocheckpoint` installs.
    conn.wal_hook(Some(after_commit));
}

impl SqliteStorage {
    /// [`defer_checkpoints`] for this store's connection.
    pub fn defer_checkpoints(&self) {
        defer_checkpoints(&self.conn);
    }
}

/// When a writer that defers its checkpoints has one run: each time its
/// WAL has grown by [`CHECKPOINT_EVERY_PAGES`] since the last one began.
#[derive(Debug, Default)]
pub struct CheckpointSchedule {
    started_at_pages: u32,
}

impl CheckpointSchedule {
    /// A commit left the WAL at `wal_pages`, and no checkpoint runs: true
    /// if one should start now (it is then counted as started).
    pub fn due(&mut self, wal_pages: u32) -> bool {
        if wal_pages < self.started_at_pages {
            // The WAL started over since.
            self.started_at_pages = 0;
        }
        if wal_pages < self.started_at_pages + CHECKPOINT_EVERY_PAGES {
            return false;
        }
        self.started_at_pages = wal_pages;
        true
    }
}

/// What one checkpoint did, in WAL pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpointed {
    /// Pages in the WAL when it ran.
    pub wal_pages: u32,
    /// Of those, pages now in the database file.
    pub copied: u32,
}

/// A connection of its own that copies a tenant's WAL into its database
/// file (`PRAGMA wal_checkpoint(PASSIVE)`: it never waits for the writer or
/// for readers, it copies what it can).
pub struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    /// Opens `path`, which must exist (its writer created it).
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .and_then(|conn| crate::configure(&conn).map(|()| conn))
            .map_err(|e| StorageError::new(format!("cannot open {}: {e}", path.display())))?;
        Ok(Checkpointer { conn })
    }

    /// Runs one passive checkpoint.
    pub fn run(&mut self) -> Result<Checkpointed, StorageError> {
        let (wal_pages, copied): (i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok((row.get(1)?, row.get(2)?))
            })
            .map_err(sqlite_error("checkpoint"))?;
        Ok(Checkpointed {
            wal_pages: u32::try_from(wal_pages).unwrap_or(0),
            copied: u32::try_from(copied).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use evsync_core::storage::Storage;
    use evsync_core::storage::conformance::batch;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Appends `n` entries of 4 KiB (about a WAL page each) to alice's log.
    fn write(store: &mut SqliteStorage, n: u64) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let first = NEXT.fetch_add(n, Ordering::Relaxed);
        let ns: Vec<u64> = (first..first + n).collect();
        let mut batch = batch("alice", 1, &ns);
        for entry in &mut batch.entries {
            entry.encrypted_entry = Bytes::from(vec![7u8; 4096]);
        }
        store.append(&[batch]).unwrap();
    }

    #[test]
    fn a_checkpoint_is_due_every_thousand_pages_of_growth() {
        let mut schedule = CheckpointSchedule::default();
        assert!(!schedule.due(999));
        assert!(schedule.due(1000));
        assert!(!schedule.due(1999), "counted from where the last began");
        assert!(schedule.due(2400));
        assert!(!schedule.due(20), "the WAL started over");
        assert!(schedule.due(1020));
    }

    #[test]
    fn a_deferring_writer_reports_its_wal_and_leaves_the_copy_to_a_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let mut store = SqliteStorage::open(&path).unwrap();
        store.defer_checkpoints();
        assert_eq!(take_wal_pages(), None);
        let mut grown = 0;
        for _ in 0..30 {
            write(&mut store, 50);
            let pages = take_wal_pages().expect("each commit reports the WAL");
            assert!(pages > grown, "the WAL grows: {pages} after {grown}");
            grown = pages;
            assert_eq!(take_wal_pages(), None, "taken once");
        }
        // Past SQLite's default of 1,000 pages, nothing was copied in line.
        assert!(grown > CHECKPOINT_EVERY_PAGES, "{grown} pages");
        let mut checkpointer = Checkpointer::open(&path).unwrap();
        let done = checkpointer.run().unwrap();
        assert_eq!(done.wal_pages, grown);
        assert_eq!(done.copied, grown, "no reader holds the WAL: all copied");
        // The next commit starts the WAL over.
        write(&mut store, 1);
        assert!(take_wal_pages().unwrap() < grown);
        assert_eq!(store.head("alice").unwrap(), 1501);
    }

    #[test]
    fn the_backstop_checkpoints_in_line_so_the_wal_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let mut store = SqliteStorage::open(&path).unwrap();
        store.defer_checkpoints();
        let mut most = 0;
        for _ in 0..150 {
            write(&mut store, 100);
            most = most.max(take_wal_pages().unwrap());
        }
        // 15,000 entries of 4 KiB: ~4 pages each, well past the backstop
        // several times over; the WAL started over each time.
        assert!(most >= BACKSTOP_PAGES, "{most}");
        assert!(most < BACKSTOP_PAGES + 1000, "{most}");
        let wal = std::fs::metadata(path.with_extension("sqlite-wal")).unwrap();
        assert!(
            wal.len() < u64::from(BACKSTOP_PAGES + 1000) * 4200,
            "{}",
            wal.len()
        );
        assert_eq!(store.head("alice").unwrap(), 15_000);
    }
}
