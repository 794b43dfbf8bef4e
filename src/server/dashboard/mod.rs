//! The dashboard served at `/`: one HTML page, one ES module and a style sheet over the JSON
//! API, with uPlot vendored in `vendor/` (MIT, see `vendor/uPlot.LICENSE`). Everything is
//! embedded in the binary: no CDN, no npm at run time.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The page may load only its own assets; images and audio come from `blob:` URLs made from
/// authenticated fetches; uPlot sizes its elements through inline styles.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; \
                   style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// The page and the files under `/assets/`: name, bytes, content type.
const FILES: [(&str, &str, &str); 5] = [
    (
        "index.html",
        include_str!("index.html"),
        "text/html; charset=utf-8",
    ),
    ("app.js", include_str!("app.js"), JS),
    ("app.css", include_str!("app.css"), CSS),
    ("uPlot.iife.min.js", include_str!("vendor/uPlot.iife.min.js"), JS),
    ("uPlot.min.css", include_str!("vendor/uPlot.min.css"), CSS),
];

/// A strong ETag per file of [`FILES`], from its content, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, body, _)| {
                let digest = Sha256::digest(body.as_bytes());
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// File `index` of [`FILES`]; browsers revalidate (`no-cache`) and get 304 while the ETag holds,
/// so a new binary's dashboard is picked up at once.
fn serve(index: usize, headers: &HeaderMap) -> Response {
    let (_, body, kind) = FILES[index];
    let etag = etags()[index].as_str();
    let cache = [(CACHE_CONTROL, "no-cache"), (ETAG, etag)];
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(CONTENT_TYPE, kind), (CONTENT_SECURITY_POLICY, CSP)],
        body,
    )
        .into_response()
}

/// `GET /`: the dashboard page.
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /assets/{name}`: the dashboard's script and style, and the vendored uPlot.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match FILES.iter().skip(1).position(|(n, _, _)| *n == name) {
        Some(i) => serve(i + 1, &headers),
        None => ApiError::NotFound(format!("no asset {name:?}")).into_response(),
    }
}
