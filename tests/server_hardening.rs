//! The server against a hostile key holder, a full disk and idle connections (issue 8): a real
//! `tidelog serve` child, bundles built by hand, raw TCP where HTTP clients would hide it.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use tidelog::core::bundle::{sha256_hex, write_bundle, Bundle, Entry, Manifest, FORMAT, HISTORY, MANIFEST};
use tidelog::core::bundle::{Budget, Columns, Limits, TableError};
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::{Meta, RunInfo, RunState};

use common::{
    agent, bundle, create_key, get_reply as get, post_bundle as post, proc_kib, reply, run_log, store, table,
    Server,
};

/// Creates a tus upload of `len` bytes; returns its id.
fn create_upload(server: &Server, key: &str, len: usize) -> String {
    let r = reply(
        agent()
            .post(format!("{}/api/v1/uploads", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", len.to_string())
            .send_empty(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// A bundle of run `id` holding only `history` as its history table, gzipped at best.
fn hand_bundle(id: &str, history: &[u8]) -> Vec<u8> {
    let manifest = Manifest {
        format: FORMAT,
        run: RunInfo {
            id: id.into(),
            project: "p".into(),
            ..RunInfo::default()
        },
        state: RunState::Running,
        seq_start: 0,
        seq_end: 1,
        entries: vec![Entry {
            path: HISTORY.into(),
            sha256: sha256_hex(history),
            size: history.len() as u64,
        }],
    };
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::best()));
    for (path, data) in [
        (MANIFEST, serde_json::to_vec(&manifest).unwrap()),
        (HISTORY, history.to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, path, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The two bundles of issue 8: 100,000 rows × 100,000 empty columns, and a 50,000-byte key
/// with 30,000 `true` values.
fn amplifiers() -> [Vec<u8>; 2] {
    [
        hand_bundle("wide", &table(100_000, 100_000, "", 0)),
        hand_bundle("long", &table(30_000, 1, &"k".repeat(50_000), 30_000)),
    ]
}

/// Starts a bundle `POST` of `len` bytes and waits for the server's `100 Continue`: the server
/// then holds an ingest slot for it, until [`send_held`] sends the body.
fn hold_slot(server: &Server, key: &str, len: usize) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/bundles HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Expect: 100-continue\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s
}

/// Sends the body of a request started by [`hold_slot`]; returns the raw answer.
fn send_held(mut s: TcpStream, body: &[u8]) -> String {
    s.write_all(body).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn decode_budget_refuses_before_allocating() {
    let limits = Limits::default();
    let over = |t: &[u8], limits: &Limits| match Columns::decode(t, &mut Budget::new(limits)) {
        Err(TableError::Budget(o)) => o,
        other => panic!("{other:?}"),
    };
    let wide = over(&table(100_000, 100_000, "", 0), &limits);
    assert_eq!((wide.what, wide.limit), ("rows × keys", limits.max_cells));
    let long = over(&table(30_000, 1, &"k".repeat(50_000), 30_000), &limits);
    assert_eq!((long.what, long.limit), ("key length", 1024));
    let small = Limits {
        max_decoded_bytes: 1 << 20,
        ..Limits::default()
    };
    let big = over(&table(30_000, 1, "flag", 30_000), &small);
    assert_eq!((big.what, big.limit), ("decoded bytes", 1 << 20));
    let ok = Columns::decode(&table(30_000, 1, "flag", 30_000), &mut Budget::new(&limits)).unwrap();
    assert_eq!(ok.cols[0].values.len(), 30_000);
    assert_eq!(ok.cols[0].values[0], tidelog::Value::Bool(true));
}

#[test]
fn decode_amplification_bundles_get_413_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start(dir.path());
    let [wide, long] = amplifiers();
    assert!(
        wide.len() < 2048 && long.len() < 2048,
        "{} {}",
        wide.len(),
        long.len()
    );
    let r = post(&server, &key, &wide);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.error()
            .contains("rows × keys over the decode budget of 1073741824"),
        "{}",
        r.text()
    );
    let r = post(&server, &key, &long);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(
        r.error().contains("key length over the decode budget of 1024"),
        "{}",
        r.text()
    );
    assert_eq!(get(&server, &key, "/healthz").status, 200);
    let good = bundle(&run_log("fine", &[]), &[]);
    assert_eq!(post(&server, &key, &good.bytes).status, 201);
    let peak = proc_kib(server.pid(), "VmHWM");
    eprintln!(
        "bundles of {} and {} bytes: server peak RSS {peak} KiB",
        wide.len(),
        long.len()
    );
    assert!(peak < 256 << 10, "peak RSS {peak} KiB");
}

#[test]
fn a_poisoned_upload_is_quarantined_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let [wide, _] = amplifiers();
    let good = bundle(&run_log("good", &[]), &[]);
    let server = Server::start(dir.path());
    let poisoned = create_upload(&server, &key, wide.len());
    let interrupted = create_upload(&server, &key, good.bytes.len());
    drop(server);
    // Both received in full before a crash; the second's ingest had started and never returned.
    store::stage_received(dir.path(), &poisoned, &wide, false);
    store::stage_received(dir.path(), &interrupted, &good.bytes, true);

    let server = Server::start(dir.path());
    assert_eq!(get(&server, &key, "/healthz").status, 200);
    let text = |key: String| String::from_utf8(store::get(dir.path(), &key).expect(&key)).unwrap();
    let reason = text(format!("quarantine/{poisoned}.reason"));
    assert!(reason.contains("rows × keys over the decode budget"), "{reason}");
    assert_eq!(
        store::get(dir.path(), &format!("quarantine/{poisoned}.bundle")),
        Some(wide)
    );
    let reason = text(format!("quarantine/{interrupted}.reason"));
    assert!(reason.contains("never returned"), "{reason}");
    assert_eq!(
        store::get(dir.path(), &format!("quarantine/{interrupted}.bundle")).as_deref(),
        Some(&good.bytes[..])
    );
    for id in [&poisoned, &interrupted] {
        assert!(store::list(dir.path(), &format!("uploads/{id}")).is_empty());
        let head = reply(
            agent()
                .head(format!("{}/api/v1/uploads/{id}", server.url))
                .header("Authorization", format!("Bearer {key}"))
                .header("Tus-Resumable", "1.0.0")
                .call(),
        );
        assert_eq!(head.status, 404);
    }
    assert_eq!(
        get(&server, &key, "/api/v1/runs/good").status,
        404,
        "quarantined, not ingested"
    );
    drop(server);
    // And it starts again, with nothing left to recover.
    let server = Server::start(dir.path());
    assert_eq!(get(&server, &key, "/healthz").status, 200);
}

/// True once the server closed `s`: a read returns EOF or a reset instead of timing out.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match s.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_connections_are_closed_and_capped_and_a_stalled_body_is_408() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(
        dir.path(),
        &[
            "--header-timeout-secs",
            "0.5",
            "--body-timeout-secs",
            "0.5",
            "--max-connections",
            "100",
        ],
    );
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut idle: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // A real request still gets through: idle connections are closed and their slots reused.
    let started = Instant::now();
    let r = get(&server, &key, "/api/v1/whoami");
    assert_eq!(r.status, 200, "{}", r.text());
    eprintln!(
        "a request behind 300 idle connections answered in {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(closed_by_server(&mut idle[0]));
    assert!(closed_by_server(&mut idle[299]));
    // Half a request line, then nothing: closed too.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /healthz HT").unwrap();
    assert!(closed_by_server(&mut slow));
    // A body that stops: 408.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "POST /api/v1/bundles HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Length: 1000\r\n\r\n0123456789"
    )
    .unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = [0u8; 12];
    stalled.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 408");
}

#[test]
fn a_blob_is_referenced_without_its_bytes_only_by_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create_key(dir.path(), "alice");
    let bob = create_key(dir.path(), "bob");
    let server = Server::start(dir.path());
    let secret: &[u8] = b"alice's weights";
    let sha = sha256_hex(secret);
    let a1 = run_log("a1", &[("model.bin", secret)]);
    assert_eq!(post(&server, &alice, &bundle(&a1, &[secret]).bytes).status, 201);
    // Bob names Alice's blob without carrying it: refused, and nothing is stored.
    let b1 = run_log("b1", &[("stolen.bin", secret)]);
    let r = post(&server, &bob, &bundle(&b1, &[]).bytes);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.error()
            .contains(&format!("blob {sha} which the bundle does not carry")),
        "{}",
        r.text()
    );
    assert_eq!(get(&server, &bob, "/api/v1/runs/b1").status, 404);
    // With the bytes, Bob may: he has them.
    assert_eq!(post(&server, &bob, &bundle(&b1, &[secret]).bytes).status, 201);
    assert_eq!(
        get(&server, &bob, "/api/v1/runs/b1/files/stolen.bin").body,
        secret
    );
    // Alice refers to her own blob from another run without resending it.
    let a2 = run_log("a2", &[("again.bin", secret)]);
    assert_eq!(post(&server, &alice, &bundle(&a2, &[]).bytes).status, 201);
    assert_eq!(
        get(&server, &alice, "/api/v1/runs/a2/files/again.bin").body,
        secret
    );
}

