//! Browser storage in IndexedDB (database `tidelog`): a run row, the log as chunks keyed by
//! `[run, first record]` (one chunk per flush, written in one transaction with the files it
//! references), and saved files as blobs keyed by sha256. A run's row may carry the `server`
//! and `api_key` it was started with (absent on rows written before them, and for offline
//! runs), so the package's Service Worker can sync it with no page open.

use js_sys::{Array, Object, Reflect, Uint8Array};
use rexie::{KeyRange, ObjectStore, Rexie, Transaction, TransactionMode};
use wasm_bindgen::JsValue;

use super::backend::StoreError;
use crate::core::frame::HEADER;
use crate::core::record::{FileRef, RunInfo, RunState};
use crate::core::restore::Seed;
use crate::core::sync::SyncProgress;

const DB: &str = "tidelog";
const RUNS: &str = "runs";
const CHUNKS: &str = "chunks";
const BLOBS: &str = "blobs";
/// Id prefix of the rows a page going away writes instead of updating its run's row (which
/// needs a read an unloading page cannot wait for): `log_bytes` of the log it left behind.
/// Written by `storeNow` in `js/tidelog.js`.
const LATE: &str = "~late:";
/// Bytes of log a sync or a resume asks for at once: chunks are read by key range from the
/// one holding the first record wanted until this much is in hand.
pub const READ_WINDOW: usize = 8 << 20;
/// Chunks fetched per request while a window fills.
const CHUNK_BATCH: u32 = 16;

/// An open `tidelog` database.
pub struct IdbStore {
    db: Rexie,
}

/// rexie's error with its idb cause, in the words `Error::source` would chain; matched here
/// rather than walked as `dyn Error`, so idb's `Debug` impls (a `dyn Error` vtable) are not
/// linked into the wasm.
fn err(e: rexie::Error) -> StoreError {
    StoreError::new(match e {
        rexie::Error::IdbError(cause) => format!("idb error: {cause}"),
        other => other.to_string(),
    })
}

/// The chunk keys `[id, seq]` of run `id` from `lower` to `upper` (either end left out when open).
fn chunk_range(
    id: &str,
    lower: f64,
    upper: f64,
    lower_open: Option<bool>,
    upper_open: Option<bool>,
) -> Result<KeyRange, StoreError> {
    let key = |s: f64| -> JsValue { Array::of2(&id.into(), &s.into()).into() };
    KeyRange::bound(&key(lower), &key(upper), lower_open, upper_open)
        .map_err(|e| StoreError::new(e.to_string()))
}

/// Waits for `tx` to end. A transaction that aborts without a failed request (the `abort`
/// event, no `error` event) failed at commit: in browsers that is QuotaExceededError (or a
/// disk error), and its writes are gone, so it must not count as stored. rexie reports it as
/// `Ok(Aborted)` and does not hand out `transaction.error`, hence the fixed message.
async fn done(tx: Transaction) -> Result<(), StoreError> {
    if tx.done().await.map_err(err)?.is_committed() {
        Ok(())
    } else {
        Err(StoreError::new(
            "IndexedDB aborted the transaction at commit (QuotaExceededError: the storage quota \
             is used up or the disk is full)",
        ))
    }
}

/// The last acknowledged record of a run whose chunks before the one holding it may be
/// dropped: acknowledged whole (`synced`), ended (finished or failed, with the step it
/// reached) and acknowledged as ended, and not started with `keepSynced`.
fn prunable(row: &JsValue, progress: &SyncProgress, synced: Option<u64>) -> Option<u64> {
    let ended = matches!(
        get(row, "state").as_string().as_deref(),
        Some("finished" | "failed")
    );
    let acked_ended = progress.acked_state.is_some_and(|s| s != RunState::Running);
    let ok = synced.is_some()
        && ended
        && acked_ended
        && progress.checkpoint.is_some()
        && get(row, "step").as_f64().is_some()
        && !get(row, "keep_synced").is_truthy();
    progress.acked_records.checked_sub(1).filter(|_| ok)
}

