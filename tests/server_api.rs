//! The server's HTTP API end to end: a real `tidelog serve` child, real bundles, real HTTP.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use tidelog::core::bundle::{sha256_hex, write_bundle, Bundle};
use tidelog::core::log_index::LogIndex;
use tidelog::core::run_log::{LogOptions, RunLog};
use tidelog::core::value::Value;
use tidelog::{FileRef, Meta, RunInfo, RunState};

use common::{create_key, reply, Reply, Server, BIN};

/// An HTTP client for one server and key.
struct Api {
    agent: ureq::Agent,
    base: String,
    key: String,
}

impl Api {
    fn new(server: &Server, key: &str) -> Api {
        Api {
            agent: common::agent(),
            base: server.url.clone(),
            key: key.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.key)
    }

    fn get(&self, path: &str) -> Reply {
        reply(
            self.agent
                .get(self.url(path))
                .header("Authorization", self.auth())
                .call(),
        )
    }

    fn head(&self, path: &str) -> Reply {
        reply(
            self.agent
                .head(self.url(path))
                .header("Authorization", self.auth())
                .call(),
        )
    }

    fn post_bundle(&self, bytes: &[u8], sha: Option<&str>) -> Reply {
        let mut req = self
            .agent
            .post(self.url("/api/v1/bundles"))
            .header("Authorization", self.auth())
            .header("Content-Type", "application/gzip");
        if let Some(sha) = sha {
            req = req.header("Tidelog-Bundle-Sha256", sha);
        }
        reply(req.send(bytes))
    }

    fn post(&self, b: &Bundle) -> Reply {
        self.post_bundle(&b.bytes, Some(&b.sha256))
    }

    fn create_upload(&self, len: usize, sha: &str) -> Reply {
        let meta = format!(
            "filename {},sha256 {}",
            base64::engine::general_purpose::STANDARD.encode("b.tar.gz"),
            base64::engine::general_purpose::STANDARD.encode(sha)
        );
        reply(
            self.agent
                .post(self.url("/api/v1/uploads"))
                .header("Authorization", self.auth())
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Length", len.to_string())
                .header("Upload-Metadata", meta)
                .send_empty(),
        )
    }

    fn patch(&self, url: &str, offset: usize, chunk: &[u8], checksum: Option<String>) -> Reply {
        let mut req = self
            .agent
            .patch(self.url(url))
            .header("Authorization", self.auth())
            .header("Tus-Resumable", "1.0.0")
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset.to_string());
        if let Some(c) = checksum {
            req = req.header("Upload-Checksum", c);
        }
        reply(req.send(chunk))
    }
}

fn sha256_b64(data: &[u8]) -> String {
    format!(
        "sha256 {}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
    )
}

fn info(id: &str) -> RunInfo {
    RunInfo {
        id: id.into(),
        project: "proj".into(),
        name: Some("first".into()),
        tags: vec!["a".into()],
        created_ms: 1_795_713_570_123,
        ..RunInfo::default()
    }
}

const T0: i64 = 1_795_713_600_000;
const FILE: &[u8] = b"{\"lr\": 0.1}";

/// A log of `rows` history rows (`loss`, `acc`), a config, an explicit summary, a system row, a
/// saved file and a finish with `exit`.
fn sample_log(id: &str, rows: u32, exit: Option<i32>) -> Vec<u8> {
    let mut log = RunLog::default();
    log.meta(&Meta::Start(info(id)));
    let mut config = serde_json::Map::new();
    config.insert("lr".into(), json!(0.1));
    log.meta(&Meta::Config { update: config });
    for i in 0..rows {
        let loss = 1.0 / f64::from(i + 1);
        log.log(
            T0 + i64::from(i) * 1000,
            [("loss", loss), ("acc", f64::from(i) / 10.0)],
            LogOptions::default(),
        )
        .unwrap();
        if i == 1 {
            let mut s = serde_json::Map::new();
            s.insert("best".into(), json!("explicit"));
            s.insert("loss".into(), json!(-1));
            log.meta(&Meta::Summary { update: s });
        }
    }
    log.system(T0, &[("cpu", 12.5)]).unwrap();
    log.meta(&Meta::File(FileRef {
        path: "config/params.json".into(),
        sha256: sha256_hex(FILE),
        size: FILE.len() as u64,
    }));
    if let Some(exit_code) = exit {
        log.meta(&Meta::Finish {
            exit_code,
            ts_ms: T0 + 99_000,
        });
    }
    let mut out = Vec::new();
    log.take_batch(&mut out);
    out
}

