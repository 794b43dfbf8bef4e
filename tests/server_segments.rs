//! History stored as segments, end to end on a real `tidelog serve`: a data folder of the
//! earlier row-per-step format is migrated at start and reads back identically, and a run
//! uploaded in many small bundles is compacted while its history reads the same throughout.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use tidelog::core::bundle::write_bundle;
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::core::value::Value;
use tidelog::{Meta, RunInfo};

use common::{create_key, create_key_in, get, rows, store, Server};

const T0: i64 = 1_795_713_600_000;

/// The schema a data folder of the earlier format has: history and system as one SQL row per
/// step with a JSON `data` column (what `tidelog serve` created before segments).
const OLD_SCHEMA: &[&str] = &[
    "CREATE TABLE api_keys (hash TEXT PRIMARY KEY, account TEXT NOT NULL, created BIGINT NOT NULL)",
    "CREATE TABLE runs (id TEXT PRIMARY KEY, account TEXT NOT NULL, project TEXT NOT NULL, \
     entity TEXT, name TEXT, tags TEXT NOT NULL, notes TEXT, state TEXT NOT NULL, exit_code BIGINT, \
     config TEXT NOT NULL, summary TEXT NOT NULL, created_ms BIGINT NOT NULL, \
     updated_ms BIGINT NOT NULL, next_seq BIGINT NOT NULL)",
    "CREATE INDEX runs_account ON runs (account, created_ms)",
    "CREATE TABLE history (run_id TEXT NOT NULL, seq BIGINT NOT NULL, step BIGINT NOT NULL, \
     ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
    "CREATE INDEX history_step ON history (run_id, step)",
    "CREATE TABLE system (run_id TEXT NOT NULL, seq BIGINT NOT NULL, step BIGINT NOT NULL, \
     ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
    "CREATE INDEX system_step ON system (run_id, step)",
    "CREATE TABLE files (run_id TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, \
     size BIGINT NOT NULL, PRIMARY KEY (run_id, path))",
    "CREATE TABLE bundles (sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL, rows_added BIGINT NOT NULL, \
     created BIGINT NOT NULL)",
    "CREATE TABLE uploads (id TEXT PRIMARY KEY, account TEXT NOT NULL, length BIGINT NOT NULL, \
     sha256 TEXT, metadata TEXT, created BIGINT NOT NULL)",
    "CREATE TABLE blob_owners (account TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (account, sha256))",
    "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)",
    "CREATE TABLE migrations (name TEXT PRIMARY KEY, applied BIGINT NOT NULL)",
    "INSERT INTO migrations (name, applied) VALUES ('blob_owners', 0)",
];

/// The stored JSON of old history row `i`: numbers (some not finite, some integers as a
/// nested value logs them), strings, flags, nested values and a media reference.
fn old_data(i: u64) -> String {
    let mut row = serde_json::Map::new();
    row.insert("loss".into(), json!(1.0 / (i + 1) as f64));
    match i % 1000 {
        7 => drop(row.insert("loss".into(), json!("NaN"))),
        8 => drop(row.insert("loss".into(), json!("-Infinity"))),
        9 => drop(row.insert("note".into(), json!("a \"quoted\", note"))),
        10 => drop(row.insert("count".into(), json!(5))),
        11 => drop(row.insert("flag".into(), json!(true))),
        12 => drop(row.insert(
            "sample".into(),
            json!({"_type": "image-file", "path": "media/images/x.png", "sha256": "ab", "width": 2}),
        )),
        13 => drop(row.insert("big".into(), json!(1e300))),
        _ => {}
    }
    if i.is_multiple_of(100) {
        row.insert("val/acc".into(), json!(i as f64 / 7.0));
    }
    serde_json::to_string(&row).unwrap()
}

