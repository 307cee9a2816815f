//! Whole-file operations on tenant stores: seal, remove, install, copy.
//!
//! A tenant is one file, so deleting, replacing (an import) and backing up
//! a tenant are file operations, made crash-safe with one rule: a file is
//! moved only when it is *sealed*, i.e. its WAL checkpointed into it and
//! the `-wal` and `-shm` files gone (journal mode DELETE), so that the one
//! `rename` — atomic on POSIX file systems — moves the whole tenant. A WAL
//! left beside a path whose file was moved away could otherwise be replayed
//! into the next database created at that path. Every connection to the
//! file must be closed before (the server unloads the tenant first).

use crate::{configure, paths};
use evsync_core::storage::StorageError;
use rusqlite::{Connection, OpenFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

fn io_error(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = format!("{what} {}", path.display());
    move |e| StorageError::new(format!("{context}: {e}"))
}

/// Checkpoints `path`'s WAL into it and removes the `-wal` and `-shm`
/// files, leaving one self-contained file (fsynced). The next
/// [`SqliteStorage::open`](crate::SqliteStorage::open) turns WAL back on.
pub fn seal(path: &Path) -> Result<(), StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StorageError::new(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .and_then(|()| conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(())))
        .map_err(|e| StorageError::new(format!("cannot seal {}: {e}", path.display())))?;
    drop(conn);
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync", path))
}

/// Removes `tenant`'s store from `tenants_dir`: sealed, then moved into
/// `trash_dir` (same file system) with one rename, then deleted. A crash
/// before the rename leaves the whole tenant; after it, none of it (the
/// trash is emptied at the next start). Returns false if there was no
/// store.
pub fn remove_tenant(
    tenants_dir: &Path,
    trash_dir: &Path,
    tenant: &str,
) -> Result<bool, StorageError> {
    let path = paths::tenant_path(tenants_dir, tenant);
    if !path.exists() {
        return Ok(false);
    }
    seal(&path)?;
    let trashed = trash_dir.join(unique_name(&paths::tenant_file_name(tenant)));
    std::fs::rename(&path, &trashed).map_err(io_error("cannot move away", &path))?;
    sync_dir(tenants_dir)?;
    std::fs::remove_file(&trashed).map_err(io_error("cannot delete", &trashed))?;
    Ok(true)
}

/// Puts the sealed store `staged` (on the same file system) in `tenant`'s
/// place with one rename, replacing any store there (which must be sealed
/// or absent: see [`remove_tenant`] for taking it away first).
pub fn install_tenant(staged: &Path, tenants_dir: &Path, tenant: &str) -> Result<(), StorageError> {
    let path = paths::tenant_path(tenants_dir, tenant);
    std::fs::rename(staged, &path).map_err(io_error("cannot install", &path))?;
    sync_dir(tenants_dir)
}

/// Writes a consistent copy of the store at `path` to `out` (which must
/// not exist) with `VACUUM INTO`: one read transaction, so the copy is the
/// store as of one commit, while the server keeps writing (WAL readers do
/// not block writers). The copy is compact and sealed.
pub fn copy_store(path: &Path, out: &Path) -> Result<(), StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StorageError::new(format!("cannot open {}: {e}", path.display())))?;
    configure(&conn)
        .map_err(|e| StorageError::new(format!("cannot configure {}: {e}", path.display())))?;
    let target = out
        .to_str()
        .ok_or_else(|| StorageError::new(format!("{} is not UTF-8", out.display())))?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(|e| {
        StorageError::new(format!(
            "cannot copy {} to {}: {e}",
            path.display(),
            out.display()
        ))
    })?;
    File::open(out)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync", out))
}

/// The tenants whose stores are in `tenants_dir`, sorted by name. Files
/// that are not tenant stores (a `-wal`, a stray file) are skipped.
pub fn list_tenants(tenants_dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut tenants = Vec::new();
    let entries = std::fs::read_dir(tenants_dir).map_err(io_error("cannot list", tenants_dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("cannot list", tenants_dir))?;
        if let Some(tenant) = entry
            .file_name()
            .to_str()
            .and_then(paths::tenant_from_file_name)
        {
            tenants.push(tenant);
        }
    }
    tenants.sort();
    Ok(tenants)
}

/// Bytes `tenant`'s store takes on disk: the file and its `-wal`.
pub fn disk_bytes(tenants_dir: &Path, tenant: &str) -> u64 {
    let path = paths::tenant_path(tenants_dir, tenant);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path, wal]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("cannot sync", dir))
}

/// `name` made unique within a process run (time and process id), for
/// staged and trashed files.
pub fn unique_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{name}.{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
