//! Parquet, the one columnar file format of the server: segments and the export are written
//! by the same schema and row-group code, and segments are read back a column at a time.

use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use parquet::basic::{Compression, Encoding, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::column::reader::ColumnReader;
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, Type};

use super::table::{Cells, Col, Table};
use crate::server::error::ServerError;

/// How a key's column is written: DOUBLE, or UTF8 JSON text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Numbers.
    Number,
    /// Each value's JSON text.
    Json,
}

/// One column's data for a row group: values and, for keys, a definition level per row (1
/// where the row has the key).
pub enum Data<'a> {
    /// A required INT64 column.
    Int64(&'a [i64]),
    /// An optional DOUBLE column.
    Double(&'a [f64], &'a [i16]),
    /// An optional UTF8 column.
    Text(&'a [ByteArray], &'a [i16]),
}

/// The schema `group`: required INT64 columns `ints` (`true`: a UTC millisecond timestamp),
/// then one optional column per key.
pub fn schema(group: &str, ints: &[(&str, bool)], keys: &[(&str, Kind)]) -> PqResult<Type> {
    let mut fields = Vec::with_capacity(ints.len() + keys.len());
    for &(name, timestamp) in ints {
        let logical = timestamp.then_some(LogicalType::Timestamp {
            is_adjusted_to_u_t_c: true,
            unit: TimeUnit::MILLIS,
        });
        let t = Type::primitive_type_builder(name, Physical::INT64)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(logical)
            .build()?;
        fields.push(Arc::new(t));
    }
    for &(name, kind) in keys {
        let col = match kind {
            Kind::Number => Type::primitive_type_builder(name, Physical::DOUBLE),
            Kind::Json => Type::primitive_type_builder(name, Physical::BYTE_ARRAY)
                .with_logical_type(Some(LogicalType::String)),
        };
        fields.push(Arc::new(col.with_repetition(Repetition::OPTIONAL).build()?));
    }
    Type::group_type_builder(group).with_fields(fields).build()
}

/// zstd at level 1 (it encodes in about three quarters of level 3's time here, for 3 % more
/// bytes); INT64 columns delta-encoded and DOUBLE columns byte-stream-split, which makes
/// float32-like values and counters compress to a few bytes.
pub fn properties(ints: &[(&str, bool)], keys: &[(&str, Kind)]) -> WriterProperties {
    properties_with(zstd(), ints, keys)
}

/// zstd at level 1, of segments and the export.
fn zstd() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default())
}

fn properties_with(
    compression: Compression,
    ints: &[(&str, bool)],
    keys: &[(&str, Kind)],
) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_size(usize::MAX);
    // A key may share an internal column's name; its own encoding wins, which suits both.
    for (name, _) in ints {
        let path = ColumnPath::from(*name);
        b = b
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    for (name, kind) in keys {
        let path = ColumnPath::from(*name);
        b = match kind {
            Kind::Number => b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT),
            Kind::Json if ints.iter().any(|(i, _)| i == name) => b
                .set_column_dictionary_enabled(path.clone(), true)
                .set_column_encoding(path, Encoding::PLAIN),
            Kind::Json => b,
        };
    }
    b.build()
}

