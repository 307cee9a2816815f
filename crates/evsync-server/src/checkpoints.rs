//! A SQLite tenant's WAL checkpoints, run beside its writer lane instead of
//! inside its commits (`evsync_storage_sqlite::checkpoint` says why).
//!
//! The writer lane's connection defers its checkpoints and each commit
//! reports the WAL's size; when the WAL has grown by 1,000 pages since the
//! last checkpoint began ([`CheckpointSchedule`]), one runs on a blocking
//! thread, at most one at a time per tenant. Its end comes back to the
//! tenant's actor as a [`CheckpointDone`], so a tenant does not unload (and
//! its file is not moved or sealed) while one runs.
//!
//! Each checkpoint opens a connection of its own and closes it when done:
//! opening costs a fraction of a millisecond against the tens of
//! milliseconds a checkpoint of ~4 MiB takes, and a loaded tenant that
//! writes rarely then holds no third connection (file descriptors, memory)
//! for it.

use evsync_storage_sqlite::checkpoint::{CheckpointSchedule, Checkpointed, Checkpointer};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A finished checkpoint.
pub(crate) struct CheckpointDone {
    pub result: Result<Checkpointed, String>,
    pub took: Duration,
}

/// One tenant's checkpoints: whether one runs, and when the next is due.
#[derive(Default)]
pub(crate) struct Checkpoints {
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
        let path = path.to_path_buf();
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = Checkpointer::open(&path)
                .and_then(|mut conn| conn.run())
                .map_err(|err| err.message);
            (result, started.elapsed())
        });
        let done = done.clone();
        tokio::spawn(async move {
            let (result, took) = task.await.unwrap_or_else(|err| {
                (
                    Err(format!("checkpoint task failed: {err}")),
                    Duration::ZERO,
                )
            });
            let _ = done.send(CheckpointDone { result, took }.into());
        });
    }

    /// The running checkpoint ended.
    pub fn finished(&mut self) {
        self.running = false;
    }

    /// No checkpoint runs.
    pub fn is_idle(&self) -> bool {
        !self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_checkpoint_at_a_time_when_due_and_a_failure_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        // Never created: the checkpoint cannot open it.
        let missing = dir.path().join("gone.sqlite");
        let (tx, mut rx) = mpsc::unbounded_channel::<CheckpointDone>();
        let mut checkpoints = Checkpoints::default();
        checkpoints.committed(999, &missing, &tx);
        assert!(checkpoints.is_idle(), "not due below 1,000 pages");
        checkpoints.committed(1000, &missing, &tx);
        assert!(!checkpoints.is_idle());
        checkpoints.committed(5000, &missing, &tx);
        let done = rx.recv().await.expect("the checkpoint reports");
        let err = done.result.expect_err("no file to open");
        assert!(err.contains("cannot open"), "{err}");
        assert!(rx.try_recv().is_err(), "one ran, not two");
        checkpoints.finished();
        assert!(checkpoints.is_idle());
    }
}
