//! JS values → logged values, refusing what cannot round-trip: a `TypeError` that names the
//! key (down to the nested field) instead of a value silently changed into `{}`.

use js_sys::{Array, ArrayBuffer, BigInt64Array, BigUint64Array, Float64Array, Object};
use serde_json::{Map, Value as Json};
use wasm_bindgen::{JsCast, JsValue};

use crate::core::value::{num_to_json, Value};

/// How deeply a logged value may nest. Deeper is refused, so a value that contains itself is a
/// `TypeError` and the walk never overruns wasm's stack (which has no guard page).
pub const MAX_DEPTH: usize = 64;

/// Why a nested value was refused, and where: path segments from the innermost outwards.
struct Refusal {
    path: Vec<String>,
    why: String,
}

impl Refusal {
    fn new(why: impl Into<String>) -> Refusal {
        Refusal {
            path: Vec::new(),
            why: why.into(),
        }
    }

    fn at(mut self, segment: String) -> Refusal {
        self.path.push(segment);
        self
    }

    /// `tidelog: value of key "cfg.a[2]" cannot be logged: ...`.
    fn into_type_error(self, what: &str, key: &str) -> JsValue {
        let mut path = key.to_string();
        for segment in self.path.iter().rev() {
            path.push_str(segment);
        }
        js_sys::TypeError::new(&format!(
            "tidelog: {what} {path:?} cannot be logged: {}",
            self.why
        ))
        .into()
    }
}

/// A value passed to `log()`, `summary.set()` or as part of a media object.
pub fn to_value(key: &str, v: &JsValue) -> Result<Value, JsValue> {
    if let Some(n) = v.as_f64() {
        return Ok(Value::Num(n));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Str(s));
    }
    if v.is_null() || v.is_undefined() {
        return Err(Refusal::new(format!("it is {}", kind(v))).into_type_error("value of key", key));
    }
    to_json(v, &mut Vec::new())
        .map(Value::Json)
        .map_err(|r| r.into_type_error("value of key", key))
}

/// A plain object of config values (`init({config})`, `run.config.update()`).
pub fn to_object(what: &str, v: &JsValue) -> Result<Map<String, Json>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(Map::new());
    }
    match to_json(v, &mut Vec::new()) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(_) => Err(js_sys::TypeError::new(&format!(
            "tidelog: {what} must be a plain object of key → value, not {}",
            kind(v)
        ))
        .into()),
        Err(r) => Err(r.into_type_error("config key", what)),
    }
}

/// JSON for a nested value: plain objects, arrays and typed arrays of loggable values.
/// Non-finite numbers become the strings the HTTP API uses for them at the top level.
/// `outer` holds the objects and arrays enclosing `v`, to tell a cycle from deep nesting.
fn to_json(v: &JsValue, outer: &mut Vec<JsValue>) -> Result<Json, Refusal> {
    if let Some(n) = v.as_f64() {
        return Ok(number(n));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Json::Bool(b));
    }
    if let Some(s) = v.as_string() {
        return Ok(Json::String(s));
    }
    if v.is_null() {
        return Ok(Json::Null);
    }
    if !v.is_object() || v.is_function() {
        return Err(Refusal::new(format!("it is {}", kind(v))));
    }
    if outer.iter().any(|o| o == v) {
        return Err(Refusal::new("it contains itself (a cycle)"));
    }
    if outer.len() >= MAX_DEPTH {
        return Err(Refusal::new(format!("it nests deeper than {MAX_DEPTH} levels")));
    }
    outer.push(v.clone());
    let json = container_to_json(v, outer);
    outer.pop();
    json
}

/// [`to_json`] of an object, array or typed array `v`, already pushed onto `outer`.
fn container_to_json(v: &JsValue, outer: &mut Vec<JsValue>) -> Result<Json, Refusal> {
    if Array::is_array(v) {
        let array: &Array = v.unchecked_ref();
        let mut out = Vec::with_capacity(array.length() as usize);
        for (i, item) in array.iter().enumerate() {
            if item.is_undefined() {
                return Err(Refusal::new("it is undefined").at(format!("[{i}]")));
            }
            out.push(to_json(&item, outer).map_err(|r| r.at(format!("[{i}]")))?);
        }
        return Ok(Json::Array(out));
    }
    if ArrayBuffer::is_view(v) {
        if v.is_instance_of::<BigInt64Array>() || v.is_instance_of::<BigUint64Array>() {
            return Err(Refusal::new("it holds BigInts, which are not numbers"));
        }
        if v.is_instance_of::<js_sys::DataView>() {
            return Err(Refusal::new("it is a DataView; log a typed array"));
        }
        let numbers = Float64Array::new(v).to_vec();
        return Ok(Json::Array(numbers.into_iter().map(number).collect()));
    }
    let proto = Object::get_prototype_of(v);
    if !proto.is_null() && proto != Object::get_prototype_of(&Object::new()) {
        return Err(Refusal::new(format!("it is {}, not a plain object", kind(v))));
    }
    let mut out = Map::new();
    for entry in Object::entries(v.unchecked_ref()).iter() {
        let pair: &Array = entry.unchecked_ref();
        let field = pair.get(0).as_string().unwrap_or_default();
        let item = pair.get(1);
        if item.is_undefined() {
            continue;
        }
        let json = to_json(&item, outer).map_err(|r| r.at(format!(".{field}")))?;
        out.insert(field, json);
    }
    Ok(Json::Object(out))
}

/// JSON for a JS number: whole numbers JS can represent exactly stay integers (`4`, not `4.0`).
fn number(n: f64) -> Json {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() < EXACT && !(n == 0.0 && n.is_sign_negative()) {
        Json::from(n as i64)
    } else {
        num_to_json(n)
    }
}

/// What `v` is, for messages: "a function", "a Date", "null".
fn kind(v: &JsValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    if v.is_undefined() {
        return "undefined".into();
    }
    if v.is_object() && !v.is_function() {
        let name = js_sys::Reflect::get(v, &"constructor".into())
            .ok()
            .filter(JsValue::is_function)
            .and_then(|ctor| js_sys::Reflect::get(&ctor, &"name".into()).ok())
            .and_then(|name| name.as_string())
            .unwrap_or_default();
        if !name.is_empty() {
            return format!("a {name}");
        }
        return "an object".into();
    }
    let t = v.js_typeof().as_string().unwrap_or_default();
    let article = if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {t}")
}
