//! The tidelog server: axum routes over an SQL store (CONTRACT §7).

mod auth;
mod dashboard;
mod db;
mod disk;
mod error;
mod ingest;
mod routes;
mod runs;
mod uploads;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::Notify;

use crate::core::bundle::Limits;
use disk::Disk;

pub use error::ServerError;

/// How `tidelog serve` was asked to run.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Listen address.
    pub addr: SocketAddr,
    /// Data folder (SQLite file, uploads, blobs).
    pub data: PathBuf,
    /// Database URL overriding SQLite under `data`.
    pub database: Option<String>,
    /// CORS origins.
    pub allow_origins: Vec<String>,
    /// Bundle unpack limits.
    pub limits: Limits,
    /// Largest request body.
    pub max_body: usize,
    /// How long an unfinished tus upload is kept (tus `expiration`): abandoned ones would
    /// otherwise fill the disk.
    pub upload_ttl: std::time::Duration,
}

/// What every handler shares.
struct Shared {
    db: AnyPool,
    /// Unfinished uploads older than this are removed.
    upload_ttl_ms: i64,
    /// The database is SQLite.
    sqlite: bool,
    /// Notified after each ingest commits, to checkpoint SQLite's WAL.
    written: Arc<Notify>,
    disk: Disk,
    limits: Limits,
    max_body: usize,
    /// Serializes ingests, so concurrent bundles of a run meet one high-water mark.
    ingest_lock: tokio::sync::Mutex<()>,
    /// Upload ids a PATCH is writing.
    busy: std::sync::Mutex<HashSet<String>>,
}

/// Cheap handle on the shared state, given to every handler.
#[derive(Clone)]
struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Runs the server until Ctrl-C or SIGTERM, after printing the bound address on stdout.
pub async fn serve(opts: ServeOptions) -> Result<(), ServerError> {
    let cors = routes::allow_origin(&opts.allow_origins)?;
    let pool = db::open(&opts.data, opts.database.as_deref()).await?;
    let sqlite = db::is_sqlite(&pool);
    let written = Arc::new(Notify::new());
    if sqlite {
        tokio::spawn(db::checkpointer(pool.clone(), written.clone()));
    }
    let state = AppState(Arc::new(Shared {
        db: pool,
        sqlite,
        written,
        disk: Disk::create(&opts.data)?,
        limits: opts.limits,
        max_body: opts.max_body,
        ingest_lock: tokio::sync::Mutex::new(()),
        busy: std::sync::Mutex::new(HashSet::new()),
        upload_ttl_ms: i64::try_from(opts.upload_ttl.as_millis()).unwrap_or(i64::MAX),
    }));
    uploads::recover(&state).await?;
    tokio::spawn(uploads::sweeper(state.clone()));
    let app = routes::router(state, cors);
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: opts.addr,
            source,
        })?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServerError::io("reading the bound address", e))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "tidelog server listening on http://{bound}")
        .and_then(|()| out.flush())
        .map_err(|e| ServerError::io("writing to stdout", e))?;
    drop(out);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| ServerError::io("serving", e))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Creates an API key for `account` in the server's database; returns it (only its hash is kept).
pub async fn create_key(data: &Path, database: Option<&str>, account: &str) -> Result<String, ServerError> {
    let pool = db::open(data, database).await?;
    let key = auth::insert_key(&pool, account).await;
    pool.close().await;
    key
}
