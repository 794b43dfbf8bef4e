//! One pass over a `records.tlog`: where each record is, what the keys mean, how the run
//! ended. The sync engine plans bundles from it.

use std::ops::Range;

use rustc_hash::FxHashMap;

pub use super::checkpoint::Checkpoint;
pub use super::frame::Corruption;
use super::frame::{Frames, HEADER};
use super::record::{decode, DecodeError, FileRef, Meta, Record, RunInfo, RunState};

/// A parsed view of a run's log, or of a window of it that starts at a [`Checkpoint`].
/// Sequence numbers and byte offsets are the whole log's.
pub struct LogIndex<'a> {
    log: &'a [u8],
    base_offset: usize,
    base_seq: u64,
    offsets: Vec<usize>,
    keys: FxHashMap<u32, (&'a str, u64)>,
    run: Option<RunInfo>,
    exit_code: Option<i32>,
    /// `(seq, exit code from seq on)` wherever a record changed it: the state at any record.
    exit_changes: Vec<(u64, Option<i32>)>,
    base_exit: Option<i32>,
    base_last: usize,
    base_corrupt: &'a [Corruption],
    valid_len: usize,
    corrupt: Vec<Corruption>,
}

impl<'a> LogIndex<'a> {
    /// Indexes every intact record of `log`, before and after any damaged stretch; a torn
    /// tail is left out. Key ids are taken from the key records themselves, so a key record
    /// lost to damage leaves the other keys' ids as they were written.
    pub fn new(log: &'a [u8]) -> Result<Self, DecodeError> {
        Self::build(log, false, None)
    }

    /// Indexes `window`, the log's bytes from `from.offset` on, numbering its records from
    /// `from.records` with the keys, identity and state `from` carries; `more` says the log
    /// goes on past the window (a frame cut by its end is left for the next window).
    pub fn after(window: &'a [u8], more: bool, from: &'a Checkpoint) -> Result<Self, DecodeError> {
        Self::build(window, more, Some(from))
    }

    fn build(log: &'a [u8], more: bool, from: Option<&'a Checkpoint>) -> Result<Self, DecodeError> {
        let mut me = LogIndex {
            log,
            base_offset: 0,
            base_seq: 0,
            offsets: Vec::new(),
            keys: FxHashMap::default(),
            run: None,
            exit_code: None,
            exit_changes: Vec::new(),
            base_exit: None,
            base_last: 0,
            base_corrupt: &[],
            valid_len: 0,
            corrupt: Vec::new(),
        };
        if let Some(cp) = from {
            me.base_offset = cp.offset as usize;
            me.base_seq = cp.records;
            me.keys = cp.keys.iter().map(|(id, k)| (*id, (k.as_str(), 0))).collect();
            me.run = cp.run.clone();
            me.exit_code = cp.exit_code;
            me.base_exit = cp.exit_code;
            me.base_last = cp.last as usize;
            me.base_corrupt = &cp.corrupt;
        }
        let mut frames = Frames::window(log, more);
        for f in frames.by_ref() {
            let seq = me.base_seq + me.offsets.len() as u64;
            me.offsets.push(f.offset);
            let exit = match decode(f.payload)? {
                Record::Key { id, name } => {
                    me.keys.insert(id, (name, seq));
                    me.exit_code
                }
                Record::Meta(Meta::Start(info)) => {
                    if me.run.is_none() {
                        me.run = Some(info);
                    }
                    None
                }
                Record::Meta(Meta::Finish { exit_code, .. }) => Some(exit_code),
                Record::Row(_) => None,
                Record::Meta(_) => me.exit_code,
            };
            if exit != me.exit_code {
                me.exit_changes.push((seq, exit));
                me.exit_code = exit;
            }
        }
        me.valid_len = frames.valid_len();
        me.corrupt = frames
            .corruption()
            .iter()
            .map(|c| Corruption {
                offset: c.offset + me.base_offset,
                len: c.len,
            })
            .collect();
        Ok(me)
    }

    /// One past the last intact record's sequence number (the record count of a whole log).
    pub fn len(&self) -> u64 {
        self.base_seq + self.offsets.len() as u64
    }

    /// True when no record was indexed (nor acknowledged before the window).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// End of the last intact record; anything after is a torn tail (or the next window).
    pub fn valid_len(&self) -> usize {
        self.base_offset + self.valid_len
    }

    /// Damaged stretches with intact records after them (empty for a healthy log), found in
    /// the bytes indexed.
    pub fn corruption(&self) -> &[Corruption] {
        &self.corrupt
    }

    /// Every damaged stretch up to here, the checkpoint's prefix included.
    pub fn all_corruption(&self) -> Vec<Corruption> {
        self.base_corrupt.iter().chain(&self.corrupt).copied().collect()
    }

