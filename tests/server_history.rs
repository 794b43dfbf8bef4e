//! History reads end to end on a real `tidelog serve`: M4 `samples` over a long run.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashMap;

use serde_json::Value as Json;
use tidelog::core::bundle::write_bundle;
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::{Meta, RunInfo};

use common::{create_key, get, Server};

const T0: i64 = 1_795_713_600_000;

/// A finished run `id` of `rows` steps: `loss` falls as 1/(step+1) but is 1000 at `spike`,
/// `acc` rises but is -5 at `dip`, and a system `gpu` row every step, 99 at `spike`.
fn long_log(id: &str, rows: u64, spike: u64, dip: u64) -> Vec<u8> {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "long".into(),
        created_ms: T0,
        ..RunInfo::default()
    }));
    for i in 0..rows {
        let loss = if i == spike { 1000.0 } else { 1.0 / (i + 1) as f64 };
        let acc = if i == dip { -5.0 } else { i as f64 / rows as f64 };
        let ts = T0 + i as i64;
        log.log(ts, [("loss", loss), ("acc", acc)], LogOptions::default())
            .unwrap();
        log.system(ts, &[("gpu", if i == spike { 99.0 } else { 50.0 })])
            .unwrap();
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: T0 + rows as i64,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
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

fn rows(server: &Server, key: &str, path: &str) -> Vec<Json> {
    let (status, body) = get(&server.url, key, path);
    assert_eq!(status, 200, "{path}: {body}");
    body["rows"].as_array().unwrap().clone()
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
    let full = rows(&server, &key, "/api/v1/runs/long/history");
    assert_eq!(full.len(), 100_000);

    let one = rows(&server, &key, "/api/v1/runs/long/history?keys=loss&samples=1000");
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

    let all = rows(&server, &key, "/api/v1/runs/long/history?samples=1000");
    check_real_and_bounded(&full, &all, 1000);
    assert_eq!(at(&all, spike).expect("the spike survives")["loss"], 1000.0);
    assert_eq!(at(&all, dip).expect("the dip survives")["acc"], -5.0);

    let paged = rows(
        &server,
        &key,
        "/api/v1/runs/long/history?keys=loss&min_step=60000&samples=8",
    );
    check_real_and_bounded(&full, &paged, 8);
    assert!(paged.iter().all(|r| r["_step"].as_u64().unwrap() >= 60_000));

    let sys_full = rows(&server, &key, "/api/v1/runs/long/system");
    let sys = rows(&server, &key, "/api/v1/runs/long/system?samples=200");
    check_real_and_bounded(&sys_full, &sys, 200);
    assert!(sys.iter().any(|r| r["gpu"] == 99.0), "the system spike survives");
}
