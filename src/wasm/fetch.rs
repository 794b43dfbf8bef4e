//! The sync engine's [`Transport`] over `fetch` (gloo-net), for browsers, workers and Node.
//! Only the wire is here: the requests and what their answers mean are the core's
//! (`core/tus.rs`).

use gloo_net::http::{Method as HttpMethod, RequestBuilder};
use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;

use crate::core::sync::Transport;
use crate::core::transport::{Backoff, Method, Request, Response, Server};

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

impl Transport for FetchTransport {
    fn server(&self) -> &Server {
        &self.server
    }

    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String> {
        let method = match req.method {
            Method::Get => HttpMethod::GET,
            Method::Head => HttpMethod::HEAD,
            Method::Post => HttpMethod::POST,
            Method::Patch => HttpMethod::PATCH,
        };
        let mut builder = RequestBuilder::new(&req.url).method(method);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let sent = if req.body.is_empty() {
            builder.send().await
        } else {
            match builder.body(Uint8Array::from(req.body)) {
                Ok(r) => r.send().await,
                Err(e) => Err(e),
            }
        };
        let resp = sent.map_err(|e| e.to_string())?;
        let headers = req
            .read
            .iter()
            .filter_map(|&name| Some((name, resp.headers().get(name)?)))
            .collect();
        let body = match req.method {
            Method::Head => Vec::new(),
            _ => resp.binary().await.map_err(|e| e.to_string())?,
        };
        Ok(Response {
            status: resp.status(),
            headers,
            body,
        })
    }

    async fn sleep(&mut self, ms: u64) {
        super::store::sleep(ms).await;
    }
}