fn bundle(log: &[u8], range: Option<std::ops::Range<u64>>) -> Bundle {
    let index = LogIndex::new(log).unwrap();
    let run = index.run().unwrap().clone();
    let range = range.unwrap_or(0..index.len());
    let state = if range.end == index.len() {
        index.state(false)
    } else {
        RunState::Running
    };
    let files: Vec<_> = index
        .files(range.clone())
        .into_iter()
        .map(|f| (f.sha256, FILE.to_vec()))
        .collect();
    write_bundle(&index, &run, state, range, &files).unwrap()
}

fn records(log: &[u8]) -> u64 {
    LogIndex::new(log).unwrap().len()
}

fn history(api: &Api, id: &str) -> Vec<Json> {
    let r = api.get(&format!("/api/v1/runs/{id}/history"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["rows"].as_array().unwrap().clone()
}

fn run_ids(api: &Api) -> Vec<String> {
    let r = api.get("/api/v1/runs");
    assert_eq!(r.status, 200);
    r.json()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn healthz_whoami_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let r = api.get("/healthz");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let r = api.get("/api/v1/whoami");
    assert_eq!((r.status, r.json()), (200, json!({"account": "alice"})));
    // A key created while the server runs works at once.
    let bob = Api::new(&server, &create_key(dir.path(), "bob"));
    assert_eq!(bob.get("/api/v1/whoami").json(), json!({"account": "bob"}));

    let wrong = Api::new(&server, "tlk_0000");
    let r = wrong.get("/api/v1/whoami");
    assert_eq!(r.status, 401);
    assert!(r.error().contains("invalid API key"));
    let anonymous = reply(api.agent.get(api.url("/api/v1/runs")).call());
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.error().contains("missing API key"));
    let page = api.get("/");
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("<title>tidelog</title>"));
    assert_eq!(api.get("/api/v1/nope").status, 404);
}

#[test]
fn ingest_history_state_summary_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let log = sample_log("run1", 5, Some(0));
    let b = bundle(&log, None);
    let r = api.post(&b);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"rows_added": 6, "duplicates_skipped": 0, "next_seq": records(&log)})
    );

    let rows = history(&api, "run1");
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        let i = i as u32;
        assert_eq!(row["_step"], json!(i));
        assert_eq!(
            row["_timestamp"].as_f64().unwrap(),
            (T0 as f64 + f64::from(i) * 1000.0) / 1000.0
        );
        assert_eq!(row["loss"], json!(1.0 / f64::from(i + 1)));
        assert_eq!(row["acc"], json!(f64::from(i) / 10.0));
    }
    let only = api.get("/api/v1/runs/run1/history?keys=acc,missing").json();
    assert_eq!(
        only["rows"][4],
        json!({"_step": 4, "_timestamp": (T0 + 4000) as f64 / 1000.0, "acc": 0.4})
    );
    let none = api.get("/api/v1/runs/run1/history?keys=missing").json();
    assert_eq!(none, json!({"rows": []}));
    let system = api.get("/api/v1/runs/run1/system").json();
    assert_eq!(
        system["rows"],
        json!([{"_step": 5, "_timestamp": T0 as f64 / 1000.0, "cpu": 12.5}])
    );

    let run = api.get("/api/v1/runs/run1").json();
    assert_eq!(run["state"], "finished");
    assert_eq!(run["exit_code"], 0);
    assert_eq!(run["project"], "proj");
    assert_eq!(run["name"], "first");
    assert_eq!(run["tags"], json!(["a"]));
    assert_eq!(run["config"], json!({"lr": 0.1}));
    // Explicit summary keys win over earlier history values and lose to later ones.
    assert_eq!(
        run["summary"],
        json!({"loss": 0.2, "acc": 0.4, "best": "explicit"})
    );
    assert_eq!(run["created"], "2026-11-26T17:19:30.123Z");
    assert_eq!(run["created_ms"], 1_795_713_570_123_i64);

    let files = api.get("/api/v1/runs/run1/files").json();
    assert_eq!(
        files,
        json!({"files": [{"path": "config/params.json", "sha256": sha256_hex(FILE), "size": FILE.len()}]})
    );
    let f = api.get("/api/v1/runs/run1/files/config/params.json");
    assert_eq!((f.status, f.body.as_slice()), (200, FILE));
    assert_eq!(f.header("content-type"), Some("application/json"));
    assert_eq!(api.get("/api/v1/runs/run1/files/nope.txt").status, 404);
    assert_eq!(api.get("/api/v1/runs/nope").status, 404);

    let again = api.post(&b);
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json(),
        json!({"rows_added": 0, "duplicates_skipped": 6, "next_seq": records(&log)})
    );
    assert_eq!(history(&api, "run1"), rows);
    assert_eq!(run_ids(&api), ["run1"]);
}

