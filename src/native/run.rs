//! The native logging API (`tidelog::init`, `Run::log`, `Run::finish`): `log()` only
//! touches memory; a background writer appends the batch to `records.tlog` at most 100 ms
//! later.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value as Json};

use crate::core::bundle::sha256_hex;
use crate::core::record::{FileRef, Meta, RunInfo, RunState};
use crate::core::resume_point::ResumePoint;
use crate::core::run_log::{LogError, LogOptions, Logged};
use crate::core::value::Value;

use super::layout::{find_run, read_json, run_dir_name, write_json_atomic, FILES, LOCK, RECORDS, ROOT};
use super::store::RunDir;
use super::sysmetrics::{Sampler, DEFAULT_INTERVAL};
use super::writer::{writer_loop, Points, Shared, RESUME_POINT_BYTES};
use crate::core::init::{open, InitError, NewRun, RunHome};
use crate::core::layout::{check_saved_file, run_id_from};
use crate::core::media::Media;
use crate::core::restore::{resume_state, ResumeError, Resumed};

pub use super::writer::FLUSH_INTERVAL;

/// When a run talks to the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Buffer always; sync at `finish()` when a server and key are configured.
    #[default]
    Auto,
    /// Never sync from the run; use `tidelog sync` later.
    Offline,
    /// Sync at `finish()`, and report a failure as an error.
    Online,
}

pub use crate::core::init::Resume;

/// Arguments of [`init`], mirroring the JS `init({...})`.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Project (required).
    pub project: String,
    /// Display name.
    pub name: Option<String>,
    /// Team or user namespace.
    pub entity: Option<String>,
    /// Run id; default a fresh 8-character `[a-z0-9]` id.
    pub id: Option<String>,
    /// Initial config.
    pub config: Map<String, Json>,
    /// Labels.
    pub tags: Vec<String>,
    /// Description.
    pub notes: Option<String>,
    /// When to sync.
    pub mode: Mode,
    /// Continuing an existing id.
    pub resume: Resume,
    /// Folder that holds `tidelog/` (default: `$TIDELOG_DIR` or the current directory).
    pub dir: Option<PathBuf>,
    /// Server for `Mode::Auto`/`Online` (default: `$TIDELOG_BASE_URL` or the stored login).
    pub server: Option<String>,
    /// API key for `Mode::Auto`/`Online` (default: `$TIDELOG_API_KEY` or the stored login).
    pub api_key: Option<String>,
    /// Time between system-metric samples (default 10 s); `None` or zero turns them off.
    pub system_interval: Option<Duration>,
    /// When the run began, Unix milliseconds (default now): `tidelog import` keeps the
    /// recorded start of a run written by another tool.
    pub created_ms: Option<i64>,
    /// Log bytes between two resume points (default [`RESUME_POINT_BYTES`]): a resume of
    /// the run replays at most about this much of its log.
    pub resume_point_bytes: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            project: String::new(),
            name: None,
            entity: None,
            id: None,
            config: Map::new(),
            tags: Vec::new(),
            notes: None,
            mode: Mode::default(),
            resume: Resume::default(),
            dir: None,
            server: None,
            api_key: None,
            system_interval: Some(DEFAULT_INTERVAL),
            created_ms: None,
            resume_point_bytes: RESUME_POINT_BYTES,
        }
    }
}

impl Settings {
    /// Settings for `project` with everything else default.
    pub fn new(project: impl Into<String>) -> Self {
        Settings {
            project: project.into(),
            ..Settings::default()
        }
    }
}

/// Why a run could not start, save or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting was wrong.
    #[error("invalid settings: {0}")]
    Settings(String),
    /// `resume` rules were not met.
    #[error("{0}")]
    Resume(String),
    /// The disk refused; the unwritten records are still in memory.
    #[error("storage error in {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A value or key was refused.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The existing log could not be read for resume.
    #[error("cannot resume: {0}")]
    Corrupt(String),
    /// `Mode::Online` could not sync at finish.
    #[error("sync at finish failed: {0}")]
    Sync(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A fresh 8-character `[a-z0-9]` run id.
pub fn new_id() -> String {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw).expect("the OS random source is available");
    run_id_from(raw)
}

