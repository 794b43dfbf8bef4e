//! Columnar encoding of rows inside a bundle: per key, XOR-delta floats split into byte
//! planes, so gzip sees long runs of similar bytes instead of interleaved JSON. Numbers that
//! are all exact `f32`s (a tensor's `.item()`) take 4 planes, not 8, and an all-zero plane is
//! left out: gzip, the bundle's largest cost, never sees those bytes.

use std::ops::Range;

use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json};

use super::reader::Limits;
use crate::core::record::{decode_plain, encode_plain, DecodeError, RowRef};
use crate::core::value::{num_to_json, Value, ValueRef};
use crate::core::varint::{get_bytes, get_i64, get_u64, put_i64, put_u64};

const MAGIC: &[u8; 4] = b"TLC1";
/// Eight planes, every one written (read only: what clients wrote before kinds 2 and 3).
const KIND_F64: u8 = 0;
const KIND_TAGGED: u8 = 1;
/// A plane mask, then the planes it names of the values' `f32` bits.
const KIND_F32: u8 = 2;
/// A plane mask, then the planes it names of the values' `f64` bits.
const KIND_F64_MASKED: u8 = 3;

#[derive(Default)]
struct Column {
    name: String,
    /// The rows holding this key: `first..first + len` until a row skips the key, listed
    /// from then on (most columns are in every row and never list them).
    first: u32,
    len: u32,
    listed: Option<Vec<u32>>,
    nums: Vec<f64>,
    tagged: Vec<u8>,
    mixed: bool,
    /// Some number is not an exact `f32`.
    wide: bool,
}

impl Column {
    /// Records that row `r` holds the key; false when the row named it already.
    #[inline(always)]
    fn add_row(&mut self, r: u32) -> bool {
        if self.len == 0 {
            self.first = r;
        } else if let Some(rows) = &mut self.listed {
            if rows.last() == Some(&r) {
                return false;
            }
            rows.push(r);
        } else if r == self.first + self.len - 1 {
            return false;
        } else if r != self.first + self.len {
            let mut rows: Vec<u32> = (self.first..self.first + self.len).collect();
            rows.push(r);
            self.listed = Some(rows);
        }
        self.len += 1;
        true
    }

    /// Writes the row indices: the first, then each gap to the previous minus 1.
    fn put_rows(&self, out: &mut Vec<u8>) {
        let mut put = |rows: &mut dyn Iterator<Item = u32>| {
            let mut prev = None;
            for r in rows {
                put_u64(out, u64::from(prev.map_or(r, |p: u32| r - p - 1)));
                prev = Some(r);
            }
        };
        match &self.listed {
            Some(rows) => put(&mut rows.iter().copied()),
            None => put(&mut (self.first..self.first + self.len)),
        }
    }
}

