//! `WasmRun`: one run in a page or a Node process. `log()` work happens here synchronously
//! in memory; `flush()` moves the batch into the store as one atomic append.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use wasm_bindgen::prelude::*;

use super::backend::{Backend, StoreError};
use super::store::{Store, StoredRun};
use super::value::{to_object, to_value};
use super::{js_error, now_ms};
use crate::core::bundle::sha256_hex;
use crate::core::init::{check, open, InitError, NewRun, Resume, RunHome};
use crate::core::layout::{check_saved_file, run_id_from};
use crate::core::record::{FileRef, Meta, RunInfo, RunState};
use crate::core::restore::{resume_state, ResumeError, Resumed};
use crate::core::resume_point::{ResumePoint, RESUME_POINT_BYTES};
use crate::core::run_log::{LogOptions, Logged, RunLog};
use crate::core::value::Value;

/// The `init()` options the wasm side needs (the JS wrapper keeps the rest).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InitOptions {
    /// Project (required).
    pub project: String,
    /// Display name.
    pub name: Option<String>,
    /// Entity.
    pub entity: Option<String>,
    /// Run id; default a fresh one.
    pub id: Option<String>,
    /// Initial config: read by `to_object`, not serde, so a cyclic config is a clear error.
    #[serde(skip)]
    pub config: Map<String, Json>,
    /// Labels.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Description.
    pub notes: Option<String>,
    /// `allow` (default), `must` or `never`.
    pub resume: Option<String>,
    /// The server a new run is kept with in IndexedDB, for the Service Worker's sync (read
    /// by `openRun` itself, like `config`).
    #[serde(skip)]
    pub server: Option<String>,
    /// The API key kept with `server`.
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Keep the chunks of the run in IndexedDB once it has ended and the server acknowledged
    /// them (by default they are dropped, so IndexedDB holds what is unsynced, not history).
    #[serde(skip)]
    pub keep_synced: bool,
}

/// `logStaged`: the values were logged.
pub const LOGGED: u8 = 1;
/// `logStaged`: a step lower than the run's dropped the values.
pub const DROPPED: u8 = 0;
/// `logStaged`: the values were refused; `takeRefusal` says why.
pub const REFUSED: u8 = 2;

struct Inner {
    store: Store,
    info: RunInfo,
    log: RunLog,
    staging: Vec<f64>,
    others: Vec<(String, Value)>,
    /// Why the last `log_staged` was refused, until the wrapper asks.
    refusal: Option<String>,
    files: Vec<(FileRef, Vec<u8>)>,
    /// The previous batch's buffer, handed back to the log at the next flush so logging never
    /// regrows a batch from nothing (a multi-megabyte copy inside one `log()` call).
    spare: Vec<u8>,
    stored_records: u64,
    /// Length of the log the store holds: `stored_records` records.
    stored_bytes: u64,
    /// The flush on its way to the store, shared so `unflushed` can write it again.
    inflight: Option<Rc<InFlight>>,
    /// Log length from which the next flush leaves a resume point (stores that keep them).
    next_point: u64,
    finished: bool,
}

/// A batch handed to the store and not yet acknowledged by it.
#[derive(Clone)]
struct InFlight {
    seq: u64,
    upto: u64,
    bytes: Vec<u8>,
    files: Vec<(FileRef, Vec<u8>)>,
}

impl Inner {
    /// A run whose first `stored_records` records (`stored_bytes` of log) are in the store.
    fn new(store: Store, info: RunInfo, log: RunLog, stored_records: u64, stored_bytes: u64) -> Inner {
        Inner {
            store,
            info,
            stored_records,
            stored_bytes,
            inflight: None,
            log,
            staging: Vec::new(),
            others: Vec::new(),
            refusal: None,
            files: Vec::new(),
            spare: Vec::new(),
            next_point: stored_bytes + RESUME_POINT_BYTES,
            finished: false,
        }
    }
}

/// A live run, driven by the JS wrapper.
#[wasm_bindgen]
pub struct WasmRun {
    inner: Rc<RefCell<Inner>>,
}

