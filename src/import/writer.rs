//! Writes [`Item`]s as an ordinary tidelog run through the native run API, keeping the
//! source's steps, times, config, summary, files and end; a run id that already exists
//! locally is not written again.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use super::{remove_path, set_path, Item, Source};
use crate::core::layout::{check_saved_file, ROOT};
use crate::core::record::RunState;
use crate::core::run_log::LogOptions;
use crate::core::value::Value;
use crate::native::layout::find_run;
use crate::native::run::{init, now_ms, Mode, Resume, Run, RunError, Settings};
use crate::native::store::RunDir;

/// W&B's own config entry (`_wandb`): bookkeeping of the W&B client, not the user's config.
const WANDB_CONFIG: &str = "_wandb";
/// How many refused values are described one by one in the report.
const MAX_NOTES: usize = 5;

/// Why an import could not write its run.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The run could not start, save or finish.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// What an import did, for the user.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// History steps written.
    pub rows: u64,
    /// System-metric samples written.
    pub system_rows: u64,
    /// Files saved with the run.
    pub files: u64,
    /// Values at a step lower than one already written (the run's steps must not decrease).
    pub stale: u64,
    /// Values or files refused, with the first few reasons.
    pub refused: u64,
    /// Descriptions of the first refusals.
    pub notes: Vec<String>,
}

impl Report {
    fn refuse(&mut self, why: String) {
        self.refused += 1;
        if self.notes.len() < MAX_NOTES {
            self.notes.push(why);
        }
    }
}

/// The start of an import: a fresh run, or the run this source was imported as before.
pub enum Begin {
    /// A new run to push items into.
    New(Box<Importer>),
    /// Imported before: the folder and its state.
    Existing {
        /// The run folder.
        dir: PathBuf,
        /// Its state.
        state: RunState,
    },
}

/// A run being written from a source.
pub struct Importer {
    run: Run,
    files_dir: Option<PathBuf>,
    step: Option<u64>,
    created_ms: i64,
    last_ts: Option<i64>,
    config: Map<String, Json>,
    last: Map<String, Json>,
    summary: Map<String, Json>,
    files: BTreeSet<String>,
    exit: Option<(i32, Option<i64>)>,
    report: Report,
}

fn without_bookkeeping(mut config: Map<String, Json>) -> Map<String, Json> {
    config.remove(WANDB_CONFIG);
    config
}

