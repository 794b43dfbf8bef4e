//! The data migration of earlier versions' `history` and `system` tables (one SQL row per
//! step, a JSON `data` column) into segments, at start. A chunk of a run's rows becomes one
//! segment; its catalog row and the DELETE of the rows it holds are one transaction, so a
//! crash or a second replica migrating at once never loses or doubles a row.

use sqlx::Row;

use super::table::Table;
use super::write::build;
use super::{Ctx, HISTORY_KIND, SYSTEM_KIND};
use crate::server::db::{begin_write, to_u64};
use crate::server::error::ServerError;

/// Rows per migrated segment.
const CHUNK: i64 = 1 << 17;

/// Moves every row of the old tables into segments; returns how many rows moved. Once they
/// are empty this costs two one-row queries per start.
pub async fn migrate(ctx: Ctx<'_>) -> Result<u64, ServerError> {
    let mut moved = 0;
    for (table, kind) in [("history", HISTORY_KIND), ("system", SYSTEM_KIND)] {
        loop {
            let run: Option<String> = sqlx::query_scalar(&format!("SELECT run_id FROM {table} LIMIT 1"))
                .fetch_optional(ctx.db)
                .await?;
            let Some(run) = run else { break };
            moved += chunk(ctx, table, kind, &run).await?;
        }
    }
    if moved > 0 {
        log::info!("tidelog server: moved {moved} history and system rows into segments");
    }
    Ok(moved)
}

/// Moves the first [`CHUNK`] rows of `run` in `table`; returns how many (0 when another
/// process moved them first).
async fn chunk(ctx: Ctx<'_>, table: &str, kind: &'static str, run: &str) -> Result<u64, ServerError> {
    let found = sqlx::query(&format!(
        "SELECT seq, step, ts_ms, data FROM {table} WHERE run_id = $1 ORDER BY seq LIMIT {CHUNK}"
    ))
    .bind(run)
    .fetch_all(ctx.db)
    .await?;
    let rows = found
        .iter()
        .map(|r| {
            Ok((
                to_u64(r.try_get(0)?)?,
                to_u64(r.try_get(1)?)?,
                r.try_get(2)?,
                r.try_get(3)?,
            ))
        })
        .collect::<Result<Vec<(u64, u64, i64, String)>, ServerError>>()?;
    drop(found);
    let n = rows.len() as u64;
    let id = run.to_owned();
    let built = tokio::task::spawn_blocking(move || {
        let t =
            Table::from_json_rows(&rows).map_err(|e| ServerError::Corrupt(format!("a stored row: {e}")))?;
        build(&id, kind, &t)
    })
    .await??;
    let Some(built) = built else { return Ok(0) };
    built.put(ctx.store).await?;
    let s = &built.segment;
    let mut tx = begin_write(ctx.db, ctx.sqlite).await?;
    let gone = sqlx::query(&format!(
        "DELETE FROM {table} WHERE run_id = $1 AND seq >= $2 AND seq <= $3"
    ))
    .bind(run)
    .bind(i64::try_from(s.first_seq).unwrap_or(i64::MAX))
    .bind(i64::try_from(s.last_seq).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if gone != n {
        drop(tx);
        built.discard(ctx.store).await;
        return Ok(0);
    }
    let res = s.insert(&mut tx).await;
    let res = match res {
        Ok(()) => tx.commit().await.map_err(ServerError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = res {
        built.discard(ctx.store).await;
        return Err(e);
    }
    Ok(n)
}
