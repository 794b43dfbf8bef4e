//! The router: every route, body limits, CORS, and the small handlers that need no module.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use axum::{middleware, Json, Router};
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::auth::Account;
use super::dashboard;
use super::error::{ApiError, ServerError};
use super::ingest::{expected_sha, ingest};
use super::{runs, uploads, AppState};

const REQUEST_HEADERS: [&str; 9] = [
    "authorization",
    "content-type",
    "tus-resumable",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "tidelog-bundle-sha256",
    "upload-defer-length",
];

const EXPOSED_HEADERS: [&str; 9] = [
    "upload-offset",
    "upload-length",
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tidelog-rows-added",
    "tidelog-duplicates-skipped",
];

/// Builds the application for `state`, with CORS for `allow` (none: same-origin only).
pub fn router(state: AppState, allow: Option<AllowOrigin>) -> Router {
    let max_body = DefaultBodyLimit::max(state.max_body);
    let tus = Router::new()
        .route("/api/v1/uploads", post(uploads::create).options(uploads::options))
        .route(
            "/api/v1/uploads/{id}",
            head(uploads::head)
                .patch(uploads::patch)
                .options(uploads::options),
        )
        .layer(max_body)
        .layer(middleware::map_response(uploads::tus_resumable));
    let app = Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{name}", get(dashboard::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/bundles", post(post_bundle).layer(max_body))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::get))
        .route("/api/v1/runs/{id}/history", get(runs::history))
        .route("/api/v1/runs/{id}/system", get(runs::system))
        .route("/api/v1/runs/{id}/files", get(runs::files))
        .route("/api/v1/runs/{id}/files/{*path}", get(runs::file))
        .merge(tus)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state);
    let Some(allow) = allow else {
        return app;
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::DELETE,
        ])
        .allow_headers(REQUEST_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static));
    app.layer(cors)
}

/// The CORS origins of `--allow-origin`, checked so a typo fails at startup rather than
/// silently never matching: `*` allows any origin, others must be `scheme://host[:port]`
/// (a trailing slash is dropped, as browsers never send one). `None`: same-origin only.
pub fn allow_origin(origins: &[String]) -> Result<Option<AllowOrigin>, ServerError> {
    if origins.is_empty() {
        return Ok(None);
    }
    if origins.iter().any(|o| o.trim() == "*") {
        return Ok(Some(AllowOrigin::any()));
    }
    origins
        .iter()
        .map(|o| {
            let origin = o.trim().trim_end_matches('/');
            let host = origin
                .split_once("://")
                .filter(|(scheme, _)| !scheme.is_empty())
                .map(|(_, host)| host)
                .filter(|host| !host.is_empty() && !host.contains('/'));
            match (host, HeaderValue::from_str(origin)) {
                (Some(_), Ok(value)) => Ok(value),
                _ => Err(ServerError::Origin(o.clone())),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|list| Some(AllowOrigin::list(list)))
}

async fn whoami(Account(account): Account) -> Json<serde_json::Value> {
    Json(json!({ "account": account }))
}

/// `POST /api/v1/bundles`: 201 when new, 200 when this bundle was ingested before.
async fn post_bundle(
    State(state): State<AppState>,
    Account(account): Account,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(e.body_text()),
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let done = ingest(&state, &account, body, expected_sha(&headers)?).await?;
    let status = if done.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "rows_added": done.ack.rows_added,
        "duplicates_skipped": done.ack.duplicates_skipped,
        "next_seq": done.next_seq,
    });
    Ok((status, Json(body)).into_response())
}
