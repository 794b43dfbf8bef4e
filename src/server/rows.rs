//! A bundle's rows as stored: one JSON object per row, built within the decode budget, and
//! the batched INSERTs that store them.

use sqlx::AnyConnection;

use super::error::ApiError;
use crate::core::bundle::{Budget, BundleError, Columns, OverBudget};
use crate::core::value::{num_to_json, Value};

/// Rows per INSERT statement; one SQL text per table, so the prepared statement is reused.
const BATCH: usize = 500;

/// Keys the API adds to every row; a bundle's own values under them are dropped.
pub const RESERVED: [&str; 2] = ["_step", "_timestamp"];

/// Rows of one table; the stored JSON of every row lives in one buffer, row `i` ending at
/// `ends[i]`.
pub struct Rows {
    /// Record sequence number of each row.
    pub seqs: Vec<u64>,
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

fn bad(why: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(why.to_string())
}

fn over(entry: &'static str, over: OverBudget) -> ApiError {
    ApiError::Bundle(BundleError::OverBudget { entry, over })
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

/// Encodes every row of table `entry` as a JSON object into one buffer, in time proportional
/// to rows + values (never rows × keys): a counting sort lists each row's columns, in column
/// order. The index and the JSON are charged to `budget`; the JSON stops where it runs out.
pub fn encode_rows(entry: &'static str, cols: Columns, budget: &mut Budget) -> Result<Rows, ApiError> {
    let n = cols.len();
    let kept: Vec<_> = cols
        .cols
        .iter()
        .filter(|c| !RESERVED.contains(&c.name.as_str()))
        .collect();
    let values: usize = kept.iter().map(|c| c.rows.len()).sum();
    let index_bytes = (2 * (n + 1) + values) * 4 + n * 8;
    budget.charge(index_bytes as u64).map_err(|o| over(entry, o))?;
    let mut keys = Vec::with_capacity(kept.len());
    for c in &kept {
        keys.push(serde_json::to_string(&c.name).map_err(bad)?);
    }
    // Columns with a value in row r: order[start[r]..start[r + 1]].
    let mut start = vec![0u32; n + 1];
    for c in &kept {
        for &r in &c.rows {
            start[r as usize + 1] += 1;
        }
    }
    for r in 0..n {
        start[r + 1] += start[r];
    }
    let mut fill = start.clone();
    let mut order = vec![0u32; values];
    for (ci, c) in kept.iter().enumerate() {
        for &r in &c.rows {
            order[fill[r as usize] as usize] = ci as u32;
            fill[r as usize] += 1;
        }
    }
    drop(fill);
    let cap = budget.left();
    let mut cursor = vec![0usize; kept.len()];
    let mut buf = Vec::with_capacity((n * 2 + values * 16).min(cap as usize));
    let mut ends = Vec::with_capacity(n);
    for r in 0..n {
        buf.push(b'{');
        for (k, &ci) in order[start[r] as usize..start[r + 1] as usize].iter().enumerate() {
            let ci = ci as usize;
            if k > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(keys[ci].as_bytes());
            buf.push(b':');
            write_value(&mut buf, &kept[ci].values[cursor[ci]]).map_err(bad)?;
            cursor[ci] += 1;
            if buf.len() as u64 > cap {
                return Err(over(entry, budget.exhausted()));
            }
        }
        buf.push(b'}');
        ends.push(buf.len());
    }
    budget.charge(buf.len() as u64).map_err(|o| over(entry, o))?;
    Ok(Rows {
        seqs: cols.seqs,
        steps: cols.steps,
        ts: cols.ts,
        json: String::from_utf8(buf).map_err(bad)?,
        ends,
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
pub async fn insert_rows(
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
