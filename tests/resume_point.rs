//! A native writer killed (SIGKILL) at random points while logging, then resumed: the state
//! rebuilt from its resume point (`.resume`) is the state a replay from byte 0 rebuilds.

#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidelog::core::restore::{resume_state, Resumed};
use tidelog::native::layout::{find_run, ROOT};
use tidelog::native::run::Mode;
use tidelog::native::store::RunDir;
use tidelog::{init, Resume, Settings};

const CHILD: &str = "TIDELOG_RESUME_POINT_CHILD";

fn settings(dir: &Path) -> Settings {
    Settings {
        id: Some("killed01".into()),
        dir: Some(dir.to_path_buf()),
        mode: Mode::Offline,
        resume: Resume::Allow,
        system_interval: None,
        ..Settings::new("kill")
    }
}

/// The writer the parent kills: finishes and resumes its run over and over (each finish
/// writes a resume point), saying when its first round has finished.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return;
    };
    for round in 0u64.. {
        let mut run = init(settings(Path::new(&dir))).unwrap();
        run.summary_set("round", round as f64);
        for i in 0..500u64 {
            run.log([("loss", (round * 500 + i) as f64), ("acc", 1.0 / (1 + i) as f64)])
                .unwrap();
        }
        run.finish(0).unwrap();
        if round == 0 {
            println!("started");
        }
    }
}

fn state(r: &Resumed) -> (u64, u64, u64, serde_json::Map<String, serde_json::Value>) {
    (r.valid_len, r.log.records(), r.log.step(), r.log.summary())
}

#[test]
fn a_writer_killed_anywhere_resumes_as_a_full_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut from_point = 0;
    for round in 0..12u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD, tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        while !line.contains("started") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
        }
        // A kill point somewhere in the next rounds of finish and resume.
        std::thread::sleep(Duration::from_millis(20 + round * 37 % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        let dir = find_run(&tmp.path().join(ROOT), "killed01").unwrap().unwrap();
        let resumed = pollster::block_on(resume_state(&RunDir::new(&dir), None)).unwrap();
        let point = dir.join(".resume");
        if point.exists() {
            from_point += 1;
            let kept = fs::read(&point).unwrap();
            fs::remove_file(&point).unwrap();
            let replayed = pollster::block_on(resume_state(&RunDir::new(&dir), None)).unwrap();
            assert_eq!(state(&resumed), state(&replayed), "kill {round}");
            fs::write(&point, kept).unwrap();
        }
    }
    assert!(from_point > 0, "no kill left a resume point");
    let run = init(settings(tmp.path())).unwrap();
    run.log([("loss", -1.0)]).unwrap();
    run.finish(0).unwrap();
}
