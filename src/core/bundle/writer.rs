//! Builds the deterministic bundle for a record range: same records, same bytes.

use std::collections::BTreeSet;
use std::ops::Range;

use serde::Serialize;

use super::columns::ColumnsBuilder;
use super::gzip::GzSink;
use super::manifest::{Entry, Manifest, FORMAT};
use super::{sha256_hex, BundleError, FILES_DIR, HISTORY, MANIFEST, RECORDS, SYSTEM};
use crate::core::log_index::LogIndex;
use crate::core::record::{decode, Meta, Record, RowKind, RunInfo, RunState};

/// A tar block: headers and entries are padded to it, and two empty ones end the archive.
const BLOCK: usize = 512;

/// A finished bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The `.tar.gz` bytes.
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`: the idempotency key.
    pub sha256: String,
    /// What it holds.
    pub manifest: Manifest,
    /// Row values left out because the key record naming them was lost to damage.
    pub dropped_values: u64,
}

#[derive(Serialize)]
struct MetaLine<'a> {
    seq: u64,
    #[serde(flatten)]
    meta: &'a Meta,
}

/// Builds the bundle of `range`. `files_in` holds `(sha256, content)` of the saved files to
/// include; files referenced in the range but absent from it are ones the server already has.
pub fn write_bundle(
    index: &LogIndex<'_>,
    run: &RunInfo,
    state: RunState,
    range: Range<u64>,
    files_in: &[(String, Vec<u8>)],
) -> Result<Bundle, BundleError> {
    write_bundle_skipping(index, run, state, range, files_in, &BTreeSet::new())
}

/// [`write_bundle`] leaving out the records of the saved files in `skip` (by sha256): files
/// the server refused, so that they never stand between the server and the records after them.
pub fn write_bundle_skipping(
    index: &LogIndex<'_>,
    run: &RunInfo,
    state: RunState,
    range: Range<u64>,
    files_in: &[(String, Vec<u8>)],
    skip: &BTreeSet<String>,
) -> Result<Bundle, BundleError> {
    let mut history = ColumnsBuilder::default();
    let mut system = ColumnsBuilder::default();
    let mut records = Vec::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (seq, payload) in index.payloads(range.clone()) {
        let rec = decode(payload).map_err(|e| BundleError::Records {
            entry: RECORDS,
            why: format!("record {seq}: {e}"),
        })?;
        let bad_row = |e: crate::core::record::DecodeError| BundleError::Records {
            entry: HISTORY,
            why: format!("record {seq}: {e}"),
        };
        match rec {
            Record::Key { .. } => {}
            Record::Row(row) if row.kind == RowKind::History => {
                history.push(seq, &row, |id| index.key(id)).map_err(bad_row)?
            }
            Record::Row(row) => system.push(seq, &row, |id| index.key(id)).map_err(bad_row)?,
            Record::Meta(Meta::File(f)) if skip.contains(&f.sha256) => {}
            Record::Meta(meta) => {
                if let Meta::File(f) = &meta {
                    let path = format!("{FILES_DIR}{}", f.sha256);
                    if let Some((_, data)) = files_in.iter().find(|(sha, _)| *sha == f.sha256) {
                        if sha256_hex(data) != f.sha256 {
                            return Err(BundleError::MissingFile {
                                path: f.path.clone(),
                                why: "content does not match its sha256".into(),
                            });
                        }
                        if !files.iter().any(|(p, _)| *p == path) {
                            files.push((path, data.to_vec()));
                        }
                    }
                }
                serde_json::to_writer(&mut records, &MetaLine { seq, meta: &meta })
                    .expect("serializing to a Vec cannot fail");
                records.push(b'\n');
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    // Each entry with the spans of it that gzip may store (number planes of the tables).
    let mut parts: Vec<(String, Vec<u8>, Vec<Range<usize>>)> = Vec::new();
    if !records.is_empty() {
        parts.push((RECORDS.into(), records, Vec::new()));
    }
    for (path, table) in [(HISTORY, &history), (SYSTEM, &system)] {
        if !table.is_empty() {
            let (bytes, planes) = table.finish_planes();
            parts.push((path.into(), bytes, planes));
        }
    }
    parts.extend(files.into_iter().map(|(path, data)| (path, data, Vec::new())));
    let manifest = Manifest {
        format: FORMAT,
        run: run.clone(),
        state,
        seq_start: range.start,
        seq_end: range.end,
        entries: parts
            .iter()
            .map(|(path, data, _)| Entry {
                path: path.clone(),
                sha256: sha256_hex(data),
                size: data.len() as u64,
            })
            .collect(),
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).expect("serializing to a Vec cannot fail");
    let mut gz = GzSink::new();
    let io = |e: std::io::Error| BundleError::Tar(e.to_string());
    append(&mut gz, MANIFEST, &manifest_json, &[]).map_err(io)?;
    for (path, data, spans) in &parts {
        append(&mut gz, path, data, spans).map_err(io)?;
    }
    gz.write(&[0; 2 * BLOCK]);
    let bytes = gz.finish();
    Ok(Bundle {
        sha256: sha256_hex(&bytes),
        bytes,
        manifest,
        dropped_values: history.dropped() + system.dropped(),
    })
}

/// One tar entry, as `tar::Builder::append_data` lays it out, written through `gz` so that
/// the table planes among `spans` may go stored.
fn append(gz: &mut GzSink, path: &str, data: &[u8], spans: &[Range<usize>]) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path)?;
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    gz.write(h.as_bytes());
    gz.write_spans(data, spans);
    gz.write(&[0; BLOCK][..(BLOCK - data.len() % BLOCK) % BLOCK]);
    Ok(())
}
