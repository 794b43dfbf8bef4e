//! `tidelog import` against runs written by the real writers: W&B offline runs by the
//! `wandb` package and event files by `tensorboardX` (a venv that scripts/setup installs,
//! `TIDELOG_PYTHON` or `target/pyenv/bin/python`), imported with the CLI, synced to a real
//! `tidelog serve`, and checked value by value through the HTTP API.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{get, get_bytes, history, runs, sync, text, tidelog, Server};
use serde_json::{json, Value};
use tidelog::import::leveldb::LogReader;

/// The Python with `wandb` and `tensorboardX`.
fn python() -> PathBuf {
    let p = std::env::var_os("TIDELOG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup (it installs wandb and tensorboardX into target/pyenv) or set TIDELOG_PYTHON",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name)
}

/// Runs a writer script; its last stdout line as JSON (or null).
fn write_with(name: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(script(name))
        .args(args)
        .env("WANDB_MODE", "offline")
        .output()
        .expect("run python");
    assert!(out.status.success(), "{name}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null)
}

fn import(cwd: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    tidelog(cwd, &all, &[])
}

/// A W&B offline run of the seed's loop plus an image and system metrics.
fn wandb_run(dir: &Path, steps: usize) -> Value {
    let steps = steps.to_string();
    write_with(
        "write_wandb.py",
        &[dir.to_str().unwrap(), &steps, "--media", "--stats"],
    )
}

#[test]
fn wandb_offline_run_imports_and_syncs_every_value_once() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let written = wandb_run(&work, 10);
    let id = written["id"].as_str().unwrap().to_owned();

    let out = import(&work, &["wandb", "wandb"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("imported") && said.contains(&id), "{said}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        text(&out)
    );

    let server = Server::start(&tmp.path().join("server"));
    let key = server.key("alice");
    sync(&work, &server.url, &key, &[], 0);

    let all = runs(&server.url, &key);
    assert_eq!(all.len(), 1, "{all:?}");
    let run = &all[0];
    assert_eq!(run["id"], json!(id));
    assert_eq!(run["project"], json!("seed"));
    assert_eq!(run["name"], json!("seed-run"));
    assert_eq!(run["state"], json!("finished"));
    assert_eq!(
        run["config"],
        json!({"lr": 0.01, "layers": [1, 2], "opt": {"name": "adam"}})
    );
    assert_eq!(run["summary"]["best"], json!(3.0));
    assert_eq!(run["summary"]["metric"], json!(9.0));
    assert_eq!(run["summary"]["loss"], json!(1.0));

    let rows = history(&server.url, &key, &id);
    assert_eq!(rows.len(), 11, "{rows:?}");
    let (started, ended) = (
        written["started"].as_f64().unwrap(),
        written["ended"].as_f64().unwrap(),
    );
    let mut last_ts = 0.0;
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["_step"], json!(i), "{row}");
        let ts = row["_timestamp"].as_f64().expect("a timestamp");
        assert!(ts >= started - 1.0 && ts <= ended + 1.0 && ts >= last_ts, "{row}");
        last_ts = ts;
        if i < 10 {
            assert_eq!(row["metric"], json!(i as f64), "{row}");
            assert_eq!(row["loss"], json!(10.0 - i as f64), "{row}");
        }
    }
    let sample = &rows[10]["sample"];
    assert_eq!(sample["_type"], json!("image-file"), "{sample}");
    assert_eq!(
        (sample["width"].clone(), sample["height"].clone()),
        (json!(4), json!(4))
    );
    let path = sample["path"].as_str().expect("a media path");
    let on_disk = fs::read(Path::new(written["files"].as_str().unwrap()).join(path)).unwrap();
    let (status, served) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/{path}"));
    assert_eq!(status, 200);
    assert_eq!(served, on_disk);
    assert_eq!(
        sample["sha256"],
        json!(tidelog::core::bundle::sha256_hex(&on_disk))
    );

    let (status, system) = get(&server.url, &key, &format!("/api/v1/runs/{id}/system"));
    assert_eq!(status, 200, "{system}");
    let system = system["rows"].as_array().expect("system rows");
    assert!(!system.is_empty());
    for row in system {
        assert!(
            row["proc.memory.rssMB"].as_f64().is_some_and(|mb| mb > 0.0),
            "{row}"
        );
    }

    // A second import makes no second run; a second sync adds no row.
    let again = import(&work, &["wandb", "wandb"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("skipped"),
        "{}",
        text(&again)
    );
    assert_eq!(tidelog::native::layout::discover(&work).unwrap().len(), 1);
    sync(&work, &server.url, &key, &[], 0);
    assert_eq!(runs(&server.url, &key).len(), 1);
    assert_eq!(history(&server.url, &key, &id).len(), 11);
}

