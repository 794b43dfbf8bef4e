//! The Python extension module `tidelog._tidelog` (cargo feature `python`): thin bindings over
//! [`crate::init`], [`crate::Run`], [`crate::Media`] and the core sync engine. The Python
//! package in `python/tidelog/` builds the user-facing API on it.

mod convert;
mod media;
mod run;
mod sync;

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::native::run::{init as start, Mode, Resume, Settings};

use self::convert::dict_to_map;
use self::media::PyMedia;
use self::run::{run_err, PyRun};

fn parse_mode(mode: &str) -> PyResult<Mode> {
    match mode {
        "auto" => Ok(Mode::Auto),
        "offline" => Ok(Mode::Offline),
        "online" => Ok(Mode::Online),
        other => Err(PyValueError::new_err(format!(
            "mode must be \"offline\", \"online\" or \"auto\", not {other:?}"
        ))),
    }
}

fn parse_resume(resume: &str) -> PyResult<Resume> {
    Resume::parse(Some(resume)).map_err(PyValueError::new_err)
}

/// Starts a run (see `tidelog.init` for the arguments).
#[pyfunction]
#[pyo3(signature = (project, name=None, config=None, tags=None, notes=None, id=None, mode="auto",
    resume="allow", dir=None, entity=None, server=None, api_key=None, system_interval=Some(10.0)))]
#[allow(clippy::too_many_arguments)]
fn init(
    py: Python<'_>,
    project: String,
    name: Option<String>,
    config: Option<&Bound<PyDict>>,
    tags: Option<Vec<String>>,
    notes: Option<String>,
    id: Option<String>,
    mode: &str,
    resume: &str,
    dir: Option<PathBuf>,
    entity: Option<String>,
    server: Option<String>,
    api_key: Option<String>,
    system_interval: Option<f64>,
) -> PyResult<PyRun> {
    let system_interval = match system_interval {
        Some(s) if !(s.is_finite() && s >= 0.0) => {
            return Err(PyValueError::new_err(format!(
                "system_interval must be a number of seconds >= 0, not {s}"
            )))
        }
        other => other.map(Duration::from_secs_f64),
    };
    let settings = Settings {
        project,
        name,
        entity,
        id,
        config: config.map(dict_to_map).transpose()?.unwrap_or_default(),
        tags: tags.unwrap_or_default(),
        notes,
        mode: parse_mode(mode)?,
        resume: parse_resume(resume)?,
        dir,
        server,
        api_key,
        system_interval,
        ..Settings::default()
    };
    let run = py.detach(|| start(settings)).map_err(run_err)?;
    Ok(PyRun::new(run))
}

#[pymodule]
fn _tidelog(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRun>()?;
    m.add_class::<PyMedia>()?;
    m.add_function(wrap_pyfunction!(init, m)?)?;
    m.add_function(wrap_pyfunction!(sync::sync, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
