//! The sync engine's [`Transport`] over `fetch` (gloo-net), for browsers, workers and Node.

use base64::Engine;
use gloo_net::http::{Request, RequestBuilder, Response};
use js_sys::Uint8Array;

use crate::core::sync::{Ack, Transport, TransportError};

/// A client bound to one server and key.
pub struct FetchTransport {
    base: String,
    auth: String,
}

async fn failure(resp: Response) -> TransportError {
    let retry_after = resp.headers().get("Retry-After");
    let text = resp.text().await.unwrap_or_default();
    TransportError::from_response(resp.status(), &text, retry_after.as_deref())
}

fn header_u64(resp: &Response, name: &str) -> Option<u64> {
    resp.headers().get(name)?.trim().parse().ok()
}

impl FetchTransport {
    /// A client for `base` authenticating with `api_key`.
    pub fn new(base: &str, api_key: &str) -> Self {
        FetchTransport {
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {api_key}"),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// A failed request, naming the server so a wrong URL or a server that is down is plain.
    fn net(&self, e: gloo_net::Error) -> TransportError {
        TransportError::Network(format!("could not reach {}: {e}", self.base))
    }

    fn tus(&self, req: RequestBuilder) -> RequestBuilder {
        req.header("Authorization", &self.auth)
            .header("Tus-Resumable", "1.0.0")
    }
}

impl Transport for FetchTransport {
    async fn post_bundle(&mut self, sha256: &str, bytes: &[u8]) -> Result<Ack, TransportError> {
        let resp = Request::post(&self.url("/api/v1/bundles"))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/gzip")
            .header("Tidelog-Bundle-Sha256", sha256)
            .body(Uint8Array::from(bytes))
            .map_err(|e| self.net(e))?
            .send()
            .await
            .map_err(|e| self.net(e))?;
        match resp.status() {
            200 | 201 => Ack::from_body(&resp.text().await.map_err(|e| self.net(e))?),
            _ => Err(failure(resp).await),
        }
    }

    async fn create_upload(&mut self, sha256: &str, len: u64) -> Result<String, TransportError> {
        let meta = format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(sha256)
        );
        let resp = self
            .tus(Request::post(&self.url("/api/v1/uploads")))
            .header("Upload-Length", &len.to_string())
            .header("Upload-Metadata", &meta)
            .header("Tidelog-Bundle-Sha256", sha256)
            .send()
            .await
            .map_err(|e| self.net(e))?;
        if resp.status() != 201 {
            return Err(failure(resp).await);
        }
        resp.headers()
            .get("Location")
            .ok_or_else(|| TransportError::Network("upload created without a readable Location".into()))
    }

    async fn upload_offset(&mut self, url: &str) -> Result<Option<u64>, TransportError> {
        let resp = self
            .tus(RequestBuilder::new(&self.url(url)).method(gloo_net::http::Method::HEAD))
            .send()
            .await
            .map_err(|e| self.net(e))?;
        match resp.status() {
            200 | 204 => Ok(header_u64(&resp, "Upload-Offset")),
            404 | 410 => Ok(None),
            _ => Err(failure(resp).await),
        }
    }

    async fn patch(
        &mut self,
        url: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<(u64, Option<Ack>), TransportError> {
        let resp = self
            .tus(Request::patch(&self.url(url)))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", &offset.to_string())
            .body(Uint8Array::from(chunk))
            .map_err(|e| self.net(e))?
            .send()
            .await
            .map_err(|e| self.net(e))?;
        match resp.status() {
            200 | 204 => {
                let offset = header_u64(&resp, "Upload-Offset").ok_or_else(|| {
                    TransportError::Network("PATCH answered without a readable Upload-Offset".into())
                })?;
                let ack = header_u64(&resp, "Tidelog-Rows-Added").map(|rows_added| Ack {
                    rows_added,
                    duplicates_skipped: header_u64(&resp, "Tidelog-Duplicates-Skipped").unwrap_or(0),
                });
                Ok((offset, ack))
            }
            _ => Err(failure(resp).await),
        }
    }

    async fn sleep(&mut self, ms: u64) {
        super::store::sleep(ms).await;
    }
}