/// A live run. Dropping it finishes it (exit code 1 while panicking, else 0).
pub struct Run {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<Option<ResumePoint>>>,
    sampler: Option<Sampler>,
    dir: PathBuf,
    info: RunInfo,
    settings: Settings,
    config: Map<String, Json>,
    _lock: File,
}

/// A `tidelog/` folder as `init` sees it: the core decides, this finds, creates and locks.
struct Folder {
    root: PathBuf,
    /// The folder of the run found.
    found: Option<PathBuf>,
    /// The run's folder and writer lock, once created or reopened.
    run: Option<(PathBuf, File)>,
}

impl RunHome for Folder {
    type Error = RunError;

    fn place(&self) -> String {
        self.root.display().to_string()
    }

    async fn find(&mut self, id: &str) -> Result<Option<Result<Resumed, ResumeError>>, RunError> {
        if !self.root.is_dir() {
            return Ok(None);
        }
        let Some(dir) = find_run(&self.root, id).map_err(io_at(&self.root))? else {
            return Ok(None);
        };
        let resumed = resume_state(&RunDir::new(&dir), None).await;
        self.found = Some(dir);
        Ok(Some(resumed))
    }

    async fn create(&mut self, info: &RunInfo) -> Result<(), RunError> {
        let dir = self.root.join(run_dir_name(info.created_ms, &info.id));
        fs::create_dir_all(dir.join(FILES)).map_err(io_at(&dir))?;
        let lock = take_lock(&dir, &info.id)?;
        self.run = Some((dir, lock));
        Ok(())
    }

    /// Takes the writer lock and checks the log is still the one that was read; the log is
    /// cut when it is opened for appending, and `run.spec` says running once the run's files
    /// are written.
    async fn reopen(&mut self, info: &RunInfo, _: u64, read: u64) -> Result<(), RunError> {
        let dir = self.found.take().expect("reopen follows find");
        let lock = take_lock(&dir, &info.id)?;
        let records = dir.join(RECORDS);
        if fs::metadata(&records).map_err(io_at(&records))?.len() != read {
            return Err(RunError::Resume(format!(
                "run {} was written by another process while it was being resumed; try again",
                info.id
            )));
        }
        self.run = Some((dir, lock));
        Ok(())
    }
}

impl From<InitError<RunError>> for RunError {
    fn from(e: InitError<RunError>) -> Self {
        match e {
            InitError::Settings(m) => RunError::Settings(m),
            InitError::Resume(m) => RunError::Resume(m),
            InitError::Corrupt(m) => RunError::Corrupt(m),
            InitError::Store(e) => e,
        }
    }
}