#[test]
fn overlapping_bundles_store_rows_once_and_gaps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let log = sample_log("run2", 20, Some(3));
    let n = records(&log);
    let first = api.post(&bundle(&log, Some(0..12)));
    assert_eq!(first.status, 201);
    let before = first.json()["rows_added"].as_u64().unwrap();
    assert_eq!(api.get("/api/v1/runs/run2").json()["state"], "running");

    let overlap = api.post(&bundle(&log, Some(6..16)));
    assert_eq!(overlap.status, 201);
    let o = overlap.json();
    assert_eq!(o["next_seq"], 16);
    assert!(o["duplicates_skipped"].as_u64().unwrap() > 0, "{o}");

    let gap = api.post(&bundle(&log, Some(18..n)));
    assert_eq!(gap.status, 409);
    assert_eq!(
        gap.json(),
        json!({"error": "gap: server has records up to 16", "next_seq": 16})
    );

    let rest = api.post(&bundle(&log, Some(16..n)));
    assert_eq!(rest.status, 201);
    let added = before + o["rows_added"].as_u64().unwrap() + rest.json()["rows_added"].as_u64().unwrap();
    assert_eq!(added, 21, "20 history rows and one system row, each once");
    let rows = history(&api, "run2");
    let steps: Vec<u64> = rows.iter().map(|r| r["_step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..20).collect::<Vec<_>>());
    let run = api.get("/api/v1/runs/run2").json();
    assert_eq!(
        (run["state"].clone(), run["exit_code"].clone()),
        (json!("failed"), json!(3))
    );
    assert_eq!(run["summary"]["loss"], json!(1.0 / 20.0));
}

#[test]
fn accounts_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create_key(dir.path(), "alice");
    let bob = create_key(dir.path(), "bob");
    let server = Server::start_with(dir.path(), &[]);
    let (alice, bob) = (Api::new(&server, &alice), Api::new(&server, &bob));
    let log = sample_log("shared", 3, None);
    let b = bundle(&log, None);

    let wrong = Api::new(&server, "tlk_wrong").post(&b);
    assert_eq!(wrong.status, 401);
    assert!(run_ids(&alice).is_empty());

    assert_eq!(alice.post(&b).status, 201);
    for attempt in [b.clone(), bundle(&log, Some(0..5))] {
        let r = bob.post(&attempt);
        assert_eq!(r.status, 403);
        assert!(r.error().contains("another account"), "{}", r.error());
    }
    assert_eq!(bob.get("/api/v1/runs/shared").status, 403);
    assert_eq!(bob.get("/api/v1/runs/shared/history").status, 403);
    assert!(run_ids(&bob).is_empty());
    assert_eq!(history(&alice, "shared").len(), 3);
    assert_eq!(
        alice.get("/api/v1/runs?project=proj").json()["runs"][0]["id"],
        "shared"
    );
    assert!(alice.get("/api/v1/runs?project=other").json()["runs"]
        .as_array()
        .unwrap()
        .is_empty());
}