    /// The run's identity from its start record.
    pub fn run(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    /// The name a key record gave key `id`; `None` when that record was never read.
    pub fn key(&self, id: u32) -> Option<&'a str> {
        self.keys.get(&id).map(|(k, _)| *k)
    }

    /// The run's state, given whether a live process still holds it.
    pub fn state(&self, live: bool) -> RunState {
        match self.exit_code {
            Some(0) => RunState::Finished,
            Some(_) => RunState::Failed,
            None if live => RunState::Running,
            None => RunState::Crashed,
        }
    }

    /// Byte offset where record `seq` starts (the log's valid length past the end).
    pub fn offset(&self, seq: u64) -> usize {
        seq.checked_sub(self.base_seq)
            .and_then(|i| self.offsets.get(i as usize))
            .map_or(self.valid_len(), |at| self.base_offset + at)
    }

    /// The checkpoint of the prefix before record `seq` (`seq` within this index): where that
    /// record starts and everything needed to read on from there.
    pub fn checkpoint(&self, seq: u64) -> Checkpoint {
        let exit_code = self
            .exit_changes
            .iter()
            .rev()
            .find(|(at, _)| *at < seq)
            .map_or(self.base_exit, |(_, e)| *e);
        let offset = self.offset(seq);
        let last = match seq.checked_sub(1) {
            Some(prev) if prev >= self.base_seq => self.offset(prev),
            _ => self.base_last,
        };
        Checkpoint::new(
            (offset as u64, seq, last as u64),
            self.keys
                .iter()
                .filter(|(_, (_, at))| *at < seq)
                .map(|(id, (k, _))| (*id, (*k).to_owned()))
                .collect(),
            self.run.clone(),
            exit_code,
            self.base_corrupt
                .iter()
                .chain(self.corrupt.iter().filter(|c| c.offset < offset))
                .copied()
                .collect(),
        )
    }

    /// The payloads of records `range`, with their sequence numbers.
    pub fn payloads(&self, range: Range<u64>) -> impl Iterator<Item = (u64, &'a [u8])> + '_ {
        range.map(move |seq| {
            let at = self.offsets[(seq - self.base_seq) as usize];
            let len = u32::from_le_bytes(self.log[at..at + 4].try_into().expect("4 bytes")) as usize;
            (seq, &self.log[at + HEADER..at + HEADER + len])
        })
    }

    /// The distinct saved files referenced by records `range`, in first-reference order.
    pub fn files(&self, range: Range<u64>) -> Vec<FileRef> {
        let mut out: Vec<FileRef> = Vec::new();
        for (_, payload) in self.payloads(range) {
            if let Ok(Record::Meta(Meta::File(f))) = decode(payload) {
                if !out.iter().any(|o| o.path == f.path && o.sha256 == f.sha256) {
                    out.push(f);
                }
            }
        }
        out
    }

    /// The records from `start` that fit in about `max_bytes` of log (always at least one).
    pub fn plan(&self, start: u64, max_bytes: usize) -> Range<u64> {
        let len = self.len();
        if start >= len {
            return len..len;
        }
        let base = self.offset(start);
        let mut end = start + 1;
        while end < len && self.offset(end + 1) - base <= max_bytes {
            end += 1;
        }
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bundle::write_bundle;
    use crate::core::frame::Frames;
    use crate::core::run_log::{LogOptions, RunLog};

    fn log_with_keys() -> Vec<u8> {
        let mut log = RunLog::default();
        log.meta(&Meta::Start(RunInfo {
            id: "k".into(),
            project: "p".into(),
            ..RunInfo::default()
        }));
        log.log(1, [("a", 1.0)], LogOptions::default()).unwrap();
        log.log(2, [("a", 2.0), ("b", 3.0)], LogOptions::default())
            .unwrap();
        log.log(3, [("b", 4.0)], LogOptions::default()).unwrap();
        let mut out = Vec::new();
        log.take_batch(&mut out);
        out
    }

    /// A key record lost to damage: the other keys keep the ids they were written with, the
    /// damage is reported, and the bundle leaves out (and counts) the values of the lost key.
    #[test]
    fn a_lost_key_record_shifts_no_other_key() {
        let mut log = log_with_keys();
        let key_a = Frames::new(&log)
            .find(|f| matches!(decode(f.payload), Ok(Record::Key { name: "a", .. })))
            .expect("a key record for a")
            .offset;
        log[key_a + HEADER + 1] ^= 0x04;
        let index = LogIndex::new(&log).unwrap();
        assert_eq!(index.key(0), None);
        assert_eq!(index.key(1), Some("b"));
        let bad = index.corruption();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, key_a);
        assert_eq!(index.valid_len(), log.len());
        let info = index.run().unwrap().clone();
        let bundle = write_bundle(&index, &info, index.state(false), 0..index.len(), &[]).unwrap();
        assert_eq!(bundle.dropped_values, 2, "a=1.0 and a=2.0 have no name");
    }
}
