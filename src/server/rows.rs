//! History and system rows as the API sends them: the segments of the step range merged in
//! step order, only the keys asked, and `samples=N` thinned per key by M4; at full resolution
//! streamed a group of segments at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ServerError};
use super::m4;
use super::segments::catalog;
use super::segments::read::{tables, Levels, Query};
use super::segments::table::Table;
use super::segments::walk::{in_order, At, Walk};
use super::segments::write::{COARSE, FINE};
use super::segments::Ctx;
use super::streamed::{self, send, Chunks};
use super::AppState;

/// Keys the API adds to every row; a bundle's own values under them are dropped.
pub const RESERVED: [&str; 2] = ["_step", "_timestamp"];

/// Rows a read may span before `samples=N` reads segments' pre-aggregates instead of their rows.
pub const EXACT_ROWS: u64 = 1 << 16;

/// Rows past which `samples=n` reads pre-aggregates: past [`EXACT_ROWS`], the finest level
/// whose buckets are at most as long as an M4 bucket (`samples=n` has `n / 4` of them), so
/// each M4 bucket spans a whole pre-aggregate bucket and at least `n` candidates remain.
fn levels(n: u64) -> Levels {
    let per_sample = |bucket: usize| EXACT_ROWS.max(n.saturating_mul(bucket as u64 / 4));
    Levels {
        fine_over: per_sample(FINE),
        coarse_over: per_sample(COARSE),
    }
}

/// A stored value as a number: a JSON number, or one of the strings `num_to_json` writes for
/// NaN and the infinities; `None` for anything else.
pub fn stored_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// A non-negative integer query parameter, or a 400 that names it.
fn number(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{name} must be a non-negative integer, not {v:?}"))
            })
        })
        .transpose()
}

/// A row to send and its members: (column, value index) in its table.
type Picked = (At, Vec<(usize, usize)>);

/// A key's values: (position in the merged view, column, value index) and (step, chart value).
type KeyPoints = (Vec<(u32, usize, usize)>, Vec<(u64, f64)>);

/// Per table and column, its name as JSON text and a walk position.
struct Cursors {
    names: Vec<Vec<String>>,
    at: Vec<Vec<usize>>,
}

impl Cursors {
    fn new(tables: &[Table]) -> Cursors {
        Cursors {
            names: tables
                .iter()
                .map(|t| {
                    t.cols
                        .iter()
                        .map(|c| serde_json::to_string(&c.name).unwrap_or_default())
                        .collect()
                })
                .collect(),
            at: tables.iter().map(|t| vec![0; t.cols.len()]).collect(),
        }
    }

    /// The columns of table `t` with a value at row `r`: `(column, value index)`.
    fn values(&mut self, tables: &[Table], (t, r): At) -> Vec<(usize, usize)> {
        let table = &tables[t as usize];
        let at = &mut self.at[t as usize];
        table
            .cols
            .iter()
            .zip(at.iter_mut())
            .enumerate()
            .filter_map(|(c, (col, cur))| col.find(r, cur).map(|i| (c, i)))
            .collect()
    }
}

/// Writes one row: `_step`, `_timestamp`, then `members` (column, value index) of table `t`.
fn write_row(
    out: &mut Vec<u8>,
    tables: &[Table],
    names: &[Vec<String>],
    (t, r): At,
    members: &[(usize, usize)],
) {
    let table = &tables[t as usize];
    let ts = table.ts[r as usize] as f64 / 1000.0;
    let ts = serde_json::to_string(&ts).unwrap_or_default();
    out.extend_from_slice(format!("{{\"_step\":{},\"_timestamp\":{ts}", table.steps[r as usize]).as_bytes());
    for &(c, i) in members {
        out.push(b',');
        out.extend_from_slice(names[t as usize][c].as_bytes());
        out.push(b':');
        table.cols[c].cells.write_json(i, out);
    }
    out.push(b'}');
}