impl Importer {
    /// Starts the run of `source` under `base/tidelog/`, or finds it there already.
    /// `files_dir` is where the source keeps the files its records name.
    pub fn begin(base: &Path, source: Source, files_dir: Option<PathBuf>) -> Result<Begin, WriteError> {
        let root = base.join(ROOT);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WriteError::Io { path, source }
        };
        if let Some(dir) = find_run(&root, &source.id).map_err(io_err(&root))? {
            let state = RunDir::new(&dir).status().map_err(io_err(&dir))?.state;
            return Ok(Begin::Existing { dir, state });
        }
        let created_ms = source.created_ms.unwrap_or_else(now_ms);
        let config = without_bookkeeping(source.config);
        let settings = Settings {
            project: source.project,
            name: source.name,
            entity: source.entity,
            id: Some(source.id),
            config: config.clone(),
            tags: source.tags,
            notes: source.notes,
            mode: Mode::Offline,
            resume: Resume::Never,
            dir: Some(base.to_path_buf()),
            system_interval: None,
            created_ms: Some(created_ms),
            ..Settings::default()
        };
        Ok(Begin::New(Box::new(Importer {
            run: init(settings)?,
            files_dir,
            step: None,
            created_ms,
            last_ts: None,
            config,
            last: Map::new(),
            summary: Map::new(),
            files: BTreeSet::new(),
            exit: None,
            report: Report::default(),
        })))
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        self.run.dir()
    }

    /// Writes one item.
    pub fn push(&mut self, item: Item) -> Result<(), WriteError> {
        match item {
            Item::Run(_) => {}
            Item::Config(update) => {
                let mut changed = BTreeSet::new();
                for (path, v) in update {
                    if path[0] != WANDB_CONFIG {
                        set_path(&mut self.config, &path, v);
                        changed.insert(path[0].clone());
                    }
                }
                let update: Map<String, Json> = changed
                    .into_iter()
                    .filter_map(|k| self.config.get(&k).cloned().map(|v| (k, v)))
                    .collect();
                if !update.is_empty() {
                    self.run.config_update(update)?;
                }
            }
            Item::History { step, ts_ms, values } => self.history(step, ts_ms, values),
            Item::System { ts_ms, values } => {
                let ts = self.time(ts_ms);
                match self.run.log_system_at(ts, &values) {
                    Ok(()) => self.report.system_rows += 1,
                    Err(e) => self.report.refuse(format!("system metrics: {e}")),
                }
            }
            Item::Summary { update, remove } => {
                for (path, v) in update {
                    set_path(&mut self.summary, &path, v);
                }
                for path in remove {
                    remove_path(&mut self.summary, &path);
                }
            }
            Item::Files(paths) => self.files.extend(paths),
            Item::Exit { code, runtime_s } => self.exit = Some((code, runtime_s)),
        }
        Ok(())
    }

    fn time(&mut self, ts_ms: Option<i64>) -> i64 {
        let ts = ts_ms.or(self.last_ts).unwrap_or(self.created_ms);
        self.last_ts = Some(ts);
        ts
    }

    fn history(&mut self, step: u64, ts_ms: Option<i64>, values: Vec<(String, Value)>) {
        if self.step.is_some_and(|cur| step < cur) {
            self.report.stale += values.len() as u64;
            return;
        }
        if self.step != Some(step) {
            self.report.rows += 1;
            self.step = Some(step);
        }
        for (_, v) in &values {
            if let Some(path) = media_path(v) {
                self.files.insert(path.to_owned());
            }
        }
        let ts = self.time(ts_ms);
        let opts = LogOptions {
            step: Some(step),
            commit: Some(false),
        };
        let keys: Vec<(String, Json)> = values.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        match self.run.log_at(ts, values, opts) {
            Ok(_) => self.last.extend(keys),
            Err(e) => self.report.refuse(format!("step {step}: {e}")),
        }
    }

    /// Saves the files, sets the summary keys the history does not imply, and ends the run
    /// as the source did (a source that never recorded its end stays `crashed`).
    pub fn finish(mut self) -> Result<(PathBuf, Report), WriteError> {
        for name in std::mem::take(&mut self.files) {
            self.save(&name)?;
        }
        for (k, v) in std::mem::take(&mut self.summary) {
            if !k.starts_with('_') && self.last.get(&k) != Some(&Value::from(v.clone()).to_json()) {
                self.run.summary_set(&k, v);
            }
        }
        let end = self.last_ts.unwrap_or(self.created_ms);
        let dir = match self.exit {
            Some((code, runtime)) => {
                let at = runtime
                    .and_then(|s| s.checked_mul(1000))
                    .and_then(|ms| self.created_ms.checked_add(ms))
                    .unwrap_or(end);
                self.run.finish_at(code, at)?
            }
            None => self.run.close_unfinished()?,
        };
        Ok((dir, self.report))
    }

    /// Ends the run without a finish record (`crashed`): the source could not be read to its end.
    pub fn abort(self) -> Result<PathBuf, WriteError> {
        Ok(self.run.close_unfinished()?)
    }

    fn save(&mut self, name: &str) -> Result<(), WriteError> {
        let Some(files_dir) = &self.files_dir else {
            return Ok(());
        };
        let path = files_dir.join(name);
        // Only regular files inside the source's files folder: a link (of the file or of a
        // folder on its way) could otherwise copy any file of this machine into the run.
        let inside = match (fs::canonicalize(&path), fs::canonicalize(files_dir)) {
            (Ok(real), Ok(root)) => real.starts_with(&root) && real == root.join(name),
            _ => true,
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && inside => m,
            Ok(_) => {
                self.report.refuse(format!(
                    "file {name}: not a regular file inside {}",
                    files_dir.display()
                ));
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report.refuse(format!(
                    "file {name}: named by the run but not in {}",
                    files_dir.display()
                ));
                return Ok(());
            }
            Err(source) => return Err(WriteError::Io { path, source }),
        };
        if let Err(why) = check_saved_file(name, meta.len()) {
            self.report.refuse(why);
            return Ok(());
        }
        let bytes = fs::read(&path).map_err(|source| WriteError::Io { path, source })?;
        self.run.save(name, &bytes)?;
        self.report.files += 1;
        Ok(())
    }
}

/// The file a media value refers to (`{"_type": "image-file", "path": ...}`).
fn media_path(v: &Value) -> Option<&str> {
    let Value::Json(Json::Object(o)) = v else {
        return None;
    };
    o.get("_type")
        .and_then(Json::as_str)
        .filter(|t| t.ends_with("-file"))
        .and(o.get("path").and_then(Json::as_str))
}
