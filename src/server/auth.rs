//! API keys: random, shown once, stored only as their SHA-256; the `Account` extractor.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sqlx::AnyPool;

use super::access_log::Observed;
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
        if let Some(account) = account {
            if let Some(seen) = parts.extensions.get::<Arc<Observed>>() {
                seen.account(&account);
            }
            return Ok(Account(account));
        }
        let revoked: Option<i64> = sqlx::query_scalar("SELECT revoked FROM revoked_keys WHERE hash = $1")
            .bind(sha256_hex(key.as_bytes()))
            .fetch_optional(&state.db)
            .await?;
        Err(ApiError::Unauthorized(if revoked.is_some() {
            "this API key was revoked; ask the server's administrator for a new one"
        } else {
            "invalid API key"
        }))
    }
}

/// Hex digits of a key's hash that name it in `list-keys` and `revoke-key`: enough to tell
/// keys apart, while the key itself is never stored.
const KEY_ID_LEN: usize = 12;

/// Fewest hex digits `revoke-key` accepts, so a slip cannot match many keys.
const MIN_KEY_ID_LEN: usize = 8;

/// The id of the key whose hash is `hash`.
pub fn key_id(hash: &str) -> String {
    hash.chars().take(KEY_ID_LEN).collect()
}

/// A key as `tidelog admin list-keys` shows it: never the key, only its id.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The first hex digits of the key's hash.
    pub id: String,
    /// The account it acts for.
    pub account: String,
    /// When it was created, Unix ms.
    pub created_ms: i64,
    /// When it was revoked, Unix ms; `None` while it works.
    pub revoked_ms: Option<i64>,
}

/// Every key, working and revoked, by account then age.
pub async fn list_keys(db: &AnyPool) -> Result<Vec<KeyInfo>, ServerError> {
    let live: Vec<(String, String, i64)> = sqlx::query_as("SELECT hash, account, created FROM api_keys")
        .fetch_all(db)
        .await?;
    let gone: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT hash, account, created, revoked FROM revoked_keys")
            .fetch_all(db)
            .await?;
    let info = |hash: &str, account, created_ms, revoked_ms| KeyInfo {
        id: key_id(hash),
        account,
        created_ms,
        revoked_ms,
    };
    let mut keys: Vec<KeyInfo> = live
        .into_iter()
        .map(|(h, a, c)| info(&h, a, c, None))
        .chain(gone.into_iter().map(|(h, a, c, r)| info(&h, a, c, Some(r))))
        .collect();
    keys.sort_by(|a, b| (&a.account, a.created_ms, &a.id).cmp(&(&b.account, b.created_ms, &b.id)));
    Ok(keys)
}

/// Revokes the one working key whose id starts with `id` (at least 8 hex digits), or the key
/// `id` itself when given whole (`tlk_...`). It stops working at once; the account's runs stay.
pub async fn revoke_key(db: &AnyPool, id: &str) -> Result<KeyInfo, ServerError> {
    let id = id.trim();
    let prefix = if id.starts_with("tlk_") {
        sha256_hex(id.as_bytes())
    } else {
        let hex = id.to_ascii_lowercase();
        if hex.len() < MIN_KEY_ID_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServerError::Admin(format!(
                "{id:?} is not a key id: give the id `list-keys` shows (at least {MIN_KEY_ID_LEN} hex digits)"
            )));
        }
        hex
    };
    let pattern = format!("{prefix}%");
    let mut tx = db.begin().await?;
    let found: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT hash, account, created FROM api_keys WHERE hash LIKE $1")
            .bind(&pattern)
            .fetch_all(&mut *tx)
            .await?;
    let (hash, account, created_ms) = match found.as_slice() {
        [one] => one.clone(),
        [] => {
            let revoked: Option<String> =
                sqlx::query_scalar("SELECT hash FROM revoked_keys WHERE hash LIKE $1")
                    .bind(&pattern)
                    .fetch_optional(&mut *tx)
                    .await?;
            let why = if revoked.is_some() {
                "is already revoked"
            } else {
                "matches no key"
            };
            return Err(ServerError::Admin(format!("key id {id:?} {why}")));
        }
        many => {
            return Err(ServerError::Admin(format!(
                "key id {id:?} matches {} keys; give more of its digits",
                many.len()
            )))
        }
    };
    let now = now_ms();
    sqlx::query("DELETE FROM api_keys WHERE hash = $1")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO revoked_keys (hash, account, created, revoked) VALUES ($1, $2, $3, $4)")
        .bind(&hash)
        .bind(&account)
        .bind(created_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(KeyInfo {
        id: key_id(&hash),
        account,
        created_ms,
        revoked_ms: Some(now),
    })
}
