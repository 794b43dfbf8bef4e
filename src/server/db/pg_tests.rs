//! Tests on a real PostgreSQL: a fresh database per test, on the server the environment names
//! or on a throwaway cluster of `scripts/postgres`.

use std::path::Path;

use serde_json::Map;
use sqlx::any::AnyPoolOptions;

use super::{is_sqlite, open, RunRow};

/// A new, empty PostgreSQL database for a test: on the server `TIDELOG_TEST_DATABASE` names
/// (`postgres://USER@HOST:PORT/`), or else on a throwaway cluster `scripts/postgres` starts
/// for this test process, which stops when the process exits and so closes the script's stdin.
pub async fn fresh_postgres() -> String {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    static SERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let base = SERVER.get_or_init(|| {
        if let Some(url) = std::env::var("TIDELOG_TEST_DATABASE")
            .ok()
            .filter(|u| !u.is_empty())
        {
            return url;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres");
        let mut child = Command::new(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("postgres://"),
            "scripts/postgres printed {line:?}"
        );
        // Its stdin stays open, and the cluster up, until this process exits.
        std::mem::forget(child);
        line.trim().to_owned()
    });
    let root = base.trim_end_matches('/');
    let name = format!("tidelog_unit_{}", crate::server::auth::random_hex(8).unwrap());
    sqlx::any::install_default_drivers();
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{root}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    format!("{root}/{name}")
}

/// Replicas that start at once on a new database: both open it, each migration ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_a_new_postgres_database_once() {
    let url = fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = tokio::join!(open(dir.path(), Some(&url)), open(dir.path(), Some(&url)));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(!is_sqlite(&a));
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&b)
        .await
        .unwrap();
    let all: Vec<i64> = super::migrate::migrator(false)
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(versions, all);
    crate::server::auth::insert_key(&a, "alice").await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
        .fetch_one(&b)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

/// A run row round-trips through PostgreSQL's types, and the high-water mark guards it.
#[tokio::test]
async fn a_run_row_round_trips_and_its_guard_holds_on_postgres() {
    let url = fresh_postgres().await;
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), Some(&url)).await.unwrap();
    let mut run = RunRow {
        id: "r".into(),
        account: "alice".into(),
        project: "p".into(),
        entity: None,
        name: Some("ünïcode ✓".into()),
        tags: vec!["a".into()],
        notes: None,
        state: "running".into(),
        exit_code: Some(-3),
        config: Map::new(),
        summary: Map::new(),
        created_ms: 1,
        updated_ms: i64::MAX,
        next_seq: u64::try_from(i64::MAX).unwrap(),
    };
    assert!(run.save_if(&db, None).await.unwrap());
    assert!(
        !run.save_if(&db, None).await.unwrap(),
        "a second insert of the run"
    );
    let back = RunRow::load(&db, "r").await.unwrap().unwrap();
    assert_eq!(
        (back.name.as_deref(), back.exit_code, back.next_seq),
        (run.name.as_deref(), Some(-3), run.next_seq)
    );
    run.next_seq = 5;
    assert!(
        !run.save_if(&db, Some(4)).await.unwrap(),
        "moved from a stale mark"
    );
    assert!(run.save_if(&db, Some(back.next_seq)).await.unwrap());
    assert_eq!(RunRow::list(&db, "alice", Some("p")).await.unwrap().len(), 1);
}
