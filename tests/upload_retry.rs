//! `tidelog upload` retries through the core's one loop (`deliver`): against a server whose
//! ingest slots are all taken it waits the core's schedule, at least the server's
//! `Retry-After` each time, before it gives up; once a slot is free the same file goes up.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{history, only_run, settings, text, tidelog, Server};
use tidelog::core::sync::SyncOptions;
use tidelog::core::transport::Backoff;

/// Holds the server's only ingest slot: a POST whose body is announced and never sent.
fn hold_slot(server: &Server, key: &str) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/bundles HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Expect: 100-continue\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s
}

#[test]
fn upload_waits_the_cores_schedule_on_a_busy_server() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "busy")).unwrap();
    let id = run.id().to_owned();
    run.log([("loss", 1.0)]).unwrap();
    run.finish(0).unwrap();
    let out_dir = work.path().join("out");
    let made = tidelog(
        work.path(),
        &[
            "bundle",
            only_run(work.path()).to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(made.status.success(), "{}", text(&made));
    let file = std::fs::read_dir(&out_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["--max-ingests", "1"]);
    let key = server.key("alice");
    let env = [
        ("TIDELOG_API_KEY", key.as_str()),
        ("TIDELOG_BASE_URL", server.url.as_str()),
    ];
    let held = hold_slot(&server, &key);
    let started = Instant::now();
    let busy = tidelog(work.path(), &["upload", file.to_str().unwrap()], &env);
    let waited = started.elapsed();
    assert_eq!(busy.status.code(), Some(1), "{}", text(&busy));
    assert!(text(&busy).contains("server answered 503"), "{}", text(&busy));
    let opts = SyncOptions::default();
    let schedule = Backoff::attempts(opts.backoff_ms);
    let least: u64 = (1..opts.attempts)
        .map(|n| schedule.delay_ms(n, Some(1_000)))
        .sum();
    assert!(
        waited >= Duration::from_millis(least),
        "waited {waited:?}, the schedule says at least {least} ms"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = tidelog(work.path(), &["upload", file.to_str().unwrap()], &env);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot never took the upload: {}",
            text(&out)
        );
    }
    let rows = history(&server.url, &key, &id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["loss"], 1.0);
}
