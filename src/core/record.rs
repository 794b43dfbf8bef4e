//! The record model and its binary encoding inside `records.tlog` frames.
//!
//! Rows (history and system metrics) are compact binary because they are the hot path;
//! everything else (start, config, summary, files, finish) is rare and kept as JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::frame;
use super::value::{Value, ValueRef};
use super::varint::{get_bytes, get_i64, get_u64, put_i64, put_u64};

const TAG_HISTORY: u8 = 1;
const TAG_SYSTEM: u8 = 2;
const TAG_KEY: u8 = 3;
const TAG_META: u8 = 4;

/// Largest step a row may carry: bundles and the server store steps as signed 64-bit.
pub const MAX_STEP: u64 = i64::MAX as u64;

const V_NUM: u8 = 0;
const V_FALSE: u8 = 1;
const V_TRUE: u8 = 2;
const V_STR: u8 = 3;
const V_JSON: u8 = 4;

/// Which table a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    /// User metrics from `log()`.
    History,
    /// Sampled system metrics.
    System,
}

/// Where a run stands, as shown in `run.spec`, bundles and the API.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Still logging (or its process is alive).
    #[default]
    Running,
    /// Finished with exit code 0.
    Finished,
    /// Finished with a non-zero exit code.
    Failed,
    /// Its process ended without `finish()`.
    Crashed,
}

impl RunState {
    /// The lowercase name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed => "failed",
            RunState::Crashed => "crashed",
        }
    }
}

/// Who a run is and where it belongs; written once at the start of the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RunInfo {
    /// Run id, unique per server.
    pub id: String,
    /// Project the run is filed under.
    pub project: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Team or user namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
}

/// A saved file or media object, stored content-addressed beside the log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    /// Path relative to the run's `files/` folder.
    pub path: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Content length in bytes.
    pub size: u64,
}

/// The rare, JSON-encoded records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Meta {
    /// The run began.
    Start(RunInfo),
    /// Config keys set or replaced.
    Config {
        /// The keys to merge into the config.
        update: Map<String, Json>,
    },
    /// Summary keys set explicitly (they override "last value").
    Summary {
        /// The keys to merge into the summary.
        update: Map<String, Json>,
    },
    /// A file was saved.
    File(FileRef),
    /// The run ended.
    Finish {
        /// Process exit code; non-zero marks the run failed.
        exit_code: i32,
        /// When, Unix milliseconds.
        ts_ms: i64,
    },
}

/// One decoded record, borrowing from the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    /// A history or system row.
    Row(RowRef<'a>),
    /// The name behind a key id used by later rows.
    Key {
        /// The id rows refer to.
        id: u32,
        /// The metric name.
        name: &'a str,
    },
    /// A JSON record.
    Meta(Meta),
}

/// A row whose values are decoded lazily.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRef<'a> {
    /// History or system.
    pub kind: RowKind,
    /// The step the row was committed at.
    pub step: u64,
    /// Commit time, Unix milliseconds.
    pub ts_ms: i64,
    count: u64,
    values: &'a [u8],
}

/// A record's bytes do not decode: corruption that slipped past the checksum, or a newer format.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("undecodable record: {0}")]
pub struct DecodeError(pub &'static str);

impl<'a> RowRef<'a> {
    /// The row's `(key id, value)` pairs in logging order.
    pub fn values(&self) -> RowValues<'a> {
        RowValues {
            buf: self.values,
            pos: 0,
            left: self.count,
        }
    }
}

/// Iterator over a row's values.
pub struct RowValues<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u64,
}

impl<'a> Iterator for RowValues<'a> {
    type Item = Result<(u32, ValueRef<'a>), DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(decode_value(self.buf, &mut self.pos))
    }
}

