//! One interface over the three places a wasm run can live: IndexedDB, a Node folder, memory.

use crate::core::digest::JsonMap;
use crate::core::record::{FileRef, RunInfo, RunState};
use crate::core::restore::Seed;
use crate::core::resume_point::ResumePoint;
use crate::core::sync::SyncProgress;

use super::fs_host::FsStore;
use super::idb::IdbStore;
use super::memory::MemoryStore;

/// Why the store refused; `quota` marks a full disk or an exceeded browser quota.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// What happened, with the platform's own words.
    pub message: String,
    /// True for QuotaExceededError / ENOSPC: the caller should tell the page.
    pub quota: bool,
}

impl StoreError {
    /// An error from any displayable cause, flagging quota exhaustion by its name.
    pub fn new(message: impl Into<String>) -> Self {
        let message = message.into();
        let quota =
            message.contains("QuotaExceeded") || message.contains("ENOSPC") || message.contains("quota");
        StoreError { message, quota }
    }
}

/// Where runs are kept.
pub enum Backend {
    /// Browser IndexedDB (database `tidelog`).
    Idb(IdbStore),
    /// Node: the on-disk layout of CONTRACT §3.
    Fs(FsStore),
    /// Edge runtimes without storage.
    Memory(MemoryStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Backend::Idb($s) => $e,
            Backend::Fs($s) => $e,
            Backend::Memory($s) => $e,
        }
    };
}

impl Backend {
    /// Where a resume of run `id` starts when the log before it is no longer stored.
    pub async fn resume_seed(&self, id: &str) -> Result<Option<Seed>, StoreError> {
        match self {
            Backend::Idb(s) => s.resume_seed(id).await,
            Backend::Fs(_) | Backend::Memory(_) => Ok(None),
        }
    }

    /// Whether runs here keep resume points: a folder does; IndexedDB resumes from its own
    /// seed, and memory does not outlive the page.
    pub fn keeps_points(&self) -> bool {
        matches!(self, Backend::Fs(_))
    }

    /// Replaces the live run's resume point.
    pub async fn put_point(&self, id: &str, point: &ResumePoint) -> Result<(), StoreError> {
        match self {
            Backend::Fs(s) => s.put_point(id, point),
            Backend::Idb(_) | Backend::Memory(_) => Ok(()),
        }
    }

    /// The run's resume points as stored, for a resume to pick the furthest intact one.
    pub async fn resume_points(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        match self {
            Backend::Fs(s) => s.resume_points(id).await,
            Backend::Idb(_) | Backend::Memory(_) => Ok(Vec::new()),
        }
    }

