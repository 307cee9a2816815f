//! The highest sequence seen per (remoteId, publicKey): where to resume.
//!
//! Sequences belong to one stored log: a server that answers `Hello` with a
//! new remoteId has other data (or lost it), and its sequences say nothing
//! about the old ones. So positions are kept per remoteId, and a new remoteId
//! starts from 0. Kept in memory, or in a JSON file replaced atomically
//! (write a temporary file beside it, fsync, rename) so a crash leaves either
//! the old or the new positions, never a torn file.

use evsync_core::wire::{RemoteId, Sequence};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Positions: remoteId (UUID text) → publicKey → highest sequence seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    #[serde(default)]
    pub remotes: BTreeMap<String, BTreeMap<String, Sequence>>,
}

impl SyncState {
    /// The highest sequence seen of `public_key`'s log on `remote`, 0 if none.
    pub fn last_sequence(&self, remote: &RemoteId, public_key: &str) -> Sequence {
        self.remotes
            .get(&remote.to_uuid_string())
            .and_then(|logs| logs.get(public_key))
            .copied()
            .unwrap_or(0)
    }

    /// Records `sequence` as seen; never moves a position backwards.
    pub fn advance(&mut self, remote: &RemoteId, public_key: &str, sequence: Sequence) {
        let slot = self
            .remotes
            .entry(remote.to_uuid_string())
            .or_default()
            .entry(public_key.to_owned())
            .or_insert(0);
        *slot = (*slot).max(sequence);
    }

    /// Sets a position exactly (e.g. `--from`), possibly backwards.
    pub fn set(&mut self, remote: &RemoteId, public_key: &str, sequence: Sequence) {
        self.remotes
            .entry(remote.to_uuid_string())
            .or_default()
            .insert(public_key.to_owned(), sequence);
    }
}

/// Where [`SyncState`] lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StateStore {
    /// Lost when the process ends: a new process starts from sequence 0
    /// (or `Config::start_sequence`).
    #[default]
    Memory,
    /// A JSON file, read at connect and rewritten after each batch.
    File(PathBuf),
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not valid state JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StateStore {
    /// Reads the stored state; a missing file is an empty state.
    pub fn load(&self) -> Result<SyncState, StateError> {
        let StateStore::File(path) = self else {
            return Ok(SyncState::default());
        };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Json {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SyncState::default()),
            Err(source) => Err(StateError::Io {
                path: path.clone(),
                source,
            }),
        }
    }

    /// Stores `state` (atomically for a file).
    pub fn save(&self, state: &SyncState) -> Result<(), StateError> {
        let StateStore::File(path) = self else {
            return Ok(());
        };
        write_atomically(
            path,
            &serde_json::to_vec_pretty(state).expect("state serializes"),
        )
        .map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_per_remote_and_never_go_back() {
        let (a, b) = (RemoteId([1; 16]), RemoteId([2; 16]));
        let mut s = SyncState::default();
        s.advance(&a, "pk", 5);
        s.advance(&a, "pk", 3);
        assert_eq!(s.last_sequence(&a, "pk"), 5);
        assert_eq!(s.last_sequence(&b, "pk"), 0);
        assert_eq!(s.last_sequence(&a, "other"), 0);
        s.set(&a, "pk", 2);
        assert_eq!(s.last_sequence(&a, "pk"), 2);
    }

    #[test]
    fn file_store_round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::File(dir.path().join("state.json"));
        assert_eq!(store.load().unwrap(), SyncState::default());
        let mut s = SyncState::default();
        s.advance(&RemoteId([3; 16]), "pk", 42);
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left");
        std::fs::write(dir.path().join("state.json"), b"{oops").unwrap();
        assert!(matches!(store.load(), Err(StateError::Json { .. })));
    }
}
