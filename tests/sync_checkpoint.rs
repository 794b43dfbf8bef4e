//! The checkpoint of the acknowledged prefix against a real `tidelog serve`: a re-sync reads
//! only what is new, the checkpoint survives a kill between any two writes, a torn or stale
//! checkpoint is rebuilt from byte 0, and damage inside the synced prefix renumbers nothing.

#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::cell::Cell;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use common::*;
use tidelog::core::checkpoint::Checkpoint;
use tidelog::core::folder::{Dir, FolderRun};
use tidelog::core::frame::{Frames, HEADER};
use tidelog::core::layout::{SyncedMarker, RECORDS};
use tidelog::core::record::{decode, Record};
use tidelog::core::sync::{sync_run, SyncError, SyncOptions, SyncReport};
use tidelog::native::store::StdDir;
use tidelog::native::transport::HttpTransport;

/// `std::fs` that counts the bytes read from `records.tlog` and, once armed, fails every
/// write after the first `writes_left`: a process killed between two writes.
#[derive(Clone, Default)]
struct Probe {
    log_bytes_read: Rc<Cell<u64>>,
    writes_left: Rc<Cell<Option<u32>>>,
    window: Option<usize>,
}

impl Probe {
    fn write(&self) -> io::Result<()> {
        match self.writes_left.get() {
            Some(0) => Err(io::Error::other("killed")),
            Some(n) => {
                self.writes_left.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn count(&self, path: &Path, n: usize) {
        if path.file_name().is_some_and(|f| f == RECORDS) {
            self.log_bytes_read.set(self.log_bytes_read.get() + n as u64);
        }
    }
}

impl Dir for Probe {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let out = StdDir.read(path)?;
        self.count(path, out.as_ref().map_or(0, Vec::len));
        Ok(out)
    }
    fn read_at(&self, path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let out = StdDir.read_at(path, offset, max)?;
        self.count(path, out.len());
        Ok(out)
    }
    fn read_window(&self) -> usize {
        self.window.unwrap_or_else(|| StdDir.read_window())
    }
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.write()?;
        StdDir.write_atomic(path, data)
    }
    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.write()?;
        StdDir.append(path, data)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.write()?;
        StdDir.truncate(path, len)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.write()?;
        StdDir.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.write()?;
        StdDir.rename(from, to)
    }
    fn mkdirp(&self, path: &Path) -> io::Result<()> {
        StdDir.mkdirp(path)
    }
    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        StdDir.list(path)
    }
    fn size(&self, path: &Path) -> io::Result<Option<u64>> {
        StdDir.size(path)
    }
    fn is_locked(&self, run: &Path) -> bool {
        StdDir.is_locked(run)
    }
}

fn sync_with(
    dir: &Path,
    probe: &Probe,
    server: &Server,
    key: &str,
    opts: &SyncOptions,
) -> Result<SyncReport, SyncError> {
    let mut store = FolderRun::open(probe.clone(), dir);
    let mut transport = HttpTransport::new(&server.url, key, Duration::from_secs(30));
    pollster::block_on(sync_run(&mut store, &mut transport, opts, &mut |_| {}))
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(RECORDS)).unwrap().len()
}

/// The values of `v` the server holds for run `id`, in step order.
fn values(server: &Server, key: &str, id: &str) -> Vec<f64> {
    history(&server.url, key, id)
        .iter()
        .map(|r| r["v"].as_f64().expect("v"))
        .collect()
}

/// An offline run under `dir` without the system-metrics sampler, so that only what the
/// test logs grows the log.
fn quiet(dir: &Path, project: &str) -> tidelog::Run {
    let mut s = settings(dir, project);
    s.system_interval = None;
    tidelog::init(s).unwrap()
}

/// A work folder, and a real server (with its data folder) and an API key for it.
fn setup() -> (tempfile::TempDir, tempfile::TempDir, Server, String) {
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let key = server.key("alice");
    (work, data, server, key)
}

fn expected(n: u32) -> Vec<f64> {
    (0..n).map(f64::from).collect()
}

/// A re-sync after one new record reads that record's bytes and nothing before them.
#[test]
fn a_resync_after_one_record_reads_only_that_record() {
    let (work, _data, server, key) = setup();
    let run = quiet(work.path(), "cp");
    for i in 0..5000 {
        run.log([("v", f64::from(i))]).unwrap();
    }
    run.flush().unwrap();
    let dir = run.dir().to_path_buf();
    let probe = Probe::default();
    let opts = SyncOptions::default();
    sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    assert_eq!(
        probe.log_bytes_read.get(),
        log_len(&dir),
        "the first sync reads the log once"
    );

    // The open row of step 4999 is committed by the next step.
    let before = log_len(&dir);
    run.log([("v", 5000.0)]).unwrap();
    run.flush().unwrap();
    let grown = log_len(&dir) - before;
    assert!(grown > 0 && grown < 200, "one row record: {grown} bytes");
    let synced: SyncedMarker = serde_json::from_slice(&fs::read(dir.join(".synced")).unwrap()).unwrap();
    let (_, last) = synced.checkpoint.expect("a checkpoint").last_record();
    probe.log_bytes_read.set(0);
    let report = sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    assert_eq!(report.rows_added, 1);
    assert_eq!(
        probe.log_bytes_read.get(),
        last as u64 + grown,
        "reads the new record and the acknowledged one before it (to check the checkpoint)"
    );

    let id = run.id().to_owned();
    run.finish(0).unwrap();
    sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    assert_eq!(values(&server, &key, &id), expected(5001));
}

