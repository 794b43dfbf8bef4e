//! The read API: the caller's runs, their history and system rows, and their saved files.

use std::collections::{HashMap, HashSet};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value as JsonValue};
use sqlx::Row;
use tokio::io::AsyncReadExt;

use super::auth::Account;
use super::db::{to_u64, RunRow};
use super::disk::is_sha256;
use super::error::{ApiError, ServerError};
use super::AppState;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: Params) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// The run `id` if it belongs to `account`: 404 when unknown, 403 when another's.
async fn owned_run(state: &AppState, account: &str, id: &str) -> Result<RunRow, ApiError> {
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

/// Which of `n` rows to keep so that at most `samples` remain, evenly spread, the first and
/// the last always kept: a chart of a million-step run needs a few thousand points.
fn spread(n: usize, samples: Option<u64>) -> Vec<usize> {
    let want = samples.map_or(n, |s| usize::try_from(s).unwrap_or(usize::MAX).min(n));
    match want {
        0 => Vec::new(),
        1 => vec![0],
        _ if want == n => (0..n).collect(),
        _ => (0..want).map(|k| k * (n - 1) / (want - 1)).collect(),
    }
}

/// Writes `{"rows": [...]}` straight from the stored row JSON; with `keys`, only those keys and
/// only rows that have one of them (an empty `keys=` means all keys, like no `keys`);
/// `min_step` / `max_step` bound the steps (inclusive) and `samples=N` thins the rows to at
/// most N, evenly spread over the range.
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
    let mut picked = Vec::with_capacity(found.len());
    for r in &found {
        let step = to_u64(r.try_get(0)?)?;
        let ts_ms: i64 = r.try_get(1)?;
        let data: String = r.try_get(2)?;
        let timestamp = serde_json::to_string(&(ts_ms as f64 / 1000.0)).map_err(corrupt)?;
        let head = format!("{{\"_step\":{step},\"_timestamp\":{timestamp}");
        let tail = match &keys {
            None => {
                let inner = data
                    .strip_prefix('{')
                    .ok_or_else(|| corrupt("stored row is not an object"))?;
                if inner == "}" {
                    inner.to_owned()
                } else {
                    format!(",{inner}")
                }
            }
            Some(keys) => {
                let mut row: Map<String, JsonValue> = serde_json::from_str(&data).map_err(corrupt)?;
                row.retain(|k, _| keys.contains(k.as_str()));
                if row.is_empty() {
                    continue;
                }
                let rest = serde_json::to_string(&row).map_err(corrupt)?;
                format!(",{}", &rest[1..])
            }
        };
        picked.push(head + &tail);
    }
    let mut out = b"{\"rows\":[".to_vec();
    for (n, i) in spread(picked.len(), samples).into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(picked[i].as_bytes());
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

/// Pieces a file is streamed in.
const PIECE: usize = 64 << 10;

/// A file's bytes as a body, read piece by piece: memory stays at one piece per download.
fn stream_file(file: tokio::fs::File) -> Body {
    let pieces = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; PIECE];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Body::from_stream(pieces)
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
    let blob = state.disk.blob_path(&sha);
    let io = |e| ServerError::io(format!("reading {}", blob.display()), e);
    let file = tokio::fs::File::open(&blob).await.map_err(io)?;
    let len = file.metadata().await.map_err(io)?.len();
    let mut resp = stream_file(file).into_response();
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

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_keeps_the_ends_and_at_most_the_samples() {
        assert_eq!(spread(5, None), vec![0, 1, 2, 3, 4]);
        assert_eq!(spread(5, Some(10)), vec![0, 1, 2, 3, 4]);
        assert_eq!(spread(10, Some(4)), vec![0, 3, 6, 9]);
        assert_eq!(spread(1_000_000, Some(3)), vec![0, 499_999, 999_999]);
        assert_eq!(spread(7, Some(1)), vec![0]);
        assert!(spread(7, Some(0)).is_empty());
        assert!(spread(0, Some(5)).is_empty());
    }
}
