//! A run folder of the on-disk layout (CONTRACT §3) over any filesystem: `std::fs` natively,
//! Node's `fs` from wasm. The layout rules (specs, progress, `.synced`, saved-file versions)
//! are written once here against the [`Dir`] seam.

use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::bundle::sha256_hex;
use super::layout::{
    run_dir_name, LatestSpec, RunSpec, SyncSpec, SyncedMarker, FILES, LATEST_SPEC, PROGRESS, RECORDS,
    RUN_SPEC, SYNCED,
};
use super::log_index::{Corruption, LogIndex};
use super::record::{FileRef, RunInfo, RunState};
use super::sync::{RunStore, SyncProgress};

/// Where replaced versions of a saved file are kept, by sha256, until synced.
pub const VERSIONS: &str = ".versions";

/// The file operations the layout needs.
pub trait Dir: Clone {
    /// A whole file, `None` when it does not exist.
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>>;
    /// Up to `max` bytes of a file from byte `offset` (fewer only at its end; empty when it
    /// does not exist).
    fn read_at(&self, path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let all = self.read(path)?.unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        Ok(all[start..all.len().min(start.saturating_add(max))].to_vec())
    }
    /// Bytes a sync reads at once through [`Dir::read_at`]: all of it unless reading at an
    /// offset costs only what is read.
    fn read_window(&self) -> usize {
        usize::MAX
    }
    /// Replaces a file so readers see the old or the new content, never half.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Appends to a file, creating it; may leave part of `data` behind when it fails.
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Cuts a file to `len` bytes.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Removes a file; a missing one is fine.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Creates a folder and its parents.
    fn mkdirp(&self, path: &Path) -> io::Result<()>;
    /// Names inside a folder; empty when it does not exist.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// A file's length, `None` when it does not exist.
    fn size(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Whether a live process holds the run folder's lock.
    fn is_locked(&self, run: &Path) -> bool;
}

fn read_json<D: Dir, T: DeserializeOwned>(dir: &D, path: &Path) -> io::Result<Option<T>> {
    match dir.read(path)? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        None => Ok(None),
    }
}

pub(super) fn write_json<D: Dir, T: Serialize>(dir: &D, path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    dir.write_atomic(path, &bytes)
}

/// A run's status for `ls`, `sync --view` and `--clean`.
#[derive(Clone, Debug)]
pub struct RunStatus {
    /// The run's id (empty when the log has no start record).
    pub id: String,
    /// Its project.
    pub project: String,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// Intact records.
    pub records: u64,
    /// Records not yet acknowledged.
    pub unsynced: u64,
    /// Damaged stretches of `records.tlog` with records after them.
    pub corruption: Vec<Corruption>,
}

impl RunStatus {
    /// The user-facing line about a corrupt log (`tidelog ls`, `tidelog sync`, a refused
    /// resume), or `None` for a healthy one.
    pub fn corruption_note(&self) -> Option<String> {
        corruption_note(&self.id, &self.corruption)
    }
}

