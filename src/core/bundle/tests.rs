use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;
use crate::core::frame::Frames;
use crate::core::log_index::LogIndex;
use crate::core::record::{
    decode, encode_meta, encode_row, FileRef, Meta, Record, RowKind, RunInfo, RunState,
};
use crate::core::run_log::{LogOptions, RunLog};
use crate::core::value::Value;

fn sample_log() -> Vec<u8> {
    let mut log = RunLog::default();
    let info = RunInfo {
        id: "abc12345".into(),
        project: "p".into(),
        created_ms: 1,
        ..RunInfo::default()
    };
    log.meta(&Meta::Start(info));
    for i in 0..50u32 {
        let mut vals: Vec<(&str, Value)> =
            vec![("loss", Value::Num(1.0 / f64::from(i + 1))), ("i", i.into())];
        if i == 7 {
            vals.push(("note", "seven".into()));
            vals.push(("loss", Value::Num(f64::NAN)));
        }
        log.log(1000 + i64::from(i), vals, LogOptions::default()).unwrap();
    }
    log.system(5, &[("cpu", 12.5)]).unwrap();
    log.meta(&Meta::File(FileRef {
        path: "model.bin".into(),
        sha256: sha256_hex(b"weights"),
        size: 7,
    }));
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: 9,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

fn build(log: &[u8]) -> Bundle {
    let index = LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    write_bundle(
        &index,
        &run,
        index.state(false),
        0..index.len(),
        &[(sha256_hex(b"weights"), b"weights".to_vec())],
    )
    .unwrap()
}

#[test]
fn bundle_roundtrips_every_record_and_is_deterministic() {
    let log = sample_log();
    let a = build(&log);
    let b = build(&log);
    assert_eq!(a.bytes, b.bytes, "same records must give the same bytes");
    assert_eq!(a.sha256, sha256_hex(&a.bytes));
    let got = read_bundle(&a.bytes, &Limits::default()).unwrap();
    assert_eq!(got.manifest.state, RunState::Finished);
    assert_eq!(got.history.len(), 50);
    let rows = got.history.rows_json();
    assert_eq!(rows[3]["i"], serde_json::json!(3.0));
    assert_eq!(rows[7]["loss"], serde_json::json!("NaN"));
    assert_eq!(rows[7]["note"], serde_json::json!("seven"));
    assert!(!rows[8].contains_key("note"));
    assert_eq!(got.history.steps[49], 49);
    assert_eq!(got.history.ts[49], 1049);
    assert_eq!(got.system.len(), 1);
    assert_eq!(got.files[&sha256_hex(b"weights")], b"weights");
    assert!(matches!(
        got.records.last(),
        Some((_, Meta::Finish { exit_code: 0, .. }))
    ));
}

fn tar_gz(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, data, kind) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        let name = h.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        tar.append(&h, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn hostile_bundles_are_refused_with_a_reason() {
    let reg = tar::EntryType::Regular;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (tar_gz(&[("../evil", b"x", reg)]), "unsafe entry path"),
        (tar_gz(&[("/etc/evil", b"x", reg)]), "unsafe entry path"),
        (
            tar_gz(&[("files/link", b"", tar::EntryType::Symlink)]),
            "not a regular file",
        ),
        (
            tar_gz(&[("records.jsonl", b"{}", reg)]),
            "manifest.json is missing",
        ),
        (b"not gzip at all".to_vec(), "gzip"),
    ];
    for (bytes, want) in cases {
        let err = read_bundle(&bytes, &Limits::default()).unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} should mention {want:?}");
    }
}

#[test]
fn truncation_checksum_and_bombs_are_caught() {
    let good = build(&sample_log()).bytes;
    for cut in [10, good.len() / 2, good.len() - 4] {
        let err = read_bundle(&good[..cut], &Limits::default()).unwrap_err();
        assert!(
            matches!(err, BundleError::Gzip(_) | BundleError::Tar(_)),
            "cut {cut}: {err}"
        );
    }
    // An entry whose bytes differ from what the manifest promises.
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&good[..]));
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        parts.push((e.path().unwrap().to_string_lossy().into_owned(), data));
    }
    let hist = parts.iter_mut().find(|(p, _)| p == HISTORY).unwrap();
    let last = hist.1.len() - 1;
    hist.1[last] ^= 0xff;
    let entries: Vec<_> = parts
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice(), tar::EntryType::Regular))
        .collect();
    let err = read_bundle(&tar_gz(&entries), &Limits::default()).unwrap_err();
    assert!(
        matches!(err, BundleError::ChecksumMismatch(ref p) if p == HISTORY),
        "{err}"
    );

    let zeros = vec![0u8; 4 << 20];
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&tar_gz_raw(&zeros)).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let limits = Limits {
        max_unpacked: 1 << 20,
        max_entries: 10,
        ..Limits::default()
    };
    let err = read_bundle(&bomb, &limits).unwrap_err();
    assert!(
        matches!(err, BundleError::TooLarge { limit } if limit == 1 << 20),
        "{err}"
    );
}

