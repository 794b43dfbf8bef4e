//! A resume's view of an existing run: its log replayed into a [`RunLog`] in bounded windows
//! through the [`RunStore`] seam, so resuming a run of any length needs the memory of one
//! window (plus one entry per key), never the whole log.

use super::checkpoint::Checkpoint;
use super::folder::corruption_note;
use super::progress::RunStore;
use super::record::{DecodeError, RunInfo};
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
        None => (RunLog::default(), None, 0),
    };
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
    })
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
            Ok(out)
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
            let store = Windowed {
                log: log.clone(),
                window,
                largest: Cell::new(0),
            };
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
        let store = Windowed {
            log: torn,
            window: 128,
            largest: Cell::new(0),
        };
        let r = pollster::block_on(resume_state(&store, None)).unwrap();
        assert!(r.valid_len < r.log_len);
        let mut bad = log;
        bad[400] ^= 0x40;
        let store = Windowed {
            log: bad,
            window: 128,
            largest: Cell::new(0),
        };
        match pollster::block_on(resume_state(&store, None)) {
            Err(ResumeError::Corrupt(note)) => {
                assert!(note.starts_with("corrupt: run w, byte offset"), "{note}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a damaged log was resumed"),
        }
    }
}
