//! The upload protocol as plain data: `POST /api/v1/bundles` and tus 1.0 (core, creation,
//! checksum) requests are built here and their answers read here, so every home speaks it
//! the same way; a home's [`Transport`] only puts a [`Request`] on the wire.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::bundle::Bundle;
use super::sync::{PendingUpload, SyncError, SyncOptions};
use super::transport::{exchange, Ack, Method, Request, Transport, TransportError, UploadLedger};

/// The header a busy server (429, 503) says when to come back in.
pub(crate) const RETRY_AFTER: &str = "Retry-After";
const OFFSET: &str = "Upload-Offset";
const LOCATION: &str = "Location";
const ROWS_ADDED: &str = "Tidelog-Rows-Added";
const DUPLICATES: &str = "Tidelog-Duplicates-Skipped";

/// How often one attempt re-reads a tus upload's offset after the server refused a chunk
/// (409: another offset; 460: the chunk arrived damaged) before the attempt counts as failed.
const MAX_RESYNCS: u32 = 3;

/// The answers' headers each exchange reads.
const READ_ERROR: &[&str] = &[RETRY_AFTER];
const READ_CREATE: &[&str] = &[LOCATION, RETRY_AFTER];
const READ_OFFSET: &[&str] = &[OFFSET, RETRY_AFTER];
const READ_PATCH: &[&str] = &[OFFSET, ROWS_ADDED, DUPLICATES, RETRY_AFTER];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A tus request: authenticated, `Tus-Resumable: 1.0.0`.
fn tus_request<'a, T: Transport>(
    t: &T,
    method: Method,
    url: &str,
    body: &'a [u8],
    read: &'static [&'static str],
) -> Request<'a> {
    let mut req = t.server().request(method, url, body, read);
    req.headers.push(("Tus-Resumable", "1.0.0".to_owned()));
    req
}

/// Posts a whole bundle to `/api/v1/bundles`; its acknowledgement, or why not.
pub(crate) async fn post_bundle<T: Transport>(
    t: &mut T,
    sha256: &str,
    bytes: &[u8],
) -> Result<Ack, TransportError> {
    let mut req = t
        .server()
        .request(Method::Post, "/api/v1/bundles", bytes, READ_ERROR);
    req.headers.push(("Content-Type", "application/gzip".to_owned()));
    req.headers.push(("Tidelog-Bundle-Sha256", sha256.to_owned()));
    let resp = exchange(t, req).await?;
    match resp.status {
        200 | 201 => Ack::from_body(&resp.body),
        _ => Err(resp.failure()),
    }
}

/// Creates a tus upload of `len` bytes announcing the bundle's sha256; returns its URL (a
/// path is kept as given, so the upload resumes even when the server comes back on another
/// address).
pub(crate) async fn create<T: Transport>(
    t: &mut T,
    sha256: &str,
    len: u64,
) -> Result<String, TransportError> {
    let mut req = tus_request(t, Method::Post, "/api/v1/uploads", &[], READ_CREATE);
    req.headers.push(("Upload-Length", len.to_string()));
    req.headers
        .push(("Upload-Metadata", format!("sha256 {}", b64(sha256.as_bytes()))));
    req.headers.push(("Tidelog-Bundle-Sha256", sha256.to_owned()));
    let resp = exchange(t, req).await?;
    if resp.status != 201 {
        return Err(resp.failure());
    }
    resp.header(LOCATION)
        .map(str::to_owned)
        .ok_or_else(|| TransportError::Network("upload created without a readable Location".into()))
}

/// The server's offset of an upload, or `None` when it no longer knows it.
pub(crate) async fn upload_offset<T: Transport>(t: &mut T, url: &str) -> Result<Option<u64>, TransportError> {
    let req = tus_request(t, Method::Head, url, &[], READ_OFFSET);
    let resp = exchange(t, req).await?;
    match resp.status {
        200 | 204 => Ok(resp.header_u64(OFFSET)),
        404 | 410 => Ok(None),
        _ => Err(resp.failure()),
    }
}

