//! Writes the seed corpora under `fuzz/corpus/<target>/` from real logs: the shared test
//! vector (`tests/vectors/`) and a small log written by the core's `RunLog`, their bundles as
//! `write_bundle` makes them, the tars inside, and the column tables inside those.
//! Run from `fuzz/`: `cargo run --example seeds`.

use std::io::Read;
use std::path::Path;

use serde_json::json;
use tidelog::core::bundle::{sha256_hex, write_bundle, HISTORY, SYSTEM};
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::{FileRef, Meta, RunInfo};
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::core::value::Value;

const VECTOR_LOG: &[u8] = include_bytes!("../../tests/vectors/run.tlog");
const VECTOR_MODEL: &[u8] = include_bytes!("../../tests/vectors/model.bin");

/// A short run with every record kind and every value kind.
fn small_log() -> (Vec<u8>, Vec<u8>) {
    let model = b"weights".to_vec();
    let mut run = RunLog::default();
    let info = RunInfo {
        id: "r1".into(),
        project: "p".into(),
        created_ms: 1,
        ..RunInfo::default()
    };
    run.meta(&Meta::Start(info));
    for step in 0..3 {
        let values: Vec<(&str, Value)> = vec![
            ("loss", Value::Num(1.0 / (step as f64 + 1.0))),
            ("nan", Value::Num(f64::NAN)),
            ("flag", Value::Bool(step % 2 == 0)),
            ("phase", Value::Str("train".into())),
            (
                "img",
                Value::Json(json!({"_type": "image-file", "path": "a.png"})),
            ),
        ];
        run.log(step, values, LogOptions::default())
            .expect("valid values");
    }
    run.system(5, &[("cpu", 0.5)]).expect("valid key");
    run.meta(&Meta::File(FileRef {
        path: "model.bin".into(),
        sha256: sha256_hex(&model),
        size: model.len() as u64,
    }));
    run.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: 9,
    });
    let mut log = Vec::new();
    run.take_batch(&mut log);
    (log, model)
}

/// The bundles of `log`: the whole log, and the ranges the sync engine would plan.
fn bundles(log: &[u8], file: &[u8]) -> Vec<Vec<u8>> {
    let index = LogIndex::new(log).expect("a real log decodes");
    let run = index.run().expect("a start record");
    let files = [(sha256_hex(file), file.to_vec())];
    let mut ranges = Vec::new();
    ranges.push(0..index.len());
    let mut start = 0;
    while start < index.len() {
        let r = index.plan(start, 2048);
        start = r.end;
        ranges.push(r);
    }
    let write = |r| write_bundle(&index, run, index.state(false), r, &files).expect("bundle");
    ranges.into_iter().map(|r| write(r).bytes).collect()
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut tar)
        .expect("our own gzip");
    tar
}

fn tables(tar: &[u8]) -> Vec<Vec<u8>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().expect("our own tar") {
        let mut entry = entry.expect("our own tar");
        let path = entry.path().expect("utf-8").to_string_lossy().into_owned();
        if path == HISTORY || path == SYSTEM {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("our own tar");
            out.push(data);
        }
    }
    out
}

fn save(target: &str, seeds: &[Vec<u8>]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("create the corpus folder");
    for seed in seeds {
        let name = format!("seed-{}", &sha256_hex(seed)[..16]);
        std::fs::write(dir.join(name), seed).expect("write a seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn main() {
    let (small, small_file) = small_log();
    let logs = [
        small.clone(),
        VECTOR_LOG.to_vec(),
        small[..small.len() - 3].to_vec(),
    ];
    let gz: Vec<Vec<u8>> = [(&small, &small_file[..]), (&VECTOR_LOG.to_vec(), VECTOR_MODEL)]
        .into_iter()
        .flat_map(|(log, file)| bundles(log, file))
        .collect();
    let tars: Vec<Vec<u8>> = gz.iter().map(|b| gunzip(b)).collect();
    let cols: Vec<Vec<u8>> = tars.iter().flat_map(|t| tables(t)).collect();
    save("frames", &logs);
    save("log_index", &logs);
    save("bundle", &gz);
    save("bundle_tar", &tars);
    save("columns", &cols);
}
