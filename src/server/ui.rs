//! The dashboard's static files, embedded in the binary (no CDN, no npm at run time).

use axum::extract::Path;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// `GET /`: the dashboard page.
pub async fn index() -> Html<&'static str> {
    Html(include_str!("ui/index.html"))
}

/// `GET /assets/{name}`: the dashboard's script, style and the vendored uPlot.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match name.as_str() {
        "app.js" => (include_str!("ui/app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_str!("ui/app.css"), "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (
            include_str!("ui/vendor/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (include_str!("ui/vendor/uPlot.min.css"), "text/css; charset=utf-8"),
        _ => return ApiError::NotFound(format!("no asset {name:?}")).into_response(),
    };
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}
