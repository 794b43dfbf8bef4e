//! Columnar encoding of rows inside a bundle: per key, XOR-delta floats split into byte
//! planes, so gzip sees long runs of similar bytes instead of interleaved JSON.

use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json};

use crate::core::record::{decode_plain, encode_plain, DecodeError, RowRef};
use crate::core::value::{num_to_json, Value, ValueRef};
use crate::core::varint::{get_bytes, get_i64, get_u64, put_i64, put_u64};

const MAGIC: &[u8; 4] = b"TLC1";
const KIND_F64: u8 = 0;
const KIND_TAGGED: u8 = 1;

#[derive(Default)]
struct Column {
    name: String,
    rows: Vec<u32>,
    nums: Vec<f64>,
    tagged: Vec<u8>,
    mixed: bool,
}

/// Collects rows for one bundle table.
#[derive(Default)]
pub struct ColumnsBuilder {
    seqs: Vec<u64>,
    steps: Vec<u64>,
    ts: Vec<i64>,
    cols: Vec<Column>,
    by_key: FxHashMap<u32, u32>,
    dropped: u64,
}

impl ColumnsBuilder {
    /// Adds one decoded row; `name` resolves key ids. A value whose key has no name (its key
    /// record was lost to damage in the log) is left out and counted in [`Self::dropped`]:
    /// under which name it was logged cannot be known.
    pub fn push<'k>(
        &mut self,
        seq: u64,
        row: &RowRef<'_>,
        name: impl Fn(u32) -> Option<&'k str>,
    ) -> Result<(), DecodeError> {
        let r = self.seqs.len() as u32;
        self.seqs.push(seq);
        self.steps.push(row.step);
        self.ts.push(row.ts_ms);
        for v in row.values() {
            let (id, v) = v?;
            let col = match self.by_key.get(&id) {
                Some(&c) => c,
                None => {
                    let Some(name) = name(id) else {
                        self.dropped += 1;
                        continue;
                    };
                    let c = self.cols.len() as u32;
                    self.by_key.insert(id, c);
                    self.cols.push(Column {
                        name: name.to_owned(),
                        ..Column::default()
                    });
                    c
                }
            };
            let col = &mut self.cols[col as usize];
            col.rows.push(r);
            match v {
                ValueRef::Num(x) if !col.mixed => col.nums.push(x),
                other => {
                    if !col.mixed {
                        col.mixed = true;
                        for x in std::mem::take(&mut col.nums) {
                            encode_plain(&mut col.tagged, ValueRef::Num(x));
                        }
                    }
                    encode_plain(&mut col.tagged, other);
                }
            }
        }
        Ok(())
    }

    /// Values [`Self::push`] left out for want of a key name.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True when no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// The encoded table.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.seqs.len() * 4);
        out.extend_from_slice(MAGIC);
        let n = self.seqs.len();
        put_u64(&mut out, n as u64);
        let mut prev = 0u64;
        for &s in &self.seqs {
            put_u64(&mut out, s - prev);
            prev = s;
        }
        let mut prev = 0i64;
        for &s in &self.steps {
            put_i64(&mut out, s as i64 - prev);
            prev = s as i64;
        }
        let mut prev = 0i64;
        for &t in &self.ts {
            put_i64(&mut out, t.wrapping_sub(prev));
            prev = t;
        }
        put_u64(&mut out, self.cols.len() as u64);
        for col in &self.cols {
            put_u64(&mut out, col.name.len() as u64);
            out.extend_from_slice(col.name.as_bytes());
            put_u64(&mut out, col.rows.len() as u64);
            if col.rows.len() != n {
                let mut prev = 0u32;
                for (i, &r) in col.rows.iter().enumerate() {
                    put_u64(&mut out, u64::from(if i == 0 { r } else { r - prev - 1 }));
                    prev = r;
                }
            }
            if col.mixed {
                out.push(KIND_TAGGED);
                put_u64(&mut out, col.tagged.len() as u64);
                out.extend_from_slice(&col.tagged);
            } else {
                out.push(KIND_F64);
                shuffle_xor(&col.nums, &mut out);
            }
        }
        out
    }
}

fn shuffle_xor(nums: &[f64], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + nums.len() * 8, 0);
    let planes = &mut out[start..];
    let n = nums.len();
    let mut prev = 0u64;
    for (i, x) in nums.iter().enumerate() {
        let bits = x.to_bits();
        let d = (bits ^ prev).to_le_bytes();
        prev = bits;
        for (b, byte) in d.iter().enumerate() {
            planes[b * n + i] = *byte;
        }
    }
}

