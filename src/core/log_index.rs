//! One pass over a `records.tlog`: where each record is, what the keys mean, how the run
//! ended. The sync engine plans bundles from it.

use std::ops::Range;

use rustc_hash::FxHashMap;

pub use super::frame::Corruption;
use super::frame::{Frames, HEADER};
use super::record::{decode, DecodeError, FileRef, Meta, Record, RunInfo, RunState};

/// A parsed view of a run's log.
pub struct LogIndex<'a> {
    log: &'a [u8],
    offsets: Vec<usize>,
    keys: FxHashMap<u32, &'a str>,
    run: Option<RunInfo>,
    exit_code: Option<i32>,
    valid_len: usize,
    corrupt: Vec<Corruption>,
}

impl<'a> LogIndex<'a> {
    /// Indexes every intact record of `log`, before and after any damaged stretch; a torn
    /// tail is left out. Key ids are taken from the key records themselves, so a key record
    /// lost to damage leaves the other keys' ids as they were written.
    pub fn new(log: &'a [u8]) -> Result<Self, DecodeError> {
        let mut me = LogIndex {
            log,
            offsets: Vec::new(),
            keys: FxHashMap::default(),
            run: None,
            exit_code: None,
            valid_len: 0,
            corrupt: Vec::new(),
        };
        let mut frames = Frames::new(log);
        for f in frames.by_ref() {
            me.offsets.push(f.offset);
            match decode(f.payload)? {
                Record::Key { id, name } => {
                    me.keys.insert(id, name);
                }
                Record::Meta(Meta::Start(info)) => {
                    me.exit_code = None;
                    if me.run.is_none() {
                        me.run = Some(info);
                    }
                }
                Record::Meta(Meta::Finish { exit_code, .. }) => me.exit_code = Some(exit_code),
                Record::Row(_) => me.exit_code = None,
                Record::Meta(_) => {}
            }
        }
        me.valid_len = frames.valid_len();
        me.corrupt = frames.corruption().to_vec();
        Ok(me)
    }

    /// Number of intact records.
    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// True for an empty log.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// End of the last intact record; anything after is a torn tail.
    pub fn valid_len(&self) -> usize {
        self.valid_len
    }

    /// Damaged stretches with intact records after them (empty for a healthy log).
    pub fn corruption(&self) -> &[Corruption] {
        &self.corrupt
    }

    /// The run's identity from its start record.
    pub fn run(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    /// The name a key record gave key `id`; `None` when that record was never read.
    pub fn key(&self, id: u32) -> Option<&'a str> {
        self.keys.get(&id).copied()
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
        self.offsets.get(seq as usize).copied().unwrap_or(self.valid_len)
    }

    /// The payloads of records `range`, with their sequence numbers.
    pub fn payloads(&self, range: Range<u64>) -> impl Iterator<Item = (u64, &'a [u8])> + '_ {
        range.map(move |seq| {
            let at = self.offsets[seq as usize];
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
        let (_, summary) = crate::core::digest::config_and_summary(&log).unwrap();
        assert_eq!(serde_json::Value::Object(summary), serde_json::json!({"b": 4.0}));
    }
}
