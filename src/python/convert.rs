//! Python values to core values: numbers, booleans, strings, nested dicts and lists, numpy
//! scalars and small arrays, tidelog media; anything else is a `TypeError` naming the key.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Value as Json};

use crate::core::media::Media;
use crate::core::value::{num_to_json, Value};

use super::media::PyMedia;

/// Largest numpy array logged as a plain value: bigger ones belong in a `Histogram` or a file.
pub const MAX_ARRAY_ELEMENTS: usize = 10_000;
/// Deepest nesting of dicts and lists accepted, so a cyclic or runaway structure is refused.
const MAX_DEPTH: usize = 64;

/// One logged value after conversion.
pub enum Conv {
    /// A number: logged by interned key id.
    Num(f64),
    /// Anything else the core stores as a value.
    Value(Value),
    /// A media object: its file is saved, then its reference is logged.
    Media(Media),
}

fn refuse(key: &Bound<PyAny>, v: &Bound<PyAny>, why: &str) -> PyErr {
    let ty = v
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "tidelog: cannot log key {}: {why} (got a value of type '{ty}'; log numbers, bools, \
         strings, dicts, lists, numpy scalars or small arrays, or tidelog media)",
        key.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
    ))
}

/// The number of an exact float, int or bool-free int: the hot path of `log()`.
#[inline]
pub fn fast_num(v: &Bound<PyAny>) -> Option<f64> {
    if let Ok(f) = v.cast_exact::<PyFloat>() {
        return Some(f.value());
    }
    if v.is_exact_instance_of::<PyInt>() {
        return v.extract::<i64>().ok().map(|i| i as f64);
    }
    None
}

/// Converts the value logged under `key`.
pub fn convert(key: &Bound<PyAny>, v: &Bound<PyAny>) -> PyResult<Conv> {
    if let Some(x) = fast_num(v) {
        return Ok(Conv::Num(x));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Conv::Value(Value::Bool(b.is_true())));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Conv::Num(f.value()));
    }
    if v.is_instance_of::<PyInt>() {
        return v
            .extract::<f64>()
            .map(Conv::Num)
            .map_err(|_| refuse(key, v, "the integer is too large for a 64-bit float"));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Conv::Value(Value::Str(s.to_cow()?.into_owned())));
    }
    if let Some(m) = media_of(v)? {
        return Ok(Conv::Media(m.get().0.clone()));
    }
    if let Some(plain) = numpy_plain(key, v)? {
        if !plain.is_instance_of::<PyList>() {
            return convert(key, &plain);
        }
        return to_json(key, &plain, 0).map(|j| Conv::Value(Value::Json(j)));
    }
    if v.is_instance_of::<PyDict>() || v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        return to_json(key, v, 0).map(|j| Conv::Value(Value::Json(j)));
    }
    Err(refuse(key, v, "unsupported type"))
}

/// The core media of a `tidelog.Image`/`Audio`/... (which hold it as `_media`).
fn media_of<'py>(v: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyMedia>>> {
    if let Ok(m) = v.cast::<PyMedia>() {
        return Ok(Some(m.clone()));
    }
    let py = v.py();
    if !v.hasattr(intern!(py, "_media"))? {
        return Ok(None);
    }
    Ok(v.getattr(intern!(py, "_media"))?.cast_into::<PyMedia>().ok())
}

/// A numpy scalar or array as plain Python values (`.tolist()`), arrays bounded in size.
fn numpy_plain<'py>(key: &Bound<'py, PyAny>, v: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = v.py();
    let module = v.get_type().module()?;
    if !module.to_cow()?.starts_with("numpy") || !v.hasattr(intern!(py, "tolist"))? {
        return Ok(None);
    }
    if let Ok(size) = v.getattr(intern!(py, "size")).and_then(|s| s.extract::<usize>()) {
        if size > MAX_ARRAY_ELEMENTS {
            return Err(refuse(
                key,
                v,
                &format!(
                    "an array of {size} elements is over the {MAX_ARRAY_ELEMENTS}-element limit \
                     for plain values; log a tidelog.Histogram or save it as a file"
                ),
            ));
        }
    }
    Ok(Some(v.call_method0(intern!(py, "tolist"))?))
}

/// Nested values as JSON (non-finite numbers as the strings JSON has for them).
pub fn to_json(key: &Bound<PyAny>, v: &Bound<PyAny>, depth: usize) -> PyResult<Json> {
    if depth > MAX_DEPTH {
        return Err(refuse(key, v, "nested more than 64 levels deep"));
    }
    if v.is_none() {
        return Ok(Json::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Json::Bool(b.is_true()));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Json::from(i));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Json::from(u));
        }
        return v
            .extract::<f64>()
            .map(num_to_json)
            .map_err(|_| refuse(key, v, "the integer is too large for a 64-bit float"));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(num_to_json(f.value()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Json::String(s.to_cow()?.into_owned()));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, item) in d.iter() {
            let Ok(name) = k.cast::<PyString>() else {
                return Err(refuse(key, &k, "a nested dict has a key that is not a string"));
            };
            map.insert(name.to_cow()?.into_owned(), to_json(key, &item, depth + 1)?);
        }
        return Ok(Json::Object(map));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(to_json(key, &item?, depth + 1)?);
        }
        return Ok(Json::Array(out));
    }
    if let Some(plain) = numpy_plain(key, v)? {
        return to_json(key, &plain, depth + 1);
    }
    if media_of(v)?.is_some() {
        return Err(refuse(key, v, "media must be logged as a top-level value"));
    }
    Err(refuse(key, v, "unsupported type"))
}

/// A dict of JSON values (config updates).
pub fn dict_to_map(d: &Bound<PyDict>) -> PyResult<Map<String, Json>> {
    let mut map = Map::new();
    for (k, v) in d.iter() {
        let Ok(name) = k.cast::<PyString>() else {
            return Err(refuse(&k, &k, "keys must be strings"));
        };
        map.insert(name.to_cow()?.into_owned(), to_json(&k, &v, 0)?);
    }
    Ok(map)
}
