//! The sync engine's [`Transport`] over the runtime's global `fetch` (browsers, workers,
//! Node, Deno, Bun, workerd). Only the wire is here: the requests and what their answers mean
//! are the core's (`core/tus.rs`).

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, RequestInit};

use crate::core::sync::Transport;
use crate::core::transport::{Backoff, Method, Request, Response, Server};

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, the same function in every runtime (a binding of its own rather
    /// than `Window`'s or a worker's).
    #[wasm_bindgen(catch, js_name = fetch)]
    fn global_fetch(url: &str, init: &RequestInit) -> Result<Promise, JsValue>;
}

/// How long the JS wrapper waits before the next sync after `failures` failed ones in a row,
/// given the longest `Retry-After` the server sent: the core's schedule, so JS keeps none.
#[wasm_bindgen(js_name = syncDelayMs)]
pub fn sync_delay_ms(failures: u32, retry_after_ms: f64) -> f64 {
    Backoff::BETWEEN_SYNCS.delay_ms(failures, Some(retry_after_ms as u64)) as f64
}

/// A client bound to one server and key.
pub struct FetchTransport {
    server: Server,
}

impl FetchTransport {
    /// A client for `base` authenticating with `api_key`.
    pub fn new(base: &str, api_key: &str) -> Self {
        FetchTransport {
            server: Server::new(base, api_key),
        }
    }
}

/// Why `fetch` gave no answer, in the runtime's words (`TypeError: Failed to fetch`).
fn why(e: JsValue) -> String {
    match e.dyn_ref::<js_sys::Error>() {
        Some(e) => e.to_string().into(),
        None => e.as_string().unwrap_or_else(|| "fetch failed".into()),
    }
}

/// Puts `req` on the wire; the answer's status, the headers `req` reads, its body.
async fn fetch(req: &Request<'_>) -> Result<Response, JsValue> {
    let headers = Headers::new()?;
    for (k, v) in &req.headers {
        headers.set(k, v)?;
    }
    let init = RequestInit::new();
    init.set_method(match req.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Patch => "PATCH",
    });
    init.set_headers(&headers);
    if !req.body.is_empty() {
        init.set_body(&Uint8Array::from(req.body));
    }
    let resp: web_sys::Response = JsFuture::from(global_fetch(&req.url, &init)?)
        .await?
        .unchecked_into();
    let answer = resp.headers();
    let mut headers = Vec::new();
    for &name in req.read {
        if let Some(v) = answer.get(name)? {
            headers.push((name, v));
        }
    }
    let body = match req.method {
        Method::Head => Vec::new(),
        _ => Uint8Array::new(&JsFuture::from(resp.array_buffer()?).await?).to_vec(),
    };
    Ok(Response {
        status: resp.status(),
        headers,
        body,
    })
}

impl Transport for FetchTransport {
    fn server(&self) -> &Server {
        &self.server
    }

    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String> {
        fetch(req).await.map_err(why)
    }

    async fn sleep(&mut self, ms: u64) {
        super::store::sleep(ms).await;
    }
}
