//! End to end: runs logged offline on disk, `tidelog sync` to a real `tidelog serve` on
//! 127.0.0.1 with real SQLite, checked through the HTTP API.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::fs;
use std::process::Command;

use common::*;
use serde_json::json;
use tidelog::core::log_index::LogIndex;
use tidelog::{LogOptions, Logged};

#[test]
fn quickstart_offline_then_sync_exactly_once() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(quickstart_exe())
        .current_dir(work.path())
        .env_remove("TIDELOG_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let root = work.path().join("tidelog");
    let latest: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("latest.spec")).unwrap()).unwrap();
    let run = only_run(work.path());
    assert_eq!(latest["dir"], run.file_name().unwrap().to_str().unwrap());
    assert_eq!(latest["state"], "finished");
    let name = run.file_name().unwrap().to_str().unwrap();
    let id = latest["id"].as_str().unwrap();
    assert!(
        name.starts_with("run-") && name.ends_with(&format!("-{id}")),
        "{name}"
    );
    assert_eq!(id.len(), 8);
    for f in [
        "run.spec",
        "records.tlog",
        "files/config.json",
        "files/metadata.json",
        "files/summary.json",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let mut entries: Vec<String> = fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["files", "records.tlog", "run.spec"],
        "a finished run's folder"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(run.join("files/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["metric"], json!(9.0));

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let first = sync(work.path(), &server.url, &key, &[], 0);
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("synced "),
        "{}",
        text(&first)
    );
    assert!(run.join(".synced").is_file());
    let spec: serde_json::Value = serde_json::from_slice(&fs::read(run.join("run.spec")).unwrap()).unwrap();
    assert_eq!(spec["sync"]["state"], "synced");
    assert_eq!(
        spec["resume"]["offset"].as_u64(),
        Some(fs::metadata(run.join("records.tlog")).unwrap().len()),
        "sync rewrote run.spec with the ended run's resume point"
    );

    let check = || {
        let runs = runs(&server.url, &key);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["id"], id);
        assert_eq!(runs[0]["project"], "quickstart");
        assert_eq!(runs[0]["state"], "finished");
        assert_eq!(runs[0]["config"]["learning_rate"], json!(0.01));
        let rows = history(&server.url, &key, id);
        assert_eq!(rows.len(), 10);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["_step"], json!(i));
            assert_eq!(row["metric"], json!(i as f64));
            assert_eq!(row["loss"], json!(10.0 - i as f64));
            assert!(row["_timestamp"].as_f64().unwrap() > 1.7e9);
        }
    };
    check();

    let again = sync(work.path(), &server.url, &key, &[], 0);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to sync"),
        "{}",
        text(&again)
    );
    fs::remove_file(run.join(".synced")).unwrap();
    let resent = sync(work.path(), &server.url, &key, &[], 0);
    assert!(
        String::from_utf8_lossy(&resent.stdout).contains("0 rows added"),
        "{}",
        text(&resent)
    );
    sync(work.path(), &server.url, &key, &["--include-synced"], 0);
    check();
}

#[test]
fn an_interrupted_upload_resumes_from_the_servers_offset() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "big")).unwrap();
    let mut blob = vec![0u8; 6 << 20];
    let mut x = 0x1234_5678_9abc_def0u64;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    run.save("checkpoint.bin", &blob).unwrap();
    for i in 0..1000 {
        run.log([("loss", 1.0 / f64::from(i + 1))]).unwrap();
    }
    let id = run.id().to_owned();
    let dir = run.finish(0).unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let cut = Proxy::start(&server.url, Some(5 << 20));
    sync(work.path(), &cut.url, &key, &[], 1);
    assert!(
        dir.join(".sync-progress").is_file(),
        "the upload in flight is remembered"
    );
    assert!(!dir.join(".synced").exists());
    assert!(
        runs(&server.url, &key).is_empty(),
        "nothing ingested from half a bundle"
    );

    server.kill();
    let server = Server::start(data.path());
    let counting = Proxy::start(&server.url, None);
    let out = sync(work.path(), &counting.url, &key, &[], 0);
    let resent = counting.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        resent < 3 << 20,
        "resumed upload sent {resent} bytes: {}",
        text(&out)
    );
    assert!(dir.join(".synced").is_file());

    let rows = history(&server.url, &key, &id);
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999]["loss"], json!(1.0 / 1000.0));
    let (status, bytes) = get_bytes(
        &server.url,
        &key,
        &format!("/api/v1/runs/{id}/files/checkpoint.bin"),
    );
    assert_eq!(status, 200);
    assert!(bytes == blob, "the checkpoint arrives byte-identical");
}

