//! Resumable bundle uploads by tus 1.0.0 (core, creation, checksum). The offset of an upload
//! is its staging file's length, so bytes received before a cut connection are kept and an
//! upload survives a restart; a complete upload is ingested like `POST /bundles`.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path as FsPath;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use sha2::Digest;
use tokio::sync::mpsc;

use super::auth::{random_hex, Account};
use super::db::now_ms;
use super::disk::is_sha256;
use super::error::{ApiError, ServerError};
use super::ingest::expected_sha;
use super::staged::{ingest_staged, Busy, Upload};
use super::AppState;

const TUS_VERSION: &str = "1.0.0";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

/// Adds `Tus-Resumable: 1.0.0` to every response of the upload routes.
pub async fn tus_resumable(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    resp
}

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(why.to_string())
}

fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("tus-resumable") {
        Some(v) if v.as_bytes() != TUS_VERSION.as_bytes() => Err(ApiError::TusVersion),
        _ => Ok(()),
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad(format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

fn headers<const N: usize>(pairs: [(&'static str, HeaderValue); N]) -> HeaderMap {
    pairs
        .into_iter()
        .map(|(k, v)| (HeaderName::from_static(k), v))
        .collect()
}

/// The bundle sha256 announced in `Upload-Metadata` (`key base64value` pairs), if any.
fn metadata_sha(raw: &str) -> Result<Option<String>, ApiError> {
    let mut sha = None;
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        if key != "sha256" {
            continue;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| s.to_ascii_lowercase())
            .filter(|s| is_sha256(s))
            .ok_or_else(|| bad("Upload-Metadata sha256 must be base64 of 64 hex digits"))?;
        sha = Some(decoded);
    }
    Ok(sha)
}

/// The most a single upload may hold: what a bundle may unpack to.
fn max_size(state: &AppState) -> u64 {
    state.limits.max_unpacked
}

/// `OPTIONS`: what this tus server supports.
pub async fn options(State(state): State<AppState>) -> impl IntoResponse {
    let h = headers([
        ("tus-version", HeaderValue::from_static(TUS_VERSION)),
        (
            "tus-extension",
            HeaderValue::from_static("creation,checksum,expiration"),
        ),
        ("tus-checksum-algorithm", HeaderValue::from_static("sha1,sha256")),
        ("tus-max-size", HeaderValue::from(max_size(&state))),
    ]);
    (StatusCode::NO_CONTENT, h)
}

/// `POST /api/v1/uploads`: creates an upload of `Upload-Length` bytes.
pub async fn create(
    State(state): State<AppState>,
    Account(account): Account,
    req: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&req)?;
    let length = header_u64(&req, "upload-length")?
        .ok_or_else(|| bad("Upload-Length is required (deferred length is not supported)"))?;
    if length == 0 {
        return Err(bad("Upload-Length must be positive"));
    }
    if length > max_size(&state) {
        return Err(ApiError::TooLarge(format!(
            "Upload-Length {length} is over the server's {} bytes",
            max_size(&state)
        )));
    }
    let metadata = req
        .get("upload-metadata")
        .map(|v| v.to_str().map_err(|_| bad("Upload-Metadata must be ASCII")))
        .transpose()?;
    let from_meta = metadata.map(metadata_sha).transpose()?.flatten();
    let sha = match (expected_sha(&req)?, from_meta) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad("Tidelog-Bundle-Sha256 and Upload-Metadata disagree"))
        }
        (a, b) => a.or(b),
    };
    let id = random_hex(16)?;
    let path = state.disk.upload_path(&id);
    tokio::fs::File::create(&path)
        .await
        .map_err(|e| ServerError::io(format!("creating {}", path.display()), e))?;
    let stored = sqlx::query(
        "INSERT INTO uploads (id, account, length, sha256, metadata, created) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&account)
    .bind(i64::try_from(length).map_err(bad)?)
    .bind(sha)
    .bind(metadata)
    .bind(now_ms())
    .execute(&state.db)
    .await;
    if let Err(e) = stored {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    let location = HeaderValue::from_str(&format!("/api/v1/uploads/{id}")).map_err(bad)?;
    let expires = expires_header(&state, now_ms());
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location), (UPLOAD_EXPIRES, expires)],
    )
        .into_response())
}

