//! Staged tus uploads: the stored upload and its staging file, the mark of a request writing
//! it, expiry of unfinished ones, and the ingest of finished ones, at once or at start.

use std::path::PathBuf;

use sqlx::Row;

use super::db::{now_ms, to_u64};
use super::disk::is_upload_id;
use super::error::{ApiError, ServerError};
use super::ingest::{ingest, Ingested, Source};
use super::AppState;

/// Removes unfinished uploads older than the server's upload TTL, with their staged bytes.
async fn sweep(state: &AppState) -> Result<(), ServerError> {
    let cutoff = now_ms().saturating_sub(state.upload_ttl_ms);
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE created < $1")
        .bind(cutoff)
        .fetch_all(&state.db)
        .await?;
    for id in ids {
        let Ok(_busy) = Busy::take(state, &id) else {
            continue;
        };
        if let Ok(Some(up)) = Upload::find(state, &id).await {
            if let Err(e) = up.remove(state).await {
                log::warn!("tidelog server: cannot remove expired upload {id}: {e}");
            }
        }
    }
    Ok(())
}

/// Sweeps expired uploads for as long as the server runs, a few times per TTL.
pub async fn sweeper(state: AppState) {
    let every = u64::try_from(state.upload_ttl_ms / 4)
        .unwrap_or(0)
        .clamp(100, 10 * 60 * 1000);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(every)).await;
        // Another replica holding the lease sweeps instead; it lapses if that one stops.
        let ttl = i64::try_from(every.saturating_mul(3)).unwrap_or(i64::MAX);
        let swept = match state.leases.hold(&state.db, "sweep-uploads", ttl).await {
            Ok(true) => sweep(&state).await,
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = swept {
            log::warn!("tidelog server: sweeping expired uploads: {e}");
        }
    }
}

/// A stored upload.
pub struct Upload {
    pub id: String,
    pub account: String,
    pub length: u64,
    pub sha256: Option<String>,
    pub metadata: Option<String>,
    pub created_ms: i64,
    pub path: PathBuf,
}

impl Upload {
    /// Upload `id` if it exists; a malformed id is simply unknown.
    pub async fn find(state: &AppState, id: &str) -> Result<Option<Upload>, ApiError> {
        if !is_upload_id(id) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT account, length, sha256, metadata, created FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(Upload {
            id: id.to_owned(),
            account: row.try_get("account")?,
            length: to_u64(row.try_get("length")?)?,
            sha256: row.try_get("sha256")?,
            metadata: row.try_get("metadata")?,
            created_ms: row.try_get("created")?,
            path: state.disk.upload_path(id),
        }))
    }

    /// The caller's upload `id`; unknown, malformed, expired and another account's are all 404.
    pub async fn load(state: &AppState, account: &str, id: &str) -> Result<Upload, ApiError> {
        let up = Upload::find(state, id)
            .await?
            .filter(|u| u.account == account)
            .ok_or_else(|| ApiError::NotFound(format!("no upload {id:?}")))?;
        if now_ms() >= up.created_ms.saturating_add(state.upload_ttl_ms) {
            return Err(ApiError::NotFound(format!("upload {id:?} expired")));
        }
        Ok(up)
    }

    /// Bytes received so far: the staging file's length.
    pub async fn offset(&self) -> Result<u64, ApiError> {
        match tokio::fs::metadata(&self.path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ApiError::NotFound(format!("no upload {:?}", self.id)))
            }
            Err(e) => Err(ServerError::io(format!("reading {}", self.path.display()), e).into()),
        }
    }

    /// Forgets the upload and its staged bytes.
    pub async fn remove(&self, state: &AppState) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(&self.id)
            .execute(&state.db)
            .await?;
        match tokio::fs::remove_file(&self.path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ServerError::io(format!("removing {}", self.path.display()), e).into())
            }
            _ => Ok(()),
        }
    }
}

/// Marks an upload as being written; a second PATCH meanwhile gets 423.
pub struct Busy {
    state: AppState,
    id: String,
}

impl Busy {
    pub fn take(state: &AppState, id: &str) -> Result<Busy, ApiError> {
        let mut set = state
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.insert(id.to_owned()) {
            return Err(ApiError::Locked);
        }
        Ok(Busy {
            state: state.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// Ingests a staged upload from its file, under a durable "ingest in progress" mark that the
/// caller removes once the upload is forgotten or quarantined.
pub async fn ingest_staged(state: &AppState, up: &Upload) -> Result<Ingested, ApiError> {
    let _slot = state.ingest_slot().await?;
    let q = state.quarantine.clone();
    let id = up.id.clone();
    tokio::task::spawn_blocking(move || q.mark(&id))
        .await
        .map_err(ServerError::from)??;
    ingest(
        state,
        &up.account,
        Source::File(up.path.clone()),
        up.sha256.clone(),
    )
    .await
}

/// Moves an upload that recovery could not ingest into quarantine with `reason`, and forgets it.
async fn hold(state: &AppState, up: &Upload, reason: String) -> Result<(), ApiError> {
    log::error!("tidelog server: upload {} quarantined: {reason}", up.id);
    let q = state.quarantine.clone();
    let (id, path, account) = (up.id.clone(), up.path.clone(), up.account.clone());
    tokio::task::spawn_blocking(move || q.hold(&id, &path, &account, &reason))
        .await
        .map_err(ServerError::from)??;
    up.remove(state).await
}

/// Ingests uploads that were received in full before a restart but never ingested. Runs
/// before the server listens, so no client sees such an upload as complete. It never keeps
/// the server down: an upload whose ingest fails, or whose mark says an earlier ingest of it
/// never returned (the process crashed or was killed), is quarantined instead.
pub async fn recover(state: &AppState) -> Result<(), ServerError> {
    sweep(state).await?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads")
        .fetch_all(&state.db)
        .await?;
    for id in ids {
        let up = match Upload::find(state, &id).await {
            Ok(Some(up)) => up,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("tidelog server: cannot read upload {id}: {e}");
                continue;
            }
        };
        if !matches!(up.offset().await, Ok(n) if n == up.length) {
            continue;
        }
        let Ok(_busy) = Busy::take(state, &id) else {
            continue;
        };
        let held = if state.quarantine.is_marked(&id) {
            let why = "an earlier ingest of this upload never returned: the server crashed or was killed";
            hold(state, &up, why.into()).await
        } else {
            match ingest_staged(state, &up).await {
                Ok(_) => match up.remove(state).await {
                    Ok(()) => state.quarantine.unmark(&id).map_err(ApiError::from),
                    Err(e) => Err(e),
                },
                Err(e) => hold(state, &up, format!("ingest refused it: {e}")).await,
            }
        };
        if let Err(e) = held {
            log::error!("tidelog server: recovering upload {id}: {e}");
        }
    }
    Ok(())
}
