//! Deleting a run, for `DELETE /api/v1/runs/{id}` and `tidelog admin delete-run` alike: its
//! rows, files and bundle records go in one transaction, then the stored objects that no run
//! refers to any more. Its id is remembered, so a client that syncs it again is refused with
//! 410 rather than silently recreating it.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value as JsonValue};
use sqlx::{AnyConnection, AnyPool};

use super::auth::Account;
use super::db::{self, now_ms, RunRow};
use object_store::ObjectStoreExt;

use super::error::{ApiError, ServerError};
use super::segments::{self, Ctx, HISTORY_KIND, SYSTEM_KIND};
use super::store::{blob_key, Store};
use super::AppState;
use crate::core::time::rfc3339;

/// What deleting a run removed.
#[derive(Debug)]
pub struct Deleted {
    /// The run.
    pub run_id: String,
    /// The account it belonged to.
    pub account: String,
    /// History rows removed.
    pub history_rows: u64,
    /// System metric rows removed.
    pub system_rows: u64,
    /// Saved files removed from the run.
    pub files: u64,
    /// Stored objects removed because nothing refers to them any more.
    pub blobs_removed: u64,
}

impl Deleted {
    /// The answer of `DELETE /api/v1/runs/{id}`.
    pub fn to_json(&self) -> JsonValue {
        json!({
            "deleted": self.run_id,
            "history_rows": self.history_rows,
            "system_rows": self.system_rows,
            "files": self.files,
            "blobs_removed": self.blobs_removed,
        })
    }
}

/// Deletes run `run_id`: with `owner`, only if it is that account's (unknown is 404, another
/// account's 403, as for reads); without, whoever owns it (the admin command). The account
/// keeps a blob while another of its runs refers to it; a blob no run and no account refers to
/// is removed from the store after the transaction commits, so a failure leaves at worst an
/// unreferenced object, never a reference without its object.
pub async fn delete_run(
    db: &AnyPool,
    store: &Store,
    owner: Option<&str>,
    run_id: &str,
) -> Result<Deleted, ApiError> {
    let mut tx = begin_write(db).await?;
    let run = RunRow::load(&mut *tx, run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {run_id:?}")))?;
    if owner.is_some_and(|o| o != run.account) {
        return Err(ApiError::Forbidden(run_id.to_owned()));
    }
    let shas: Vec<String> = sqlx::query_scalar("SELECT DISTINCT sha256 FROM files WHERE run_id = $1")
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
    let mut removed = [0u64; 3];
    for (n, kind) in removed.iter_mut().zip([HISTORY_KIND, SYSTEM_KIND]) {
        let rows: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(row_count), 0) AS BIGINT) FROM segments WHERE run_id = $1 AND kind = $2",
        )
        .bind(run_id)
        .bind(kind)
        .fetch_one(&mut *tx)
        .await?;
        *n = u64::try_from(rows).unwrap_or(0);
    }
    // Rows of the tables before segments, if a migration at start has not moved them yet.
    for (n, table) in removed.iter_mut().zip(["history", "system", "files"]) {
        *n += sqlx::query(&format!("DELETE FROM {table} WHERE run_id = $1"))
            .bind(run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    for sql in [
        "DELETE FROM bundles WHERE run_id = $1",
        "DELETE FROM runs WHERE id = $1",
    ] {
        sqlx::query(sql).bind(run_id).execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO deleted_runs (id, account, deleted) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
    )
    .bind(run_id)
    .bind(&run.account)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let mut orphans = Vec::new();
    for sha in shas {
        let kept: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM files JOIN runs ON runs.id = files.run_id \
             WHERE runs.account = $1 AND files.sha256 = $2 LIMIT 1",
        )
        .bind(&run.account)
        .bind(&sha)
        .fetch_optional(&mut *tx)
        .await?;
        if kept.is_none() {
            sqlx::query("DELETE FROM blob_owners WHERE account = $1 AND sha256 = $2")
                .bind(&run.account)
                .bind(&sha)
                .execute(&mut *tx)
                .await?;
        }
        if !referenced(&mut tx, &sha).await? {
            orphans.push(sha);
        }
    }
    tx.commit().await?;
    // The run is gone and its id refused, so no ingest adds segments now; a crash before this
    // leaves catalog rows of no run, which nothing reads.
    let ctx = Ctx {
        db,
        store,
        sqlite: db::is_sqlite(db),
    };
    segments::delete_run(ctx, run_id).await?;
    // Asked again under the write lock: an ingest that committed a reference since keeps it.
    let mut tx = begin_write(db).await?;
    let mut blobs_removed = 0;
    for sha in orphans {
        if !referenced(&mut tx, &sha).await? && remove_blob(store, &sha).await? {
            blobs_removed += 1;
        }
    }
    tx.rollback().await?;
    let [history_rows, system_rows, files] = removed;
    log::info!(
        target: "tidelog::delete",
        account = run.account.as_str(),
        run = run_id,
        history_rows,
        system_rows,
        files,
        blobs_removed;
        "run deleted"
    );
    Ok(Deleted {
        run_id: run_id.to_owned(),
        account: run.account,
        history_rows,
        system_rows,
        files,
        blobs_removed,
    })
}

