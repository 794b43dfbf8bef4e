//! Ingesting a bundle exactly once: records below the run's sequence high-water mark are
//! skipped, a bundle that starts past it is refused, and everything lands in one transaction.
//! The unit of exclusion is the run: the transaction advances its high-water mark only from
//! the value it read (a conditional UPDATE), and starts over when another ingest moved it.
//! History and system rows become segment objects first, written under fresh keys; the same
//! transaction adds their catalog rows, and objects of a transaction that did not commit are
//! deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::db::{now_ms, RunRow};
use super::error::{ApiError, ServerError};
use super::parts::PartsReader;
use super::rows::RESERVED;
use super::segments::table::Table;
use super::segments::write::{build, Built};
use super::segments::{compact, HISTORY_KIND, SYSTEM_KIND};
use super::store::is_sha256;
use super::AppState;
use crate::core::bundle::{
    read_bundle, read_bundle_from, sha256_hex, Budget, BundleError, Columns, Limits, Manifest, HISTORY,
    SYSTEM,
};
use crate::core::record::{Meta, RunState};
use crate::core::sync::Ack;

/// The header carrying a bundle's hex SHA-256.
const SHA_HEADER: &str = "tidelog-bundle-sha256";

/// Transactions tried before a bundle whose run keeps moving is answered 503.
const ATTEMPTS: usize = 5;

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

/// A bundle unpacked and encoded off the async threads, ready for the transaction.
struct Prepared {
    sha: String,
    manifest: Manifest,
    records: Vec<(u64, Meta)>,
    history: Arc<Columns>,
    system: Arc<Columns>,
    /// What is left of the decode budget, for the segments.
    budget: Budget,
    last_values: Vec<(u64, String, Json)>,
    /// Contents of the saved files the records refer to, by sha256 (checked by the reader).
    blobs: BTreeMap<String, Vec<u8>>,
    /// The sha256 of every blob the bundle carries.
    carried: BTreeSet<String>,
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

/// Where a bundle's bytes are.
pub enum Source {
    /// A request body, in memory (at most the request limit).
    Bytes(Bytes),
    /// A received tus upload, its parts read from the object store as it is decoded.
    Parts(PartsReader),
}

/// The hex SHA-256 of what `from` reads, read in pieces. Blocking.
fn hash_reader(mut from: impl Read) -> Result<String, ServerError> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut from, &mut hasher).map_err(|e| ServerError::io("reading an upload's parts", e))?;
    Ok(format!("{:x}", hasher.finalize()))
}

fn check_sha(sha: &str, expected: Option<&str>) -> Result<(), ApiError> {
    if expected.is_some_and(|e| e != sha) {
        return Err(bad(format!("checksum mismatch: the body's sha256 is {sha}")));
    }
    Ok(())
}

fn prepare(src: Source, expected: Option<&str>, limits: &Limits) -> Result<Prepared, ApiError> {
    let (sha, mut contents) = match src {
        Source::Bytes(bytes) => {
            let sha = sha256_hex(&bytes);
            check_sha(&sha, expected)?;
            (sha, read_bundle(&bytes, limits)?)
        }
        Source::Parts(parts) => {
            let sha = hash_reader(parts.again())?;
            check_sha(&sha, expected)?;
            (sha, read_bundle_from(BufReader::new(parts), limits)?)
        }
    };
    if i64::try_from(contents.manifest.seq_end).is_err() {
        return Err(bad("sequence numbers out of range"));
    }
    let last_values = last_values(&contents.history);
    let mut records = contents.records;
    records.sort_by_key(|(seq, _)| *seq);
    let carried: BTreeSet<String> = contents.files.keys().cloned().collect();
    let mut blobs = BTreeMap::new();
    for (_, meta) in &records {
        let Meta::File(f) = meta else { continue };
        if let Some(data) = contents.files.remove(&f.sha256) {
            if data.len() as u64 != f.size {
                return Err(bad(format!("file {:?} does not match its size", f.path)));
            }
            blobs.insert(f.sha256.clone(), data);
        }
    }
    Ok(Prepared {
        sha,
        manifest: contents.manifest,
        records,
        history: Arc::new(contents.history),
        system: Arc::new(contents.system),
        budget: contents.budget,
        last_values,
        blobs,
        carried,
    })
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

/// Stores a bundle for `account` exactly once; `expected` is its announced SHA-256. The
/// caller holds an ingest slot ([`super::Shared::ingests`]), which bounds the memory in use.
pub async fn ingest(
    state: &AppState,
    account: &str,
    src: Source,
    expected: Option<String>,
) -> Result<Ingested, ApiError> {
    let limits = state.limits;
    let mut p = tokio::task::spawn_blocking(move || prepare(src, expected.as_deref(), &limits))
        .await
        .map_err(ServerError::from)??;
    // Content-addressed blobs are stored first, outside any transaction, so no lock is held
    // across their writes; a refused bundle leaves at most blobs nobody owns.
    for (sha, data) in std::mem::take(&mut p.blobs) {
        state.store.put_blob(&sha, data).await?;
    }
    for _ in 0..ATTEMPTS {
        let seen: Option<String> = sqlx::query_scalar("SELECT sha256 FROM bundles WHERE sha256 = $1")
            .bind(&p.sha)
            .fetch_optional(&state.db)
            .await?;
        let from = match RunRow::load(&state.db, &p.manifest.run.id).await? {
            Some(run) => run.next_seq,
            None => 0,
        };
        let built = if seen.is_some() {
            Vec::new()
        } else {
            segments(&p, from).await?
        };
        for (i, b) in built.iter().enumerate() {
            if let Err(e) = b.put(&state.store).await {
                for done in &built[..i] {
                    done.discard(&state.store).await;
                }
                return Err(e.into());
            }
        }
        let res = commit(state, account, &p, from, &built).await;
        if !matches!(res, Ok(Some(Ingested { new: true, .. }))) {
            for b in &built {
                b.discard(&state.store).await;
            }
        }
        if let Some(done) = res? {
            if done.new {
                state.written.notify_one();
                compact::after_ingest(state, &p.manifest.run.id);
            }
            super::access_log::ingested(state, account, &p.manifest.run.id, &p.sha, &done);
            return Ok(done);
        }
    }
    Err(ApiError::Busy(format!(
        "run {:?} is being written by other uploads",
        p.manifest.run.id
    )))
}

/// True when `account` owns blob `sha`: it uploaded the bytes, or a run of its refers to them.
async fn owns_blob(conn: &mut sqlx::AnyConnection, account: &str, sha: &str) -> Result<bool, ApiError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM blob_owners WHERE account = $1 AND sha256 = $2")
            .bind(account)
            .bind(sha)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.is_some())
}

