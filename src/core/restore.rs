//! A resume's view of an existing run: its log replayed into a [`RunLog`] in bounded windows
//! through the [`RunStore`] seam, so resuming a run of any length needs the memory of one
//! window (plus one entry per key), never the whole log.

use super::checkpoint::Checkpoint;
use super::folder::corruption_note;
use super::frame::is_one_frame;
use super::progress::RunStore;
use super::record::{DecodeError, RunInfo};
use super::resume_point::ResumePoint;
use super::run_log::RunLog;

/// The state a resumed run continues from.
pub struct Resumed {
    /// Keys, step, last values and digest of every intact record.
    pub log: RunLog,
    /// The run's start record.
    pub info: RunInfo,
    /// End of the last intact record: a torn tail after it is cut before appending.
    pub valid_len: u64,
    /// The log's length as read (more than `valid_len` when its tail is torn).
    pub log_len: u64,
    /// Where the replay began: a resume point's (or seed's) offset, 0 when it read the whole log.
    pub from: u64,
}

/// Where a resume starts when the log before a checkpoint is no longer stored: the
/// checkpoint (keys, identity, record count) and the step the run had reached.
#[derive(Clone, Debug, PartialEq)]
pub struct Seed {
    /// The acknowledged prefix the store dropped.
    pub checkpoint: Checkpoint,
    /// The step the next committed row gets.
    pub step: u64,
}

/// Why an existing run cannot be continued.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The store could not be read.
    #[error("{0}")]
    Store(String),
    /// A record does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The log has no start record, so the run cannot be identified.
    #[error("the log has no start record")]
    NoStart,
    /// The log is damaged before its end: appending would give new keys ids that rows in the
    /// damaged stretch may have used, so the file is kept as it is.
    #[error(
        "{0}: the file is kept as it is; `tidelog sync` uploads what is readable, continue under a new id"
    )]
    Corrupt(String),
}

/// Replays the log of `store` window by window for a resume, from byte 0 or after `seed`; a
/// torn tail is left for the caller to cut, damage before the end refuses the resume.
pub async fn resume_state<S: RunStore>(store: &S, seed: Option<Seed>) -> Result<Resumed, ResumeError> {
    let store_err = |e: S::Error| ResumeError::Store(e.to_string());
    let log_len = store.log_len().await.map_err(store_err)?;
    // A store that cannot read at an offset cheaply hands the whole log back in one window.
    let base = store.read_window();
    let mut window = base;
    let (mut log, mut info, mut offset) = match seed {
        Some(Seed { checkpoint: cp, step }) => (
            RunLog::seeded(cp.keys.values().map(String::as_str), step, cp.records),
            cp.run,
            cp.offset,
        ),
        None => match point(store, log_len).await.map_err(store_err)? {
            Some(p) => {
                let (run, offset) = (p.run.clone(), p.offset);
                (RunLog::from_point(p), Some(run), offset)
            }
            None => (RunLog::default(), None, 0),
        },
    };
    let from = offset;
    let mut corruption = Vec::new();
    loop {
        let bytes = store
            .read_log_at(offset, log.records(), window)
            .await
            .map_err(store_err)?;
        let more = bytes.len() == window;
        let replayed = log.replay(&bytes, more, &mut info)?;
        corruption.extend(replayed.corruption.iter().map(|c| super::frame::Corruption {
            offset: c.offset + offset as usize,
            len: c.len,
        }));
        if more && replayed.valid_len == 0 {
            // A record longer than the window, or damage spanning it.
            window = window.saturating_mul(2);
            continue;
        }
        window = base;
        offset += replayed.valid_len as u64;
        if !more {
            break;
        }
    }
    let info = info.ok_or(ResumeError::NoStart)?;
    if let Some(note) = corruption_note(&info.id, &corruption) {
        return Err(ResumeError::Corrupt(note));
    }
    Ok(Resumed {
        log,
        info,
        valid_len: offset,
        log_len,
        from,
    })
}