#[test]
fn clean_removes_only_finished_fully_acknowledged_runs() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let alice = server.key("alice");
    let bob = server.key("bob");

    let elsewhere = tempfile::tempdir().unwrap();
    let mut s = settings(elsewhere.path(), "p");
    s.id = Some("taken001".into());
    let r = tidelog::init(s).unwrap();
    r.log([("x", 1.0)]).unwrap();
    r.finish(0).unwrap();
    sync(elsewhere.path(), &server.url, &bob, &[], 0);

    let done = tidelog::init(settings(work.path(), "p")).unwrap();
    done.log([("x", 1.0)]).unwrap();
    let done_dir = done.finish(0).unwrap();
    let mut s = settings(work.path(), "p");
    s.id = Some("taken001".into());
    let refused = tidelog::init(s).unwrap();
    refused.log([("x", 2.0)]).unwrap();
    let refused_dir = refused.finish(0).unwrap();
    let live = tidelog::init(settings(work.path(), "p")).unwrap();
    live.log([("x", 3.0)]).unwrap();
    live.flush().unwrap();

    let out = sync(work.path(), &server.url, &alice, &["--clean"], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("left unsynced") && err.contains("taken001"),
        "{}",
        text(&out)
    );
    assert!(!done_dir.exists(), "finished and acknowledged: removed");
    assert!(refused_dir.join("records.tlog").is_file(), "403: kept");
    assert!(live.dir().join("records.tlog").is_file(), "still running: kept");
    let states: Vec<_> = runs(&server.url, &alice)
        .iter()
        .map(|r| r["state"].clone())
        .collect();
    assert!(
        states.contains(&json!("running")) && states.contains(&json!("finished")),
        "{states:?}"
    );
    let (status, _) = get(&server.url, &alice, "/api/v1/runs/taken001");
    assert_eq!(status, 403);
    assert_eq!(
        history(&server.url, &bob, "taken001").len(),
        1,
        "bob's run is untouched"
    );
    live.finish(0).unwrap();
}

#[test]
fn a_torn_tail_keeps_earlier_records_and_syncs_as_crashed() {
    let work = tempfile::tempdir().unwrap();
    let template = tidelog::init(settings(work.path(), "torn")).unwrap();
    for i in 0..10 {
        template.log([("v", f64::from(i))]).unwrap();
    }
    let template_dir = template.finish(0).unwrap();
    let log = fs::read(template_dir.join("records.tlog")).unwrap();
    let full = LogIndex::new(&log).unwrap();
    let last = full.offset(full.len() - 1);
    fs::remove_dir_all(&template_dir).unwrap();

    let mut ids = Vec::new();
    for cut in last..log.len() {
        let index = LogIndex::new(&log[..cut]).unwrap();
        assert_eq!(index.len(), full.len() - 1, "cut at {cut}");
        assert_eq!(index.valid_len(), last);
        let run = tidelog::init(settings(work.path(), "torn")).unwrap();
        for i in 0..10 {
            run.log([("v", f64::from(i))]).unwrap();
        }
        let dir = run.dir().to_path_buf();
        ids.push(run.id().to_owned());
        run.finish(0).unwrap();
        let mine = fs::read(dir.join("records.tlog")).unwrap();
        let mine_last = LogIndex::new(&mine).unwrap();
        let mine_last = mine_last.offset(mine_last.len() - 1);
        fs::write(dir.join("records.tlog"), &mine[..mine_last + (cut - last)]).unwrap();
    }
    assert!(ids.len() > 10);

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(work.path(), &server.url, &key, &["-n", "4"], 0);
    for id in &ids {
        let (status, run) = get(&server.url, &key, &format!("/api/v1/runs/{id}"));
        assert_eq!(status, 200);
        assert_eq!(run["state"], "crashed", "{id}");
        let rows = history(&server.url, &key, id);
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[9]["v"], json!(9.0));
    }
    let out = tidelog(work.path(), &["ls"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crashed"),
        "{}",
        text(&out)
    );
}

