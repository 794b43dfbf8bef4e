//! The tidelog server: axum routes over an SQL store (CONTRACT §7).

mod access_log;
mod auth;
mod background;
mod cache;
mod dashboard;
mod db;
mod delete;
mod error;
mod export;
mod ingest;
mod lease;
mod listen;
mod m4;
mod metrics;
mod parts;
mod quarantine;
mod routes;
mod rows;
mod runs;
mod segments;
mod staged;
mod store;
mod streamed;
mod uploads;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::core::bundle::Limits;
use store::Store;

pub use auth::KeyInfo;
pub use delete::Deleted;
pub use error::ServerError;

/// How `tidelog serve` was asked to run.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Listen address.
    pub addr: SocketAddr,
    /// Data folder (the SQLite file and the default object store).
    pub data: PathBuf,
    /// Database URL overriding SQLite under `data`.
    pub database: Option<String>,
    /// Object store URL (`file:///DIR`, `s3://BUCKET/PREFIX`) overriding `<data>/store`.
    pub store: Option<String>,
    /// CORS origins.
    pub allow_origins: Vec<String>,
    /// Bundle unpack limits.
    pub limits: Limits,
    /// Largest request body.
    pub max_body: usize,
    /// How long an unfinished tus upload is kept (tus `expiration`): abandoned ones would
    /// otherwise fill the disk.
    pub upload_ttl: Duration,
    /// Connection limits: idle and slow clients are closed, and their number is capped.
    pub connections: Connections,
    /// Bundles decoded and stored at once; more get 503 with `Retry-After`. Each may hold a
    /// request body, its unpacked entries and its decode budget in memory.
    pub max_ingests: usize,
}

/// How the server treats connections, so idle or slow ones cannot exhaust it.
#[derive(Clone, Copy, Debug)]
pub struct Connections {
    /// Longest wait for a request's headers, also between requests on a kept-alive connection.
    pub header_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max: usize,
    /// At shutdown, how long requests in flight may take to finish before the process exits.
    pub shutdown_grace: Duration,
}

/// What every handler shares.
struct Shared {
    db: AnyPool,
    /// Immutable objects (history segments, blobs, upload parts, quarantine): what a replica
    /// must find wherever it was written.
    store: Store,
    /// Held by the compaction running in this process, so compactions take turns.
    compacting: tokio::sync::Mutex<()>,
    /// Which background work this replica may do now.
    leases: lease::Leases,
    /// Unfinished uploads older than this are removed.
    upload_ttl_ms: i64,
    /// The database is SQLite.
    sqlite: bool,
    /// Notified after each ingest commits, to checkpoint SQLite's WAL.
    written: Arc<Notify>,
    limits: Limits,
    max_body: usize,
    /// Longest wait for the next piece of a request body.
    body_timeout: Duration,
    /// Ingest slots: a bundle is read, decoded and stored only while it holds one.
    ingests: Semaphore,
    /// How many there are.
    max_ingests: usize,
    /// What `GET /metrics` reports.
    metrics: Arc<metrics::Metrics>,
}

impl Shared {
    /// An ingest slot now, or 503 with `Retry-After` when all are taken.
    fn try_ingest_slot(&self) -> Result<SemaphorePermit<'_>, error::ApiError> {
        self.ingests
            .try_acquire()
            .map_err(|_| error::ApiError::Busy(format!("all {} ingest slots are in use", self.max_ingests)))
    }

    /// An ingest slot, waiting for one: for bundles already on disk, which hold no memory
    /// while they wait.
    async fn ingest_slot(&self) -> Result<SemaphorePermit<'_>, error::ApiError> {
        self.ingests
            .acquire()
            .await
            .map_err(|_| error::ApiError::Busy("the server is stopping".into()))
    }
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
    let store = Store::open(opts.store.as_deref(), &opts.data).await?;
    log::info!("object store: {}", store.url());
    store.adopt_old_blobs(&opts.data).await?;
    let state = AppState(Arc::new(Shared {
        db: pool,
        store,
        compacting: tokio::sync::Mutex::new(()),
        leases: lease::Leases::new()?,
        sqlite,
        written,
        limits: opts.limits,
        max_body: opts.max_body,
        body_timeout: opts.connections.body_timeout,
        ingests: Semaphore::new(opts.max_ingests.max(1)),
        max_ingests: opts.max_ingests.max(1),
        metrics: Arc::new(metrics::Metrics::new()),
        upload_ttl_ms: i64::try_from(opts.upload_ttl.as_millis()).unwrap_or(i64::MAX),
    }));
    tokio::spawn(staged::heartbeat(state.clone()));
    segments::migrate::migrate(segments::Ctx::of(&state)).await?;
    staged::recover(&state).await?;
    tokio::spawn(staged::sweeper(state.clone()));
    tokio::spawn(segments::compact::compactor(state.clone()));
    let metrics = Arc::clone(&state.metrics);
    let db = state.db.clone();
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
    if listen::serve(listener, app, opts.connections, &metrics, shutdown()).await {
        // Waits for every pooled connection, so only once no request holds one.
        db.close().await;
    }
    Ok(())
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

/// The id `list-keys` shows for `key`: the first hex digits of its hash.
pub fn key_id(key: &str) -> String {
    auth::key_id(&crate::core::bundle::sha256_hex(key.as_bytes()))
}

/// Every API key of the server's database, working and revoked; never the keys themselves.
pub async fn list_keys(data: &Path, database: Option<&str>) -> Result<Vec<KeyInfo>, ServerError> {
    let pool = db::open(data, database).await?;
    let keys = auth::list_keys(&pool).await;
    pool.close().await;
    keys
}

/// Revokes the key with id `id` (or the key `id` itself): it is refused from the next request on.
pub async fn revoke_key(data: &Path, database: Option<&str>, id: &str) -> Result<KeyInfo, ServerError> {
    let pool = db::open(data, database).await?;
    let key = auth::revoke_key(&pool, id).await;
    pool.close().await;
    key
}

/// Deletes a run of any account with its history, files and the blobs only it referred to.
pub async fn delete_run(
    data: &Path,
    database: Option<&str>,
    store: Option<&str>,
    run_id: &str,
) -> Result<Deleted, ServerError> {
    let pool = db::open(data, database).await?;
    let store = Store::open(store, data).await?;
    let done = delete::delete_run(&pool, &store, None, run_id).await;
    pool.close().await;
    done.map_err(|e| match e {
        error::ApiError::Internal(e) => e,
        other => ServerError::Admin(other.to_string()),
    })
}
