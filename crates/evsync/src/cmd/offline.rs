//! `evsync export`, `evsync import` and `evsync backup`: tenants of a data
//! directory, without a running server (export and backup also work beside
//! a running one: SQLite's WAL lets them read while it writes).

use super::admin::{check_export, partial_path};
use super::progress;
use clap::Args;
use evsync_core::access::is_valid_tenant;
use evsync_server::datadir::{self, STAGING_DIR, TRASH_DIR};
use evsync_server::tenant_ops::{export_file, install_staged, stage_import};
use evsync_storage_sqlite::{files, tenant_file_name, tenant_path};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct ExportArgs {
    /// The server's data directory.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The tenant to export.
    #[arg(long)]
    tenant: String,
    /// Where to write the export.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The data directory of a stopped server (its lock is taken).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The tenant to create.
    #[arg(long)]
    tenant: String,
    /// The export to load.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Replace the tenant's data if it has some.
    #[arg(long)]
    replace: bool,
}

#[derive(Args)]
pub struct BackupArgs {
    /// The data directory (the server may be running).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// A new directory for the copy; `evsync serve --data DIR2` serves it.
    #[arg(long, value_name = "DIR2")]
    out: PathBuf,
}

fn finish(outcome: Result<String, String>) -> ExitCode {
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn valid(tenant: &str) -> Result<(), String> {
    if is_valid_tenant(tenant) {
        Ok(())
    } else {
        Err(format!("{tenant:?} is not a valid tenant name"))
    }
}

/// Runs `evsync export`.
pub fn export(args: ExportArgs) -> ExitCode {
    finish((|| {
        valid(&args.tenant)?;
        let tenants = args.data.join("tenants");
        let partial = partial_path(&args.out);
        let mut file = std::fs::File::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let bar = progress::bytes_bar(&format!("exporting {}", args.tenant), None);
        let mut writer = bar.wrap_write(std::io::BufWriter::new(&mut file));
        let written = export_file(&tenants, &args.tenant, &mut writer);
        drop(writer);
        bar.finish_and_clear();
        let outcome = match written {
            Ok(Some(summary)) => file
                .sync_all()
                .map_err(|e| format!("cannot write {}: {e}", partial.display()))
                .and_then(|()| check_export(&partial))
                .and_then(|()| {
                    std::fs::rename(&partial, &args.out)
                        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))
                })
                .map(|()| {
                    format!(
                        "exported: {} to {} ({} logs, {} entries)",
                        args.tenant,
                        args.out.display(),
                        summary.logs,
                        summary.entries
                    )
                }),
            Ok(None) => Err(format!(
                "no tenant {} in {}",
                args.tenant,
                args.data.display()
            )),
            Err(e) => Err(format!("export failed: {e}")),
        };
        if outcome.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        outcome
    })())
}

/// Runs `evsync import`.
pub fn import(args: ImportArgs) -> ExitCode {
    finish((|| {
        valid(&args.tenant)?;
        // The lock proves no server runs on the directory (and empties
        // what a crash left in staging/trash).
        let _lock = datadir::prepare(&args.data)?;
        let mut file = std::fs::File::open(&args.input)
            .map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
        let total = file.metadata().map(|m| m.len()).ok();
        let bar = progress::bytes_bar(&format!("importing {}", args.tenant), total);
        let mut buf = vec![0u8; 256 * 1024];
        let staged = stage_import(&args.data.join(STAGING_DIR), &args.tenant, || {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("{}: {e}", args.input.display()))?;
            bar.inc(n as u64);
            Ok((n > 0).then(|| bytes::Bytes::copy_from_slice(&buf[..n])))
        });
        bar.finish_and_clear();
        let (staged, header, summary) = staged.map_err(|e| e.to_string())?;
        let replaced = install_staged(
            &args.data.join("tenants"),
            &args.data.join(TRASH_DIR),
            &staged,
            &args.tenant,
            args.replace,
        )
        .map_err(|e| {
            let _ = std::fs::remove_file(&staged);
            e.to_string()
        })?;
        Ok(format!(
            "imported: {} (remoteId {}, {} logs, {} entries{})",
            args.tenant,
            header.remote_id.to_uuid_string(),
            summary.logs,
            summary.entries,
            if replaced {
                ", replaced its old data"
            } else {
                ""
            }
        ))
    })())
}

/// Runs `evsync backup`: every tenant copied with `VACUUM INTO` (each copy
/// one consistent snapshot of its tenant, taken while writes go on).
pub fn backup(args: BackupArgs) -> ExitCode {
    finish((|| {
        let tenants = args.data.join("tenants");
        if !tenants.is_dir() {
            return Err(format!(
                "{} is not an evsync data directory (no tenants/)",
                args.data.display()
            ));
        }
        if args.out.exists()
            && std::fs::read_dir(&args.out)
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            return Err(format!("{} exists and is not empty", args.out.display()));
        }
        let out_tenants = args.out.join("tenants");
        std::fs::create_dir_all(&out_tenants)
            .map_err(|e| format!("cannot create {}: {e}", out_tenants.display()))?;
        let names = files::list_tenants(&tenants).map_err(|e| e.message)?;
        let bar = indicatif::ProgressBar::new(names.len() as u64);
        for tenant in &names {
            copy_tenant(&tenants, &out_tenants, tenant)?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        files::sync_dir(&out_tenants).map_err(|e| e.message)?;
        Ok(format!(
            "backed up: {} tenant(s) from {} to {}",
            names.len(),
            args.data.display(),
            args.out.display()
        ))
    })())
}

fn copy_tenant(from: &Path, to: &Path, tenant: &str) -> Result<(), String> {
    files::copy_store(
        &tenant_path(from, tenant),
        &to.join(tenant_file_name(tenant)),
    )
    .map_err(|e| format!("tenant {tenant}: {}", e.message))
}
