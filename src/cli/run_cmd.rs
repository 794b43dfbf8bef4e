//! `tidelog run -- CMD [ARGS...]`: a command as a run. Its stdout and stderr pass through to
//! the terminal and into `files/output.log`, system metrics are sampled while it runs, and its
//! exit code becomes the run's and `tidelog run`'s own.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use tidelog::core::bundle::sha256_hex;
use tidelog::core::layout::check_saved_file;
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::encode_meta;
use tidelog::core::sync::{sync_run, RunStore, SyncOptions};
use tidelog::native::credentials;
use tidelog::native::layout::FILES;
use tidelog::native::store::RunDir;
use tidelog::native::transport::HttpTransport;
use tidelog::{FileRef, Meta, Mode, Run, RunState, Settings};

/// Name of the captured output inside the run's `files/`.
const OUTPUT_LOG: &str = "output.log";
/// Exit code for a command that cannot be started, as shells use.
const NOT_RUNNABLE: u8 = 127;
/// A partial line (a progress bar redrawn with `\r`) this long is written out anyway.
const MAX_PARTIAL_LINE: usize = 64 * 1024;
/// How long output is still collected after the command exits, for background processes that
/// inherited its stdout or stderr.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct RunArgs {
    /// Project (default: the current folder's name).
    #[arg(long)]
    project: Option<String>,
    /// Display name of the run.
    #[arg(long)]
    name: Option<String>,
    /// Connect and idle timeout of the upload at exit, in seconds (as `tidelog sync --timeout`).
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Seconds between system-metric samples; 0 turns them off.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    system_interval: f64,
    /// The command to run, after `--`.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `output.log` shared by the stdout and stderr copiers; whole lines keep them apart.
struct OutputLog {
    file: File,
    error: Option<io::Error>,
}

impl OutputLog {
    fn write(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            if let Err(e) = self.file.write_all(bytes) {
                self.error = Some(e);
            }
        }
    }
}

/// Runs the command as a run and returns its exit code as `tidelog run`'s own.
pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let Ok(interval) = Duration::try_from_secs_f64(a.system_interval) else {
        bail!(
            "--system-interval must be a number of seconds >= 0, not {}",
            a.system_interval
        );
    };
    let project = match a.project {
        Some(p) => p,
        None => folder_name()?,
    };
    let creds = credentials::resolve(None, None);
    if creds.explicit_server && creds.api_key.is_some() {
        super::credentials::check_server(&creds.server)?;
    }
    let mut settings = Settings::new(project);
    settings.name = a.name;
    // Synced here after finish rather than by the library, so `--timeout` bounds it.
    settings.mode = Mode::Offline;
    settings.system_interval = Some(interval);
    settings.config.insert("command".into(), json!(a.command));
    let run = tidelog::init(settings).context("starting the run")?;
    let path = run.dir().join(FILES).join(OUTPUT_LOG);
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let log = Arc::new(Mutex::new(OutputLog { file, error: None }));
    let code = match execute(&a.command, &log) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("tidelog: cannot run {:?}: {e}\n", a.command[0]);
            eprint!("{msg}");
            lock(&log).write(msg.as_bytes());
            i32::from(NOT_RUNNABLE)
        }
    };
    let recorded = record(run, &path, &log, code, Duration::from_secs(a.timeout));
    let exit = u8::try_from(code).unwrap_or(1);
    match recorded {
        Ok(()) => Ok(ExitCode::from(exit)),
        Err(e) => {
            eprintln!("tidelog: error: {e:#}");
            Ok(ExitCode::from(if exit == 0 { 1 } else { exit }))
        }
    }
}

/// The current folder's name, the default project.
pub(super) fn folder_name() -> anyhow::Result<String> {
    let cwd = std::env::current_dir().context("reading the current directory")?;
    match cwd.file_name() {
        Some(name) => Ok(name.to_string_lossy().into_owned()),
        None => bail!("{} has no folder name: pass --project", cwd.display()),
    }
}

fn lock(log: &Mutex<OutputLog>) -> std::sync::MutexGuard<'_, OutputLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `command` with its output copied to the terminal and `log` and returns its exit code;
/// an error means it could not be started.
fn execute(command: &[String], log: &Arc<Mutex<OutputLog>>) -> io::Result<i32> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    #[cfg(unix)]
    ignore_interrupts();
    let (done, finished) = mpsc::channel();
    let mut copiers = 0;
    if let Some(out) = child.stdout.take() {
        copiers += spawn_copier("tidelog-stdout", out, io::stdout(), log, &done);
    }
    if let Some(err) = child.stderr.take() {
        copiers += spawn_copier("tidelog-stderr", err, io::stderr(), log, &done);
    }
    let code = match child.wait() {
        Ok(status) => exit_code(status),
        Err(e) => {
            log::error!("tidelog: lost track of {:?}: {e}", command[0]);
            1
        }
    };
    let deadline = Instant::now() + OUTPUT_GRACE;
    for _ in 0..copiers {
        let left = deadline.saturating_duration_since(Instant::now());
        if finished.recv_timeout(left).is_err() {
            log::warn!(
                "tidelog: a background process still holds the command's output; \
                 {OUTPUT_LOG} has what arrived until now"
            );
            break;
        }
    }
    Ok(code)
}

