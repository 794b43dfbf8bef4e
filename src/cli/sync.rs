//! `tidelog sync`: upload every unsynced run, exactly once, resuming where a previous
//! sync stopped.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tidelog::core::folder::{corruption_note, run_id_of_path};
use tidelog::core::sync::{sync_run, RunStore, SyncError, SyncOptions, SyncReport, TransportError};
use tidelog::native::layout::{read_json, runs_in, write_json_atomic, LatestSpec, LATEST_SPEC, RECORDS};
use tidelog::native::store::RunDir;
use tidelog::native::transport::HttpTransport;
use tidelog::RunState;

use super::credentials;
use super::local::select;
use super::run_cmd::record_crashed_output;

#[derive(Args)]
pub struct SyncArgs {
    /// Run folders (or `tidelog/` folders) to sync; default: every run under the current directory.
    runs: Vec<PathBuf>,
    /// Delete each run's folder once it has finished (or crashed) and the server acknowledged
    /// all of it, also runs synced earlier; `tidelog/latest.spec` then names the newest
    /// remaining run, or is removed with the last one.
    #[arg(long)]
    clean: bool,
    /// Also re-send runs already synced (the server skips what it has).
    #[arg(long)]
    include_synced: bool,
    /// List what would be synced; upload nothing.
    #[arg(long)]
    view: bool,
    /// Server base URL (default: $TIDELOG_BASE_URL, the stored login, or http://127.0.0.1:8080).
    #[arg(long)]
    server: Option<String>,
    /// Upload under this project instead of each run's own.
    #[arg(long)]
    project: Option<String>,
    /// Upload under this entity instead of each run's own.
    #[arg(long)]
    entity: Option<String>,
    /// Runs uploaded in parallel.
    #[arg(short = 'n', long, default_value_t = 4)]
    parallel: usize,
    /// Connect and idle timeout, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub fn sync(a: SyncArgs) -> anyhow::Result<ExitCode> {
    let all: Vec<RunDir> = select(&a.runs)?.into_iter().map(RunDir::new).collect();
    if !a.view {
        for r in &all {
            if let Err(e) = record_crashed_output(r) {
                eprintln!("tidelog: warning: {}: {e:#}", r.path().display());
            }
        }
    }
    let (runs, synced): (Vec<RunDir>, Vec<RunDir>) =
        all.into_iter().partition(|r| a.include_synced || !r.is_synced());
    if a.view {
        if runs.is_empty() {
            println!("nothing to sync");
        }
        if a.project.is_some() || a.entity.is_some() {
            println!(
                "uploading under{}{}",
                a.project
                    .as_ref()
                    .map(|p| format!(" --project {p}"))
                    .unwrap_or_default(),
                a.entity
                    .as_ref()
                    .map(|e| format!(" --entity {e}"))
                    .unwrap_or_default()
            );
        }
        if a.clean {
            for r in synced.iter().filter(|r| deletable(r)) {
                println!("would delete {} (already synced)", r.path().display());
            }
        }
        for r in &runs {
            let s = r
                .status()
                .with_context(|| format!("reading {}", r.path().display()))?;
            let project = match &a.project {
                Some(p) if *p != s.project => format!("{p} (run's own: {})", s.project),
                _ => s.project.clone(),
            };
            let entity = a
                .entity
                .as_ref()
                .map(|e| format!(" entity={e}"))
                .unwrap_or_default();
            let delete = if a.clean && s.state != RunState::Running {
                "  (would delete once acknowledged)"
            } else {
                ""
            };
            println!(
                "{}  id={} project={project}{entity} state={} unsynced_records={}{delete}",
                r.path().display(),
                s.id,
                s.state.as_str(),
                s.unsynced
            );
            if let Some(note) = s.corruption_note() {
                println!("  {note}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let server = credentials::server(a.server.as_deref())?;
    let removed = Mutex::new(Vec::new());
    if a.clean {
        for r in &synced {
            clean(r, &|line| println!("{line}"), &removed);
        }
    }
    if runs.is_empty() {
        let removed = removed.into_inner().unwrap_or_else(|p| p.into_inner());
        if removed.is_empty() {
            println!("nothing to sync");
        }
        repoint_latest(&removed);
        return Ok(ExitCode::SUCCESS);
    }
    let Some((server, key)) = credentials::require(Some(&server))? else {
        return Ok(ExitCode::from(2));
    };
    let opts = SyncOptions {
        project: a.project.clone(),
        entity: a.entity.clone(),
        ..SyncOptions::default()
    };
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(runs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} runs  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(bar)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => println!("{line}"),
    };
    let queue = Mutex::new(
        runs.into_iter()
            .map(|r| if a.include_synced { r.resend_all() } else { r }),
    );
    let failed = Mutex::new(Vec::new());
    let corrupt_runs = Mutex::new(Vec::new());
    let refused = AtomicBool::new(false);
    let sent = AtomicU64::new(0);
    let timeout = Duration::from_secs(a.timeout);
    std::thread::scope(|s| {
        for _ in 0..a.parallel.max(1) {
            s.spawn(|| loop {
                let Some(mut run) = queue.lock().unwrap_or_else(|p| p.into_inner()).next() else {
                    return;
                };
                let mut transport = HttpTransport::new(&server, &key, timeout);
                let label = run_label(&run);
                let mut on_sent = |n: u64| {
                    let total = sent.fetch_add(n, Ordering::Relaxed) + n;
                    if let Some(b) = &bar {
                        b.set_message(format!("{} sent  {label}", indicatif::HumanBytes(total)));
                    }
                };
                let result = pollster::block_on(sync_run(&mut run, &mut transport, &opts, &mut on_sent));
                let corrupt = match &result {
                    Ok(report) => {
                        corruption_note(run_id_of_path(run.path()).unwrap_or_default(), &report.corruption)
                    }
                    Err(_) => None,
                };
                match result {
                    Ok(report) if corrupt.is_some() => {
                        say(describe(&run, &report));
                        say(format!(
                            "{}: every readable record was uploaded; the unreadable bytes were not, \
                             so the run is not marked synced and --clean keeps it",
                            corrupt.unwrap_or_default()
                        ));
                        corrupt_runs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(run.path().to_path_buf());
                    }
                    Ok(report) => {
                        say(describe(&run, &report));
                        for skipped in &report.skipped_files {
                            say(format!("skipped a file of {}: {skipped}", run.path().display()));
                        }
                        if !report.skipped_files.is_empty() {
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(run.path().to_path_buf());
                        }
                        let whole =
                            report.acked_records == report.total_records && report.skipped_files.is_empty();
                        if a.clean && whole {
                            clean(&run, &say, &removed);
                        } else if a.clean {
                            say(format!("kept {}: not fully acknowledged", run.path().display()));
                        }
                    }
                    Err(e) => {
                        if matches!(
                            e,
                            SyncError::Transport(TransportError::Status { status: 401, .. })
                        ) {
                            refused.store(true, Ordering::Relaxed);
                        }
                        say(format!("failed {}: {e}", run.path().display()));
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(run.path().to_path_buf());
                    }
                }
                if let Some(b) = &bar {
                    b.inc(1);
                }
            });
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    repoint_latest(&removed.into_inner().unwrap_or_else(|p| p.into_inner()));
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    let corrupt = corrupt_runs.into_inner().unwrap_or_else(|p| p.into_inner());
    if !corrupt.is_empty() {
        eprintln!(
            "tidelog: {} run(s) have unreadable bytes in records.tlog: what was readable is \
             uploaded, the folders are kept as they are:",
            corrupt.len()
        );
        for c in &corrupt {
            eprintln!("  {}", c.display());
        }
    }
    if failed.is_empty() {
        return Ok(if corrupt.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if refused.into_inner() {
        eprintln!(
            "tidelog: {server} refused the API key from {} (401): set TIDELOG_API_KEY to a \
             valid key or run `tidelog login`; {} run(s) left unsynced:",
            credentials::key_source(&server),
            failed.len()
        );
    } else {
        eprintln!(
            "tidelog: {} run(s) left unsynced; `tidelog sync` resumes them:",
            failed.len()
        );
    }
    for f in failed {
        eprintln!("  {}", f.display());
    }
    Ok(ExitCode::from(1))
}

fn run_label(run: &RunDir) -> String {
    run.path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn describe(run: &RunDir, r: &SyncReport) -> String {
    format!(
        "synced {} ({}): {} rows added, {} duplicates skipped, {} bundles, {} bytes sent",
        run.path().display(),
        r.state.as_str(),
        r.rows_added,
        r.duplicates_skipped,
        r.bundles,
        r.bytes_sent
    )
}

/// Whether `--clean` may delete the run: the server acknowledged its whole log (`.synced`
/// covers it), no live process writes it, and no part of the log is unreadable.
fn deletable(run: &RunDir) -> bool {
    run.is_synced()
        && !run.is_live()
        && run
            .status()
            .is_ok_and(|s| s.state != RunState::Running && s.corruption.is_empty())
}

/// Deletes the run's folder when [`deletable`], noting it in `removed`.
fn clean(run: &RunDir, say: &impl Fn(String), removed: &Mutex<Vec<PathBuf>>) {
    if !deletable(run) {
        say(format!(
            "kept {}: not finished or not fully acknowledged",
            run.path().display()
        ));
        return;
    }
    match std::fs::remove_dir_all(run.path()) {
        Ok(()) => {
            say(format!("removed {}", run.path().display()));
            removed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(run.path().to_path_buf());
        }
        Err(e) => say(format!("could not remove {}: {e}", run.path().display())),
    }
}

/// After `--clean`, points each touched `tidelog/latest.spec` that named a deleted run at the
/// newest remaining run, or removes it when none remains, so it never names a missing folder.
fn repoint_latest(removed: &[PathBuf]) {
    let roots: BTreeSet<&Path> = removed.iter().filter_map(|p| p.parent()).collect();
    for root in roots {
        let path = root.join(LATEST_SPEC);
        let Ok(Some(latest)) = read_json::<LatestSpec>(&path) else {
            continue;
        };
        if root.join(&latest.dir).join(RECORDS).is_file() {
            continue;
        }
        let newest = runs_in(root).ok().and_then(|runs| runs.into_iter().last());
        let result = match newest {
            Some(dir) => {
                let run = RunDir::new(&dir);
                run.status().and_then(|s| {
                    let spec = LatestSpec {
                        id: s.id,
                        project: s.project,
                        dir: run_label(&run),
                        state: s.state,
                        synced: run.is_synced(),
                    };
                    write_json_atomic(&path, &spec)
                })
            }
            None => std::fs::remove_file(&path),
        };
        if let Err(e) = result {
            eprintln!("tidelog: could not update {}: {e}", path.display());
        }
    }
}
