//! Administering the server (issue 12, item 4) against a real `tidelog serve`: API keys listed
//! by id and revoked, runs deleted through the API and the CLI, and what a client that syncs a
//! deleted run is told.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::path::Path;
use std::process::Output;

use tidelog::core::bundle::sha256_hex;

use common::ops::{call, post, run_bundle};
use common::{store, tidelog, Server};

fn admin(data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", data.to_str().unwrap()]);
    let database = common::database_args(data, &[]);
    all.extend(database.iter().map(String::as_str));
    // Deleting a run also deletes its objects: it needs the server's store.
    let (store_args, env) = store::server_args(data);
    if args.first() == Some(&"delete-run") {
        all.extend(store_args.iter().map(String::as_str));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    tidelog(data.parent().unwrap(), &all, &env)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn keys_are_listed_by_id_and_a_revoked_key_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (k1, k2, kb) = (server.key("alice"), server.key("alice"), server.key("bob"));
    let id = |k: &str| sha256_hex(k.as_bytes())[..12].to_owned();
    assert_eq!(post(&server, &k1, &run_bundle("kept", 4, &[])).status, 201);

    let listed = admin(&data, &["list-keys"]);
    assert!(listed.status.success(), "{}", common::text(&listed));
    let out = stdout(&listed);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("KEY ID"), "{out}");
    for (k, account) in [(&k1, "alice"), (&k2, "alice"), (&kb, "bob")] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&id(k)))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(line.contains(account) && line.ends_with("active"), "{line}");
        assert!(!out.contains(k.as_str()), "list-keys shows a key: {out}");
    }

    let revoked = admin(&data, &["revoke-key", &id(&k1)]);
    assert!(revoked.status.success(), "{}", common::text(&revoked));
    assert_eq!(
        stdout(&revoked).trim(),
        format!("revoked key {} of account alice", id(&k1))
    );
    let refused = call(&server, "GET", &k1, "/api/v1/whoami");
    assert_eq!(refused.status, 401);
    assert!(refused.error().contains("revoked"), "{}", refused.error());
    assert_eq!(call(&server, "GET", &k2, "/api/v1/whoami").status, 200);
    let bogus = call(&server, "GET", "tlk_0000", "/api/v1/whoami");
    assert_eq!((bogus.status, bogus.error().as_str()), (401, "invalid API key"));
    let out = stdout(&admin(&data, &["list-keys"]));
    let line = out.lines().find(|l| l.starts_with(&id(&k1))).unwrap();
    assert!(line.contains("revoked 20"), "{line}");

    let again = admin(&data, &["revoke-key", &id(&k1)]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("is already revoked"),
        "{}",
        stderr(&again)
    );
    let short = admin(&data, &["revoke-key", "abc"]);
    assert_eq!(short.status.code(), Some(1));
    assert!(stderr(&short).contains("not a key id"), "{}", stderr(&short));
    let unknown = admin(&data, &["revoke-key", "0123456789ab"]);
    assert!(
        stderr(&unknown).contains("matches no key"),
        "{}",
        stderr(&unknown)
    );
    // The key itself works as its id, for a leaked key whose id nobody noted.
    assert!(admin(&data, &["revoke-key", &k2]).status.success());
    assert_eq!(call(&server, "GET", &k2, "/api/v1/whoami").status, 401);

    let k3 = server.key("alice");
    let run = call(&server, "GET", &k3, "/api/v1/runs/kept");
    assert_eq!(run.status, 200, "the account's runs outlive its revoked keys");
    assert_eq!(
        call(&server, "GET", &k3, "/api/v1/runs/kept/history").json()["rows"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

/// True when a file named `name` is anywhere under `dir`: wherever the server keeps objects.
/// Objects in the test store of `data` under `prefix`.
fn objects_under(data: &Path, prefix: &str) -> usize {
    store::list(data, prefix).len()
}

/// Whether the test store of `data` holds blob `sha`.
fn has_blob(data: &Path, sha: &str) -> bool {
    store::get(data, &format!("blobs/{}/{sha}", &sha[..2])).is_some()
}

/// `SELECT COUNT(*) ...` with `args` bound, on the server's database.
fn count(data: &Path, sql: &str, args: &[&str]) -> i64 {
    let url = common::database_url(data);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let mut q = sqlx::query_scalar(sql);
            for a in args {
                q = q.bind(*a);
            }
            let n: i64 = q.fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        })
}