/// Starts a thread copying `from`; returns how many threads it started (0 or 1).
fn spawn_copier<R, W>(
    name: &str,
    from: R,
    to: W,
    log: &Arc<Mutex<OutputLog>>,
    done: &mpsc::Sender<()>,
) -> usize
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let (log, done) = (Arc::clone(log), done.clone());
    let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
        copy_lines(from, to, &log);
        let _ = done.send(());
    });
    match spawned {
        Ok(_) => 1,
        Err(e) => {
            log::warn!("tidelog: cannot start {name} ({e}); that stream is not captured");
            0
        }
    }
}

/// Copies `from` to the terminal as it arrives and to `log` a whole line at a time.
fn copy_lines(mut from: impl Read, mut to: impl Write, log: &Mutex<OutputLog>) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let chunk = &buf[..n];
        let _ = to.write_all(chunk).and_then(|()| to.flush());
        line.extend_from_slice(chunk);
        let cut = match line.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if line.len() >= MAX_PARTIAL_LINE => line.len(),
            None => continue,
        };
        lock(log).write(&line[..cut]);
        line.drain(..cut);
    }
    if !line.is_empty() {
        lock(log).write(&line);
    }
}

/// Ctrl-C reaches the command through the terminal; `tidelog run` outlives it to record how
/// the command ended.
#[cfg(unix)]
fn ignore_interrupts() {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let spawned = runtime.and_then(|rt| {
        let mut interrupts = {
            let _context = rt.enter();
            signal(SignalKind::interrupt())?
        };
        std::thread::Builder::new()
            .name("tidelog-sigint".into())
            .spawn(move || rt.block_on(async { while interrupts.recv().await.is_some() {} }))
    });
    if let Err(e) = spawned {
        log::warn!("tidelog: Ctrl-C will stop tidelog before it records the run ({e})");
    }
}

/// The child's exit code; killed by a signal, 128 + the signal as shells report it.
fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}

/// Saves `output.log` with the run, finishes it with `code` and syncs it when a server and key
/// are configured; the run is finished even when saving the output failed.
fn record(run: Run, path: &Path, log: &Mutex<OutputLog>, code: i32, timeout: Duration) -> anyhow::Result<()> {
    let saved = {
        let mut out = lock(log);
        let flushed = match out.error.take() {
            Some(e) => Err(e),
            None => out.file.flush(),
        };
        flushed
            .and_then(|()| std::fs::read(path))
            .with_context(|| format!("writing {}", path.display()))
            .and_then(|bytes| run.save(OUTPUT_LOG, &bytes).context("saving output.log"))
    };
    let id = run.id().to_owned();
    let dir: PathBuf = run.finish(code).context("finishing the run")?;
    sync_at_exit(&id, &dir, timeout);
    let synced = if RunDir::new(&dir).is_synced() {
        "synced"
    } else {
        "not synced; `tidelog sync` uploads it"
    };
    eprintln!(
        "tidelog: run {id} exited with code {code} ({synced}): {}",
        dir.display()
    );
    saved.map(|_| ())
}

/// Uploads the finished run when `TIDELOG_BASE_URL` (or a stored login) names a server and a
/// key is known, like the library's `Mode::Auto`; a failure leaves it for `tidelog sync`.
/// Each exchange waits at most `timeout`, and it is tried twice, so a silent server holds
/// `tidelog run` for about two timeouts, not minutes.
fn sync_at_exit(id: &str, dir: &Path, timeout: Duration) {
    let creds = credentials::resolve(None, None);
    let (Some(key), true) = (creds.api_key, creds.explicit_server) else {
        return;
    };
    let mut transport = HttpTransport::new(&creds.server, &key, timeout);
    let opts = SyncOptions {
        attempts: 2,
        ..SyncOptions::default()
    };
    let mut store = RunDir::new(dir);
    if let Err(e) = pollster::block_on(sync_run(&mut store, &mut transport, &opts, &mut |_| {})) {
        log::warn!("run {id} stays offline, `tidelog sync` will upload it: {e}");
    }
}

/// Records the `output.log` of a crashed `tidelog run` (its process was killed before it could
/// save it at finish) by appending a file record for the bytes written so far, so the next
/// sync or bundle uploads them. A reference with the same content is never added twice, so
/// syncing again uploads nothing more. Live and finished runs are left alone: their own
/// process records the output at finish. Returns whether a record was added.
pub(super) fn record_crashed_output(run: &RunDir) -> anyhow::Result<bool> {
    if run.is_live() {
        return Ok(false);
    }
    let path = run.path().join(FILES).join(OUTPUT_LOG);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(false);
    };
    let log = run.log_bytes()?;
    let index = LogIndex::new(&log).with_context(|| format!("reading {}", run.path().display()))?;
    if index.run().is_none() || index.state(false) != RunState::Crashed {
        return Ok(false);
    }
    let sha256 = sha256_hex(&bytes);
    let known = index
        .files(0..index.len())
        .iter()
        .any(|f| f.path == OUTPUT_LOG && f.sha256 == sha256);
    if known {
        return Ok(false);
    }
    if index.valid_len() != log.len() || !index.corruption().is_empty() {
        log::warn!(
            "{}: the log ends in a torn record or is corrupt, so {OUTPUT_LOG} cannot be added to it",
            run.path().display()
        );
        return Ok(false);
    }
    check_saved_file(OUTPUT_LOG, bytes.len() as u64).map_err(anyhow::Error::msg)?;
    let mut frame = Vec::new();
    encode_meta(
        &mut frame,
        &Meta::File(FileRef {
            path: OUTPUT_LOG.to_owned(),
            sha256,
            size: bytes.len() as u64,
        }),
    );
    run.append_records(&frame)
        .with_context(|| format!("recording {}", path.display()))?;
    Ok(true)
}
