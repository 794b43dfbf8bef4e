//! One log line and one metrics sample per request, and a line per stored bundle. Lines go
//! through `log` with their fields as key-values, so `--log-format` (text or JSON) decides how
//! they look; the API key is never among them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::ingest::Ingested;
use super::metrics::{Metrics, UNMATCHED};
use super::AppState;

/// The log target of request lines.
pub const ACCESS: &str = "tidelog::access";
/// The log target of ingest lines.
pub const INGEST: &str = "tidelog::ingest";

/// What the handlers learn about a request that its log line reports: filled in by the
/// router once it matched and by the `Account` extractor once the key checked out.
#[derive(Default)]
pub struct Observed {
    route: OnceLock<String>,
    account: OnceLock<String>,
}

impl Observed {
    /// Records the account a request acts for.
    pub fn account(&self, account: &str) {
        let _ = self.account.set(account.to_owned());
    }
}

/// A request body that counts its bytes as the handler reads them.
struct Counted {
    inner: Body,
    seen: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                let n = data.len() as u64;
                self.seen.fetch_add(n, Ordering::Relaxed);
                self.metrics.received(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Tells the request's [`Observed`] which route matched (the pattern, not the path, so ids
/// stay out of metric labels). Runs as a route layer, after routing.
pub async fn record_route(matched: MatchedPath, req: Request, next: Next) -> Response {
    if let Some(seen) = req.extensions().get::<Arc<Observed>>() {
        let _ = seen.route.set(matched.as_str().to_owned());
    }
    next.run(req).await
}

/// Wraps every request: counts its body, then logs and counts the answer.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let seen = Arc::new(Observed::default());
    let bytes_in = Arc::new(AtomicU64::new(0));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(Arc::clone(&seen));
    let body = Body::new(Counted {
        inner: body,
        seen: Arc::clone(&bytes_in),
        metrics: Arc::clone(&state.metrics),
    });
    let resp = next.run(Request::from_parts(parts, body)).await;
    let took = start.elapsed();
    let status = resp.status().as_u16();
    let route = seen.route.get().map_or(UNMATCHED, String::as_str);
    state.metrics.request(method.as_str(), route, status, took);
    let bytes_out = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    log::info!(
        target: ACCESS,
        method = method.as_str(),
        route,
        status,
        duration_ms = took.as_secs_f64() * 1000.0,
        bytes_in = bytes_in.load(Ordering::Relaxed),
        bytes_out,
        account = seen.account.get().map(String::as_str);
        "request"
    );
    resp
}

/// Counts and logs a bundle that an ingest stored or found already stored.
pub fn ingested(state: &AppState, account: &str, run: &str, bundle: &str, done: &Ingested) {
    if done.new {
        state
            .metrics
            .ingested(done.ack.rows_added, done.ack.duplicates_skipped);
    }
    log::info!(
        target: INGEST,
        account,
        run,
        bundle,
        new = done.new,
        rows_added = done.ack.rows_added,
        duplicates_skipped = done.ack.duplicates_skipped,
        next_seq = done.next_seq;
        "ingest"
    );
}