/// The furthest of the store's resume points that is intact and whose last record is where
/// it says in this log; `None` (a replay from byte 0) when every one is torn, edited or stale.
async fn point<S: RunStore>(store: &S, log_len: u64) -> Result<Option<ResumePoint>, S::Error> {
    let mut best: Option<ResumePoint> = None;
    for bytes in store.resume_points().await? {
        let Some(p) = ResumePoint::parse(&bytes, log_len) else {
            continue;
        };
        if best.as_ref().is_some_and(|b| b.offset >= p.offset) {
            continue;
        }
        let (at, len) = p.last_record();
        if is_one_frame(&store.read_log_at(at, p.records - 1, len).await?) {
            best = Some(p);
        }
    }
    Ok(best)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::core::progress::SyncProgress;
    use crate::core::record::{FileRef, Meta};
    use crate::core::run_log::LogOptions;

    /// A log in memory read in `window`-byte windows, remembering the largest read.
    struct Windowed {
        log: Vec<u8>,
        window: usize,
        largest: Cell<usize>,
        /// Bytes of log read in all.
        read: Cell<usize>,
        points: Vec<Vec<u8>>,
    }

    fn windowed(log: Vec<u8>, window: usize, points: Vec<Vec<u8>>) -> Windowed {
        Windowed {
            log,
            window,
            largest: Cell::new(0),
            read: Cell::new(0),
            points,
        }
    }

    impl RunStore for Windowed {
        type Error = String;
        async fn read_log(&self) -> Result<Vec<u8>, String> {
            Err("the whole log was asked for".into())
        }
        async fn read_log_at(&self, offset: u64, _seq: u64, max: usize) -> Result<Vec<u8>, String> {
            let start = (offset as usize).min(self.log.len());
            let out = self.log[start..self.log.len().min(start + max)].to_vec();
            self.largest.set(self.largest.get().max(out.len()));
            self.read.set(self.read.get() + out.len());
            Ok(out)
        }
        async fn resume_points(&self) -> Result<Vec<Vec<u8>>, String> {
            Ok(self.points.clone())
        }
        fn read_window(&self) -> usize {
            self.window
        }
        async fn log_len(&self) -> Result<u64, String> {
            Ok(self.log.len() as u64)
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

    fn a_log() -> Vec<u8> {
        let mut log = RunLog::default();
        log.meta(&Meta::Start(RunInfo {
            id: "w".into(),
            project: "p".into(),
            ..RunInfo::default()
        }));
        for i in 0..500 {
            log.log(
                i,
                [("loss", i as f64), ("acc", 1.0 / (1 + i) as f64)],
                LogOptions::default(),
            )
            .unwrap();
            if i == 250 {
                log.log(i, [("big", "x".repeat(300))], LogOptions::default())
                    .unwrap();
            }
        }
        let mut bytes = Vec::new();
        log.take_batch(&mut bytes);
        bytes
    }

    /// A resume reads the log a window at a time (one record longer than the window grows it
    /// only for that record) and rebuilds what a whole-log read rebuilds.
    #[test]
    fn replays_in_windows_what_a_whole_read_gives() {
        let log = a_log();
        let (whole, valid) = RunLog::restore(&log).unwrap();
        for window in [64, 200, 4096] {
            let store = windowed(log.clone(), window, Vec::new());
            let r = pollster::block_on(resume_state(&store, None)).unwrap();
            assert_eq!(r.info.id, "w");
            assert_eq!(r.valid_len, valid as u64);
            assert_eq!(r.log.records(), whole.records());
            assert_eq!(r.log.step(), whole.step());
            assert_eq!(r.log.summary(), whole.summary());
            assert!(
                store.largest.get() <= window.max(512),
                "window {window}: read {}",
                store.largest.get()
            );
        }
    }

    /// A torn tail is left for the caller to cut; damage with records after it refuses.
    #[test]
    fn a_torn_tail_is_cut_and_damage_refuses() {
        let log = a_log();
        let mut torn = log.clone();
        torn.truncate(log.len() - 3);
        let store = windowed(torn, 128, Vec::new());
        let r = pollster::block_on(resume_state(&store, None)).unwrap();
        assert!(r.valid_len < r.log_len);
        let mut bad = log;
        bad[400] ^= 0x40;
        let store = windowed(bad, 128, Vec::new());
        match pollster::block_on(resume_state(&store, None)) {
            Err(ResumeError::Corrupt(note)) => {
                assert!(note.starts_with("corrupt: run w, byte offset"), "{note}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a damaged log was resumed"),
        }
    }

    /// A log and the resume points its writer keeps after its first and third quarter.
    fn a_log_with_points() -> (Vec<u8>, [Vec<u8>; 2]) {
        let mut log = RunLog::default();
        let info = RunInfo {
            id: "w".into(),
            project: "p".into(),
            ..RunInfo::default()
        };
        log.meta(&Meta::Start(info.clone()));
        let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
        log.meta(&Meta::Config {
            update: obj(serde_json::json!({"lr": 0.1})),
        });
        let mut bytes = Vec::new();
        let mut points = Vec::new();
        for i in 0..400u32 {
            log.log(
                i.into(),
                [("loss", f64::from(i)), ("nan", f64::NAN)],
                LogOptions::default(),
            )
            .unwrap();
            if i == 100 {
                log.meta(&Meta::Summary {
                    update: obj(serde_json::json!({"best": 1, "loss": -1})),
                });
                log.log(
                    1,
                    [("s", "text")],
                    LogOptions {
                        step: Some(500),
                        commit: Some(false),
                    },
                )
                .unwrap();
            }
            if i == 90 || i == 300 {
                let mut batch = Vec::new();
                log.take_batch(&mut batch);
                let last = crate::core::frame::Frames::new(&batch).last().unwrap().offset;
                let at = bytes.len() as u64;
                bytes.extend_from_slice(&batch);
                let p = log.point(&info, (bytes.len() as u64, at + last as u64));
                points.push(serde_json::to_vec(&p).unwrap());
            }
        }
        let mut batch = Vec::new();
        log.take_batch(&mut batch);
        bytes.extend_from_slice(&batch);
        (bytes, points.try_into().unwrap())
    }

    fn same_as_replay(r: &Resumed, log: &[u8]) {
        let (whole, valid) = RunLog::restore(log).unwrap();
        assert_eq!(r.valid_len, valid as u64);
        assert_eq!(r.log.records(), whole.records());
        assert_eq!(r.log.step(), whole.step());
        assert_eq!(r.log.summary(), whole.summary());
        assert_eq!(r.log.config(), whole.config());
        assert_eq!(r.info.id, "w");
    }

    /// A resume from the writer's point reads only the log after it, and rebuilds what a
    /// replay from byte 0 rebuilds.
    #[test]
    fn a_resume_point_reads_only_the_tail() {
        let (log, [early, point]) = a_log_with_points();
        let p: ResumePoint = serde_json::from_slice(&point).unwrap();
        let e: ResumePoint = serde_json::from_slice(&early).unwrap();
        let store = windowed(log.clone(), 256, vec![early, point]);
        let r = pollster::block_on(resume_state(&store, None)).unwrap();
        same_as_replay(&r, &log);
        assert_eq!(r.from, p.offset, "the furthest point");
        let tail = log.len() - p.offset as usize;
        // Besides the tail: the last record of each point, checked.
        let last = (p.offset - p.last + e.offset - e.last) as usize;
        let read = store.read.get();
        assert!(
            read >= tail && read <= tail + last + 256,
            "read {read} of a {tail}-byte tail"
        );
        assert!(tail * 3 < log.len());
    }

    /// A torn (every length), bit-flipped or foreign point is refused: the resume replays from
    /// byte 0 and rebuilds the same state.
    #[test]
    fn a_torn_or_foreign_point_is_refused() {
        let (log, [early, point]) = a_log_with_points();
        let full = |point: Vec<u8>, log: &[u8]| {
            let store = windowed(log.to_vec(), 4096, vec![point]);
            let r = pollster::block_on(resume_state(&store, None)).unwrap();
            same_as_replay(&r, log);
            if r.from == 0 {
                assert!(store.read.get() >= log.len());
            }
            r.from
        };
        for cut in 0..point.len() {
            assert_eq!(full(point[..cut].to_vec(), &log), 0, "cut at {cut}");
        }
        for at in 0..point.len() {
            let mut flipped = point.clone();
            flipped[at] ^= 0x04;
            let from = full(flipped.clone(), &log);
            if serde_json::from_slice::<ResumePoint>(&flipped).ok() != serde_json::from_slice(&point).ok() {
                assert_eq!(from, 0, "flip at {at}");
            }
        }
        // A torn later point leaves the earlier intact one in use.
        let early_at = serde_json::from_slice::<ResumePoint>(&early).unwrap().offset;
        for torn in [&point[..point.len() / 2], &point[1..]] {
            let store = windowed(log.clone(), 4096, vec![torn.to_vec(), early.clone()]);
            let r = pollster::block_on(resume_state(&store, None)).unwrap();
            same_as_replay(&r, &log);
            assert_eq!(r.from, early_at);
        }
        let mut other = a_log();
        other.extend_from_slice(&log);
        let other = &other[..log.len()];
        let store = windowed(other.to_vec(), 4096, vec![point.clone()]);
        let r = pollster::block_on(resume_state(&store, None)).unwrap();
        assert_eq!(
            r.log.records(),
            RunLog::restore(other).unwrap().0.records(),
            "another log"
        );
        let (whole, _) = RunLog::restore(&log).unwrap();
        let store = windowed(log[..log.len() / 2].to_vec(), 4096, vec![point]);
        let r = pollster::block_on(resume_state(&store, None)).unwrap();
        assert!(
            r.log.records() < whole.records(),
            "a shorter log is not taken for the point's"
        );
    }
}
