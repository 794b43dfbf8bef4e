//! The SQL store through `sqlx::Any`, on SQLite (the default) or PostgreSQL: connection,
//! versioned migrations per backend, and the run row. Queries use `$n` placeholders and
//! `ON CONFLICT`, which both dialects share; where they differ, the SQL is chosen by backend.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::Notify;

use super::error::ServerError;
use crate::core::time::rfc3339;

mod migrate;
#[cfg(test)]
mod pg_tests;

#[cfg(test)]
pub use pg_tests::fresh_postgres;

/// Opens the database (default: SQLite `<data>/tidelog.db`, WAL; or the `sqlite:` or
/// `postgres:` URL given) and brings its schema up to date.
pub async fn open(data: &Path, url: Option<&str>) -> Result<AnyPool, ServerError> {
    sqlx::any::install_default_drivers();
    let url = match url {
        Some(u) => sqlite_rwc(u),
        None => {
            let io = |e| ServerError::io(format!("creating {}", data.display()), e);
            std::fs::create_dir_all(data).map_err(io)?;
            let file = std::path::absolute(data.join("tidelog.db")).map_err(io)?;
            let path = file.display().to_string();
            let path = path.replace('%', "%25").replace('?', "%3F").replace('#', "%23");
            format!("sqlite://{path}?mode=rwc")
        }
    };
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    // Writers queue for SQLite's one write lock; a long ingest may hold it a while.
                    sqlx::query("PRAGMA busy_timeout = 60000")
                        .execute(&mut *conn)
                        .await?;
                    // Checkpoints run after each ingest (see `checkpointer`); this is a backstop.
                    sqlx::query("PRAGMA wal_autocheckpoint = 262144")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|source| ServerError::Open {
            url: redact(&url),
            source,
        })?;
    migrate::migrator(is_sqlite(&pool))
        .run(&pool)
        .await
        .map_err(|source| ServerError::Migrate {
            url: redact(&url),
            source,
        })?;
    Ok(pool)
}

/// A `sqlite:` URL that creates a missing database file (and its folder), as the default one
/// does: `mode=rwc` is added unless the URL names a mode. Other URLs are left as they are.
fn sqlite_rwc(url: &str) -> String {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return url.to_owned();
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.contains(":memory:") || query.split('&').any(|p| p.starts_with("mode=")) {
        return url.to_owned();
    }
    let file = Path::new(path.strip_prefix("//").unwrap_or(path));
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A folder that cannot be made shows up as the open error, which names the URL.
        let _ = std::fs::create_dir_all(parent);
    }
    let sep = if query.is_empty() { '?' } else { '&' };
    format!("{url}{sep}mode=rwc")
}

/// The URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') && !user.contains('/') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

/// A write transaction; on SQLite it takes the write lock at BEGIN, so it never fails to
/// upgrade a read lock halfway.
pub async fn begin_write(
    db: &AnyPool,
    sqlite: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    if sqlite {
        db.begin_with("BEGIN IMMEDIATE").await
    } else {
        db.begin().await
    }
}

/// True when the pool talks to SQLite, whose WAL and placeholders need special care.
pub fn is_sqlite(pool: &AnyPool) -> bool {
    pool.connect_options().database_url.scheme() == "sqlite"
}

/// Copies committed WAL pages into the SQLite file whenever `written` is notified, so an
/// ingest's commit does not pay for the checkpoint. Runs until the server stops.
pub async fn checkpointer(pool: AnyPool, written: Arc<Notify>) {
    loop {
        written.notified().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            log::warn!("tidelog server: WAL checkpoint failed: {e}");
        }
    }
}

/// Current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A stored sequence number or step as `u64`; negative values mean a corrupt database.
pub fn to_u64(v: i64) -> Result<u64, ServerError> {
    u64::try_from(v).map_err(|_| ServerError::Corrupt(format!("negative counter {v}")))
}

/// One row of `runs`, decoded.
#[derive(Clone, Debug)]
pub struct RunRow {
    /// Run id.
    pub id: String,
    /// Owning account.
    pub account: String,
    /// Project.
    pub project: String,
    /// Team or user namespace.
    pub entity: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Labels.
    pub tags: Vec<String>,
    /// Description.
    pub notes: Option<String>,
    /// `running`, `finished`, `failed` or `crashed`.
    pub state: String,
    /// Exit code once finished.
    pub exit_code: Option<i64>,
    /// Merged config.
    pub config: Map<String, Json>,
    /// Merged summary.
    pub summary: Map<String, Json>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    /// Last change, Unix ms.
    pub updated_ms: i64,
    /// Records `0..next_seq` are stored.
    pub next_seq: u64,
}