#[test]
fn nosniff_everywhere_and_active_files_are_sandboxed_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start(dir.path());
    let svg: &[u8] = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(localStorage.length)'/>";
    let png: &[u8] = b"\x89PNG\r\n\x1a\nnot really";
    let log = run_log(
        "media",
        &[("media/evil.svg", svg), ("page.html", svg), ("media/ok.png", png)],
    );
    assert_eq!(post(&server, &key, &bundle(&log, &[svg, png]).bytes).status, 201);
    for (path, key) in [
        ("/healthz", ""),
        ("/", ""),
        ("/assets/app.js", ""),
        ("/api/v1/runs", ""),
        ("/api/v1/runs", key.as_str()),
        ("/api/v1/nope", key.as_str()),
        ("/api/v1/runs/media/files/media/ok.png", key.as_str()),
    ] {
        let r = get(&server, key, path);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path} ({})",
            r.status
        );
    }
    for path in ["media/evil.svg", "page.html"] {
        let r = get(&server, &key, &format!("/api/v1/runs/media/files/{path}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, svg);
        assert_eq!(
            r.header("content-type"),
            Some("application/octet-stream"),
            "{path}"
        );
        assert_eq!(r.header("content-disposition"), Some("attachment"), "{path}");
        assert_eq!(r.header("content-security-policy"), Some("sandbox"), "{path}");
    }
    let r = get(&server, &key, "/api/v1/runs/media/files/media/ok.png");
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("content-security-policy"), Some("sandbox"));
    assert_eq!(r.header("content-disposition"), None);
}

