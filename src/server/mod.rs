//! The tidelog server: axum routes over an SQL store (CONTRACT §7).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::core::bundle::Limits;

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
}

/// Server failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Placeholder until the server lands.
    #[error("not built yet")]
    Todo,
}

/// Runs the server until Ctrl-C.
pub async fn serve(_opts: ServeOptions) -> Result<(), ServerError> {
    Err(ServerError::Todo)
}

/// Creates an API key for `account`.
pub async fn create_key(
    _data: &Path,
    _database: Option<&str>,
    _account: &str,
) -> Result<String, ServerError> {
    Err(ServerError::Todo)
}
