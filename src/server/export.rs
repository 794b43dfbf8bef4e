//! `GET /api/v1/runs/{id}/history.parquet`: a run's whole history as one Parquet file, streamed
//! row group by row group, so memory stays at one group however long the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::{Map, Value as JsonValue};
use sqlx::{Any, AnyConnection, Row, Transaction};
use tokio::sync::mpsc;

use super::auth::Account;
use super::error::{ApiError, ServerError};
use super::rows::stored_number;
use super::runs::owned_run;
use super::AppState;

/// Cells (rows × columns) of one row group: what the export holds in memory at a time.
const GROUP_CELLS: usize = 1 << 20;

/// Row groups written ahead of a slow client.
const AHEAD: usize = 2;

fn corrupt(e: serde_json::Error) -> ServerError {
    ServerError::Corrupt(format!("a stored history row: {e}"))
}

/// How a key is written: a DOUBLE column when every value of it is a number (NaN and the
/// infinities included), otherwise a UTF8 column of each value's JSON text.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Number,
    Json,
}

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

    fn push(&mut self, v: Option<&JsonValue>) {
        match self {
            Column::Number { values, defs } => {
                let n = v.and_then(stored_number);
                defs.push(i16::from(n.is_some()));
                values.extend(n);
            }
            Column::Json { values, defs } => {
                defs.push(i16::from(v.is_some()));
                values.extend(v.map(|v| ByteArray::from(v.to_string().into_bytes())));
            }
        }
    }
}

/// The first pass: every key of the run's history and its [`Kind`].
async fn kinds(db: &mut AnyConnection, run_id: &str) -> Result<BTreeMap<String, Kind>, ServerError> {
    let mut kinds = BTreeMap::new();
    let mut rows = sqlx::query("SELECT data FROM history WHERE run_id = $1")
        .bind(run_id)
        .fetch(db);
    while let Some(r) = rows.try_next().await? {
        let data: String = r.try_get(0)?;
        let row: Map<String, JsonValue> = serde_json::from_str(&data).map_err(corrupt)?;
        for (k, v) in row {
            let kind = if stored_number(&v).is_some() {
                Kind::Number
            } else {
                Kind::Json
            };
            let known = kinds.entry(k).or_insert(kind);
            if kind == Kind::Json {
                *known = Kind::Json;
            }
        }
    }
    Ok(kinds)
}

fn schema(kinds: &BTreeMap<String, Kind>) -> parquet::errors::Result<Type> {
    let step = Type::primitive_type_builder("_step", Physical::INT64)
        .with_repetition(Repetition::REQUIRED)
        .build()?;
    let ts = Type::primitive_type_builder("_timestamp", Physical::INT64)
        .with_repetition(Repetition::REQUIRED)
        .with_logical_type(Some(LogicalType::Timestamp {
            is_adjusted_to_u_t_c: true,
            unit: TimeUnit::MILLIS,
        }))
        .build()?;
    let mut fields = vec![Arc::new(step), Arc::new(ts)];
    for (name, kind) in kinds {
        let col = match kind {
            Kind::Number => Type::primitive_type_builder(name, Physical::DOUBLE),
            Kind::Json => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                .with_logical_type(Some(LogicalType::String)),
        };
        fields.push(Arc::new(col.with_repetition(Repetition::OPTIONAL).build()?));
    }
    Type::group_type_builder("history").with_fields(fields).build()
}

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
        let mut rg = w.next_row_group()?;
        for (i, data) in [&self.steps, &self.ts].into_iter().enumerate() {
            let mut col = rg
                .next_column()?
                .ok_or_else(|| parquet::errors::ParquetError::General(format!("no column {i}")))?;
            col.typed::<Int64Type>().write_batch(data, None, None)?;
            col.close()?;
        }
        for c in &self.cols {
            let mut col = rg
                .next_column()?
                .ok_or_else(|| parquet::errors::ParquetError::General("too few columns".into()))?;
            match c {
                Column::Number { values, defs } => {
                    col.typed::<DoubleType>().write_batch(values, Some(defs), None)?;
                }
                Column::Json { values, defs } => {
                    col.typed::<ByteArrayType>()
                        .write_batch(values, Some(defs), None)?;
                }
            }
            col.close()?;
        }
        rg.close()?;
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
}

/// The second pass, in the first one's transaction: the rows in step order, a row group at a time, each sent as it is written.
async fn write_file(
    mut db: Transaction<'static, Any>,
    run_id: String,
    kinds: BTreeMap<String, Kind>,
    out: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ServerError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut w = SerializedFileWriter::new(Vec::new(), Arc::new(schema(&kinds)?), Arc::new(props))?;
    let names: Vec<&String> = kinds.keys().collect();
    let rows_per_group = (GROUP_CELLS / (names.len() + 2)).max(1);
    let mut group = Group::new(&kinds);
    let mut rows = sqlx::query("SELECT step, ts_ms, data FROM history WHERE run_id = $1 ORDER BY step, seq")
        .bind(&run_id)
        .fetch(&mut *db);
    while let Some(r) = rows.try_next().await? {
        let data: String = r.try_get(2)?;
        let row: Map<String, JsonValue> = serde_json::from_str(&data).map_err(corrupt)?;
        group.steps.push(r.try_get(0)?);
        group.ts.push(r.try_get(1)?);
        for (name, col) in names.iter().zip(&mut group.cols) {
            col.push(row.get(name.as_str()));
        }
        if group.steps.len() == rows_per_group && !send(out, group.write(&mut w)?).await {
            return Ok(());
        }
    }
    if !group.steps.is_empty() && !send(out, group.write(&mut w)?).await {
        return Ok(());
    }
    send(out, w.into_inner()?).await;
    Ok(())
}

/// Sends the next bytes of the file; false when the client has gone away (nothing to do).
async fn send(out: &mpsc::Sender<Result<Bytes, std::io::Error>>, bytes: Vec<u8>) -> bool {
    out.send(Ok(Bytes::from(bytes))).await.is_ok()
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
    // One read transaction for both passes: they see the same rows however ingest goes on.
    let mut db = state.db.begin().await?;
    let kinds = kinds(&mut db, &id).await?;
    let (tx, rx) = mpsc::channel(AHEAD);
    let name = format!(
        "attachment; filename=\"{}.parquet\"",
        id.replace(['"', '\\'], "_")
    );
    tokio::spawn(async move {
        if let Err(e) = write_file(db, id, kinds, &tx).await {
            log::error!("{e}");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut resp = Body::from_stream(body).into_response();
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
