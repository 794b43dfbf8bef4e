//! `tidelog.Run` over the native [`Run`]: `log()` converts a dict without taking any lock,
//! then stages numbers by interned key id under the run's lock, the path the JS wrapper uses.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rustc_hash::FxHashMap;

use crate::core::run_log::{LogOptions, Logged};
use crate::core::value::Value;
use crate::native::run::{Run, RunError};

use super::convert::{convert, dict_to_map, fast_num, Conv};
use super::media::map_to_py;

/// Key objects remembered per run: enough for any real set of metric names, bounded so keys
/// made fresh on every call (f-strings) cannot grow it without end.
const MAX_CACHED_KEYS: usize = 16_384;

/// The run as Python sees it. A forked child holds a detached copy that never writes.
#[pyclass(frozen, name = "Run", module = "tidelog._tidelog")]
pub struct PyRun {
    state: Mutex<State>,
    detached: AtomicBool,
    warned: AtomicBool,
    owner_pid: u32,
    id: String,
    dir: PathBuf,
}

struct State {
    run: Option<Run>,
    /// Key object address → (the key, kept alive so the address is never reused; its id).
    keys: FxHashMap<usize, (Py<PyString>, u32)>,
    ids_values: Vec<f64>,
}

/// A core error as the Python exception a user expects.
pub fn run_err(e: RunError) -> PyErr {
    match e {
        RunError::Settings(_) | RunError::Resume(_) | RunError::Log(_) => {
            PyValueError::new_err(e.to_string())
        }
        RunError::Io { .. } => PyOSError::new_err(e.to_string()),
        RunError::Corrupt(_) | RunError::Sync(_) => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Issues a `UserWarning` (shown once per call site by Python's default filter).
fn warn(py: Python<'_>, msg: String) -> PyResult<()> {
    PyErr::warn(
        py,
        &py.get_type::<PyUserWarning>(),
        &std::ffi::CString::new(msg)?,
        1,
    )
}

fn finished() -> PyErr {
    PyRuntimeError::new_err("tidelog: this run has finished; call tidelog.init() for a new one")
}

impl PyRun {
    /// Wraps a started run.
    pub fn new(run: Run) -> Self {
        PyRun {
            id: run.id().to_owned(),
            dir: std::path::absolute(run.dir()).unwrap_or_else(|_| run.dir().to_path_buf()),
            owner_pid: std::process::id(),
            detached: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            state: Mutex::new(State {
                run: Some(run),
                keys: FxHashMap::default(),
                ids_values: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this process may write the run: not a detached or forked copy.
    fn owned(&self) -> bool {
        !self.detached.load(Ordering::Relaxed)
    }

    fn warn_detached(&self, py: Python<'_>) -> PyResult<()> {
        if !self.warned.swap(true, Ordering::Relaxed) {
            let msg = format!(
                "tidelog: run {} belongs to process {}; values logged in this forked child are dropped",
                self.id, self.owner_pid
            );
            warn(py, msg)?;
        }
        Ok(())
    }

    fn with_run<T>(&self, f: impl FnOnce(&mut Run) -> PyResult<T>) -> PyResult<T> {
        let mut st = self.lock();
        f(st.run.as_mut().ok_or_else(finished)?)
    }
}

#[pymethods]
impl PyRun {
    /// Logs a dict of values, like `wandb.log(data, step=, commit=)`.
    #[pyo3(signature = (data, step=None, commit=None))]
    fn log(
        &self,
        py: Python<'_>,
        data: &Bound<PyDict>,
        step: Option<u64>,
        commit: Option<bool>,
    ) -> PyResult<()> {
        if !self.owned() {
            return self.warn_detached(py);
        }
        let mut nums: Vec<(Bound<PyAny>, f64)> = Vec::with_capacity(data.len());
        let mut others: Vec<(Bound<PyAny>, Conv)> = Vec::new();
        for (k, v) in data.iter() {
            if !k.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err(format!(
                    "tidelog: log() keys must be strings, got {}",
                    k.repr()?
                )));
            }
            match fast_num(&v) {
                Some(x) => nums.push((k, x)),
                None => match convert(&k, &v)? {
                    Conv::Num(x) => nums.push((k, x)),
                    other => others.push((k, other)),
                },
            }
        }
        let mut named = Vec::with_capacity(others.len());
        for (k, _) in &others {
            named.push(k.cast::<PyString>()?.to_cow()?.into_owned());
        }
        let opts = LogOptions { step, commit };
        let mut guard = self.lock();
        let st = &mut *guard;
        let run = st.run.as_mut().ok_or_else(finished)?;
        st.ids_values.clear();
        for (k, x) in &nums {
            let id = match st.keys.get(&(k.as_ptr() as usize)) {
                Some((_, id)) => *id,
                None => {
                    let key = k.cast::<PyString>()?;
                    let id = run
                        .intern(&key.to_cow()?)
                        .map_err(|e| PyValueError::new_err(e.to_string()))?;
                    if st.keys.len() < MAX_CACHED_KEYS {
                        st.keys.insert(k.as_ptr() as usize, (key.clone().unbind(), id));
                    }
                    id
                }
            };
            st.ids_values.push(f64::from(id));
            st.ids_values.push(*x);
        }
        let mut values = Vec::with_capacity(others.len());
        for ((_, conv), name) in others.into_iter().zip(named) {
            let value = match conv {
                Conv::Media(m) => run.media(&name, m).map_err(run_err)?,
                Conv::Value(v) => v,
                Conv::Num(x) => Value::Num(x),
            };
            values.push((name, value));
        }
        let logged = run
            .log_ids(&st.ids_values, values, opts)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        drop(guard);
        if let Logged::DroppedStaleStep { step, current } = logged {
            let msg = format!("tidelog: dropped values logged at step {step}: the run is at step {current}; steps must not decrease");
            warn(py, msg)?;
        }
        Ok(())
    }

    /// Merges a dict into the run's config.
    fn config_update(&self, update: &Bound<PyDict>) -> PyResult<()> {
        if !self.owned() {
            return Ok(());
        }
        let map = dict_to_map(update)?;
        self.with_run(|run| run.config_update(map).map_err(run_err))
    }

    /// The config as merged so far.
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let config = self.with_run(|run| Ok(run.config().clone()))?;
        map_to_py(py, &config)
    }

    /// Sets a summary value, overriding the last logged one.
    fn summary_set(&self, key: &Bound<PyString>, value: &Bound<PyAny>) -> PyResult<()> {
        if !self.owned() {
            return Ok(());
        }
        let value = match convert(key.as_any(), value)? {
            Conv::Num(x) => Value::Num(x),
            Conv::Value(v) => v,
            Conv::Media(_) => return Err(PyTypeError::new_err("tidelog: media cannot be a summary value")),
        };
        let name = key.to_cow()?.into_owned();
        self.with_run(|run| {
            run.summary_set(&name, value);
            Ok(())
        })
    }

    /// Saves bytes as a file of the run under `name`; returns its path, sha256 and size.
    fn save<'py>(&self, py: Python<'py>, name: &str, data: &[u8]) -> PyResult<Bound<'py, PyDict>> {
        let file = self.with_run(|run| run.save(name, data).map_err(run_err))?;
        let out = PyDict::new(py);
        out.set_item("path", file.path)?;
        out.set_item("sha256", file.sha256)?;
        out.set_item("size", file.size)?;
        Ok(out)
    }

    /// Ends the run (non-zero `exit_code` marks it failed), flushes it and, outside offline
    /// mode, syncs it when a server is configured; returns the run folder. Idempotent.
    #[pyo3(signature = (exit_code=0))]
    fn finish(&self, py: Python<'_>, exit_code: i32) -> PyResult<Option<PathBuf>> {
        if !self.owned() || std::process::id() != self.owner_pid {
            self.detach();
            return Ok(None);
        }
        let run = {
            let mut st = self.lock();
            st.keys.clear();
            st.run.take()
        };
        let Some(run) = run else {
            return Ok(None);
        };
        py.detach(|| run.finish(exit_code)).map(Some).map_err(run_err)
    }

    /// Forgets the run without writing anything: for the child of a `fork`, whose copy of the
    /// parent's run must neither write its log nor wait on the parent's writer thread.
    fn detach(&self) {
        self.detached.store(true, Ordering::Relaxed);
        if let Ok(mut st) = self.state.try_lock() {
            if let Some(run) = st.run.take() {
                std::mem::forget(run);
            }
        }
    }

    /// Whether this is a forked child's detached copy.
    #[getter]
    fn detached(&self) -> bool {
        !self.owned()
    }

    /// Whether the run has finished (or was detached).
    #[getter]
    fn finished(&self) -> bool {
        !self.owned() || self.lock().run.is_none()
    }

    /// The run's id.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    /// The run's folder, absolute.
    #[getter]
    fn dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The step the next committed row gets.
    #[getter]
    fn step(&self) -> PyResult<u64> {
        self.with_run(|run| Ok(run.step()))
    }
}

impl Drop for PyRun {
    fn drop(&mut self) {
        if !self.owned() || std::process::id() != self.owner_pid {
            self.detach();
        }
    }
}
