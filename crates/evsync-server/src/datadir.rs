//! The data directory: created and checked at start, and locked so that
//! two servers never share it (each tenant's engine must be the only writer
//! of its logs, or live changes would miss the other server's writes).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "evsync.lock";

/// Holds the data directory's lock until dropped (process exit).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Where imports build a tenant's new store before it replaces the old one
/// with one rename (same file system as `tenants/`).
pub const STAGING_DIR: &str = "staging";
/// Where a deleted tenant's file goes (one rename) before it is deleted.
pub const TRASH_DIR: &str = "trash";

/// Creates `<data_dir>/tenants/` (and the staging and trash directories,
/// emptied: what a crash left there is an unfinished import or a deleted
/// tenant), proves the directory is writable and takes its lock. The
/// error says what is wrong, in one line.
pub fn prepare(data_dir: &Path) -> Result<DataDirLock, String> {
    let tenants = data_dir.join("tenants");
    std::fs::create_dir_all(&tenants)
        .map_err(|e| format!("cannot create {}: {e}", tenants.display()))?;
    let lock_path = data_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot write in {}: {e}", data_dir.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(format!(
                "{} is in use by another evsync server",
                data_dir.display()
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!("cannot lock {}: {e}", lock_path.display()));
        }
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| format!("cannot write in {}: {e}", data_dir.display()))?;
    // Only under the lock: another server's import may be staging there.
    for name in [STAGING_DIR, TRASH_DIR] {
        let dir = data_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_tenants_dir_and_refuses_a_second_lock() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join(STAGING_DIR)).unwrap();
        std::fs::write(data.join(STAGING_DIR).join("half-imported"), b"x").unwrap();
        let lock = prepare(&data).unwrap();
        assert!(data.join("tenants").is_dir());
        assert!(data.join(TRASH_DIR).is_dir());
        assert_eq!(
            std::fs::read_dir(data.join(STAGING_DIR)).unwrap().count(),
            0,
            "staging emptied"
        );
        let err = prepare(&data).unwrap_err();
        assert!(err.contains("in use by another evsync server"), "{err}");
        drop(lock);
        prepare(&data).expect("the lock is released on drop");
    }

    #[test]
    fn a_file_in_the_way_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("file");
        std::fs::write(&data, b"x").unwrap();
        let err = prepare(&data).unwrap_err();
        assert!(err.starts_with("cannot create"), "{err}");
    }
}
