//! Node: the on-disk layout through an `fs` adapter object the JS entry passes in, so the
//! browser build never imports `node:fs`. Runs written here sync with the native CLI too.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use wasm_bindgen::prelude::*;

use super::backend::StoreError;
use crate::core::digest::JsonMap;
use crate::core::folder::{find_run, run_id_of_path, runs_in, Dir, FolderRun};
use crate::core::layout::{LOCK, RECORDS};
use crate::core::record::{FileRef, RunInfo, RunState};
use crate::core::resume_point::ResumePoint;
use crate::core::sync::{RunStore, SyncProgress};

/// Bytes of log a sync or a resume reads at once through `readAt`.
const READ_WINDOW: usize = 8 << 20;
use crate::core::time::rfc3339;

#[wasm_bindgen]
extern "C" {
    /// The duck-typed adapter built in `js/node.js` over `node:fs`.
    #[derive(Clone)]
    pub type FsHost;

    #[wasm_bindgen(method, catch)]
    fn read(this: &FsHost, path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = readAt)]
    fn read_at(this: &FsHost, path: &str, offset: f64, max: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch, js_name = writeAtomic)]
    fn write_atomic(this: &FsHost, path: &str, data: &[u8]) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn append(this: &FsHost, path: &str, data: &[u8]) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn remove(this: &FsHost, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn rename(this: &FsHost, from: &str, to: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn mkdirp(this: &FsHost, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn list(this: &FsHost, path: &str) -> Result<Vec<String>, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn size(this: &FsHost, path: &str) -> Result<f64, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn truncate(this: &FsHost, path: &str, len: f64) -> Result<(), JsValue>;
    #[wasm_bindgen(method, catch)]
    fn metadata(this: &FsHost, id: &str, started: &str, version: &str) -> Result<String, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn lock(this: &FsHost, path: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method, js_name = ownerAlive)]
    fn owner_alive(this: &FsHost, lock: &str) -> bool;
}

fn io_err(e: JsValue) -> io::Error {
    let msg = js_sys::Reflect::get(&e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    let code = js_sys::Reflect::get(&e, &"code".into())
        .ok()
        .and_then(|c| c.as_string());
    io::Error::other(match code {
        Some(code) => format!("{code}: {msg}"),
        None => msg,
    })
}

fn p(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Node's filesystem as the layout's [`Dir`].
#[derive(Clone)]
pub struct NodeDir(pub FsHost);

impl Dir for NodeDir {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let v = self.0.read(&p(path)).map_err(io_err)?;
        Ok((!v.is_null() && !v.is_undefined()).then(|| js_sys::Uint8Array::new(&v).to_vec()))
    }

    fn read_at(&self, path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let v = self
            .0
            .read_at(&p(path), offset as f64, max as f64)
            .map_err(io_err)?;
        Ok(if v.is_null() || v.is_undefined() {
            Vec::new()
        } else {
            js_sys::Uint8Array::new(&v).to_vec()
        })
    }

    fn read_window(&self) -> usize {
        READ_WINDOW
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.0.write_atomic(&p(path), data).map_err(io_err)
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.0.append(&p(path), data).map_err(io_err)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.0.truncate(&p(path), len as f64).map_err(io_err)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.remove(&p(path)).map_err(io_err)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(&p(from), &p(to)).map_err(io_err)
    }

    fn mkdirp(&self, path: &Path) -> io::Result<()> {
        self.0.mkdirp(&p(path)).map_err(io_err)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        self.0.list(&p(path)).map_err(io_err)
    }

    fn size(&self, path: &Path) -> io::Result<Option<u64>> {
        let n = self.0.size(&p(path)).map_err(io_err)?;
        Ok((n >= 0.0).then_some(n as u64))
    }

    /// Live when the lock file names a process on this machine that still runs.
    fn is_locked(&self, run: &Path) -> bool {
        match self.read(&run.join(LOCK)) {
            Ok(Some(lock)) => self.0.owner_alive(&String::from_utf8_lossy(&lock)),
            _ => false,
        }
    }
}

fn store_err(e: io::Error) -> StoreError {
    StoreError::new(e.to_string())
}

/// Runs under one `tidelog/` folder.
pub struct FsStore {
    dir: NodeDir,
    root: PathBuf,
    /// Log length each resumed run was read at, checked once its lock is held: a writer that
    /// appended in between would leave the resumed state stale.
    read_at: RefCell<FxHashMap<String, u64>>,
    /// Each run's folder once found, so a flush does not list `tidelog/` again.
    paths: RefCell<FxHashMap<String, PathBuf>>,
}

impl FsStore {
    /// Runs under `root` (the `tidelog/` folder).
    pub fn new(host: FsHost, root: String) -> Self {
        FsStore {
            dir: NodeDir(host),
            root: PathBuf::from(root),
            read_at: RefCell::default(),
            paths: RefCell::default(),
        }
    }

    /// Run `id`'s folder: looked up once under `tidelog/` (a listing), then remembered.
    fn find(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        if let Some(path) = self.paths.borrow().get(id) {
            return Ok(Some(path.clone()));
        }
        let found = find_run(&self.dir, &self.root, id).map_err(store_err)?;
        if let Some(path) = &found {
            self.paths.borrow_mut().insert(id.to_owned(), path.clone());
        }
        Ok(found)
    }

    fn run(&self, id: &str) -> Result<FolderRun<NodeDir>, StoreError> {
        let path = self.find(id)?.ok_or_else(|| {
            StoreError::new(format!("run {id} has no folder under {}", self.root.display()))
        })?;
        Ok(FolderRun::open(self.dir.clone(), path))
    }

    /// Whether run `id` has a folder; its log's length now is checked again once its lock is
    /// held, after the resume has replayed it.
    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let Some(path) = self.find(id)? else {
            return Ok(false);
        };
        let len = self
            .dir
            .size(&path.join(RECORDS))
            .map_err(store_err)?
            .unwrap_or(0);
        self.read_at.borrow_mut().insert(id.to_owned(), len);
        Ok(true)
    }

    pub async fn read_log_at(
        &self,
        id: &str,
        offset: u64,
        seq: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        self.run(id)?
            .read_log_at(offset, seq, max)
            .await
            .map_err(store_err)
    }

    pub async fn log_len(&self, id: &str) -> Result<u64, StoreError> {
        self.run(id)?.log_len().await.map_err(store_err)
    }

    pub fn read_window(&self) -> usize {
        READ_WINDOW
    }

    /// Takes run `id`'s writer lock for this process (atomic in the adapter: `O_EXCL`, or a
    /// takeover from a dead process); refused naming the live holder. For a resumed run it
    /// also checks the log is still as it was read.
    fn take_lock(&self, run: &FolderRun<NodeDir>, id: &str) -> Result<(), StoreError> {
        self.dir
            .0
            .lock(&p(&run.path().join(LOCK)))
            .map_err(|e| StoreError::new(format!("run {id}: {}", io_err(e))))?;
        let read_at = self.read_at.borrow().get(id).copied();
        let now = self.dir.size(&run.path().join(RECORDS)).map_err(store_err)?;
        if read_at.is_some_and(|len| Some(len) != now) {
            self.dir.remove(&run.path().join(LOCK)).map_err(store_err)?;
            return Err(StoreError::new(format!(
                "run {id} was written by another process while it was being resumed; try again"
            )));
        }
        Ok(())
    }

    pub async fn create(&self, info: &RunInfo) -> Result<(), StoreError> {
        let run = FolderRun::create(self.dir.clone(), &self.root, info).map_err(store_err)?;
        self.paths
            .borrow_mut()
            .insert(info.id.clone(), run.path().to_path_buf());
        let metadata = self
            .dir
            .0
            .metadata(&info.id, &rfc3339(info.created_ms), env!("CARGO_PKG_VERSION"))
            .map_err(io_err)
            .map_err(store_err)?;
        let path = run.path().join(crate::core::layout::FILES).join("metadata.json");
        self.dir
            .write_atomic(&path, metadata.as_bytes())
            .map_err(store_err)?;
        self.set_state(info, RunState::Running).await
    }

    pub async fn append(
        &self,
        id: &str,
        _seq: u64,
        bytes: &[u8],
        files: &[(FileRef, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let run = self.run(id)?;
        for (f, data) in files {
            run.put_file(&f.path, data).map_err(store_err)?;
        }
        run.append_records(bytes).map_err(store_err)
    }

    /// Cuts the torn tail off a resumed run, under its writer lock.
    pub async fn truncate(&self, id: &str, len: u64) -> Result<(), StoreError> {
        let run = self.run(id)?;
        self.take_lock(&run, id)?;
        let path = run.path().join(RECORDS);
        self.dir.truncate(&path, len).map_err(store_err)?;
        self.read_at.borrow_mut().insert(id.to_owned(), len);
        Ok(())
    }

    pub async fn read_file(&self, id: &str, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        self.run(id)?.file_bytes(file).map_err(store_err)
    }

    pub async fn progress(&self, id: &str) -> Result<SyncProgress, StoreError> {
        self.run(id)?.saved_progress().map_err(store_err)
    }

    pub async fn save_progress(
        &self,
        id: &str,
        progress: &SyncProgress,
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        self.run(id)?
            .save_progress(progress, synced)
            .await
            .map_err(store_err)
    }

    /// Also claims the run's lock file while it runs (Node has no OS file locks) and gives it
    /// up once it has ended.
    pub async fn set_state(&self, info: &RunInfo, state: RunState) -> Result<(), StoreError> {
        let run = self.run(&info.id)?;
        if state == RunState::Running {
            self.take_lock(&run, &info.id)?;
        } else {
            self.dir.remove(&run.path().join(LOCK)).map_err(store_err)?;
        }
        run.write_specs(info, state, None).map_err(store_err)
    }

    /// Writes the digest kept while logging as `files/config.json` and `files/summary.json`,
    /// then records the run's end with its resume point in `run.spec` (the live one goes).
    pub async fn finish(
        &self,
        info: &RunInfo,
        state: RunState,
        config: &JsonMap,
        summary: &JsonMap,
        point: Option<&ResumePoint>,
    ) -> Result<(), StoreError> {
        let run = self.run(&info.id)?;
        run.put_json("config.json", config).map_err(store_err)?;
        run.put_json("summary.json", summary).map_err(store_err)?;
        run.write_ended(info, state, point).map_err(store_err)?;
        self.dir.remove(&run.path().join(LOCK)).map_err(store_err)
    }

    /// Replaces the live run's resume point (atomically).
    pub fn put_point(&self, id: &str, point: &ResumePoint) -> Result<(), StoreError> {
        self.run(id)?.put_resume_point(point).map_err(store_err)
    }

    /// Drops the run's resume points (its log was found damaged).
    pub fn forget_points(&self, id: &str) -> Result<(), StoreError> {
        self.run(id)?.drop_points().map_err(store_err)
    }

    /// The run's resume points as stored.
    pub async fn resume_points(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        RunStore::resume_points(&self.run(id)?).await.map_err(store_err)
    }

    /// Whether another process is writing run `id`.
    pub fn is_live(&self, id: &str) -> bool {
        self.run(id).is_ok_and(|run| run.is_live())
    }

    pub async fn unsynced(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for path in runs_in(&self.dir, &self.root).map_err(store_err)? {
            let run = FolderRun::open(self.dir.clone(), &path);
            if !run.is_synced() {
                if let Some(id) = run_id_of_path(&path) {
                    out.push(id.to_owned());
                }
            }
        }
        Ok(out)
    }
}
