//! Operating the server (issue 12, item 4) against a real `tidelog serve`: key listing and
//! revocation, run deletion by API and CLI, `/metrics` after real traffic, SIGTERM with a
//! request in flight, and the structured request log.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tidelog::core::bundle::{sha256_hex, write_bundle, Bundle};
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::{FileRef, Meta, RunInfo};

use common::{agent, reply, tidelog, Reply, Server};

const T0: i64 = 1_796_000_000_000;

/// A finished run `id` of `rows` history rows that saved `files`, as one bundle carrying them.
fn run_bundle(id: &str, rows: u32, files: &[(&str, &[u8])]) -> Bundle {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "ops".into(),
        created_ms: T0,
        ..RunInfo::default()
    }));
    for i in 0..rows {
        log.log(T0 + i64::from(i), [("loss", f64::from(i))], LogOptions::default())
            .unwrap();
    }
    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in files {
        let sha = sha256_hex(bytes);
        log.meta(&Meta::File(FileRef {
            path: (*path).into(),
            sha256: sha.clone(),
            size: bytes.len() as u64,
        }));
        if !blobs.iter().any(|(s, _)| *s == sha) {
            blobs.push((sha, bytes.to_vec()));
        }
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: T0 + 10_000,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    let index = LogIndex::new(&out).unwrap();
    let run = index.run().unwrap().clone();
    write_bundle(&index, &run, index.state(false), 0..index.len(), &blobs).unwrap()
}

fn call(server: &Server, method: &str, key: &str, path: &str) -> Reply {
    let url = format!("{}{path}", server.url);
    let auth = format!("Bearer {key}");
    let a = agent();
    reply(match method {
        "GET" => a.get(&url).header("Authorization", &auth).call(),
        "DELETE" => a.delete(&url).header("Authorization", &auth).call(),
        other => unreachable!("{other}"),
    })
}

fn post(server: &Server, key: &str, b: &Bundle) -> Reply {
    reply(
        agent()
            .post(format!("{}/api/v1/bundles", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/gzip")
            .send(&b.bytes[..]),
    )
}

fn admin(data: &Path, args: &[&str]) -> Output {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", data.to_str().unwrap()]);
    tidelog(data.parent().unwrap(), &all, &[])
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
fn has_file(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            has_file(&p, name)
        } else {
            e.file_name() == name
        }
    })
}

