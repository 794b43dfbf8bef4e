//! A native writer killed (SIGKILL) while logging, then resumed: the resume replays only the
//! log after the live resume point (`.resume`) and rebuilds what a replay from byte 0 rebuilds;
//! a torn, edited or oversized point is refused (byte 0, the same state); once the run has
//! ended its point lives in `run.spec` and the folder keeps only CONTRACT §3's entries.

#![cfg(unix)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use tidelog::core::restore::{resume_state, Resumed};
use tidelog::core::resume_point::ResumePoint;
use tidelog::native::layout::{find_run, ROOT};
use tidelog::native::run::Mode;
use tidelog::native::store::RunDir;
use tidelog::{init, Resume, Settings};

const CHILD: &str = "TIDELOG_RESUME_POINT_CHILD";
/// Log bytes between points: a few hundred rows, so a short run keeps many.
const EVERY: u64 = 4096;

fn settings(dir: &Path) -> Settings {
    Settings {
        id: Some("killed01".into()),
        dir: Some(dir.to_path_buf()),
        mode: Mode::Offline,
        resume: Resume::Allow,
        system_interval: None,
        resume_point_bytes: EVERY,
        ..Settings::new("kill")
    }
}

/// The writer the parent kills: resumes the run and logs for ever, saying so every 250 rows.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return;
    };
    let mut run = init(settings(Path::new(&dir))).unwrap();
    let first = run.step();
    for i in 0u64.. {
        run.log([("loss", (first + i) as f64), ("acc", 1.0 / (1 + i) as f64)])
            .unwrap();
        if i % 1000 == 0 {
            run.summary_set("round", (first + i) as f64);
        }
        if i % 250 == 0 {
            println!("at {i}");
        }
    }
}

type State = (
    u64,
    u64,
    u64,
    serde_json::Map<String, Value>,
    serde_json::Map<String, Value>,
);

fn state(r: &Resumed) -> State {
    (
        r.valid_len,
        r.log.records(),
        r.log.step(),
        r.log.summary(),
        r.log.config().clone(),
    )
}

fn resume(dir: &Path) -> Resumed {
    pollster::block_on(resume_state(&RunDir::new(dir), None)).unwrap()
}

/// The offset of the run's live point, if it has one that reads.
fn live_point(tmp: &Path) -> Option<u64> {
    let dir = find_run(&tmp.join(ROOT), "killed01").ok()??;
    let p: ResumePoint = serde_json::from_slice(&fs::read(dir.join(".resume")).ok()?).ok()?;
    Some(p.offset)
}

/// Starts the child on `tmp` and kills it `lines` progress lines after it kept a point past
/// byte `past` (the log as the previous child left it).
fn kill_child(tmp: &Path, past: u64, lines: u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD, tmp)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut seen = None;
    while seen.is_none_or(|n| n < lines) {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended");
        if seen.is_none() && live_point(tmp).is_some_and(|at| at > past) {
            seen = Some(0);
        } else if line.starts_with("at ") {
            seen = seen.map(|n| n + 1);
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The point edited in ways a resume must notice: torn, a field changed under its checksum,
/// and a 10 GiB file that must be refused unread.
fn refused_variants(point: &Path, kept: &[u8]) -> Vec<Box<dyn Fn()>> {
    let torn = kept[..kept.len() / 2].to_vec();
    let mut edited: Value = serde_json::from_slice(kept).unwrap();
    edited["step"] = (edited["step"].as_u64().unwrap() + 1).into();
    let edited = serde_json::to_vec(&edited).unwrap();
    let (a, b, c) = (point.to_path_buf(), point.to_path_buf(), point.to_path_buf());
    vec![
        Box::new(move || fs::write(&a, &torn).unwrap()),
        Box::new(move || fs::write(&b, &edited).unwrap()),
        Box::new(move || File::create(&c).unwrap().set_len(10 << 30).unwrap()),
    ]
}

/// Bytes this process has read through read(2) so far (Linux's `/proc/self/io`).
fn bytes_read() -> Option<u64> {
    let io = fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: ")?.trim().parse().ok())
}

#[test]
fn a_killed_writer_resumes_from_its_point_and_an_ended_run_keeps_it_in_run_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut last: Option<State> = None;
    for round in 0..5u64 {
        kill_child(tmp.path(), last.as_ref().map_or(0, |s| s.0), round * 3);
        let dir = find_run(&tmp.path().join(ROOT), "killed01").unwrap().unwrap();
        let path = dir.join(".resume");
        let kept = fs::read(&path).unwrap();
        let point: ResumePoint = serde_json::from_slice(&kept).unwrap();
        let resumed = resume(&dir);
        assert!(point.offset > 0, "kill {round}");
        assert_eq!(
            resumed.from, point.offset,
            "kill {round}: the replay starts at the point"
        );
        fs::remove_file(&path).unwrap();
        let replayed = resume(&dir);
        assert_eq!(replayed.from, 0);
        assert_eq!(state(&resumed), state(&replayed), "kill {round}");
        if let Some(before) = &last {
            assert!(resumed.from > before.0, "kill {round}: a point of this child");
            assert!(
                state(&replayed).2 > before.2,
                "kill {round}: the child continued the steps"
            );
        }
        for spoil in refused_variants(&path, &kept) {
            spoil();
            let before = bytes_read();
            let r = resume(&dir);
            assert_eq!(r.from, 0, "kill {round}: a spoiled point is refused");
            assert_eq!(state(&r), state(&replayed), "kill {round}");
            // The log once, and the small files: never the 10 GiB point, nor 8 MiB of it.
            let read = bytes_read().zip(before).map(|(after, before)| after - before);
            assert!(
                read.is_none_or(|n| n < r.log_len + (1 << 20)),
                "kill {round}: {read:?} bytes read for a {}-byte log",
                r.log_len
            );
        }
        fs::write(&path, &kept).unwrap();
        last = Some(state(&resumed));
    }
    let before = last.unwrap();

    let run = init(settings(tmp.path())).unwrap();
    assert_eq!(run.step(), before.2, "the resume continues the step");
    run.log([("loss", -1.0)]).unwrap();
    let dir = run.finish(0).unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["files", "records.tlog", "run.spec"]);

    let spec_path = dir.join("run.spec");
    let mut spec: Value = serde_json::from_slice(&fs::read(&spec_path).unwrap()).unwrap();
    let point: ResumePoint = serde_json::from_value(spec["resume"].clone()).unwrap();
    let ended = resume(&dir);
    assert_eq!(
        (ended.from, ended.valid_len),
        (point.offset, point.offset),
        "nothing replayed"
    );
    assert_eq!(ended.log.step(), before.2 + 1);
    assert_eq!(ended.log.summary()["loss"], -1.0);
    assert_eq!(ended.log.summary()["round"], before.3["round"]);
    spec.as_object_mut().unwrap().remove("resume");
    fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let replayed = resume(&dir);
    assert_eq!(replayed.from, 0);
    assert_eq!(state(&ended), state(&replayed));
}