fn tar_gz(entries: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, data, kind) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        tar.append(&h, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn gzip_bomb() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let zeros = vec![0u8; 8 << 20];
    let mut h = tar::Header::new_gnu();
    h.set_size(zeros.len() as u64);
    tar.append_data(&mut h, "files/zeros", &zeros[..]).unwrap();
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

#[test]
fn hostile_bundles_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &["--max-unpacked-bytes", "1048576"]);
    let api = Api::new(&server, &key);
    let good = bundle(&sample_log("evil", 3, Some(0)), None);
    let reg = tar::EntryType::Regular;
    let bomb = gzip_bomb();
    assert!(bomb.len() < 64 << 10);
    let cases: Vec<(Vec<u8>, Option<String>, u16, &str)> = vec![
        (tar_gz(&[("../evil", b"x", reg)]), None, 400, "unsafe entry path"),
        (
            tar_gz(&[("/etc/evil", b"x", reg)]),
            None,
            400,
            "unsafe entry path",
        ),
        (
            tar_gz(&[("files/link", b"", tar::EntryType::Symlink)]),
            None,
            400,
            "not a regular file",
        ),
        (bomb, None, 413, "unpacks to more than 1048576 bytes"),
        (
            good.bytes.clone(),
            Some("ab".repeat(32)),
            400,
            "checksum mismatch",
        ),
        (good.bytes[..good.bytes.len() / 2].to_vec(), None, 400, "gzip"),
        (b"not gzip".to_vec(), None, 400, "gzip"),
    ];
    for (bytes, sha, status, reason) in cases {
        let r = api.post_bundle(&bytes, sha.as_deref());
        assert_eq!(r.status, status, "{reason}: {}", String::from_utf8_lossy(&r.body));
        assert!(
            r.error().contains(reason),
            "{:?} should mention {reason:?}",
            r.error()
        );
        assert!(run_ids(&api).is_empty());
    }
    assert_eq!(api.post(&good).status, 201);
}

#[test]
fn tus_upload_resumes_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let log = sample_log("tus", 300, Some(0));
    let b = bundle(&log, None);
    let (len, half) = (b.bytes.len(), b.bytes.len() / 2);

    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let opts = reply(api.agent.options(api.url("/api/v1/uploads")).call());
    assert_eq!(opts.status, 204);
    assert_eq!(opts.header("tus-resumable"), Some("1.0.0"));
    assert_eq!(opts.header("tus-version"), Some("1.0.0"));
    assert_eq!(opts.header("tus-extension"), Some("creation,checksum,expiration"));
    assert_eq!(opts.header("tus-checksum-algorithm"), Some("sha1,sha256"));
    assert!(opts.header("tus-max-size").is_some());

    let created = api.create_upload(len, &b.sha256);
    assert_eq!(created.status, 201);
    assert_eq!(created.header("tus-resumable"), Some("1.0.0"));
    let url = created.header("location").unwrap().to_owned();
    assert!(url.starts_with("/api/v1/uploads/"), "{url}");

    let chunk = &b.bytes[..half];
    let r = api.patch(&url, 0, chunk, Some(sha256_b64(chunk)));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("upload-offset"), Some(half.to_string().as_str()));
    let h = api.head(&url);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some(half.to_string().as_str()));
    assert_eq!(h.header("upload-length"), Some(len.to_string().as_str()));
    assert_eq!(h.header("cache-control"), Some("no-store"));
    drop(server);

    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let h = api.head(&url);
    assert_eq!(h.header("upload-offset"), Some(half.to_string().as_str()));
    assert_eq!(
        Api::new(&server, &create_key(dir.path(), "bob"))
            .head(&url)
            .status,
        404,
        "another account's upload is unknown"
    );
    let rest = &b.bytes[half..];
    // Refusals that come before the body is read get a one-byte body: a server may answer and
    // close while a large body is still being written, which a client sees as a reset.
    let wrong = api.patch(&url, half - 1, &rest[..1], None);
    assert_eq!(wrong.status, 409);
    assert_eq!(wrong.header("tus-resumable"), Some("1.0.0"));
    let bad_sum = api.patch(&url, half, rest, Some(sha256_b64(b"other")));
    assert_eq!(bad_sum.status, 460);
    assert_eq!(
        api.head(&url).header("upload-offset"),
        Some(half.to_string().as_str())
    );
    let plain = reply(
        api.agent
            .patch(api.url(&url))
            .header("Authorization", api.auth())
            .header("Upload-Offset", half.to_string())
            .send(&rest[..1]),
    );
    assert_eq!(plain.status, 415);

    let done = api.patch(&url, half, rest, Some(sha256_b64(rest)));
    assert_eq!(done.status, 204, "{}", String::from_utf8_lossy(&done.body));
    assert_eq!(done.header("upload-offset"), Some(len.to_string().as_str()));
    assert_eq!(done.header("tidelog-rows-added"), Some("301"));
    assert_eq!(done.header("tidelog-duplicates-skipped"), Some("0"));
    assert_eq!(history(&api, "tus").len(), 300);
    assert_eq!(api.get("/api/v1/runs/tus").json()["state"], "finished");
    assert_eq!(api.head(&url).status, 404, "a finished upload is forgotten");
    // The same bundle again by POST is recognised.
    assert_eq!(api.post(&b).status, 200);
}

