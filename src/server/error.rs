//! Failures: [`ServerError`] for starting and storing, [`ApiError`] for what a request is told.

use std::net::SocketAddr;

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
}

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
            ApiError::Bundle(BundleError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Bundle(_) => StatusCode::BAD_REQUEST,
            ApiError::Gap { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::ChunkChecksum => StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::Locked => StatusCode::LOCKED,
            ApiError::TusVersion => StatusCode::PRECONDITION_FAILED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Internal(e) => {
                log::error!("tidelog server: {e}");
                json!({ "error": "internal server error" })
            }
            ApiError::Gap { next_seq } => json!({ "error": self.to_string(), "next_seq": next_seq }),
            _ => json!({ "error": self.to_string() }),
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, ApiError::TusVersion) {
            resp.headers_mut()
                .insert("tus-version", HeaderValue::from_static("1.0.0"));
        }
        resp
    }
}