/// The records of a `.wandb` file with their end offsets.
fn records(bytes: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut r = LogReader::new(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let rec = rec.to_vec();
        out.push((rec, r.end_of_good()));
    }
    assert!(r.damage().is_empty());
    out
}

/// Imports the damaged W&B run under `tmp/work` (the warning naming every part of `says`),
/// syncs it to a fresh server and returns the server, a key and run `id`'s history rows.
fn import_damaged(tmp: &Path, id: &str, says: &[&str]) -> (Server, String, Vec<Value>) {
    let work = tmp.join("work");
    let out = import(&work, &["wandb", "wandb"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(says.iter().all(|s| err.contains(s)), "{}", text(&out));
    let server = Server::start(&tmp.join("server"));
    let key = server.key("alice");
    sync(&work, &server.url, &key, &[], 0);
    let rows = history(&server.url, &key, id);
    (server, key, rows)
}

#[test]
fn a_torn_wandb_file_imports_every_complete_record() {
    let tmp = tempfile::tempdir().unwrap();
    let written = wandb_run(&tmp.path().join("src"), 10);
    let file = PathBuf::from(written["file"].as_str().unwrap());
    let bytes = fs::read(&file).unwrap();
    let whole = records(&bytes);
    let last_block = (bytes.len() - 1) / tidelog::import::leveldb::BLOCK * tidelog::import::leveldb::BLOCK;

    // Every cut in the last block: exactly the records that end before it, and damage
    // reported unless the cut falls between records.
    for cut in last_block.max(7)..bytes.len() {
        let mut r = LogReader::new(&bytes[..cut]).unwrap();
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec, whole[n].0, "cut {cut}");
            n += 1;
        }
        let expect = whole.iter().filter(|(_, end)| *end <= cut as u64).count();
        assert_eq!(n, expect, "cut {cut}");
        // Clean: the cut falls right after a record, or after one and the zero padding a
        // writer leaves where fewer than a chunk header's 7 bytes remain of a block.
        let last_end = whole
            .iter()
            .map(|(_, end)| *end as usize)
            .filter(|&end| end <= cut)
            .max()
            .unwrap_or(0);
        let padded = cut % tidelog::import::leveldb::BLOCK == 0
            && cut - last_end < 7
            && bytes[last_end..cut].iter().all(|&b| b == 0);
        let at_boundary = last_end == cut || padded;
        assert_eq!(r.damage().is_empty(), at_boundary, "cut {cut}: {:?}", r.damage());
    }

    // Through the CLI and the server: a file cut in the middle of its history imports the
    // steps before the cut, says it was torn, and stays crashed (its exit was never written).
    let cut_in = whole
        .iter()
        .filter(|(rec, _)| {
            tidelog::import::wandb::decode(rec)
                .is_ok_and(|i| matches!(i, Some(tidelog::import::Item::History { step: 6, .. })))
        })
        .map(|(_, end)| *end as usize)
        .next()
        .expect("the record of step 6");
    let run_dir = tmp.path().join("work/wandb/offline-run-torn");
    fs::create_dir_all(&run_dir).unwrap();
    fs::write(run_dir.join(file.file_name().unwrap()), &bytes[..cut_in - 3]).unwrap();
    let id = written["id"].as_str().unwrap();
    let (server, key, rows) = import_damaged(tmp.path(), id, &["is torn", "unreadable"]);
    let steps: Vec<Value> = rows.iter().map(|r| r["_step"].clone()).collect();
    assert_eq!(steps, (0..6).map(|s| json!(s)).collect::<Vec<_>>());
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["loss"], json!(10.0 - i as f64));
    }
    assert_eq!(runs(&server.url, &key)[0]["state"], json!("crashed"));
}

