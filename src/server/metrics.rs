//! `GET /metrics`: counters and gauges in the Prometheus text format (version 0.0.4), written by
//! hand: a few atomics and one small map, where a metrics crate would bring a registry, its
//! macros and their dependencies for the same dozen lines of output.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Upper bounds (seconds) of the request duration histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The label of requests that matched no route, so unknown paths cannot grow the label set.
pub const UNMATCHED: &str = "unmatched";

/// Requests of one method and route.
#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Requests that took at most `BUCKETS[i]`, not cumulative (summed when written).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    seconds: f64,
}

/// What this process counted since it started.
pub struct Metrics {
    /// When the process started, Unix seconds.
    started_s: u64,
    /// By (method, route): the route is the router's pattern, never the raw path.
    requests: Mutex<BTreeMap<(String, String), RouteStats>>,
    body_bytes: AtomicU64,
    bundles: AtomicU64,
    rows_added: AtomicU64,
    rows_skipped: AtomicU64,
    connections: AtomicI64,
}

/// Holds one open connection in the gauge until dropped.
pub struct Connection<'a>(&'a Metrics);

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counters at zero, started now.
    pub fn new() -> Metrics {
        let started_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Metrics {
            started_s,
            requests: Mutex::default(),
            body_bytes: AtomicU64::new(0),
            bundles: AtomicU64::new(0),
            rows_added: AtomicU64::new(0),
            rows_skipped: AtomicU64::new(0),
            connections: AtomicI64::new(0),
        }
    }

    /// Counts one answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stats = map.entry((method.to_owned(), route.to_owned())).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            stats.buckets[i] += 1;
        }
        stats.count += 1;
        stats.seconds += secs;
    }

    /// Counts request body bytes as they are read.
    pub fn received(&self, n: u64) {
        self.body_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one newly stored bundle and its rows.
    pub fn ingested(&self, rows_added: u64, rows_skipped: u64) {
        self.bundles.fetch_add(1, Ordering::Relaxed);
        self.rows_added.fetch_add(rows_added, Ordering::Relaxed);
        self.rows_skipped.fetch_add(rows_skipped, Ordering::Relaxed);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection(&self) -> Connection<'_> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        Connection(self)
    }

    /// The request counters and the histogram, in the text format.
    fn write_requests(&self, out: &mut String) {
        let map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        head(
            out,
            "tidelog_http_requests_total",
            "counter",
            "Requests answered, by method, route and status.",
        );
        for ((method, route), stats) in map.iter() {
            for (status, n) in &stats.by_status {
                let labels = format!(
                    "method=\"{}\",route=\"{}\",status=\"{status}\"",
                    esc(method),
                    esc(route)
                );
                let _ = writeln!(out, "tidelog_http_requests_total{{{labels}}} {n}");
            }
        }
        let name = "tidelog_http_request_duration_seconds";
        head(
            out,
            name,
            "histogram",
            "Time from a request's arrival to its response headers.",
        );
        for ((method, route), stats) in map.iter() {
            let labels = format!("method=\"{}\",route=\"{}\"", esc(method), esc(route));
            let mut below = 0;
            for (bound, n) in BUCKETS.iter().zip(stats.buckets) {
                below += n;
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {below}");
            }
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", stats.count);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", stats.seconds);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", stats.count);
        }
    }
}

/// A label value with `\`, `"` and newlines escaped, as the text format asks.
fn esc(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `GET /metrics`: this process's figures, plus the unfinished uploads of the whole database.
/// No key: bind the server privately or keep `/metrics` from the public side of the proxy.
pub async fn get(State(state): State<AppState>) -> Result<Response, ApiError> {
    let uploads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads")
        .fetch_one(&state.db)
        .await?;
    let m = &state.metrics;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    head(
        &mut out,
        "tidelog_build_info",
        "gauge",
        "The running tidelog's version.",
    );
    let _ = writeln!(
        out,
        "tidelog_build_info{{version=\"{}\"}} 1",
        esc(env!("CARGO_PKG_VERSION"))
    );
    m.write_requests(&mut out);
    let in_use = state
        .max_ingests
        .saturating_sub(state.ingests.available_permits());
    let db = &state.db;
    let samples: [(&str, &str, &str, String); 11] = [
        (
            "tidelog_http_request_body_bytes_total",
            "counter",
            "Request body bytes received.",
            load(&m.body_bytes).to_string(),
        ),
        (
            "tidelog_ingested_bundles_total",
            "counter",
            "Bundles stored (repeats of a stored bundle not counted).",
            load(&m.bundles).to_string(),
        ),
        (
            "tidelog_ingested_rows_total",
            "counter",
            "History and system rows stored.",
            load(&m.rows_added).to_string(),
        ),
        (
            "tidelog_duplicate_rows_total",
            "counter",
            "Rows of stored bundles that the server already had.",
            load(&m.rows_skipped).to_string(),
        ),
        (
            "tidelog_ingest_slots",
            "gauge",
            "Bundles this process may ingest at once.",
            state.max_ingests.to_string(),
        ),
        (
            "tidelog_ingest_slots_in_use",
            "gauge",
            "Bundles being ingested now.",
            in_use.to_string(),
        ),
        (
            "tidelog_tus_uploads",
            "gauge",
            "Unfinished resumable uploads in the database.",
            uploads.to_string(),
        ),
        (
            "tidelog_http_connections_open",
            "gauge",
            "Client connections open now.",
            m.connections.load(Ordering::Relaxed).to_string(),
        ),
        (
            "tidelog_db_pool_connections",
            "gauge",
            "Database connections in the pool.",
            db.size().to_string(),
        ),
        (
            "tidelog_db_pool_idle",
            "gauge",
            "Database connections in the pool not in use.",
            db.num_idle().to_string(),
        ),
        (
            "tidelog_process_start_time_seconds",
            "gauge",
            "When this process started, Unix seconds.",
            m.started_s.to_string(),
        ),
    ];
    for (name, kind, help, value) in samples {
        head(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}
