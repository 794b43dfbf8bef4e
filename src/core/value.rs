//! What a user may log: numbers (non-finite ones kept), booleans, strings and nested JSON.

use serde_json::Value as Json;

/// A logged value; numbers stay `f64` so NaN and ±Infinity survive the round trip.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Any number, finite or not.
    Num(f64),
    /// A flag.
    Bool(bool),
    /// Text, stored as given.
    Str(String),
    /// Nested objects, arrays and media references, kept nested.
    Json(Json),
}

/// A borrowed view of a decoded value, so decoding a row allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// A number.
    Num(f64),
    /// A flag.
    Bool(bool),
    /// Text.
    Str(&'a str),
    /// Serialized JSON text of a nested value.
    Json(&'a str),
}

/// JSON for a number: non-finite values become the strings JSON has no literal for.
pub fn num_to_json(v: f64) -> Json {
    if v.is_nan() {
        Json::from("NaN")
    } else if v == f64::INFINITY {
        Json::from("Infinity")
    } else if v == f64::NEG_INFINITY {
        Json::from("-Infinity")
    } else {
        serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number)
    }
}

impl Value {
    /// The JSON the HTTP API and `summary.json` show for this value.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Num(v) => num_to_json(*v),
            Value::Bool(b) => Json::Bool(*b),
            Value::Str(s) => Json::String(s.clone()),
            Value::Json(j) => j.clone(),
        }
    }

    /// Bytes this value adds to a record, used to refuse oversized values up front.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Num(_) | Value::Bool(_) => 9,
            Value::Str(s) => s.len() + 5,
            Value::Json(j) => j.to_string().len() + 5,
        }
    }
}

impl ValueRef<'_> {
    /// The JSON the HTTP API shows for this value.
    pub fn to_json(self) -> Json {
        match self {
            ValueRef::Num(v) => num_to_json(v),
            ValueRef::Bool(b) => Json::Bool(b),
            ValueRef::Str(s) => Json::String(s.to_owned()),
            ValueRef::Json(s) => serde_json::from_slice(s.as_bytes()).unwrap_or(Json::Null),
        }
    }

    /// An owned copy.
    pub fn to_owned(self) -> Value {
        match self {
            ValueRef::Num(v) => Value::Num(v),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Str(s) => Value::Str(s.to_owned()),
            ValueRef::Json(s) => Value::Json(serde_json::from_slice(s.as_bytes()).unwrap_or(Json::Null)),
        }
    }
}

macro_rules! from_number {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Num(v as f64)
            }
        }
    )*};
}
from_number!(f64, f32, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<Json> for Value {
    fn from(v: Json) -> Self {
        match v {
            Json::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
            Json::Bool(b) => Value::Bool(b),
            Json::String(s) => Value::Str(s),
            other => Value::Json(other),
        }
    }
}
