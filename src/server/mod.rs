//! The tidelog server: axum routes over an SQL store (CONTRACT §7).

mod auth;
mod dashboard;
mod db;
mod disk;
mod error;
mod export;
mod ingest;
mod lease;
mod listen;
mod m4;
mod quarantine;
mod routes;
mod rows;
mod runs;
mod segments;
mod staged;
mod store;
mod uploads;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

use crate::core::bundle::Limits;
use disk::Disk;
use quarantine::Quarantine;
use store::Store;

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
}

/// What every handler shares.
struct Shared {
    db: AnyPool,
    /// Immutable objects: what a replica must find wherever it was written.
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
    disk: Disk,
    /// Marks of ingests in progress and the quarantine folder.
    quarantine: Quarantine,
    limits: Limits,
    max_body: usize,
    /// Longest wait for the next piece of a request body.
    body_timeout: Duration,
    /// Ingest slots: a bundle is read, decoded and stored only while it holds one.
    ingests: Semaphore,
    /// How many there are.
    max_ingests: usize,
    /// Upload ids a PATCH is writing.
    busy: std::sync::Mutex<HashSet<String>>,
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
    let disk = Disk::create(&opts.data)?;
    let store = Store::open(opts.store.as_deref(), &opts.data).await?;
    log::info!("object store: {}", store.url());
    let state = AppState(Arc::new(Shared {
        db: pool,
        store,
        compacting: tokio::sync::Mutex::new(()),
        leases: lease::Leases::new()?,
        sqlite,
        written,
        quarantine: Quarantine::create(&opts.data, &disk)?,
        disk,
        limits: opts.limits,
        max_body: opts.max_body,
        body_timeout: opts.connections.body_timeout,
        ingests: Semaphore::new(opts.max_ingests.max(1)),
        max_ingests: opts.max_ingests.max(1),
        busy: std::sync::Mutex::new(HashSet::new()),
        upload_ttl_ms: i64::try_from(opts.upload_ttl.as_millis()).unwrap_or(i64::MAX),
    }));
    segments::migrate::migrate(segments::Ctx::of(&state)).await?;
    staged::recover(&state).await?;
    tokio::spawn(staged::sweeper(state.clone()));
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
    listen::serve(listener, app, opts.connections, shutdown()).await;
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