#[test]
fn tus_failed_upload_is_deleted_and_cut_patch_keeps_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);

    let junk = vec![7u8; 1000];
    let url = api
        .create_upload(junk.len(), &sha256_hex(&junk))
        .header("location")
        .unwrap()
        .to_owned();
    let r = api.patch(&url, 0, &junk, None);
    assert_eq!(r.status, 400);
    assert!(r.error().contains("gzip"), "{}", r.error());
    assert_eq!(api.head(&url).status, 404);
    assert!(run_ids(&api).is_empty());

    let over = api
        .create_upload(10, &sha256_hex(b"x"))
        .header("location")
        .unwrap()
        .to_owned();
    assert_eq!(api.patch(&over, 0, &[0u8; 11], None).status, 413);
    assert_eq!(api.head(&over).header("upload-offset"), Some("0"));

    let url = api
        .create_upload(1000, &sha256_hex(&junk))
        .header("location")
        .unwrap()
        .to_owned();
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PATCH {url} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 1000\r\n\r\n"
    )
    .unwrap();
    s.write_all(&junk[..400]).unwrap();
    s.flush().unwrap();
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let offset = api.head(&url).header("upload-offset").map(str::to_owned);
        if offset.as_deref() == Some("400") {
            break;
        }
        assert!(Instant::now() < deadline, "offset stayed at {offset:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The cut PATCH may still hold the upload for a moment after its bytes are on disk (423).
    let deadline = Instant::now() + Duration::from_secs(5);
    let rest = loop {
        let r = api.patch(&url, 400, &junk[400..], None);
        if r.status != 423 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(rest.status, 400, "junk is still junk");
}

#[test]
fn a_complete_upload_left_by_a_crash_is_ingested_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let b = bundle(&sample_log("crash", 4, Some(0)), None);
    let server = Server::start_with(dir.path(), &[]);
    let url = Api::new(&server, &key)
        .create_upload(b.bytes.len(), &b.sha256)
        .header("location")
        .unwrap()
        .to_owned();
    drop(server);
    // As if the server died after storing the last byte but before ingesting.
    let id = url.rsplit('/').next().unwrap();
    common::store::stage_received(dir.path(), id, &b.bytes, false);
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    assert_eq!(api.head(&url).status, 404);
    assert_eq!(history(&api, "crash").len(), 4);
    assert_eq!(api.post(&b).status, 200);
}