fn unshuffle_xor(planes: &[u8], n: usize) -> Vec<f64> {
    let mut prev = 0u64;
    (0..n)
        .map(|i| {
            let mut d = [0u8; 8];
            for (b, byte) in d.iter_mut().enumerate() {
                *byte = planes[b * n + i];
            }
            prev ^= u64::from_le_bytes(d);
            f64::from_bits(prev)
        })
        .collect()
}

/// One column read back.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedColumn {
    /// The metric name.
    pub name: String,
    /// Indices of the rows that have this key, ascending.
    pub rows: Vec<u32>,
    /// The values, one per entry of `rows`.
    pub values: Vec<Value>,
}

/// A table read back from a bundle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Columns {
    /// Record sequence number of each row.
    pub seqs: Vec<u64>,
    /// Step of each row.
    pub steps: Vec<u64>,
    /// Commit time of each row, Unix milliseconds.
    pub ts: Vec<i64>,
    /// The columns in order of first appearance.
    pub cols: Vec<DecodedColumn>,
}

impl Columns {
    /// Decodes a table, refusing anything inconsistent rather than trusting counts.
    pub fn decode(buf: &[u8]) -> Result<Columns, DecodeError> {
        let bad = DecodeError("truncated column table");
        if buf.get(..4) != Some(&MAGIC[..]) {
            return Err(DecodeError("not a column table"));
        }
        let mut pos = 4;
        let n = get_u64(buf, &mut pos).ok_or(bad)?;
        if n > (buf.len() as u64) {
            return Err(DecodeError("row count larger than the table"));
        }
        let n = n as usize;
        let mut me = Columns::default();
        let mut prev = 0u64;
        for _ in 0..n {
            prev = prev
                .checked_add(get_u64(buf, &mut pos).ok_or(bad)?)
                .ok_or(DecodeError("sequence overflow"))?;
            me.seqs.push(prev);
        }
        let mut prev = 0i64;
        for _ in 0..n {
            prev = prev.wrapping_add(get_i64(buf, &mut pos).ok_or(bad)?);
            me.steps
                .push(u64::try_from(prev).map_err(|_| DecodeError("negative step"))?);
        }
        let mut prev = 0i64;
        for _ in 0..n {
            prev = prev.wrapping_add(get_i64(buf, &mut pos).ok_or(bad)?);
            me.ts.push(prev);
        }
        let ncols = get_u64(buf, &mut pos).ok_or(bad)?;
        for _ in 0..ncols {
            let len = get_u64(buf, &mut pos).ok_or(bad)? as usize;
            let name = std::str::from_utf8(get_bytes(buf, &mut pos, len).ok_or(bad)?)
                .map_err(|_| DecodeError("invalid utf-8 key"))?
                .to_owned();
            let present = get_u64(buf, &mut pos).ok_or(bad)?;
            if present > n as u64 {
                return Err(DecodeError("more values than rows"));
            }
            let present = present as usize;
            let rows: Vec<u32> = if present == n {
                (0..n as u32).collect()
            } else {
                let mut rows = Vec::new();
                let mut next = 0u64;
                for _ in 0..present {
                    let r = next + get_u64(buf, &mut pos).ok_or(bad)?;
                    if r >= n as u64 {
                        return Err(DecodeError("row index out of range"));
                    }
                    rows.push(r as u32);
                    next = r + 1;
                }
                rows
            };
            let kind = *get_bytes(buf, &mut pos, 1).ok_or(bad)?.first().ok_or(bad)?;
            let values = match kind {
                KIND_F64 => {
                    let planes = get_bytes(buf, &mut pos, present * 8).ok_or(bad)?;
                    unshuffle_xor(planes, present)
                        .into_iter()
                        .map(Value::Num)
                        .collect()
                }
                KIND_TAGGED => {
                    let len = get_u64(buf, &mut pos).ok_or(bad)? as usize;
                    let body = get_bytes(buf, &mut pos, len).ok_or(bad)?;
                    let mut at = 0;
                    let mut vals = Vec::new();
                    for _ in 0..present {
                        vals.push(decode_plain(body, &mut at)?.to_owned());
                    }
                    vals
                }
                _ => return Err(DecodeError("unknown column kind")),
            };
            me.cols.push(DecodedColumn { name, rows, values });
        }
        if pos != buf.len() {
            return Err(DecodeError("trailing bytes after column table"));
        }
        Ok(me)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Each row as a JSON object of its values (non-finite numbers as strings), in row order.
    pub fn rows_json(&self) -> Vec<Map<String, Json>> {
        let mut out = vec![Map::new(); self.len()];
        for col in &self.cols {
            for (&r, v) in col.rows.iter().zip(&col.values) {
                let j = match v {
                    Value::Num(x) => num_to_json(*x),
                    other => other.to_json(),
                };
                out[r as usize].insert(col.name.clone(), j);
            }
        }
        out
    }
}
