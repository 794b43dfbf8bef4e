//! Runs kept in memory, for runtimes without storage (Workers, Deno Deploy): they sync at
//! `finish()` and are gone with the process.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::backend::StoreError;
use crate::core::record::{FileRef, RunInfo, RunState};
use crate::core::sync::SyncProgress;

#[derive(Default)]
struct MemRun {
    log: Vec<u8>,
    files: HashMap<String, Vec<u8>>,
    progress: SyncProgress,
    synced_bytes: Option<u64>,
}

/// Every run of this process.
#[derive(Default)]
pub struct MemoryStore {
    runs: RefCell<BTreeMap<String, MemRun>>,
}

impl MemoryStore {
    fn with<T>(&self, id: &str, f: impl FnOnce(&mut MemRun) -> T) -> Result<T, StoreError> {
        let mut runs = self.runs.borrow_mut();
        let run = runs
            .get_mut(id)
            .ok_or_else(|| StoreError::new(format!("run {id} is not in memory")))?;
        Ok(f(run))
    }

    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.runs.borrow().contains_key(id))
    }

    pub async fn create(&self, info: &RunInfo) -> Result<(), StoreError> {
        self.runs.borrow_mut().entry(info.id.clone()).or_default();
        Ok(())
    }

    pub async fn append(
        &self,
        id: &str,
        _seq: u64,
        bytes: &[u8],
        files: &[(FileRef, Vec<u8>)],
    ) -> Result<(), StoreError> {
        self.with(id, |r| {
            r.log.extend_from_slice(bytes);
            for (f, data) in files {
                r.files.insert(f.sha256.clone(), data.clone());
            }
        })
    }

    pub async fn read_log_at(
        &self,
        id: &str,
        offset: u64,
        _seq: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        self.with(id, |r| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(r.log.len());
            r.log[start..r.log.len().min(start.saturating_add(max))].to_vec()
        })
    }

    pub async fn log_len(&self, id: &str) -> Result<u64, StoreError> {
        self.with(id, |r| r.log.len() as u64)
    }

    pub async fn read_file(&self, id: &str, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        self.with(id, |r| r.files.get(&file.sha256).cloned())?
            .ok_or_else(|| StoreError::new(format!("file {} is not in memory", file.path)))
    }

    pub async fn progress(&self, id: &str) -> Result<SyncProgress, StoreError> {
        self.with(id, |r| r.progress.clone())
    }

    pub async fn save_progress(
        &self,
        id: &str,
        progress: &SyncProgress,
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        self.with(id, |r| {
            r.progress = progress.clone();
            r.synced_bytes = synced;
        })
    }

    pub async fn set_state(&self, _info: &RunInfo, _state: RunState) -> Result<(), StoreError> {
        Ok(())
    }

    pub async fn unsynced(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .runs
            .borrow()
            .iter()
            .filter(|(_, r)| r.synced_bytes != Some(r.log.len() as u64))
            .map(|(id, _)| id.clone())
            .collect())
    }
}
