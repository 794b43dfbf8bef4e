//! Failures: [`ServerError`] for starting and storing, [`ApiError`] for what a request is told.

use std::net::SocketAddr;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::bundle::BundleError;

/// Why the server could not start, store or read something.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The database could not be opened (a password in the URL is masked).
    #[error("cannot open database {url}: {source}")]
    Open {
        /// The database URL.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The database's migrations could not be applied (a password in the URL is masked).
    #[error("cannot migrate database {url}: {source}")]
    Migrate {
        /// The database URL.
        url: String,
        /// The migrator's error: a failed statement, or a database changed by another version.
        source: sqlx::migrate::MigrateError,
    },
    /// A file under the data folder could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configured CORS origin is neither `*` nor `scheme://host[:port]`.
    #[error("invalid --allow-origin {0:?}: expected `*` or an origin like https://app.example.com")]
    Origin(String),
    /// An account name that is empty or has control characters.
    #[error("invalid account name {0:?}")]
    Account(String),
    /// The OS could not provide random bytes for a key or an id.
    #[error("no randomness available: {0}")]
    Random(getrandom::Error),
    /// Stored data that does not parse (a corrupt or foreign database).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The Parquet writer failed on a run's history.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The object store (`--store`) refused or failed.
    #[error("object store: {what}: {source}")]
    Store {
        /// What was being done, and in which store.
        what: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// A `--store` URL that names no store tidelog can use.
    #[error("invalid --store {url:?}: {why}")]
    StoreUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// An admin command named a key or run that it cannot act on.
    #[error("{0}")]
    Admin(String),
    /// A blocking task panicked.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ServerError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl std::fmt::Display, source: std::io::Error) -> Self {
        ServerError::Io {
            what: what.to_string(),
            source,
        }
    }

    /// True when the disk or the database is out of space: the client is told 507, not 500.
    pub fn is_full(&self) -> bool {
        match self {
            ServerError::Io { source, .. } | ServerError::Bind { source, .. } => any_full(source),
            ServerError::Db(e) | ServerError::Open { source: e, .. } => db_full(e),
            ServerError::Store { source, .. } => any_full(source),
            ServerError::Migrate {
                source: sqlx::migrate::MigrateError::Execute(e),
                ..
            } => db_full(e),
            _ => false,
        }
    }

    /// True when the database refused text it cannot store: on PostgreSQL a NUL character
    /// (22021) or one outside the database's encoding (22P05). The input's fault: 400.
    fn is_unstorable_text(&self) -> bool {
        match self {
            ServerError::Db(sqlx::Error::Database(e)) => {
                matches!(code(e.as_ref()), Code::Postgres("22021" | "22P05"))
            }
            _ => false,
        }
    }

    /// True when the database is overloaded, locked, unreachable for a moment or asked this
    /// transaction to retry: worth a retry, so the client is told 503 with `Retry-After`.
    fn is_busy(&self) -> bool {
        match self {
            ServerError::Db(e) => db_busy(e),
            _ => false,
        }
    }
}

/// ENOSPC or a quota: what a full file system answers a write.
fn io_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// True when `e` or an error it wraps is [`io_full`]: a file store's write error comes back
/// wrapped by the object store, and again by a streaming writer.
fn any_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut at = Some(e);
    while let Some(e) = at {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io_full(io) {
                return true;
            }
            // An io::Error's `source` skips the error it wraps; look at that one too.
            if let Some(inner) = io.get_ref() {
                if any_full(inner) {
                    return true;
                }
            }
        }
        at = e.source();
    }
    false
}

/// A database's own error code, by backend: SQLite's result code, PostgreSQL's SQLSTATE.
enum Code<'a> {
    Sqlite(u32),
    Postgres(&'a str),
    Other,
}

fn code(e: &dyn sqlx::error::DatabaseError) -> Code<'_> {
    if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Code::Postgres(pg.code());
    }
    if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        if let Some(c) = e.code().and_then(|c| c.parse::<u32>().ok()) {
            return Code::Sqlite(c);
        }
    }
    Code::Other
}

/// SQLITE_FULL ("database or disk is full"), PostgreSQL's `disk_full` (53100), or an I/O
/// error that is [`io_full`].
fn db_full(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(e) => io_full(e),
        sqlx::Error::Database(e) => match code(e.as_ref()) {
            // SQLITE_FULL and its extended codes end in 13 in their low byte.
            Code::Sqlite(c) => c & 0xff == 13,
            Code::Postgres(c) => c == "53100",
            Code::Other => e.message().contains("database or disk is full"),
        },
        _ => false,
    }
}

