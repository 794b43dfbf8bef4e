//! The read API: the caller's runs, their history and system rows, and their saved files.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use object_store::ObjectStoreExt;
use serde_json::{json, Value as JsonValue};
use sqlx::Row;

use super::auth::Account;
use super::db::{to_u64, RunRow};
use super::error::{ApiError, ServerError};
use super::rows;
use super::store::{blob_key, is_sha256};
use super::AppState;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// The run `id` if it belongs to `account`: 404 when unknown, 403 when another's.
pub(super) async fn owned_run(state: &AppState, account: &str, id: &str) -> Result<RunRow, ApiError> {
    let run = RunRow::load(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {id:?}")))?;
    if run.account != account {
        return Err(ApiError::Forbidden(id.to_owned()));
    }
    Ok(run)
}

/// `GET /api/v1/runs[?project=P]`: the caller's runs, newest first.
pub async fn list(
    State(state): State<AppState>,
    Account(account): Account,
    q: Params,
) -> Result<Json<JsonValue>, ApiError> {
    let q = params(q)?;
    let runs = RunRow::list(&state.db, &account, q.get("project").map(String::as_str)).await?;
    let runs: Vec<JsonValue> = runs.iter().map(RunRow::to_json).collect();
    Ok(Json(json!({ "runs": runs })))
}

/// `GET /api/v1/runs/{id}`: one run.
pub async fn get(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    Ok(Json(owned_run(&state, &account, &id).await?.to_json()))
}

/// `GET /api/v1/runs/{id}/history[?keys=a,b&min_step=&max_step=&samples=]`: rows in step order.
pub async fn history(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    owned_run(&state, &account, &id).await?;
    rows::rows(&state, "history", &id, &params(q)?).await
}

/// `GET /api/v1/runs/{id}/system[?keys=a,b&min_step=&max_step=&samples=]`: system rows in step order.
pub async fn system(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    owned_run(&state, &account, &id).await?;
    rows::rows(&state, "system", &id, &params(q)?).await
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(ServerError::Corrupt(e.to_string()))
}

/// `GET /api/v1/runs/{id}/files`: the run's saved files.
pub async fn files(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    owned_run(&state, &account, &id).await?;
    let found = sqlx::query("SELECT path, sha256, size FROM files WHERE run_id = $1 ORDER BY path")
        .bind(&id)
        .fetch_all(&state.db)
        .await?;
    let files = found
        .iter()
        .map(|r| {
            Ok(json!({
                "path": r.try_get::<String, _>(0)?,
                "sha256": r.try_get::<String, _>(1)?,
                "size": to_u64(r.try_get(2)?)?,
            }))
        })
        .collect::<Result<Vec<_>, ServerError>>()?;
    Ok(Json(json!({ "files": files })))
}

/// How a saved file is served, from its extension: a type the browser shows but never runs,
/// or `None` for anything else (HTML, SVG, XML, PDF, unknown), sent as a download of
/// `application/octet-stream` so no user-supplied document runs on the server's origin.
fn inline_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    Some(match ext.as_deref()? {
        "json" => "application/json",
        "txt" | "log" | "md" | "yaml" | "yml" | "py" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        _ => return None,
    })
}

/// `GET /api/v1/runs/{id}/files/{*path}`: a saved file's bytes, streamed and sandboxed
/// (`CSP: sandbox`, and anything a browser could run is a download) so uploaded HTML or SVG
/// cannot script the dashboard.
pub async fn file(
    State(state): State<AppState>,
    Account(account): Account,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    owned_run(&state, &account, &id).await?;
    let sha: String = sqlx::query_scalar("SELECT sha256 FROM files WHERE run_id = $1 AND path = $2")
        .bind(&id)
        .bind(&path)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id:?} has no file {path:?}")))?;
    if !is_sha256(&sha) {
        return Err(corrupt(format!("bad blob name {sha:?}")));
    }
    let got = state
        .store
        .get(&blob_key(&sha))
        .await
        .map_err(|e| state.store.failed(&format!("reading blob {sha}"), e))?;
    let len = got.meta.size;
    // Streamed piece by piece as the store delivers it: memory stays at one piece per download.
    let mut resp = Body::from_stream(got.into_stream()).into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    match inline_type(&path) {
        Some(kind) => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
        }
        None => {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
        }
    }
    Ok(resp)
}
