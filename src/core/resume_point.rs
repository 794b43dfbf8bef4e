//! The writer's durable resume checkpoint (`.resume` in a run folder): the state a resumed
//! [`RunLog`] needs after a prefix of its log (offset, record count, key table, step, last
//! values, digest, identity), so a resume replays only the log after it, not from byte 0. It
//! is written atomically and checksummed; a torn, edited or stale one (its last record not
//! where it says, the log shorter) is not used, and the resume replays the whole log.

use serde::{Deserialize, Serialize};

use super::digest::JsonMap;
use super::frame::{HEADER, MAX_FRAME};
use super::record::RunInfo;

/// Default log bytes between two resume points of a live run: a resume replays at most this
/// much (plus a batch).
pub const RESUME_POINT_BYTES: u64 = 16 << 20;

/// A run's state after the first `offset` bytes of its log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResumePoint {
    /// Byte offset the replay continues from: the end of a record.
    pub offset: u64,
    /// Records before `offset`.
    pub records: u64,
    /// Byte offset of the record that ends at `offset`: how a point left over from another
    /// (or a replaced) log is told from a true one.
    pub last: u64,
    /// The run's start record.
    pub run: RunInfo,
    /// Key names in id order.
    pub keys: Vec<String>,
    /// The step a replay of the prefix reaches.
    pub step: u64,
    /// The last committed value of each history key, as `summary.json` shows it.
    pub values: JsonMap,
    /// The merged config.
    pub config: JsonMap,
    /// `summary.set()` values not overridden by a later logged value.
    pub summary: JsonMap,
    /// CRC32C of the fields above.
    pub checksum: u32,
}

impl ResumePoint {
    /// The point with its checksum filled in, its numbers first read back the way this build
    /// reads them. The wasm build's JSON reader (no `float_roundtrip`: it would cost the
    /// module 8.7 KB gzipped) reads a few floats a ulp off, so a point checksummed over the
    /// exact values failed its check there; over values that read back as written, it holds in
    /// every home (a resumed value is then at most that ulp off).
    pub fn sealed(mut self) -> Self {
        // Twice: a float read a ulp off is one the reader then reads back as it is.
        for _ in 0..2 {
            let text = serde_json::to_vec(&self).expect("serializing to a Vec cannot fail");
            if let Ok(back) = serde_json::from_slice::<ResumePoint>(&text) {
                self = back;
            }
        }
        self.checksum = self.sum();
        self
    }

    fn sum(&self) -> u32 {
        let body = ResumePoint {
            checksum: 0,
            ..self.clone()
        };
        crc32c::crc32c(&serde_json::to_vec(&body).expect("serializing to a Vec cannot fail"))
    }

    /// The point stored as `bytes`, if it reads, its checksum matches and it fits a log of
    /// `log_len` bytes (its last record is checked apart, with [`ResumePoint::last_record`]).
    pub fn parse(bytes: &[u8], log_len: u64) -> Option<ResumePoint> {
        let p: ResumePoint = serde_json::from_slice(bytes).ok()?;
        (p.checksum == p.sum()
            && p.offset <= log_len
            && p.records > 0
            && p.last < p.offset
            && p.offset - p.last <= (MAX_FRAME + HEADER) as u64)
            .then_some(p)
    }

    /// Where the last record before `offset` lies: those bytes must be exactly one intact frame.
    pub fn last_record(&self) -> (u64, usize) {
        (self.last, (self.offset - self.last) as usize)
    }
}
