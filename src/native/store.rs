//! A run folder as the sync engine's [`RunStore`]: log, files, progress and liveness.

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use crate::core::bundle::sha256_hex;
use crate::core::log_index::LogIndex;
use crate::core::record::{FileRef, RunState};
use crate::core::sync::{RunStore, SyncProgress};

use super::layout::{
    read_json, write_json_atomic, RunSpec, SyncSpec, SyncedMarker, FILES, LATEST_SPEC, LOCK, PROGRESS,
    RECORDS, RUN_SPEC, SYNCED,
};

/// Where replaced versions of a saved file are kept until synced.
pub const VERSIONS: &str = ".versions";

/// A run folder on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
    include_synced: bool,
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
}

impl RunDir {
    /// Opens a run folder (no I/O yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir {
            path: path.into(),
            include_synced: false,
        }
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

    /// True when `.synced` matches the current log.
    pub fn is_synced(&self) -> bool {
        let marker: Option<SyncedMarker> = read_json(&self.path.join(SYNCED)).ok().flatten();
        let len = fs::metadata(self.path.join(RECORDS)).map(|m| m.len()).ok();
        matches!((marker, len), (Some(m), Some(l)) if m.log_bytes == l)
    }

    /// Reads the log and progress to describe the run.
    pub fn status(&self) -> io::Result<RunStatus> {
        let log = self.log_bytes()?;
        let index = LogIndex::new(&log).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let acked = self.saved_progress()?.acked_records.min(index.len());
        let (id, project) = index
            .run()
            .map(|r| (r.id.clone(), r.project.clone()))
            .unwrap_or_default();
        Ok(RunStatus {
            id,
            project,
            state: index.state(self.is_live()),
            records: index.len(),
            unsynced: index.len() - acked,
        })
    }

    fn update_specs(&self, synced: bool, acked: u64) -> io::Result<()> {
        let spec_path = self.path.join(RUN_SPEC);
        let Some(mut spec) = read_json::<RunSpec>(&spec_path)? else {
            return Ok(());
        };
        if !self.is_live() {
            let log = self.log_bytes()?;
            if let Ok(index) = LogIndex::new(&log) {
                spec.state = index.state(false);
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
        write_json_atomic(&spec_path, &spec)?;
        let latest_path = self.path.with_file_name(LATEST_SPEC);
        if let Some(mut latest) = read_json::<super::layout::LatestSpec>(&latest_path)? {
            if latest.id == spec.id {
                latest.state = spec.state;
                latest.synced = synced;
                write_json_atomic(&latest_path, &latest)?;
            }
        }
        Ok(())
    }
}

impl RunStore for RunDir {
    type Error = io::Error;

    async fn read_log(&self) -> io::Result<Vec<u8>> {
        self.log_bytes()
    }

    async fn read_files(&self, files: &[FileRef]) -> io::Result<Vec<Vec<u8>>> {
        files.iter().map(|f| self.file_bytes(f)).collect()
    }

    fn is_live(&self) -> bool {
        let Ok(f) = File::open(self.path.join(LOCK)) else {
            return false;
        };
        matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock))
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
                };
                write_json_atomic(&self.path.join(SYNCED), &marker)?;
                match fs::remove_file(self.path.join(PROGRESS)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            None => {
                let _ = fs::remove_file(self.path.join(SYNCED));
                write_json_atomic(&self.path.join(PROGRESS), progress)?;
            }
        }
        self.update_specs(synced_bytes.is_some(), progress.acked_records)
    }
}

impl RunDir {
    /// The whole `records.tlog`.
    pub fn log_bytes(&self) -> io::Result<Vec<u8>> {
        fs::read(self.path.join(RECORDS))
    }

    /// A saved file's content: its current copy, or the version kept when it was replaced.
    pub fn file_bytes(&self, file: &FileRef) -> io::Result<Vec<u8>> {
        let files = self.path.join(FILES);
        for candidate in [files.join(&file.path), files.join(VERSIONS).join(&file.sha256)] {
            match fs::read(&candidate) {
                Ok(data) if sha256_hex(&data) == file.sha256 => return Ok(data),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no copy of {} with sha256 {}", file.path, file.sha256),
        ))
    }

    /// The progress a sync starts from: none with `--include-synced`, else `.sync-progress`,
    /// else what `.synced` recorded.
    pub fn saved_progress(&self) -> io::Result<SyncProgress> {
        if self.include_synced {
            return Ok(SyncProgress::default());
        }
        if let Some(p) = read_json::<SyncProgress>(&self.path.join(PROGRESS))? {
            return Ok(p);
        }
        Ok(read_json::<SyncedMarker>(&self.path.join(SYNCED))?
            .map(|m| SyncProgress {
                acked_records: m.acked_records,
                upload: None,
            })
            .unwrap_or_default())
    }
}