fn tar_gz_raw(data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, "files/zeros", data).unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn plan_splits_a_long_log_into_ranges() {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: "x".into(),
        project: "p".into(),
        ..RunInfo::default()
    }));
    for i in 0..1000 {
        log.log(0, [("a", f64::from(i))], LogOptions::default()).unwrap();
    }
    let mut bytes = Vec::new();
    log.take_batch(&mut bytes);
    let mut raw = Vec::new();
    encode_meta(
        &mut raw,
        &Meta::Finish {
            exit_code: 1,
            ts_ms: 0,
        },
    );
    bytes.extend_from_slice(&raw);
    let index = LogIndex::new(&bytes).unwrap();
    assert_eq!(index.state(true), RunState::Failed);
    let mut start = 0;
    let mut ranges = 0;
    while start < index.len() {
        let r = index.plan(start, 4096);
        assert!(index.offset(r.end) - index.offset(r.start) <= 4096 || r.end - r.start == 1);
        start = r.end;
        ranges += 1;
    }
    assert!(ranges > 3, "{ranges}");
}

/// Pseudo-random 64-bit words (xorshift64) from `seed`: bytes no compressor can shrink.
pub(super) fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A table of one row per entry of `cols[..][i]`, every key in every row.
fn table(names: &[&str], cols: &[Vec<f64>]) -> Vec<u8> {
    let mut log = Vec::new();
    for i in 0..cols[0].len() {
        let vals: Vec<(u32, f64)> = cols.iter().enumerate().map(|(k, c)| (k as u32, c[i])).collect();
        encode_row(&mut log, RowKind::History, i as u64, 0, &vals, &[]);
    }
    let mut b = ColumnsBuilder::default();
    for (f, seq) in Frames::new(&log).zip(0..) {
        let Ok(Record::Row(row)) = decode(f.payload) else {
            panic!("not a row");
        };
        b.push(seq, &row, |id| names.get(id as usize).copied()).unwrap();
    }
    b.finish()
}

#[test]
fn numbers_come_back_bit_exact_from_the_narrowest_planes() {
    let n = 1000;
    let mut noise = xorshift(0x9E37_79B9_7F4A_7C15);
    let narrow: Vec<f64> = (0..n)
        .map(|_| f64::from(f32::from_bits(noise() as u32 & 0x3fff_ffff)))
        .collect();
    let wide: Vec<f64> = (0..n).map(|_| f64::from_bits(noise() >> 2)).collect();
    let odd: Vec<f64> = [
        -0.0,
        f64::INFINITY,
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        0.1,
        1e300,
    ]
    .into_iter()
    .cycle()
    .take(n)
    .collect();
    let steps: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let names = ["narrow", "wide", "odd", "steps"];
    let cols = [narrow, wide, odd, steps];
    let bytes = table(&names, &cols);
    let got = Columns::decode(&bytes, &mut Budget::new(&Limits::default())).unwrap();
    for (want, col) in cols.iter().zip(&got.cols) {
        let got: Vec<u64> = col
            .values
            .iter()
            .map(|v| match v {
                Value::Num(x) => x.to_bits(),
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<u64> = want.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "column {}", col.name);
    }
    // Bytes of a column's planes: its table's size less that of a table of zeros (no planes).
    let alone =
        |k: usize| table(&names[k..=k], &cols[k..=k]).len() - table(&names[k..=k], &[vec![0.0; n]]).len();
    assert!(alone(0) <= 4 * n + 1, "exact f32s take 4 planes: {}", alone(0));
    assert!(alone(1) >= 8 * n, "other numbers take 8: {}", alone(1));
    // Integers below 2^10 leave the lowest byte of their f32 bits zero.
    assert!(
        alone(3) <= 3 * n + 1,
        "all-zero planes are left out: {}",
        alone(3)
    );
}

#[test]
fn tables_of_earlier_clients_still_decode_and_bad_masks_are_refused() {
    let mut old = b"TLC1\x02\x03\x02\x00\x02\x00\x00\x01\x04loss\x02\x00".to_vec();
    old.extend([0; 12]);
    old.extend([0xe0, 0x30, 0x3f, 0x00]);
    let got = Columns::decode(&old, &mut Budget::new(&Limits::default())).unwrap();
    assert_eq!(got.cols[0].values, vec![Value::Num(0.5), Value::Num(0.25)]);
    let new = table(&["loss"], &[vec![0.5, 0.25]]);
    let mask_at = new.len() - 5;
    assert_eq!(new[mask_at - 1], 2, "kind 2: exact f32s");
    let mut wide_mask = new.clone();
    wide_mask[mask_at] |= 0x10;
    let err = Columns::decode(&wide_mask, &mut Budget::new(&Limits::default())).unwrap_err();
    assert!(err.to_string().contains("plane mask"), "{err}");
    let err = Columns::decode(&new[..new.len() - 1], &mut Budget::new(&Limits::default())).unwrap_err();
    assert!(err.to_string().contains("truncated number planes"), "{err}");
}
