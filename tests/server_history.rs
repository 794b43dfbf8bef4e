//! History reads end to end on a real `tidelog serve`: M4 `samples` over a long run, and
//! `tidelog export` as Parquet and CSV read back by pyarrow.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashMap;

use serde_json::Value as Json;
use tidelog::core::bundle::write_bundle;
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::core::value::Value;
use tidelog::{Meta, RunInfo};

use common::{create_key, rows, Server};

const T0: i64 = 1_795_713_600_000;

/// The log of a finished run `id` of `rows` steps, each step's records written by `step`.
fn finished_log(id: &str, rows: u64, mut step: impl FnMut(&mut RunLog, u64)) -> Vec<u8> {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "history".into(),
        created_ms: T0,
        ..RunInfo::default()
    }));
    for i in 0..rows {
        step(&mut log, i);
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: T0 + rows as i64,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

/// A run of `rows` steps: `loss` falls as 1/(step+1) but is 1000 at `spike`, `acc` rises but
/// is -5 at `dip`, and a system `gpu` row every step, 99 at `spike`.
fn long_log(id: &str, rows: u64, spike: u64, dip: u64) -> Vec<u8> {
    finished_log(id, rows, |log, i| {
        let loss = if i == spike { 1000.0 } else { 1.0 / (i + 1) as f64 };
        let acc = if i == dip { -5.0 } else { i as f64 / rows as f64 };
        let ts = T0 + i as i64;
        log.log(ts, [("loss", loss), ("acc", acc)], LogOptions::default())
            .unwrap();
        log.system(ts, &[("gpu", if i == spike { 99.0 } else { 50.0 })])
            .unwrap();
    })
}

/// Posts the whole of `log` as one bundle.
fn upload(server: &Server, key: &str, log: &[u8]) {
    let index = LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    let b = write_bundle(&index, &run, index.state(false), 0..index.len(), &[]).unwrap();
    let r = common::reply(
        common::agent()
            .post(format!("{}/api/v1/bundles", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/gzip")
            .header("Tidelog-Bundle-Sha256", &b.sha256)
            .send(&b.bytes[..]),
    );
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Every row of `thinned` is the full row at its step restricted to the keys it carries, and
/// no key appears in more than `n` rows; returns how many rows each key has.
fn check_real_and_bounded(full: &[Json], thinned: &[Json], n: usize) -> HashMap<String, usize> {
    let by_step: HashMap<u64, &Json> = full.iter().map(|r| (r["_step"].as_u64().unwrap(), r)).collect();
    let mut per_key = HashMap::new();
    for row in thinned {
        let real = by_step[&row["_step"].as_u64().unwrap()];
        for (k, v) in row.as_object().unwrap() {
            assert_eq!(&real[k], v, "{k} at step {}", row["_step"]);
            if !k.starts_with('_') {
                *per_key.entry(k.clone()).or_insert(0) += 1;
            }
        }
    }
    for (k, count) in &per_key {
        assert!(*count <= n, "{k}: {count} rows for samples={n}");
    }
    per_key
}

#[test]
fn samples_keep_every_spike_of_a_long_run_within_n_real_rows_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start(dir.path());
    let (spike, dip) = (54_321, 77_777);
    upload(&server, &key, &long_log("long", 100_000, spike, dip));
    let full = rows(&server.url, &key, "/api/v1/runs/long/history");
    assert_eq!(full.len(), 100_000);

    let one = rows(
        &server.url,
        &key,
        "/api/v1/runs/long/history?keys=loss&samples=1000",
    );
    let counts = check_real_and_bounded(&full, &one, 1000);
    assert!(counts["loss"] >= 500, "{counts:?}");
    assert!(!counts.contains_key("acc"), "{counts:?}");
    let at = |rows: &[Json], step: u64| rows.iter().find(|r| r["_step"] == step).cloned();
    assert_eq!(at(&one, spike).expect("the spike survives")["loss"], 1000.0);
    assert_eq!(one[0]["_step"], 0);
    assert_eq!(one.last().unwrap()["_step"], 99_999);
    assert!(one
        .windows(2)
        .all(|w| w[0]["_step"].as_u64() < w[1]["_step"].as_u64()));

    let all = rows(&server.url, &key, "/api/v1/runs/long/history?samples=1000");
    check_real_and_bounded(&full, &all, 1000);
    assert_eq!(at(&all, spike).expect("the spike survives")["loss"], 1000.0);
    assert_eq!(at(&all, dip).expect("the dip survives")["acc"], -5.0);

    let paged = rows(
        &server.url,
        &key,
        "/api/v1/runs/long/history?keys=loss&min_step=60000&samples=8",
    );
    check_real_and_bounded(&full, &paged, 8);
    assert!(paged.iter().all(|r| r["_step"].as_u64().unwrap() >= 60_000));

    let sys_full = rows(&server.url, &key, "/api/v1/runs/long/system");
    let sys = rows(&server.url, &key, "/api/v1/runs/long/system?samples=200");
    check_real_and_bounded(&sys_full, &sys, 200);
    assert!(sys.iter().any(|r| r["gpu"] == 99.0), "the system spike survives");
}

/// The Python that reads exports back with pyarrow: `$TIDELOG_PYTHON`, or the venv
/// `scripts/setup` makes.
fn python() -> std::path::PathBuf {
    std::env::var_os("TIDELOG_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"),
        Into::into,
    )
}

/// Reads `file` with pyarrow (Parquet, or CSV with `csv`): its schema, `_timestamp` in ms,
/// the other columns as rows, and each column chunk's compression. Floats that are not
/// finite come back as the API writes them ("NaN", "Infinity").
fn read_with_pyarrow(file: &std::path::Path, csv: bool) -> Json {
    const SCRIPT: &str = r#"
import json, math, sys
import pyarrow as pa, pyarrow.csv, pyarrow.parquet as pq
path, kind = sys.argv[1], sys.argv[2]
if kind == "csv":
    t, groups, codecs = pyarrow.csv.read_csv(path), 0, []
    ts = [round(x * 1000) for x in t.column("_timestamp").to_pylist()]
else:
    meta = pq.ParquetFile(path).metadata
    groups = meta.num_row_groups
    codecs = sorted({meta.row_group(g).column(c).compression for g in range(groups) for c in range(meta.num_columns)})
    t = pq.read_table(path)
    ts = t.column("_timestamp").cast(pa.int64()).to_pylist()
def fix(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v
rows = [{k: fix(v) for k, v in r.items()} for r in t.drop_columns(["_timestamp"]).to_pylist()]
print(json.dumps({"schema": {f.name: str(f.type) for f in t.schema}, "ts_ms": ts, "rows": rows,
                  "row_groups": groups, "codecs": codecs}))
"#;
    let kind = if csv { "csv" } else { "parquet" };
    let out = std::process::Command::new(python())
        .args(["-c", SCRIPT])
        .arg(file)
        .arg(kind)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", python().display()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A run whose keys are a number on every row (once NaN, once +Infinity), a number on some
/// rows, and a string or a boolean on a few.
fn mixed_log(id: &str, rows: u64) -> Vec<u8> {
    finished_log(id, rows, |log, i| {
        let loss = match i {
            7 => f64::NAN,
            8 => f64::INFINITY,
            _ => 1.0 / (i + 1) as f64,
        };
        let mut items: Vec<(&str, Value)> = vec![("loss", Value::Num(loss))];
        if i % 1000 == 0 {
            items.push(("val/acc", Value::Num(i as f64 / 10.0)));
        }
        if i % 50_000 == 3 {
            items.push(("note", Value::from("a, \"quoted\" note")));
        }
        if i % 50_000 == 4 {
            items.push(("note", Value::Bool(true)));
        }
        if i == 11 {
            items.push(("phase", Value::from("warm-up")));
        }
        log.log(T0 + i as i64, items, LogOptions::default()).unwrap();
    })
}

/// The pyarrow rows equal the API's rows: same steps and timestamps, a number column's value
/// or a JSON column's parsed text where the API row has the key, null where it has not.
fn assert_same_rows(api: &[Json], read: &Json, json_columns: &[&str]) {
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), api.len());
    for (i, (a, r)) in api.iter().zip(rows).enumerate() {
        assert_eq!(a["_step"], r["_step"], "row {i}");
        let ms = (a["_timestamp"].as_f64().unwrap() * 1000.0).round() as i64;
        assert_eq!(read["ts_ms"][i], ms, "row {i}");
        for (k, v) in r.as_object().unwrap().iter().filter(|(k, _)| *k != "_step") {
            let got = match (v, json_columns.contains(&k.as_str())) {
                (Json::String(s), true) => serde_json::from_str(s).unwrap(),
                _ => v.clone(),
            };
            assert_eq!(a.get(k).cloned().unwrap_or(Json::Null), got, "{k} in row {i}");
        }
    }
}

#[test]
fn export_writes_parquet_and_csv_that_pyarrow_reads_back_as_the_api_rows() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let other = create_key(dir.path(), "bob");
    let server = Server::start(dir.path());
    // More rows than one row group holds (2^20 cells over 6 columns).
    upload(&server, &key, &mixed_log("mixed", 200_000));
    let api = rows(&server.url, &key, "/api/v1/runs/mixed/history");
    let auth = |k: &str| {
        vec![
            ("TIDELOG_API_KEY", k.to_owned()),
            ("TIDELOG_BASE_URL", server.url.clone()),
        ]
    };
    let export = |args: &[&str], env: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        common::tidelog(dir.path(), args, &env)
    };

    let file = dir.path().join("mixed.parquet");
    let out = export(&["export", "mixed", "-o", file.to_str().unwrap()], &auth(&key));
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let read = read_with_pyarrow(&file, false);
    assert_eq!(
        read["schema"],
        serde_json::json!({"_step": "int64", "_timestamp": "timestamp[ms, tz=UTC]", "loss": "double",
            "note": "string", "phase": "string", "val/acc": "double"})
    );
    assert!(
        read["row_groups"].as_u64().unwrap() >= 2,
        "{}",
        read["row_groups"]
    );
    assert_eq!(read["codecs"], serde_json::json!(["ZSTD"]));
    assert_same_rows(&api, &read, &["note", "phase"]);

    let csv = dir.path().join("mixed.csv");
    let out = export(
        &["export", "mixed", "--format", "csv", "-o", csv.to_str().unwrap()],
        &auth(&key),
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let read = read_with_pyarrow(&csv, true);
    assert_eq!(read["rows"].as_array().unwrap().len(), api.len());
    assert_eq!(read["rows"][11]["phase"], "\"warm-up\"");
    assert_eq!(read["rows"][1000]["val/acc"], 100.0);

    let refused = dir.path().join("refused.parquet");
    let out = export(
        &["export", "mixed", "-o", refused.to_str().unwrap()],
        &auth(&other),
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        common::text(&out)
    );
    assert!(!refused.exists(), "no file from a refused export");
    let out = export(
        &["export", "mixed", "-o", refused.to_str().unwrap()],
        &[("TIDELOG_BASE_URL", server.url.clone())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
}