/// A transaction that holds SQLite's write lock from its start (`BEGIN IMMEDIATE`), so no
/// ingest's transaction interleaves with it.
async fn begin_write(db: &AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>, ApiError> {
    Ok(if db::is_sqlite(db) {
        db.begin_with("BEGIN IMMEDIATE").await?
    } else {
        db.begin().await?
    })
}

/// True while any run's file or any account's ownership refers to blob `sha`.
async fn referenced(conn: &mut AnyConnection, sha: &str) -> Result<bool, ApiError> {
    for sql in [
        "SELECT 1 FROM files WHERE sha256 = $1 LIMIT 1",
        "SELECT 1 FROM blob_owners WHERE sha256 = $1 LIMIT 1",
    ] {
        let found: Option<i64> = sqlx::query_scalar(sql)
            .bind(sha)
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes a blob's object; false when it was already gone.
async fn remove_blob(store: &Store, sha: &str) -> Result<bool, ServerError> {
    let key = blob_key(sha);
    match store.head(&key).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(store.failed(&format!("looking up blob {sha}"), e)),
    }
    match store.delete(&key).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(store.failed(&format!("removing blob {sha}"), e)),
    }
}

/// Inside an ingest's transaction, before it commits: fails (503, which clients retry) when a
/// blob the bundle carried is gone, removed by a run deletion since the ingest found it stored.
/// Both hold the write lock while they look, so either the deletion sees this ingest's reference
/// and keeps the blob, or this check sees it gone and the retry stores it again.
pub async fn carried_blobs_kept<'a>(
    store: &Store,
    shas: impl Iterator<Item = &'a String>,
) -> Result<(), ApiError> {
    for sha in shas {
        match store.head(&blob_key(sha)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ApiError::Busy(format!(
                    "saved file {sha} was removed by a run deletion during this upload"
                )))
            }
            Err(e) => return Err(store.failed(&format!("looking up blob {sha}"), e).into()),
        }
    }
    Ok(())
}

/// Refuses, inside an ingest's transaction, a bundle of a run that was deleted (410).
pub async fn refuse_deleted(conn: &mut AnyConnection, run_id: &str) -> Result<(), ApiError> {
    let deleted: Option<i64> = sqlx::query_scalar("SELECT deleted FROM deleted_runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(conn)
        .await?;
    match deleted {
        Some(ms) => Err(ApiError::Gone(format!(
            "run {run_id:?} was deleted from this server at {}; it cannot be uploaded again",
            rfc3339(ms)
        ))),
        None => Ok(()),
    }
}

/// `DELETE /api/v1/runs/{id}`: deletes the caller's run.
pub async fn delete(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> Result<Json<JsonValue>, ApiError> {
    let done = delete_run(&state.db, &state.store, Some(&account), &id).await?;
    Ok(Json(done.to_json()))
}
