//! `tidelog.Image`/`Audio`/`Histogram`/`Table`/`Plot` over the core's media encoders, so a
//! PNG or WAV logged from Python is the same bytes as one logged from Rust or JavaScript.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use serde_json::Value as Json;

use crate::core::media::{histogram, Histogram, Media, MediaError};

use super::convert::to_json;

/// Most bins a histogram may have (the core clamps computed ones to the same).
const MAX_BINS: usize = 512;

/// A built media object; the Python classes hold one as `_media`.
#[pyclass(frozen, name = "Media", module = "tidelog._tidelog")]
pub struct PyMedia(pub Media);

fn bad(e: MediaError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn rows_json(what: &str, rows: &Bound<PyAny>) -> PyResult<Vec<Json>> {
    let key = pyo3::types::PyString::new(rows.py(), what);
    match to_json(key.as_any(), rows, 0)? {
        Json::Array(rows) => Ok(rows),
        _ => Err(PyValueError::new_err(format!("{what}: expected a list"))),
    }
}

#[pymethods]
impl PyMedia {
    /// An image from 8-bit RGBA pixels, row by row.
    #[staticmethod]
    #[pyo3(signature = (rgba, width, height, caption=None))]
    fn image_rgba(rgba: &[u8], width: u32, height: u32, caption: Option<String>) -> PyResult<Self> {
        let m = Media::image_rgba(rgba, width, height).map_err(bad)?;
        Ok(PyMedia(with_caption(m, caption)))
    }

    /// An image from PNG bytes, stored as given.
    #[staticmethod]
    #[pyo3(signature = (png, caption=None))]
    fn image_png(png: Vec<u8>, caption: Option<String>) -> PyResult<Self> {
        let m = Media::image_png(png).map_err(bad)?;
        Ok(PyMedia(with_caption(m, caption)))
    }

    /// A mono sound from samples in [-1, 1].
    #[staticmethod]
    #[pyo3(signature = (samples, sample_rate, caption=None))]
    fn audio(samples: Vec<f32>, sample_rate: u32, caption: Option<String>) -> PyResult<Self> {
        let m = Media::audio(&samples, sample_rate).map_err(bad)?;
        Ok(PyMedia(with_caption(m, caption)))
    }

    /// Values binned into `num_bins` equal-width bins.
    #[staticmethod]
    fn histogram_of(values: Vec<f64>, num_bins: usize) -> Self {
        PyMedia(Media::Histogram(histogram(&values, num_bins)))
    }

    /// Bins given as counts and their edges (`numpy.histogram`'s result).
    #[staticmethod]
    fn histogram_bins(counts: Vec<f64>, edges: Vec<f64>) -> PyResult<Self> {
        if counts.is_empty() || counts.len() > MAX_BINS || edges.len() != counts.len() + 1 {
            return Err(PyValueError::new_err(format!(
                "histogram: {} counts need {} edges (got {}), and 1 to {MAX_BINS} bins",
                counts.len(),
                counts.len() + 1,
                edges.len()
            )));
        }
        if counts
            .iter()
            .any(|c| !(c.is_finite() && *c >= 0.0 && c.fract() == 0.0))
        {
            return Err(PyValueError::new_err(
                "histogram: counts must be non-negative whole numbers",
            ));
        }
        Ok(PyMedia(Media::Histogram(Histogram {
            bins: edges,
            counts: counts.iter().map(|c| *c as u64).collect(),
        })))
    }

    /// Rows under named columns; every row has one value per column.
    #[staticmethod]
    fn table(columns: Vec<String>, data: &Bound<PyList>) -> PyResult<Self> {
        let mut rows = Vec::with_capacity(data.len());
        for row in rows_json("table", data.as_any())? {
            match row {
                Json::Array(cells) => rows.push(cells),
                _ => return Err(PyValueError::new_err("table: each row must be a list")),
            }
        }
        Media::table(columns, rows).map(PyMedia).map_err(bad)
    }

    /// A chart (`line`, `scatter` or `bar`) of field `x` against field `y` over `rows` (dicts).
    #[staticmethod]
    #[pyo3(signature = (kind, rows, x, y, title=None))]
    fn plot(kind: &str, rows: &Bound<PyList>, x: &str, y: &str, title: Option<&str>) -> PyResult<Self> {
        let rows = rows_json("plot", rows.as_any())?;
        let m = match kind {
            "line" => Media::line(rows, x, y, title),
            "scatter" => Media::scatter(rows, x, y, title),
            "bar" => Media::bar(rows, x, y, title),
            other => return Err(PyValueError::new_err(format!("plot: unknown kind {other:?}"))),
        };
        Ok(PyMedia(m))
    }

    /// The bytes of the file this media stores (PNG, WAV), if any.
    fn file_bytes(&self) -> Option<Vec<u8>> {
        self.0.file().map(|(_, _, bytes)| bytes.to_vec())
    }

    /// The JSON value a history row holds for it before its file is saved, as a dict.
    fn value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.0.value(None))
    }
}

fn with_caption(m: Media, caption: Option<String>) -> Media {
    match caption {
        Some(c) => m.with_caption(c),
        None => m,
    }
}

/// JSON as Python values (through the `json` module, which reads what serde writes).
pub fn json_to_py<'py>(py: Python<'py>, v: &Json) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// A dict of JSON values as a Python dict.
pub fn map_to_py<'py>(py: Python<'py>, map: &serde_json::Map<String, Json>) -> PyResult<Bound<'py, PyDict>> {
    Ok(json_to_py(py, &Json::Object(map.clone()))?.cast_into::<PyDict>()?)
}