#[inline]
fn decode_value<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(u32, ValueRef<'a>), DecodeError> {
    // The common case, a number under a one-byte key id, read in one bounds check.
    if let Some(&[id, V_NUM, b0, b1, b2, b3, b4, b5, b6, b7]) = buf.get(*pos..*pos + 10) {
        if id < 0x80 {
            *pos += 10;
            let x = f64::from_le_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
            return Ok((u32::from(id), ValueRef::Num(x)));
        }
    }
    let id = get_u64(buf, pos).ok_or(DecodeError("truncated value"))?;
    let id = u32::try_from(id).map_err(|_| DecodeError("key id out of range"))?;
    Ok((id, decode_plain(buf, pos)?))
}

/// Reads one tagged value (no key id), as written by [`encode_plain`].
pub fn decode_plain<'a>(buf: &'a [u8], pos: &mut usize) -> Result<ValueRef<'a>, DecodeError> {
    let bad = DecodeError("truncated value");
    let tag = *get_bytes(buf, pos, 1).ok_or(bad)?.first().ok_or(bad)?;
    let v = match tag {
        V_NUM => {
            let b: [u8; 8] = get_bytes(buf, pos, 8).ok_or(bad)?.try_into().map_err(|_| bad)?;
            ValueRef::Num(f64::from_le_bytes(b))
        }
        V_FALSE => ValueRef::Bool(false),
        V_TRUE => ValueRef::Bool(true),
        V_STR | V_JSON => {
            let n = get_u64(buf, pos).ok_or(bad)? as usize;
            let s = std::str::from_utf8(get_bytes(buf, pos, n).ok_or(bad)?)
                .map_err(|_| DecodeError("invalid utf-8"))?;
            if tag == V_STR {
                ValueRef::Str(s)
            } else {
                ValueRef::Json(s)
            }
        }
        _ => return Err(DecodeError("unknown value tag")),
    };
    Ok(v)
}

/// Appends one number in the row encoding; one copy when the key id fits a byte.
#[inline(always)]
fn encode_num(buf: &mut Vec<u8>, id: u32, x: f64) {
    if id < 0x80 {
        let mut one = [0u8; 10];
        one[0] = id as u8;
        one[1] = V_NUM;
        one[2..].copy_from_slice(&x.to_le_bytes());
        buf.extend_from_slice(&one);
    } else {
        put_u64(buf, u64::from(id));
        buf.push(V_NUM);
        buf.extend_from_slice(&x.to_le_bytes());
    }
}

