//! Commands on local runs and bundle files: `ls`, `bundle`, `upload`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use tidelog::core::bundle::{read_bundle, sha256_hex, write_bundle, Bundle, Limits};
use tidelog::core::log_index::LogIndex;
use tidelog::core::sync::{deliver, PendingUpload, RunStore, SyncOptions};
use tidelog::native::layout::{discover, is_run_dir, runs_in};
use tidelog::native::store::RunDir;
use tidelog::native::transport::HttpTransport;

use super::credentials;
use super::run_cmd::record_crashed_output;

#[derive(Args)]
pub struct LsArgs {
    /// Folder to look under (default: the current directory).
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct BundleArgs {
    /// Run folders (or `tidelog/` folders) to bundle.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Folder to write the `.tar.gz` bundles into.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
}

#[derive(Args)]
pub struct UploadArgs {
    /// Bundle files written by `tidelog bundle`.
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
    /// Server base URL.
    #[arg(long)]
    server: Option<String>,
}

/// Every run under `dir`: `dir` itself when it is a run folder, its runs when it is a
/// `tidelog/` folder, and those of every `tidelog/` folder below it; a missing `dir` is an
/// error rather than an empty list, so a typo is not mistaken for "no runs".
pub(super) fn runs_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "not a folder"
        } else {
            "no such folder"
        };
        bail!("{}: {what}", dir.display());
    }
    if is_run_dir(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut runs = runs_in(dir).with_context(|| format!("reading {}", dir.display()))?;
    runs.extend(discover(dir).with_context(|| format!("reading {}", dir.display()))?);
    runs.sort();
    runs.dedup();
    Ok(runs)
}

/// The run folders named on the command line (run or `tidelog/` folders, or folders with
/// `tidelog/` folders under them); none named: every run under the current directory.
pub(super) fn select(args: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if args.is_empty() {
        return runs_under(Path::new("."));
    }
    let mut out = Vec::new();
    for a in args {
        let runs = runs_under(a)?;
        if runs.is_empty() {
            bail!(
                "{} holds no runs (no records.tlog in it, nor a tidelog/ folder under it)",
                a.display()
            );
        }
        out.extend(runs.into_iter().filter(|r| !out.contains(r)).collect::<Vec<_>>());
    }
    Ok(out)
}

pub fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(|| PathBuf::from("."));
    let runs = runs_under(&dir)?;
    if runs.is_empty() {
        println!("no runs under this folder");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<48} {:<10} {:<20} {:<9} {:>8} {:>9}",
        "RUN", "ID", "PROJECT", "STATE", "RECORDS", "UNSYNCED"
    );
    for path in runs {
        let run = RunDir::new(&path);
        match run.status() {
            Ok(s) => {
                println!(
                    "{:<48} {:<10} {:<20} {:<9} {:>8} {:>9}",
                    path.display(),
                    s.id,
                    s.project,
                    s.state.as_str(),
                    s.records,
                    s.unsynced
                );
                if let Some(note) = s.corruption_note() {
                    println!("  {note}");
                }
            }
            Err(e) => println!("{:<48} unreadable: {e}", path.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bundle(a: BundleArgs) -> anyhow::Result<ExitCode> {
    fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let opts = SyncOptions::default();
    for path in &select(&a.runs)? {
        let run = RunDir::new(path);
        if let Err(e) = record_crashed_output(&run) {
            eprintln!("tidelog: warning: {}: {e:#}", path.display());
        }
        let log = run.log_bytes()?;
        let index = LogIndex::new(&log)?;
        let info = index.run().cloned().context("the log has no start record")?;
        let state = index.state(run.is_live());
        let mut start = run.saved_progress()?.acked_records.min(index.len());
        if start == index.len() {
            println!(
                "nothing to bundle for {}: the server acknowledged all {} records",
                path.display(),
                index.len()
            );
        }
        while start < index.len() {
            let range = index.plan(start, opts.max_bundle_log_bytes);
            let last = range.end == index.len();
            let files = index
                .files(range.clone())
                .iter()
                .map(|f| run.file_bytes(f).map(|data| (f.sha256.clone(), data)))
                .collect::<Result<Vec<_>, _>>()?;
            let b = write_bundle(
                &index,
                &info,
                if last { state } else { tidelog::RunState::Running },
                range.clone(),
                &files,
            )?;
            let file = a
                .out
                .join(format!("{}-{:08}-{:08}.tar.gz", info.id, range.start, range.end));
            fs::write(&file, &b.bytes).with_context(|| format!("writing {}", file.display()))?;
            println!("{}  {} bytes  sha256 {}", file.display(), b.bytes.len(), b.sha256);
            start = range.end;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn upload(a: UploadArgs) -> anyhow::Result<ExitCode> {
    let server = credentials::server(a.server.as_deref())?;
    let Some((server, key)) = credentials::require(Some(&server))? else {
        return Ok(ExitCode::from(2));
    };
    let mut t = HttpTransport::new(&server, &key, Duration::from_secs(30));
    let opts = SyncOptions::default();
    let mut failed = 0;
    for path in &a.bundles {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest = match read_bundle(&bytes, &Limits::default()) {
            Ok(contents) => contents.manifest,
            Err(e) => {
                failed += 1;
                eprintln!("failed {}: not a tidelog bundle: {e}", path.display());
                continue;
            }
        };
        let bundle = Bundle {
            sha256: sha256_hex(&bytes),
            bytes,
            manifest,
            dropped_values: 0,
        };
        let mut upload: Option<PendingUpload> = None;
        match pollster::block_on(deliver(&mut t, &opts, &bundle, &mut upload, &mut |_| {})) {
            Ok(ack) => println!(
                "uploaded {}: {} rows added, {} duplicates skipped",
                path.display(),
                ack.rows_added,
                ack.duplicates_skipped
            ),
            Err(e) => {
                failed += 1;
                eprintln!("failed {}: {e}", path.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
