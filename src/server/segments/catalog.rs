//! The catalog: one SQL row per segment (run, record kind, object key, sequence and step
//! range, row count, size, per-key stats), the only place that says which objects hold a run's
//! rows. Objects are written before their row and deleted after it is gone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use super::table::{Cells, Table};
use crate::server::db::to_u64;
use crate::server::error::ServerError;
use crate::server::rows::stored_number;

/// A key's summary over one segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Rows holding the key.
    pub count: u64,
    /// How many of its values are numbers (NaN and the infinities included).
    pub num: u64,
    /// Smallest number, NaN left out.
    pub min: Option<f64>,
    /// Largest number, NaN left out.
    pub max: Option<f64>,
    /// The value of its last row.
    pub last: Json,
    /// Step of its first row.
    pub first_step: u64,
    /// Step of its last row.
    pub last_step: u64,
}

/// One catalog row.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// The object holding the rows: its key in the store, unique.
    pub object: String,
    /// The object of its fine M4 pre-aggregate, when it has one.
    pub agg: Option<String>,
    /// The object of its coarse M4 pre-aggregate, when it has one (segments made before
    /// version 5 of the schema never do).
    pub agg2: Option<String>,
    /// Run id.
    pub run_id: String,
    /// `history` or `system`.
    pub kind: String,
    /// Lowest record sequence number.
    pub first_seq: u64,
    /// Highest record sequence number.
    pub last_seq: u64,
    /// Lowest step.
    pub min_step: u64,
    /// Highest step.
    pub max_step: u64,
    /// Rows.
    pub rows: u64,
    /// Bytes of the object and its pre-aggregates.
    pub bytes: u64,
    /// Per key.
    pub stats: BTreeMap<String, KeyStats>,
}

/// Per-key stats of `t`.
pub fn stats(t: &Table) -> BTreeMap<String, KeyStats> {
    let mut out = BTreeMap::new();
    for c in &t.cols {
        let mut s = KeyStats {
            count: c.rows.len() as u64,
            num: 0,
            min: None,
            max: None,
            last: c.cells.json(c.cells.len() - 1),
            first_step: t.steps[c.rows[0] as usize],
            last_step: t.steps[c.rows[c.rows.len() - 1] as usize],
        };
        let mut add = |v: f64| {
            if !v.is_nan() {
                s.min = Some(s.min.map_or(v, |m| m.min(v)));
                s.max = Some(s.max.map_or(v, |m| m.max(v)));
            }
        };
        s.num = match &c.cells {
            Cells::Num(nums) => {
                nums.iter().for_each(|&v| add(v));
                nums.len() as u64
            }
            Cells::Json(_) => (0..c.cells.len())
                .filter(|&i| {
                    add(c.cells.chart(i));
                    stored_number(&c.cells.json(i)).is_some()
                })
                .count() as u64,
        };
        out.insert(c.name.clone(), s);
    }
    out
}

/// The per-key stats of segments `group` (in sequence order) taken together, from theirs.
pub fn merged_stats(group: &[Segment]) -> BTreeMap<String, KeyStats> {
    let mut out: BTreeMap<String, KeyStats> = BTreeMap::new();
    for (name, next) in group.iter().flat_map(|g| &g.stats) {
        let Some(acc) = out.get_mut(name) else {
            out.insert(name.clone(), next.clone());
            continue;
        };
        let pick = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
            (Some(a), Some(b)) => Some(f(a, b)),
            (a, b) => a.or(b),
        };
        acc.count += next.count;
        acc.num += next.num;
        acc.min = pick(acc.min, next.min, f64::min);
        acc.max = pick(acc.max, next.max, f64::max);
        acc.last.clone_from(&next.last);
        acc.last_step = next.last_step;
    }
    out
}

fn int(v: u64) -> Result<i64, ServerError> {
    i64::try_from(v).map_err(|_| ServerError::Corrupt(format!("{v} is out of range")))
}

const COLUMNS: &str = "object, agg, agg2, run_id, kind, first_seq, last_seq, min_step, max_step, \
     row_count, size_bytes, stats";