/// Where the `n`th frame of a chunk starts (the chunk's end when it holds fewer): chunks
/// hold whole frames, written in one transaction, so the headers' lengths lead from one to
/// the next.
fn skip_frames(chunk: &[u8], n: u64) -> usize {
    let mut at = 0usize;
    for _ in 0..n {
        let Some(len) = chunk.get(at..at + 4) else {
            return chunk.len();
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        at = at.saturating_add(HEADER + len).min(chunk.len());
    }
    at
}

fn js_err(e: JsValue) -> StoreError {
    StoreError::new(format!("{e:?}"))
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    Reflect::get(obj, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn object(pairs: &[(&str, JsValue)]) -> Result<JsValue, StoreError> {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).map_err(js_err)?;
    }
    Ok(o.into())
}

fn json<T: serde::Serialize>(v: &T) -> JsValue {
    JsValue::from_str(&serde_json::to_string(v).unwrap_or_default())
}

/// A run row's sync progress (none yet: the default). Read as bytes, the same way the folder
/// store reads `.sync-progress`, so the wasm module holds one copy of its decoder.
fn progress_of(row: &JsValue) -> SyncProgress {
    progress_of_field(row, "progress")
}

/// A sync progress kept as JSON in a row's `field` (the default when absent).
fn progress_of_field(row: &JsValue, field: &str) -> SyncProgress {
    let text = get(row, field).as_string().unwrap_or_default();
    serde_json::from_slice(text.as_bytes()).unwrap_or_default()
}

impl IdbStore {
    /// Opens (creating on first use) the `tidelog` database.
    pub async fn open() -> Result<Self, StoreError> {
        let db = Rexie::builder(DB)
            .version(1)
            .add_object_store(ObjectStore::new(RUNS).key_path("id"))
            .add_object_store(ObjectStore::new(CHUNKS).key_path_array(["run", "seq"]))
            .add_object_store(ObjectStore::new(BLOBS).key_path("sha"))
            .build()
            .await
            .map_err(err)?;
        Ok(IdbStore { db })
    }

    async fn row(&self, id: &str) -> Result<Option<JsValue>, StoreError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadOnly)
            .map_err(err)?;
        let row = tx.store(RUNS).map_err(err)?.get(id.into()).await.map_err(err)?;
        done(tx).await?;
        Ok(row)
    }

    /// Sets `fields` on run `id`'s row. Fields rather than a closure: one copy of this future
    /// in the wasm module for every caller.
    async fn update_row(&self, id: &str, fields: &[(&str, JsValue)]) -> Result<(), StoreError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadWrite)
            .map_err(err)?;
        let store = tx.store(RUNS).map_err(err)?;
        let row = store
            .get(id.into())
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::new(format!("run {id} is not in IndexedDB")))?;
        for (k, v) in fields {
            Reflect::set(&row, &(*k).into(), v).map_err(js_err)?;
        }
        store.put(&row, None).await.map_err(err)?;
        done(tx).await?;
        Ok(())
    }

    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.row(id).await?.is_some())
    }

    /// The log's length: the row's, or a late row's when a page going away wrote more.
    pub async fn log_len(&self, id: &str) -> Result<u64, StoreError> {
        let mut len = 0f64;
        for key in [id.to_owned(), format!("{LATE}{id}")] {
            if let Some(row) = self.row(&key).await? {
                len = len.max(get(&row, "log_bytes").as_f64().unwrap_or(0.0));
            }
        }
        Ok(len as u64)
    }

    /// Up to `max` bytes of the log from record `seq` on (at byte `_offset`): only the chunks
    /// from the one holding `seq` are read, by key range on `[run, seq]`, so a sync after one
    /// new record reads the chunk that holds it, not the run's history.
    pub async fn read_log_at(
        &self,
        id: &str,
        _offset: u64,
        seq: u64,
        max: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let tx = self
            .db
            .transaction(&[CHUNKS], TransactionMode::ReadOnly)
            .map_err(err)?;
        let chunks = tx.store(CHUNKS).map_err(err)?;
        let upto = chunk_range(id, 0.0, seq as f64, None, None)?;
        let starts = chunks.get_all_keys(Some(upto), None).await.map_err(err)?;
        let mut out = Vec::new();
        if let Some(first) = starts.last() {
            let mut from = Reflect::get(first, &1.into())
                .map_err(js_err)?
                .as_f64()
                .unwrap_or(0.0);
            let mut skip = seq.saturating_sub(from as u64);
            // The chunk holding `seq` alone first: often all that is wanted.
            let mut limit = 1;
            'read: loop {
                let open = limit > 1;
                let range = chunk_range(id, from, f64::INFINITY, Some(open), None)?;
                let batch = chunks.get_all(Some(range), Some(limit)).await.map_err(err)?;
                for c in &batch {
                    let bytes = Uint8Array::new(&get(c, "bytes")).to_vec();
                    let start = skip_frames(&bytes, std::mem::take(&mut skip));
                    out.extend_from_slice(&bytes[start..]);
                    from = get(c, "seq").as_f64().unwrap_or(from);
                    if out.len() >= max {
                        break 'read;
                    }
                }
                if batch.len() < limit as usize {
                    break;
                }
                limit = CHUNK_BATCH;
            }
        }
        done(tx).await?;
        out.truncate(max);
        Ok(out)
    }

    /// Writes a new run's row; `credentials` (server URL, API key) are kept on it, and
    /// `keep_synced` keeps its chunks once it has ended and synced.
    pub async fn create(
        &self,
        info: &RunInfo,
        credentials: Option<&(String, String)>,
        keep_synced: bool,
    ) -> Result<(), StoreError> {
        let row = object(&[
            ("id", info.id.as_str().into()),
            ("info", json(info)),
            ("state", RunState::Running.as_str().into()),
            ("progress", json(&SyncProgress::default())),
            ("synced_bytes", JsValue::NULL),
            ("log_bytes", 0.into()),
            ("server", credentials.map(|c| c.0.as_str()).into()),
            ("api_key", credentials.map(|c| c.1.as_str()).into()),
            ("keep_synced", keep_synced.into()),
        ])?;
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadWrite)
            .map_err(err)?;
        tx.store(RUNS).map_err(err)?.put(&row, None).await.map_err(err)?;
        done(tx).await?;
        Ok(())
    }

    pub async fn append(
        &self,
        id: &str,
        seq: u64,
        bytes: &[u8],
        files: &[(FileRef, Vec<u8>)],
    ) -> Result<(), StoreError> {
        let tx = self
            .db
            .transaction(&[RUNS, CHUNKS, BLOBS], TransactionMode::ReadWrite)
            .map_err(err)?;
        let runs = tx.store(RUNS).map_err(err)?;
        let Some(row) = runs.get(id.into()).await.map_err(err)? else {
            let _ = tx.abort().await;
            return Err(StoreError::new(format!("run {id} is not in IndexedDB")));
        };
        let blobs = tx.store(BLOBS).map_err(err)?;
        for (f, data) in files {
            let blob = object(&[
                ("sha", f.sha256.as_str().into()),
                ("bytes", Uint8Array::from(&data[..]).into()),
            ])?;
            blobs.put(&blob, None).await.map_err(err)?;
        }
        let chunk = object(&[
            ("run", id.into()),
            ("seq", (seq as f64).into()),
            ("bytes", Uint8Array::from(bytes).into()),
        ])?;
        tx.store(CHUNKS)
            .map_err(err)?
            .put(&chunk, None)
            .await
            .map_err(err)?;
        let len = get(&row, "log_bytes").as_f64().unwrap_or(0.0) + bytes.len() as f64;
        Reflect::set(&row, &"log_bytes".into(), &len.into()).map_err(js_err)?;
        runs.put(&row, None).await.map_err(err)?;
        done(tx).await?;
        Ok(())
    }

    pub async fn read_file(&self, _id: &str, file: &FileRef) -> Result<Vec<u8>, StoreError> {
        let tx = self
            .db
            .transaction(&[BLOBS], TransactionMode::ReadOnly)
            .map_err(err)?;
        let blob = tx
            .store(BLOBS)
            .map_err(err)?
            .get(file.sha256.as_str().into())
            .await
            .map_err(err)?;
        done(tx).await?;
        blob.map(|b| Uint8Array::new(&get(&b, "bytes")).to_vec())
            .ok_or_else(|| {
                StoreError::new(format!(
                    "file {} ({}) is not in IndexedDB",
                    file.path, file.sha256
                ))
            })
    }

    pub async fn progress(&self, id: &str) -> Result<SyncProgress, StoreError> {
        let row = self
            .row(id)
            .await?
            .ok_or_else(|| StoreError::new(format!("run {id} is not in IndexedDB")))?;
        Ok(progress_of(&row))
    }

    /// Saves the progress; once an ended run is acknowledged whole, also drops its chunks
    /// (see [`prunable`]) in the same transaction, keeping on the row the progress and step a
    /// resume starts from instead ([`IdbStore::resume_seed`]), so no later sync, resume or
    /// finish reads a dropped chunk.
    pub async fn save_progress(
        &self,
        id: &str,
        progress: &SyncProgress,
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        let tx = self
            .db
            .transaction(&[RUNS, CHUNKS], TransactionMode::ReadWrite)
            .map_err(err)?;
        let runs = tx.store(RUNS).map_err(err)?;
        let row = runs
            .get(id.into())
            .await
            .map_err(err)?
            .ok_or_else(|| StoreError::new(format!("run {id} is not in IndexedDB")))?;
        let set = |k: &str, v: &JsValue| Reflect::set(&row, &k.into(), v).map_err(js_err);
        set("progress", &json(progress))?;
        set(
            "synced_bytes",
            &synced.map_or(JsValue::NULL, |b| (b as f64).into()),
        )?;
        if let Some(last) = prunable(&row, progress, synced) {
            let chunks = tx.store(CHUNKS).map_err(err)?;
            let upto = chunk_range(id, 0.0, last as f64, None, None)?;
            let starts = chunks.get_all_keys(Some(upto), None).await.map_err(err)?;
            let keep = starts
                .last()
                .and_then(|k| Reflect::get(k, &1.into()).ok())
                .and_then(|s| s.as_f64())
                .unwrap_or(0.0);
            if keep > 0.0 {
                let before = chunk_range(id, 0.0, keep, None, Some(true))?;
                chunks.delete(before.into()).await.map_err(err)?;
            }
            // The progress (its checkpoint) and the step: the module already holds the
            // progress's JSON code, so the seed needs no decoder of its own.
            set("seed", &json(progress))?;
            set("seed_step", &get(&row, "step"))?;
        }
        runs.put(&row, None).await.map_err(err)?;
        done(tx).await
    }

    /// Where a resume starts once the chunks before it were dropped: the checkpoint and step
    /// kept on the row when they were ([`IdbStore::prune`]); `None` while every chunk is there.
    pub async fn resume_seed(&self, id: &str) -> Result<Option<Seed>, StoreError> {
        let Some(row) = self.row(id).await? else {
            return Ok(None);
        };
        if get(&row, "seed").is_undefined() {
            return Ok(None);
        }
        let checkpoint = progress_of_field(&row, "seed").checkpoint.ok_or_else(|| {
            StoreError::new(format!(
                "run {id}: its synced chunks were dropped but its seed does not read"
            ))
        })?;
        let step = get(&row, "seed_step").as_f64().unwrap_or(0.0) as u64;
        Ok(Some(Seed { checkpoint, step }))
    }

    pub async fn set_state(&self, info: &RunInfo, state: RunState) -> Result<(), StoreError> {
        self.update_row(&info.id, &[("state", state.as_str().into())])
            .await
    }

    /// Records the run's end and the step it reached (what a resume needs once its synced
    /// chunks are dropped).
    pub async fn finish(&self, info: &RunInfo, state: RunState, step: u64) -> Result<(), StoreError> {
        self.update_row(
            &info.id,
            &[("state", state.as_str().into()), ("step", (step as f64).into())],
        )
        .await
    }

    /// The server URL and API key kept with run `id`, if it has them.
    pub async fn credentials(&self, id: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.row(id).await?.and_then(|row| {
            get(&row, "server")
                .as_string()
                .zip(get(&row, "api_key").as_string())
        }))
    }

    /// Runs with records the server lacks, and runs the server last heard of as running that
    /// no page (`live`) writes any more: their tab closed or crashed.
    pub async fn unsynced(&self, live: &[String]) -> Result<Vec<String>, StoreError> {
        let tx = self
            .db
            .transaction(&[RUNS], TransactionMode::ReadOnly)
            .map_err(err)?;
        let rows = tx
            .store(RUNS)
            .map_err(err)?
            .get_all(None, None)
            .await
            .map_err(err)?;
        done(tx).await?;
        let mut late = std::collections::HashMap::new();
        for r in &rows {
            if let Some(run) = get(r, "id")
                .as_string()
                .and_then(|id| id.strip_prefix(LATE).map(str::to_owned))
            {
                late.insert(run, get(r, "log_bytes").as_f64().unwrap_or(0.0));
            }
        }
        Ok(rows
            .iter()
            .filter_map(|r| {
                let id = get(r, "id").as_string().filter(|id| !id.starts_with(LATE))?;
                let written = get(r, "log_bytes").as_f64().unwrap_or(0.0);
                let log_bytes = written.max(late.get(&id).copied().unwrap_or(0.0));
                let behind = get(r, "synced_bytes").as_f64() != Some(log_bytes);
                let progress = progress_of(r);
                let abandoned = progress.acked_state == Some(RunState::Running) && !live.contains(&id);
                (behind || abandoned).then_some(id)
            })
            .collect())
    }
}
