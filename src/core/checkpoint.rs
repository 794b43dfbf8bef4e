//! The durable checkpoint of a run's acknowledged prefix: where the first unacknowledged
//! record starts and what reading on from there needs (record count, key table, identity,
//! state), so a sync reads only what is new. It is saved inside the sync progress (one
//! atomic write) with a checksum; a torn, edited or stale one is detected and rebuilt from
//! byte 0.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::frame::{Corruption, HEADER, MAX_FRAME};
use super::record::RunInfo;

/// The acknowledged prefix of a log, as far as reading on after it needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Byte offset of the first unacknowledged record.
    pub offset: u64,
    /// Records before `offset`: the sequence number of the record there.
    pub records: u64,
    /// Byte offset of the last acknowledged record, which must end at `offset`: how a
    /// checkpoint left over from another log (or a replaced one) is told from a true one.
    pub last: u64,
    /// Key ids named before `offset`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<u32, String>,
    /// The run's start record, once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// The exit code of a finish record not followed by rows or a new start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Damage found before `offset`: such a run is never marked synced, and each sync says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<Corruption>,
    /// CRC32C of the fields above: a checkpoint whose sum does not match is not used.
    pub checksum: u32,
}

impl Checkpoint {
    /// A checkpoint with its checksum filled in.
    pub fn new(
        (offset, records, last): (u64, u64, u64),
        keys: BTreeMap<u32, String>,
        run: Option<RunInfo>,
        exit_code: Option<i32>,
        corrupt: Vec<Corruption>,
    ) -> Self {
        let mut cp = Checkpoint {
            offset,
            records,
            last,
            keys,
            run,
            exit_code,
            corrupt,
            checksum: 0,
        };
        cp.checksum = cp.sum();
        cp
    }

    fn sum(&self) -> u32 {
        let body = Checkpoint {
            checksum: 0,
            ..self.clone()
        };
        crc32c::crc32c(&serde_json::to_vec(&body).expect("serializing to a Vec cannot fail"))
    }

    /// Whether the checkpoint is intact and can describe a log of `log_len` bytes whose
    /// progress says `acked` records are acknowledged (its last record is checked apart,
    /// with [`Checkpoint::last_record`]).
    pub fn usable(&self, log_len: u64, acked: u64) -> bool {
        self.checksum == self.sum()
            && self.offset <= log_len
            && self.records == acked
            && self.records > 0
            && self.last < self.offset
            && self.offset - self.last <= (MAX_FRAME + HEADER) as u64
            && self.run.is_some()
    }

    /// Where the last acknowledged record lies: those bytes must be exactly one intact frame.
    pub fn last_record(&self) -> (u64, usize) {
        (self.last, (self.offset - self.last) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_field_fails_the_checksum() {
        let cp = Checkpoint::new(
            (100, 7, 90),
            BTreeMap::from([(0, "a".into())]),
            None,
            None,
            Vec::new(),
        );
        assert!(!cp.usable(200, 7), "no run identity with records acknowledged");
        let cp = Checkpoint::new((100, 7, 90), cp.keys, Some(RunInfo::default()), None, Vec::new());
        assert!(cp.usable(200, 7));
        assert!(!cp.usable(99, 7), "stale: the log is shorter than the checkpoint");
        assert!(!cp.usable(200, 6), "stale: progress moved without it");
        let mut edited = cp.clone();
        edited.records = 8;
        assert!(!edited.usable(200, 8));
        let mut edited = cp;
        edited.keys.insert(1, "b".into());
        assert!(!edited.usable(200, 7));
    }
}