fn over(entry: &'static str) -> impl Fn(crate::core::bundle::OverBudget) -> ApiError {
    move |over| ApiError::Bundle(BundleError::OverBudget { entry, over })
}

/// The segments of the bundle's history and system rows from sequence number `from` on,
/// encoded off the async threads within what is left of the decode budget.
async fn segments(p: &Prepared, from: u64) -> Result<Vec<Built>, ApiError> {
    let (history, system, mut budget) = (p.history.clone(), p.system.clone(), p.budget.clone());
    let run_id = p.manifest.run.id.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (kind, entry, cols) in [(HISTORY_KIND, HISTORY, &history), (SYSTEM_KIND, SYSTEM, &system)] {
            let table = Table::from_columns(cols, from, &mut budget).map_err(over(entry))?;
            out.extend(build(&run_id, kind, &table)?);
        }
        Ok(out)
    })
    .await
    .map_err(ServerError::from)?
}

/// One transaction of [`ingest`], whose segments `built` hold the rows from `from` on; `None`
/// when another ingest advanced the run past `from` meanwhile.
async fn commit(
    state: &AppState,
    account: &str,
    p: &Prepared,
    from: u64,
    built: &[Built],
) -> Result<Option<Ingested>, ApiError> {
    let total_rows = (p.history.seqs.len() + p.system.seqs.len()) as u64;
    // SQLite: take the write lock at BEGIN, so a transaction never fails to upgrade its read.
    let mut tx = super::db::begin_write(&state.db, state.sqlite).await?;
    let existing = RunRow::load(&mut *tx, &p.manifest.run.id).await?;
    if existing.as_ref().is_some_and(|r| r.account != account) {
        return Err(ApiError::Forbidden(p.manifest.run.id.clone()));
    }
    if existing.is_none() {
        super::delete::refuse_deleted(&mut tx, &p.manifest.run.id).await?;
    }
    let seen: Option<String> = sqlx::query_scalar("SELECT sha256 FROM bundles WHERE sha256 = $1")
        .bind(&p.sha)
        .fetch_optional(&mut *tx)
        .await?;
    if seen.is_some() {
        return Ok(Some(Ingested {
            ack: Ack {
                rows_added: 0,
                duplicates_skipped: total_rows,
            },
            next_seq: existing.map_or(0, |r| r.next_seq),
            new: false,
        }));
    }
    let now = now_ms();
    let read_seq = existing.as_ref().map(|r| r.next_seq);
    let mut run = existing.unwrap_or_else(|| new_run(&p.manifest, account, now));
    if run.next_seq != from {
        return Ok(None);
    }
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
                // A client leaves out blobs the server acknowledged before, but only the
                // account's own: anyone else's would be a read of bytes it never had.
                let owned = p.carried.contains(&f.sha256)
                    || (is_sha256(&f.sha256) && owns_blob(&mut tx, account, &f.sha256).await?);
                if !owned {
                    return Err(bad(format!(
                        "file {:?} refers to blob {} which the bundle does not carry and this \
                         account has not uploaded",
                        f.path, f.sha256
                    )));
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
    summary.extend(p.last_values.iter().filter(|(s, ..)| *s >= from).cloned());
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

    for (path, sha, size) in &files {
        sqlx::query(
            "INSERT INTO files (run_id, path, sha256, size) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (run_id, path) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size",
        )
        .bind(&run.id)
        .bind(path)
        .bind(sha)
        .bind(i64::try_from(*size).map_err(bad)?)
        .execute(&mut *tx)
        .await?;
        if p.carried.contains(sha) {
            sqlx::query("INSERT INTO blob_owners (account, sha256) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(account)
                .bind(sha)
                .execute(&mut *tx)
                .await?;
        }
    }
    let mut rows_added = 0;
    for b in built {
        b.segment.insert(&mut tx).await?;
        rows_added += b.segment.rows;
    }
    if !run.save_if(&mut *tx, read_seq).await? {
        return Ok(None);
    }
    let stored = sqlx::query(
        "INSERT INTO bundles (sha256, run_id, rows_added, created) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&p.sha)
    .bind(&run.id)
    .bind(i64::try_from(rows_added).map_err(bad)?)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if stored.rows_affected() == 0 {
        return Ok(None);
    }
    super::delete::carried_blobs_kept(
        &state.store,
        files.iter().map(|f| &f.1).filter(|s| p.carried.contains(*s)),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Ingested {
        ack: Ack {
            rows_added,
            duplicates_skipped: total_rows - rows_added,
        },
        next_seq: run.next_seq,
        new: true,
    }))
}