#[test]
fn credentials_missing_wrong_and_stored() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "keys")).unwrap();
    run.log([("a", 1.0)]).unwrap();
    run.finish(0).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");

    let out = tidelog(work.path(), &["sync"], &[("TIDELOG_BASE_URL", &server.url)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TIDELOG_API_KEY") && err.contains("tidelog login"),
        "{err}"
    );

    let out = sync(work.path(), &server.url, "tlk_wrong", &[], 1);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("401"),
        "{}",
        text(&out)
    );
    assert!(
        runs(&server.url, &key).is_empty(),
        "nothing stored with a wrong key"
    );

    let mut login = Command::new(BIN)
        .current_dir(work.path())
        .args(["login", "--server", &server.url])
        .env("TIDELOG_CONFIG_DIR", work.path().join(".test-config"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(login.stdin.take().unwrap(), "{key}").unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("alice"));
    let stored = work.path().join(".test-config/credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600);

    let out = tidelog(work.path(), &["sync"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(runs(&server.url, &key).len(), 1);
}

#[test]
fn odd_values_steps_and_huge_strings() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "values")).unwrap();
    run.log([("x", f64::NAN)]).unwrap();
    run.log([("x", f64::INFINITY)]).unwrap();
    run.log([("x", f64::NEG_INFINITY)]).unwrap();
    let at = |step| LogOptions {
        step: Some(step),
        commit: None,
    };
    run.log_with([("y", 1.0)], at(10)).unwrap();
    let dropped = run.log_with([("y", 2.0)], at(5)).unwrap();
    assert_eq!(dropped, Logged::DroppedStaleStep { step: 5, current: 10 });
    let big = "é".repeat(5 << 20);
    run.log([("text", big.as_str())]).unwrap();
    let too_big = "x".repeat(33 << 20);
    let err = run.log([("huge", too_big)]).unwrap_err();
    assert!(err.to_string().contains("\"huge\""), "{err}");
    let id = run.id().to_owned();
    run.finish(0).unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(work.path(), &server.url, &key, &[], 0);
    let rows = history(&server.url, &key, &id);
    let steps: Vec<_> = rows.iter().map(|r| r["_step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![0, 1, 2, 10]);
    assert_eq!(rows[0]["x"], "NaN");
    assert_eq!(rows[1]["x"], "Infinity");
    assert_eq!(rows[2]["x"], "-Infinity");
    assert_eq!(rows[3]["y"], json!(1.0), "the lower step was dropped, not merged");
    assert_eq!(rows[3]["text"].as_str().map(str::len), Some(big.len()));
    assert!(rows.iter().all(|r| r.get("huge").is_none()));
}

#[test]
fn bundle_files_upload_exactly_once_and_discovery_skips_ignored_folders() {
    let work = tempfile::tempdir().unwrap();
    let nested = work.path().join("exp1");
    let ignored = work.path().join("node_modules/pkg");
    let hidden = work.path().join(".cache");
    let mut ids = Vec::new();
    for dir in [work.path(), nested.as_path(), ignored.as_path(), hidden.as_path()] {
        fs::create_dir_all(dir).unwrap();
        let run = tidelog::init(settings(dir, "disc")).unwrap();
        run.log([("a", 1.0)]).unwrap();
        ids.push(run.id().to_owned());
        run.finish(0).unwrap();
    }
    let out = tidelog(work.path(), &["sync", "--view"], &[]);
    let view = String::from_utf8_lossy(&out.stdout);
    assert!(view.contains(&ids[0]) && view.contains(&ids[1]), "{view}");
    assert!(!view.contains(&ids[2]) && !view.contains(&ids[3]), "{view}");

    let bundles = work.path().join("out");
    let run_dir = only_run(&nested);
    let out = tidelog(
        work.path(),
        &[
            "bundle",
            run_dir.to_str().unwrap(),
            "-o",
            bundles.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let files: Vec<_> = fs::read_dir(&bundles)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let env = [
        ("TIDELOG_API_KEY", key.as_str()),
        ("TIDELOG_BASE_URL", server.url.as_str()),
    ];
    for first in [true, false] {
        let out = tidelog(work.path(), &["upload", files[0].to_str().unwrap()], &env);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("rows added"), "{}", text(&out));
        assert_eq!(!said.contains(" 0 rows added"), first, "{}", text(&out));
    }
    assert_eq!(history(&server.url, &key, &ids[1]).len(), 1);
    sync(work.path(), &server.url, &key, &[], 0);
    assert_eq!(
        history(&server.url, &key, &ids[1]).len(),
        1,
        "sync after upload adds nothing"
    );
    assert_eq!(runs(&server.url, &key).len(), 2);
}

#[test]
fn a_file_saved_again_is_uploaded_once() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let blob: Vec<u8> = (0..1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();

    let run = tidelog::init(settings(work.path(), "dedupe")).unwrap();
    run.save("first.bin", &blob).unwrap();
    run.log([("x", 1.0)]).unwrap();
    run.flush().unwrap();
    let first = sync(work.path(), &server.url, &key, &[], 0);
    run.save("again/second.bin", &blob).unwrap();
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    let second = sync(work.path(), &server.url, &key, &[], 0);

    let sent = |o: &std::process::Output| -> u64 {
        let out = String::from_utf8_lossy(&o.stdout);
        let words: Vec<&str> = out.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "bytes").expect("bytes sent");
        words[at - 1].parse().unwrap()
    };
    assert!(sent(&first) > 900_000, "{}", text(&first));
    assert!(
        sent(&second) < 100_000,
        "the second bundle leaves the blob out: {}",
        text(&second)
    );
    let (_, files) = get(&server.url, &key, &format!("/api/v1/runs/{id}/files"));
    let files = files["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["sha256"], files[1]["sha256"]);
    let (status, bytes) = get_bytes(
        &server.url,
        &key,
        &format!("/api/v1/runs/{id}/files/again/second.bin"),
    );
    assert_eq!(status, 200);
    assert!(bytes == blob);
}

#[test]
fn native_media_and_files_reach_the_server_byte_identical() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "media")).unwrap();
    let rgba: Vec<u8> = (0..16 * 8 * 4).map(|i| (i * 7 % 256) as u8).collect();
    let image = tidelog::Media::image_rgba(&rgba, 16, 8)
        .unwrap()
        .with_caption("noise");
    let png = match &image {
        tidelog::Media::Image { png, .. } => png.clone(),
        _ => unreachable!(),
    };
    let value = run.media("samples/input", image).unwrap();
    let hist = run
        .media(
            "weights",
            tidelog::Media::Histogram(tidelog::core::media::histogram(&[1.0, 2.0, 2.0], 2)),
        )
        .unwrap();
    let clip = run
        .media("clip", tidelog::Media::audio(&[0.0, 0.5, -0.5], 8000).unwrap())
        .unwrap();
    run.log([("samples/input", value), ("weights", hist), ("clip", clip)])
        .unwrap();
    run.save("ckpt/model.bin", b"\x00\x01weights").unwrap();
    let id = run.id().to_owned();
    run.finish(0).unwrap();

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(work.path(), &server.url, &key, &[], 0);
    let rows = history(&server.url, &key, &id);
    let img = &rows[0]["samples/input"];
    assert_eq!(img["_type"], "image-file");
    assert_eq!(img["caption"], "noise");
    assert_eq!(
        (img["width"].as_u64(), img["height"].as_u64()),
        (Some(16), Some(8))
    );
    assert_eq!(rows[0]["weights"]["counts"], json!([1, 2]));
    assert_eq!(rows[0]["clip"]["_type"], "audio-file");
    let path = img["path"].as_str().unwrap();
    assert_eq!(path, "media/images/samples_input_0.png");
    let (status, got) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/{path}"));
    assert_eq!(status, 200);
    assert!(got == png, "the PNG arrives byte-identical");
    let (_, ckpt) = get_bytes(
        &server.url,
        &key,
        &format!("/api/v1/runs/{id}/files/ckpt/model.bin"),
    );
    assert_eq!(ckpt, b"\x00\x01weights");
}