/// Sends `chunk` at `offset` with its sha256 as `Upload-Checksum`; returns the new offset,
/// and the server's ingest result when the chunk completed the upload.
pub(crate) async fn patch<T: Transport>(
    t: &mut T,
    url: &str,
    offset: u64,
    chunk: &[u8],
) -> Result<(u64, Option<Ack>), TransportError> {
    let mut req = tus_request(t, Method::Patch, url, chunk, READ_PATCH);
    req.headers
        .push(("Content-Type", "application/offset+octet-stream".to_owned()));
    req.headers.push((OFFSET, offset.to_string()));
    req.headers.push((
        "Upload-Checksum",
        format!("sha256 {}", b64(&Sha256::digest(chunk))),
    ));
    let resp = exchange(t, req).await?;
    match resp.status {
        200 | 204 => {
            let offset = resp.header_u64(OFFSET).ok_or_else(|| {
                TransportError::Network("PATCH answered without a readable Upload-Offset".into())
            })?;
            let ack = resp.header_u64(ROWS_ADDED).map(|rows_added| Ack {
                rows_added,
                duplicates_skipped: resp.header_u64(DUPLICATES).unwrap_or(0),
            });
            Ok((offset, ack))
        }
        _ => Err(resp.failure()),
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

/// One attempt at one bundle: a POST when small; tus otherwise, continuing the upload the
/// ledger remembers, and re-reading the server's offset when it refuses a chunk.
pub(crate) async fn send<T: Transport, L: UploadLedger>(
    t: &mut T,
    opts: &SyncOptions,
    bundle: &Bundle,
    ledger: &mut L,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let len = bundle.bytes.len() as u64;
    if bundle.bytes.len() <= opts.direct_max {
        let ack = post_bundle(t, &bundle.sha256, &bundle.bytes).await;
        on_sent(len);
        return Ok(ack?);
    }
    let known = match ledger.current() {
        Some(u) if u.sha256 == bundle.sha256 => {
            let url = u.url.clone();
            upload_offset(t, &url).await?.map(|off| (url, off))
        }
        _ => None,
    };
    let (url, mut offset) = match known {
        Some(k) => k,
        None => {
            let url = create(t, &bundle.sha256, len).await?;
            ledger
                .remember(Some(PendingUpload {
                    url: url.clone(),
                    sha256: bundle.sha256.clone(),
                    seq_start: bundle.manifest.seq_start,
                    seq_end: bundle.manifest.seq_end,
                }))
                .await?;
            (url, 0)
        }
    };
    let mut resyncs = 0;
    while offset < len {
        let end = (offset as usize)
            .saturating_add(opts.chunk)
            .min(bundle.bytes.len());
        let chunk = &bundle.bytes[offset as usize..end];
        let (next, ack) = match patch(t, &url, offset, chunk).await {
            Ok(answer) => answer,
            Err(e) if e.resync() && resyncs < MAX_RESYNCS => {
                resyncs += 1;
                let Some(at) = upload_offset(t, &url).await? else {
                    ledger.remember(None).await?;
                    return Err(TransportError::Network(format!("upload {url} is gone")).into());
                };
                offset = at;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        on_sent(chunk.len() as u64);
        if next <= offset {
            return Err(TransportError::Status {
                status: 409,
                message: format!("upload offset did not advance past {offset}"),
                retry_after_ms: None,
            }
            .into());
        }
        offset = next;
        if let Some(ack) = ack {
            return Ok(ack);
        }
    }
    // Every byte is there but no answer said the bundle was ingested: never count that as
    // success. Forget the upload so the next attempt sends the bundle afresh (the server
    // keeps it exactly once by its sha256).
    ledger.remember(None).await?;
    Err(TransportError::Network(format!(
        "upload {url} holds all {len} bytes but the server did not acknowledge the bundle"
    ))
    .into())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
#[path = "tus_tests.rs"]
mod tests;