const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");

/// `Upload-Expires` for an upload created at `created_ms` (an HTTP date, as tus asks).
fn expires_header(state: &AppState, created_ms: i64) -> HeaderValue {
    let at = created_ms.saturating_add(state.upload_ttl_ms).max(0) as u64;
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
    HeaderValue::from_str(&httpdate::fmt_http_date(when)).unwrap_or(HeaderValue::from_static(""))
}

/// `HEAD /api/v1/uploads/{id}`: where the upload stands.
pub async fn head(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let up = Upload::load(&state, &account, &id).await?;
    let offset = up.offset().await?;
    if offset == up.length {
        // Received in full but not yet ingested: reporting the full offset would let a client
        // take the bundle as acknowledged.
        return Err(ApiError::Locked);
    }
    let mut h = headers([
        ("upload-offset", HeaderValue::from(offset)),
        ("upload-length", HeaderValue::from(up.length)),
        ("cache-control", HeaderValue::from_static("no-store")),
        ("upload-expires", expires_header(&state, up.created_ms)),
    ]);
    if let Some(meta) = up.metadata.as_deref().and_then(|m| HeaderValue::from_str(m).ok()) {
        h.insert("upload-metadata", meta);
    }
    Ok((StatusCode::OK, h).into_response())
}

enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// An `Upload-Checksum` to verify the chunk against.
struct Checksum {
    hasher: Hasher,
    expected: Vec<u8>,
}

impl Checksum {
    fn parse(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
        let Some(v) = headers.get("upload-checksum") else {
            return Ok(None);
        };
        let (alg, b64) = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().split_once(' '))
            .ok_or_else(|| bad("Upload-Checksum must be `<algorithm> <base64>`"))?;
        let hasher = match alg {
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            other => return Err(bad(format!("unsupported checksum algorithm {other:?}"))),
        };
        let expected = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad("Upload-Checksum value is not base64"))?;
        Ok(Some(Checksum { hasher, expected }))
    }

    fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn matches(self) -> bool {
        let got = match self.hasher {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        got == self.expected
    }
}

/// What the request handler feeds the writer.
enum Piece {
    Data(Bytes),
    Done,
    Abort,
}

/// How a chunk ended.
enum Written {
    /// Complete and verified; the new offset.
    Done(u64),
    /// The body stopped early; unverifiable bytes were dropped, others kept.
    Cut,
    /// The body went past what the upload may hold; dropped.
    Aborted,
    /// `Upload-Checksum` did not match; dropped.
    Mismatch,
}

/// Appends pieces to the staging file as they come, off the async threads. It owns the
/// `Busy` mark so a cut request's writer finishes before another PATCH can start.
fn write_chunk(
    path: &FsPath,
    start: u64,
    mut sum: Option<Checksum>,
    mut rx: mpsc::Receiver<Piece>,
    busy: Busy,
) -> (Busy, Result<Written, ServerError>) {
    let io = |e| ServerError::io(format!("writing {}", path.display()), e);
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) => return (busy, Err(io(e))),
    };
    let mut received = || -> std::io::Result<Written> {
        f.seek(SeekFrom::Start(start))?;
        let mut at = start;
        loop {
            match rx.blocking_recv() {
                Some(Piece::Data(b)) => {
                    f.write_all(&b)?;
                    if let Some(s) = &mut sum {
                        s.update(&b);
                    }
                    at += b.len() as u64;
                }
                Some(Piece::Done) => {
                    return Ok(if sum.take().is_some_and(|s| !s.matches()) {
                        Written::Mismatch
                    } else {
                        Written::Done(at)
                    });
                }
                Some(Piece::Abort) => return Ok(Written::Aborted),
                None => return Ok(Written::Cut),
            }
        }
    };
    let outcome = received();
    let keep = match &outcome {
        Ok(Written::Done(_)) => true,
        Ok(Written::Cut) => sum.is_none(),
        _ => false,
    };
    let settled = if keep { f.sync_data() } else { f.set_len(start) };
    // The first failure is the one to report: a full disk fails the write before the settle.
    (busy, outcome.and_then(|w| settled.map(|()| w)).map_err(io))
}

