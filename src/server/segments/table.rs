//! A segment in memory: rows (sequence number, step, timestamp) and one sparse column per key,
//! numbers kept as `f64` and every other value as the exact JSON text the API shows.

use serde_json::Value as Json;

use super::super::rows::{stored_number, RESERVED};
use crate::core::bundle::{Budget, Columns, OverBudget};
use crate::core::value::{num_to_json, Value};

/// A column's values: all logged numbers, or JSON texts (numbers among them written as text).
#[derive(Clone, Debug, PartialEq)]
pub enum Cells {
    /// Every value of the column in this segment was a logged number.
    Num(Vec<f64>),
    /// Each value's JSON text, as the API shows it.
    Json(Vec<String>),
}

impl Cells {
    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            Cells::Num(v) => v.len(),
            Cells::Json(v) => v.len(),
        }
    }

    /// Appends value `i`'s JSON text to `out`.
    pub fn write_json(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Cells::Num(v) => write_num(v[i], out),
            Cells::Json(v) => out.extend_from_slice(v[i].as_bytes()),
        }
    }

    /// Value `i` as a chart draws it: NaN for what is not a number.
    #[inline]
    pub fn chart(&self, i: usize) -> f64 {
        match self {
            Cells::Num(v) => v[i],
            Cells::Json(v) => serde_json::from_str(&v[i])
                .ok()
                .as_ref()
                .and_then(stored_number)
                .unwrap_or(f64::NAN),
        }
    }

    /// Value `i` as JSON.
    pub fn json(&self, i: usize) -> Json {
        match self {
            Cells::Num(v) => num_to_json(v[i]),
            Cells::Json(v) => serde_json::from_str(&v[i]).unwrap_or(Json::Null),
        }
    }

    /// The values as JSON texts: for merging with a column that has non-numbers.
    fn into_texts(self) -> Vec<String> {
        match self {
            Cells::Num(v) => v
                .into_iter()
                .map(|x| {
                    let mut out = Vec::new();
                    write_num(x, &mut out);
                    String::from_utf8(out).unwrap_or_default()
                })
                .collect(),
            Cells::Json(v) => v,
        }
    }
}

/// A number's JSON text as the API writes it (non-finite ones as strings).
fn write_num(x: f64, out: &mut Vec<u8>) {
    let text = if x.is_finite() {
        serde_json::to_string(&x)
    } else {
        serde_json::to_string(&num_to_json(x))
    };
    out.extend_from_slice(text.unwrap_or_default().as_bytes());
}

/// One key's values: `rows[i]` holds `cells` value `i`; rows ascend.
#[derive(Clone, Debug, PartialEq)]
pub struct Col {
    /// The metric name.
    pub name: String,
    /// Rows that have the key, ascending.
    pub rows: Vec<u32>,
    /// Their values.
    pub cells: Cells,
}

impl Col {
    /// The index of row `r`'s value, if it has one; `cursor` remembers the last position so a
    /// walk in row order costs O(1) a row.
    pub fn find(&self, r: u32, cursor: &mut usize) -> Option<usize> {
        if self.rows.len() as u64 == u64::from(self.rows.last().map_or(0, |&l| l + 1)) {
            return ((r as usize) < self.rows.len()).then_some(r as usize);
        }
        if *cursor > 0 && self.rows.get(*cursor - 1).is_some_and(|&p| p >= r) {
            *cursor = self.rows.partition_point(|&p| p < r);
        }
        while self.rows.get(*cursor).is_some_and(|&p| p < r) {
            *cursor += 1;
        }
        let hit = self.rows.get(*cursor) == Some(&r);
        if hit {
            *cursor += 1;
        }
        hit.then(|| *cursor - 1)
    }
}

/// Rows of one record kind (history or system) of one run, columnar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Record sequence number of each row, ascending.
    pub seqs: Vec<u64>,
    /// Step of each row.
    pub steps: Vec<u64>,
    /// Commit time of each row, Unix ms.
    pub ts: Vec<i64>,
    /// One column per key, in order of first appearance.
    pub cols: Vec<Col>,
}

/// How much a table of `values` values and `text` bytes of JSON holds in memory, for the budget.
pub fn footprint(rows: usize, values: usize, text: usize) -> u64 {
    (rows * 24 + values * 12 + text) as u64
}