fn type_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::TypeError::new(&message.to_string()).into()
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).ok();
    let filled = crypto.and_then(|c| {
        let buf = js_sys::Uint8Array::new_with_length(8);
        let get = js_sys::Reflect::get(&c, &"getRandomValues".into()).ok()?;
        js_sys::Function::from(get).call1(&c, &buf).ok()?;
        buf.copy_to(&mut bytes);
        Some(())
    });
    if filled.is_none() {
        for b in bytes.iter_mut() {
            *b = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    run_id_from(bytes)
}

/// This page's (or process's) store as `init` sees it: the core decides, this looks up,
/// creates and reopens.
struct Home<'a> {
    store: &'a Store,
    /// The server and key a new run is kept with (IndexedDB, for the Service Worker).
    credentials: Option<(String, String)>,
    /// Whether a new run keeps its chunks once synced (`keepSynced`).
    keep_synced: bool,
}

impl RunHome for Home<'_> {
    type Error = StoreError;

    fn place(&self) -> String {
        match &*self.store.backend {
            Backend::Idb(_) => "IndexedDB",
            Backend::Fs(_) => "the tidelog/ folder",
            Backend::Memory(_) => "memory",
        }
        .into()
    }

    async fn find(&mut self, id: &str) -> Result<Option<Result<Resumed, ResumeError>>, StoreError> {
        if !self.store.backend.exists(id).await? {
            return Ok(None);
        }
        let stored = StoredRun {
            backend: &self.store.backend,
            id: id.to_owned(),
            live: false,
        };
        let seed = self.store.backend.resume_seed(id).await?;
        Ok(Some(resume_state(&stored, seed).await))
    }

    async fn create(&mut self, info: &RunInfo) -> Result<(), StoreError> {
        self.store
            .backend
            .create(info, self.credentials.as_ref(), self.keep_synced)
            .await
    }

    async fn reopen(&mut self, info: &RunInfo, valid_len: u64, log_len: u64) -> Result<(), StoreError> {
        if valid_len < log_len {
            self.store.backend.truncate(&info.id, valid_len).await?;
        }
        self.store.backend.set_state(info, RunState::Running).await
    }
}

/// An `init` refusal as JS sees it: bad settings are a `TypeError`, the rest an `Error`.
fn init_error(e: InitError<StoreError>) -> JsValue {
    match e {
        InitError::Settings(m) => type_error(format!("tidelog.init: {m}")),
        other => js_error(format!("tidelog.init: {other}")),
    }
}

impl Store {
    /// Starts (or resumes) a run: the Rust side of `openRun`.
    pub async fn open(&self, opts: InitOptions) -> Result<WasmRun, JsValue> {
        let resume = Resume::parse(opts.resume.as_deref()).map_err(|m| init_error(InitError::Settings(m)))?;
        let mut home = Home {
            store: self,
            credentials: opts.server.zip(opts.api_key),
            keep_synced: opts.keep_synced,
        };
        let new = NewRun {
            project: opts.project,
            id: opts.id,
            name: opts.name,
            entity: opts.entity,
            tags: opts.tags,
            notes: opts.notes,
            created_ms: now_ms(),
        };
        let opened = open(&mut home, new, resume, new_id).await.map_err(init_error)?;
        let inner = Inner::new(
            self.clone(),
            opened.info,
            opened.log,
            opened.stored_records,
            opened.stored_bytes,
        );
        let run = WasmRun {
            inner: Rc::new(RefCell::new(inner)),
        };
        if !opts.config.is_empty() {
            run.inner
                .borrow_mut()
                .log
                .meta(&Meta::Config { update: opts.config });
        }
        flush(Rc::clone(&run.inner)).await?;
        Ok(run)
    }
}

