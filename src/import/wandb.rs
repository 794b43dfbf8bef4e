//! W&B's `Record` protobufs (from `wandb_internal.proto`) to [`Item`]s. Field numbers are
//! those of the wandb package (0.31): `Record` { history 2, summary 3, config 5, files 6,
//! stats 7, run 17, exit 18 }. Messages with repeated fields are walked element by element
//! ([`super::proto`]); leaf messages are `prost` derives.

use prost::Message;
use serde_json::{Map, Value as Json};

use super::proto::{fields, Wire};
use super::{secs_to_ms, set_path, Item, KeyPath, Source};
use crate::core::value::Value;

/// Deepest nested key accepted (`a.b.c...`), so a hostile item cannot build deep objects.
const MAX_KEY_DEPTH: usize = 32;

/// Why one record could not be read (its framing was intact).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

impl From<super::proto::WireError> for RecordError {
    fn from(e: super::proto::WireError) -> Self {
        RecordError(e.to_string())
    }
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

impl Timestamp {
    fn ms(&self) -> Option<i64> {
        self.seconds
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(i64::from(self.nanos) / 1_000_000))
    }
}

/// `RunExitRecord`.
#[derive(Clone, PartialEq, prost::Message)]
struct RunExitRecord {
    #[prost(int32, tag = "1")]
    exit_code: i32,
    #[prost(int32, tag = "2")]
    runtime: i32,
}

/// `FilesItem` (policy and type are not needed).
#[derive(Clone, PartialEq, prost::Message)]
struct FilesItem {
    #[prost(string, tag = "1")]
    path: String,
}

fn bad(what: impl Into<String>) -> RecordError {
    RecordError(what.into())
}

fn text(w: Wire<'_>, what: &str) -> Result<String, RecordError> {
    w.str()
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("{what} is not UTF-8 text")))
}

fn sub<'a>(w: Wire<'a>, what: &str) -> Result<&'a [u8], RecordError> {
    w.bytes()
        .ok_or_else(|| bad(format!("{what} has the wrong wire type")))
}

/// Decodes one record; `None` for the kinds tidelog has no use for (telemetry, output, ...).
pub fn decode(record: &[u8]) -> Result<Option<Item>, RecordError> {
    for f in fields(record) {
        let (number, w) = f?;
        let item = match number {
            2 => history(sub(w, "history")?)?,
            3 => {
                let (update, remove) = updates(sub(w, "summary")?)?;
                Item::Summary { update, remove }
            }
            5 => Item::Config(updates(sub(w, "config")?)?.0),
            6 => files(sub(w, "files")?)?,
            7 => stats(sub(w, "stats")?)?,
            17 => Item::Run(run(sub(w, "run")?)?),
            18 => {
                let exit = RunExitRecord::decode(sub(w, "exit")?).map_err(|e| bad(format!("exit: {e}")))?;
                Item::Exit {
                    code: exit.exit_code,
                    runtime_s: (exit.runtime > 0).then_some(i64::from(exit.runtime)),
                }
            }
            _ => continue,
        };
        return Ok(Some(item));
    }
    Ok(None)
}

fn run(buf: &[u8]) -> Result<Source, RecordError> {
    let mut s = Source::default();
    let opt = |w: Wire<'_>, what: &str| text(w, what).map(|t| Some(t).filter(|t| !t.is_empty()));
    for f in fields(buf) {
        let (number, w) = f?;
        match number {
            1 => s.id = text(w, "run id")?,
            2 => s.entity = opt(w, "entity")?,
            3 => s.project = text(w, "project")?,
            4 => {
                for (path, v) in updates(sub(w, "run config")?)?.0 {
                    set_path(&mut s.config, &path, v);
                }
            }
            8 => s.name = opt(w, "display name")?,
            9 => s.notes = opt(w, "notes")?,
            10 => s.tags.push(text(w, "tag")?),
            17 => {
                let t =
                    Timestamp::decode(sub(w, "start time")?).map_err(|e| bad(format!("start time: {e}")))?;
                s.created_ms = t.ms();
            }
            _ => {}
        }
    }
    if s.id.is_empty() {
        return Err(bad("the run record has no run id"));
    }
    Ok(s)
}