#[test]
fn cors_only_for_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let open = Server::start_with(dir.path(), &["--allow-origin", "https://dash.example"]);
    let api = Api::new(&open, &key);
    let pre = reply(
        api.agent
            .options(api.url("/api/v1/uploads"))
            .header("Origin", "https://dash.example")
            .header("Access-Control-Request-Method", "PATCH")
            .header(
                "Access-Control-Request-Headers",
                "authorization,upload-offset,content-type",
            )
            .call(),
    );
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("PATCH"));
    let get = reply(
        api.agent
            .get(api.url("/api/v1/whoami"))
            .header("Authorization", api.auth())
            .header("Origin", "https://dash.example")
            .call(),
    );
    assert_eq!(get.status, 200);
    let exposed = get
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("upload-offset") && exposed.contains("location"),
        "{exposed}"
    );
    let other = reply(
        api.agent
            .get(api.url("/api/v1/whoami"))
            .header("Authorization", api.auth())
            .header("Origin", "https://evil.example")
            .call(),
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    drop(open);

    let closed = Server::start_with(dir.path(), &[]);
    let api = Api::new(&closed, &key);
    let get = reply(
        api.agent
            .get(api.url("/api/v1/whoami"))
            .header("Authorization", api.auth())
            .header("Origin", "https://dash.example")
            .call(),
    );
    assert_eq!(get.header("access-control-allow-origin"), None);
}

#[test]
fn non_finite_numbers_and_huge_strings_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    let big: String = (0..10 << 20).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let mut log = RunLog::default();
    log.meta(&Meta::Start(info("odd")));
    let vals: Vec<(&str, Value)> = vec![
        ("nan", Value::Num(f64::NAN)),
        ("inf", Value::Num(f64::INFINITY)),
        ("ninf", Value::Num(f64::NEG_INFINITY)),
        ("text", Value::Str(big.clone())),
        ("nested", Value::Json(json!({"a": [1, 2]}))),
    ];
    log.log(T0, vals, LogOptions::default()).unwrap();
    let mut bytes = Vec::new();
    log.take_batch(&mut bytes);
    let r = api.post(&bundle(&bytes, None));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let rows = history(&api, "odd");
    assert_eq!(rows[0]["nan"], "NaN");
    assert_eq!(rows[0]["inf"], "Infinity");
    assert_eq!(rows[0]["ninf"], "-Infinity");
    assert_eq!(rows[0]["nested"], json!({"a": [1, 2]}));
    assert!(
        rows[0]["text"].as_str() == Some(big.as_str()),
        "the 10 MB string changed"
    );
    let run = api.get("/api/v1/runs/odd").json();
    assert_eq!(run["summary"]["nan"], "NaN");
    assert_eq!(run["state"], "crashed");
}

#[test]
fn allow_origin_star_trailing_slash_and_bad_origins() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let origin_of = |server: &Server, origin: &str| {
        let api = Api::new(server, &key);
        let reply = reply(
            api.agent
                .get(api.url("/api/v1/whoami"))
                .header("Authorization", api.auth())
                .header("Origin", origin)
                .call(),
        );
        assert_eq!(reply.status, 200);
        reply.header("access-control-allow-origin").map(str::to_owned)
    };

    let any = Server::start_with(dir.path(), &["--allow-origin", "*"]);
    assert_eq!(origin_of(&any, "https://anywhere.example").as_deref(), Some("*"));
    drop(any);

    let slash = Server::start_with(dir.path(), &["--allow-origin", "https://dash.example/"]);
    assert_eq!(
        origin_of(&slash, "https://dash.example").as_deref(),
        Some("https://dash.example")
    );
    drop(slash);

    for bad in ["a.example", "https://a.example/path"] {
        let out = Command::new(BIN)
            .args(["serve", "--addr", "127.0.0.1:0", "--allow-origin", bad, "--data"])
            .arg(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bad}: {err}");
        assert!(err.contains(bad) && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn lowercase_bearer_and_empty_keys_query() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let r = reply(
            api.agent
                .get(api.url("/api/v1/whoami"))
                .header("Authorization", format!("{scheme} {key}"))
                .call(),
        );
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"account": "alice"})),
            "{scheme}"
        );
    }
    let basic = reply(
        api.agent
            .get(api.url("/api/v1/whoami"))
            .header("Authorization", format!("Basic {key}"))
            .call(),
    );
    assert_eq!(basic.status, 401);

    let log = sample_log("emptykeys", 3, Some(0));
    assert_eq!(api.post(&bundle(&log, None)).status, 201);
    let all = api.get("/api/v1/runs/emptykeys/history").json();
    assert_eq!(all["rows"].as_array().unwrap().len(), 3);
    for query in ["?keys=", "?keys=,", "?keys=%20"] {
        let r = api.get(&format!("/api/v1/runs/emptykeys/history{query}"));
        assert_eq!((r.status, r.json()), (200, all.clone()), "{query}");
    }
}