impl Table {
    /// How many rows.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// A bundle's table, without the reserved keys and without rows below `from`, charged to
    /// `budget` before the JSON texts are made.
    pub fn from_columns(cols: &Columns, from: u64, budget: &mut Budget) -> Result<Table, OverBudget> {
        let keep: Vec<bool> = cols.seqs.iter().map(|&s| s >= from).collect();
        let mut new_index = Vec::with_capacity(keep.len());
        let mut next = 0u32;
        for &k in &keep {
            new_index.push(next);
            next += u32::from(k);
        }
        let values: usize = cols.cols.iter().map(|c| c.rows.len()).sum();
        budget.charge(footprint(next as usize, values, 0))?;
        let mut out = Table::default();
        for i in (0..keep.len()).filter(|&i| keep[i]) {
            out.seqs.push(cols.seqs[i]);
            out.steps.push(cols.steps[i]);
            out.ts.push(cols.ts[i]);
        }
        for c in cols.cols.iter().filter(|c| !RESERVED.contains(&c.name.as_str())) {
            let picked: Vec<(u32, &Value)> = c
                .rows
                .iter()
                .zip(&c.values)
                .filter(|(&r, _)| keep[r as usize])
                .map(|(&r, v)| (new_index[r as usize], v))
                .collect();
            if picked.is_empty() {
                continue;
            }
            let rows = picked.iter().map(|(r, _)| *r).collect();
            let cells = if picked.iter().all(|(_, v)| matches!(v, Value::Num(_))) {
                Cells::Num(
                    picked
                        .iter()
                        .map(|(_, v)| if let Value::Num(x) = v { *x } else { f64::NAN })
                        .collect(),
                )
            } else {
                let mut texts = Vec::with_capacity(picked.len());
                for (_, v) in &picked {
                    let text = value_text(v);
                    budget.charge(text.len() as u64)?;
                    texts.push(text);
                }
                Cells::Json(texts)
            };
            out.cols.push(Col {
                name: c.name.clone(),
                rows,
                cells,
            });
        }
        Ok(out)
    }

    /// The rows given by index (ascending), with only the columns `keep` says for each:
    /// `keep(col, row)`.
    pub fn subset(&self, rows: &[u32], keep: impl Fn(usize, u32) -> bool) -> Table {
        let mut out = Table::default();
        for &r in rows {
            out.seqs.push(self.seqs[r as usize]);
            out.steps.push(self.steps[r as usize]);
            out.ts.push(self.ts[r as usize]);
        }
        for (ci, c) in self.cols.iter().enumerate() {
            let mut new_rows = Vec::new();
            let mut idx = Vec::new();
            let mut cursor = 0;
            for (nr, &r) in rows.iter().enumerate() {
                if let Some(i) = c.find(r, &mut cursor) {
                    if keep(ci, r) {
                        new_rows.push(nr as u32);
                        idx.push(i);
                    }
                }
            }
            if new_rows.is_empty() {
                continue;
            }
            let cells = match &c.cells {
                Cells::Num(v) => Cells::Num(idx.iter().map(|&i| v[i]).collect()),
                Cells::Json(v) => Cells::Json(idx.iter().map(|&i| v[i].clone()).collect()),
            };
            out.cols.push(Col {
                name: c.name.clone(),
                rows: new_rows,
                cells,
            });
        }
        out
    }

    /// The tables one after another (each's rows after the previous one's), columns of the
    /// same key joined; a key with non-numbers anywhere becomes JSON text everywhere.
    pub fn concat(tables: Vec<Table>) -> Table {
        let mut out = Table::default();
        let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for t in tables {
            let offset = out.seqs.len() as u32;
            out.seqs.extend(t.seqs);
            out.steps.extend(t.steps);
            out.ts.extend(t.ts);
            for c in t.cols {
                let rows = c.rows.iter().map(|r| r + offset);
                match by_name.get(&c.name) {
                    None => {
                        by_name.insert(c.name.clone(), out.cols.len());
                        out.cols.push(Col {
                            name: c.name,
                            rows: rows.collect(),
                            cells: c.cells,
                        });
                    }
                    Some(&i) => {
                        let into = &mut out.cols[i];
                        into.rows.extend(rows);
                        let old = std::mem::replace(&mut into.cells, Cells::Num(Vec::new()));
                        into.cells = match (old, c.cells) {
                            (Cells::Num(mut a), Cells::Num(b)) => {
                                a.extend(b);
                                Cells::Num(a)
                            }
                            (a, b) => {
                                let mut a = a.into_texts();
                                a.extend(b.into_texts());
                                Cells::Json(a)
                            }
                        };
                    }
                }
            }
        }
        out
    }

