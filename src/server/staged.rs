//! Staged tus uploads, all their state in the database and the object store so any replica can
//! continue one: the stored upload, its parts, the conditional update that advances its
//! offset, expiry of unfinished ones, and the ingest of finished ones, at once or later.

use object_store::path::Path as Key;
use sqlx::Row;

use super::db::{now_ms, to_u64};
use super::error::{ApiError, ServerError};
use super::ingest::{ingest, Ingested, Source};
use super::lease::Leases;
use super::parts::{prefix, PartsReader};
use super::quarantine;
use super::store::is_upload_id;
use super::AppState;

/// How often a replica renews its liveness lease, and how long one lasts unrenewed: a replica
/// silent for longer is taken for dead, and its half-done work for another's to finish.
const BEAT_MS: u64 = 2_000;
const ALIVE_MS: i64 = 10_000;

/// Renews this replica's liveness lease for as long as the server runs.
pub async fn heartbeat(state: AppState) {
    loop {
        if let Err(e) = state.leases.beat(&state.db, ALIVE_MS).await {
            log::warn!("tidelog server: renewing this replica's liveness lease: {e}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(BEAT_MS)).await;
    }
}

/// Removes unfinished uploads older than the server's upload TTL with their parts, the parts
/// of uploads no row names any more (a request cut by a dying replica), and lapsed leases.
async fn sweep(state: &AppState) -> Result<(), ServerError> {
    let cutoff = now_ms().saturating_sub(state.upload_ttl_ms);
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM uploads WHERE created < $1 AND received < length")
            .bind(cutoff)
            .fetch_all(&state.db)
            .await?;
    for id in ids {
        if let Err(e) = remove(state, &id).await {
            log::warn!("tidelog server: cannot remove expired upload {id}: {e}");
        }
    }
    let listed = state
        .store
        .list_with_delimiter(Some(&Key::from("uploads")))
        .await
        .map_err(|e| state.store.failed("listing uploads", e))?;
    for dir in listed.common_prefixes {
        let Some(id) = dir.filename().filter(|id| is_upload_id(id)) else {
            continue;
        };
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
        if known.is_none() {
            state.store.remove_all(&prefix(id)).await?;
        }
    }
    let day = 24 * 3600 * 1000;
    sqlx::query("DELETE FROM leases WHERE until_ms < $1")
        .bind(now_ms().saturating_sub(day))
        .execute(&state.db)
        .await?;
    Ok(())
}

/// Sweeps expired uploads and finishes uploads left by a dead replica for as long as the
/// server runs, a few times per TTL and at least every minute.
pub async fn sweeper(state: AppState) {
    let every = u64::try_from(state.upload_ttl_ms / 4)
        .unwrap_or(0)
        .clamp(100, 60 * 1000);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(every)).await;
        // Another replica holding the lease sweeps instead; it lapses if that one stops.
        let ttl = i64::try_from(every.saturating_mul(3)).unwrap_or(i64::MAX);
        let swept = match state.leases.hold(&state.db, "sweep-uploads", ttl).await {
            Ok(true) => recover(&state).await,
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
    /// Bytes received and acknowledged: the end of its last part.
    pub received: u64,
    /// The replica that received its last byte and ingests it.
    pub holder: Option<String>,
    /// When its ingest began, if it did: the durable "ingest in progress" mark.
    pub started: Option<i64>,
}

impl Upload {
    /// Upload `id` if it exists; a malformed id is simply unknown.
    pub async fn find(state: &AppState, id: &str) -> Result<Option<Upload>, ApiError> {
        if !is_upload_id(id) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT account, length, sha256, metadata, created, received, holder, started \
             FROM uploads WHERE id = $1",
        )
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
            received: to_u64(row.try_get("received")?)?,
            holder: row.try_get("holder")?,
            started: row.try_get("started")?,
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

    /// Records part `key` of `size` bytes at the upload's offset `start`, advancing the offset
    /// only from `start` (a conditional UPDATE), so of two requests racing on one offset, on
    /// one replica or two, exactly one wins. The one that completes the upload claims its
    /// ingest for this replica. False when another request moved the offset first.
    pub async fn advance(
        &self,
        state: &AppState,
        start: u64,
        size: u64,
        key: &Key,
    ) -> Result<bool, ApiError> {
        let int = |v: u64| i64::try_from(v).map_err(|_| ApiError::BadRequest("offset out of range".into()));
        let end = start.saturating_add(size);
        let holder = (end == self.length).then(|| state.leases.holder());
        let mut tx = state.db.begin().await?;
        let moved =
            sqlx::query("UPDATE uploads SET received = $1, holder = $2 WHERE id = $3 AND received = $4")
                .bind(int(end)?)
                .bind(holder)
                .bind(&self.id)
                .bind(int(start)?)
                .execute(&mut *tx)
                .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO upload_parts (upload, start, size, name) VALUES ($1, $2, $3, $4)")
            .bind(&self.id)
            .bind(int(start)?)
            .bind(int(size)?)
            .bind(key.as_ref())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The keys of its parts in order, checked to cover `0..length` without gap or overlap:
    /// for an upload received in full.
    pub async fn parts(&self, state: &AppState) -> Result<Vec<Key>, ServerError> {
        let rows = sqlx::query("SELECT start, size, name FROM upload_parts WHERE upload = $1 ORDER BY start")
            .bind(&self.id)
            .fetch_all(&state.db)
            .await?;
        let mut at = 0u64;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let start = to_u64(row.try_get("start")?)?;
            if start != at {
                return Err(ServerError::Corrupt(format!(
                    "upload {} has no part at offset {at}",
                    self.id
                )));
            }
            at = at.saturating_add(to_u64(row.try_get("size")?)?);
            keys.push(Key::from(row.try_get::<String, _>("name")?));
        }
        if at != self.length {
            return Err(ServerError::Corrupt(format!(
                "upload {}'s parts end at {at}, not at its length {}",
                self.id, self.length
            )));
        }
        Ok(keys)
    }
}

/// Forgets upload `id`: its row and parts, then their objects. A request still writing a part
/// of it then loses its conditional update and removes its own part.
pub async fn remove(state: &AppState, id: &str) -> Result<(), ServerError> {
    let mut tx = state.db.begin().await?;
    for sql in [
        "DELETE FROM upload_parts WHERE upload = $1",
        "DELETE FROM uploads WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    state.store.remove_all(&prefix(id)).await
}

/// Ingests a received upload from its parts, under the durable "ingest in progress" mark
/// (`started`), which goes with the upload's row once the caller removes or quarantines it.
pub async fn ingest_staged(state: &AppState, up: &Upload) -> Result<Ingested, ApiError> {
    let _slot = state.ingest_slot().await?;
    sqlx::query("UPDATE uploads SET started = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(&up.id)
        .execute(&state.db)
        .await?;
    let parts = PartsReader::new(state.store.clone(), up.parts(state).await?);
    ingest(state, &up.account, Source::Parts(parts), up.sha256.clone()).await
}

/// Keeps an upload that recovery could not ingest in quarantine with `reason`, and forgets it.
async fn hold(state: &AppState, up: &Upload, reason: String) -> Result<(), ApiError> {
    log::error!("tidelog server: upload {} quarantined: {reason}", up.id);
    let keys = up.parts(state).await?;
    quarantine::hold(&state.store, up, keys, &reason).await?;
    Ok(remove(state, &up.id).await?)
}

/// Takes over upload `id`, received in full, when no live replica is ingesting it: true when
/// this replica now holds it (a conditional update, so one replica of several wins).
async fn claim(state: &AppState, up: &Upload) -> Result<bool, ServerError> {
    if let Some(h) = &up.holder {
        if h == state.leases.holder() || Leases::is_alive(&state.db, h).await? {
            return Ok(false);
        }
    }
    let done = sqlx::query("UPDATE uploads SET holder = $1 WHERE id = $2 AND COALESCE(holder, '') = $3")
        .bind(state.leases.holder())
        .bind(&up.id)
        .bind(up.holder.as_deref().unwrap_or(""))
        .execute(&state.db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Sweeps, then ingests uploads that were received in full but whose replica died (or
/// restarted) before ingesting them. Runs before the server listens and then with the sweep,
/// so no client sees such an upload as complete for long. It never keeps the server down: an
/// upload whose ingest fails, or whose mark says an earlier ingest of it never returned (the
/// process crashed or was killed), is quarantined instead.
pub async fn recover(state: &AppState) -> Result<(), ServerError> {
    sweep(state).await?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE received = length")
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
        match claim(state, &up).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("tidelog server: cannot claim upload {id}: {e}");
                continue;
            }
        }
        let held = if up.started.is_some() {
            let why = "an earlier ingest of this upload never returned: the server crashed or was killed";
            hold(state, &up, why.into()).await
        } else {
            match ingest_staged(state, &up).await {
                Ok(_) => remove(state, &id).await.map_err(ApiError::from),
                Err(e) => hold(state, &up, format!("ingest refused it: {e}")).await,
            }
        };
        if let Err(e) = held {
            log::error!("tidelog server: recovering upload {id}: {e}");
        }
    }
    Ok(())
}