/// Writes an old-format database into `data` with plain SQL: run `old` of `rows` history
/// rows (and a system row every 10 steps), as the earlier server stored them.
fn old_folder(data: &Path, rows: u64) {
    std::fs::create_dir_all(data).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", data.join("tidelog.db").display());
        let db = sqlx::AnyPool::connect(&url).await.unwrap();
        for stmt in OLD_SCHEMA {
            sqlx::query(stmt).execute(&db).await.unwrap();
        }
        sqlx::query(
            "INSERT INTO runs VALUES ('old', 'alice', 'legacy', NULL, 'before', '[]', NULL, \
             'finished', 0, '{}', '{\"loss\":0.5}', $1, $1, $2)",
        )
        .bind(T0)
        .bind((rows + 1) as i64)
        .execute(&db)
        .await
        .unwrap();
        let mut tx = db.begin().await.unwrap();
        for i in 0..rows {
            sqlx::query("INSERT INTO history VALUES ('old', $1, $2, $3, $4)")
                .bind((i + 1) as i64)
                .bind(i as i64)
                .bind(T0 + i as i64)
                .bind(old_data(i))
                .execute(&mut *tx)
                .await
                .unwrap();
            if i.is_multiple_of(10) {
                sqlx::query("INSERT INTO system VALUES ('old', $1, $2, $3, $4)")
                    .bind((i + 1) as i64)
                    .bind(i as i64)
                    .bind(T0 + i as i64)
                    .bind(format!("{{\"cpu\":{}.5}}", i % 97))
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
        }
        tx.commit().await.unwrap();
        db.close().await;
    });
}

/// What the earlier server answered for old row `i`: `_step`, `_timestamp`, then its data.
fn old_row(i: u64) -> Json {
    let mut row: serde_json::Map<String, Json> = serde_json::from_str(&old_data(i)).unwrap();
    row.insert("_step".into(), json!(i));
    row.insert("_timestamp".into(), json!((T0 + i as i64) as f64 / 1000.0));
    Json::Object(row)
}

/// The segment objects of a run's kind in the default store under `data`, pre-aggregates
/// (`.m4.parquet`, `.m16.parquet`) left out.
fn objects(data: &Path, run: &str, kind: &str) -> Vec<String> {
    let mut names = store::list(data, &format!("segments/{run}/{kind}"));
    names.retain(|n| n.ends_with(".parquet") && !n.ends_with(".m4.parquet") && !n.ends_with(".m16.parquet"));
    names.sort();
    names
}

#[test]
fn an_old_data_folder_is_migrated_at_start_and_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let rows_n = 140_000;
    old_folder(dir.path(), rows_n);
    // Earlier versions ran on SQLite only, so only SQLite folders hold old rows.
    let sqlite = format!("sqlite://{}", dir.path().join("tidelog.db").display());
    let key = create_key_in(dir.path(), &sqlite, "alice");
    let server = Server::start_with(dir.path(), &["--database", &sqlite]);
    let expected: Vec<Json> = (0..rows_n).map(old_row).collect();
    let full = rows(&server.url, &key, "/api/v1/runs/old/history");
    assert_eq!(full.len(), expected.len());
    for (got, want) in full.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    let page = rows(
        &server.url,
        &key,
        "/api/v1/runs/old/history?keys=note,count&min_step=5000&max_step=9999",
    );
    let want: Vec<Json> = (5000..10_000u64)
        .filter(|i| [9, 10].contains(&(i % 1000)))
        .map(|i| {
            let mut r = old_row(i);
            r.as_object_mut()
                .unwrap()
                .retain(|k, _| ["_step", "_timestamp", "note", "count"].contains(&k.as_str()));
            r
        })
        .collect();
    assert_eq!(page, want);
    let sys = rows(&server.url, &key, "/api/v1/runs/old/system");
    assert_eq!(sys.len() as u64, rows_n / 10);
    assert_eq!(
        sys[3],
        json!({"_step": 30, "_timestamp": (T0 + 30) as f64 / 1000.0, "cpu": 30.5})
    );
    let segments = objects(dir.path(), "old", "history");
    assert!(segments.len() >= 2, "{segments:?}");
    let (_, run) = get(&server.url, &key, "/api/v1/runs/old");
    assert_eq!(
        (run["summary"]["loss"].clone(), run["name"].clone()),
        (json!(0.5), json!("before"))
    );

    // A second start migrates nothing again and reads the same.
    server.kill();
    let server = Server::start_with(dir.path(), &["--database", &sqlite]);
    assert_eq!(rows(&server.url, &key, "/api/v1/runs/old/history"), full);
    assert_eq!(objects(dir.path(), "old", "history"), segments);
}

