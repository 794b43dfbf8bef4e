//! One pass over a `records.tlog`: where each record is, what the keys mean, how the run
//! ended. The sync engine plans bundles from it.

use std::ops::Range;

use super::frame::{Frames, HEADER};
use super::keys::KeyTable;
use super::record::{decode, DecodeError, FileRef, Meta, Record, RunInfo, RunState};

/// A parsed view of a run's log.
pub struct LogIndex<'a> {
    log: &'a [u8],
    offsets: Vec<usize>,
    keys: KeyTable,
    run: Option<RunInfo>,
    exit_code: Option<i32>,
    valid_len: usize,
}

impl<'a> LogIndex<'a> {
    /// Indexes every intact record of `log`; a torn tail is left out.
    pub fn new(log: &'a [u8]) -> Result<Self, DecodeError> {
        let mut me = LogIndex {
            log,
            offsets: Vec::new(),
            keys: KeyTable::default(),
            run: None,
            exit_code: None,
            valid_len: 0,
        };
        let mut frames = Frames::new(log);
        for f in frames.by_ref() {
            me.offsets.push(f.offset);
            match decode(f.payload)? {
                Record::Key { name, .. } => {
                    me.keys.intern(name);
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

    /// Bytes of intact records; anything after is a torn tail.
    pub fn valid_len(&self) -> usize {
        self.valid_len
    }

    /// The run's identity from its start record.
    pub fn run(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    /// The interned keys of the whole log.
    pub fn keys(&self) -> &KeyTable {
        &self.keys
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
