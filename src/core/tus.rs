//! The upload protocol as plain data: one attempt at a bundle ([`Attempt`]) is a state
//! machine that says which request to send next (`POST /api/v1/bundles`, or tus 1.0 with the
//! creation and checksum extensions) and reads each answer, so every home speaks it the same
//! way; a home's [`Transport`] only puts a [`Request`] on the wire.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::bundle::Bundle;
use super::sync::{PendingUpload, SyncError, SyncOptions};
use super::transport::{
    exchange, Ack, Method, Request, Response, Server, Transport, TransportError, UploadLedger,
};

/// The header a busy server (429, 503) says when to come back in.
pub(crate) const RETRY_AFTER: &str = "Retry-After";
const OFFSET: &str = "Upload-Offset";
const LOCATION: &str = "Location";
const ROWS_ADDED: &str = "Tidelog-Rows-Added";
const DUPLICATES: &str = "Tidelog-Duplicates-Skipped";

/// How often one attempt re-reads a tus upload's offset after the server refused a chunk
/// (409: another offset; 460: the chunk arrived damaged) before the attempt counts as failed.
const MAX_RESYNCS: u32 = 3;

/// The answers' headers each request reads.
const READ_ERROR: &[&str] = &[RETRY_AFTER];
const READ_CREATE: &[&str] = &[LOCATION, RETRY_AFTER];
const READ_OFFSET: &[&str] = &[OFFSET, RETRY_AFTER];
const READ_PATCH: &[&str] = &[OFFSET, ROWS_ADDED, DUPLICATES, RETRY_AFTER];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `sha256 <base64>`: how tus names a checksum and tidelog's `Upload-Metadata` the bundle's.
fn tagged(raw: &[u8]) -> String {
    format!("sha256 {}", b64(raw))
}

/// The request an [`Attempt`] sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// The whole bundle in one `POST /api/v1/bundles`.
    Post,
    /// `HEAD`: where the server stands with the upload.
    Head,
    /// `POST /api/v1/uploads`: a new upload.
    Create,
    /// `PATCH`: the chunk at the offset.
    Patch,
}

/// What an answer leaves to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the next request.
    Send,
    /// Record the upload under way in the ledger (`None`: forget it), then fail with the error
    /// if there is one, else send the next request.
    Ledger(Option<PendingUpload>, Option<TransportError>),
    /// The server acknowledged the bundle.
    Acked(Ack),
}

/// One attempt at one bundle: a POST when it is small; tus otherwise, continuing the upload
/// the ledger remembers, re-reading the server's offset when it refuses a chunk.
pub(crate) struct Attempt<'a> {
    bundle: &'a Bundle,
    chunk: usize,
    step: Step,
    url: String,
    offset: u64,
    resyncs: u32,
}

impl<'a> Attempt<'a> {
    /// The attempt's first step, given the upload the ledger remembers.
    pub(crate) fn new(bundle: &'a Bundle, opts: &SyncOptions, remembered: Option<&PendingUpload>) -> Self {
        let (step, url) = match remembered {
            _ if bundle.bytes.len() <= opts.direct_max => (Step::Post, String::new()),
            Some(u) if u.sha256 == bundle.sha256 => (Step::Head, u.url.clone()),
            _ => (Step::Create, String::new()),
        };
        Attempt {
            bundle,
            chunk: opts.chunk.max(1),
            step,
            url,
            offset: 0,
            resyncs: 0,
        }
    }

    fn len(&self) -> u64 {
        self.bundle.bytes.len() as u64
    }

