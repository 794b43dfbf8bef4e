//! Ingesting a bundle exactly once: records below the run's sequence high-water mark are
//! skipped, a bundle that starts past it is refused, and everything lands in one transaction.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Map, Value as Json};
use sqlx::AnyConnection;

use super::db::{now_ms, RunRow};
use super::disk::is_sha256;
use super::error::{ApiError, ServerError};
use super::AppState;
use crate::core::bundle::{read_bundle, sha256_hex, Columns, Limits, Manifest};
use crate::core::record::{Meta, RunState};
use crate::core::sync::Ack;
use crate::core::value::{num_to_json, Value};

/// The header carrying a bundle's hex SHA-256.
const SHA_HEADER: &str = "tidelog-bundle-sha256";

/// Rows per INSERT statement; one SQL text per table, so the prepared statement is reused.
const BATCH: usize = 500;

/// Keys the API adds to every row; a bundle's own values under them are dropped.
const RESERVED: [&str; 2] = ["_step", "_timestamp"];

/// What an ingest did.
#[derive(Debug)]
pub struct Ingested {
    /// Rows added and skipped.
    pub ack: Ack,
    /// The run's high-water mark afterwards.
    pub next_seq: u64,
    /// False when this exact bundle had been ingested before.
    pub new: bool,
}

/// Rows of one table; the stored JSON of every row lives in one buffer, row `i` ending at
/// `ends[i]`.
struct Rows {
    seqs: Vec<u64>,
    steps: Vec<u64>,
    ts: Vec<i64>,
    json: String,
    ends: Vec<usize>,
}

impl Rows {
    fn data(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.json[start..self.ends[i]]
    }
}

/// A bundle unpacked and encoded off the async threads, ready for the transaction.
struct Prepared {
    sha: String,
    manifest: Manifest,
    records: Vec<(u64, Meta)>,
    history: Rows,
    system: Rows,
    last_values: Vec<(u64, String, Json)>,
    /// Saved files' contents by sha256 (the reader checked each against its name).
    files: BTreeMap<String, Vec<u8>>,
}

/// A bundle's expected SHA-256 from `Tidelog-Bundle-Sha256`, lowercased; absent is fine.
pub fn expected_sha(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(SHA_HEADER)
        .map(|v| {
            v.to_str()
                .ok()
                .map(str::to_ascii_lowercase)
                .filter(|s| is_sha256(s))
                .ok_or_else(|| ApiError::BadRequest("Tidelog-Bundle-Sha256 must be 64 hex digits".into()))
        })
        .transpose()
}

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(why.to_string())
}

fn write_value(buf: &mut Vec<u8>, v: &Value) -> serde_json::Result<()> {
    match v {
        Value::Num(x) if x.is_finite() => serde_json::to_writer(buf, x),
        Value::Num(x) => serde_json::to_writer(buf, &num_to_json(*x)),
        Value::Bool(b) => serde_json::to_writer(buf, b),
        Value::Str(s) => serde_json::to_writer(buf, s),
        Value::Json(j) => serde_json::to_writer(buf, j),
    }
}

/// Encodes every row as a JSON object, row by row into one buffer: each column keeps a cursor
/// on its ascending row indices.
fn encode_rows(cols: Columns) -> Result<Rows, ApiError> {
    let mut columns = Vec::new();
    for col in cols.cols.iter().filter(|c| !RESERVED.contains(&c.name.as_str())) {
        let key = serde_json::to_string(&col.name).map_err(bad)?;
        columns.push((key, col.rows.iter().zip(&col.values).peekable()));
    }
    let mut buf = Vec::with_capacity(cols.len() * (2 + columns.len() * 24));
    let mut ends = Vec::with_capacity(cols.len());
    for r in 0..cols.len() as u32 {
        buf.push(b'{');
        let open = buf.len();
        for (key, values) in &mut columns {
            if let Some((_, v)) = values.next_if(|(&at, _)| at == r) {
                if buf.len() > open {
                    buf.push(b',');
                }
                buf.extend_from_slice(key.as_bytes());
                buf.push(b':');
                write_value(&mut buf, v).map_err(bad)?;
            }
        }
        buf.push(b'}');
        ends.push(buf.len());
    }
    Ok(Rows {
        seqs: cols.seqs,
        steps: cols.steps,
        ts: cols.ts,
        json: String::from_utf8(buf).map_err(bad)?,
        ends,
    })
}

