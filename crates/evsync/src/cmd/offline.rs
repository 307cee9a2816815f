//! `evsync export`, `evsync import` and `evsync backup`: tenants of a data
//! directory, without a running server (export and backup also work beside
//! a running one: SQLite's WAL lets them read while it writes).
//!
//! `evsync import --effect-sqlite FILE` loads a database of Effect's own
//! `SqlEventLogServer` instead of an export: converted on the fly
//! (`evsync_storage_sqlite::effect_sql`) and staged and installed exactly
//! like an export, so a source that is refused changes nothing.

use super::admin::{check_export, partial_path, v4_counts};
use super::progress;
use bytes::Bytes;
use clap::{ArgGroup, Args};
use evsync_core::access::is_valid_tenant;
use evsync_core::export::{ExportHeader, ExportSummary};
use evsync_server::datadir::{self, STAGING_DIR, TRASH_DIR};
use evsync_server::tenant_ops::{export_file, install_staged, stage_import};
use evsync_storage_sqlite::effect_sql::{EffectExport, EffectSqlError, export_effect_sqlite};
use evsync_storage_sqlite::{files, tenant_file_name, tenant_path};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

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
#[command(group(ArgGroup::new("source").required(true).args(["input", "effect_sqlite"])))]
pub struct ImportArgs {
    /// The data directory of a stopped server (its lock is taken).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The tenant to create.
    #[arg(long)]
    tenant: String,
    /// The export to load.
    #[arg(long = "in", value_name = "FILE")]
    input: Option<PathBuf>,
    /// Instead of an export: the SQLite database of Effect's own
    /// SqlEventLogServer (stopped), kept with its remoteId and sequences.
    #[arg(long, value_name = "FILE")]
    effect_sqlite: Option<PathBuf>,
    /// A publicKey whose log is in the Effect database (repeat for each):
    /// Effect's server stores only a hash of it, in the table's name.
    #[arg(long = "public-key", value_name = "KEY", requires = "effect_sqlite")]
    public_key: Vec<String>,
    /// A file of such publicKeys, one a line.
    #[arg(long = "public-keys", value_name = "FILE", requires = "effect_sqlite")]
    public_keys: Option<PathBuf>,
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
                        "exported: {} to {} ({} logs, {} entries{})",
                        args.tenant,
                        args.out.display(),
                        summary.logs,
                        summary.entries,
                        v4_counts(summary.stores, summary.batches, summary.bindings)
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
        let staging = args.data.join(STAGING_DIR);
        let (staged, header, summary, from_effect) = match (&args.input, &args.effect_sqlite) {
            (Some(input), _) => {
                let (staged, header, summary) = stage_export(&staging, &args.tenant, input)?;
                (staged, header, summary, None)
            }
            (None, Some(source)) => {
                let keys = public_keys(&args)?;
                let (staged, header, summary, report) =
                    stage_effect(&staging, &args.tenant, source, keys)?;
                (staged, header, summary, Some((source, report)))
            }
            (None, None) => return Err("give --in FILE or --effect-sqlite FILE".into()),
        };
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
        let mut message = format!(
            "imported: {}{} (remoteId {}, {} logs, {} entries{}{})",
            args.tenant,
            match &from_effect {
                Some((source, _)) => format!(
                    " from Effect's SqlEventLogServer database {}",
                    source.display()
                ),
                None => String::new(),
            },
            header.remote_id.to_uuid_string(),
            summary.logs,
            summary.entries,
            v4_counts(summary.stores, summary.batches, summary.bindings),
            if replaced {
                ", replaced its old data"
            } else {
                ""
            }
        );
        if let Some((_, report)) = &from_effect {
            if !report.skipped_empty_tables.is_empty() {
                message.push_str(&format!(
                    "\nskipped {} empty table(s) of publicKeys not given (replicas that only subscribed): {}",
                    report.skipped_empty_tables.len(),
                    report.skipped_empty_tables.join(", ")
                ));
            }
            if !report.keys_without_entries.is_empty() {
                message.push_str(&format!(
                    "\nno entries in the Effect database for publicKey(s): {}",
                    report.keys_without_entries.join(", ")
                ));
            }
        }
        Ok(message)
    })())
}

/// Stages an export file.
fn stage_export(
    staging: &Path,
    tenant: &str,
    input: &Path,
) -> Result<(PathBuf, ExportHeader, ExportSummary), String> {
    let mut file =
        std::fs::File::open(input).map_err(|e| format!("cannot open {}: {e}", input.display()))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let bar = progress::bytes_bar(&format!("importing {tenant}"), total);
    let mut buf = vec![0u8; 256 * 1024];
    let staged = stage_import(staging, tenant, || {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", input.display()))?;
        bar.inc(n as u64);
        Ok((n > 0).then(|| Bytes::copy_from_slice(&buf[..n])))
    });
    bar.finish_and_clear();
    staged.map_err(|e| e.to_string())
}

/// The publicKeys given with `--public-key` and `--public-keys FILE`.
fn public_keys(args: &ImportArgs) -> Result<Vec<String>, String> {
    let mut keys = args.public_key.clone();
    if let Some(path) = &args.public_keys {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(keys)
}

/// Stages Effect's database `source`: a thread converts it into export
/// lines, which go through the same staged import as a file (so the
/// converter's checks and the importer's both run before anything is
/// installed, and no export is written to disk).
fn stage_effect(
    staging: &Path,
    tenant: &str,
    source: &Path,
    keys: Vec<String>,
) -> Result<(PathBuf, ExportHeader, ExportSummary, EffectExport), String> {
    let (tx, rx) = mpsc::sync_channel::<Result<Bytes, String>>(4);
    let converter = {
        let (source, tenant) = (source.to_path_buf(), tenant.to_owned());
        std::thread::spawn(move || {
            let mut out = ChunkSender {
                buf: Vec::new(),
                tx: tx.clone(),
            };
            let converted = export_effect_sqlite(&source, &tenant, &keys, &mut out);
            if let Err(e) = &converted {
                let mut reason = format!("{}: {e}", source.display());
                if matches!(e, EffectSqlError::UnknownPublicKeys(_)) {
                    reason.push_str(" (with --public-key KEY or --public-keys FILE)");
                }
                // The importer then stops with this reason (unless it
                // stopped first: then nobody listens).
                let _ = tx.send(Err(reason));
            }
            converted
        })
    };
    let bar = progress::bytes_bar(&format!("importing {tenant} from Effect's database"), None);
    let staged = {
        let bar = &bar;
        stage_import(staging, tenant, move || match rx.recv() {
            Ok(Ok(chunk)) => {
                bar.inc(chunk.len() as u64);
                Ok(Some(chunk))
            }
            Ok(Err(reason)) => Err(reason),
            // the converter finished and dropped its sender
            Err(mpsc::RecvError) => Ok(None),
        })
    };
    bar.finish_and_clear();
    // `stage_import` dropped the receiver, so the converter cannot be
    // blocked on a send now.
    let converted = converter
        .join()
        .map_err(|_| "the conversion of Effect's database failed (panicked)".to_owned())?;
    let (staged, header, summary) = staged.map_err(|e| e.to_string())?;
    match converted {
        Ok(report) => Ok((staged, header, summary, report)),
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            Err(format!("import refused, nothing changed: {e}"))
        }
    }
}

/// The converter's output: lines gathered into chunks for the importer.
struct ChunkSender {
    buf: Vec<u8>,
    tx: mpsc::SyncSender<Result<Bytes, String>>,
}

impl ChunkSender {
    const CHUNK: usize = 256 * 1024;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the import stopped reading"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
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