/// Collects rows for one bundle table.
#[derive(Default)]
pub struct ColumnsBuilder {
    seqs: Vec<u64>,
    steps: Vec<u64>,
    ts: Vec<i64>,
    cols: Vec<Column>,
    by_key: FxHashMap<u32, u32>,
    /// `(key id, column)` of each position in the last rows: rows mostly repeat the previous
    /// row's keys in order, so this spares the map lookup.
    slots: Vec<(u32, u32)>,
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
        for (at, v) in row.values().enumerate() {
            let (id, v) = v?;
            let col = match self.slots.get(at) {
                Some(&(slot_id, c)) if slot_id == id => c,
                _ => {
                    let Some(c) = self.column(id, &name) else {
                        self.dropped += 1;
                        continue;
                    };
                    if let Some(slot) = self.slots.get_mut(at) {
                        *slot = (id, c);
                    } else if at == self.slots.len() {
                        self.slots.push((id, c));
                    }
                    c
                }
            };
            let col = &mut self.cols[col as usize];
            // A row names a key once (the writer keeps the last value); a damaged or hostile
            // log that names it twice keeps the first, so row indices stay strictly ascending.
            if !col.add_row(r) {
                self.dropped += 1;
                continue;
            }
            match v {
                ValueRef::Num(x) if !col.mixed => {
                    col.wide |= f64::from(x as f32).to_bits() != x.to_bits();
                    col.nums.push(x)
                }
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

    /// The column of key `id`, made on its first value; `None` when the key has no name.
    fn column<'k>(&mut self, id: u32, name: &impl Fn(u32) -> Option<&'k str>) -> Option<u32> {
        if let Some(&c) = self.by_key.get(&id) {
            return Some(c);
        }
        let name = name(id)?;
        let c = self.cols.len() as u32;
        self.by_key.insert(id, c);
        self.cols.push(Column {
            name: name.to_owned(),
            ..Column::default()
        });
        Some(c)
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
        self.finish_planes().0
    }

    /// The encoded table and where in it the number planes are: the spans a gzip stream may
    /// store rather than compress ([`super::gzip::GzSink::write_spans`]).
    pub fn finish_planes(&self) -> (Vec<u8>, Vec<Range<usize>>) {
        let n = self.seqs.len();
        let cells: usize = self.cols.iter().map(|c| c.len as usize).sum();
        let mut out = Vec::with_capacity(16 + n * 4 + cells * 4);
        out.extend_from_slice(MAGIC);
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
        let mut deltas = Vec::new();
        let mut planes = Vec::new();
        for col in &self.cols {
            put_u64(&mut out, col.name.len() as u64);
            out.extend_from_slice(col.name.as_bytes());
            put_u64(&mut out, u64::from(col.len));
            if col.len as usize != n {
                col.put_rows(&mut out);
            }
            if col.mixed {
                out.push(KIND_TAGGED);
                put_u64(&mut out, col.tagged.len() as u64);
                out.extend_from_slice(&col.tagged);
            } else if col.wide {
                out.push(KIND_F64_MASKED);
                xor_deltas(col.nums.iter().map(|x| x.to_bits()), &mut deltas);
                shuffle(&deltas, 8, &mut out, &mut planes);
            } else {
                out.push(KIND_F32);
                xor_deltas(
                    col.nums.iter().map(|&x| u64::from((x as f32).to_bits())),
                    &mut deltas,
                );
                shuffle(&deltas, 4, &mut out, &mut planes);
            }
        }
        (out, planes)
    }
}

/// Each value's bits XORed with the previous value's (the first with 0), into `out`.
fn xor_deltas(bits: impl Iterator<Item = u64>, out: &mut Vec<u64>) {
    out.clear();
    let mut prev = 0u64;
    out.extend(bits.map(|b| {
        let d = b ^ prev;
        prev = b;
        d
    }));
}

/// Writes the plane mask of `deltas` (bit `b`: plane `b` has a non-zero byte), then those of
/// the `width` planes, plane 0 first: plane `b` holds byte `b` of every delta.
/// Each plane's span of `out` is added to `planes`.
fn shuffle(deltas: &[u64], width: usize, out: &mut Vec<u8>, planes: &mut Vec<Range<usize>>) {
    let any = deltas.iter().fold(0u64, |acc, d| acc | d);
    let mask = (0..width).fold(0u8, |m, b| m | u8::from((any >> (8 * b)) & 0xff != 0) << b);
    out.push(mask);
    for b in (0..width).filter(|b| mask >> b & 1 == 1) {
        let start = out.len();
        out.extend(deltas.iter().map(|d| (d >> (8 * b)) as u8));
        planes.push(start..out.len());
    }
}

/// Reads back what [`shuffle`] wrote for `n` values of `width` bytes (8 for kind 0, which
/// has no mask and all eight planes).
fn unshuffle(
    buf: &[u8],
    pos: &mut usize,
    n: usize,
    width: usize,
    masked: bool,
) -> Result<Vec<u64>, DecodeError> {
    let truncated = DecodeError("truncated number planes");
    let mask = if masked {
        let m = get_bytes(buf, pos, 1)
            .and_then(|m| m.first().copied())
            .ok_or(truncated)?;
        if u32::from(m) >> width != 0 {
            return Err(DecodeError("plane mask names a plane wider than the numbers"));
        }
        m
    } else {
        0xff
    };
    let mut deltas = vec![0u64; n];
    for b in (0..width).filter(|b| mask >> b & 1 == 1) {
        let plane = get_bytes(buf, pos, n).ok_or(truncated)?;
        for (d, &byte) in deltas.iter_mut().zip(plane) {
            *d |= u64::from(byte) << (8 * b);
        }
    }
    let mut prev = 0u64;
    for d in &mut deltas {
        prev ^= *d;
        *d = prev;
    }
    Ok(deltas)
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

/// The decode budget left for one bundle ([`Limits`]): every count read from a table is
/// checked against it before anything it sizes is allocated.
#[derive(Debug, Clone)]
pub struct Budget {
    max_cells: u64,
    max_key_bytes: usize,
    max_bytes: u64,
    left: u64,
}

/// A table over the decode budget: what was over, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} over the decode budget of {limit}")]
pub struct OverBudget {
    /// The quantity that was over.
    pub what: &'static str,
    /// Its configured limit.
    pub limit: u64,
}

impl Budget {
    /// The full budget of `limits`.
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            max_cells: limits.max_cells,
            max_key_bytes: limits.max_key_bytes,
            max_bytes: limits.max_decoded_bytes,
            left: limits.max_decoded_bytes,
        }
    }

    /// Takes `bytes` of decoded memory, or refuses before the caller allocates them.
    pub fn charge(&mut self, bytes: u64) -> Result<(), OverBudget> {
        self.left = self.left.checked_sub(bytes).ok_or(OverBudget {
            what: "decoded bytes",
            limit: self.max_bytes,
        })?;
        Ok(())
    }

    /// Takes what parsing `text_len` bytes of JSON text may allocate.
    pub fn charge_json(&mut self, text_len: usize) -> Result<(), OverBudget> {
        self.charge(text_len as u64 * JSON_GROWTH)
    }

    /// Decoded bytes still available.
    pub fn left(&self) -> u64 {
        self.left
    }