/// SQLITE_BUSY; on PostgreSQL a serialization failure or deadlock (class 40), lock timeout
/// (55P03), lack of memory or connections (53200, 53300, 53400), a server starting or stopping
/// (57P01..57P03) or a lost connection (class 08); an exhausted pool; a refused or reset
/// connection to the database.
fn db_busy(e: &sqlx::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, TimedOut};
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Io(e) => matches!(
            e.kind(),
            ConnectionRefused | ConnectionReset | ConnectionAborted | TimedOut
        ),
        sqlx::Error::Database(e) => match code(e.as_ref()) {
            // SQLITE_BUSY and its extended codes end in 5 in their low byte.
            Code::Sqlite(c) => c & 0xff == 5,
            Code::Postgres(c) => {
                c.starts_with("40")
                    || c.starts_with("08")
                    || ["55P03", "53200", "53300", "53400", "57P01", "57P02", "57P03"].contains(&c)
            }
            Code::Other => false,
        },
        _ => false,
    }
}

/// `Retry-After` of a 503: the seconds an ingest slot usually takes to free up.
const RETRY_AFTER_SECS: &str = "1";

/// What a request is answered when it fails; each variant has one status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or an unknown one.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The run belongs to another account.
    #[error("run {0:?} belongs to another account")]
    Forbidden(String),
    /// Unknown run, file, upload or route.
    #[error("{0}")]
    NotFound(String),
    /// A malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// A bundle of a run that was deleted from the server (410): it is not recreated.
    #[error("{0}")]
    Gone(String),
    /// A bundle that failed its checks.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle starts after records the server does not have.
    #[error("gap: server has records up to {next_seq}")]
    Gap {
        /// The first record the server lacks.
        next_seq: u64,
    },
    /// A tus offset that is not the upload's.
    #[error("{0}")]
    Conflict(String),
    /// A body or upload larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// A PATCH without the tus content type.
    #[error("Content-Type must be application/offset+octet-stream")]
    UnsupportedMediaType,
    /// A tus chunk whose `Upload-Checksum` does not match (tus status 460).
    #[error("chunk checksum mismatch")]
    ChunkChecksum,
    /// A request body that stopped arriving for longer than the body timeout (408).
    #[error("no request body bytes for {0:?}; the request was abandoned")]
    Timeout(std::time::Duration),
    /// The server is at its limit of concurrent work; retry after a moment (503).
    #[error("server busy: {0}; retry shortly")]
    Busy(String),
    /// Another request is writing or ingesting this upload.
    #[error("upload is busy: another request is writing or ingesting it; retry shortly")]
    Locked,
    /// A `Tus-Resumable` version other than 1.0.0.
    #[error("unsupported Tus-Resumable version; this server speaks 1.0.0")]
    TusVersion,
    /// Anything on the server's side.
    #[error(transparent)]
    Internal(#[from] ServerError),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Bundle(BundleError::TooLarge { .. } | BundleError::OverBudget { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Bundle(_) => StatusCode::BAD_REQUEST,
            ApiError::Gap { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ChunkChecksum => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::Locked => StatusCode::LOCKED,
            ApiError::TusVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(e) if e.is_full() => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(e) if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(e) if e.is_unstorable_text() => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(e) if e.is_full() => {
                log::error!("tidelog server: out of space: {e}");
                json!({ "error": format!("insufficient storage: the server's disk or database is full ({e})") })
            }
            ApiError::Internal(e) if e.is_busy() => {
                log::warn!("tidelog server: overloaded: {e}");
                json!({ "error": "server busy: the database is locked, overloaded or briefly unreachable; retry shortly" })
            }
            ApiError::Internal(e) if e.is_unstorable_text() => {
                json!({ "error": format!("text the database cannot store, such as a NUL character: {e}") })
            }
            ApiError::Internal(e) => {
                log::error!("tidelog server: {e}");
                json!({ "error": "internal server error" })
            }
            ApiError::Gap { next_seq } => json!({ "error": self.to_string(), "next_seq": next_seq }),
            _ => json!({ "error": self.to_string() }),
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        if matches!(self, ApiError::TusVersion) {
            resp.headers_mut()
                .insert("tus-version", HeaderValue::from_static("1.0.0"));
        }
        resp
    }
}

#[cfg(test)]
mod tests;
