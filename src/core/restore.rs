//! A resume's view of an existing run: its log replayed into a [`RunLog`] in bounded windows
//! through the [`RunStore`] seam, so resuming a run of any length needs the memory of one
//! window (plus one entry per key), never the whole log.

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

/// Replays the log of `store` window by window for a resume; a torn tail is left for the
/// caller to cut, damage before the end refuses the resume.
pub async fn resume_state<S: RunStore>(store: &S) -> Result<Resumed, ResumeError> {
    let store_err = |e: S::Error| ResumeError::Store(e.to_string());
    let log_len = store.log_len().await.map_err(store_err)?;
    // A store that cannot read at an offset cheaply hands the whole log back in one window.
    let base = store.read_window();
    let mut window = base;
    let mut log = RunLog::default();
    let mut info = None;
    let mut corruption = Vec::new();
    let mut offset = 0u64;
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
