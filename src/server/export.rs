//! `GET /api/v1/runs/{id}/history.parquet`: a run's whole history as one Parquet file, streamed
//! row group by row group from a walk of the segments, so memory stays at one group however
//! long the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use parquet::data_type::ByteArray;
use parquet::file::writer::SerializedFileWriter;

use super::auth::Account;
use super::error::{ApiError, ServerError};
use super::runs::owned_run;
use super::segments::catalog::{self, Segment};
use super::segments::format::{self, Data, Kind};
use super::segments::table::{Cells, Table};
use super::segments::walk::Walk;
use super::segments::Ctx;
use super::segments::HISTORY_KIND;
use super::streamed::{self, send, Chunks};
use super::AppState;

/// Cells (rows × columns) of one row group: what the export holds in memory at a time.
const GROUP_CELLS: usize = 1 << 20;

/// Row groups written ahead of a slow client.
const AHEAD: usize = 2;

/// One column's values of the row group being built; `defs` is 1 where a row has the key.
enum Column {
    Number { values: Vec<f64>, defs: Vec<i16> },
    Json { values: Vec<ByteArray>, defs: Vec<i16> },
}

impl Column {
    fn new(kind: Kind) -> Column {
        match kind {
            Kind::Number => Column::Number {
                values: Vec::new(),
                defs: Vec::new(),
            },
            Kind::Json => Column::Json {
                values: Vec::new(),
                defs: Vec::new(),
            },
        }
    }

    /// Adds value `i` of `cells` for the row being added.
    fn push(&mut self, cells: &Cells, i: usize) {
        match self {
            Column::Number { values, defs } => {
                defs.push(1);
                values.push(cells.chart(i));
            }
            Column::Json { values, defs } => {
                defs.push(1);
                let mut text = Vec::new();
                cells.write_json(i, &mut text);
                values.push(ByteArray::from(text));
            }
        }
    }

    /// Marks the key absent in row `row` (1-based count of rows) unless it was just added.
    fn pad(&mut self, row: usize) {
        let defs = match self {
            Column::Number { defs, .. } | Column::Json { defs, .. } => defs,
        };
        if defs.len() < row {
            defs.push(0);
        }
    }
}

/// Every key of the segments and its [`Kind`]: a number column when all its values are
/// numbers (NaN and the infinities included), from the catalog's stats alone.
fn kinds(segments: &[Segment]) -> BTreeMap<String, Kind> {
    let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in segments {
        for (k, st) in &s.stats {
            let c = counts.entry(k.clone()).or_default();
            c.0 += st.count;
            c.1 += st.num;
        }
    }
    counts
        .into_iter()
        .map(|(k, (count, num))| (k, if count == num { Kind::Number } else { Kind::Json }))
        .collect()
}

/// The export's Parquet schema: `_step`, `_timestamp`, then a column per key.
const EXPORT_INTS: [(&str, bool); 2] = [("_step", false), ("_timestamp", true)];

/// A row group being built.
struct Group {
    steps: Vec<i64>,
    ts: Vec<i64>,
    cols: Vec<Column>,
}

impl Group {
    fn new(kinds: &BTreeMap<String, Kind>) -> Group {
        Group {
            steps: Vec::new(),
            ts: Vec::new(),
            cols: kinds.values().map(|&k| Column::new(k)).collect(),
        }
    }

    /// Writes the group as one row group and returns the bytes it added to the file.
    fn write(&mut self, w: &mut SerializedFileWriter<Vec<u8>>) -> parquet::errors::Result<Vec<u8>> {
        let mut data = vec![Data::Int64(&self.steps), Data::Int64(&self.ts)];
        for c in &self.cols {
            data.push(match c {
                Column::Number { values, defs } => Data::Double(values, defs),
                Column::Json { values, defs } => Data::Text(values, defs),
            });
        }
        format::write_group(w, &data)?;
        w.flush()?;
        self.steps.clear();
        self.ts.clear();
        for c in &mut self.cols {
            match c {
                Column::Number { values, defs } => (values.clear(), defs.clear()),
                Column::Json { values, defs } => (values.clear(), defs.clear()),
            };
        }
        Ok(std::mem::take(w.inner_mut()))
    }

    /// Adds row `r` of `t`, whose column `c` is the group's column `to[c]` (if any).
    fn push(&mut self, t: &Table, r: usize, to: &[Option<usize>], cursors: &mut [usize]) {
        self.steps.push(t.steps[r] as i64);
        self.ts.push(t.ts[r]);
        let row = self.steps.len();
        for ((col, g), cur) in t.cols.iter().zip(to).zip(cursors.iter_mut()) {
            if let (Some(g), Some(i)) = (g, col.find(r as u32, cur)) {
                self.cols[*g].push(&col.cells, i);
            }
        }
        for c in &mut self.cols {
            c.pad(row);
        }
    }
}

/// The rows of the run's segments (as listed when the export began: nothing logged after)
/// in step order, a row group at a time, each sent as it is written.
async fn write_file(
    state: AppState,
    run_id: String,
    segments: Vec<Segment>,
    kinds: BTreeMap<String, Kind>,
    out: Chunks,
) -> Result<(), ServerError> {
    let keys: Vec<(&str, Kind)> = kinds.iter().map(|(k, &v)| (k.as_str(), v)).collect();
    let schema = Arc::new(format::schema("history", &EXPORT_INTS, &keys)?);
    let props = Arc::new(format::properties(&EXPORT_INTS, &keys));
    let mut w = SerializedFileWriter::new(Vec::new(), schema, props)?;
    let position: BTreeMap<&str, usize> = kinds.keys().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let rows_per_group = (GROUP_CELLS / (kinds.len() + 2)).max(1);
    let mut group = Group::new(&kinds);
    let mut walk = Walk::new(&run_id, HISTORY_KIND, None, (0, i64::MAX as u64), segments);
    while let Some((tables, order)) = walk.next(Ctx::of(&state)).await? {
        let to: Vec<Vec<Option<usize>>> = tables
            .iter()
            .map(|t| {
                t.cols
                    .iter()
                    .map(|c| position.get(c.name.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut cursors: Vec<Vec<usize>> = tables.iter().map(|t| vec![0; t.cols.len()]).collect();
        for (t, r) in order {
            let t = t as usize;
            group.push(&tables[t], r as usize, &to[t], &mut cursors[t]);
            if group.steps.len() == rows_per_group && !send(&out, group.write(&mut w)?).await {
                return Ok(());
            }
        }
    }
    if !group.steps.is_empty() && !send(&out, group.write(&mut w)?).await {
        return Ok(());
    }
    send(&out, w.into_inner()?).await;
    Ok(())
}

/// `GET /api/v1/runs/{id}/history.parquet`: `_step`, `_timestamp` (UTC milliseconds) and a
/// column per key, zstd-compressed; the keys are found before the answer starts, so a bad run
/// is a clean error status, and the rows then stream.
pub async fn history_parquet(
    State(state): State<AppState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    owned_run(&state, &account, &id).await?;
    let segments = catalog::list(&state.db, &id, HISTORY_KIND, 0, i64::MAX as u64).await?;
    let kinds = kinds(&segments);
    let name = format!(
        "attachment; filename=\"{}.parquet\"",
        id.replace(['"', '\\'], "_")
    );
    let body = streamed::body(AHEAD, |out| write_file(state, id, segments, kinds, out));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.parquet"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