/// The rows `samples=n` sends: the M4 picks of each key, a row keeping only the keys it was
/// picked for, with the members each keeps.
fn select(tables: &[Table], rows: &[At], samples: u64) -> (Cursors, Vec<Picked>) {
    let mut cur = Cursors::new(tables);
    // Per key: where each of its values is, and its (step, chart value).
    let mut points: HashMap<&str, KeyPoints> = HashMap::new();
    for (n, &at) in rows.iter().enumerate() {
        let table = &tables[at.0 as usize];
        for (c, i) in cur.values(tables, at) {
            let col = &table.cols[c];
            let (refs, pts) = points.entry(col.name.as_str()).or_default();
            refs.push((n as u32, c, i));
            pts.push((table.steps[at.1 as usize], col.cells.chart(i)));
        }
    }
    let n = usize::try_from(samples).unwrap_or(usize::MAX);
    let mut picks: Vec<(u32, &str, usize, usize)> = Vec::new();
    for (key, (refs, pts)) in &points {
        picks.extend(m4::m4(pts, n).into_iter().map(|p| {
            let (row, c, i) = refs[p];
            (row, *key, c, i)
        }));
    }
    picks.sort_unstable();
    let out = picks
        .chunk_by(|a, b| a.0 == b.0)
        .map(|group| {
            (
                rows[group[0].0 as usize],
                group.iter().map(|&(_, _, c, i)| (c, i)).collect(),
            )
        })
        .collect();
    (cur, out)
}

/// Rows of a full-resolution answer per chunk sent.
const CHUNK_ROWS: usize = 1 << 13;

/// Chunks a full-resolution answer runs ahead of a slow client.
const AHEAD: usize = 2;

/// `{"rows": [...]}` of a run's `kind` in step order; with `keys`, only those keys and only
/// rows that have one of them (an empty `keys=` means all keys, like no `keys`); `min_step` /
/// `max_step` bound the steps (inclusive) and `samples=N` thins each key to at most N rows by
/// M4, over the segments' pre-aggregates when the range spans enough rows ([`levels`]). A
/// full-resolution answer streams, a group of segments at a time.
pub async fn rows(
    state: &AppState,
    kind: &'static str,
    run_id: &str,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let keys: Option<HashSet<&str>> = q
        .get("keys")
        .map(|k| k.split(',').map(str::trim).filter(|k| !k.is_empty()).collect())
        .filter(|k: &HashSet<&str>| !k.is_empty());
    let min_step = number(q, "min_step")?.unwrap_or(0);
    let max_step = number(q, "max_step")?
        .unwrap_or(i64::MAX as u64)
        .min(i64::MAX as u64);
    let json = [(CONTENT_TYPE, "application/json")];
    let Some(samples) = number(q, "samples")? else {
        let segments = catalog::list(&state.db, run_id, kind, min_step, max_step).await?;
        let keys = keys.map(|k| k.into_iter().map(str::to_owned).collect());
        let walk = Walk::new(run_id, kind, keys, (min_step, max_step), segments);
        let state = state.clone();
        let body = streamed::body(AHEAD, |out| full(state, walk, out));
        return Ok((json, body).into_response());
    };
    let query = Query {
        kind,
        run_id,
        keys: keys.as_ref(),
        min_step,
        max_step,
        levels: Some(levels(samples)),
    };
    let tables = tables(Ctx::of(state), &query).await?;
    let out = tokio::task::spawn_blocking(move || {
        let order = in_order(&tables, min_step..=max_step, u64::MAX, None);
        let (cur, picked) = select(&tables, &order, samples);
        let mut out = b"{\"rows\":[".to_vec();
        for (n, (at, members)) in picked.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_row(&mut out, &tables, &cur.names, *at, members);
        }
        out.extend_from_slice(b"]}");
        out
    })
    .await
    .map_err(ServerError::from)?;
    Ok((json, out).into_response())
}