/// A frame lost to damage inside the acknowledged prefix: the records after the
/// checkpoint keep their numbers, so every new row arrives (numbering by position in the
/// intact records would shift them down and the server would drop one as a duplicate).
#[test]
fn damage_in_the_synced_prefix_loses_no_later_row() {
    let (work, _data, server, key) = setup();
    let run = quiet(work.path(), "cp");
    for i in 0..100 {
        run.log([("v", f64::from(i))]).unwrap();
    }
    run.flush().unwrap();
    let dir = run.dir().to_path_buf();
    sync(work.path(), &server.url, &key, &[], 0);

    let mut log = fs::read(dir.join(RECORDS)).unwrap();
    let row = Frames::new(&log)
        .filter(|f| matches!(decode(f.payload), Ok(Record::Row(_))))
        .nth(20)
        .expect("a row in the synced half")
        .offset;
    log[row + HEADER + 2] ^= 0x10;
    fs::write(dir.join(RECORDS), &log).unwrap();

    for i in 100..200 {
        run.log([("v", f64::from(i))]).unwrap();
    }
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    // The damaged bytes were acknowledged before the damage, and a sync reads on from its
    // checkpoint; `tidelog ls` (which reads the whole log) still reports the damage.
    sync(work.path(), &server.url, &key, &[], 0);
    let got = values(&server, &key, &id);
    assert_eq!(
        got,
        expected(200),
        "every row, the damaged one too, was acknowledged"
    );
    let ls = tidelog(work.path(), &["ls"], &[]);
    let note = format!("corrupt: run {id}, byte offset {row}");
    assert!(text(&ls).contains(&note), "{}", text(&ls));
}

/// Killed between any two writes of a sync (progress, specs, `.synced`): the next sync
/// finishes the job and the server holds every row exactly once.
#[test]
fn a_sync_killed_between_any_two_writes_resumes_from_its_checkpoint() {
    let (work, _data, server, key) = setup();
    let opts = SyncOptions {
        max_bundle_log_bytes: 2000,
        ..SyncOptions::default()
    };
    for kill_after in 0.. {
        let run = tidelog::init(settings(work.path(), "kill")).unwrap();
        for i in 0..600 {
            run.log([("v", f64::from(i))]).unwrap();
        }
        let id = run.id().to_owned();
        let dir: PathBuf = run.finish(0).unwrap();
        // Windows of two bundles: the log is read in several.
        let windowed = || Probe {
            window: Some(4000),
            ..Probe::default()
        };
        let killed = windowed();
        killed.writes_left.set(Some(kill_after));
        let first = sync_with(&dir, &killed, &server, &key, &opts);
        let windowed = windowed();
        let report = sync_with(&dir, &windowed, &server, &key, &opts).unwrap();
        assert!(
            windowed.log_bytes_read.get() <= log_len(&dir) + 1000,
            "each byte read about once: {} of {} (kill after {kill_after})",
            windowed.log_bytes_read.get(),
            log_len(&dir)
        );
        assert_eq!(
            report.acked_records, report.total_records,
            "kill after {kill_after}"
        );
        assert_eq!(
            values(&server, &key, &id),
            expected(600),
            "kill after {kill_after}"
        );
        assert!(dir.join(".synced").exists(), "kill after {kill_after}");
        if first.is_ok() {
            assert!(kill_after > 3, "several bundles, several writes each");
            break;
        }
    }
}

fn marker(dir: &Path) -> SyncedMarker {
    serde_json::from_slice(&fs::read(dir.join(".synced")).unwrap()).unwrap()
}

