//! Versioned migrations on SQLite: a data folder made before them (tables created at every
//! start, a hand-rolled `migrations` table, blobs without owners) is adopted and upgraded when
//! `tidelog serve` opens it, with its runs, keys and files intact, and opens again unchanged.
//! Only SQLite databases predate versioned migrations, so this suite is SQLite's alone.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;

use sqlx::{Connection, Row, SqliteConnection};
use tidelog::core::bundle::sha256_hex;

use common::{bundle, get_reply as get, post_bundle, run_log, Server};

/// The schema as the code before versioned migrations created it, verbatim.
const OLD_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS api_keys (hash TEXT PRIMARY KEY, account TEXT NOT NULL, \
     created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, account TEXT NOT NULL, \
     project TEXT NOT NULL, entity TEXT, name TEXT, tags TEXT NOT NULL, notes TEXT, \
     state TEXT NOT NULL, exit_code BIGINT, config TEXT NOT NULL, summary TEXT NOT NULL, \
     created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, next_seq BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS runs_account ON runs (account, created_ms)",
    "CREATE TABLE IF NOT EXISTS history (run_id TEXT NOT NULL, seq BIGINT NOT NULL, \
     step BIGINT NOT NULL, ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
    "CREATE INDEX IF NOT EXISTS history_step ON history (run_id, step)",
    "CREATE TABLE IF NOT EXISTS system (run_id TEXT NOT NULL, seq BIGINT NOT NULL, \
     step BIGINT NOT NULL, ts_ms BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))",
    "CREATE INDEX IF NOT EXISTS system_step ON system (run_id, step)",
    "CREATE TABLE IF NOT EXISTS files (run_id TEXT NOT NULL, path TEXT NOT NULL, \
     sha256 TEXT NOT NULL, size BIGINT NOT NULL, PRIMARY KEY (run_id, path))",
    "CREATE TABLE IF NOT EXISTS bundles (sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL, \
     rows_added BIGINT NOT NULL, created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, account TEXT NOT NULL, \
     length BIGINT NOT NULL, sha256 TEXT, metadata TEXT, created BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS blob_owners (account TEXT NOT NULL, sha256 TEXT NOT NULL, \
     PRIMARY KEY (account, sha256))",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, \
     until_ms BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied BIGINT NOT NULL)",
];

const ALICE: &str = "tlk_0123456789abcdef0123456789abcdef01234567";
const BOB: &str = "tlk_89abcdef0123456789abcdef0123456789abcdef";
const SECRET: &[u8] = b"alice's older weights";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn sqlite_url(data: &Path) -> String {
    format!("sqlite://{}", data.join("tidelog.db").display())
}

/// A data folder as the older server left it: two keys, and Alice's finished run `old` with
/// one history row and a saved file whose blob has no recorded owner.
fn old_folder(data: &Path) {
    let sha = sha256_hex(SECRET);
    let blob = data.join("blobs").join(&sha[..2]).join(&sha);
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, SECRET).unwrap();
    block_on(async {
        let mut db = SqliteConnection::connect(&format!("{}?mode=rwc", sqlite_url(data)))
            .await
            .unwrap();
        for sql in OLD_SCHEMA {
            sqlx::query(sql).execute(&mut db).await.unwrap();
        }
        for (key, account) in [(ALICE, "alice"), (BOB, "bob")] {
            sqlx::query("INSERT INTO api_keys (hash, account, created) VALUES ($1, $2, 0)")
                .bind(sha256_hex(key.as_bytes()))
                .bind(account)
                .execute(&mut db)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO runs VALUES ('old', 'alice', 'p', NULL, 'before', '[]', NULL, \
             'finished', 0, '{\"lr\":0.1}', '{\"loss\":0.25}', 1000, 2000, 3)",
        )
        .execute(&mut db)
        .await
        .unwrap();
        sqlx::query("INSERT INTO history VALUES ('old', 1, 7, 1500, '{\"loss\":0.25}')")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("INSERT INTO files VALUES ('old', 'model.bin', $1, $2)")
            .bind(&sha)
            .bind(SECRET.len() as i64)
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    });
}

/// The tables of the SQLite database under `data`, and the migration versions it records.
fn tables_and_versions(data: &Path) -> (Vec<String>, Vec<i64>) {
    block_on(async {
        let mut db = SqliteConnection::connect(&sqlite_url(data)).await.unwrap();
        let tables = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        let versions = sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut db)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect();
        db.close().await.unwrap();
        (tables, versions)
    })
}

#[test]
fn a_data_folder_from_before_versioned_migrations_is_upgraded_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    old_folder(dir.path());
    let url = sqlite_url(dir.path());
    let server = Server::start_with(dir.path(), &["--database", &url]);

    let run = get(&server, ALICE, "/api/v1/runs/old").json();
    assert_eq!(
        (&run["name"], &run["state"], &run["config"]["lr"]),
        (&"before".into(), &"finished".into(), &0.1.into())
    );
    let rows = get(&server, ALICE, "/api/v1/runs/old/history").json();
    assert_eq!(
        rows["rows"],
        serde_json::json!([{"_step": 7, "_timestamp": 1.5, "loss": 0.25}])
    );
    assert_eq!(
        get(&server, ALICE, "/api/v1/runs/old/files/model.bin").body,
        SECRET
    );
    assert_eq!(get(&server, BOB, "/api/v1/runs/old").status, 403);

    // The blob went to the account whose run refers to it, and to no one else.
    let again = run_log("again", &[("again.bin", SECRET)]);
    let r = post_bundle(&server, ALICE, &bundle(&again, &[]).bytes);
    assert_eq!(r.status, 201, "{}", r.text());
    let stolen = run_log("stolen", &[("stolen.bin", SECRET)]);
    let r = post_bundle(&server, BOB, &bundle(&stolen, &[]).bytes);
    assert_eq!(r.status, 400, "{}", r.text());
    drop(server);

    let (tables, versions) = tables_and_versions(dir.path());
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    assert!(!tables.contains(&"migrations".to_owned()), "{tables:?}");
    assert!(tables.contains(&"_sqlx_migrations".to_owned()), "{tables:?}");

    // Opened again, nothing is applied twice and everything is still there.
    let server = Server::start_with(dir.path(), &["--database", &url]);
    assert_eq!(get(&server, ALICE, "/api/v1/runs/again").status, 200);
    assert_eq!(
        get(&server, ALICE, "/api/v1/runs/old/files/model.bin").body,
        SECRET
    );
    drop(server);
    assert_eq!(tables_and_versions(dir.path()).1, [1, 2, 3, 4, 5]);
}

#[test]
fn a_database_migrated_by_a_different_copy_of_a_migration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    drop(Server::start_with(dir.path(), &["--database", &url]));
    block_on(async {
        let mut db = SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2")
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
    });
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "create-key", "--account", "alice", "--database", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot migrate database") && err.contains("2"),
        "{err}"
    );
}