/// Writes `cols`, in schema order, as one row group.
pub fn write_group<W: Write + Send>(w: &mut SerializedFileWriter<W>, cols: &[Data<'_>]) -> PqResult<()> {
    let mut rg = w.next_row_group()?;
    for data in cols {
        let mut col = rg
            .next_column()?
            .ok_or_else(|| ParquetError::General("more data than columns".into()))?;
        match data {
            Data::Int64(v) => {
                col.typed::<parquet::data_type::Int64Type>()
                    .write_batch(v, None, None)?;
            }
            Data::Double(v, defs) => {
                col.typed::<parquet::data_type::DoubleType>()
                    .write_batch(v, Some(defs), None)?;
            }
            Data::Text(v, defs) => {
                col.typed::<parquet::data_type::ByteArrayType>()
                    .write_batch(v, Some(defs), None)?;
            }
        }
        col.close()?;
    }
    rg.close()?;
    Ok(())
}

/// The internal columns of a segment, before its keys.
const SEGMENT_INTS: [(&str, bool); 3] = [("_seq", false), ("_step", false), ("_timestamp", true)];

fn int64(v: &[u64]) -> Result<Vec<i64>, ServerError> {
    v.iter()
        .map(|&x| i64::try_from(x).map_err(|_| ServerError::Corrupt(format!("{x} is out of range"))))
        .collect()
}

/// A segment's Parquet bytes: `_seq`, `_step`, `_timestamp`, then a column per key.
pub fn encode(t: &Table) -> Result<Vec<u8>, ServerError> {
    encode_with(t, zstd())
}

/// A pre-aggregate's Parquet bytes, uncompressed: every chart of a long range reads one per
/// segment, and setting up a zstd context for each of its columns took a fifth of such a
/// read's time, for bytes that are a sixtieth of the rows'.
pub fn encode_small(t: &Table) -> Result<Vec<u8>, ServerError> {
    encode_with(t, Compression::UNCOMPRESSED)
}

fn encode_with(t: &Table, compression: Compression) -> Result<Vec<u8>, ServerError> {
    let keys: Vec<(&str, Kind)> = t
        .cols
        .iter()
        .map(|c| {
            let kind = match c.cells {
                Cells::Num(_) => Kind::Number,
                Cells::Json(_) => Kind::Json,
            };
            (c.name.as_str(), kind)
        })
        .collect();
    let schema = Arc::new(schema("segment", &SEGMENT_INTS, &keys)?);
    let props = Arc::new(properties_with(compression, &SEGMENT_INTS, &keys));
    let mut w = SerializedFileWriter::new(Vec::new(), schema, props)?;
    let (seqs, steps) = (int64(&t.seqs)?, int64(&t.steps)?);
    let defs: Vec<Vec<i16>> = t
        .cols
        .iter()
        .map(|c| {
            let mut d = vec![0i16; t.len()];
            c.rows.iter().for_each(|&r| d[r as usize] = 1);
            d
        })
        .collect();
    let texts: Vec<Vec<ByteArray>> = t
        .cols
        .iter()
        .map(|c| match &c.cells {
            Cells::Json(v) => v.iter().map(|s| ByteArray::from(s.as_bytes().to_vec())).collect(),
            Cells::Num(_) => Vec::new(),
        })
        .collect();
    let mut data = vec![Data::Int64(&seqs), Data::Int64(&steps), Data::Int64(&t.ts)];
    for ((c, d), text) in t.cols.iter().zip(&defs).zip(&texts) {
        data.push(match &c.cells {
            Cells::Num(v) => Data::Double(v, d),
            Cells::Json(_) => Data::Text(text, d),
        });
    }
    if !t.is_empty() {
        write_group(&mut w, &data)?;
    }
    Ok(w.into_inner()?)
}

/// Rows the row groups of segments must hold on average for [`splice`] to copy them: smaller
/// ones are re-encoded, so that a live run's many small syncs never add up to thousands of
/// row groups (and a merged segment of such is not small, so is not merged again).
pub const SPLICE_MIN_ROWS: u64 = 8192;

/// The segments `members` (in sequence order) as one object holding their row groups, each
/// column chunk copied as it is, never decoded; `None` when their schemas differ or their row
/// groups hold under [`SPLICE_MIN_ROWS`] on average.
pub fn splice(members: &[Bytes]) -> Result<Option<Vec<u8>>, ServerError> {
    let readers = members
        .iter()
        .map(|b| SerializedFileReader::new(b.clone()))
        .collect::<PqResult<Vec<_>>>()?;
    let Some(first) = readers.first() else {
        return Ok(None);
    };
    let schema = first.metadata().file_metadata().schema_descr_ptr();
    let same = readers
        .iter()
        .all(|r| r.metadata().file_metadata().schema_descr().root_schema() == schema.root_schema());
    let groups = readers.iter().flat_map(|r| r.metadata().row_groups());
    let (count, rows) = groups.fold((0u64, 0u64), |(n, rows), g| {
        (n + 1, rows + u64::try_from(g.num_rows()).unwrap_or(0))
    });
    if !same || rows < count * SPLICE_MIN_ROWS {
        return Ok(None);
    }
    let keys: Vec<(&str, Kind)> = schema.columns()[SEGMENT_INTS.len().min(schema.num_columns())..]
        .iter()
        .map(|c| {
            let kind = match c.physical_type() {
                Physical::DOUBLE => Kind::Number,
                _ => Kind::Json,
            };
            (c.name(), kind)
        })
        .collect();
    let props = Arc::new(properties(&SEGMENT_INTS, &keys));
    let mut w = SerializedFileWriter::new(Vec::new(), schema.root_schema_ptr(), props)?;
    for (r, bytes) in readers.iter().zip(members) {
        for g in r.metadata().row_groups() {
            let mut rg = w.next_row_group()?;
            for c in g.columns() {
                let chunk = ColumnCloseResult {
                    bytes_written: u64::try_from(c.compressed_size()).map_err(corrupt)?,
                    rows_written: u64::try_from(g.num_rows()).map_err(corrupt)?,
                    metadata: c.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rg.append_column(bytes, chunk)?;
            }
            rg.close()?;
        }
    }
    Ok(Some(w.into_inner()?))
}

fn corrupt(why: impl std::fmt::Display) -> ServerError {
    ServerError::Corrupt(format!("a segment: {why}"))
}

fn read_ints(rg: &dyn RowGroupReader, i: usize, rows: usize) -> Result<Vec<i64>, ServerError> {
    let ColumnReader::Int64ColumnReader(mut r) = rg.get_column_reader(i)? else {
        return Err(corrupt(format!("column {i} is not INT64")));
    };
    let mut values = Vec::with_capacity(rows);
    r.read_records(rows, None, None, &mut values)?;
    if values.len() != rows {
        return Err(corrupt(format!("column {i} has {} of {rows} rows", values.len())));
    }
    Ok(values)
}

fn to_u64s(v: Vec<i64>) -> Result<Vec<u64>, ServerError> {
    v.into_iter()
        .map(|x| u64::try_from(x).map_err(|_| corrupt(format!("negative counter {x}"))))
        .collect()
}

/// The rows holding a value, from definition levels, with `base` added.
fn present(defs: &[i16], base: u32) -> Vec<u32> {
    defs.iter()
        .enumerate()
        .filter(|(_, &d)| d == 1)
        .map(|(r, _)| base + r as u32)
        .collect()
}

fn read_key(
    rg: &dyn RowGroupReader,
    i: usize,
    rows: usize,
    base: u32,
    into: &mut Col,
) -> Result<(), ServerError> {
    let mut defs = Vec::with_capacity(rows);
    match (rg.get_column_reader(i)?, &mut into.cells) {
        (ColumnReader::DoubleColumnReader(mut r), Cells::Num(out)) => {
            r.read_records(rows, Some(&mut defs), None, out)?;
        }
        (ColumnReader::ByteArrayColumnReader(mut r), Cells::Json(out)) => {
            let mut values: Vec<ByteArray> = Vec::new();
            r.read_records(rows, Some(&mut defs), None, &mut values)?;
            for v in values {
                out.push(String::from_utf8(v.data().to_vec()).map_err(corrupt)?);
            }
        }
        _ => return Err(corrupt(format!("column {i} has an unexpected type"))),
    }
    if defs.len() != rows {
        return Err(corrupt(format!("column {i} has {} of {rows} rows", defs.len())));
    }
    into.rows.extend(present(&defs, base));
    if into.rows.len() != into.cells.len() {
        return Err(corrupt(format!("column {i} has values without rows")));
    }
    Ok(())
}

/// A segment read back with only the keys `wanted` accepts: only their columns are decoded.
pub fn decode(bytes: Bytes, wanted: &dyn Fn(&str) -> bool) -> Result<Table, ServerError> {
    let reader = SerializedFileReader::new(bytes)?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    if schema.num_columns() < SEGMENT_INTS.len() {
        return Err(corrupt("too few columns"));
    }
    let mut t = Table::default();
    let mut keys = Vec::new();
    for i in SEGMENT_INTS.len()..schema.num_columns() {
        let col = schema.column(i);
        if !wanted(col.name()) {
            continue;
        }
        let cells = match col.physical_type() {
            Physical::DOUBLE => Cells::Num(Vec::new()),
            Physical::BYTE_ARRAY => Cells::Json(Vec::new()),
            other => return Err(corrupt(format!("column {} is {other}", col.name()))),
        };
        keys.push(i);
        t.cols.push(Col {
            name: col.name().to_owned(),
            rows: Vec::new(),
            cells,
        });
    }
    for g in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(g)?;
        let rows = usize::try_from(rg.metadata().num_rows()).map_err(corrupt)?;
        let base = u32::try_from(t.len()).map_err(corrupt)?;
        if u32::try_from(t.len() + rows).is_err() {
            return Err(corrupt("more rows than a segment holds"));
        }
        t.seqs.extend(to_u64s(read_ints(rg.as_ref(), 0, rows)?)?);
        t.steps.extend(to_u64s(read_ints(rg.as_ref(), 1, rows)?)?);
        t.ts.extend(read_ints(rg.as_ref(), 2, rows)?);
        for (&i, col) in keys.iter().zip(&mut t.cols) {
            read_key(rg.as_ref(), i, rows, base, col)?;
        }
    }
    t.cols.retain(|c| !c.rows.is_empty());
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_round_trips_and_decodes_only_the_keys_asked() {
        let rows: Vec<(u64, u64, i64, String)> = (0..1000u64)
            .map(|i| {
                let data = if i % 3 == 0 {
                    format!(r#"{{"loss":{},"note":"s{i}"}}"#, 1.0 / (i + 1) as f64)
                } else {
                    format!(r#"{{"loss":{},"x":"NaN"}}"#, i as f64 * 0.5)
                };
                (i + 10, i / 2, 1_000 + i as i64, data)
            })
            .collect();
        let t = Table::from_json_rows(&rows).unwrap();
        let bytes = encode(&t).unwrap();
        let back = decode(Bytes::from(bytes.clone()), &|_| true).unwrap();
        assert_eq!(back, t);
        let one = decode(Bytes::from(bytes), &|k| k == "note").unwrap();
        assert_eq!(one.cols.len(), 1);
        assert_eq!(one.cols[0], t.cols[1]);
        assert_eq!(one.steps, t.steps);
    }
}