#[test]
fn a_full_disk_is_507_and_busy_ingest_slots_are_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    // The store is a 16 KiB tmpfs (in a mount namespace of the server's own): a chunk of
    // 100 KiB cannot fit, its write fails with ENOSPC.
    let full = dir.path().join("full-store");
    std::fs::create_dir(&full).unwrap();
    let store_url = format!("file://{}", full.display());
    let server = Server::start_in(
        dir.path(),
        &[
            "unshare",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "mount -t tmpfs -o size=16k tidelog-full \"$0\" && exec \"$@\"",
            full.to_str().unwrap(),
        ],
        &["--max-ingests", "1", "--store", &store_url],
    );
    let id = create_upload(&server, &key, 100 << 10);
    let r = reply(
        agent()
            .patch(format!("{}/api/v1/uploads/{id}", server.url))
            .header("Authorization", format!("Bearer {key}"))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", "0")
            .send(&[1u8; 100 << 10][..]),
    );
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(r.error().contains("insufficient storage"), "{}", r.text());
    assert!(r.error().contains("No space left on device"), "{}", r.text());

    // One request holds the only ingest slot: the server asked for its body (100 Continue).
    let good = bundle(&run_log("queued", &[]), &[]);
    let holder = hold_slot(&server, &key, good.bytes.len());
    let r = post(&server, &key, &good.bytes);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.error().contains("ingest slots"), "{}", r.text());
    let answer = send_held(holder, &good.bytes);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert_eq!(
        post(&server, &key, &good.bytes).status,
        200,
        "the slot is free again"
    );
}