/// Starts a run: creates (or reopens) its folder and the background writer.
pub fn init(settings: Settings) -> Result<Run, RunError> {
    let base = settings
        .dir
        .clone()
        .or_else(|| std::env::var_os("TIDELOG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut home = Folder {
        root: base.join(ROOT),
        found: None,
        run: None,
    };
    let new = NewRun {
        project: settings.project.clone(),
        id: settings.id.clone(),
        name: settings.name.clone(),
        entity: settings.entity.clone(),
        tags: settings.tags.clone(),
        notes: settings.notes.clone(),
        created_ms: settings.created_ms.unwrap_or_else(now_ms),
    };
    let opened = pollster::block_on(open(&mut home, new, settings.resume, new_id))?;
    let (dir, lock) = home.run.expect("an opened run has a folder");
    let (log, info, valid_len) = (opened.log, opened.info, opened.stored_bytes);
    let records = dir.join(RECORDS);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&records)
        .map_err(io_at(&records))?;
    if file.metadata().map_err(io_at(&records))?.len() > valid_len {
        file.set_len(valid_len).map_err(io_at(&records))?;
    }
    let mut me = Run {
        shared: Arc::new(Shared::new(log)),
        writer: None,
        sampler: None,
        dir,
        config: Map::new(),
        info,
        settings,
        _lock: lock,
    };
    let files = me.dir.join(FILES);
    me.config = read_json(&files.join("config.json"))
        .ok()
        .flatten()
        .unwrap_or_default();
    if !me.settings.config.is_empty() {
        let initial = me.settings.config.clone();
        me.shared.lock().meta(&Meta::Config {
            update: initial.clone(),
        });
        me.config.extend(initial);
    }
    write_json_atomic(&files.join("config.json"), &me.config).map_err(io_at(&files))?;
    write_json_atomic(&files.join("metadata.json"), &metadata(&me.info)).map_err(io_at(&files))?;
    me.write_specs(RunState::Running)?;
    let shared = Arc::clone(&me.shared);
    let points = Points {
        folder: RunDir::new(&me.dir),
        run: me.info.clone(),
        every: me.settings.resume_point_bytes.max(1),
    };
    me.writer = Some(
        std::thread::Builder::new()
            .name(format!("tidelog-writer-{}", me.info.id))
            .spawn(move || writer_loop(&shared, file, valid_len, &points))
            .map_err(io_at(&records))?,
    );
    if let Some(every) = me.settings.system_interval.filter(|d| !d.is_zero()) {
        let shared = Arc::clone(&me.shared);
        let name = format!("tidelog-sysmetrics-{}", me.info.id);
        let write = move |row: &[(String, f64)]| {
            if let Err(e) = shared.lock().system(now_ms(), row) {
                log::warn!("tidelog: system metrics not recorded: {e}");
            }
        };
        me.sampler = Some(Sampler::start(name, every, write).map_err(io_at(&me.dir))?);
    }
    Ok(me)
}

/// The run folder's writer lock, or the error naming who holds it.
fn take_lock(dir: &Path, id: &str) -> Result<File, RunError> {
    super::store::lock_run(dir).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => RunError::Resume(format!("run {id}: {e}")),
        _ => RunError::Io {
            path: dir.join(LOCK),
            source: e,
        },
    })
}

fn metadata(info: &RunInfo) -> Json {
    serde_json::json!({
        "id": info.id,
        "started": crate::core::time::rfc3339(info.created_ms),
        "program": std::env::args().next(),
        "args": std::env::args().skip(1).collect::<Vec<_>>(),
        "cwd": std::env::current_dir().ok(),
        "host": std::env::var("HOSTNAME").ok().or_else(|| fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned())),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "tidelog": env!("CARGO_PKG_VERSION"),
    })
}

