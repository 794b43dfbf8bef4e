//! API keys: random, shown once, stored only as their SHA-256; the `Account` extractor.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sqlx::AnyPool;

use super::db::now_ms;
use super::error::{ApiError, ServerError};
use super::AppState;
use crate::core::bundle::sha256_hex;

/// `n` random bytes as lowercase hex: key material and upload ids.
pub fn random_hex(n: usize) -> Result<String, ServerError> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(ServerError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Creates a key for `account` and returns it; only its hash is stored.
pub async fn insert_key(db: &AnyPool, account: &str) -> Result<String, ServerError> {
    if account.trim().is_empty() || account.chars().any(char::is_control) {
        return Err(ServerError::Account(account.to_owned()));
    }
    let key = format!("tlk_{}", random_hex(20)?);
    sqlx::query("INSERT INTO api_keys (hash, account, created) VALUES ($1, $2, $3)")
        .bind(sha256_hex(key.as_bytes()))
        .bind(account)
        .bind(now_ms())
        .execute(db)
        .await?;
    Ok(key)
}

/// The account a request's bearer key acts for; extracting it is the authentication. The
/// scheme is case-insensitive (RFC 9110 §11.1), so `bearer KEY` works too.
pub struct Account(pub String);

impl FromRequestParts<AppState> for Account {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|k| !k.is_empty())
            .ok_or(ApiError::Unauthorized(
                "missing API key (Authorization: Bearer <key>)",
            ))?;
        let account: Option<String> = sqlx::query_scalar("SELECT account FROM api_keys WHERE hash = $1")
            .bind(sha256_hex(key.as_bytes()))
            .fetch_optional(&state.db)
            .await?;
        account
            .map(Account)
            .ok_or(ApiError::Unauthorized("invalid API key"))
    }
}