/// Streams a full-resolution answer: each group of the walk, [`CHUNK_ROWS`] rows a chunk,
/// written off the async threads.
async fn full(state: AppState, mut walk: Walk, out: Chunks) -> Result<(), ServerError> {
    let filtered = walk.filtered();
    let mut first = true;
    if !send(&out, b"{\"rows\":[".to_vec()).await {
        return Ok(());
    }
    while let Some((tables, order)) = walk.next(Ctx::of(&state)).await? {
        let tables = Arc::new(tables);
        let mut cur = Cursors::new(&tables);
        for rows in order.chunks(CHUNK_ROWS) {
            let (rows, t) = (rows.to_vec(), tables.clone());
            let (chunk, back) = tokio::task::spawn_blocking(move || {
                let mut chunk = Vec::new();
                for at in rows {
                    let members = cur.values(&t, at);
                    if filtered && members.is_empty() {
                        continue;
                    }
                    if !std::mem::take(&mut first) {
                        chunk.push(b',');
                    }
                    write_row(&mut chunk, &t, &cur.names, at, &members);
                }
                (chunk, (cur, first))
            })
            .await?;
            (cur, first) = back;
            if !chunk.is_empty() && !send(&out, chunk).await {
                return Ok(());
            }
        }
    }
    send(&out, b"]}".to_vec()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::segments::{testing, HISTORY_KIND};
    use super::*;

    /// `(step, key, chart value)` of every value `samples=n` sends of `tables`.
    fn sampled(tables: &[Table], n: u64) -> Vec<(u64, String, f64)> {
        let order = in_order(tables, 0..=u64::MAX, u64::MAX, None);
        let (_, picked) = select(tables, &order, n);
        let mut out = Vec::new();
        for ((t, r), members) in picked {
            let table = &tables[t as usize];
            for (c, i) in members {
                let col = &table.cols[c];
                out.push((table.steps[r as usize], col.name.clone(), col.cells.chart(i)));
            }
        }
        out
    }

    #[tokio::test]
    async fn sampled_reads_take_fine_or_coarse_pre_aggregates_and_keep_every_spike_in_real_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        let ctx = testing::ctx(&db, &store);
        let value = |i: u64| match i {
            12_345 => 1000.0,
            17_777 => -5.0,
            61_234 => 500.0,
            _ => 1.0 / (i + 1) as f64,
        };
        // Four long segments with both pre-aggregates, then a short one with the fine one only
        // (as a segment made before the coarse level existed reads).
        let bounds = [0, 20_000, 40_000, 60_000, 80_000, 85_000u64];
        for w in bounds.windows(2) {
            let rows: Vec<(u64, u64, i64, String)> = (w[0]..w[1])
                .map(|i| {
                    let json = format!(r#"{{"loss":{},"acc":{}}}"#, value(i), i as f64);
                    (i, i, i as i64, json)
                })
                .collect();
            let segment = testing::add(ctx, &Table::from_json_rows(&rows).unwrap()).await;
            assert!(segment.agg.is_some(), "a long segment has a fine pre-aggregate");
            let long = w[1] - w[0] > 4 * COARSE as u64;
            assert_eq!(segment.agg2.is_some(), long, "segment {w:?}");
        }
        let keys: HashSet<&str> = ["loss"].into();
        // The policy: a read of fewer than EXACT_ROWS rows is exact; 1,000 samples of a 1 M-step
        // run take the fine level, of a 2 M-step run the coarse one.
        let l = levels(1000);
        assert_eq!(l.fine_over, 64_000.max(EXACT_ROWS));
        assert!(l.coarse_over > 1_000_000 && l.coarse_over < 2_000_000, "{l:?}");
        let mut q = Query {
            kind: HISTORY_KIND,
            run_id: "r",
            keys: Some(&keys),
            min_step: 0,
            max_step: i64::MAX as u64,
            levels: Some(levels(2000)),
        };
        let read = |tables: &[Table]| tables.iter().map(Table::len).sum::<usize>();
        let exact = tables(ctx, &q).await.unwrap();
        assert_eq!(read(&exact), 85_000, "2,000 samples of 85,000 rows: every row");
        q.levels = Some(Levels {
            fine_over: 0,
            coarse_over: u64::MAX,
        });
        let fine = tables(ctx, &q).await.unwrap();
        assert!(
            read(&fine) <= 85_000 * 4 / FINE + 20,
            "fine: {} rows",
            read(&fine)
        );
        assert!(read(&fine) > 85_000 * 2 / FINE, "fine: {} rows", read(&fine));
        q.levels = Some(Levels {
            fine_over: 0,
            coarse_over: 0,
        });
        let coarse = tables(ctx, &q).await.unwrap();
        let most = 80_000 * 4 / COARSE + 5_000 * 4 / FINE + 20;
        assert!(read(&coarse) <= most, "coarse: {} rows", read(&coarse));
        assert!(coarse.iter().all(|t| t.cols.iter().all(|c| c.name == "loss")));
        for (tables, n) in [(&fine, 40), (&coarse, 10)] {
            let picks = sampled(tables, n);
            assert!(
                (n as usize / 2..=4 * n as usize).contains(&picks.len()),
                "{} samples of {n}",
                picks.len()
            );
            assert!(
                picks.iter().all(|(step, _, v)| *v == value(*step)),
                "a sample is not a real row"
            );
            let steps: Vec<u64> = picks.iter().map(|p| p.0).collect();
            for must in [0, 12_345, 17_777, 61_234, 84_999] {
                assert!(steps.contains(&must), "step {must} is missing from {n} samples");
            }
            assert!(steps.windows(2).all(|w| w[0] < w[1]));
        }
        // Inside a range that cuts segments, the cut ones are read whole, so its ends are exact.
        q.min_step = 27_000;
        q.max_step = 53_000;
        let cut = tables(ctx, &q).await.unwrap();
        assert_eq!(read(&cut), 40_000);
    }
}
