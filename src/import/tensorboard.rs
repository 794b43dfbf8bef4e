//! TensorBoard `Event` protobufs (tensorboardX's `event.proto`, `summary.proto`,
//! `tensor.proto`) to history values: `Event { wall_time 1: double, step 2: int64,
//! summary 5 }`, `Summary { value 1 }`, `Summary.Value { tag 1, simple_value 2: float,
//! tensor 8 }`. Scalars come from `simple_value` or from a one-element numeric tensor;
//! images, audio, histograms and text are counted as not imported.

use prost::Message;

use super::proto::{fields, Wire};
use super::secs_to_ms;
use super::wandb::RecordError;

/// `TensorProto` (the numeric fields; `tensor_shape` is walked separately).
#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(bytes = "vec", tag = "4")]
    tensor_content: Vec<u8>,
    #[prost(float, repeated, tag = "5")]
    float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    double_val: Vec<f64>,
    #[prost(int32, repeated, tag = "7")]
    int_val: Vec<i32>,
    #[prost(int64, repeated, tag = "10")]
    int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    bool_val: Vec<bool>,
}

const DT_FLOAT: i32 = 1;
const DT_DOUBLE: i32 = 2;
const DT_INT32: i32 = 3;
const DT_INT64: i32 = 9;
const DT_BOOL: i32 = 10;

/// The scalars of one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scalars {
    /// The event's step.
    pub step: i64,
    /// Its wall time, Unix ms.
    pub ts_ms: Option<i64>,
    /// Tag and value of each scalar.
    pub values: Vec<(String, f64)>,
    /// Summary values that are not scalars (images, histograms, text, ...).
    pub skipped: u64,
}

fn bad(what: impl Into<String>) -> RecordError {
    RecordError(what.into())
}

/// Decodes one event; one without a summary (the file version, a graph) has no values.
pub fn decode(event: &[u8]) -> Result<Scalars, RecordError> {
    let mut out = Scalars::default();
    let mut summary = None;
    for f in fields(event) {
        match f? {
            (1, w) => out.ts_ms = w.f64().and_then(secs_to_ms),
            (2, Wire::Varint(v)) => out.step = v as i64,
            (5, Wire::Bytes(b)) => summary = Some(b),
            _ => {}
        }
    }
    let Some(summary) = summary else {
        return Ok(out);
    };
    for f in fields(summary) {
        if let (1, Wire::Bytes(value)) = f? {
            match scalar(value)? {
                Some(pair) => out.values.push(pair),
                None => out.skipped += 1,
            }
        }
    }
    Ok(out)
}

/// One `Summary.Value`: its tag and number, `None` when it holds no scalar.
fn scalar(value: &[u8]) -> Result<Option<(String, f64)>, RecordError> {
    let (mut tag, mut number) = (None, None);
    for f in fields(value) {
        match f? {
            (1, w) => tag = Some(w.str().ok_or_else(|| bad("a summary tag is not UTF-8 text"))?),
            (2, w) => number = w.f32().map(f64::from),
            (8, Wire::Bytes(t)) => number = tensor_scalar(t)?,
            _ => {}
        }
    }
    Ok(match (tag, number) {
        (Some(tag), Some(x)) if !tag.is_empty() => Some((tag.to_owned(), x)),
        _ => None,
    })
}

/// The value of a one-element numeric tensor.
fn tensor_scalar(buf: &[u8]) -> Result<Option<f64>, RecordError> {
    for f in fields(buf) {
        if let (2, Wire::Bytes(shape)) = f? {
            for d in fields(shape) {
                if let (2, Wire::Bytes(dim)) = d? {
                    for s in fields(dim) {
                        if let (1, Wire::Varint(size)) = s? {
                            if size != 1 {
                                return Ok(None);
                            }
                        }
                    }
                }
            }
        }
    }
    let t = TensorProto::decode(buf).map_err(|e| bad(format!("tensor: {e}")))?;
    let c = &t.tensor_content;
    let from_content = match (t.dtype, c.len()) {
        (_, 0) => None,
        (DT_FLOAT, 4) => Some(f64::from(f32::from_le_bytes(c[..4].try_into().expect("4")))),
        (DT_DOUBLE, 8) => Some(f64::from_le_bytes(c[..8].try_into().expect("8"))),
        (DT_INT32, 4) => Some(f64::from(i32::from_le_bytes(c[..4].try_into().expect("4")))),
        (DT_INT64, 8) => Some(i64::from_le_bytes(c[..8].try_into().expect("8")) as f64),
        (DT_BOOL, 1) => Some(f64::from(c[0])),
        _ => return Ok(None),
    };
    Ok(from_content.or(match t.dtype {
        DT_FLOAT => t.float_val.first().map(|&x| f64::from(x)),
        DT_DOUBLE => t.double_val.first().copied(),
        DT_INT32 => t.int_val.first().map(|&x| f64::from(x)),
        DT_INT64 => t.int64_val.first().map(|&x| x as f64),
        DT_BOOL => t.bool_val.first().map(|&b| f64::from(u8::from(b))),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Event {
        #[prost(double, tag = "1")]
        wall_time: f64,
        #[prost(int64, tag = "2")]
        step: i64,
        #[prost(message, optional, tag = "5")]
        summary: Option<Summary>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Summary {
        #[prost(message, repeated, tag = "1")]
        value: Vec<SummaryValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct SummaryValue {
        #[prost(string, tag = "1")]
        tag: String,
        #[prost(float, optional, tag = "2")]
        simple_value: Option<f32>,
        #[prost(message, optional, tag = "8")]
        tensor: Option<TensorProto>,
    }

    fn tensor(dtype: i32, content: Vec<u8>) -> TensorProto {
        TensorProto {
            dtype,
            tensor_content: content,
            float_val: vec![],
            double_val: vec![],
            int_val: vec![],
            int64_val: vec![],
            bool_val: vec![],
        }
    }

    #[test]
    fn scalars_from_simple_values_and_tensors() {
        let mut packed = tensor(DT_FLOAT, vec![]);
        packed.float_val = vec![2.5];
        let e = Event {
            wall_time: 1.5e9,
            step: 7,
            summary: Some(Summary {
                value: vec![
                    SummaryValue {
                        tag: "a".into(),
                        simple_value: Some(0.5),
                        tensor: None,
                    },
                    SummaryValue {
                        tag: "b".into(),
                        simple_value: None,
                        tensor: Some(packed),
                    },
                    SummaryValue {
                        tag: "c".into(),
                        simple_value: None,
                        tensor: Some(tensor(DT_DOUBLE, 4.0f64.to_le_bytes().to_vec())),
                    },
                    SummaryValue {
                        tag: "s".into(),
                        simple_value: None,
                        tensor: Some(tensor(7, b"text".to_vec())),
                    },
                ],
            }),
        };
        let got = decode(&e.encode_to_vec()).unwrap();
        assert_eq!(
            (got.step, got.ts_ms, got.skipped),
            (7, Some(1_500_000_000_000), 1)
        );
        assert_eq!(
            got.values,
            vec![("a".into(), 0.5), ("b".into(), 2.5), ("c".into(), 4.0)]
        );
        let no_summary = Event {
            wall_time: 1.0,
            step: 0,
            summary: None,
        };
        let got = decode(&no_summary.encode_to_vec()).unwrap();
        assert_eq!((got.ts_ms, got.values.len()), (Some(1000), 0));
        assert!(decode(&[0x2a, 0x7f]).is_err());
    }
}