/// The last value of each history key with the sequence number of its row.
fn last_values(cols: &Columns) -> Vec<(u64, String, Json)> {
    cols.cols
        .iter()
        .filter(|c| !RESERVED.contains(&c.name.as_str()))
        .filter_map(|c| {
            let (&r, v) = c.rows.last().zip(c.values.last())?;
            let seq = *cols.seqs.get(r as usize)?;
            Some((seq, c.name.clone(), v.to_json()))
        })
        .collect()
}

fn prepare(bytes: &[u8], expected: Option<&str>, limits: &Limits) -> Result<Prepared, ApiError> {
    let sha = sha256_hex(bytes);
    if expected.is_some_and(|e| e != sha) {
        return Err(bad(format!("checksum mismatch: the body's sha256 is {sha}")));
    }
    let contents = read_bundle(bytes, limits)?;
    if i64::try_from(contents.manifest.seq_end).is_err() {
        return Err(bad("sequence numbers out of range"));
    }
    let last_values = last_values(&contents.history);
    let mut records = contents.records;
    records.sort_by_key(|(seq, _)| *seq);
    Ok(Prepared {
        sha,
        manifest: contents.manifest,
        records,
        history: encode_rows(contents.history)?,
        system: encode_rows(contents.system)?,
        last_values,
        files: contents.files,
    })
}

fn int(v: u64) -> Result<i64, ApiError> {
    i64::try_from(v).map_err(|_| bad("number out of range"))
}