/// A `key`/`nested_key`/`value_json` item (HistoryItem, ConfigItem, SummaryItem, StatsItem).
fn keyed_item(buf: &[u8]) -> Result<(KeyPath, String), RecordError> {
    let (mut path, mut value) = (Vec::new(), String::new());
    for f in fields(buf) {
        let (number, w) = f?;
        match number {
            1 => {
                let key = text(w, "key")?;
                if !key.is_empty() {
                    path = vec![key];
                }
            }
            2 => {
                if path.len() >= MAX_KEY_DEPTH {
                    return Err(bad(format!("a key nested deeper than {MAX_KEY_DEPTH} levels")));
                }
                path.push(text(w, "nested key")?);
            }
            16 => value = text(w, "value_json")?,
            _ => {}
        }
    }
    if path.is_empty() || path.iter().any(String::is_empty) {
        return Err(bad("an item with an empty key"));
    }
    Ok((path, value))
}

/// A JSON value as W&B writes it: Python's `json`, so also `NaN`, `Infinity`, `-Infinity`.
pub fn parse_value(text: &str) -> Result<Value, RecordError> {
    match text.trim() {
        "NaN" => Ok(Value::Num(f64::NAN)),
        "Infinity" => Ok(Value::Num(f64::INFINITY)),
        "-Infinity" => Ok(Value::Num(f64::NEG_INFINITY)),
        t => serde_json::from_str::<Json>(t).map(Value::from).map_err(|e| {
            bad(format!(
                "value_json {:?}: {e}",
                t.chars().take(40).collect::<String>()
            ))
        }),
    }
}

/// Like [`parse_value`] but keeps JSON as written (integers stay integers) for nested values.
fn parse_json(text: &str) -> Result<Json, RecordError> {
    match parse_value(text)? {
        Value::Num(x) if !x.is_finite() => Ok(crate::core::value::num_to_json(x)),
        _ => serde_json::from_str(text.trim()).map_err(|e| bad(format!("value_json: {e}"))),
    }
}

/// Keys set (with their values) and keys removed.
type Updates = (Vec<(KeyPath, Json)>, Vec<KeyPath>);

/// `ConfigRecord` / `SummaryRecord`: update 1, remove 2.
fn updates(buf: &[u8]) -> Result<Updates, RecordError> {
    let (mut update, mut remove) = (Vec::new(), Vec::new());
    for f in fields(buf) {
        let (number, w) = f?;
        match number {
            1 => {
                let (path, v) = keyed_item(sub(w, "update")?)?;
                update.push((path, parse_json(&v)?));
            }
            2 => remove.push(keyed_item(sub(w, "remove")?)?.0),
            _ => {}
        }
    }
    Ok((update, remove))
}

/// `HistoryRecord`: item 1, step 2 (`HistoryStep { num 1 }`); `_step`, `_timestamp` and
/// `_runtime` items are W&B's bookkeeping, the first two kept as the row's step and time.
fn history(buf: &[u8]) -> Result<Item, RecordError> {
    let (mut step, mut item_step, mut ts_ms) = (0u64, None, None);
    let mut flat: Vec<(String, Value)> = Vec::new();
    let mut nested = Map::new();
    for f in fields(buf) {
        let (number, w) = f?;
        match number {
            1 => {
                let (path, v) = keyed_item(sub(w, "history item")?)?;
                match (path[0].as_str(), path.len()) {
                    ("_step", 1) => {
                        item_step = match parse_value(&v)? {
                            Value::Num(x) if x >= 0.0 && x.fract() == 0.0 && x < 9.2e18 => Some(x as u64),
                            _ => None,
                        }
                    }
                    ("_timestamp", 1) => ts_ms = parse_value(&v)?.to_json().as_f64().and_then(secs_to_ms),
                    ("_runtime", 1) => {}
                    (_, 1) => flat.push((path[0].clone(), parse_value(&v)?)),
                    _ => set_path(&mut nested, &path, parse_json(&v)?),
                }
            }
            2 => {
                for g in fields(sub(w, "history step")?) {
                    if let (1, Wire::Varint(n)) = g? {
                        step = n;
                    }
                }
            }
            _ => {}
        }
    }
    let mut values = flat;
    values.extend(nested.into_iter().map(|(k, v)| (k, Value::Json(v))));
    Ok(Item::History {
        step: item_step.unwrap_or(step),
        ts_ms,
        values,
    })
}