#[test]
fn a_large_file_downloads_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let big = vec![7u8; 24 << 20];
    let log = run_log("big", &[("big.bin", &big)]);
    let server = Server::start(dir.path());
    assert_eq!(post(&server, &key, &bundle(&log, &[&big]).bytes).status, 201);
    drop(server);
    // A fresh process, so its peak memory is the download's alone.
    let server = Server::start(dir.path());
    assert_eq!(get(&server, &key, "/healthz").status, 200);
    let before = proc_kib(server.pid(), "VmHWM");
    let mut resp = agent()
        .get(format!("{}/api/v1/runs/big/files/big.bin", server.url))
        .header("Authorization", format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let n = std::io::copy(&mut resp.body_mut().as_reader(), &mut std::io::sink()).unwrap();
    assert_eq!(n, big.len() as u64);
    let growth = proc_kib(server.pid(), "VmHWM").saturating_sub(before);
    eprintln!("a 24 MiB download: server peak RSS {before} KiB before, grew by {growth} KiB");
    assert!(
        growth < 8 << 10,
        "peak RSS grew by {growth} KiB for a 24 MiB file"
    );
}

/// A finished run `id` with `rows` history rows.
fn long_log(id: &str, rows: u32) -> Vec<u8> {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "p".into(),
        ..RunInfo::default()
    }));
    for i in 0..rows {
        log.log(
            1_000 + i64::from(i),
            [("loss", f64::from(i))],
            LogOptions::default(),
        )
        .unwrap();
    }
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: 9_000_000,
    });
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

/// The bundle of records `0..end` of `log`.
fn prefix(log: &[u8], end: u64) -> Bundle {
    let index = LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    let state = if end == index.len() {
        index.state(false)
    } else {
        RunState::Running
    };
    write_bundle(&index, &run, state, 0..end, &[]).unwrap()
}

#[test]
fn concurrent_ingests_of_one_run_and_of_others_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &["--max-ingests", "8"]);
    // Run A's upload is in progress, its body not yet sent: it holds an ingest slot.
    let a = bundle(&run_log("run-a", &[]), &[]);
    let slow = hold_slot(&server, &key, a.bytes.len());
    // Meanwhile overlapping bundles of run B arrive at once; each row is stored once.
    let log = long_log("run-b", 400);
    let total = LogIndex::new(&log).unwrap().len();
    let ends = [100, 200, 300, total];
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let posts: Vec<_> = ends
            .iter()
            .map(|&end| {
                let (b, server, key) = (prefix(&log, end), &server, &key);
                s.spawn(move || post(server, key, &b.bytes).status)
            })
            .collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    assert_eq!(statuses, [201; 4]);
    let rows = get(&server, &key, "/api/v1/runs/run-b/history");
    let rows: serde_json::Value = serde_json::from_slice(&rows.body).unwrap();
    let steps: Vec<u64> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (0..400).collect::<Vec<_>>());
    let run: serde_json::Value =
        serde_json::from_slice(&get(&server, &key, "/api/v1/runs/run-b").body).unwrap();
    assert_eq!(run["state"], "finished");
    // Run A completes after all of that.
    let answer = send_held(slow, &a.bytes);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

#[test]
fn a_refusal_before_the_body_is_read_closes_the_connection_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start(dir.path());
    let id = create_upload(&server, &key, 10);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "PATCH /api/v1/uploads/{id} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n\
         Upload-Offset: 0\r\nContent-Length: 11\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    let ok = get(&server, &key, "/api/v1/whoami");
    assert_eq!(ok.status, 200, "a fresh connection is served");
}