    /// Drops the run's resume points (its log was found damaged).
    pub async fn forget_points(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Backend::Fs(s) => s.forget_points(id),
            Backend::Idb(_) | Backend::Memory(_) => Ok(()),
        }
    }

    /// Whether run `id` is stored here (a resume then replays its log).
    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        each!(self, s => s.exists(id).await)
    }

    /// Creates the run's home (folder, row, entry) and records it as the latest run. In
    /// IndexedDB the row keeps `credentials` (server URL, API key), so the package's Service
    /// Worker can sync the run with no page open; no Service Worker reads a folder or memory.
    /// `keep_synced` keeps its acknowledged chunks in IndexedDB once it has ended and synced.
    pub async fn create(
        &self,
        info: &RunInfo,
        credentials: Option<&(String, String)>,
        keep_synced: bool,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Idb(s) => s.create(info, credentials, keep_synced).await,
            Backend::Fs(s) => s.create(info).await,
            Backend::Memory(s) => s.create(info).await,
        }
    }

    /// Appends framed records starting at record `seq`, with the saved files they reference,
    /// all or nothing.
    pub async fn append(
        &self,
        id: &str,
        seq: u64,
        bytes: &[u8],
        files: &[(FileRef, Vec<u8>)],
    ) -> Result<(), StoreError> {
        each!(self, s => s.append(id, seq, bytes, files).await)
    }

    /// Cuts a torn tail off a run's log before appending to it again.
    pub async fn truncate(&self, id: &str, len: u64) -> Result<(), StoreError> {
        match self {
            Backend::Fs(s) => s.truncate(id, len).await,
            Backend::Idb(_) | Backend::Memory(_) => Ok(()),
        }
    }

    /// The whole log of a run.
    pub async fn read_log(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        self.read_log_at(id, 0, 0, usize::MAX).await
    }

    /// Up to `max` bytes of a run's log from byte `offset`, where record `seq` starts.
    pub async fn read_log_at(
        &self,
        id: &str,
        offset: u64,
        seq: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        each!(self, s => s.read_log_at(id, offset, seq, max).await)
    }

    /// The length of a run's log in bytes.
    pub async fn log_len(&self, id: &str) -> Result<u64, StoreError> {
        each!(self, s => s.log_len(id).await)
    }

    /// Bytes of log a sync or a resume reads at once.
    pub fn read_window(&self) -> usize {
        match self {
            Backend::Fs(s) => s.read_window(),
            Backend::Idb(_) => super::idb::READ_WINDOW,
            Backend::Memory(_) => usize::MAX,
        }
    }

    /// A saved file's content.
    pub async fn read_file(&self, id: &str, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        each!(self, s => s.read_file(id, file).await)
    }

    /// Persisted sync progress.
    pub async fn progress(&self, id: &str) -> Result<SyncProgress, StoreError> {
        each!(self, s => s.progress(id).await)
    }

    /// Persists sync progress; `synced_bytes` marks the whole log acknowledged.
    pub async fn save_progress(
        &self,
        id: &str,
        progress: &SyncProgress,
        synced_bytes: Option<u64>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.save_progress(id, progress, synced_bytes).await)
    }

    /// Records the run's state where people look (run.spec, latest.spec, the runs row).
    pub async fn set_state(&self, info: &RunInfo, state: RunState) -> Result<(), StoreError> {
        each!(self, s => s.set_state(info, state).await)
    }

    /// Records the end of a run with its digest (the merged config and the summary, kept in
    /// memory as it was logged): a folder writes them as `files/config.json` and
    /// `files/summary.json`, so finishing never reads the log back. IndexedDB keeps `step`,
    /// which a resume needs once the synced chunks are dropped; a folder's `run.spec` keeps
    /// `point`, the ended run's resume point.
    pub async fn finish(
        &self,
        info: &RunInfo,
        state: RunState,
        (config, summary): (&JsonMap, &JsonMap),
        step: u64,
        point: Option<&ResumePoint>,
    ) -> Result<(), StoreError> {
        match self {
            Backend::Fs(s) => s.finish(info, state, config, summary, point).await,
            Backend::Idb(s) => s.finish(info, state, step).await,
            Backend::Memory(s) => s.set_state(info, state).await,
        }
    }

    /// Ids of the runs whose log is not fully acknowledged, or that the server last heard of
    /// as running while nobody writes them any more (`live`: the ones still being written).
    pub async fn unsynced(&self, live: &[String]) -> Result<Vec<String>, StoreError> {
        match self {
            Backend::Idb(s) => s.unsynced(live).await,
            Backend::Fs(s) => s.unsynced().await,
            Backend::Memory(s) => s.unsynced().await,
        }
    }

    /// The server URL and API key run `id` was created with (IndexedDB only).
    pub async fn credentials(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        match self {
            Backend::Idb(s) => s.credentials(id).await,
            Backend::Fs(_) | Backend::Memory(_) => Ok(None),
        }
    }

    /// Whether another process is writing run `id` (Node runs name their process in `.lock`).
    pub fn is_live(&self, id: &str) -> bool {
        match self {
            Backend::Fs(s) => s.is_live(id),
            Backend::Idb(_) | Backend::Memory(_) => false,
        }
    }
}
