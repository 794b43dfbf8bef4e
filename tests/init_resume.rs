//! `init`'s resume rules are the core's in every home: natively, a run continued under another
//! project is refused with the same words as in Node (`tests/node/init_resume.test.mjs`), and
//! nothing in its folder changes.

#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::Path;

use tidelog::native::run::Mode;
use tidelog::{init, Resume, RunError, Settings};

/// The refusal every home gives (the JS one adds its `tidelog.init: ` prefix).
const REFUSED: &str = "run resume01 belongs to project \"res\", not \"other\": resume it under its own project, or start a new id";

/// Every file under `dir` with its bytes, in path order.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_run_is_never_resumed_under_another_project() {
    let work = tempfile::tempdir().unwrap();
    let mut s = Settings::new("res");
    s.dir = Some(work.path().to_path_buf());
    s.id = Some("resume01".into());
    s.mode = Mode::Offline;
    s.system_interval = None;
    let run = init(s.clone()).unwrap();
    run.log([("a", 1.0)]).unwrap();
    run.finish(0).unwrap();
    let before = snapshot(work.path());
    for resume in [Resume::Allow, Resume::Must] {
        let mut other = s.clone();
        other.project = "other".into();
        other.resume = resume;
        match init(other) {
            Err(RunError::Resume(why)) => assert_eq!(why, REFUSED, "{resume:?}"),
            Err(e) => panic!("refused for the wrong reason: {e}"),
            Ok(r) => panic!("run {} was resumed under another project", r.id()),
        }
    }
    assert_eq!(snapshot(work.path()), before, "nothing written, cut or locked");
    let again = init(s).expect("under its own project it resumes");
    assert_eq!(again.step(), 1);
    again.finish(0).unwrap();
}