/// Appends one value in the row encoding.
fn encode_value(buf: &mut Vec<u8>, id: u32, v: &Value) {
    put_u64(buf, u64::from(id));
    match v {
        Value::Num(x) => {
            buf.push(V_NUM);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        Value::Bool(b) => encode_plain(buf, ValueRef::Bool(*b)),
        Value::Str(s) => encode_plain(buf, ValueRef::Str(s)),
        Value::Json(j) => encode_plain(buf, ValueRef::Json(&j.to_string())),
    }
}

/// Appends one tagged value without a key id.
#[inline]
pub fn encode_plain(buf: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Num(x) => {
            buf.push(V_NUM);
            buf.extend_from_slice(&x.to_le_bytes());
        }
        ValueRef::Bool(b) => buf.push(if b { V_TRUE } else { V_FALSE }),
        ValueRef::Str(s) | ValueRef::Json(s) => {
            buf.push(if matches!(v, ValueRef::Str(_)) {
                V_STR
            } else {
                V_JSON
            });
            put_u64(buf, s.len() as u64);
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// Frames a row of numbers and other values onto `buf`.
pub fn encode_row(
    buf: &mut Vec<u8>,
    kind: RowKind,
    step: u64,
    ts_ms: i64,
    nums: &[(u32, f64)],
    others: &[(u32, Value)],
) {
    buf.reserve(frame::HEADER + 24 + nums.len() * 10 + others.len() * 16);
    let at = frame::begin(buf);
    buf.push(match kind {
        RowKind::History => TAG_HISTORY,
        RowKind::System => TAG_SYSTEM,
    });
    put_u64(buf, step);
    put_i64(buf, ts_ms);
    put_u64(buf, (nums.len() + others.len()) as u64);
    for &(id, x) in nums {
        encode_num(buf, id, x);
    }
    for (id, v) in others {
        encode_value(buf, *id, v);
    }
    frame::end(buf, at);
}

/// Frames a key definition onto `buf`.
pub fn encode_key(buf: &mut Vec<u8>, id: u32, name: &str) {
    let at = frame::begin(buf);
    buf.push(TAG_KEY);
    put_u64(buf, u64::from(id));
    buf.extend_from_slice(name.as_bytes());
    frame::end(buf, at);
}

/// Frames a JSON record onto `buf`.
pub fn encode_meta(buf: &mut Vec<u8>, meta: &Meta) {
    let at = frame::begin(buf);
    buf.push(TAG_META);
    serde_json::to_writer(&mut *buf, meta).expect("serializing to a Vec cannot fail");
    frame::end(buf, at);
}

/// Decodes one frame payload.
pub fn decode(payload: &[u8]) -> Result<Record<'_>, DecodeError> {
    let bad = DecodeError("truncated record");
    let (&tag, rest) = payload.split_first().ok_or(bad)?;
    let mut pos = 0;
    match tag {
        TAG_HISTORY | TAG_SYSTEM => {
            let step = get_u64(rest, &mut pos).ok_or(bad)?;
            if step > MAX_STEP {
                return Err(DecodeError("step beyond i64::MAX"));
            }
            let ts_ms = get_i64(rest, &mut pos).ok_or(bad)?;
            let count = get_u64(rest, &mut pos).ok_or(bad)?;
            Ok(Record::Row(RowRef {
                kind: if tag == TAG_HISTORY {
                    RowKind::History
                } else {
                    RowKind::System
                },
                step,
                ts_ms,
                count,
                values: &rest[pos..],
            }))
        }
        TAG_KEY => {
            let id = get_u64(rest, &mut pos).ok_or(bad)?;
            let id = u32::try_from(id).map_err(|_| DecodeError("key id out of range"))?;
            let name = std::str::from_utf8(&rest[pos..]).map_err(|_| DecodeError("invalid utf-8"))?;
            Ok(Record::Key { id, name })
        }
        TAG_META => meta_from_json(rest)
            .map(Record::Meta)
            .map_err(|_| DecodeError("invalid JSON record")),
        _ => Err(DecodeError("unknown record tag")),
    }
}

/// A meta record from its JSON, as `Meta`'s derived `Deserialize` reads it: the `type` tag
/// first, then the same bytes as that variant's fields (an unknown `type` key is ignored).
/// Two passes instead of serde's tagged-enum buffering, which costs the wasm module ~20 KB.
fn meta_from_json(json: &[u8]) -> serde_json::Result<Meta> {
    #[derive(Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(Deserialize)]
    struct Update {
        update: Map<String, Json>,
    }
    #[derive(Deserialize)]
    struct Finish {
        exit_code: i32,
        ts_ms: i64,
    }
    let update = || serde_json::from_slice::<Update>(json).map(|u| u.update);
    Ok(match serde_json::from_slice::<Tag>(json)?.kind.as_str() {
        "start" => Meta::Start(serde_json::from_slice(json)?),
        "config" => Meta::Config { update: update()? },
        "summary" => Meta::Summary { update: update()? },
        "file" => Meta::File(serde_json::from_slice(json)?),
        "finish" => {
            let Finish { exit_code, ts_ms } = serde_json::from_slice(json)?;
            Meta::Finish { exit_code, ts_ms }
        }
        other => {
            return Err(serde::de::Error::unknown_variant(
                other,
                &["start", "config", "summary", "file", "finish"],
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::Frames;

    #[test]
    fn meta_json_reads_as_the_derived_deserialize_does() {
        let info = RunInfo {
            id: "r1".into(),
            project: "p".into(),
            name: Some("n".into()),
            entity: None,
            tags: vec!["t".into()],
            notes: None,
            created_ms: 5,
        };
        let update: Map<String, Json> = serde_json::from_str(r#"{"lr":0.5,"a":{"b":[1]}}"#).unwrap();
        let metas = [
            Meta::Start(info),
            Meta::Config {
                update: update.clone(),
            },
            Meta::Summary { update },
            Meta::File(FileRef {
                path: "a.txt".into(),
                sha256: "00".into(),
                size: 3,
            }),
            Meta::Finish {
                exit_code: 1,
                ts_ms: -2,
            },
        ];
        for m in metas {
            let json = serde_json::to_vec(&m).unwrap();
            assert_eq!(meta_from_json(&json).unwrap(), m);
            assert_eq!(serde_json::from_slice::<Meta>(&json).unwrap(), m);
        }
        let late_tag = br#"{"exit_code":0,"ts_ms":7,"type":"finish"}"#;
        assert_eq!(
            meta_from_json(late_tag).unwrap(),
            Meta::Finish {
                exit_code: 0,
                ts_ms: 7
            }
        );
        for bad in [
            &br#"{"type":"nope"}"#[..],
            br#"{"update":{}}"#,
            br#"{"type":"finish","ts_ms":1}"#,
        ] {
            assert!(meta_from_json(bad).is_err());
            assert!(serde_json::from_slice::<Meta>(bad).is_err());
        }
    }

    #[test]
    fn rows_keys_and_meta_roundtrip() {
        let mut buf = Vec::new();
        encode_key(&mut buf, 0, "loss");
        let nums = [(0, f64::NAN), (1, f64::NEG_INFINITY)];
        let vals = vec![
            (2, Value::Bool(true)),
            (3, Value::Str("héllo".into())),
            (4, Value::Json(serde_json::json!({"a": [1, 2]}))),
        ];
        encode_row(&mut buf, RowKind::System, 7, -3, &nums, &vals);
        encode_meta(
            &mut buf,
            &Meta::Finish {
                exit_code: 3,
                ts_ms: 9,
            },
        );
        let recs: Vec<_> = Frames::new(&buf).map(|f| decode(f.payload).unwrap()).collect();
        assert_eq!(recs[0], Record::Key { id: 0, name: "loss" });
        let Record::Row(row) = &recs[1] else {
            panic!("not a row")
        };
        assert_eq!((row.kind, row.step, row.ts_ms), (RowKind::System, 7, -3));
        let got: Vec<_> = row.values().map(|v| v.unwrap()).collect();
        assert!(matches!(got[0], (0, ValueRef::Num(x)) if x.is_nan()));
        assert_eq!(got[1], (1, ValueRef::Num(f64::NEG_INFINITY)));
        assert_eq!(got[2], (2, ValueRef::Bool(true)));
        assert_eq!(got[3], (3, ValueRef::Str("héllo")));
        assert_eq!(got[4].1.to_owned(), vals[2].1);
        assert_eq!(
            recs[2],
            Record::Meta(Meta::Finish {
                exit_code: 3,
                ts_ms: 9
            })
        );
    }

    #[test]
    fn a_step_beyond_i64_max_is_undecodable() {
        for (step, ok) in [(MAX_STEP, true), (MAX_STEP + 1, false), (u64::MAX, false)] {
            let mut buf = Vec::new();
            encode_row(&mut buf, RowKind::History, step, 0, &[(0, 1.0)], &[]);
            let got = decode(&buf[frame::HEADER..]);
            assert_eq!(got.is_ok(), ok, "step {step}: {got:?}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9]).is_err());
        let mut buf = Vec::new();
        encode_row(&mut buf, RowKind::History, 1, 1, &[(0, 1.0)], &[]);
        let payload = &buf[frame::HEADER..buf.len() - 3];
        let Record::Row(row) = decode(payload).unwrap() else {
            panic!()
        };
        assert!(row.values().next().unwrap().is_err());
    }
}