/// `SELECT COUNT(*) ...` with `args` bound, on the server's SQLite database.
fn count(data: &Path, sql: &str, args: &[&str]) -> i64 {
    let url = format!("sqlite://{}", data.join("tidelog.db").display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
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
    assert!(has_file(&data, &shared_sha) && has_file(&data, &own_sha));

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
        !has_file(&data, &own_sha),
        "a blob only the deleted run used is left"
    );
    assert!(
        has_file(&data, &shared_sha),
        "a blob another run uses was removed"
    );
    for table in ["history", "system", "files", "bundles"] {
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
        !has_file(&data, &shared_sha),
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

/// The samples of a Prometheus text exposition, by `name{labels}`; every line must parse.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            let value = value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {l:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

#[test]
fn metrics_count_the_requests_bytes_and_rows_of_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let key = server.key("alice");
    for _ in 0..3 {
        assert_eq!(call(&server, "GET", &key, "/api/v1/whoami").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(call(&server, "GET", "tlk_wrong", "/api/v1/whoami").status, 401);
    }
    assert_eq!(call(&server, "GET", &key, "/no/such/thing").status, 404);
    let bundles = [
        run_bundle("m-1", 4, &[]),
        run_bundle("m-2", 6, &[("f.txt", b"f")]),
    ];
    let mut rows = 0;
    for b in &bundles {
        let r = post(&server, &key, b);
        assert_eq!(r.status, 201);
        rows += r.json()["rows_added"].as_u64().unwrap();
    }
    assert_eq!(rows, 10);
    assert_eq!(
        post(&server, &key, &bundles[0]).status,
        200,
        "a repeat is not a new bundle"
    );
    let sent: usize = bundles.iter().map(|b| b.bytes.len()).sum::<usize>() + bundles[0].bytes.len();
    let upload = reply(
        agent()
            .post(format!("{}/api/v1/uploads", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", "100")
            .send_empty(),
    );
    assert_eq!(upload.status, 201);

    let scrape = || reply(agent().get(format!("{}/metrics", server.url)).call());
    let first = scrape();
    assert_eq!(first.status, 200, "no key is needed");
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = samples(&first.text());
    let req = |method: &str, route: &str, status: u16| {
        let series = format!(
            "tidelog_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}}"
        );
        m.get(&series).copied().unwrap_or(0.0)
    };
    assert_eq!(req("GET", "/api/v1/whoami", 200), 3.0);
    assert_eq!(req("GET", "/api/v1/whoami", 401), 2.0);
    assert_eq!(req("GET", "unmatched", 404), 1.0);
    assert_eq!(req("POST", "/api/v1/bundles", 201), 2.0);
    assert_eq!(req("POST", "/api/v1/bundles", 200), 1.0);
    assert_eq!(req("POST", "/api/v1/uploads", 201), 1.0);
    assert_eq!(
        req("GET", "/metrics", 200),
        0.0,
        "a scrape is counted once answered"
    );

    let hist = "tidelog_http_request_duration_seconds";
    let labels = "method=\"GET\",route=\"/api/v1/whoami\"";
    assert_eq!(m[&format!("{hist}_count{{{labels}}}")], 5.0);
    assert_eq!(m[&format!("{hist}_bucket{{{labels},le=\"+Inf\"}}")], 5.0);
    let buckets: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{hist}_bucket{{{labels},")))
        .map(|(_, v)| *v)
        .collect();
    assert!(
        buckets.len() > 10 && buckets.iter().all(|&v| v <= 5.0),
        "{buckets:?}"
    );
    assert!(m[&format!("{hist}_sum{{{labels}}}")] > 0.0);

    assert_eq!(m["tidelog_http_request_body_bytes_total"], sent as f64);
    assert_eq!(m["tidelog_ingested_bundles_total"], 2.0);
    assert_eq!(m["tidelog_ingested_rows_total"], rows as f64);
    assert_eq!(m["tidelog_duplicate_rows_total"], 0.0);
    assert_eq!(m["tidelog_tus_uploads"], 1.0);
    assert_eq!(m["tidelog_tus_uploads_busy"], 0.0);
    assert_eq!(m["tidelog_ingest_slots_in_use"], 0.0);
    assert!(m["tidelog_ingest_slots"] >= 1.0);
    assert!(
        m["tidelog_http_connections_open"] >= 1.0,
        "the scrape's own connection"
    );
    assert!(m["tidelog_db_pool_connections"] >= 1.0);
    assert!(m["tidelog_db_pool_idle"] <= m["tidelog_db_pool_connections"]);
    let build = format!("tidelog_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(m.get(&build), Some(&1.0), "{}", first.text());

    let second = samples(&scrape().text());
    let series = "tidelog_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}";
    assert_eq!(second.get(series), Some(&1.0));
}

/// The response head (status line and headers) read from `s`, up to its blank line.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).expect("read the response"),
            1,
            "closed mid-head: {head:?}"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_refuses_new_connections_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let key = server.key("alice");
    let b = run_bundle("drain", 300, &[]);
    let upload = reply(
        agent()
            .post(format!("{}/api/v1/uploads", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", b.bytes.len().to_string())
            .send_empty(),
    );
    assert_eq!(upload.status, 201);
    let path = upload.header("location").unwrap().to_owned();
    let addr = server.url.trim_start_matches("http://").to_owned();
    let half = b.bytes.len() / 2;

    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        b.bytes.len()
    )
    .unwrap();
    s.write_all(&b.bytes[..half]).unwrap();
    // In flight once the server has stored the first half: HEAD reports it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let head = reply(
            agent()
                .head(format!("{}{path}", server.url))
                .header("Authorization", format!("Bearer {key}"))
                .header("Tus-Resumable", "1.0.0")
                .call(),
        );
        if head.header("upload-offset") == Some(half.to_string().as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the first half never arrived");
    }

    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
    }
    s.write_all(&b.bytes[half..]).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("tidelog-rows-added: 300"),
        "{head}"
    );
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("exits after the request finished");
    assert!(status.success(), "{status:?}");
    drop(server);

    let server = Server::start(&data);
    let rows = common::history(&server.url, &key, "drain");
    assert_eq!(rows.len(), 300, "the upload finished during shutdown is stored");
}

/// The server's log lines, each handed over as it is written.
fn log_lines(stderr: std::process::ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads lines until one satisfies `want`, all of them kept in `seen`.
fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no such line in {seen:#?}"));
        seen.push(line.clone());
        if want(&line) {
            return line;
        }
    }
}

#[test]
fn json_logs_have_a_parseable_line_per_request_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, stderr) = Server::start_logged(&data, &["--log-format", "json"]);
    let rx = log_lines(stderr);
    let key = server.key("alice");
    let mut seen = Vec::new();
    assert_eq!(call(&server, "GET", &key, "/api/v1/runs").status, 200);
    let parse = |l: &str| serde_json::from_str::<Json>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
    let line = wait_line(&rx, &mut seen, |l| parse(l)["route"] == "/api/v1/runs");
    let j = parse(&line);
    assert_eq!(
        (j["target"].as_str(), j["msg"].as_str()),
        (Some("tidelog::access"), Some("request"))
    );
    assert_eq!(
        (j["method"].as_str(), j["status"].as_u64()),
        (Some("GET"), Some(200))
    );
    assert_eq!(
        (j["account"].as_str(), j["bytes_in"].as_u64()),
        (Some("alice"), Some(0))
    );
    assert!(j["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{j}");
    assert!(
        j["ts"]
            .as_str()
            .is_some_and(|t| t.starts_with("20") && t.ends_with('Z')),
        "{j}"
    );
    assert_eq!(j["level"], "info");

    let b = run_bundle("logged", 7, &[]);
    assert_eq!(post(&server, &key, &b).status, 201);
    let ingest = parse(&wait_line(&rx, &mut seen, |l| parse(l)["msg"] == "ingest"));
    assert_eq!(
        (ingest["run"].as_str(), ingest["rows_added"].as_u64()),
        (Some("logged"), Some(7))
    );
    assert_eq!(
        (ingest["account"].as_str(), ingest["new"].as_bool()),
        (Some("alice"), Some(true))
    );
    let post_line = parse(&wait_line(&rx, &mut seen, |l| {
        parse(l)["route"] == "/api/v1/bundles"
    }));
    assert_eq!(post_line["status"].as_u64(), Some(201));
    assert_eq!(post_line["bytes_in"].as_u64(), Some(b.bytes.len() as u64));
    assert_eq!(
        call(&server, "GET", "tlk_not_a_real_key", "/api/v1/whoami").status,
        401
    );
    let refused = parse(&wait_line(&rx, &mut seen, |l| parse(l)["status"] == 401));
    assert_eq!(refused["account"], Json::Null);
    for l in &seen {
        parse(l);
        assert!(!l.contains(&key) && !l.contains("tlk_"), "a key in the log: {l}");
    }
    drop(server);

    let (server, stderr) = Server::start_logged(&data, &[]);
    let rx = log_lines(stderr);
    assert_eq!(call(&server, "GET", &key, "/healthz").status, 200);
    let line = wait_line(&rx, &mut Vec::new(), |l| l.contains("route=/healthz"));
    assert!(
        line.contains(" info request method=GET route=/healthz status=200 duration_ms="),
        "{line}"
    );
}
