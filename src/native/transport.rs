//! The sync engine's [`Transport`] over blocking HTTP (`ureq`), with connect and idle
//! timeouts so a sync never hangs.

use std::time::Duration;

use base64::Engine;

use crate::core::sync::{Ack, Transport, TransportError};

/// An HTTP client bound to one server and key.
pub struct HttpTransport {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

fn header_u64(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<u64> {
    resp.headers().get(name)?.to_str().ok()?.trim().parse().ok()
}

fn failure(mut resp: ureq::http::Response<ureq::Body>) -> TransportError {
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    let retry_after = resp.headers().get("Retry-After").and_then(|v| v.to_str().ok());
    TransportError::from_response(resp.status().as_u16(), &text, retry_after)
}

impl HttpTransport {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) authenticating with `api_key`.
    pub fn new(base: &str, api_key: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(timeout))
            .timeout_send_body(Some(timeout))
            .timeout_recv_response(Some(timeout))
            .timeout_recv_body(Some(timeout))
            .build()
            .into();
        HttpTransport {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {api_key}"),
        }
    }

    /// A network failure that names the server, so a wrong URL or port is plain to see.
    fn net(&self, e: ureq::Error) -> TransportError {
        let why = match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_owned()
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
            ureq::Error::HostNotFound => "host not found".to_owned(),
            other => other.to_string(),
        };
        TransportError::Network(format!("could not reach {}: {why}", self.base))
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// The account the key belongs to (`GET /api/v1/whoami`).
    pub fn whoami(&self) -> Result<String, TransportError> {
        let mut resp = self
            .agent
            .get(self.url("/api/v1/whoami"))
            .header("Authorization", &self.auth)
            .call()
            .map_err(|e| self.net(e))?;
        if resp.status().as_u16() != 200 {
            return Err(failure(resp));
        }
        let v: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().map_err(|e| self.net(e))?)
                .unwrap_or_default();
        Ok(v["account"].as_str().unwrap_or_default().to_owned())
    }
}

impl Transport for HttpTransport {
    async fn post_bundle(&mut self, sha256: &str, bytes: &[u8]) -> Result<Ack, TransportError> {
        let mut resp = self
            .agent
            .post(self.url("/api/v1/bundles"))
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/gzip")
            .header("Tidelog-Bundle-Sha256", sha256)
            .send(bytes)
            .map_err(|e| self.net(e))?;
        match resp.status().as_u16() {
            200 | 201 => {
                let text = resp.body_mut().read_to_string().map_err(|e| self.net(e))?;
                Ack::from_body(&text)
            }
            _ => Err(failure(resp)),
        }
    }

    async fn create_upload(&mut self, sha256: &str, len: u64) -> Result<String, TransportError> {
        let meta = format!(
            "sha256 {}",
            base64::engine::general_purpose::STANDARD.encode(sha256)
        );
        let resp = self
            .agent
            .post(self.url("/api/v1/uploads"))
            .header("Authorization", &self.auth)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", len.to_string())
            .header("Upload-Metadata", meta)
            .header("Tidelog-Bundle-Sha256", sha256)
            .send_empty()
            .map_err(|e| self.net(e))?;
        if resp.status().as_u16() != 201 {
            return Err(failure(resp));
        }
        let location = resp
            .headers()
            .get("Location")
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| TransportError::Network("upload created without a Location".into()))?;
        Ok(location.to_owned())
    }

    async fn upload_offset(&mut self, url: &str) -> Result<Option<u64>, TransportError> {
        let resp = self
            .agent
            .head(self.url(url))
            .header("Authorization", &self.auth)
            .header("Tus-Resumable", "1.0.0")
            .call()
            .map_err(|e| self.net(e))?;
        match resp.status().as_u16() {
            200 | 204 => Ok(header_u64(&resp, "Upload-Offset")),
            404 | 410 => Ok(None),
            _ => Err(failure(resp)),
        }
    }

    async fn patch(
        &mut self,
        url: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<(u64, Option<Ack>), TransportError> {
        let resp = self
            .agent
            .patch(self.url(url))
            .header("Authorization", &self.auth)
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string())
            .send(chunk)
            .map_err(|e| self.net(e))?;
        match resp.status().as_u16() {
            200 | 204 => {
                let offset = header_u64(&resp, "Upload-Offset")
                    .ok_or_else(|| TransportError::Network("PATCH answered without Upload-Offset".into()))?;
                let ack = header_u64(&resp, "Tidelog-Rows-Added").map(|rows_added| Ack {
                    rows_added,
                    duplicates_skipped: header_u64(&resp, "Tidelog-Duplicates-Skipped").unwrap_or(0),
                });
                Ok((offset, ack))
            }
            _ => Err(failure(resp)),
        }
    }

    async fn sleep(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
