//! The media encoders of [`crate::core::media`] for the JS `Image`, `Audio` and `Histogram`.

use wasm_bindgen::prelude::*;

use crate::core::media;

/// `tidelog.Image: ...`: the error names the constructor the page called.
fn type_error(e: media::MediaError) -> JsValue {
    let text = e.to_string();
    let (what, why) = text.split_once(": ").unwrap_or(("media", &text));
    let name = match what {
        "image" => "Image",
        "audio" => "Audio",
        "table" => "Table",
        other => other,
    };
    js_sys::TypeError::new(&format!("tidelog.{name}: {why}")).into()
}

/// PNG bytes from RGBA pixels (ImageData, canvas pixels).
#[wasm_bindgen(js_name = encodePng)]
pub fn encode_png(rgba: &[u8], width: u32, height: u32) -> Result<Vec<u8>, JsValue> {
    media::encode_png(rgba, width, height).map_err(type_error)
}

/// `{ width, height }` of PNG bytes, refusing anything that is not a PNG.
#[wasm_bindgen(js_name = pngSize)]
pub fn png_size(png: &[u8]) -> Result<JsValue, JsValue> {
    let (width, height) = media::png_size(png).map_err(type_error)?;
    let o = js_sys::Object::new();
    js_sys::Reflect::set(&o, &"width".into(), &width.into())?;
    js_sys::Reflect::set(&o, &"height".into(), &height.into())?;
    Ok(o.into())
}

/// 16-bit PCM WAV bytes from mono samples in [-1, 1].
#[wasm_bindgen(js_name = encodeWav)]
pub fn encode_wav(samples: &[f32], sample_rate: u32) -> Result<Vec<u8>, JsValue> {
    media::encode_wav(samples, sample_rate).map_err(type_error)
}

/// `{ bins, counts }` of the finite values.
#[wasm_bindgen]
pub fn histogram(values: &[f64], bins: usize) -> Result<JsValue, JsValue> {
    serde_wasm_bindgen::to_value(&media::histogram(values, bins))
        .map_err(|e| JsValue::from_str(&e.to_string()))
}
