//! `tidelog import`: runs written by other tools (W&B offline runs, TensorBoard event files,
//! CSV) read into one item model ([`Item`]) and written as ordinary local tidelog runs by
//! [`writer::Importer`], so `tidelog sync` uploads them like any other.
//!
//! The format readers are pure functions over bytes (framing, protobuf, CSV); only the
//! writer touches the disk, through the native run API.

pub mod csv;
pub mod leveldb;
pub mod proto;
pub mod tensorboard;
pub mod tfrecord;
pub mod wandb;
pub mod writer;

use serde_json::{Map, Value as Json};

use crate::core::value::Value;

/// What a source run says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Source {
    /// Run id (a deterministic one for sources that have none, so a second import is a no-op).
    pub id: String,
    /// Project.
    pub project: String,
    /// Display name.
    pub name: Option<String>,
    /// Team or user.
    pub entity: Option<String>,
    /// Description.
    pub notes: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// When the run began, Unix ms.
    pub created_ms: Option<i64>,
    /// Config known at the start.
    pub config: Map<String, Json>,
}

/// A stretch of the file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the file where it starts.
    pub offset: u64,
    /// How many bytes were skipped.
    pub bytes: u64,
    /// What was wrong first.
    pub why: &'static str,
}

/// A key path: one name, or the parts of a nested key (`img` → `width`).
pub type KeyPath = Vec<String>;

/// One thing a source run recorded, in the order it recorded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The run's identity; comes before everything else.
    Run(Source),
    /// Config keys set or replaced.
    Config(Vec<(KeyPath, Json)>),
    /// Values of one history step.
    History {
        /// The step.
        step: u64,
        /// When, Unix ms.
        ts_ms: Option<i64>,
        /// Top-level keys and their values (nested keys already folded into objects).
        values: Vec<(String, Value)>,
    },
    /// One system-metrics sample.
    System {
        /// When, Unix ms.
        ts_ms: Option<i64>,
        /// Metric names and readings.
        values: Vec<(String, f64)>,
    },
    /// Summary keys set and removed.
    Summary {
        /// Set.
        update: Vec<(KeyPath, Json)>,
        /// Removed.
        remove: Vec<KeyPath>,
    },
    /// Files of the run, relative to its files folder.
    Files(Vec<String>),
    /// The run ended.
    Exit {
        /// Process exit code.
        code: i32,
        /// Seconds it ran, when known.
        runtime_s: Option<i64>,
    },
}

/// Reads until `buf` is full or the source ends; the count read.
pub(crate) fn read_full(src: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Sets `value` at `path` inside `map`, creating objects on the way (a non-object in the
/// way is replaced, as a later `config.update` would).
pub fn set_path(map: &mut Map<String, Json>, path: &[String], value: Json) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = map;
    for p in parents {
        let slot = at.entry(p.clone()).or_insert_with(|| Json::Object(Map::new()));
        if !slot.is_object() {
            *slot = Json::Object(Map::new());
        }
        at = slot.as_object_mut().expect("an object");
    }
    at.insert(last.clone(), value);
}

/// Removes the key at `path` from `map`, if there.
pub fn remove_path(map: &mut Map<String, Json>, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = map;
    for p in parents {
        match at.get_mut(p).and_then(Json::as_object_mut) {
            Some(next) => at = next,
            None => return,
        }
    }
    at.remove(last);
}

/// Seconds since the epoch (as W&B and TensorBoard record time) to Unix ms; `None` when
/// the number is not a plausible time.
pub fn secs_to_ms(secs: f64) -> Option<i64> {
    let ms = (secs * 1000.0).round();
    (ms.is_finite() && ms.abs() < 1e16).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_paths() {
        let mut m = Map::new();
        set_path(&mut m, &["a".into(), "b".into()], json!(1));
        set_path(&mut m, &["a".into(), "c".into()], json!(2));
        set_path(&mut m, &["x".into()], json!(3));
        assert_eq!(Json::Object(m.clone()), json!({"a": {"b": 1, "c": 2}, "x": 3}));
        remove_path(&mut m, &["a".into(), "b".into()]);
        remove_path(&mut m, &["nope".into(), "b".into()]);
        assert_eq!(Json::Object(m), json!({"a": {"c": 2}, "x": 3}));
    }

    #[test]
    fn times() {
        assert_eq!(secs_to_ms(1.7961737283167133e9), Some(1_796_173_728_317));
        assert_eq!(secs_to_ms(f64::NAN), None);
        assert_eq!(secs_to_ms(1e300), None);
    }
}
