//! Two `tidelog serve` processes over one database and one object store are one server: a tus
//! upload continues on either, the same run synced through both lands once, and a replica
//! killed mid-upload loses nothing it acknowledged. The database is PostgreSQL when
//! `TIDELOG_TEST_DATABASE` names one, else one SQLite file both open; the store is S3 (moto)
//! with `TIDELOG_TEST_STORE=s3`, else one folder both use.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{agent, reply, steps_of, store, Reply, Server, BIN};
use tidelog::core::bundle::{sha256_hex, write_bundle, Bundle};
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::{FileRef, Meta, RunInfo, RunState};

/// What the replicas share, and the two of them.
struct Pair {
    _dir: tempfile::TempDir,
    database: String,
    store: String,
    a: Server,
    b: Server,
    key: String,
}

impl Pair {
    fn start() -> Pair {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        let database = match std::env::var("TIDELOG_TEST_DATABASE") {
            Ok(base) if !base.is_empty() => common::postgres_database(&base, &shared),
            _ => format!("sqlite://{}", shared.join("tidelog.db").display()),
        };
        let store = if store::is_s3() {
            store::server_args(&shared).0[1].clone()
        } else {
            format!("file://{}", shared.join("store").display())
        };
        let out = std::process::Command::new(BIN)
            .args([
                "admin",
                "create-key",
                "--account",
                "alice",
                "--database",
                &database,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        Pair {
            a: replica(dir.path(), "a", &database, &store),
            b: replica(dir.path(), "b", &database, &store),
            _dir: dir,
            database,
            store,
            key,
        }
    }

    /// Starts a new replica in place of `a`, the old one killed (SIGKILL) first.
    fn replace_a(&mut self) {
        let fresh = replica(self._dir.path(), "a2", &self.database, &self.store);
        std::mem::replace(&mut self.a, fresh).kill();
    }
}

/// A replica with scratch folder `dir/name`: nothing in it is needed by the other.
fn replica(dir: &Path, name: &str, database: &str, store: &str) -> Server {
    let scratch: PathBuf = dir.join(name);
    Server::start_with(&scratch, &["--database", database, "--store", store])
}

/// A run id no other test (nor an earlier run on a shared PostgreSQL) uses.
fn fresh_id(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

const FILE: &[u8] = b"weights that must reach either replica";

/// The bundle of a finished run `id` of `rows` history rows and one saved file.
fn bundle(id: &str, rows: u32) -> Bundle {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(RunInfo {
        id: id.into(),
        project: "replicas".into(),
        created_ms: 1_795_713_570_123,
        ..RunInfo::default()
    }));
    for i in 0..rows {
        let row = [("loss", 1.0 / f64::from(i + 1)), ("i", f64::from(i))];
        log.log(1_795_713_600_000 + i64::from(i), row, LogOptions::default())
            .unwrap();
    }
    log.meta(&Meta::File(FileRef {
        path: "model.bin".into(),
        sha256: sha256_hex(FILE),
        size: FILE.len() as u64,
    }));
    log.meta(&Meta::Finish {
        exit_code: 0,
        ts_ms: 1_795_713_700_000,
    });
    let mut bytes = Vec::new();
    log.take_batch(&mut bytes);
    let index = LogIndex::new(&bytes).unwrap();
    let run = index.run().unwrap().clone();
    let files = vec![(sha256_hex(FILE), FILE.to_vec())];
    write_bundle(&index, &run, RunState::Finished, 0..index.len(), &files).unwrap()
}

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

fn create(server: &Server, key: &str, b: &Bundle) -> String {
    let r = reply(
        agent()
            .post(format!("{}/api/v1/uploads", server.url))
            .header("Authorization", auth(key))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", b.bytes.len().to_string())
            .header("Tidelog-Bundle-Sha256", &b.sha256)
            .send_empty(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.header("location").unwrap().to_owned()
}

fn head(server: &Server, key: &str, url: &str) -> Reply {
    reply(
        agent()
            .head(format!("{}{url}", server.url))
            .header("Authorization", auth(key))
            .header("Tus-Resumable", "1.0.0")
            .call(),
    )
}

fn offset(server: &Server, key: &str, url: &str) -> usize {
    let r = head(server, key, url);
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("upload-offset").unwrap().parse().unwrap()
}

fn patch(server: &Server, key: &str, url: &str, at: usize, chunk: &[u8]) -> Reply {
    reply(
        agent()
            .patch(format!("{}{url}", server.url))
            .header("Authorization", auth(key))
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", at.to_string())
            .send(chunk),
    )
}

fn get(server: &Server, key: &str, path: &str) -> Reply {
    reply(
        agent()
            .get(format!("{}{path}", server.url))
            .header("Authorization", auth(key))
            .call(),
    )
}

/// The steps of run `id`'s history as `server` reports them.
fn steps(server: &Server, key: &str, id: &str) -> Vec<u64> {
    let r = get(server, key, &format!("/api/v1/runs/{id}/history"));
    assert_eq!(r.status, 200, "{}", r.text());
    steps_of(&r.json())
}

/// Both replicas show run `id` whole: every step once, its file's bytes.
fn assert_landed_once(p: &Pair, id: &str, rows: u32) {
    for server in [&p.a, &p.b] {
        assert_eq!(
            steps(server, &p.key, id),
            (0..u64::from(rows)).collect::<Vec<_>>()
        );
        let file = get(server, &p.key, &format!("/api/v1/runs/{id}/files/model.bin"));
        assert_eq!(file.status, 200);
        assert_eq!(file.body, FILE);
    }
}

#[test]
fn an_upload_begun_on_one_replica_continues_on_the_other_chunk_by_chunk() {
    let p = Pair::start();
    let id = fresh_id("alternating");
    let b = bundle(&id, 400);
    let url = create(&p.a, &p.key, &b);
    assert_eq!(offset(&p.b, &p.key, &url), 0, "created on a, known to b");
    let chunks: Vec<&[u8]> = b.bytes.chunks(b.bytes.len() / 5 + 1).collect();
    let mut at = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let (here, there) = if i % 2 == 0 { (&p.a, &p.b) } else { (&p.b, &p.a) };
        // A stale offset is refused on either replica.
        if at > 0 {
            assert_eq!(patch(there, &p.key, &url, at - 1, chunk).status, 409);
        }
        let r = patch(here, &p.key, &url, at, chunk);
        at += chunk.len();
        if at < b.bytes.len() {
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(offset(there, &p.key, &url), at, "b sees what a acknowledged");
        } else {
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(r.header("tidelog-rows-added"), Some("400"), "{:?}", r.headers);
        }
    }
    assert_eq!(
        head(&p.b, &p.key, &url).status,
        404,
        "finished, forgotten on both"
    );
    assert_landed_once(&p, &id, 400);
}

#[test]
fn the_same_run_synced_through_both_at_once_lands_exactly_once() {
    let p = Pair::start();
    let id = fresh_id("both");
    let b = bundle(&id, 2000);
    // Two clients with the same run, one per replica, at once, several times over: by POST
    // and by tus, racing on the run's high-water mark and on one upload's offset.
    for round in 0..3 {
        let url = create(&p.a, &p.key, &b);
        let answers: Vec<u16> = std::thread::scope(|s| {
            let tasks: Vec<_> = [&p.a, &p.b]
                .into_iter()
                .flat_map(|server| {
                    let (key, url, bytes) = (&p.key, &url, &b.bytes);
                    let post = s.spawn(move || {
                        reply(
                            agent()
                                .post(format!("{}/api/v1/bundles", server.url))
                                .header("Authorization", auth(key))
                                .header("Content-Type", "application/gzip")
                                .send(&bytes[..]),
                        )
                        .status
                    });
                    let tus = s.spawn(move || patch(server, key, url, 0, bytes).status);
                    [post, tus]
                })
                .collect();
            tasks.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let posts = [answers[0], answers[2]];
        let tus = [answers[1], answers[3]];
        assert!(
            posts.iter().all(|s| [200, 201].contains(s)),
            "round {round}: {answers:?}"
        );
        if round == 0 {
            assert!(
                posts.contains(&201) || tus.contains(&204),
                "someone stored it first: {answers:?}"
            );
        }
        let mut tus_sorted = tus;
        tus_sorted.sort_unstable();
        // The loser finds the offset moved (409), the upload being ingested (423) or gone (404).
        assert!(
            tus_sorted[0] == 204 && [404, 409, 423].contains(&tus_sorted[1]),
            "exactly one PATCH of the upload wins: {answers:?}"
        );
        assert_landed_once(&p, &id, 2000);
    }
}

#[test]
fn a_replica_killed_mid_upload_loses_nothing_acknowledged() {
    let mut p = Pair::start();
    let id = fresh_id("killed");
    let b = bundle(&id, 3000);
    let url = create(&p.a, &p.key, &b);
    let first = b.bytes.len() / 3;
    assert_eq!(patch(&p.a, &p.key, &url, 0, &b.bytes[..first]).status, 204);
    // A second chunk is half sent to a when a is killed.
    let addr = p.a.url.trim_start_matches("http://").to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    let rest = b.bytes.len() - first;
    write!(
        s,
        "PATCH {url} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {first}\r\n\
         Content-Length: {rest}\r\n\r\n",
        auth(&p.key)
    )
    .unwrap();
    s.write_all(&b.bytes[first..first + rest / 2]).unwrap();
    s.flush().unwrap();
    p.replace_a();
    let mut gone = Vec::new();
    let _ = s.read_to_end(&mut gone);
    assert!(
        gone.is_empty(),
        "a answered before it died: {:?}",
        String::from_utf8_lossy(&gone)
    );
    // b has everything a acknowledged, and nothing it did not.
    assert_eq!(offset(&p.b, &p.key, &url), first);
    let r = patch(&p.b, &p.key, &url, first, &b.bytes[first..]);
    assert_eq!(r.status, 204, "{}", r.text());
    assert_landed_once(&p, &id, 3000);
    // What the killed replica left half-written goes with the upload.
    let deadline = Instant::now() + Duration::from_secs(20);
    let upload = format!("uploads/{}", url.rsplit('/').next().unwrap());
    let shared = p._dir.path().join("shared");
    while !store::list(&shared, &upload).is_empty() {
        assert!(Instant::now() < deadline, "parts of {upload} left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
}
