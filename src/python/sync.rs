//! `tidelog.sync()`: the core sync engine over the native run folders and HTTP transport,
//! as `tidelog sync` runs it (one run after another, exactly once, resuming).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::sync::{sync_run, SyncOptions};
use crate::native::credentials::resolve;
use crate::native::layout::discover;
use crate::native::store::RunDir;
use crate::native::transport::HttpTransport;

/// One run's outcome: what was sent, or why not.
struct Outcome {
    dir: PathBuf,
    result: Result<crate::core::sync::SyncReport, String>,
}

/// Uploads every unsynced run under `dir` (default `$TIDELOG_DIR` or the current directory);
/// returns one dict per run and raises when any run was left unsynced.
#[pyfunction]
#[pyo3(signature = (dir=None, server=None, api_key=None, timeout=30.0))]
pub fn sync<'py>(
    py: Python<'py>,
    dir: Option<PathBuf>,
    server: Option<String>,
    api_key: Option<String>,
    timeout: f64,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let dir = dir
        .or_else(|| std::env::var_os("TIDELOG_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let creds = resolve(server.as_deref(), api_key);
    let runs = discover(&dir).map_err(|e| PyOSError::new_err(format!("{}: {e}", dir.display())))?;
    let runs: Vec<RunDir> = runs
        .into_iter()
        .map(RunDir::new)
        .filter(|r| !r.is_synced())
        .collect();
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key) = creds.api_key else {
        return Err(PyRuntimeError::new_err(
            "tidelog.sync: no API key: set TIDELOG_API_KEY, pass api_key=, or run `tidelog login`",
        ));
    };
    let timeout = Duration::from_secs_f64(timeout.clamp(0.1, 86_400.0));
    let outcomes = py.detach(|| {
        let opts = SyncOptions::default();
        runs.into_iter()
            .map(|mut run| {
                let mut transport = HttpTransport::new(&creds.server, &key, timeout);
                let result = pollster::block_on(sync_run(&mut run, &mut transport, &opts, &mut |_| {}))
                    .map_err(|e| e.to_string());
                Outcome {
                    dir: run.path().to_path_buf(),
                    result,
                }
            })
            .collect::<Vec<_>>()
    });
    let mut out = Vec::with_capacity(outcomes.len());
    let mut failed = Vec::new();
    for o in outcomes {
        let d = PyDict::new(py);
        d.set_item("dir", &o.dir)?;
        match o.result {
            Ok(r) => {
                d.set_item("state", r.state.as_str())?;
                d.set_item("rows_added", r.rows_added)?;
                d.set_item("duplicates_skipped", r.duplicates_skipped)?;
                d.set_item("bundles", r.bundles)?;
                d.set_item("bytes_sent", r.bytes_sent)?;
                d.set_item("skipped_files", r.skipped_files.clone())?;
                if !r.skipped_files.is_empty() {
                    failed.push(format!(
                        "{}: skipped files {:?}",
                        o.dir.display(),
                        r.skipped_files
                    ));
                }
            }
            Err(e) => {
                d.set_item("error", &e)?;
                failed.push(format!("{}: {e}", o.dir.display()));
            }
        }
        out.push(d);
    }
    if !failed.is_empty() {
        return Err(PyRuntimeError::new_err(format!(
            "tidelog.sync: {} run(s) left unsynced (the next sync resumes them):\n  {}",
            failed.len(),
            failed.join("\n  ")
        )));
    }
    Ok(out)
}
