//! Resumable bundle uploads by tus 1.0.0 (core, creation, checksum). The offset of an upload
//! is in its database row and its bytes are parts in the object store, so bytes received
//! before a cut connection are kept and an upload survives a restart and continues on any
//! replica; a complete upload is ingested like `POST /bundles`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use object_store::ObjectStoreExt;

use super::auth::{random_hex, Account};
use super::db::now_ms;
use super::error::{ApiError, ServerError};
use super::ingest::expected_sha;
use super::parts::{self, Checksum, Received};
use super::staged::{ingest_staged, remove, Upload};
use super::store::is_sha256;
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
    let created = now_ms();
    sqlx::query(
        "INSERT INTO uploads (id, account, length, sha256, metadata, created) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&account)
    .bind(i64::try_from(length).map_err(bad)?)
    .bind(sha)
    .bind(metadata)
    .bind(created)
    .execute(&state.db)
    .await?;
    let location = HeaderValue::from_str(&format!("/api/v1/uploads/{id}")).map_err(bad)?;
    let expires = expires_header(&state, created);
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
    let offset = up.received;
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

/// `PATCH /api/v1/uploads/{id}`: stores the body as the upload's part at `Upload-Offset`,
/// streaming it to the object store, then advances the offset in the database.
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
    if up.received == up.length {
        // Received in full and being ingested.
        return Err(ApiError::Locked);
    }
    if offset != up.received {
        return Err(conflict(offset, up.received));
    }
    let limit = up.length.saturating_sub(offset).min(state.max_body as u64);
    if header_u64(&req, CONTENT_LENGTH.as_str())?.is_some_and(|n| n > limit) {
        return Err(too_large(&state, &up));
    }
    // Spawned, so a client that hangs up mid-body does not cancel the storing of what it sent,
    // nor the ingest of a finished upload.
    tokio::spawn(continue_upload(state, up, body, sum, limit))
        .await
        .map_err(ServerError::from)?
}

fn conflict(offset: u64, current: u64) -> ApiError {
    ApiError::Conflict(format!(
        "Upload-Offset {offset} does not match the upload's offset {current}"
    ))
}

fn too_large(state: &AppState, up: &Upload) -> ApiError {
    ApiError::TooLarge(format!(
        "chunk goes past Upload-Length {} or the {}-byte request limit",
        up.length, state.max_body
    ))
}

/// The rest of a PATCH: receive the body as a part, record it, answer.
async fn continue_upload(
    state: AppState,
    up: Upload,
    body: Body,
    sum: Option<Checksum>,
    limit: u64,
) -> Result<Response, ApiError> {
    let start = up.received;
    let key = parts::new_key(&up.id, start)?;
    let chunk = parts::Chunk {
        body,
        limit,
        sum,
        timeout: state.body_timeout,
    };
    let outcome = parts::receive(&state.store, key.clone(), chunk).await?;
    let kept = match outcome {
        Received::Done(n) | Received::Cut { kept: n, .. } => n,
        Received::TooLarge => return Err(too_large(&state, &up)),
        Received::Mismatch => return Err(ApiError::ChunkChecksum),
    };
    if kept > 0 && !up.advance(&state, start, kept, &key).await? {
        // Another request, here or on another replica, stored this offset first.
        let _ = state.store.delete(&key).await;
        let now = Upload::find(&state, &up.id).await?.map_or(start, |u| u.received);
        return Err(conflict(start, now));
    }
    let at = start + kept;
    match outcome {
        Received::Done(_) if at == up.length => finish(state, up).await,
        Received::Done(_) => Ok((
            StatusCode::NO_CONTENT,
            headers([
                ("upload-offset", HeaderValue::from(at)),
                ("upload-expires", expires_header(&state, up.created_ms)),
            ]),
        )
            .into_response()),
        Received::Cut { stalled: true, .. } => Err(ApiError::Timeout(state.body_timeout)),
        _ => Err(bad("the request body ended early")),
    }
}

/// Ingests a complete upload, then forgets it whatever the outcome, so a failed one is
/// started over rather than resumed.
async fn finish(state: AppState, up: Upload) -> Result<Response, ApiError> {
    let result = ingest_staged(&state, &up).await;
    remove(&state, &up.id).await?;
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
