//! `Store`: where this page's (or process's) runs live, and the sync of all of them.

use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::backend::{Backend, StoreError};
use super::fetch::FetchTransport;
use super::fs_host::{FsHost, FsStore};
use super::idb::IdbStore;
use super::js_error;
use super::memory::MemoryStore;
use crate::core::folder::corruption_note;
use crate::core::record::FileRef;
use crate::core::sync::{sync_run, RunStore, SyncOptions, SyncProgress};

/// The storage of runs, opened once per page or process and shared by its runs.
#[wasm_bindgen]
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Rc<Backend>,
}

/// Resolves after `ms` milliseconds (setTimeout in any JS runtime).
pub(crate) async fn sleep(ms: u64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
            let set_timeout: js_sys::Function = set_timeout.into();
            let _ = set_timeout.call2(&global, &resolve, &(ms as f64).into());
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// One run's share of a [`Store`], as the sync engine and a resume see it.
pub(crate) struct StoredRun<'a> {
    pub(crate) backend: &'a Backend,
    pub(crate) id: String,
    pub(crate) live: bool,
}

impl RunStore for StoredRun<'_> {
    type Error = StoreError;

    async fn read_log(&self) -> Result<Vec<u8>, StoreError> {
        self.backend.read_log(&self.id).await
    }

    async fn read_log_at(&self, offset: u64, seq: u64, max: usize) -> Result<Vec<u8>, StoreError> {
        self.backend.read_log_at(&self.id, offset, seq, max).await
    }

    fn read_window(&self) -> usize {
        self.backend.read_window()
    }

    async fn log_len(&self) -> Result<u64, StoreError> {
        self.backend.log_len(&self.id).await
    }

    async fn resume_points(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        self.backend.resume_points(&self.id).await
    }

    async fn forget_points(&mut self) -> Result<(), StoreError> {
        self.backend.forget_points(&self.id).await
    }

    async fn read_files(&self, files: &[FileRef]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            out.push(self.backend.read_file(&self.id, f).await?);
        }
        Ok(out)
    }

    fn is_live(&self) -> bool {
        self.live
    }

    async fn progress(&self) -> Result<SyncProgress, StoreError> {
        self.backend.progress(&self.id).await
    }

    async fn save_progress(
        &mut self,
        progress: &SyncProgress,
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        self.backend.save_progress(&self.id, progress, synced).await
    }
}

#[derive(Serialize)]
struct RunReport {
    id: String,
    state: &'static str,
    rows_added: u64,
    duplicates_skipped: u64,
    acked_records: u64,
    total_records: u64,
    bytes_sent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The server's `Retry-After`: the wrapper waits at least this long before the next try.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    /// Saved files the server refused (the run's records went up without them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped_files: Vec<String>,
}

#[wasm_bindgen]
impl Store {
    /// IndexedDB, for browsers and workers.
    #[wasm_bindgen(js_name = indexedDb)]
    pub async fn indexed_db() -> Result<Store, JsValue> {
        let idb = IdbStore::open().await.map_err(js_error)?;
        Ok(Store {
            backend: Rc::new(Backend::Idb(idb)),
        })
    }

    /// A `tidelog/` folder through a Node `fs` adapter.
    pub fn folder(host: FsHost, root: String) -> Store {
        Store {
            backend: Rc::new(Backend::Fs(FsStore::new(host, root))),
        }
    }

    /// Memory only.
    pub fn memory() -> Store {
        Store {
            backend: Rc::new(Backend::Memory(MemoryStore::default())),
        }
    }

    /// A run's whole log (`records.tlog` bytes), e.g. to download it from a page.
    #[wasm_bindgen(js_name = logBytes)]
    pub async fn log_bytes(&self, id: String) -> Result<Vec<u8>, JsValue> {
        self.backend.read_log(&id).await.map_err(js_error)
    }

    /// Ids of runs with records the server has not acknowledged.
    pub async fn unsynced(&self) -> Result<Vec<String>, JsValue> {
        self.backend.unsynced(&[]).await.map_err(js_error)
    }

    /// Uploads every unsynced run; `live` names runs still being written (by this or another
    /// tab), which are uploaded as `running` instead of `crashed`. Without `server` and
    /// `apiKey` (the Service Worker), each run goes to the server and key kept with it, and a
    /// run without them is left for a page. Resolves to one report per run (an `error` field
    /// where it failed; what was acknowledged stays acknowledged).
    #[wasm_bindgen(js_name = syncAll)]
    pub async fn sync_all(
        &self,
        server: Option<String>,
        api_key: Option<String>,
        live: Vec<String>,
    ) -> Result<JsValue, JsValue> {
        let opts = SyncOptions {
            attempts: 1,
            ..SyncOptions::default()
        };
        let given = server.zip(api_key);
        let mut reports = Vec::new();
        for id in self.backend.unsynced(&live).await.map_err(js_error)? {
            let (server, api_key) = match &given {
                Some(c) => c.clone(),
                None => match self.backend.credentials(&id).await.map_err(js_error)? {
                    Some(c) => c,
                    None => continue,
                },
            };
            let mut run = StoredRun {
                backend: &self.backend,
                live: live.contains(&id) || self.backend.is_live(&id),
                id: id.clone(),
            };
            let mut transport = FetchTransport::new(&server, &api_key);
            let report = match sync_run(&mut run, &mut transport, &opts, &mut |_| {}).await {
                Ok(r) => {
                    let refused = (!r.skipped_files.is_empty()).then(|| {
                        format!(
                            "saved files refused by the server: {}",
                            r.skipped_files.join("; ")
                        )
                    });
                    let error = [corruption_note(&id, &r.corruption), refused]
                        .into_iter()
                        .flatten()
                        .reduce(|a, b| format!("{a}; {b}"));
                    RunReport {
                        error,
                        id,
                        state: r.state.as_str(),
                        rows_added: r.rows_added,
                        duplicates_skipped: r.duplicates_skipped,
                        acked_records: r.acked_records,
                        total_records: r.total_records,
                        bytes_sent: r.bytes_sent,
                        retry_after_ms: None,
                        skipped_files: r.skipped_files,
                    }
                }
                Err(e) => RunReport {
                    id,
                    state: "",
                    rows_added: 0,
                    duplicates_skipped: 0,
                    acked_records: 0,
                    total_records: 0,
                    bytes_sent: 0,
                    retry_after_ms: e.retry_after_ms(),
                    error: Some(e.to_string()),
                    skipped_files: Vec::new(),
                },
            };
            reports.push(report);
        }
        serde_wasm_bindgen::to_value(&reports).map_err(js_error)
    }
}
