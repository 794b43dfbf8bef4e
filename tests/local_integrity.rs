//! What a damaged disk or a careless user can do to local runs (CONTRACT §3): a flipped bit
//! in the middle of `records.tlog`, a second writer of a run, run ids that end alike. Real
//! files, the real CLI, a real `tidelog serve` on 127.0.0.1.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::fs;

use common::*;
use tidelog::core::frame::HEADER;
use tidelog::core::log_index::LogIndex;
use tidelog::core::record::{decode, Record};
use tidelog::{Resume, RunError};

/// A finished run of 100 rows `v = 0..100` whose record for one row has a bit flipped:
/// returns the run folder, the lost row's `v`, and the damaged byte range.
fn corrupt_run(work: &std::path::Path, id: &str) -> (std::path::PathBuf, f64, usize, usize) {
    let mut s = settings(work, "damaged");
    s.id = Some(id.into());
    let run = tidelog::init(s).unwrap();
    for i in 0..100 {
        run.log([("v", f64::from(i))]).unwrap();
    }
    let dir = run.finish(0).unwrap();
    let path = dir.join("records.tlog");
    let mut log = fs::read(&path).unwrap();
    let index = LogIndex::new(&log).unwrap();
    let seq = index.len() / 2;
    let (at, end) = (index.offset(seq), index.offset(seq + 1));
    let step = match decode(index.payloads(seq..seq + 1).next().unwrap().1).unwrap() {
        Record::Row(row) => row.step,
        other => panic!("record {seq} is not a row: {other:?}"),
    };
    log[at + HEADER + 2] ^= 0x20;
    fs::write(&path, &log).unwrap();
    (dir, step as f64, at, end - at)
}

#[test]
fn a_flipped_bit_mid_log_is_reported_uploaded_around_and_never_marked_synced() {
    let work = tempfile::tempdir().unwrap();
    let (dir, lost, at, len) = corrupt_run(work.path(), "mid");
    let before = fs::read(dir.join("records.tlog")).unwrap();
    let note = format!("corrupt: run mid, byte offset {at}, {len} bytes unreadable");

    let ls = tidelog(work.path(), &["ls"], &[]);
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert!(listed.contains(&note), "{}", text(&ls));
    assert!(
        listed.contains("finished"),
        "the finish record after the damage is read: {listed}"
    );

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    let out = sync(work.path(), &server.url, &key, &[], 1);
    assert!(text(&out).contains(&note), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 run(s) have unreadable bytes"),
        "{}",
        text(&out)
    );
    let values: Vec<f64> = history(&server.url, &key, "mid")
        .iter()
        .map(|r| r["v"].as_f64().expect("v"))
        .collect();
    let expected: Vec<f64> = (0..100).map(f64::from).filter(|v| *v != lost).collect();
    assert_eq!(
        values, expected,
        "every readable row, before and after the damage"
    );
    let (_, run) = get(&server.url, &key, "/api/v1/runs/mid");
    assert_eq!(run["state"], "finished");
    assert!(
        !dir.join(".synced").exists(),
        "a corrupt run is never marked synced"
    );

    let again = sync(work.path(), &server.url, &key, &["--clean"], 1);
    assert!(text(&again).contains(&note), "{}", text(&again));
    assert!(dir.join("records.tlog").is_file(), "--clean keeps a corrupt run");
    assert!(!dir.join(".synced").exists());

    let mut s = settings(work.path(), "damaged");
    s.id = Some("mid".into());
    s.resume = Resume::Must;
    match tidelog::init(s) {
        Err(RunError::Corrupt(why)) => assert!(why.contains(&note), "{why}"),
        Err(e) => panic!("resume refused for the wrong reason: {e}"),
        Ok(_) => panic!("a corrupt run was resumed"),
    }
    assert_eq!(
        fs::read(dir.join("records.tlog")).unwrap(),
        before,
        "the file is kept as it is"
    );
}

#[test]
fn a_second_writer_of_a_run_is_refused_naming_the_first() {
    let work = tempfile::tempdir().unwrap();
    let mut s = settings(work.path(), "p");
    s.id = Some("held".into());
    let first = tidelog::init(s.clone()).unwrap();
    first.log([("x", 1.0)]).unwrap();
    first.flush().unwrap();
    let before = fs::read(first.dir().join("records.tlog")).unwrap();
    match tidelog::init(s.clone()) {
        Err(RunError::Resume(why)) => assert!(
            why.contains(&format!("process {} on host ", std::process::id())),
            "{why}"
        ),
        Err(e) => panic!("refused for the wrong reason: {e}"),
        Ok(_) => panic!("two writers of run held"),
    }
    assert_eq!(fs::read(first.dir().join("records.tlog")).unwrap(), before);
    first.finish(0).unwrap();
    let again = tidelog::init(s).expect("a finished run can be resumed");
    again.log([("x", 2.0)]).unwrap();
    again.finish(0).unwrap();
}

#[test]
fn runs_are_found_by_their_exact_id() {
    let work = tempfile::tempdir().unwrap();
    let start = |id: &str, resume| {
        let mut s = settings(work.path(), "p");
        s.id = Some(id.into());
        s.resume = resume;
        tidelog::init(s)
    };
    for id in ["exp-1", "a-x", "b-x"] {
        let r = start(id, Resume::Never).unwrap();
        r.log([("x", 1.0)]).unwrap();
        r.finish(0).unwrap();
    }
    assert!(
        matches!(start("1", Resume::Must), Err(RunError::Resume(_))),
        "run 1 does not exist, exp-1 is another run"
    );
    let one = start("1", Resume::Allow).unwrap();
    assert!(one.dir().to_string_lossy().ends_with("-1"));
    assert!(
        !one.dir().to_string_lossy().ends_with("exp-1"),
        "{}",
        one.dir().display()
    );
    one.finish(0).unwrap();
    let x = start("x", Resume::Allow).unwrap();
    let x_dir = x.dir().to_path_buf();
    x.finish(0).unwrap();
    let ids: Vec<String> = tidelog::native::layout::runs_in(&work.path().join("tidelog"))
        .unwrap()
        .iter()
        .map(|p| {
            LogIndex::new(&fs::read(p.join("records.tlog")).unwrap())
                .unwrap()
                .run()
                .unwrap()
                .id
                .clone()
        })
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ["1", "a-x", "b-x", "exp-1", "x"], "{x_dir:?}");
}