#[test]
fn deleting_a_run_removes_its_rows_and_the_blobs_no_other_run_needs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let (alice, bob) = (server.key("alice"), server.key("bob"));
    let (shared, own): (&[u8], &[u8]) = (b"shared by both runs", b"only in run a");
    let a = run_bundle("del-a", 5, &[("shared.txt", shared), ("own.bin", own)]);
    let b = run_bundle("del-b", 3, &[("shared.txt", shared)]);
    assert_eq!(post(&server, &alice, &a).status, 201);
    assert_eq!(post(&server, &alice, &b).status, 201);
    let (shared_sha, own_sha) = (sha256_hex(shared), sha256_hex(own));
    assert!(has_blob(&data, &shared_sha) && has_blob(&data, &own_sha));

    let other = call(&server, "DELETE", &bob, "/api/v1/runs/del-a");
    assert_eq!(
        other.status,
        403,
        "another account deletes nothing: {}",
        other.text()
    );
    assert_eq!(call(&server, "DELETE", &alice, "/api/v1/runs/nope").status, 404);
    assert_eq!(call(&server, "GET", &alice, "/api/v1/runs/del-a").status, 200);

    let done = call(&server, "DELETE", &alice, "/api/v1/runs/del-a");
    assert_eq!(done.status, 200, "{}", done.text());
    let body = done.json();
    assert_eq!(body["deleted"], "del-a");
    assert_eq!(
        (body["history_rows"].as_u64(), body["files"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(body["blobs_removed"].as_u64(), Some(1), "{body}");
    assert_eq!(call(&server, "GET", &alice, "/api/v1/runs/del-a").status, 404);
    assert_eq!(
        call(&server, "GET", &alice, "/api/v1/runs/del-a/history").status,
        404
    );
    let runs = call(&server, "GET", &alice, "/api/v1/runs").json();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    let file = call(&server, "GET", &alice, "/api/v1/runs/del-b/files/shared.txt");
    assert_eq!((file.status, file.body.as_slice()), (200, shared));
    assert!(
        !has_blob(&data, &own_sha),
        "a blob only the deleted run used is left"
    );
    assert!(
        has_blob(&data, &shared_sha),
        "a blob another run uses was removed"
    );
    assert!(
        objects_under(&data, "segments/del-a") == 0,
        "segment objects of the deleted run remain"
    );
    assert!(
        objects_under(&data, "segments/del-b") > 0,
        "the other run's segments went too"
    );
    for table in ["history", "system", "segments", "files", "bundles"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE run_id = $1");
        assert_eq!(
            count(&data, &sql, &["del-a"]),
            0,
            "{table} rows of the deleted run remain"
        );
    }
    let owners = "SELECT COUNT(*) FROM blob_owners WHERE account = $1 AND sha256 = $2";
    assert_eq!(count(&data, owners, &["alice", &own_sha]), 0);
    assert_eq!(count(&data, owners, &["alice", &shared_sha]), 1);

    let again = post(&server, &alice, &a);
    assert_eq!(
        again.status, 410,
        "a deleted run's bundle is refused, not recreated"
    );
    assert!(again.error().contains("was deleted"), "{}", again.error());
    assert_eq!(call(&server, "GET", &alice, "/api/v1/runs/del-a").status, 404);

    let cli = admin(&data, &["delete-run", "del-b"]);
    assert!(cli.status.success(), "{}", common::text(&cli));
    assert!(
        stdout(&cli).starts_with("deleted run del-b of account alice: 3 history rows")
            && stdout(&cli).contains("1 stored files removed"),
        "{}",
        stdout(&cli)
    );
    assert_eq!(call(&server, "GET", &alice, "/api/v1/runs/del-b").status, 404);
    assert!(
        !has_blob(&data, &shared_sha),
        "the blob outlived the last run that used it"
    );
    let missing = admin(&data, &["delete-run", "del-b"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no run \"del-b\""),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_client_syncing_a_deleted_run_is_told_it_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let key = server.key("alice");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let run = tidelog::init(common::settings(&work, "ops")).unwrap();
    run.log([("loss", 0.5)]).unwrap();
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    common::sync(&work, &server.url, &key, &[], 0);
    assert_eq!(
        call(&server, "DELETE", &key, &format!("/api/v1/runs/{id}")).status,
        200
    );

    let out = common::sync(&work, &server.url, &key, &["--include-synced"], 1);
    let said = stdout(&out);
    assert!(
        said.contains("410") && said.contains("was deleted"),
        "{}",
        common::text(&out)
    );
    assert!(
        common::runs(&server.url, &key).is_empty(),
        "the deleted run came back"
    );
}
