//! CSV history: a header row names the keys; a `step` or `_step` column gives each row's
//! step (else the row number), a `_timestamp` column (seconds, as W&B exports write it)
//! its time; cells that parse as numbers are metrics, other non-empty cells strings.

use std::io::{self, Read};

use crate::core::value::Value;

use super::{secs_to_ms, Item};

/// Longest physical line accepted, so one runaway field cannot exhaust memory.
pub const MAX_LINE_BYTES: usize = crate::core::run_log::MAX_VALUE_BYTES;

/// Why a CSV file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file has no header row.
    #[error("the file is empty: a header row naming the columns is needed")]
    NoHeader,
    /// A cell or line the reader refused.
    #[error("{0}")]
    Csv(#[from] csv::Error),
    /// A step that is not a whole number, with the line it is on.
    #[error("line {line}: step {value:?} is not a whole number >= 0")]
    Step {
        /// 1-based line number.
        line: u64,
        /// The cell.
        value: String,
    },
}

/// Passes bytes through, failing once a line grows past [`MAX_LINE_BYTES`].
struct LineLimit<R> {
    inner: R,
    line: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            self.line = if b == b'\n' { 0 } else { self.line + 1 };
            if self.line > MAX_LINE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
        }
        Ok(n)
    }
}

/// The rows of a CSV file as history items, streamed.
pub struct Rows<R: Read> {
    reader: csv::Reader<LineLimit<R>>,
    header: Vec<String>,
    step_col: Option<usize>,
    ts_col: Option<usize>,
    record: csv::StringRecord,
    row: u64,
}

impl<R: Read> Rows<R> {
    /// Reads the header row.
    pub fn new(src: R) -> Result<Self, CsvError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(LineLimit { inner: src, line: 0 });
        let header: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_owned()).collect();
        if header.iter().all(String::is_empty) {
            return Err(CsvError::NoHeader);
        }
        let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
        Ok(Rows {
            step_col: col(&["step", "_step"]),
            ts_col: col(&["_timestamp"]),
            header,
            reader,
            record: csv::StringRecord::new(),
            row: 0,
        })
    }

    /// The next row as an [`Item::History`], `None` at the end.
    pub fn next_row(&mut self) -> Result<Option<Item>, CsvError> {
        if !self.reader.read_record(&mut self.record)? {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let mut step = self.row;
        self.row += 1;
        let (mut ts_ms, mut values) = (None, Vec::new());
        for (i, cell) in self.record.iter().enumerate() {
            let cell = cell.trim();
            let Some(key) = self.header.get(i).filter(|k| !k.is_empty()) else {
                continue;
            };
            if Some(i) == self.step_col {
                step = cell.parse().map_err(|_| CsvError::Step {
                    line,
                    value: cell.chars().take(40).collect(),
                })?;
            } else if Some(i) == self.ts_col {
                ts_ms = cell.parse::<f64>().ok().and_then(secs_to_ms);
            } else if cell.is_empty() || key == "_runtime" {
                continue;
            } else if let Ok(x) = cell.parse::<f64>() {
                values.push((key.clone(), Value::Num(x)));
            } else {
                values.push((key.clone(), Value::Str(cell.to_owned())));
            }
        }
        Ok(Some(Item::History { step, ts_ms, values }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<Item>, CsvError> {
        let mut rows = Rows::new(text.as_bytes())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next_row()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn steps_numbers_and_strings() {
        let got = all("step,loss,tag,_timestamp\n5,0.5,a,1.5e9\n7,,b,\n").unwrap();
        assert_eq!(
            got,
            vec![
                Item::History {
                    step: 5,
                    ts_ms: Some(1_500_000_000_000),
                    values: vec![
                        ("loss".into(), Value::Num(0.5)),
                        ("tag".into(), Value::Str("a".into()))
                    ],
                },
                Item::History {
                    step: 7,
                    ts_ms: None,
                    values: vec![("tag".into(), Value::Str("b".into()))]
                },
            ]
        );
        let rows = all("x\n1\n2\n").unwrap();
        assert!(matches!(rows[1], Item::History { step: 1, .. }));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(all(""), Err(CsvError::NoHeader)));
        let e = all("step,x\n1,2\nnope,3\n").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("nope"), "{e}");
        let long = format!("x\n{}\n", "9".repeat(MAX_LINE_BYTES + 1));
        assert!(all(&long).unwrap_err().to_string().contains("longer than"));
    }
}
