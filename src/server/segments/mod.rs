//! History and system rows as immutable columnar segments: Parquet objects in the store
//! (`segments/<run>/<kind>/<first seq>-<last seq>-<random>.parquet`), named by a catalog of
//! SQL rows. Objects are only put, read and deleted, never changed or renamed: a segment is
//! written before its catalog row commits and deleted after its row is gone.

pub mod catalog;
pub mod compact;
pub mod format;
pub mod migrate;
pub mod read;
pub mod table;
pub mod walk;
pub mod write;

use sqlx::AnyPool;

use super::error::ServerError;
use super::store::Store;
use super::AppState;

/// The record kind of history rows, in the catalog and in object keys.
pub const HISTORY_KIND: &str = "history";
/// The record kind of system-metric rows.
pub const SYSTEM_KIND: &str = "system";
/// Both.
pub const KINDS: [&str; 2] = [HISTORY_KIND, SYSTEM_KIND];

/// What segment work needs of the server: the catalog's database and the object store.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The database holding the catalog.
    pub db: &'a AnyPool,
    /// Where the objects are.
    pub store: &'a Store,
    /// The database is SQLite (write transactions take the lock at BEGIN).
    pub sqlite: bool,
}

impl<'a> Ctx<'a> {
    /// The server's.
    pub fn of(state: &'a AppState) -> Ctx<'a> {
        Ctx {
            db: &state.db,
            store: &state.store,
            sqlite: state.sqlite,
        }
    }
}

/// Removes every segment of a run: its catalog rows in one statement, then its objects (a
/// crash between the two leaves only unnamed objects). For deleting a run.
pub async fn delete_run(ctx: Ctx<'_>, run_id: &str) -> Result<(), ServerError> {
    let segments = catalog::of_run(ctx.db, run_id).await?;
    sqlx::query("DELETE FROM segments WHERE run_id = $1")
        .bind(run_id)
        .execute(ctx.db)
        .await?;
    write::delete(ctx.store, segments.iter().flat_map(catalog::Segment::objects)).await;
    Ok(())
}

/// What the segment tests share: a database and store as a server opens them.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// The database and store a server opens in `dir`.
    pub async fn open(dir: &std::path::Path) -> (AnyPool, Store) {
        let db = crate::server::db::open(dir, None).await.unwrap();
        (db, Store::open(None, dir).await.unwrap())
    }

    /// The same on a fresh PostgreSQL database, the store still under `dir`.
    pub async fn open_postgres(dir: &std::path::Path) -> (AnyPool, Store) {
        let url = crate::server::db::fresh_postgres().await;
        let db = crate::server::db::open(dir, Some(&url)).await.unwrap();
        (db, Store::open(None, dir).await.unwrap())
    }

    /// Segment work over them.
    pub fn ctx<'a>(db: &'a AnyPool, store: &'a Store) -> Ctx<'a> {
        Ctx {
            db,
            store,
            sqlite: crate::server::db::is_sqlite(db),
        }
    }

    /// Stores `t` as one segment of run `r`'s history, object first, as ingest does.
    pub async fn add(ctx: Ctx<'_>, t: &table::Table) -> catalog::Segment {
        add_to(ctx, "r", t).await
    }

    /// Stores `t` as one segment of run `run_id`'s history.
    pub async fn add_to(ctx: Ctx<'_>, run_id: &str, t: &table::Table) -> catalog::Segment {
        let b = write::build(run_id, HISTORY_KIND, t).unwrap().unwrap();
        b.put(ctx.store).await.unwrap();
        let mut tx = crate::server::db::begin_write(ctx.db, ctx.sqlite).await.unwrap();
        b.segment.insert(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        b.segment
    }
}
