//! Operating the server (issue 12, item 4) against a real `tidelog serve`: `/metrics` after
//! real traffic, SIGTERM with a request in flight, and the structured request log.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use common::ops::{call, post, run_bundle};
use common::{agent, reply, Server};
use tidelog::core::bundle::Bundle;

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

/// A tus PATCH of bundle `b` on a raw connection, sent up to half its body and read that far by
/// the server (its body-bytes counter says so; the offset moves only when a PATCH ends): a
/// request in flight. Returns the connection and the half.
fn patch_in_flight(server: &Server, key: &str, b: &Bundle) -> (TcpStream, usize) {
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
    let addr = server.url.trim_start_matches("http://");
    let half = b.bytes.len() / 2;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PATCH {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: {}\r\n\r\n",
        b.bytes.len()
    )
    .unwrap();
    s.write_all(&b.bytes[..half]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = samples(&reply(agent().get(format!("{}/metrics", server.url)).call()).text());
        if m["tidelog_http_request_body_bytes_total"] >= half as f64 {
            return (s, half);
        }
        assert!(Instant::now() < deadline, "the first half never arrived");
    }
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_refuses_new_connections_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data);
    let key = server.key("alice");
    let b = run_bundle("drain", 300, &[]);
    let (mut s, half) = patch_in_flight(&server, &key, &b);

    server.terminate();
    let addr = server.url.trim_start_matches("http://").to_owned();
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

#[test]
fn a_request_that_never_finishes_holds_shutdown_only_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--shutdown-timeout-secs", "1", "--body-timeout-secs", "600"];
    let mut server = Server::start_with(&dir.path().join("data"), &args);
    let key = server.key("alice");
    let (_stalled, _) = patch_in_flight(&server, &key, &run_bundle("stall", 300, &[]));
    let start = Instant::now();
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("still running with a stalled request long after the grace period");
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "it did not wait for the request"
    );
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