    /// The next request to send.
    pub(crate) fn request(&self, server: &Server) -> Request<'a> {
        let bytes = &self.bundle.bytes[..];
        let sha256 = self.bundle.sha256.clone();
        let (method, path, body, read) = match self.step {
            Step::Post => (Method::Post, "/api/v1/bundles", bytes, READ_ERROR),
            Step::Head => (Method::Head, self.url.as_str(), &[][..], READ_OFFSET),
            Step::Create => (Method::Post, "/api/v1/uploads", &[][..], READ_CREATE),
            Step::Patch => {
                let start = self.offset as usize;
                let end = start.saturating_add(self.chunk).min(bytes.len());
                (Method::Patch, self.url.as_str(), &bytes[start..end], READ_PATCH)
            }
        };
        let mut req = server.request(method, path, body, read);
        let h = &mut req.headers;
        if self.step != Step::Post {
            h.push(("Tus-Resumable", "1.0.0".to_owned()));
        }
        match self.step {
            Step::Post => {
                h.push(("Content-Type", "application/gzip".to_owned()));
                h.push(("Tidelog-Bundle-Sha256", sha256));
            }
            Step::Head => {}
            Step::Create => {
                h.push(("Upload-Length", self.len().to_string()));
                h.push(("Upload-Metadata", tagged(sha256.as_bytes())));
                h.push(("Tidelog-Bundle-Sha256", sha256));
            }
            Step::Patch => {
                h.push(("Content-Type", "application/offset+octet-stream".to_owned()));
                h.push((OFFSET, self.offset.to_string()));
                h.push(("Upload-Checksum", tagged(&Sha256::digest(body))));
            }
        }
        req
    }

    /// Reads the answer to [`Attempt::request`]'s request.
    pub(crate) fn answer(&mut self, resp: Response) -> Result<Next, TransportError> {
        let ok = matches!(resp.status, 200 | 201 | 204);
        match self.step {
            Step::Post if ok => Ack::from_body(&resp.body).map(Next::Acked),
            Step::Head if ok && resp.header_u64(OFFSET).is_some() => {
                self.offset = resp.header_u64(OFFSET).unwrap_or_default();
                self.step = Step::Patch;
                Ok(self.unacknowledged().unwrap_or(Next::Send))
            }
            // The server no longer knows the upload: start it over.
            Step::Head if ok || matches!(resp.status, 404 | 410) => {
                self.step = Step::Create;
                Ok(Next::Send)
            }
            Step::Create if resp.status == 201 => {
                let url = resp.header(LOCATION).ok_or_else(|| {
                    TransportError::Network("upload created without a readable Location".into())
                })?;
                self.url = url.to_owned();
                self.offset = 0;
                self.step = Step::Patch;
                let b = self.bundle;
                let upload = PendingUpload {
                    url: self.url.clone(),
                    sha256: b.sha256.clone(),
                    seq_start: b.manifest.seq_start,
                    seq_end: b.manifest.seq_end,
                };
                Ok(Next::Ledger(Some(upload), None))
            }
            Step::Patch if ok => {
                let next = resp.header_u64(OFFSET).ok_or_else(|| {
                    TransportError::Network("PATCH answered without a readable Upload-Offset".into())
                })?;
                if next <= self.offset {
                    return Err(TransportError::Status {
                        status: 409,
                        message: format!("upload offset did not advance past {}", self.offset),
                        retry_after_ms: None,
                    });
                }
                self.offset = next;
                if let Some(rows_added) = resp.header_u64(ROWS_ADDED) {
                    return Ok(Next::Acked(Ack {
                        rows_added,
                        duplicates_skipped: resp.header_u64(DUPLICATES).unwrap_or(0),
                    }));
                }
                Ok(self.unacknowledged().unwrap_or(Next::Send))
            }
            Step::Patch => {
                let e = resp.failure();
                if e.resync() && self.resyncs < MAX_RESYNCS {
                    self.resyncs += 1;
                    self.step = Step::Head;
                    return Ok(Next::Send);
                }
                Err(e)
            }
            _ => Err(resp.failure()),
        }
    }

    /// When the server holds every byte but no answer said the bundle was ingested: never
    /// success. The upload is forgotten so the next attempt sends the bundle afresh (the
    /// server keeps it exactly once by its sha256).
    fn unacknowledged(&self) -> Option<Next> {
        (self.offset >= self.len()).then(|| {
            let why = format!(
                "upload {} holds all {} bytes but the server did not acknowledge the bundle",
                self.url,
                self.len()
            );
            Next::Ledger(None, Some(TransportError::Network(why)))
        })
    }
}

/// One attempt at one bundle over `t`, the upload under way kept in `ledger`; `on_sent` hears
/// the size of each body the server answered.
pub(crate) async fn send<T: Transport, L: UploadLedger>(
    t: &mut T,
    opts: &SyncOptions,
    bundle: &Bundle,
    ledger: &mut L,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let mut attempt = Attempt::new(bundle, opts, ledger.current());
    loop {
        let req = attempt.request(t.server());
        let sent = req.body.len() as u64;
        let resp = exchange(t, req).await?;
        if sent > 0 {
            on_sent(sent);
        }
        match attempt.answer(resp)? {
            Next::Send => {}
            Next::Ledger(upload, failed) => {
                ledger.remember(upload).await?;
                if let Some(e) = failed {
                    return Err(e.into());
                }
            }
            Next::Acked(ack) => return Ok(ack),
        }
    }
}

/// The account the key belongs to (`GET /api/v1/whoami`).
pub async fn whoami<T: Transport>(t: &mut T) -> Result<String, TransportError> {
    #[derive(serde::Deserialize)]
    struct WhoAmI {
        account: String,
    }
    let req = t.server().request(Method::Get, "/api/v1/whoami", &[], READ_ERROR);
    let resp = exchange(t, req).await?;
    if resp.status != 200 {
        return Err(resp.failure());
    }
    serde_json::from_slice::<WhoAmI>(&resp.body)
        .map(|w| w.account)
        .map_err(|e| TransportError::Network(format!("whoami answered without an account ({e})")))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "tus_tests.rs"]
mod tests;