/// A multi-row INSERT of `n` rows. SQLite gets anonymous `?` placeholders: it looks each
/// `$n` up by name, linearly, which makes a 2,500-parameter statement quadratic.
fn insert_sql(table: &str, n: usize, sqlite: bool) -> String {
    let mut sql = format!("INSERT INTO {table} (run_id, seq, step, ts_ms, data) VALUES ");
    for i in 0..n {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for c in 0..5 {
            if c > 0 {
                sql.push_str(", ");
            }
            if sqlite {
                sql.push('?');
            } else {
                sql.push_str(&format!("${}", i * 5 + c + 1));
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// Inserts the rows with `seq >= from`; returns how many were new.
async fn insert_rows(
    conn: &mut AnyConnection,
    sqlite: bool,
    table: &str,
    run_id: &str,
    rows: &Rows,
    from: u64,
) -> Result<u64, ApiError> {
    let todo: Vec<usize> = (0..rows.seqs.len()).filter(|&i| rows.seqs[i] >= from).collect();
    let full = insert_sql(table, BATCH, sqlite);
    let mut added = 0;
    for chunk in todo.chunks(BATCH) {
        let partial;
        let sql = if chunk.len() == BATCH {
            &full
        } else {
            partial = insert_sql(table, chunk.len(), sqlite);
            &partial
        };
        let mut q = sqlx::query(sql);
        for &i in chunk {
            q = q
                .bind(run_id)
                .bind(int(rows.seqs[i])?)
                .bind(int(rows.steps[i])?)
                .bind(rows.ts[i])
                .bind(rows.data(i));
        }
        added += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(added)
}

fn new_run(m: &Manifest, account: &str, now: i64) -> RunRow {
    RunRow {
        id: m.run.id.clone(),
        account: account.to_owned(),
        project: m.run.project.clone(),
        entity: m.run.entity.clone(),
        name: m.run.name.clone(),
        tags: m.run.tags.clone(),
        notes: m.run.notes.clone(),
        state: m.state.as_str().to_owned(),
        exit_code: None,
        config: Map::new(),
        summary: Map::new(),
        created_ms: m.run.created_ms,
        updated_ms: now,
        next_seq: 0,
    }
}

/// Stores a bundle for `account` exactly once; `expected` is its announced SHA-256.
pub async fn ingest(
    state: &AppState,
    account: &str,
    bytes: Bytes,
    expected: Option<String>,
) -> Result<Ingested, ApiError> {
    let limits = state.limits;
    let mut p = tokio::task::spawn_blocking(move || prepare(&bytes, expected.as_deref(), &limits))
        .await
        .map_err(ServerError::from)??;
    let total_rows = (p.history.seqs.len() + p.system.seqs.len()) as u64;
    let _serial = state.ingest_lock.lock().await;
    let mut tx = state.db.begin().await?;
    let existing = RunRow::load(&mut *tx, &p.manifest.run.id).await?;
    if existing.as_ref().is_some_and(|r| r.account != account) {
        return Err(ApiError::Forbidden(p.manifest.run.id.clone()));
    }
    let seen: Option<String> = sqlx::query_scalar("SELECT sha256 FROM bundles WHERE sha256 = $1")
        .bind(&p.sha)
        .fetch_optional(&mut *tx)
        .await?;
    if seen.is_some() {
        return Ok(Ingested {
            ack: Ack {
                rows_added: 0,
                duplicates_skipped: total_rows,
            },
            next_seq: existing.map_or(0, |r| r.next_seq),
            new: false,
        });
    }
    let now = now_ms();
    let mut run = existing.unwrap_or_else(|| new_run(&p.manifest, account, now));
    let from = run.next_seq;
    if p.manifest.seq_start > from {
        return Err(ApiError::Gap { next_seq: from });
    }

    let mut finished = false;
    let mut summary: Vec<(u64, String, Json)> = Vec::new();
    let mut files = Vec::new();
    for (seq, meta) in p.records.iter().filter(|(s, _)| *s >= from) {
        match meta {
            Meta::Start(info) => {
                run.name.clone_from(&info.name);
                run.tags.clone_from(&info.tags);
                run.notes.clone_from(&info.notes);
                run.project.clone_from(&p.manifest.run.project);
                run.entity.clone_from(&p.manifest.run.entity);
            }
            Meta::Config { update } => run.config.extend(update.clone()),
            Meta::Summary { update } => {
                summary.extend(update.iter().map(|(k, v)| (*seq, k.clone(), v.clone())));
            }
            Meta::File(f) => {
                match p.files.get(&f.sha256) {
                    Some(data) if data.len() as u64 != f.size => {
                        return Err(bad(format!("file {:?} does not match its size", f.path)));
                    }
                    Some(_) => {}
                    // Content-addressed: a client leaves out blobs the server acknowledged before.
                    None if is_sha256(&f.sha256) && state.disk.blob_path(&f.sha256).is_file() => {}
                    None => return Err(bad(format!("file {:?} is missing from the bundle", f.path))),
                }
                files.push((f.path.clone(), f.sha256.clone(), f.size));
            }
            Meta::Finish { exit_code, .. } => {
                let st = if *exit_code == 0 {
                    RunState::Finished
                } else {
                    RunState::Failed
                };
                run.state = st.as_str().to_owned();
                run.exit_code = Some(i64::from(*exit_code));
                finished = true;
            }
        }
    }
    summary.extend(
        std::mem::take(&mut p.last_values)
            .into_iter()
            .filter(|(s, ..)| *s >= from),
    );
    summary.sort_by_key(|(seq, ..)| *seq);
    run.summary.extend(summary.into_iter().map(|(_, k, v)| (k, v)));
    let done = ["finished", "failed"].contains(&run.state.as_str());
    // New records carry the client's view of the state; a bundle without records (a run
    // synced while running, whose process then died) may only move `running` to an end.
    let ended = run.state == RunState::Running.as_str() && p.manifest.state != RunState::Running;
    if !finished && !done && (p.manifest.seq_end > from || ended) {
        run.state = p.manifest.state.as_str().to_owned();
    }
    run.next_seq = from.max(p.manifest.seq_end);
    run.updated_ms = now;

    let blobs: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter_map(|(_, sha, _)| Some((sha.clone(), p.files.remove(sha)?)))
        .collect();
    let disk = state.disk.clone();
    tokio::task::spawn_blocking(move || blobs.iter().try_for_each(|(sha, data)| disk.put_blob(sha, data)))
        .await
        .map_err(ServerError::from)??;
    for (path, sha, size) in &files {
        sqlx::query(
            "INSERT INTO files (run_id, path, sha256, size) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size",
        )
        .bind(&run.id)
        .bind(path)
        .bind(sha)
        .bind(int(*size)?)
        .execute(&mut *tx)
        .await?;
    }
    let rows_added = insert_rows(&mut tx, state.sqlite, "history", &run.id, &p.history, from).await?
        + insert_rows(&mut tx, state.sqlite, "system", &run.id, &p.system, from).await?;
    run.save(&mut *tx).await?;
    sqlx::query("INSERT INTO bundles (sha256, run_id, rows_added, created) VALUES ($1, $2, $3, $4)")
        .bind(&p.sha)
        .bind(&run.id)
        .bind(int(rows_added)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    state.written.notify_one();
    Ok(Ingested {
        ack: Ack {
            rows_added,
            duplicates_skipped: total_rows - rows_added,
        },
        next_seq: run.next_seq,
        new: true,
    })
}