#[test]
fn tensorboard_event_files_import_as_one_run_per_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let logdir = work.join("logs");
    write_with(
        "write_tensorboard.py",
        &[logdir.to_str().unwrap(), "5", "--extras", "a", "b"],
    );
    let out = import(&work, &["tensorboard", "logs", "--project", "tb"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10 summary values that are not scalars"),
        "{}",
        text(&out)
    );

    let server = Server::start(&tmp.path().join("server"));
    let key = server.key("alice");
    sync(&work, &server.url, &key, &[], 0);
    let mut all = runs(&server.url, &key);
    all.sort_by_key(|r| r["name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(all.len(), 2, "{all:?}");
    for (n, run) in all.iter().enumerate() {
        assert_eq!(run["name"], json!(["a", "b"][n]));
        assert_eq!(run["project"], json!("tb"));
        assert_eq!(run["state"], json!("finished"));
        let rows = history(&server.url, &key, run["id"].as_str().unwrap());
        assert_eq!(rows.len(), 5, "{rows:?}");
        for (step, row) in rows.iter().enumerate() {
            let (s, n) = (step as f64, n as f64);
            assert_eq!(row["_step"], json!(step));
            assert_eq!(row["loss"], json!(10.0 - s * 0.5 + n), "{row}");
            assert_eq!(row["acc"], json!(s * 0.25 + n), "{row}");
            assert_eq!(row["_timestamp"], json!(1.7e9 + s), "{row}");
        }
    }

    let again = import(&work, &["tensorboard", "logs", "--project", "tb"]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).matches("skipped").count(),
        2,
        "{}",
        text(&again)
    );
    sync(&work, &server.url, &key, &[], 0);
    assert_eq!(runs(&server.url, &key).len(), 2);
}

#[test]
fn csv_rows_import_with_steps_numbers_and_strings() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(
        work.join("log.csv"),
        "step,loss,phase\n0,1.5,warmup\n2,0.75,train\n5,,eval\n",
    )
    .unwrap();
    fs::write(work.join("plain.csv"), "x\n3\n4\n").unwrap();
    let out = import(
        &work,
        &["csv", "log.csv", "--project", "hand", "--name", "rolled"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = import(&work, &["csv", "plain.csv", "--project", "hand"]);
    assert!(out.status.success(), "{}", text(&out));

    let server = Server::start(&tmp.path().join("server"));
    let key = server.key("alice");
    sync(&work, &server.url, &key, &[], 0);
    let all = runs(&server.url, &key);
    assert_eq!(all.len(), 2);
    let by_name = |n: &str| all.iter().find(|r| r["name"] == json!(n)).cloned().expect(n);
    let rolled = by_name("rolled");
    assert_eq!(rolled["project"], json!("hand"));
    let rows = history(&server.url, &key, rolled["id"].as_str().unwrap());
    let got: Vec<Value> = rows
        .iter()
        .map(|r| json!([r["_step"], r["loss"], r["phase"]]))
        .collect();
    assert_eq!(
        got,
        vec![
            json!([0, 1.5, "warmup"]),
            json!([2, 0.75, "train"]),
            json!([5, null, "eval"])
        ]
    );
    let plain = history(&server.url, &key, by_name("plain")["id"].as_str().unwrap());
    let got: Vec<Value> = plain.iter().map(|r| json!([r["_step"], r["x"]])).collect();
    assert_eq!(got, vec![json!([0, 3.0]), json!([1, 4.0])]);

    let again = import(
        &work,
        &["csv", "log.csv", "--project", "hand", "--name", "rolled"],
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("skipped"),
        "{}",
        text(&again)
    );
    sync(&work, &server.url, &key, &[], 0);
    assert_eq!(runs(&server.url, &key).len(), 2);
}

#[test]
#[cfg(unix)]
fn files_reached_through_a_link_out_of_the_run_folder_are_not_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let written = wandb_run(&work, 2);
    // Move the media folder out of the run and link it back: the records still name
    // media/images/..., now reached through a link to a folder elsewhere.
    let files = PathBuf::from(written["files"].as_str().unwrap());
    let outside = tmp.path().join("outside");
    fs::rename(files.join("media"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, files.join("media")).unwrap();
    let out = import(&work, &["wandb", "wandb"]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a regular file inside"), "{}", text(&out));
    let run = tidelog::native::layout::discover(&work).unwrap().remove(0);
    assert!(!run.join("files/media").exists());
    assert!(run.join("files/requirements.txt").is_file());
}

#[test]
fn a_damaged_block_is_skipped_and_the_records_after_it_imported() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let written = write_with("write_wandb.py", &[work.to_str().unwrap(), "400"]);
    let file = PathBuf::from(written["file"].as_str().unwrap());
    let mut bytes = fs::read(&file).unwrap();
    let block = tidelog::import::leveldb::BLOCK;
    assert!(bytes.len() > 3 * block, "{} bytes", bytes.len());
    bytes[block + 100] ^= 0x55;
    fs::write(&file, &bytes).unwrap();

    let id = written["id"].as_str().unwrap();
    let (server, key, rows) = import_damaged(tmp.path(), id, &["is damaged", "around it"]);
    let steps: Vec<u64> = rows.iter().map(|r| r["_step"].as_u64().unwrap()).collect();
    // The steps of the spoiled block are gone; those before and after it are all there.
    let gap: Vec<u64> = (0..400).filter(|s| !steps.contains(s)).collect();
    assert!(!gap.is_empty() && gap.len() < 150, "{gap:?}");
    assert_eq!(
        gap.last().unwrap() - gap[0] + 1,
        gap.len() as u64,
        "one gap: {gap:?}"
    );
    assert_eq!(steps.last(), Some(&399));
    for row in &rows {
        let s = row["_step"].as_f64().unwrap();
        assert_eq!(row["loss"], json!(10.0 - s), "{row}");
    }
    assert_eq!(runs(&server.url, &key)[0]["state"], json!("finished"));
}