/// `corrupt: run X, byte offset N, M bytes unreadable` for each damaged stretch of run `id`'s
/// log, or `None` when there is none.
pub fn corruption_note(id: &str, corruption: &[Corruption]) -> Option<String> {
    (!corruption.is_empty()).then(|| {
        corruption
            .iter()
            .map(|c| {
                format!(
                    "corrupt: run {id}, byte offset {}, {} bytes unreadable",
                    c.offset, c.len
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// One run folder.
#[derive(Clone, Debug)]
pub struct FolderRun<D> {
    dir: D,
    path: PathBuf,
    include_synced: bool,
}

/// The runs of one `tidelog/` folder, oldest first.
pub fn runs_in<D: Dir>(dir: &D, root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in dir.list(root)? {
        let p = root.join(&name);
        if name.starts_with("run-") && dir.size(&p.join(RECORDS))?.is_some() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The run id in a run folder's name `run-YYYYMMDD_HHMMSS-<id>` (ids may hold `-`), or `None`
/// for a name of another shape.
pub fn run_id_of(folder_name: &str) -> Option<&str> {
    let rest = folder_name.strip_prefix("run-")?;
    let (stamp, id) = (rest.get(..15)?, rest.get(15..)?.strip_prefix('-')?);
    let (date, time) = stamp.split_once('_')?;
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (digits(date, 8) && digits(time, 6) && !id.is_empty()).then_some(id)
}

/// The run id of a run folder's path (see [`run_id_of`]).
pub fn run_id_of_path(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str()).and_then(run_id_of)
}

/// Finds the folder of run `id` inside a `tidelog/` folder: the id must match exactly, so
/// run `1` is never taken for `exp-1`.
pub fn find_run<D: Dir>(dir: &D, root: &Path, id: &str) -> io::Result<Option<PathBuf>> {
    Ok(runs_in(dir, root)?
        .into_iter()
        .find(|p| run_id_of_path(p) == Some(id)))
}

impl<D: Dir> FolderRun<D> {
    /// Opens a run folder (no I/O yet).
    pub fn open(dir: D, path: impl Into<PathBuf>) -> Self {
        FolderRun {
            dir,
            path: path.into(),
            include_synced: false,
        }
    }

    /// Creates the folder of a new run under the `tidelog/` folder `root`.
    pub fn create(dir: D, root: &Path, info: &RunInfo) -> io::Result<Self> {
        let path = root.join(run_dir_name(info.created_ms, &info.id));
        dir.mkdirp(&path.join(FILES))?;
        dir.append(&path.join(RECORDS), &[])?;
        Ok(FolderRun::open(dir, path))
    }

    /// Makes the next sync start over from the first record (`--include-synced`).
    pub fn resend_all(mut self) -> Self {
        self.include_synced = true;
        self
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The filesystem it lives on.
    pub(super) fn dir(&self) -> &D {
        &self.dir
    }

    /// The whole `records.tlog` (empty when missing).
    pub fn log_bytes(&self) -> io::Result<Vec<u8>> {
        Ok(self.dir.read(&self.path.join(RECORDS))?.unwrap_or_default())
    }

    /// Appends framed records to `records.tlog`, all or nothing: a failed append is cut back
    /// to the last complete frame, so records appended later never follow garbage (which a
    /// reader would have to report as corruption).
    pub fn append_records(&self, bytes: &[u8]) -> io::Result<()> {
        let path = self.path.join(RECORDS);
        let before = self.dir.size(&path)?.unwrap_or(0);
        self.dir
            .append(&path, bytes)
            .map_err(|e| match self.dir.truncate(&path, before) {
                Ok(()) => e,
                Err(cut) => io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; cutting {} back to {before} bytes failed too ({cut})",
                        path.display()
                    ),
                ),
            })
    }

    /// Stores a saved file under `files/`, keeping a replaced version until it is synced.
    pub fn put_file(&self, rel: &str, bytes: &[u8]) -> io::Result<()> {
        let files = self.path.join(FILES);
        let path = files.join(rel);
        if let Some(old) = self.dir.read(&path)? {
            let old_sha = sha256_hex(&old);
            if old_sha == sha256_hex(bytes) {
                return Ok(());
            }
            self.dir.mkdirp(&files.join(VERSIONS))?;
            self.dir.rename(&path, &files.join(VERSIONS).join(old_sha))?;
        }
        if let Some(parent) = path.parent() {
            self.dir.mkdirp(parent)?;
        }
        self.dir.write_atomic(&path, bytes)
    }

    /// Writes a JSON file under `files/` (config.json, summary.json, metadata.json).
    pub fn put_json(&self, name: &str, value: &impl Serialize) -> io::Result<()> {
        write_json(&self.dir, &self.path.join(FILES).join(name), value)
    }

    /// Reads a JSON file under `files/`.
    pub fn get_json<T: DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        read_json(&self.dir, &self.path.join(FILES).join(name))
    }

    /// A saved file's content: its current copy, or the version kept when it was replaced.
    pub fn file_bytes(&self, file: &FileRef) -> io::Result<Vec<u8>> {
        let files = self.path.join(FILES);
        for candidate in [files.join(&file.path), files.join(VERSIONS).join(&file.sha256)] {
            if let Some(data) = self.dir.read(&candidate)? {
                if sha256_hex(&data) == file.sha256 {
                    return Ok(data);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no copy of {} with sha256 {}", file.path, file.sha256),
        ))
    }

    /// True when `.synced` matches the current log.
    pub fn is_synced(&self) -> bool {
        let marker: Option<SyncedMarker> = read_json(&self.dir, &self.path.join(SYNCED)).ok().flatten();
        let len = self.dir.size(&self.path.join(RECORDS)).ok().flatten();
        matches!((marker, len), (Some(m), Some(l))
            if m.log_bytes == l && (m.state != Some(RunState::Running) || self.dir.is_locked(&self.path)))
    }

    /// The progress a sync starts from: none with `--include-synced`, else `.sync-progress`,
    /// else what `.synced` recorded.
    pub fn saved_progress(&self) -> io::Result<SyncProgress> {
        if self.include_synced {
            return Ok(SyncProgress::default());
        }
        if let Some(p) = read_json::<_, SyncProgress>(&self.dir, &self.path.join(PROGRESS))? {
            return Ok(p);
        }
        Ok(read_json::<_, SyncedMarker>(&self.dir, &self.path.join(SYNCED))?
            .map(|m| SyncProgress {
                acked_records: m.acked_records,
                upload: None,
                acked_files: m.acked_files,
                acked_state: m.state,
                checkpoint: m.checkpoint,
                ..SyncProgress::default()
            })
            .unwrap_or_default())
    }

    /// Reads the log and progress to describe the run.
    pub fn status(&self) -> io::Result<RunStatus> {
        let log = self.log_bytes()?;
        let index = LogIndex::new(&log).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if !index.corruption().is_empty() {
            // A resume point trusts the log before it: once that is found damaged, a resume
            // replays it all again and refuses, as without a point.
            self.drop_points()?;
        }
        let acked = self.saved_progress()?.acked_records.min(index.len());
        let (id, project) = index
            .run()
            .map(|r| (r.id.clone(), r.project.clone()))
            .unwrap_or_default();
        Ok(RunStatus {
            id,
            project,
            state: index.state(self.dir.is_locked(&self.path)),
            records: index.len(),
            unsynced: index.len() - acked,
            corruption: index.corruption().to_vec(),
        })
    }

    /// Writes `run.spec` (with `resume`, an ended run's resume point: see
    /// [`FolderRun::spec_point`]) and points `latest.spec` at this run.
    pub fn write_specs(
        &self,
        info: &RunInfo,
        state: RunState,
        resume: Option<serde_json::Value>,
    ) -> io::Result<()> {
        let spec = RunSpec {
            id: info.id.clone(),
            project: info.project.clone(),
            name: info.name.clone(),
            entity: info.entity.clone(),
            created: super::time::rfc3339(info.created_ms),
            state,
            sync: SyncSpec {
                state: "unsynced".into(),
                acked_records: 0,
            },
            resume,
        };
        write_json(&self.dir, &self.path.join(RUN_SPEC), &spec)?;
        let latest = LatestSpec {
            id: info.id.clone(),
            project: info.project.clone(),
            dir: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state,
            synced: false,
        };
        write_json(&self.dir, &self.path.with_file_name(LATEST_SPEC), &latest)
    }

    /// Updates `run.spec` and `latest.spec` after a sync step. `state` is the state the server
    /// acknowledged: a run no process holds takes it once it is not `running` (the last
    /// bundle carries the run's end); the log is never read here, so a sync stays O(new).
    fn update_specs(&self, synced: bool, acked: u64, state: Option<RunState>) -> io::Result<()> {
        let spec_path = self.path.join(RUN_SPEC);
        let Some(mut spec) = read_json::<_, RunSpec>(&self.dir, &spec_path)? else {
            return Ok(());
        };
        if let Some(state) = state.filter(|s| *s != RunState::Running) {
            if !self.dir.is_locked(&self.path) {
                spec.state = state;
            }
        }
        spec.sync = SyncSpec {
            state: if synced {
                "synced"
            } else if acked > 0 {
                "partial"
            } else {
                "unsynced"
            }
            .into(),
            acked_records: acked,
        };
        write_json(&self.dir, &spec_path, &spec)?;
        let latest_path = self.path.with_file_name(LATEST_SPEC);
        if let Some(mut latest) = read_json::<_, LatestSpec>(&self.dir, &latest_path)? {
            if latest.id == spec.id {
                latest.state = spec.state;
                latest.synced = synced;
                write_json(&self.dir, &latest_path, &latest)?;
            }
        }
        Ok(())
    }
}

impl<D: Dir> RunStore for FolderRun<D> {
    type Error = io::Error;

    async fn read_log(&self) -> io::Result<Vec<u8>> {
        self.log_bytes()
    }

    async fn read_log_at(&self, offset: u64, _seq: u64, max: usize) -> io::Result<Vec<u8>> {
        self.dir.read_at(&self.path.join(RECORDS), offset, max)
    }

    fn read_window(&self) -> usize {
        self.dir.read_window()
    }

    async fn log_len(&self) -> io::Result<u64> {
        Ok(self.dir.size(&self.path.join(RECORDS))?.unwrap_or(0))
    }

    async fn resume_points(&self) -> io::Result<Vec<Vec<u8>>> {
        self.stored_points()
    }

    async fn forget_points(&mut self) -> io::Result<()> {
        self.drop_points()
    }

    async fn read_files(&self, files: &[FileRef]) -> io::Result<Vec<Vec<u8>>> {
        files.iter().map(|f| self.file_bytes(f)).collect()
    }

    fn is_live(&self) -> bool {
        self.dir.is_locked(&self.path)
    }

    async fn progress(&self) -> io::Result<SyncProgress> {
        self.saved_progress()
    }

    async fn save_progress(&mut self, progress: &SyncProgress, synced_bytes: Option<u64>) -> io::Result<()> {
        self.include_synced = false;
        match synced_bytes {
            Some(log_bytes) => {
                let marker = SyncedMarker {
                    acked_records: progress.acked_records,
                    log_bytes,
                    acked_files: progress.acked_files.clone(),
                    state: progress.acked_state,
                    checkpoint: progress.checkpoint.clone(),
                };
                write_json(&self.dir, &self.path.join(SYNCED), &marker)?;
                self.dir.remove(&self.path.join(PROGRESS))?;
            }
            None => {
                self.dir.remove(&self.path.join(SYNCED))?;
                write_json(&self.dir, &self.path.join(PROGRESS), progress)?;
            }
        }
        self.update_specs(
            synced_bytes.is_some(),
            progress.acked_records,
            progress.acked_state,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::run_id_of;

    #[test]
    fn run_ids_are_parsed_exactly_from_folder_names() {
        assert_eq!(run_id_of("run-20261126_171930-a1b2c3d4"), Some("a1b2c3d4"));
        assert_eq!(run_id_of("run-20261126_171930-exp-1"), Some("exp-1"));
        assert_eq!(run_id_of("run-20261126_171930-1"), Some("1"));
        assert_eq!(run_id_of("run-20261126_171930-a-x"), Some("a-x"));
        for bad in [
            "run-20261126_171930-",
            "run-20261126-171930-x",
            "run-2026112_171930-x",
            "x",
            "run-",
        ] {
            assert_eq!(run_id_of(bad), None, "{bad}");
        }
    }
}