#[wasm_bindgen]
impl Store {
    /// Starts (or resumes) a run: `opts` = `{ project, name, entity, id, config, tags, notes,
    /// resume, keepSynced }`; with `checkOnly` it only checks them (and resolves to nothing).
    #[wasm_bindgen(js_name = openRun)]
    pub fn open_run(&self, opts: JsValue) -> js_sys::Promise {
        let store = self.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let config = js_sys::Reflect::get(&opts, &"config".into()).unwrap_or_default();
            let raw = opts.clone();
            let mut opts: InitOptions = serde_wasm_bindgen::from_value(opts)
                .map_err(|e| type_error(format!("tidelog.init: bad options: {e}")))?;
            opts.config = to_object("config", &config)?;
            // Read by hand: as serde fields they would cost the wasm module more bytes.
            let text = |k: &str| js_sys::Reflect::get(&raw, &k.into()).ok()?.as_string();
            opts.server = text("server");
            opts.api_key = text("apiKey");
            opts.keep_synced = js_sys::Reflect::get(&raw, &"keepSynced".into())
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if js_sys::Reflect::get(&raw, &"checkOnly".into()).is_ok_and(|v| v.is_truthy()) {
                // `init`'s rules, checked before the module's current run is ended for this one.
                return Resume::parse(opts.resume.as_deref())
                    .and_then(|r| check(&opts.project, opts.id.as_deref(), r))
                    .map(|()| JsValue::UNDEFINED)
                    .map_err(|m| init_error(InitError::Settings(m)));
            }
            store.open(opts).await.map(JsValue::from)
        })
    }
}

async fn flush(inner: Rc<RefCell<Inner>>) -> Result<JsValue, JsValue> {
    flush_with_point(inner, false).await.map(|_| JsValue::UNDEFINED)
}

/// Flushes, and where the store keeps resume points, makes one for the log as stored once
/// the batch lands: every [`RESUME_POINT_BYTES`] (stored as the live point), or whenever
/// `ending` (returned, for the ended run's `run.spec`).
async fn flush_with_point(inner: Rc<RefCell<Inner>>, ending: bool) -> Result<Option<ResumePoint>, JsValue> {
    let (store, id, batch, point) = {
        let mut me = inner.borrow_mut();
        let mut bytes = std::mem::take(&mut me.spare);
        me.log.take_batch(&mut bytes);
        let files = std::mem::take(&mut me.files);
        if bytes.is_empty() && files.is_empty() {
            me.spare = bytes;
            return Ok(None);
        }
        let due = ending || me.stored_bytes + bytes.len() as u64 >= me.next_point;
        let point = (due && me.store.backend.keeps_points())
            .then(|| me.log.point_after(&me.info, &bytes, me.stored_bytes))
            .flatten();
        let batch = Rc::new(InFlight {
            seq: me.stored_records,
            upto: me.log.records(),
            bytes,
            files,
        });
        me.inflight = Some(Rc::clone(&batch));
        (me.store.clone(), me.info.id.clone(), batch, point)
    };
    let result = store
        .backend
        .append(&id, batch.seq, &batch.bytes, &batch.files)
        .await;
    let stored = result.is_ok();
    if let Some(p) = point.as_ref().filter(|_| stored && !ending) {
        // A point not written leaves the older one: a resume replays more. Its cause (a full
        // disk) fails the next append too, and that one is reported.
        let _ = store.backend.put_point(&id, p).await;
    }
    let mut me = inner.borrow_mut();
    me.inflight = None;
    let batch = Rc::unwrap_or_clone(batch);
    match result {
        Ok(()) => {
            me.stored_records = batch.upto;
            me.stored_bytes += batch.bytes.len() as u64;
            me.spare = batch.bytes;
            if let Some(p) = &point {
                me.next_point = p.offset + RESUME_POINT_BYTES;
            }
            Ok(point)
        }
        Err(e) => {
            me.log.restore_batch(batch.bytes);
            let newer = std::mem::replace(&mut me.files, batch.files);
            me.files.extend(newer);
            let err = js_sys::Error::new(&format!(
                "tidelog: could not store records (kept in memory): {}",
                e.message
            ));
            let _ = js_sys::Reflect::set(&err, &"quota".into(), &e.quota.into());
            Err(err.into())
        }
    }
}

/// `{ seq, bytes }` for IndexedDB's chunks store (the shape `IdbStore::append` writes).
fn chunk(seq: u64, bytes: &[u8]) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"seq".into(), &(seq as f64).into())?;
    js_sys::Reflect::set(&o, &"bytes".into(), &js_sys::Uint8Array::from(bytes))?;
    Ok(o.into())
}

