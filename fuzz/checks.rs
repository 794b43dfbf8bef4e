//! Property checks over untrusted bytes, one per fuzz target. The fuzz targets
//! (`fuzz/fuzz_targets/`) and the corpus regression test (`tests/fuzz_corpus.rs`) both call
//! these, so a corpus file is checked the same way in `cargo test` as under libFuzzer.
//! Each check panics when a property fails; refusing bad input with an error is fine.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value as Json};
use tidelog::core::bundle::{
    read_bundle, sha256_hex, write_bundle, Budget, BundleContents, BundleError, Columns, ColumnsBuilder,
    DecodedColumn, Limits, FILES_DIR, FORMAT, MANIFEST,
};
use tidelog::core::frame::{push, Frames, HEADER};
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::{decode, encode_row, Meta, Record, RowKind};
use tidelog::core::value::Value;

/// A property check: panics when `data` breaks a property.
pub type Check = fn(&[u8]);

/// Every check, by the name of its fuzz target (and of its corpus folder).
pub const TARGETS: &[(&str, Check)] = &[
    ("frames", frames),
    ("log_index", log_index),
    ("bundle", bundle),
    ("bundle_tar", bundle_tar),
    ("columns", columns),
];

/// Frame reader: frames are non-empty, inside the input, in order and apart; every gap
/// between them is reported as corruption (offset and length exactly), nothing else is;
/// `valid_len` is the end of the last frame; and framing each payload again reproduces that
/// frame's bytes.
pub fn frames(data: &[u8]) {
    let mut it = Frames::new(data);
    let mut end = 0;
    let mut gaps = Vec::new();
    for f in it.by_ref() {
        assert!(f.offset >= end, "frame at {} overlaps the previous one", f.offset);
        if f.offset > end {
            gaps.push((end, f.offset - end));
        }
        assert!(!f.payload.is_empty(), "an empty frame at {}", f.offset);
        let at = f.payload.as_ptr() as usize - data.as_ptr() as usize;
        assert_eq!(at, f.offset + HEADER, "the payload follows its header");
        end = at + f.payload.len();
        assert!(end <= data.len(), "frame at {} runs past the input", f.offset);
        let mut rebuilt = Vec::new();
        push(&mut rebuilt, f.payload);
        assert_eq!(
            rebuilt,
            data[f.offset..end],
            "re-framing reproduces frame {}",
            f.offset
        );
    }
    assert_eq!(it.valid_len(), end, "valid_len is the end of the last frame");
    let reported: Vec<_> = it.corruption().iter().map(|c| (c.offset, c.len)).collect();
    assert_eq!(
        reported, gaps,
        "the skipped stretches are the reported corruption"
    );
}

/// Log index over the raw bytes, then over the same frames with their checksums made right,
/// so mutated records also get past the CRC (see [`check_log`]).
pub fn log_index(data: &[u8]) {
    check_log(data);
    let sealed = reseal_log(data);
    if sealed != data {
        check_log(&sealed);
    }
}

/// The frames of `log` read by their lengths alone, framed again with correct checksums.
fn reseal_log(log: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = log;
    while let Some((len, body)) = rest.split_first_chunk::<4>().filter(|(_, b)| b.len() >= 4) {
        let len = u32::from_le_bytes(*len) as usize;
        let Some(payload) = body[4..].get(..len).filter(|p| !p.is_empty()) else {
            break;
        };
        push(&mut out, payload);
        rest = &body[4 + len..];
    }
    out
}