    /// The refusal for output that grew past [`Budget::left`].
    pub fn exhausted(&self) -> OverBudget {
        OverBudget {
            what: "decoded bytes",
            limit: self.max_bytes,
        }
    }
}

/// Why a table was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The bytes are not a consistent table.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The table is consistent but would decode to more than the budget allows.
    #[error(transparent)]
    Budget(#[from] OverBudget),
}

/// Memory a decoded row takes besides its values: sequence, step, time.
const ROW_BYTES: u64 = 24;
/// Memory of one decoded value besides its text: the value and its row index.
const VALUE_BYTES: u64 = (std::mem::size_of::<Value>() + 4) as u64;
/// How much larger a parsed JSON value may be than its text (a `Value` per two bytes of `[0,0,…]`).
const JSON_GROWTH: u64 = (std::mem::size_of::<Json>() / 2) as u64;

impl Columns {
    /// Decodes a table within `budget`, refusing anything inconsistent rather than trusting
    /// counts: rows × keys, key length and decoded bytes are checked before allocating.
    pub fn decode(buf: &[u8], budget: &mut Budget) -> Result<Columns, TableError> {
        let bad = DecodeError("truncated column table");
        if buf.get(..4) != Some(&MAGIC[..]) {
            return Err(DecodeError("not a column table").into());
        }
        let mut pos = 4;
        let n = get_u64(buf, &mut pos).ok_or(bad)?;
        if n > (buf.len() as u64) {
            return Err(DecodeError("row count larger than the table").into());
        }
        budget.charge(n * ROW_BYTES)?;
        let n = n as usize;
        let mut me = Columns {
            seqs: Vec::with_capacity(n),
            steps: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            cols: Vec::new(),
        };
        let mut prev = 0u64;
        // Refused once the table is read, so a table over the budget is refused as that.
        let mut shared_seq = false;
        for i in 0..n {
            let delta = get_u64(buf, &mut pos).ok_or(bad)?;
            shared_seq |= delta == 0 && i > 0;
            prev = prev.checked_add(delta).ok_or(DecodeError("sequence overflow"))?;
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
        if (n as u64).saturating_mul(ncols) > budget.max_cells {
            return Err(OverBudget {
                what: "rows × keys",
                limit: budget.max_cells,
            }
            .into());
        }
        for _ in 0..ncols {
            let len = get_u64(buf, &mut pos).ok_or(bad)?;
            if len > budget.max_key_bytes as u64 {
                return Err(OverBudget {
                    what: "key length",
                    limit: budget.max_key_bytes as u64,
                }
                .into());
            }
            budget.charge(len)?;
            let name = std::str::from_utf8(get_bytes(buf, &mut pos, len as usize).ok_or(bad)?)
                .map_err(|_| DecodeError("invalid utf-8 key"))?
                .to_owned();
            let present = get_u64(buf, &mut pos).ok_or(bad)?;
            if present > n as u64 {
                return Err(DecodeError("more values than rows").into());
            }
            budget.charge(present * VALUE_BYTES)?;
            let present = present as usize;
            let rows: Vec<u32> = if present == n {
                (0..n as u32).collect()
            } else {
                let mut rows = Vec::with_capacity(present);
                let mut next = 0u64;
                for _ in 0..present {
                    let r = next + get_u64(buf, &mut pos).ok_or(bad)?;
                    if r >= n as u64 {
                        return Err(DecodeError("row index out of range").into());
                    }
                    rows.push(r as u32);
                    next = r + 1;
                }
                rows
            };
            let kind = *get_bytes(buf, &mut pos, 1).ok_or(bad)?.first().ok_or(bad)?;
            let values = match kind {
                KIND_F64 | KIND_F64_MASKED => unshuffle(buf, &mut pos, present, 8, kind == KIND_F64_MASKED)?
                    .into_iter()
                    .map(|b| Value::Num(f64::from_bits(b)))
                    .collect(),
                KIND_F32 => unshuffle(buf, &mut pos, present, 4, true)?
                    .into_iter()
                    .map(|b| Value::Num(f64::from(f32::from_bits(b as u32))))
                    .collect(),
                KIND_TAGGED => {
                    let len = get_u64(buf, &mut pos).ok_or(bad)? as usize;
                    let body = get_bytes(buf, &mut pos, len).ok_or(bad)?;
                    let mut at = 0;
                    let mut vals = Vec::with_capacity(present);
                    for _ in 0..present {
                        let v = decode_plain(body, &mut at)?;
                        match v {
                            ValueRef::Str(s) => budget.charge(s.len() as u64)?,
                            ValueRef::Json(s) => budget.charge_json(s.len())?,
                            ValueRef::Num(_) | ValueRef::Bool(_) => {}
                        }
                        vals.push(v.to_owned());
                    }
                    vals
                }
                _ => return Err(DecodeError("unknown column kind").into()),
            };
            me.cols.push(DecodedColumn { name, rows, values });
        }
        if pos != buf.len() {
            return Err(DecodeError("trailing bytes after column table").into());
        }
        if shared_seq {
            return Err(DecodeError("two rows share a sequence number").into());
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