/// `{ sha, bytes }` for IndexedDB's blobs store.
fn blob(file: &FileRef, bytes: &[u8]) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"sha".into(), &file.sha256.as_str().into())?;
    js_sys::Reflect::set(&o, &"bytes".into(), &js_sys::Uint8Array::from(bytes))?;
    Ok(o.into())
}

#[wasm_bindgen]
impl WasmRun {
    /// The run's id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.borrow().info.id.clone()
    }

    /// The step the next committed row gets.
    #[wasm_bindgen(getter)]
    pub fn step(&self) -> f64 {
        self.inner.borrow().log.step() as f64
    }

    /// Records logged but not yet in the store.
    #[wasm_bindgen(getter)]
    pub fn buffered(&self) -> f64 {
        let me = self.inner.borrow();
        (me.log.records() - me.stored_records) as f64
    }

    /// Records logged over the run's life.
    #[wasm_bindgen(getter)]
    pub fn records(&self) -> f64 {
        self.inner.borrow().log.records() as f64
    }

    /// Drops values staged by a call that failed half-way.
    #[wasm_bindgen(js_name = discardStaged)]
    pub fn discard_staged(&self) {
        self.inner.borrow_mut().others.clear();
    }

    /// The id of `key`, interned on first use; the wrapper caches it.
    pub fn intern(&self, key: &str) -> Result<u32, JsValue> {
        self.inner
            .borrow_mut()
            .log
            .intern(key)
            .map_err(|e| type_error(format!("tidelog: {e}")))
    }

    /// Address of `pairs` (id, value) slots of f64 in wasm memory for the wrapper to fill.
    pub fn staging(&self, pairs: usize) -> u32 {
        let mut me = self.inner.borrow_mut();
        if me.staging.len() < pairs * 2 {
            me.staging.resize(pairs * 2, 0.0);
        }
        me.staging.as_ptr() as u32
    }

    /// Stages a value that is not a plain number (string, boolean, object, media).
    #[wasm_bindgen(js_name = stageValue)]
    pub fn stage_value(&self, key: String, value: JsValue) -> Result<(), JsValue> {
        let v = to_value(&key, &value)?;
        self.inner.borrow_mut().others.push((key, v));
        Ok(())
    }

    /// Logs the `n` staged numbers and the staged values: `step` < 0 means none, `commit`
    /// 0 = false, 1 = true, 2 = default. Returns [`LOGGED`], [`DROPPED`] (a lower step) or
    /// [`REFUSED`] (the reason from `takeRefusal`): a plain number, because a `Result` comes
    /// back to JS as a fresh array, one garbage object per `log()`.
    #[wasm_bindgen(js_name = logStaged)]
    pub fn log_staged(&self, n: usize, step: f64, commit: u8) -> u8 {
        let mut guard = self.inner.borrow_mut();
        let me = &mut *guard;
        let others = std::mem::take(&mut me.others);
        let opts = LogOptions {
            step: (step >= 0.0).then_some(step as u64),
            commit: match commit {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
        };
        let n = n.min(me.staging.len() / 2);
        match me.log.log_ids(now_ms(), &me.staging[..n * 2], others, opts) {
            Ok(Logged::Accepted) => LOGGED,
            Ok(Logged::DroppedStaleStep { .. }) => DROPPED,
            Err(e) => {
                me.refusal = Some(format!("tidelog: {e}"));
                REFUSED
            }
        }
    }

    /// Why the last `logStaged` returned [`REFUSED`].
    #[wasm_bindgen(js_name = takeRefusal)]
    pub fn take_refusal(&self) -> Option<String> {
        self.inner.borrow_mut().refusal.take()
    }

    /// Writes a system-metrics row (`keys[i]` = `values[i]`).
    #[wasm_bindgen(js_name = logSystem)]
    pub fn log_system(&self, keys: Vec<String>, values: &[f64]) -> Result<(), JsValue> {
        let row: Vec<(&str, f64)> = keys
            .iter()
            .map(String::as_str)
            .zip(values.iter().copied())
            .collect();
        self.inner
            .borrow_mut()
            .log
            .system(now_ms(), &row)
            .map_err(|e| type_error(format!("tidelog: {e}")))
    }

    /// Merges keys into the run's config.
    #[wasm_bindgen(js_name = configUpdate)]
    pub fn config_update(&self, update: JsValue) -> Result<(), JsValue> {
        let update = to_object("config.update", &update)?;
        self.inner.borrow_mut().log.meta(&Meta::Config { update });
        Ok(())
    }

    /// Sets a summary key, overriding "last logged value".
    #[wasm_bindgen(js_name = summarySet)]
    pub fn summary_set(&self, key: String, value: JsValue) -> Result<(), JsValue> {
        let v = to_value(&key, &value)?.to_json();
        let mut update = Map::new();
        update.insert(key, v);
        self.inner.borrow_mut().log.meta(&Meta::Summary { update });
        Ok(())
    }

    /// Saves a file with the run; it is stored with the next flush and uploaded once.
    pub fn save(&self, name: String, bytes: Vec<u8>) -> Result<JsValue, JsValue> {
        check_saved_file(&name, bytes.len() as u64).map_err(|e| type_error(format!("tidelog.save: {e}")))?;
        let file = FileRef {
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
            path: name,
        };
        let mut me = self.inner.borrow_mut();
        me.log.meta(&Meta::File(file.clone()));
        me.files.push((file.clone(), bytes));
        serde_wasm_bindgen::to_value(&file).map_err(js_error)
    }

    /// Moves the batch into the store; rejects (keeping the batch) when the store refuses,
    /// with `error.quota` set when storage is full.
    pub fn flush(&self) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(flush(Rc::clone(&self.inner)))
    }

    /// Commits the open row: the page or process is going away for good.
    #[wasm_bindgen(js_name = commitOpenRow)]
    pub fn commit_open_row(&self) {
        self.inner.borrow_mut().log.commit_open_row();
    }

    /// What a page that is going away must still store, for `pagehide`: the flush in flight
    /// (an unload aborts it) and the batch, as `{ run, chunks: [{ seq, bytes }], blobs:
    /// [{ sha, bytes }], logBytes }`, or null. The JS entry writes it in one synchronously
    /// committed transaction. The batch stays here: a page that lives on stores it again with
    /// its next flush, under the same chunk key.
    pub fn unflushed(&self) -> Result<JsValue, JsValue> {
        let me = self.inner.borrow();
        let chunks = js_sys::Array::new();
        let blobs = js_sys::Array::new();
        let mut log_bytes = me.stored_bytes;
        let mut seq = me.stored_records;
        if let Some(f) = &me.inflight {
            chunks.push(&chunk(f.seq, &f.bytes)?);
            for (file, bytes) in &f.files {
                blobs.push(&blob(file, bytes)?);
            }
            log_bytes += f.bytes.len() as u64;
            seq = f.upto;
        }
        if !me.log.batch().is_empty() {
            chunks.push(&chunk(seq, me.log.batch())?);
            log_bytes += me.log.batch().len() as u64;
        }
        for (file, bytes) in &me.files {
            blobs.push(&blob(file, bytes)?);
        }
        if chunks.length() == 0 && blobs.length() == 0 {
            return Ok(JsValue::NULL);
        }
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"run".into(), &me.info.id.as_str().into())?;
        js_sys::Reflect::set(&out, &"chunks".into(), &chunks)?;
        js_sys::Reflect::set(&out, &"blobs".into(), &blobs)?;
        js_sys::Reflect::set(&out, &"logBytes".into(), &(log_bytes as f64).into())?;
        Ok(out.into())
    }

    /// Ends the run with `exit_code` (non-zero marks it failed) and stores everything.
    pub fn finish(&self, exit_code: i32) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let (store, info, config, summary, step) = {
                let mut me = inner.borrow_mut();
                if !me.finished {
                    me.finished = true;
                    me.log.meta(&Meta::Finish {
                        exit_code,
                        ts_ms: now_ms(),
                    });
                }
                let config = me.log.config().clone();
                let step = me.log.step();
                (me.store.clone(), me.info.clone(), config, me.log.summary(), step)
            };
            let point = flush_with_point(Rc::clone(&inner), true).await?;
            let state = if exit_code == 0 {
                RunState::Finished
            } else {
                RunState::Failed
            };
            store
                .backend
                .finish(&info, state, (&config, &summary), step, point.as_ref())
                .await
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}