/// Log index: agrees with the frame reader, offsets and payloads match it, `plan` cuts the
/// log into consecutive, maximal, non-empty ranges within the byte budget, `files` is
/// duplicate-free, and every bundle `write_bundle` makes from it is one `read_bundle` accepts
/// with the same records.
fn check_log(data: &[u8]) {
    let mut it = Frames::new(data);
    let frames: Vec<_> = it.by_ref().collect();
    let records: Vec<_> = frames.iter().map(|f| decode(f.payload)).collect();
    let index = match LogIndex::new(data) {
        Ok(index) => index,
        Err(_) => {
            assert!(
                records.iter().any(Result::is_err),
                "refused a log whose records all decode"
            );
            return;
        }
    };
    let records: Vec<Record<'_>> = records.into_iter().map(|r| r.expect("indexed")).collect();
    let len = index.len();
    assert_eq!(len, frames.len() as u64);
    assert_eq!(index.is_empty(), frames.is_empty());
    assert_eq!(index.valid_len(), it.valid_len());
    for (seq, f) in frames.iter().enumerate() {
        assert_eq!(index.offset(seq as u64), f.offset, "offset of record {seq}");
    }
    assert_eq!(
        index.offset(len),
        index.valid_len(),
        "offset past the end is valid_len"
    );
    assert!(index
        .payloads(0..len)
        .map(|(_, p)| p)
        .eq(frames.iter().map(|f| f.payload)));

    let first_start = records.iter().find_map(|r| match r {
        Record::Meta(Meta::Start(info)) => Some(info),
        _ => None,
    });
    assert_eq!(index.run(), first_start, "run() is the first start record");
    for r in &records {
        if let Record::Key { id, name } = r {
            assert!(index.key(*id).is_some(), "key {name:?} (#{id}) is known");
        }
    }
    assert_ne!(index.state(false), tidelog::core::record::RunState::Running);
    assert_ne!(index.state(true), tidelog::core::record::RunState::Crashed);

    for max in [0, 1, 64, 4096, usize::MAX] {
        let mut start = 0;
        while start < len {
            let r = index.plan(start, max);
            assert_eq!(r.start, start);
            assert!(r.end > start && r.end <= len, "plan({start}, {max}) = {r:?}");
            let bytes = index.offset(r.end) - index.offset(start);
            assert!(
                bytes <= max || r.end == start + 1,
                "plan({start}, {max}) over budget"
            );
            if r.end < len {
                let more = index.offset(r.end + 1) - index.offset(start);
                assert!(more > max, "plan({start}, {max}) stopped early");
            }
            start = r.end;
        }
        assert_eq!(index.plan(len, max), len..len);
    }

    let files = index.files(0..len);
    for (i, f) in files.iter().enumerate() {
        let dup = files[..i]
            .iter()
            .any(|o| o.path == f.path && o.sha256 == f.sha256);
        assert!(!dup, "files() lists {:?} twice", f.path);
        let named = records
            .iter()
            .any(|r| matches!(r, Record::Meta(Meta::File(g)) if g == f));
        assert!(named, "files() invented {:?}", f.path);
    }

    let Some(run) = index.run() else { return };
    let mut start = 0;
    while start < len {
        let range = index.plan(start, 4096);
        start = range.end;
        let Ok(b) = write_bundle(&index, run, index.state(false), range.clone(), &[]) else {
            continue;
        };
        assert_eq!(b.sha256, sha256_hex(&b.bytes));
        let again = write_bundle(&index, run, index.state(false), range.clone(), &[]);
        assert_eq!(
            again.expect("written once").bytes,
            b.bytes,
            "bundles are deterministic"
        );
        let back = read_bundle(&b.bytes, &Limits::default())
            .unwrap_or_else(|e| panic!("read_bundle refused write_bundle's {range:?}: {e}"));
        let in_range = &records[range.start as usize..range.end as usize];
        let rows = |kind| {
            let is = |r: &&Record<'_>| matches!(r, Record::Row(row) if row.kind == kind);
            in_range.iter().filter(is).count()
        };
        assert_eq!(back.history.len(), rows(RowKind::History));
        assert_eq!(back.system.len(), rows(RowKind::System));
        let metas = in_range.iter().filter(|r| matches!(r, Record::Meta(_))).count();
        assert_eq!(back.records.len(), metas);
        assert_eq!(
            (back.manifest.seq_start, back.manifest.seq_end),
            (range.start, range.end)
        );
    }
}

/// Bundle reader over gzip bytes (see [`check_bundle`]).
pub fn bundle(data: &[u8]) {
    check_bundle(data);
}