#[test]
fn a_database_url_for_a_new_file_is_created_and_open_errors_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/new.db");
    let url = format!("sqlite://{}", db.display());
    let out = Command::new(BIN)
        .args(["admin", "create-key", "--account", "alice", "--database", &url])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(db.is_file());

    let data = dir.path().join("blobs");
    let server = Server::start_with(&data, &["--database", &url]);
    let api = Api::new(&server, &key);
    assert_eq!(api.get("/api/v1/whoami").json(), json!({"account": "alice"}));
    drop(server);

    let mut child = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--database", &url])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("tidelog server listening on"), "{line}");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("uploads and blobs go to") && err.contains("tidelog-data"),
        "{err}"
    );

    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let bad = format!("sqlite://{}/x.db", blocker.display());
    let out = Command::new(BIN)
        .args(["admin", "create-key", "--account", "alice", "--database", &bad])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&bad), "{err}");
}

#[test]
fn history_pages_by_step_and_thins_to_samples() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let server = Server::start_with(dir.path(), &[]);
    let api = Api::new(&server, &key);
    assert_eq!(
        api.post(&bundle(&sample_log("paged", 10, Some(0)), None)).status,
        201
    );
    let steps = |query: &str| -> Vec<u64> {
        let r = api.get(&format!("/api/v1/runs/paged/history{query}"));
        assert_eq!(r.status, 200, "{query}");
        common::steps_of(&r.json())
    };
    assert_eq!(steps(""), (0..10).collect::<Vec<_>>());
    assert_eq!(steps("?min_step=2&max_step=5"), vec![2, 3, 4, 5]);
    // M4: loss falls and acc rises, so each key's extremes are its first and last rows.
    assert_eq!(steps("?samples=4"), vec![0, 9]);
    assert_eq!(steps("?min_step=5&samples=2&keys=loss"), vec![5, 9]);
    assert_eq!(steps("?samples=100"), (0..10).collect::<Vec<_>>());
    let bad = api.get("/api/v1/runs/paged/history?min_step=-1");
    assert_eq!(bad.status, 400);
    assert!(
        bad.error().contains("min_step must be a non-negative integer"),
        "{}",
        bad.error()
    );
}

#[test]
fn unfinished_uploads_expire_and_their_bytes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), "alice");
    let b = bundle(&sample_log("expiring", 50, Some(0)), None);
    let server = Server::start_with(dir.path(), &["--upload-expiry-secs", "1"]);
    let api = Api::new(&server, &key);
    let created = api.create_upload(b.bytes.len(), &b.sha256);
    assert_eq!(created.status, 201);
    let expires = created
        .header("upload-expires")
        .expect("Upload-Expires on create")
        .to_owned();
    let at = httpdate::parse_http_date(&expires).expect("an HTTP date");
    let ahead = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(ahead <= Duration::from_secs(2), "expires in {ahead:?}");
    let url = created.header("location").unwrap().to_owned();
    let half = b.bytes.len() / 2;
    let r = api.patch(&url, 0, &b.bytes[..half], None);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("upload-expires"), Some(expires.as_str()));
    let parts = format!("uploads/{}", url.rsplit('/').next().unwrap());
    assert_eq!(
        common::store::list(dir.path(), &parts).len(),
        1,
        "one part per PATCH"
    );

    // Expiry is a matter of time passing: wait out the deadline the server announced (an HTTP
    // date, whole seconds, so up to a second before the real one).
    let expired_at = at + Duration::from_millis(1100);
    if let Ok(left) = expired_at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left);
    }
    assert_eq!(api.head(&url).status, 404, "an expired upload is gone");
    assert_eq!(api.patch(&url, half, &b.bytes[half..half + 1], None).status, 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !common::store::list(dir.path(), &parts).is_empty() {
        assert!(Instant::now() < deadline, "the sweeper never removed {parts}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(run_ids(&api).is_empty());
}