/// `PATCH /api/v1/uploads/{id}`: appends the body at `Upload-Offset`, streaming it to disk.
pub async fn patch(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    req: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&req)?;
    if req.get(CONTENT_TYPE).map(HeaderValue::as_bytes) != Some(OFFSET_STREAM.as_bytes()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let offset = header_u64(&req, "upload-offset")?.ok_or_else(|| bad("Upload-Offset is required"))?;
    let sum = Checksum::parse(&req)?;
    let up = Upload::load(&state, &account, &id).await?;
    let created_ms = up.created_ms;
    let busy = Busy::take(&state, &id)?;
    let current = up.offset().await?;
    if offset != current {
        return Err(ApiError::Conflict(format!(
            "Upload-Offset {offset} does not match the upload's offset {current}"
        )));
    }
    let limit = up.length.saturating_sub(current).min(state.max_body as u64);
    let too_large = || {
        ApiError::TooLarge(format!(
            "chunk goes past Upload-Length {} or the {}-byte request limit",
            up.length, state.max_body
        ))
    };
    if header_u64(&req, CONTENT_LENGTH.as_str())?.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let (tx, rx) = mpsc::channel(16);
    let path = up.path.clone();
    let writer = tokio::task::spawn_blocking(move || write_chunk(&path, current, sum, rx, busy));
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let mut end = Some(Piece::Done);
    let mut stalled = false;
    loop {
        let frame = match tokio::time::timeout(state.body_timeout, stream.next()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                stalled = true;
                end = None;
                break;
            }
        };
        let Ok(data) = frame else {
            end = None;
            break;
        };
        received += data.len() as u64;
        if received > limit {
            end = Some(Piece::Abort);
            break;
        }
        if tx.send(Piece::Data(data)).await.is_err() {
            break;
        }
    }
    if let Some(end) = end {
        // A writer that already stopped reports why through its own result below.
        let _ = tx.send(end).await;
    }
    drop(tx);
    let (busy, written) = writer.await.map_err(ServerError::from)?;
    match written? {
        Written::Done(at) if at == up.length => {
            // Spawned, so a client that hangs up during the ingest does not cancel it.
            tokio::spawn(finish(state, up, busy))
                .await
                .map_err(ServerError::from)?
        }
        Written::Done(at) => Ok((
            StatusCode::NO_CONTENT,
            headers([
                ("upload-offset", HeaderValue::from(at)),
                ("upload-expires", expires_header(&state, created_ms)),
            ]),
        )
            .into_response()),
        Written::Cut if stalled => Err(ApiError::Timeout(state.body_timeout)),
        Written::Cut => Err(bad("the request body ended early")),
        Written::Aborted => Err(too_large()),
        Written::Mismatch => Err(ApiError::ChunkChecksum),
    }
}

/// Ingests a complete upload, then forgets it whatever the outcome, so a failed one is
/// started over rather than resumed. `_busy` keeps other requests off it meanwhile.
async fn finish(state: AppState, up: Upload, _busy: Busy) -> Result<Response, ApiError> {
    let result = ingest_staged(&state, &up).await;
    up.remove(&state).await?;
    let q = state.quarantine.clone();
    let id = up.id.clone();
    tokio::task::spawn_blocking(move || q.unmark(&id))
        .await
        .map_err(ServerError::from)??;
    let done = result?;
    let h = headers([
        ("upload-offset", HeaderValue::from(up.length)),
        ("tidelog-rows-added", HeaderValue::from(done.ack.rows_added)),
        (
            "tidelog-duplicates-skipped",
            HeaderValue::from(done.ack.duplicates_skipped),
        ),
    ]);
    Ok((StatusCode::NO_CONTENT, h).into_response())
}