impl Run {
    /// Logs values at the next step, like `wandb.log(data)`.
    #[inline]
    pub fn log<K, V, I>(&self, items: I) -> Result<Logged, LogError>
    where
        K: AsRef<str>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        self.log_with(items, LogOptions::default())
    }

    /// Logs with an explicit step or `commit: false`, like `wandb.log(data, step=, commit=)`.
    #[inline]
    pub fn log_with<K, V, I>(&self, items: I, opts: LogOptions) -> Result<Logged, LogError>
    where
        K: AsRef<str>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        self.log_at(now_ms(), items, opts)
    }

    /// Logs with the time the values were recorded (Unix ms) instead of now: imported runs.
    #[inline]
    pub fn log_at<K, V, I>(&self, ts_ms: i64, items: I, opts: LogOptions) -> Result<Logged, LogError>
    where
        K: AsRef<str>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut log = self.shared.lock();
        let before = log.batch_len();
        let out = log.log(ts_ms, items, opts);
        self.shared.grew(before, log.batch_len());
        out
    }

    /// The id of `key`, interned (and its definition logged) when new: bindings that cache ids
    /// per key object (Python) log numbers through [`Run::log_ids`] without re-reading names.
    pub fn intern(&self, key: &str) -> Result<u32, LogError> {
        self.shared.lock().intern(key)
    }

    /// Logs numbers by interned key id (`ids_values` alternates id, value) plus other values
    /// by name, with [`Run::log_with`]'s step rules.
    pub fn log_ids(
        &self,
        ids_values: &[f64],
        others: Vec<(String, Value)>,
        opts: LogOptions,
    ) -> Result<Logged, LogError> {
        let now = now_ms();
        let mut log = self.shared.lock();
        let before = log.batch_len();
        let out = log.log_ids(now, ids_values, others, opts);
        self.shared.grew(before, log.batch_len());
        out
    }

    /// The run's config as merged so far (resumed keys included).
    pub fn config(&self) -> &Map<String, Json> {
        &self.config
    }

    /// Records a system-metrics sample.
    pub fn log_system<K: AsRef<str>>(&self, items: &[(K, f64)]) -> Result<(), LogError> {
        self.log_system_at(now_ms(), items)
    }

    /// Records a system-metrics sample taken at `ts_ms` (Unix ms): imported runs.
    pub fn log_system_at<K: AsRef<str>>(&self, ts_ms: i64, items: &[(K, f64)]) -> Result<(), LogError> {
        self.shared.lock().system(ts_ms, items)
    }

    /// Merges keys into the run's config.
    pub fn config_update(&mut self, update: Map<String, Json>) -> Result<(), RunError> {
        self.shared.lock().meta(&Meta::Config {
            update: update.clone(),
        });
        self.config.extend(update);
        let path = self.dir.join(FILES).join("config.json");
        write_json_atomic(&path, &self.config).map_err(io_at(&path))
    }

    /// Sets a summary key, overriding the default "last logged value".
    pub fn summary_set(&mut self, key: &str, value: impl Into<Value>) {
        let mut update = Map::new();
        update.insert(key.to_owned(), value.into().to_json());
        self.shared.lock().meta(&Meta::Summary { update });
    }

    /// Saves a file (a checkpoint, an artifact) with the run; it is uploaded on sync.
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<FileRef, RunError> {
        check_saved_file(name, bytes.len() as u64).map_err(RunError::Settings)?;
        self.folder().put_file(name, bytes).map_err(io_at(&self.dir))?;
        let sha256 = sha256_hex(bytes);
        let file = FileRef {
            path: name.to_owned(),
            sha256,
            size: bytes.len() as u64,
        };
        self.shared.lock().meta(&Meta::File(file.clone()));
        Ok(file)
    }

    /// Stores a media object's file (images, audio) under `files/media/` and returns the value
    /// to log for it: `run.log([("sample", run.media("sample", img)?)])`.
    pub fn media(&self, key: &str, media: Media) -> Result<Value, RunError> {
        let file = match (media.file(), media.file_path(key, self.step())) {
            (Some((_, _, bytes)), Some(path)) => Some(self.save(&path, bytes)?),
            _ => None,
        };
        Ok(Value::Json(media.value(file.as_ref())))
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The step the next committed row gets.
    pub fn step(&self) -> u64 {
        self.shared.lock().step()
    }

    /// Blocks until everything logged so far is appended to `records.tlog` and fsynced by the
    /// writer thread; the storage error when the disk refused (the records stay in memory and
    /// the writer keeps trying).
    pub fn flush(&self) -> Result<(), RunError> {
        self.shared.flush().map_err(|e| RunError::Io {
            path: self.dir.join(RECORDS),
            source: io::Error::other(e),
        })
    }

    /// The last storage error, while records are held back in memory.
    pub fn storage_error(&self) -> Option<String> {
        self.shared.failure()
    }

    /// Ends the run with `exit_code` (non-zero marks it failed), writes everything to disk,
    /// and in `Mode::Auto`/`Online` syncs it when a server is configured.
    pub fn finish(self, exit_code: i32) -> Result<PathBuf, RunError> {
        self.finish_at(exit_code, now_ms())
    }

    /// [`Run::finish`] at a recorded end time (Unix ms): imported runs keep when they ended.
    pub fn finish_at(mut self, exit_code: i32, ts_ms: i64) -> Result<PathBuf, RunError> {
        self.close(Some((exit_code, ts_ms)))?;
        if self.settings.mode != Mode::Offline {
            self.sync_at_finish()?;
        }
        Ok(self.dir.clone())
    }

    /// Writes everything to disk without a finish record, so the run reads as `crashed`:
    /// an imported run whose source never recorded its end.
    pub fn close_unfinished(mut self) -> Result<PathBuf, RunError> {
        self.close(None)?;
        Ok(self.dir.clone())
    }

    fn close(&mut self, finish: Option<(i32, i64)>) -> Result<(), RunError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        if let Some(sampler) = self.sampler.take() {
            sampler.stop();
        }
        let last = {
            let mut log = self.shared.lock();
            match finish {
                Some((exit_code, ts_ms)) => log.meta(&Meta::Finish { exit_code, ts_ms }),
                None => log.commit_open_row(),
            }
            log.summary()
        };
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let point = writer.join().ok().flatten();
        if let Some(e) = self.storage_error() {
            return Err(RunError::Io {
                path: self.dir.join(RECORDS),
                source: io::Error::other(e),
            });
        }
        let path = self.dir.join(FILES).join("summary.json");
        write_json_atomic(&path, &last).map_err(io_at(&path))?;
        let state = match finish {
            Some((0, _)) => RunState::Finished,
            Some(_) => RunState::Failed,
            None => RunState::Crashed,
        };
        self.folder()
            .write_ended(&self.info, state, point.as_ref())
            .map_err(io_at(&self.dir))?;
        // An ended run needs no liveness lock.
        let _ = fs::remove_file(self.dir.join(LOCK));
        Ok(())
    }

    fn sync_at_finish(&self) -> Result<(), RunError> {
        let creds =
            super::credentials::resolve(self.settings.server.as_deref(), self.settings.api_key.clone());
        let Some(key) = creds.api_key else {
            if self.settings.mode == Mode::Online {
                return Err(RunError::Sync(
                    "no API key: set TIDELOG_API_KEY or run `tidelog login`".into(),
                ));
            }
            return Ok(());
        };
        if self.settings.mode == Mode::Auto && !creds.explicit_server {
            return Ok(());
        }
        let mut transport =
            super::transport::HttpTransport::new(&creds.server, &key, Duration::from_secs(30));
        let mut store = super::store::RunDir::new(&self.dir);
        let opts = crate::core::sync::SyncOptions::default();
        match pollster::block_on(crate::core::sync::sync_run(
            &mut store,
            &mut transport,
            &opts,
            &mut |_| {},
        )) {
            Ok(_) => Ok(()),
            Err(e) if self.settings.mode == Mode::Online => Err(RunError::Sync(e.to_string())),
            Err(e) => {
                log::warn!(
                    "tidelog: run {} stays offline, `tidelog sync` will upload it: {e}",
                    self.info.id
                );
                Ok(())
            }
        }
    }

    /// `run.spec` of the live run, keeping the ended point a resumed run had.
    fn write_specs(&self, state: RunState) -> Result<(), RunError> {
        let folder = self.folder();
        folder
            .spec_point(None)
            .and_then(|resume| folder.write_specs(&self.info, state, resume))
            .map_err(io_at(&self.dir))
    }

    fn folder(&self) -> RunDir {
        RunDir::new(&self.dir)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let code = i32::from(std::thread::panicking());
        if let Err(e) = self.close(Some((code, now_ms()))) {
            log::error!("tidelog: run {} did not finish cleanly: {e}", self.info.id);
        }
    }
}