impl Segment {
    fn from_row(r: &AnyRow) -> Result<Segment, ServerError> {
        let stats: String = r.try_get("stats")?;
        Ok(Segment {
            object: r.try_get("object")?,
            agg: r.try_get("agg")?,
            agg2: r.try_get("agg2")?,
            run_id: r.try_get("run_id")?,
            kind: r.try_get("kind")?,
            first_seq: to_u64(r.try_get("first_seq")?)?,
            last_seq: to_u64(r.try_get("last_seq")?)?,
            min_step: to_u64(r.try_get("min_step")?)?,
            max_step: to_u64(r.try_get("max_step")?)?,
            rows: to_u64(r.try_get("row_count")?)?,
            bytes: to_u64(r.try_get("size_bytes")?)?,
            stats: serde_json::from_str(&stats).map_err(|e| ServerError::Corrupt(e.to_string()))?,
        })
    }

    /// Adds the row, in the caller's transaction.
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<(), ServerError> {
        let stats = serde_json::to_string(&self.stats).map_err(|e| ServerError::Corrupt(e.to_string()))?;
        sqlx::query(&format!(
            "INSERT INTO segments ({COLUMNS}, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13)"
        ))
        .bind(&self.object)
        .bind(self.agg.as_deref())
        .bind(self.agg2.as_deref())
        .bind(&self.run_id)
        .bind(&self.kind)
        .bind(int(self.first_seq)?)
        .bind(int(self.last_seq)?)
        .bind(int(self.min_step)?)
        .bind(int(self.max_step)?)
        .bind(int(self.rows)?)
        .bind(int(self.bytes)?)
        .bind(stats)
        .bind(crate::server::db::now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// The objects this row names.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.object.as_str())
            .chain(self.agg.as_deref())
            .chain(self.agg2.as_deref())
    }
}

/// The run's segments of `kind` holding steps in `min_step..=max_step`, by first step.
pub async fn list(
    db: &AnyPool,
    run_id: &str,
    kind: &str,
    min_step: u64,
    max_step: u64,
) -> Result<Vec<Segment>, ServerError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE run_id = $1 AND kind = $2 AND max_step >= $3 \
         AND min_step <= $4 ORDER BY min_step, first_seq"
    ))
    .bind(run_id)
    .bind(kind)
    .bind(int(min_step.min(i64::MAX as u64))?)
    .bind(int(max_step.min(i64::MAX as u64))?)
    .fetch_all(db)
    .await?;
    rows.iter().map(Segment::from_row).collect()
}

/// The run's segments of `kind` of fewer than `rows` rows, by first sequence number.
pub async fn small(db: &AnyPool, run_id: &str, kind: &str, rows: u64) -> Result<Vec<Segment>, ServerError> {
    let found = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE run_id = $1 AND kind = $2 AND row_count < $3 \
         ORDER BY first_seq"
    ))
    .bind(run_id)
    .bind(kind)
    .bind(int(rows)?)
    .fetch_all(db)
    .await?;
    found.iter().map(Segment::from_row).collect()
}

/// Every segment of the run.
pub async fn of_run(db: &AnyPool, run_id: &str) -> Result<Vec<Segment>, ServerError> {
    let found = sqlx::query(&format!("SELECT {COLUMNS} FROM segments WHERE run_id = $1"))
        .bind(run_id)
        .fetch_all(db)
        .await?;
    found.iter().map(Segment::from_row).collect()
}

/// Removes the rows of `objects` in the caller's transaction; false unless all of them were
/// still there (someone else changed the set first).
pub async fn remove(conn: &mut AnyConnection, objects: &[&str]) -> Result<bool, ServerError> {
    let mut removed = 0;
    for object in objects {
        removed += sqlx::query("DELETE FROM segments WHERE object = $1")
            .bind(*object)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(removed == objects.len() as u64)
}

/// The number of the run's segments of `kind` with fewer than `rows` rows.
pub async fn count_small(db: &AnyPool, run_id: &str, kind: &str, rows: u64) -> Result<u64, ServerError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM segments WHERE run_id = $1 AND kind = $2 AND row_count < $3",
    )
    .bind(run_id)
    .bind(kind)
    .bind(int(rows)?)
    .fetch_one(db)
    .await?;
    to_u64(n)
}

/// Runs with at least `at` segments of a kind of fewer than `rows` rows each: those a
/// compaction sweep merges, whichever replica ingested them.
pub async fn crowded(db: &AnyPool, rows: u64, at: u64) -> Result<Vec<String>, ServerError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT run_id FROM segments WHERE row_count < $1 \
         GROUP BY run_id, kind HAVING COUNT(*) >= $2",
    )
    .bind(int(rows)?)
    .bind(int(at)?)
    .fetch_all(db)
    .await?)
}
