//! Starting a run, once for every home: what `init`'s `project`, `id` and `resume` mean,
//! whether a run that exists is continued or refused, and what a continued run starts from
//! (its identity from its start record, its step and last values from its log, its torn tail
//! cut). A home only looks runs up, creates and reopens them, behind [`RunHome`].

use std::fmt::Display;

use super::layout::check_run_id;
use super::record::{Meta, RunInfo};
use super::restore::{ResumeError, Resumed};
use super::run_log::RunLog;

/// What to do when the run id already exists locally.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resume {
    /// Continue it if it exists, else start it.
    #[default]
    Allow,
    /// Continue it; an error if it does not exist.
    Must,
    /// An error if it exists.
    Never,
}

impl Resume {
    /// `resume` as JavaScript and Python spell it: `"allow"` (the default when absent),
    /// `"must"` or `"never"`.
    pub fn parse(resume: Option<&str>) -> Result<Resume, String> {
        match resume {
            None | Some("allow") => Ok(Resume::Allow),
            Some("must") => Ok(Resume::Must),
            Some("never") => Ok(Resume::Never),
            Some(other) => Err(format!(
                "resume must be \"allow\", \"must\", \"never\" (got {other:?})"
            )),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Resume::Allow => "allow",
            Resume::Must => "must",
            Resume::Never => "never",
        }
    }
}

/// The identity a new run starts with (the options of `init` that name it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewRun {
    /// Project (required).
    pub project: String,
    /// Run id; `None`: a fresh one.
    pub id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Team or user namespace.
    pub entity: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Description.
    pub notes: Option<String>,
    /// When the run began, Unix milliseconds.
    pub created_ms: i64,
}

/// Why a run could not start; the same words in every home.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InitError<E> {
    /// A setting was wrong: no project, a bad id, an unknown `resume`.
    #[error("{0}")]
    Settings(String),
    /// `resume`'s rules were not met, or the run is another project's.
    #[error("{0}")]
    Resume(String),
    /// The stored run cannot be continued (damaged log, no start record).
    #[error("cannot resume: {0}")]
    Corrupt(String),
    /// The store refused.
    #[error("{0}")]
    Store(E),
}

/// Where runs are kept, as `init` sees it: a `tidelog/` folder, IndexedDB, memory.
#[allow(async_fn_in_trait)]
pub trait RunHome {
    /// The store's error.
    type Error: Display;
    /// Where this home keeps runs, for messages (a folder, "IndexedDB").
    fn place(&self) -> String;
    /// Run `id` if it exists here, its log replayed by [`super::restore::resume_state`] over
    /// the home's store (in windows, from its checkpoint where the home keeps one).
    async fn find(&mut self, id: &str) -> Result<Option<Result<Resumed, ResumeError>>, Self::Error>;
    /// Creates a new run's home (its folder or row), taking its writer lock.
    async fn create(&mut self, info: &RunInfo) -> Result<(), Self::Error>;
    /// Continues a found run whose log was `log_len` bytes when it was read: cuts it to
    /// `valid_len` bytes (a torn tail) and marks it running.
    async fn reopen(&mut self, info: &RunInfo, valid_len: u64, log_len: u64) -> Result<(), Self::Error>;
}

/// A run ready to log into.
pub struct Opened {
    /// Its identity.
    pub info: RunInfo,
    /// A new run's log with its start record in the batch; a continued run's log at its step,
    /// key table and last values, with nothing in the batch.
    pub log: RunLog,
    /// Records already stored (a new run's start record is not yet).
    pub stored_records: u64,
    /// Bytes of log already stored: what the home's log holds once `reopen` cut it.
    pub stored_bytes: u64,
    /// Whether an existing run was continued.
    pub resumed: bool,
}

/// The checks made before any store is touched: a project, a well-formed id, a `resume:
/// "must"` that names the run to continue.
pub fn check(project: &str, id: Option<&str>, resume: Resume) -> Result<(), String> {
    if project.trim().is_empty() {
        return Err("project is required".into());
    }
    match id {
        Some(id) => check_run_id(id),
        None if resume == Resume::Must => Err("resume: \"must\" needs the id of the run to resume".into()),
        None => Ok(()),
    }
}

/// Starts run `new` in `home`, or continues the one with its id, by `resume`'s rules. A run
/// is continued only under its own project and only when its log is intact up to a torn
/// tail. `new_id` makes the id of a new run that was given none.
pub async fn open<H: RunHome>(
    home: &mut H,
    new: NewRun,
    resume: Resume,
    new_id: impl FnOnce() -> String,
) -> Result<Opened, InitError<H::Error>> {
    check(&new.project, new.id.as_deref(), resume).map_err(InitError::Settings)?;
    let found = match &new.id {
        Some(id) => home.find(id).await.map_err(InitError::Store)?,
        None => None,
    };
    let id = new.id.as_deref().unwrap_or_default();
    let refused = |what: String| {
        Err(InitError::Resume(format!(
            "{what} (resume: \"{}\")",
            resume.as_str()
        )))
    };
    match (found, resume) {
        (Some(_), Resume::Never) => refused(format!("run {id} already exists in {}", home.place())),
        (None, Resume::Must) => refused(format!("no run {id} to resume in {}", home.place())),
        (Some(found), _) => {
            let resumed = continued(found, &new.project, &home.place())?;
            let (info, log, valid) = (resumed.info, resumed.log, resumed.valid_len);
            home.reopen(&info, valid, resumed.log_len)
                .await
                .map_err(InitError::Store)?;
            Ok(Opened {
                stored_records: log.records(),
                info,
                log,
                stored_bytes: valid,
                resumed: true,
            })
        }
        (None, _) => {
            let info = RunInfo {
                id: new.id.unwrap_or_else(new_id),
                project: new.project,
                name: new.name,
                entity: new.entity,
                tags: new.tags,
                notes: new.notes,
                created_ms: new.created_ms,
            };
            home.create(&info).await.map_err(InitError::Store)?;
            let mut log = RunLog::default();
            log.meta(&Meta::Start(info.clone()));
            Ok(Opened {
                info,
                log,
                stored_records: 0,
                stored_bytes: 0,
                resumed: false,
            })
        }
    }
}

/// A found run as it can be continued under `project`, or why it cannot.
fn continued<E>(
    found: Result<Resumed, ResumeError>,
    project: &str,
    place: &str,
) -> Result<Resumed, InitError<E>> {
    let resumed = found.map_err(|e| match e {
        // Appending would give new keys ids that rows in the damaged stretch may have used;
        // the log is kept as it is for the user to inspect.
        ResumeError::Corrupt(note) => InitError::Corrupt(format!(
            "{note} in {place}: the log is kept as it is; `tidelog sync` uploads what is \
             readable, continue under a new id"
        )),
        ResumeError::NoStart => InitError::Corrupt("the stored run has no start record".into()),
        other => InitError::Corrupt(other.to_string()),
    })?;
    if resumed.info.project != project {
        return Err(InitError::Resume(format!(
            "run {} belongs to project {:?}, not {:?}: resume it under its own project, or \
             start a new id",
            resumed.info.id, resumed.info.project, project
        )));
    }
    Ok(resumed)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "init_tests.rs"]
mod tests;