fn latest_dir(work: &std::path::Path) -> Option<String> {
    let bytes = fs::read(work.join("tidelog/latest.spec")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    Some(spec["dir"].as_str().unwrap().to_owned())
}

#[test]
fn clean_removes_runs_synced_earlier_and_repoints_latest() {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");

    let live = tidelog::init(settings(work.path(), "p")).unwrap();
    live.log([("x", 0.0)]).unwrap();
    let earlier = tidelog::init(settings(work.path(), "p")).unwrap();
    earlier.log([("x", 1.0)]).unwrap();
    let earlier_dir = earlier.finish(0).unwrap();
    live.flush().unwrap();
    sync(work.path(), &server.url, &key, &[], 0);

    let mut s = settings(work.path(), "p");
    s.mode = tidelog::Mode::Auto;
    s.server = Some(server.url.clone());
    s.api_key = Some(key.clone());
    let at_exit = tidelog::init(s).unwrap();
    at_exit.log([("x", 2.0)]).unwrap();
    let at_exit_dir = at_exit.finish(0).unwrap();
    assert!(at_exit_dir.join(".synced").is_file(), "synced at finish");
    assert_eq!(
        latest_dir(work.path()).as_deref(),
        at_exit_dir.file_name().and_then(|n| n.to_str())
    );

    let out = sync(work.path(), &server.url, &key, &["--clean", "--view"], 0);
    let shown = String::from_utf8_lossy(&out.stdout);
    for dir in [&earlier_dir, &at_exit_dir] {
        let name = dir.file_name().unwrap().to_string_lossy();
        assert!(
            shown
                .lines()
                .any(|l| l.contains("would delete") && l.contains(&*name)),
            "{shown}"
        );
    }
    let live_name = live.dir().file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !shown
            .lines()
            .any(|l| l.contains("would delete") && l.contains(&live_name)),
        "{shown}"
    );
    assert!(
        earlier_dir.is_dir() && at_exit_dir.is_dir(),
        "--view deletes nothing"
    );

    let out = sync(work.path(), &server.url, &key, &["--clean"], 0);
    assert!(
        !earlier_dir.exists(),
        "synced by an earlier sync: removed; {}",
        text(&out)
    );
    assert!(!at_exit_dir.exists(), "synced at exit: removed; {}", text(&out));
    assert!(live.dir().join("records.tlog").is_file(), "running: kept");
    assert_eq!(
        latest_dir(work.path()),
        Some(live_name),
        "latest.spec names the newest remaining run"
    );

    let live_dir = live.finish(0).unwrap();
    sync(work.path(), &server.url, &key, &["--clean"], 0);
    assert!(!live_dir.exists());
    assert!(
        !work.path().join("tidelog/latest.spec").exists(),
        "no run left: latest.spec removed"
    );
    assert_eq!(runs(&server.url, &key).len(), 3);
}

