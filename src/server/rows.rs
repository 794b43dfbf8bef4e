//! History and system rows as the API sends them: the segments of the step range merged in
//! step order, only the keys asked, and `samples=N` thinned per key by M4.

use std::collections::{HashMap, HashSet};

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::m4;
use super::segments::read::{tables, Query};
use super::segments::table::Table;
use super::segments::write::FINE;
use super::segments::Ctx;
use super::AppState;

/// Keys the API adds to every row; a bundle's own values under them are dropped.
pub const RESERVED: [&str; 2] = ["_step", "_timestamp"];

/// Rows a read may span before `samples=N` reads segments' pre-aggregates instead of their rows.
pub const EXACT_ROWS: u64 = 1 << 18;

/// Rows past which `samples=n` reads pre-aggregates: [`EXACT_ROWS`], and at least [`FINE`]
/// rows per sample, so that each M4 bucket spans several pre-aggregate buckets.
fn coarse_over(n: u64) -> u64 {
    EXACT_ROWS.max(n.saturating_mul(FINE as u64))
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

/// A row of the merged view: table and row index.
type At = (u32, u32);

/// A row to send and its members: (column, value index) in its table.
type Picked = (At, Vec<(usize, usize)>);

/// A key's values: (position in the merged view, column, value index) and (step, chart value).
type KeyPoints = (Vec<(u32, usize, usize)>, Vec<(u64, f64)>);

/// The rows of `tables` with a step in `lo..=hi`, in step order (then sequence order).
fn order(tables: &[Table], lo: u64, hi: u64) -> Vec<At> {
    let mut all: Vec<(u64, u64, At)> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        for (r, (&step, &seq)) in table.steps.iter().zip(&table.seqs).enumerate() {
            if (lo..=hi).contains(&step) {
                all.push((step, seq, (t as u32, r as u32)));
            }
        }
    }
    if !all.is_sorted_by_key(|&(step, seq, _)| (step, seq)) {
        all.sort_unstable_by_key(|&(step, seq, _)| (step, seq));
    }
    all.into_iter().map(|(.., at)| at).collect()
}

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

/// The rows to send with the members each keeps: every row (with `keys`, every row that has
/// one of them), or with `samples` the M4 picks of each key, a row keeping only the keys it
/// was picked for.
fn select(tables: &[Table], rows: &[At], filtered: bool, samples: Option<u64>) -> (Cursors, Vec<Picked>) {
    let mut cur = Cursors::new(tables);
    let Some(samples) = samples else {
        let mut out = Vec::with_capacity(rows.len());
        for &at in rows {
            let members = cur.values(tables, at);
            if !filtered || !members.is_empty() {
                out.push((at, members));
            }
        }
        return (cur, out);
    };
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

/// `{"rows": [...]}` of a run's `kind` in step order; with `keys`, only those keys and only
/// rows that have one of them (an empty `keys=` means all keys, like no `keys`); `min_step` /
/// `max_step` bound the steps (inclusive) and `samples=N` thins each key to at most N rows by
/// M4, over the segments' pre-aggregates when the range spans more rows than [`coarse_over`].
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
    let samples = number(q, "samples")?;
    let query = Query {
        kind,
        run_id,
        keys: keys.as_ref(),
        min_step,
        max_step,
        coarse_over: samples.map(coarse_over),
    };
    let tables = tables(Ctx::of(state), &query).await?;
    let filtered = keys.is_some();
    let out = tokio::task::spawn_blocking(move || {
        let order = order(&tables, min_step, max_step);
        let (cur, picked) = select(&tables, &order, filtered, samples);
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
    .map_err(super::error::ServerError::from)?;
    Ok(([(CONTENT_TYPE, "application/json")], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::super::segments::{testing, HISTORY_KIND};
    use super::*;

    /// `(step, key, chart value)` of every value `samples=n` sends of `tables`.
    fn sampled(tables: &[Table], n: u64) -> Vec<(u64, String, f64)> {
        let order = order(tables, 0, u64::MAX);
        let (_, picked) = select(tables, &order, false, Some(n));
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
    async fn coarse_samples_read_pre_aggregates_and_keep_every_spike_in_n_real_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        let ctx = testing::ctx(&db, &store);
        let value = |i: u64| match i {
            12_345 => 1000.0,
            17_777 => -5.0,
            _ => 1.0 / (i + 1) as f64,
        };
        for s in 0..4u64 {
            let rows: Vec<(u64, u64, i64, String)> = (s * 5000..(s + 1) * 5000)
                .map(|i| {
                    (
                        i,
                        i,
                        i as i64,
                        format!(r#"{{"loss":{},"acc":{}}}"#, value(i), i as f64),
                    )
                })
                .collect();
            let segment = testing::add(ctx, &Table::from_json_rows(&rows).unwrap()).await;
            assert!(segment.agg.is_some(), "a long segment has a pre-aggregate");
        }
        let keys: HashSet<&str> = ["loss"].into();
        let mut q = Query {
            kind: HISTORY_KIND,
            run_id: "r",
            keys: Some(&keys),
            min_step: 0,
            max_step: i64::MAX as u64,
            coarse_over: Some(coarse_over(40)),
        };
        let exact = tables(ctx, &q).await.unwrap();
        assert_eq!(
            exact.iter().map(Table::len).sum::<usize>(),
            20_000,
            "under the threshold: every row"
        );
        q.coarse_over = Some(0);
        let coarse = tables(ctx, &q).await.unwrap();
        let read: usize = coarse.iter().map(Table::len).sum();
        assert!(
            read <= 20_000 * 4 / 256 + 16,
            "the pre-aggregates hold {read} rows"
        );
        assert!(coarse.iter().all(|t| t.cols.iter().all(|c| c.name == "loss")));
        const {
            assert!(
                40 * FINE < 20_000 && 400 * FINE > 20_000,
                "40 samples can be coarse, 400 not"
            )
        };
        let picks = sampled(&coarse, 40);
        assert!((20..=40).contains(&picks.len()), "{} samples", picks.len());
        assert!(
            picks.iter().all(|(step, _, v)| *v == value(*step)),
            "a sample is not a real row"
        );
        let steps: Vec<u64> = picks.iter().map(|p| p.0).collect();
        for must in [0, 12_345, 17_777, 19_999] {
            assert!(steps.contains(&must), "step {must} is missing");
        }
        assert!(steps.windows(2).all(|w| w[0] < w[1]));
        // Inside a range that cuts segments, the cut ones are read whole, so its ends are exact.
        q.min_step = 7_000;
        q.max_step = 13_000;
        let cut = tables(ctx, &q).await.unwrap();
        assert_eq!(cut.iter().map(Table::len).sum::<usize>(), 10_000);
    }
}
