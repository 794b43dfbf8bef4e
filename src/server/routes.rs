//! The router: every route, body limits, CORS, and the small handlers that need no module.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use axum::{middleware, Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::auth::Account;
use super::dashboard;
use super::error::{ApiError, ServerError};
use super::ingest::{expected_sha, ingest, Source};
use super::{access_log, delete, export, metrics, runs, uploads, AppState};

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

const EXPOSED_HEADERS: [&str; 10] = [
    "upload-offset",
    "upload-length",
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tidelog-rows-added",
    "tidelog-duplicates-skipped",
    "retry-after",
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
        .route("/metrics", get(metrics::get))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/bundles", post(post_bundle))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::get).delete(delete::delete))
        .route("/api/v1/runs/{id}/history", get(runs::history))
        .route("/api/v1/runs/{id}/history.parquet", get(export::history_parquet))
        .route("/api/v1/runs/{id}/system", get(runs::system))
        .route("/api/v1/runs/{id}/files", get(runs::files))
        .route("/api/v1/runs/{id}/files/{*path}", get(runs::file))
        .merge(tus)
        .route_layer(middleware::from_fn(access_log::record_route))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::map_response(nosniff))
        .layer(middleware::from_fn(close_after_refused_body))
        .with_state(state.clone());
    let app = match allow {
        Some(allow) => app.layer(cors(allow)),
        None => app,
    };
    // Outermost, so every answer is logged and counted, CORS preflights included.
    app.layer(middleware::from_fn_with_state(state, access_log::observe))
}

/// CORS for the origins `allow`: the API's methods, the tus headers both ways.
fn cors(allow: AllowOrigin) -> CorsLayer {
    CorsLayer::new()
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
        .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
}

/// A request refused before its body was read leaves that body on the connection, which the
/// server then closes: `Connection: close` on the refusal keeps a client from sending its next
/// request into a connection that is going away.
async fn close_after_refused_body(req: Request, next: Next) -> Response {
    let h = req.headers();
    let has_body = h.contains_key(TRANSFER_ENCODING)
        || h.get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let mut resp = next.run(req).await;
    if has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Adds `X-Content-Type-Options: nosniff` to every response: a browser takes each one as
/// the type it says, never as a script or a page it guessed.
async fn nosniff(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
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

/// Reads a request body of at most `limit` bytes, each piece within `idle` of the last.
async fn read_body(body: Body, limit: usize, idle: Duration) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("request body over the {limit}-byte limit"));
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => return Err(ApiError::Timeout(idle)),
            Ok(None) => return Ok(Bytes::from(buf)),
            Ok(Some(Err(e))) => return Err(ApiError::BadRequest(format!("reading the body: {e}"))),
            Ok(Some(Ok(piece))) => {
                if buf.len() + piece.len() > limit {
                    return Err(too_large());
                }
                buf.extend_from_slice(&piece);
            }
        }
    }
}

/// `POST /api/v1/bundles`: 201 when new, 200 when this bundle was ingested before. The body
/// is read only once an ingest slot is free (503 and `Retry-After` otherwise), so the memory
/// bundles take is bounded by the number of slots.
async fn post_bundle(
    State(state): State<AppState>,
    Account(account): Account,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let expected = expected_sha(&headers)?;
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.max_body as u64) {
        return Err(ApiError::TooLarge(format!(
            "request body over the {}-byte limit",
            state.max_body
        )));
    }
    let _slot = state.try_ingest_slot()?;
    let body = read_body(body, state.max_body, state.body_timeout).await?;
    let done = ingest(&state, &account, Source::Bytes(body), expected).await?;
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
