//! What a sync remembers between runs of it ([`SyncProgress`], with the checkpoint of the
//! acknowledged prefix) and the [`RunStore`] seam it is kept behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::record::{FileRef, RunState};

/// How far a run's upload got; persisted by the store between syncs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SyncProgress {
    /// Records `0..acked_records` are acknowledged by the server.
    pub acked_records: u64,
    /// A resumable upload under way, to continue rather than restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<PendingUpload>,
    /// Saved files (by sha256) the server acknowledged: later bundles leave them out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acked_files: BTreeSet<String>,
    /// The run state the server last acknowledged: a run synced while `running` whose
    /// process has since died is synced again, to tell the server it `crashed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_state: Option<RunState>,
    /// Saved files (by sha256) the server refused, with why: their records are left out of
    /// later bundles so the records after them still go up, and the run never counts as synced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_files: BTreeMap<String, String>,
    /// Where record `acked_records` starts and what reading on from there needs, so the next
    /// sync reads only the records after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// A tus upload that was created but may not have finished.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// The upload's URL on the server.
    pub url: String,
    /// SHA-256 of the bundle being uploaded.
    pub sha256: String,
    /// The record range the bundle covers.
    pub seq_start: u64,
    /// One past the last record covered.
    pub seq_end: u64,
}

/// Where a run's log, files and sync progress live (a folder, IndexedDB, memory).
#[allow(async_fn_in_trait)]
pub trait RunStore {
    /// The store's error.
    type Error: Display;
    /// The whole `records.tlog`.
    async fn read_log(&self) -> Result<Vec<u8>, Self::Error>;
    /// Up to `max` bytes of the log from byte `offset`, where record `seq` starts; fewer only
    /// where the log ends. A store that keeps the log in pieces keyed by record (IndexedDB)
    /// finds the piece by `seq`.
    async fn read_log_at(&self, offset: u64, seq: u64, max: usize) -> Result<Vec<u8>, Self::Error> {
        let _ = seq;
        let log = self.read_log().await?;
        let start = (offset as usize).min(log.len());
        Ok(log[start..log.len().min(start.saturating_add(max))].to_vec())
    }
    /// Bytes of log a sync reads at once: a store that reads at an offset cheaply takes the
    /// log in windows; one that reads it whole (the default) takes it in one.
    fn read_window(&self) -> usize {
        usize::MAX
    }
    /// The log's length in bytes.
    async fn log_len(&self) -> Result<u64, Self::Error> {
        Ok(self.read_log().await?.len() as u64)
    }
    /// The writer's resume points ([`super::resume_point::ResumePoint`]) as stored (a live
    /// run's, an ended run's), for a resume to check and take the furthest intact one.
    async fn resume_points(&self) -> Result<Vec<Vec<u8>>, Self::Error> {
        Ok(Vec::new())
    }
    /// Drops the resume points: a point trusts the log before it, so once that log is found
    /// damaged a resume replays it all again (and refuses, naming the damage).
    async fn forget_points(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Saved files' contents, in the order asked.
    async fn read_files(&self, files: &[FileRef]) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Whether a live process still writes this run (a dead one without finish is crashed).
    fn is_live(&self) -> bool;
    /// The persisted progress.
    async fn progress(&self) -> Result<SyncProgress, Self::Error>;
    /// Persists progress; `synced_bytes` (the log's length) is set once every intact record is
    /// acknowledged.
    async fn save_progress(
        &mut self,
        progress: &SyncProgress,
        synced_bytes: Option<u64>,
    ) -> Result<(), Self::Error>;
}
