//! `init`'s rules against a home in memory that records what it was asked.

use std::collections::BTreeMap;

use super::*;
use crate::core::progress::{RunStore, SyncProgress};
use crate::core::record::FileRef;
use crate::core::restore::resume_state;
use crate::core::run_log::LogOptions;

/// A stored log, read whole: a home's store for `resume_state`.
struct Log(Vec<u8>);

impl RunStore for Log {
    type Error = String;
    async fn read_log(&self) -> Result<Vec<u8>, String> {
        Ok(self.0.clone())
    }
    async fn read_files(&self, _: &[FileRef]) -> Result<Vec<Vec<u8>>, String> {
        Ok(Vec::new())
    }
    fn is_live(&self) -> bool {
        false
    }
    async fn progress(&self) -> Result<SyncProgress, String> {
        Ok(SyncProgress::default())
    }
    async fn save_progress(&mut self, _: &SyncProgress, _: Option<u64>) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Default)]
struct Home {
    runs: BTreeMap<String, Vec<u8>>,
    asked: Vec<String>,
}

impl RunHome for Home {
    type Error = String;

    fn place(&self) -> String {
        "memory".into()
    }

    async fn find(&mut self, id: &str) -> Result<Option<Result<Resumed, ResumeError>>, String> {
        self.asked.push(format!("find {id}"));
        match self.runs.get(id) {
            Some(log) => Ok(Some(resume_state(&Log(log.clone()), None).await)),
            None => Ok(None),
        }
    }

    async fn create(&mut self, info: &RunInfo) -> Result<(), String> {
        self.asked.push(format!("create {}", info.id));
        self.runs.insert(info.id.clone(), Vec::new());
        Ok(())
    }

    async fn reopen(&mut self, info: &RunInfo, valid_len: u64, _: u64) -> Result<(), String> {
        self.asked.push(format!("reopen {} at {valid_len}", info.id));
        Ok(())
    }
}

fn new(project: &str, id: Option<&str>) -> NewRun {
    NewRun {
        project: project.into(),
        id: id.map(str::to_owned),
        name: Some("first".into()),
        created_ms: 7,
        ..NewRun::default()
    }
}

fn open_in(home: &mut Home, run: NewRun, resume: Resume) -> Result<Opened, InitError<String>> {
    pollster::block_on(open(home, run, resume, || "fresh001".to_owned()))
}

/// Why `open` refused; a test failure if it did not.
fn refusal(r: Result<Opened, InitError<String>>) -> InitError<String> {
    match r {
        Ok(o) => panic!("run {} was opened", o.info.id),
        Err(e) => e,
    }
}

/// A stored run `id` of `project` with `steps` history rows, its bytes as the home holds them.
fn stored(home: &mut Home, project: &str, id: &str, steps: u32) -> Vec<u8> {
    let mut opened = open_in(home, new(project, Some(id)), Resume::Never).unwrap();
    for i in 0..steps {
        opened
            .log
            .log(i64::from(i), [("loss", f64::from(i))], LogOptions::default())
            .unwrap();
    }
    let mut bytes = Vec::new();
    opened.log.take_batch(&mut bytes);
    home.runs.insert(id.to_owned(), bytes.clone());
    home.asked.clear();
    bytes
}