/// Bundle reader over tar bytes, gzipped here so every input gets past gzip; then the same
/// tar resealed (manifest entries recomputed) so mutated entries also get past the checksums.
pub fn bundle_tar(data: &[u8]) {
    check_bundle(&gzip(data));
    if let Some(sealed) = reseal(data) {
        check_bundle(&gzip(&sealed));
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::none());
    gz.write_all(data).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// The tar's regular files again, with `manifest.json`'s `entries` listing the others' true
/// sizes and sha256s; `None` when there is no JSON object manifest or a path tar refuses.
fn reseal(tar_bytes: &[u8]) -> Option<Vec<u8>> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for entry in tar::Archive::new(tar_bytes).entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).ok()?;
        files.push((path, data));
    }
    let at = files.iter().position(|(p, _)| p == Path::new(MANIFEST))?;
    let mut manifest: Json = serde_json::from_slice(&files[at].1).ok()?;
    let listed = files.iter().filter(|(p, _)| p != Path::new(MANIFEST));
    let listed = listed.map(|(p, d)| json!({"path": p, "sha256": sha256_hex(d), "size": d.len()}));
    *manifest.as_object_mut()?.get_mut("entries")? = listed.collect();
    files[at].1 = serde_json::to_vec(&manifest).ok()?;
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, &data[..]).ok()?;
    }
    tar.into_inner().ok()
}

/// Bundle reader: an accepted bundle gunzips to at most the limit (exactly: the same bundle
/// under a limit one byte short is refused as too large, under its own size accepted the same),
/// and its contents are consistent (see [`check_contents`]).
fn check_bundle(gz: &[u8]) {
    let limits = Limits::default();
    let Ok(contents) = read_bundle(gz, &limits) else {
        return;
    };
    let unpacked = gunzipped_len(gz, limits.max_unpacked)
        .expect("an accepted bundle is one whole gzip stream within the limit");
    check_contents(&contents, &limits);
    let exact = Limits {
        max_unpacked: unpacked,
        ..limits
    };
    let same = read_bundle(gz, &exact).expect("a bundle fits a limit of its own size");
    assert_eq!(format!("{same:?}"), format!("{contents:?}"));
    if unpacked > 0 {
        let short = Limits {
            max_unpacked: unpacked - 1,
            ..limits
        };
        let refused = read_bundle(gz, &short).map(|_| ());
        assert!(
            matches!(refused, Err(BundleError::TooLarge { .. })),
            "a bundle one byte over the limit gave {refused:?}"
        );
    }
}

/// How many bytes `gz` gunzips to, counted without holding them; `None` when over `limit` or
/// not a whole gzip stream.
fn gunzipped_len(gz: &[u8], limit: u64) -> Option<u64> {
    let n = io::copy(&mut GzDecoder::new(gz).take(limit + 1), &mut io::sink()).ok()?;
    (n <= limit).then_some(n)
}

/// An accepted bundle: supported manifest, entries within the limits, every record and row
/// inside the stated range, consistent tables, files matching their names, safe file paths.
fn check_contents(c: &BundleContents, limits: &Limits) {
    let m = &c.manifest;
    assert_eq!(m.format, FORMAT);
    assert!(m.seq_start <= m.seq_end);
    assert!(!m.run.id.is_empty() && !m.run.project.is_empty());
    assert!(
        m.entries.len() < limits.max_entries,
        "the manifest is an entry too"
    );
    let listed: u64 = m.entries.iter().map(|e| e.size).sum();
    assert!(listed <= limits.max_unpacked);
    let range = m.seq_start..m.seq_end;
    for (seq, meta) in &c.records {
        assert!(range.contains(seq), "record {seq} outside {range:?}");
        if let Meta::File(f) = meta {
            let safe = Path::new(&f.path)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            assert!(safe && !f.path.is_empty(), "unsafe file path {:?}", f.path);
        }
    }
    for table in [&c.history, &c.system] {
        check_columns(table);
        assert!(
            table.seqs.iter().all(|s| range.contains(s)),
            "row outside {range:?}"
        );
    }
    for (sha, data) in &c.files {
        assert_eq!(*sha, sha256_hex(data), "file content matches its name");
        let path = format!("{FILES_DIR}{sha}");
        let entry = m
            .entries
            .iter()
            .find(|e| e.path == path)
            .expect("files are listed");
        assert_eq!(entry.size, data.len() as u64);
    }
}