    /// A table of rows given as `(seq, step, ts, JSON object text)`, as the SQL tables of
    /// earlier versions stored them: numbers whose text is the one a logged number gets stay
    /// numbers, every other value keeps its JSON text.
    pub fn from_json_rows(rows: &[(u64, u64, i64, String)]) -> Result<Table, serde_json::Error> {
        let mut out = Table::default();
        let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut texts: Vec<Vec<Option<f64>>> = Vec::new();
        let mut raw: Vec<Vec<String>> = Vec::new();
        for (r, (seq, step, ts, data)) in rows.iter().enumerate() {
            out.seqs.push(*seq);
            out.steps.push(*step);
            out.ts.push(*ts);
            let row: serde_json::Map<String, Json> = serde_json::from_str(data)?;
            for (k, v) in row {
                let ci = *by_name.entry(k.clone()).or_insert_with(|| {
                    out.cols.push(Col {
                        name: k,
                        rows: Vec::new(),
                        cells: Cells::Json(Vec::new()),
                    });
                    texts.push(Vec::new());
                    raw.push(Vec::new());
                    out.cols.len() - 1
                });
                let text = serde_json::to_string(&v)?;
                let num = v
                    .as_f64()
                    .filter(|x| v.is_f64() && serde_json::to_string(x).ok().as_ref() == Some(&text));
                out.cols[ci].rows.push(r as u32);
                texts[ci].push(num);
                raw[ci].push(text);
            }
        }
        for ((c, nums), raw) in out.cols.iter_mut().zip(texts).zip(raw) {
            c.cells = if nums.iter().all(Option::is_some) {
                Cells::Num(nums.into_iter().flatten().collect())
            } else {
                Cells::Json(raw)
            };
        }
        Ok(out)
    }
}

/// A bundle value's JSON text, as the API shows it.
fn value_text(v: &Value) -> String {
    match v {
        Value::Num(x) => {
            let mut out = Vec::new();
            write_num(*x, &mut out);
            String::from_utf8(out).unwrap_or_default()
        }
        Value::Bool(b) => b.to_string(),
        Value::Str(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Json(j) => j.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_walks_sparse_and_dense_columns() {
        let sparse = Col {
            name: "a".into(),
            rows: vec![1, 4, 5, 9],
            cells: Cells::Num(vec![0.0; 4]),
        };
        let mut c = 0;
        let found: Vec<_> = (0..11).map(|r| sparse.find(r, &mut c)).collect();
        assert_eq!(
            found,
            [
                None,
                Some(0),
                None,
                None,
                Some(1),
                Some(2),
                None,
                None,
                None,
                Some(3),
                None
            ]
        );
        assert_eq!(sparse.find(4, &mut c), Some(1), "a step back is found too");
        let dense = Col {
            name: "b".into(),
            rows: vec![0, 1, 2],
            cells: Cells::Num(vec![0.0; 3]),
        };
        assert_eq!((dense.find(2, &mut c), dense.find(3, &mut c)), (Some(2), None));
    }

    #[test]
    fn json_rows_keep_their_exact_texts() {
        let rows = vec![
            (0, 0, 5, r#"{"a":0.1,"b":"NaN","c":5}"#.to_owned()),
            (1, 1, 6, r#"{"a":1e300,"c":{"x":[1,2]}}"#.to_owned()),
        ];
        let t = Table::from_json_rows(&rows).unwrap();
        assert_eq!(t.cols[0].cells, Cells::Num(vec![0.1, 1e300]));
        assert_eq!(t.cols[1].cells, Cells::Json(vec!["\"NaN\"".into()]));
        assert_eq!(
            t.cols[2].cells,
            Cells::Json(vec!["5".into(), r#"{"x":[1,2]}"#.into()])
        );
        let merged = Table::concat(vec![t.clone(), t]);
        assert_eq!(merged.cols[0].rows, [0, 1, 2, 3]);
        let mut out = Vec::new();
        merged.cols[1].cells.write_json(1, &mut out);
        assert_eq!(out, b"\"NaN\"");
    }
}
