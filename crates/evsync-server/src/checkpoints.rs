//! A SQLite tenant's WAL checkpoints, run beside its writer lane instead of
//! inside its commits (`evsync_storage_sqlite::checkpoint` says why).
//!
//! The writer lane's connection defers its checkpoints and each commit
//! reports the WAL's size; when the WAL has grown by 1,000 pages since the
//! last checkpoint began ([`CheckpointSchedule`]), one runs on
//! a blocking thread with a connection of its own, at most one at a time
//! per tenant. Its end comes back to the tenant's actor as a
//! [`CheckpointDone`], so a tenant does not unload (and its file is not
//! moved or sealed) while one runs.

use evsync_storage_sqlite::checkpoint::{CheckpointSchedule, Checkpointed, Checkpointer};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A finished checkpoint.
pub(crate) struct CheckpointDone {
    /// The connection, to reuse (`None` if it could not be opened or the
    /// task panicked: the next checkpoint opens one).
    pub conn: Option<Checkpointer>,
    pub result: Result<Checkpointed, String>,
    pub took: Duration,
}

/// One tenant's checkpoints: whether one runs, and when the next is due.
#[derive(Default)]
pub(crate) struct Checkpoints {
    conn: Option<Checkpointer>,
    running: bool,
    schedule: CheckpointSchedule,
}

impl Checkpoints {
    /// A commit left the WAL at `wal_pages`: starts a checkpoint of `path`
    /// if the WAL has grown enough and none runs.
    pub fn committed<D: From<CheckpointDone> + Send + 'static>(
        &mut self,
        wal_pages: u32,
        path: &Path,
        done: &mpsc::UnboundedSender<D>,
    ) {
        if self.running || !self.schedule.due(wal_pages) {
            return;
        }
        self.running = true;
        let conn = self.conn.take();
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut conn = match conn {
                Some(conn) => conn,
                None => match Checkpointer::open(&path) {
                    Ok(conn) => conn,
                    Err(err) => return (None, Err(err.message), started.elapsed()),
                },
            };
            let result = conn.run().map_err(|err| err.message);
            (Some(conn), result, started.elapsed())
        });
        let done = done.clone();
        tokio::spawn(async move {
            let (conn, result, took) = task.await.unwrap_or_else(|err| {
                (
                    None,
                    Err(format!("checkpoint task failed: {err}")),
                    Duration::ZERO,
                )
            });
            let _ = done.send(CheckpointDone { conn, result, took }.into());
        });
    }

    /// The running checkpoint ended.
    pub fn finished(&mut self, conn: Option<Checkpointer>) {
        self.running = false;
        self.conn = conn;
    }

    /// No checkpoint runs.
    pub fn is_idle(&self) -> bool {
        !self.running
    }
}
