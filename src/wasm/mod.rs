//! The browser, Node and edge home: wasm-bindgen exports that the JS wrapper in `js/`
//! (shipped as the npm package in `pkg/`) drives. Storage is IndexedDB in browsers, the
//! on-disk layout through Node's `fs` in Node, or memory; sync goes over `fetch`.

mod backend;
mod fetch;
mod fs_host;
mod idb;
mod media;
mod memory;
mod run;
mod store;
mod value;

pub use run::{InitOptions, WasmRun, DROPPED, LOGGED, REFUSED};
pub use store::Store;

/// A JS `Error` carrying `message`, for rejections the page can show.
pub(crate) fn js_error(message: impl std::fmt::Display) -> wasm_bindgen::JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

/// Unix milliseconds from the JS clock.
pub(crate) fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}