#[test]
fn the_tidelog_folder_itself_is_listed_bundled_and_synced() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "inside")).unwrap();
    run.log([("x", 1.0)]).unwrap();
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    let root = work.path().join("tidelog");
    let abs = root.to_string_lossy().into_owned();

    for (cwd, args) in [
        (work.path(), vec!["ls", "tidelog"]),
        (work.path(), vec!["ls", abs.as_str()]),
        (root.as_path(), vec!["ls"]),
        (root.as_path(), vec!["sync", "--view"]),
    ] {
        let out = tidelog(cwd, &args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&id),
            "{args:?}: {}",
            text(&out)
        );
    }

    let out = tidelog(work.path(), &["ls", "/nonexistent-tidelog-dir"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent-tidelog-dir"),
        "{}",
        text(&out)
    );

    let out = tidelog(work.path(), &["bundle", "tidelog", "-o", "out"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let bundles: Vec<_> = fs::read_dir(work.path().join("out")).unwrap().collect();
    assert_eq!(bundles.len(), 1, "{}", text(&out));

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    sync(&root, &server.url, &key, &[], 0);
    assert_eq!(history(&server.url, &key, &id).len(), 1);
}

#[test]
fn cli_errors_name_what_was_wrong() {
    let work = tempfile::tempdir().unwrap();
    let run = tidelog::init(settings(work.path(), "errs")).unwrap();
    run.log([("x", 1.0)]).unwrap();
    run.finish(0).unwrap();

    let out = tidelog(
        work.path(),
        &["sync", "--timeout", "2"],
        &[
            ("TIDELOG_API_KEY", "k"),
            ("TIDELOG_BASE_URL", "http://127.0.0.1:1"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("could not reach http://127.0.0.1:1: connection refused"),
        "{}",
        text(&out)
    );

    assert_refuses_schemeless_url(work.path(), &["sync"]);

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let out = sync(work.path(), &server.url, "tlk_wrong", &[], 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the API key from TIDELOG_API_KEY") && !err.contains("resumes"),
        "{}",
        text(&out)
    );

    let out = sync(
        work.path(),
        &server.url,
        &key,
        &["--view", "--project", "other", "--entity", "team"],
        0,
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("project=other (run's own: errs)") && shown.contains("entity=team"),
        "{shown}"
    );

    sync(work.path(), &server.url, &key, &[], 0);
    let out = tidelog(work.path(), &["bundle", "tidelog", "-o", "out"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to bundle"),
        "{}",
        text(&out)
    );
}