/// Column decoding: the table is consistent, and the builder's encoding of it decodes to the
/// same rows (columns in order of first appearance, empty ones dropped) and is a fixpoint:
/// decoding and re-encoding builder output gives the same bytes.
pub fn columns(data: &[u8]) {
    let Ok(table) = Columns::decode(data, &mut Budget::new(&Limits::default())) else {
        return;
    };
    check_columns(&table);
    let encoded = reencode(&table);
    let back = Columns::decode(&encoded, &mut Budget::new(&Limits::default()))
        .expect("the builder's output decodes");
    check_columns(&back);
    assert_same(&back, &canonical(&table));
    assert_eq!(
        reencode(&back),
        encoded,
        "builder output round-trips byte for byte"
    );
}

/// A decoded table is internally consistent: one seq, step and time per row, strictly
/// ascending seqs (the server stores rows by (run, seq)),
/// each column's row indices strictly ascending and in range, one value per row index.
fn check_columns(t: &Columns) {
    let n = t.len();
    assert_eq!((t.steps.len(), t.ts.len()), (n, n), "one step and time per row");
    assert!(
        t.seqs.windows(2).all(|w| w[0] < w[1]),
        "seqs strictly ascend: one row per record"
    );
    for col in &t.cols {
        assert_eq!(
            col.rows.len(),
            col.values.len(),
            "one value per row in {:?}",
            col.name
        );
        assert!(
            col.rows.windows(2).all(|w| w[0] < w[1]),
            "rows ascend in {:?}",
            col.name
        );
        assert!(col.rows.iter().all(|&r| (r as usize) < n), "row index in range");
    }
    assert_eq!(t.rows_json().len(), n);
}

/// Encodes `t` again the way a bundle is written: rows into log frames, frames through the
/// builder. Key id `i` is column `i`.
fn reencode(t: &Columns) -> Vec<u8> {
    let mut per_row: Vec<Vec<(u32, Value)>> = vec![Vec::new(); t.len()];
    for (id, col) in t.cols.iter().enumerate() {
        for (&r, v) in col.rows.iter().zip(&col.values) {
            per_row[r as usize].push((id as u32, v.clone()));
        }
    }
    let mut builder = ColumnsBuilder::default();
    for (r, values) in per_row.iter().enumerate() {
        let mut log = Vec::new();
        encode_row(&mut log, RowKind::History, t.steps[r], t.ts[r], &[], values);
        let frame = Frames::new(&log).next().expect("a framed row");
        let Ok(Record::Row(row)) = decode(frame.payload) else {
            panic!("encode_row's frame decodes as a row");
        };
        let name = |id: u32| t.cols.get(id as usize).map(|c| c.name.as_str());
        builder
            .push(t.seqs[r], &row, name)
            .expect("every key id is named");
    }
    builder.finish()
}

/// What the builder keeps of a table: columns that have values, by first row.
fn canonical(t: &Columns) -> Columns {
    let mut cols: Vec<DecodedColumn> = t.cols.iter().filter(|c| !c.rows.is_empty()).cloned().collect();
    cols.sort_by_key(|c| c.rows[0]);
    Columns { cols, ..t.clone() }
}

/// Table equality where a NaN equals the NaN with the same bits.
fn assert_same(a: &Columns, b: &Columns) {
    assert_eq!((&a.seqs, &a.steps, &a.ts), (&b.seqs, &b.steps, &b.ts));
    assert_eq!(a.cols.len(), b.cols.len(), "column count");
    for (x, y) in a.cols.iter().zip(&b.cols) {
        assert_eq!((&x.name, &x.rows), (&y.name, &y.rows));
        let same = |(u, v): (&Value, &Value)| match (u, v) {
            (Value::Num(p), Value::Num(q)) => p.to_bits() == q.to_bits(),
            _ => u == v,
        };
        assert!(x.values.iter().zip(&y.values).all(same), "values of {:?}", x.name);
    }
}