/// `StatsRecord`: timestamp 2, item 3 (`StatsItem { key 1, value_json 16 }`).
fn stats(buf: &[u8]) -> Result<Item, RecordError> {
    let (mut ts_ms, mut values) = (None, Vec::new());
    for f in fields(buf) {
        let (number, w) = f?;
        match number {
            2 => {
                let t =
                    Timestamp::decode(sub(w, "stats time")?).map_err(|e| bad(format!("stats time: {e}")))?;
                ts_ms = t.ms();
            }
            3 => {
                let (path, v) = keyed_item(sub(w, "stats item")?)?;
                if let Value::Num(x) = parse_value(&v)? {
                    values.push((path.join("."), x));
                }
            }
            _ => {}
        }
    }
    Ok(Item::System { ts_ms, values })
}

/// `FilesRecord`: files 1.
fn files(buf: &[u8]) -> Result<Item, RecordError> {
    let mut paths = Vec::new();
    for f in fields(buf) {
        if let (1, w) = f? {
            let item =
                FilesItem::decode(sub(w, "files item")?).map_err(|e| bad(format!("files item: {e}")))?;
            paths.push(item.path);
        }
    }
    Ok(Item::Files(paths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::varint::put_u64;

    fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        put_u64(out, u64::from(number) << 3 | 2);
        put_u64(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn item(key: &[&str], value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for k in key {
            field(&mut out, 2, k.as_bytes());
        }
        field(&mut out, 16, value.as_bytes());
        out
    }

    fn record(number: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, 1 << 3);
        put_u64(&mut out, 7);
        field(&mut out, number, body);
        out
    }

    #[test]
    fn history_with_nested_keys_and_bookkeeping() {
        let mut h = Vec::new();
        for (k, v) in [
            (vec!["loss"], "0.5"),
            (vec!["_step"], "3"),
            (vec!["_timestamp"], "1.5e9"),
            (vec!["_runtime"], "2.0"),
            (vec!["img", "path"], "\"media/a.png\""),
            (vec!["img", "width"], "4"),
            (vec!["odd"], "NaN"),
        ] {
            field(&mut h, 1, &item(&k, v));
        }
        let got = decode(&record(2, &h)).unwrap().unwrap();
        let Item::History { step, ts_ms, values } = got else {
            panic!("{got:?}")
        };
        assert_eq!((step, ts_ms), (3, Some(1_500_000_000_000)));
        assert_eq!(values[0], ("loss".into(), Value::Num(0.5)));
        assert!(matches!(values[1], (ref k, Value::Num(x)) if k == "odd" && x.is_nan()));
        assert_eq!(
            values[2],
            (
                "img".into(),
                Value::Json(serde_json::json!({"path": "media/a.png", "width": 4}))
            )
        );
    }

    #[test]
    fn hostile_records_are_errors() {
        // An item nested 33 levels deep.
        let deep = item(&["k"; 33], "1");
        let mut h = Vec::new();
        field(&mut h, 1, &deep);
        assert!(decode(&record(2, &h)).unwrap_err().0.contains("deeper"));
        // A run record with no id.
        assert!(decode(&record(17, &[])).unwrap_err().0.contains("no run id"));
        // A length past the end.
        assert!(decode(&[0x12, 0x7f, 0]).is_err());
        // Bad value_json.
        let mut c = Vec::new();
        field(&mut c, 1, &item(&["a"], "{nope"));
        assert!(decode(&record(5, &c)).unwrap_err().0.contains("value_json"));
    }

    #[test]
    fn kinds_tidelog_does_not_use_are_skipped() {
        assert_eq!(decode(&record(11, b"telemetry")).unwrap(), None);
    }
}