#[test]
fn bad_settings_are_refused_before_the_store_is_asked() {
    let mut home = Home::default();
    for (run, resume, why) in [
        (new(" ", None), Resume::Allow, "project is required"),
        (
            new("p", Some("no/slash")),
            Resume::Allow,
            "must be 1-64 characters",
        ),
        (new("p", None), Resume::Must, "needs the id of the run to resume"),
    ] {
        match refusal(open_in(&mut home, run, resume)) {
            InitError::Settings(m) => assert!(m.contains(why), "{m}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    assert!(home.asked.is_empty(), "{:?}", home.asked);
    assert_eq!(Resume::parse(Some("must")), Ok(Resume::Must));
    assert_eq!(Resume::parse(None), Ok(Resume::Allow));
    assert_eq!(
        Resume::parse(Some("maybe")).unwrap_err(),
        r#"resume must be "allow", "must", "never" (got "maybe")"#
    );
}

#[test]
fn a_new_run_gets_its_id_and_its_start_record() {
    let mut home = Home::default();
    let opened = open_in(&mut home, new("p", None), Resume::Allow).unwrap();
    assert_eq!(opened.info.id, "fresh001");
    assert_eq!((opened.info.project.as_str(), opened.info.created_ms), ("p", 7));
    assert!(!opened.resumed);
    assert_eq!(
        (opened.stored_records, opened.stored_bytes, opened.log.records()),
        (0, 0, 1)
    );
    assert_eq!(home.asked, ["create fresh001"], "no id: nothing to look up");
    let named = open_in(&mut home, new("p", Some("abc")), Resume::Allow).unwrap();
    assert_eq!(named.info.id, "abc");
    assert_eq!(home.asked[1..], ["find abc", "create abc"]);
}

#[test]
fn resume_rules_for_a_run_that_exists_and_one_that_does_not() {
    let mut home = Home::default();
    stored(&mut home, "p", "abc", 2);
    assert_eq!(
        refusal(open_in(&mut home, new("p", Some("abc")), Resume::Never)),
        InitError::Resume(r#"run abc already exists in memory (resume: "never")"#.into())
    );
    assert_eq!(
        refusal(open_in(&mut home, new("p", Some("zzz")), Resume::Must)),
        InitError::Resume(r#"no run zzz to resume in memory (resume: "must")"#.into())
    );
    assert_eq!(
        home.asked,
        ["find abc", "find zzz"],
        "refusals create and cut nothing"
    );
    for resume in [Resume::Allow, Resume::Must] {
        assert!(open_in(&mut home, new("p", Some("abc")), resume).unwrap().resumed);
    }
}

#[test]
fn a_resumed_run_starts_from_its_log_and_its_torn_tail_is_cut() {
    let mut home = Home::default();
    let mut bytes = stored(&mut home, "p", "abc", 3);
    let intact = bytes.len() as u64;
    bytes.extend_from_slice(&[0x40, 1, 2]);
    home.runs.insert("abc".into(), bytes);
    let mut asked = new("p", Some("abc"));
    asked.name = Some("renamed".into());
    asked.created_ms = 99;
    let opened = open_in(&mut home, asked, Resume::Must).unwrap();
    assert!(opened.resumed);
    assert_eq!(
        opened.info.name.as_deref(),
        Some("first"),
        "identity from the start record"
    );
    assert_eq!(opened.info.created_ms, 7);
    assert_eq!(opened.log.step(), 3);
    assert_eq!(
        opened.log.last_values().get("loss"),
        Some(&serde_json::json!(2.0))
    );
    assert_eq!(opened.log.batch_len(), 0, "nothing stored is written again");
    assert_eq!(
        (opened.stored_records, opened.stored_bytes),
        (opened.log.records(), intact)
    );
    assert_eq!(opened.log.records(), 5, "start, key, three rows");
    assert_eq!(
        home.asked,
        ["find abc".to_owned(), format!("reopen abc at {intact}")]
    );
}

#[test]
fn a_run_is_resumed_only_under_its_own_project() {
    let mut home = Home::default();
    stored(&mut home, "res", "abc", 1);
    assert_eq!(
        refusal(open_in(&mut home, new("other", Some("abc")), Resume::Allow)),
        InitError::Resume(
            r#"run abc belongs to project "res", not "other": resume it under its own project, or start a new id"#
                .into()
        )
    );
    assert_eq!(home.asked, ["find abc"], "nothing cut, nothing marked running");
}

#[test]
fn a_corrupt_log_is_kept_and_refused() {
    let mut home = Home::default();
    let mut bytes = stored(&mut home, "p", "abc", 20);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    home.runs.insert("abc".into(), bytes);
    match refusal(open_in(&mut home, new("p", Some("abc")), Resume::Allow)) {
        InitError::Corrupt(m) => {
            assert!(m.starts_with("corrupt: run abc, byte offset"), "{m}");
            assert!(m.contains("in memory: the log is kept as it is"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(home.asked, ["find abc"]);
}