const RUN_COLUMNS: &str = "id, account, project, entity, name, tags, notes, state, exit_code, \
     config, summary, created_ms, updated_ms, next_seq";

fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ServerError> {
    serde_json::from_str(text).map_err(|e| ServerError::Corrupt(e.to_string()))
}

fn to_text(v: &impl serde::Serialize) -> Result<String, ServerError> {
    serde_json::to_string(v).map_err(|e| ServerError::Corrupt(e.to_string()))
}

impl RunRow {
    fn from_row(r: &AnyRow) -> Result<Self, ServerError> {
        Ok(RunRow {
            id: r.try_get("id")?,
            account: r.try_get("account")?,
            project: r.try_get("project")?,
            entity: r.try_get("entity")?,
            name: r.try_get("name")?,
            tags: parse(r.try_get("tags")?)?,
            notes: r.try_get("notes")?,
            state: r.try_get("state")?,
            exit_code: r.try_get("exit_code")?,
            config: parse(r.try_get("config")?)?,
            summary: parse(r.try_get("summary")?)?,
            created_ms: r.try_get("created_ms")?,
            updated_ms: r.try_get("updated_ms")?,
            next_seq: to_u64(r.try_get("next_seq")?)?,
        })
    }

    /// Loads one run by id.
    pub async fn load<'e, E>(db: E, id: &str) -> Result<Option<RunRow>, ServerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
        row.as_ref().map(RunRow::from_row).transpose()
    }

    /// The account's runs, newest first, optionally of one project.
    pub async fn list(
        db: &AnyPool,
        account: &str,
        project: Option<&str>,
    ) -> Result<Vec<RunRow>, ServerError> {
        let rows = match project {
            Some(p) => {
                let sql = format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE account = $1 AND project = $2 \
                     ORDER BY created_ms DESC, id"
                );
                sqlx::query(&sql).bind(account).bind(p).fetch_all(db).await?
            }
            None => {
                let sql =
                    format!("SELECT {RUN_COLUMNS} FROM runs WHERE account = $1 ORDER BY created_ms DESC, id");
                sqlx::query(&sql).bind(account).fetch_all(db).await?
            }
        };
        rows.iter().map(RunRow::from_row).collect()
    }

    /// Stores the run if its high-water mark is still `read_seq` (`None`: the run is new),
    /// the per-run guard of an ingest; false when another ingest moved it first.
    pub async fn save_if<'e, E>(&self, db: E, read_seq: Option<u64>) -> Result<bool, ServerError>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let seq =
            |v: u64| i64::try_from(v).map_err(|_| ServerError::Corrupt(format!("next_seq {v} out of range")));
        let sql = match read_seq {
            None => format!(
                "INSERT INTO runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING"
            ),
            Some(_) => "UPDATE runs SET account = $2, project = $3, entity = $4, name = $5, \
                 tags = $6, notes = $7, state = $8, exit_code = $9, config = $10, summary = $11, \
                 created_ms = $12, updated_ms = $13, next_seq = $14 WHERE id = $1 AND next_seq = $15"
                .to_owned(),
        };
        let mut q = sqlx::query(&sql)
            .bind(&self.id)
            .bind(&self.account)
            .bind(&self.project)
            .bind(self.entity.as_deref())
            .bind(self.name.as_deref())
            .bind(to_text(&self.tags)?)
            .bind(self.notes.as_deref())
            .bind(&self.state)
            .bind(self.exit_code)
            .bind(to_text(&self.config)?)
            .bind(to_text(&self.summary)?)
            .bind(self.created_ms)
            .bind(self.updated_ms)
            .bind(seq(self.next_seq)?);
        if let Some(read) = read_seq {
            q = q.bind(seq(read)?);
        }
        Ok(q.execute(db).await?.rows_affected() == 1)
    }

    /// The run as the API shows it.
    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "project": self.project,
            "entity": self.entity,
            "name": self.name,
            "tags": self.tags,
            "notes": self.notes,
            "state": self.state,
            "exit_code": self.exit_code,
            "config": self.config,
            "summary": self.summary,
            "created": rfc3339(self.created_ms),
            "updated": rfc3339(self.updated_ms),
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        })
    }
}