/// A finished run `id` of `steps` steps with `loss` and, every 5th step, a string `phase`.
fn small_steps_log(id: &str, steps: u64) -> Vec<u8> {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "segments".into(),
        created_ms: T0,
        ..RunInfo::default()
    }));
    for i in 0..steps {
        let ts = T0 + i as i64;
        let mut items = vec![("loss", Value::Num(1.0 / (i + 1) as f64))];
        if i.is_multiple_of(5) {
            items.push(("phase", Value::from("warm")));
        }
        log.log(ts, items, LogOptions::default()).unwrap();
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: T0 + steps as i64,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

/// Posts records `range` of `log` as one bundle; returns the answer's JSON.
fn post(server: &Server, key: &str, log: &[u8], range: std::ops::Range<u64>) -> Json {
    let index = LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    let b = write_bundle(&index, &run, index.state(false), range, &[]).unwrap();
    let r = common::reply(
        common::agent()
            .post(format!("{}/api/v1/bundles", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/gzip")
            .header("Tidelog-Bundle-Sha256", &b.sha256)
            .send(&b.bytes[..]),
    );
    assert!([200, 201].contains(&r.status), "{}", r.text());
    r.json()
}

#[test]
fn small_bundles_are_compacted_and_history_reads_the_same_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start(dir.path());
    let steps = 1_200;
    let log = small_steps_log("live", steps);
    let len = LogIndex::new(&log).unwrap().len();
    let per = len.div_ceil(12);
    let mut uploaded = Vec::new();
    for b in 0..12 {
        let range = b * per..((b + 1) * per).min(len);
        post(&server, &key, &log, range);
        uploaded.push(rows(&server.url, &key, "/api/v1/runs/live/history"));
    }
    let full = uploaded.last().unwrap().clone();
    assert_eq!(full.len() as u64, steps);
    assert!(full.iter().enumerate().all(|(i, r)| r["_step"] == i as u64));
    for partial in &uploaded {
        assert_eq!(
            partial[..],
            full[..partial.len()],
            "a read during ingest saw a gap or a duplicate"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while objects(dir.path(), "live", "history").len() >= 8 {
        assert_eq!(rows(&server.url, &key, "/api/v1/runs/live/history"), full);
        assert!(
            Instant::now() < deadline,
            "no compaction: {:?}",
            objects(dir.path(), "live", "history")
        );
        std::thread::yield_now();
    }
    let left = objects(dir.path(), "live", "history");
    assert!((1..=5).contains(&left.len()), "{left:?}");
    assert_eq!(rows(&server.url, &key, "/api/v1/runs/live/history"), full);
    let thinned = rows(
        &server.url,
        &key,
        "/api/v1/runs/live/history?keys=phase&samples=4",
    );
    assert_eq!(thinned.first().unwrap()["_step"], 0);
    assert_eq!(thinned.last().unwrap()["_step"], 1195);

    // Replays after compaction add nothing.
    for b in 0..12 {
        let ack = post(&server, &key, &log, b * per..((b + 1) * per).min(len));
        assert_eq!(ack["rows_added"], 0, "{ack}");
    }
    let overlapping = post(&server, &key, &log, 0..len);
    assert_eq!(overlapping["rows_added"], 0, "{overlapping}");
    assert_eq!(rows(&server.url, &key, "/api/v1/runs/live/history"), full);
}