/// A checkpoint whose checksum fails (torn or edited), or whose offset is no record's start
/// (stale), is not used: the sync reads from byte 0, rebuilds it, and adds no row twice.
#[test]
fn a_torn_or_stale_checkpoint_is_rebuilt_from_byte_0() {
    let (work, _data, server, key) = setup();
    let run = quiet(work.path(), "torn");
    let dir = run.dir().to_path_buf();
    let probe = Probe::default();
    let opts = SyncOptions::default();
    let mut logged = 0;
    let tamperings: [fn(&Checkpoint) -> Checkpoint; 2] = [
        |cp| Checkpoint {
            offset: cp.offset - 1,
            ..cp.clone()
        },
        |cp| {
            Checkpoint::new(
                (cp.offset + 1, cp.records, cp.last),
                cp.keys.clone(),
                cp.run.clone(),
                cp.exit_code,
                cp.corrupt.clone(),
            )
        },
    ];
    for tamper in tamperings {
        for _ in 0..300 {
            run.log([("v", f64::from(logged))]).unwrap();
            logged += 1;
        }
        run.flush().unwrap();
        sync_with(&dir, &probe, &server, &key, &opts).unwrap();
        let mut m = marker(&dir);
        let cp = m.checkpoint.as_ref().expect("a checkpoint in .synced");
        assert!(cp.usable(log_len(&dir), m.acked_records));
        m.checkpoint = Some(tamper(cp));
        fs::write(dir.join(".synced"), serde_json::to_vec(&m).unwrap()).unwrap();

        run.log([("v", f64::from(logged))]).unwrap();
        logged += 1;
        run.flush().unwrap();
        probe.log_bytes_read.set(0);
        let report = sync_with(&dir, &probe, &server, &key, &opts).unwrap();
        let read = probe.log_bytes_read.get();
        let last = m.checkpoint.as_ref().unwrap().last_record().1 as u64;
        assert!(
            read == log_len(&dir) || read == log_len(&dir) + last,
            "read from byte 0: {read}"
        );
        assert_eq!(report.acked_records, report.total_records);
        assert!(marker(&dir)
            .checkpoint
            .unwrap()
            .usable(log_len(&dir), report.acked_records));
    }
    let id = run.id().to_owned();
    run.finish(0).unwrap();
    sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    assert_eq!(values(&server, &key, &id), expected(logged));
}

/// Bundles are built ahead while the one before is on the wire, except those that carry
/// saved files: a run with files here and there, in small bundles and windows, arrives whole
/// (every row once, every file's bytes, the end state on the last bundle), as it does one
/// bundle at a time.
#[test]
fn bundles_built_ahead_and_in_their_turn_carry_every_row_and_file_once() {
    let (work, _data, server, key) = setup();
    let run = quiet(work.path(), "ahead");
    let mut saved = Vec::new();
    for i in 0..600 {
        run.log([("v", f64::from(i))]).unwrap();
        if i % 150 == 75 {
            let bytes = format!("file at step {i}").repeat(50).into_bytes();
            run.save(&format!("f{i}.txt"), &bytes).unwrap();
            saved.push((format!("f{i}.txt"), bytes));
        }
    }
    let id = run.id().to_owned();
    let dir = run.finish(0).unwrap();
    let opts = SyncOptions {
        max_bundle_log_bytes: 2000,
        ..SyncOptions::default()
    };
    let probe = Probe {
        window: Some(8000),
        ..Probe::default()
    };
    let report = sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    assert!(report.bundles > 8, "many bundles: {}", report.bundles);
    assert_eq!(report.rows_added, 600);
    assert_eq!(values(&server, &key, &id), expected(600));
    for (name, bytes) in &saved {
        let (status, got) = get_bytes(&server.url, &key, &format!("/api/v1/runs/{id}/files/{name}"));
        assert_eq!((status, &got), (200, bytes), "{name}");
    }
    let (_, run) = get(&server.url, &key, &format!("/api/v1/runs/{id}"));
    assert_eq!(run["state"], "finished", "{run}");
    let again = sync_with(&dir, &Probe::default(), &server, &key, &opts).unwrap();
    assert_eq!((again.bundles, again.rows_added), (0, 0), "{again:?}");
}

#[test]
fn a_window_leaves_its_short_tail_to_the_next_one() {
    let (work, _data, server, key) = setup();
    let run = quiet(work.path(), "tails");
    for i in 0..3000 {
        run.log([("v", f64::from(i))]).unwrap();
    }
    let id = run.id().to_owned();
    let dir = run.finish(0).unwrap();
    let bundle = 2000;
    let opts = SyncOptions {
        max_bundle_log_bytes: bundle,
        ..SyncOptions::default()
    };
    // Two bundles fill a window but for a few records: a bundle of their own each would
    // make a third of all bundles.
    let probe = Probe {
        window: Some(2 * bundle + 100),
        ..Probe::default()
    };
    let report = sync_with(&dir, &probe, &server, &key, &opts).unwrap();
    let least = log_len(&dir).div_ceil(bundle as u64);
    assert!(
        report.bundles >= least && report.bundles * 10 <= least * 11 + 10,
        "{} bundles for {least} bundles' worth of log",
        report.bundles
    );
    assert_eq!(report.rows_added, 3000);
    assert_eq!(values(&server, &key, &id), expected(3000));
    let again = sync_with(&dir, &Probe::default(), &server, &key, &opts).unwrap();
    assert_eq!((again.bundles, again.rows_added), (0, 0), "{again:?}");
}
