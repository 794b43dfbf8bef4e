//! The read API: the caller's runs, their history and system rows, and their saved files.

use std::collections::{HashMap, HashSet};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use object_store::ObjectStoreExt;
use serde_json::{json, Map, Value as JsonValue};
use sqlx::Row;

use super::auth::Account;
use super::db::{to_u64, RunRow};
use super::error::{ApiError, ServerError};
use super::m4;
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
    rows(&state, "history", &id, &params(q)?).await
}

/// `GET /api/v1/runs/{id}/system[?keys=a,b&min_step=&max_step=&samples=]`: system rows in step order.
pub async fn system(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    owned_run(&state, &account, &id).await?;
    rows(&state, "system", &id, &params(q)?).await
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(ServerError::Corrupt(e.to_string()))
}

/// A non-negative integer query parameter, or a 400 that names it.
fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{name} must be a non-negative integer, not {v:?}"))
            })
        })
        .transpose()
}

/// One stored row as the API shows it: `_step`, `_timestamp`, then `rest`, the members of the
/// stored JSON object without its braces.
fn row_json(out: &mut Vec<u8>, step: u64, ts_ms: i64, rest: &str) -> Result<(), ApiError> {
    let timestamp = serde_json::to_string(&(ts_ms as f64 / 1000.0)).map_err(corrupt)?;
    out.extend_from_slice(format!("{{\"_step\":{step},\"_timestamp\":{timestamp}").as_bytes());
    if !rest.is_empty() {
        out.push(b',');
        out.extend_from_slice(rest.as_bytes());
    }
    out.push(b'}');
    Ok(())
}

/// The members of a JSON object's text, without its braces.
fn members(object: &str) -> Result<&str, ApiError> {
    object
        .strip_prefix('{')
        .and_then(|o| o.strip_suffix('}'))
        .ok_or_else(|| corrupt("stored row is not an object"))
}

/// A stored row: step, timestamp (ms) and its JSON object.
type Stored = (u64, i64, String);

/// A row to send, by index: all of it (`None`), or only these members.
type Picked = (usize, Option<Map<String, JsonValue>>);

/// A key's rows, by index, and its `(step, chart value)` in each.
type KeyPoints = (Vec<u32>, Vec<(u64, f64)>);

/// The rows to send, with the keys each keeps: with `samples`, the M4 picks of every key
/// (a row keeps only the keys it was picked for, so no key has more than `samples` rows);
/// otherwise every row that has one of `keys` (all rows and keys when `keys` is `None`).
fn select(
    stored: &[Stored],
    keys: Option<&HashSet<&str>>,
    samples: Option<u64>,
) -> Result<Vec<Picked>, ApiError> {
    let wanted = |k: &str| keys.is_none_or(|keys| keys.contains(k));
    let Some(samples) = samples else {
        let mut out = Vec::with_capacity(stored.len());
        for (i, (_, _, data)) in stored.iter().enumerate() {
            match keys {
                None => out.push((i, None)),
                Some(_) => {
                    let mut row: Map<String, JsonValue> = serde_json::from_str(data).map_err(corrupt)?;
                    row.retain(|k, _| wanted(k));
                    if !row.is_empty() {
                        out.push((i, Some(row)));
                    }
                }
            }
        }
        return Ok(out);
    };
    let mut points: HashMap<String, KeyPoints> = HashMap::new();
    for (i, (step, _, data)) in stored.iter().enumerate() {
        let row: Map<String, JsonValue> = serde_json::from_str(data).map_err(corrupt)?;
        for (k, v) in row.iter().filter(|(k, _)| wanted(k)) {
            let (rows, pts) = points.entry(k.clone()).or_default();
            rows.push(i as u32);
            pts.push((*step, m4::chart_value(v)));
        }
    }
    let n = usize::try_from(samples).unwrap_or(usize::MAX);
    let mut picks: Vec<(u32, &str)> = Vec::new();
    for (key, (rows, pts)) in &points {
        picks.extend(m4::m4(pts, n).into_iter().map(|p| (rows[p], key.as_str())));
    }
    picks.sort_unstable();
    let mut out: Vec<Picked> = Vec::new();
    for group in picks.chunk_by(|a, b| a.0 == b.0) {
        let i = group[0].0 as usize;
        let mut row: Map<String, JsonValue> = serde_json::from_str(&stored[i].2).map_err(corrupt)?;
        row.retain(|k, _| group.iter().any(|(_, key)| key == k));
        out.push((i, Some(row)));
    }
    Ok(out)
}

/// Writes `{"rows": [...]}` in step order; with `keys`, only those keys and only rows that
/// have one of them (an empty `keys=` means all keys, like no `keys`); `min_step` /
/// `max_step` bound the steps (inclusive) and `samples=N` thins each key to at most N rows
/// by M4.
async fn rows(
    state: &AppState,
    table: &'static str,
    run_id: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let keys: Option<HashSet<&str>> = q
        .get("keys")
        .map(|k| k.split(',').map(str::trim).filter(|k| !k.is_empty()).collect())
        .filter(|k: &HashSet<&str>| !k.is_empty());
    let min_step = number(q, "min_step")?.unwrap_or(0);
    let max_step = number(q, "max_step")?
        .unwrap_or(i64::MAX as u64)
        .min(i64::MAX as u64);
    let samples = number(q, "samples")?;
    let sql = format!(
        "SELECT step, ts_ms, data FROM {table} WHERE run_id = $1 AND step >= $2 AND step <= $3 \
         ORDER BY step, seq"
    );
    let found = sqlx::query(&sql)
        .bind(run_id)
        .bind(i64::try_from(min_step).unwrap_or(i64::MAX))
        .bind(max_step as i64)
        .fetch_all(&state.db)
        .await?;
    let stored = found
        .iter()
        .map(|r| Ok((to_u64(r.try_get(0)?)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<Stored>, ServerError>>()?;
    drop(found);
    let mut out = b"{\"rows\":[".to_vec();
    for (n, (i, row)) in select(&stored, keys.as_ref(), samples)?.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let (step, ts_ms, data) = &stored[i];
        match row {
            None => row_json(&mut out, *step, *ts_ms, members(data)?)?,
            Some(row) => {
                let text = serde_json::to_string(&row).map_err(corrupt)?;
                row_json(&mut out, *step, *ts_ms, members(&text)?)?;
            }
        }
    }
    out.extend_from_slice(b"]}");
    Ok(([(CONTENT_TYPE, "application/json")], out).into_response())
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
