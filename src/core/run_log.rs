//! The in-memory side of a run: step semantics of `wandb.log`, key interning, and the batch
//! of encoded frames waiting for the store. No I/O and no clock: callers pass the time in.

use serde_json::{Map, Value as Json};

use super::digest::{Digest, JsonMap};
use super::frame::{Corruption, Frames};
use super::keys::KeyTable;
use super::record::{
    decode, encode_key, encode_meta, encode_row, DecodeError, Meta, Record, RowKind, RunInfo,
};
use super::resume_point::ResumePoint;
use super::row::PendingRow;
use super::value::Value;

/// Largest single value accepted, so one runaway string cannot exhaust memory or the server.
pub const MAX_VALUE_BYTES: usize = 32 << 20;
/// Longest metric name.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest explicit step: steps travel as signed 64-bit integers in bundles and SQL, so a
/// larger one would wrap instead of sorting last.
pub const MAX_STEP: u64 = i64::MAX as u64;

/// Options of one `log()` call, as in `wandb.log(data, step=, commit=)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Log at this step instead of the current one.
    pub step: Option<u64>,
    /// Close the row now (default: yes without `step`, no with it).
    pub commit: Option<bool>,
}

/// What happened to a `log()` call that was not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    /// The values joined the row at this step.
    Accepted,
    /// The explicit step was below the current one; the values were dropped.
    DroppedStaleStep {
        /// The step asked for.
        step: u64,
        /// The run's current step.
        current: u64,
    },
}

/// A value or key that cannot be logged; nothing of the call was kept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    /// Empty, reserved or oversized metric name.
    #[error("invalid key {key:?}: {why}")]
    InvalidKey {
        /// The offending key (truncated to 64 bytes).
        key: String,
        /// Why it was refused.
        why: &'static str,
    },
    /// An explicit step beyond [`MAX_STEP`].
    #[error("step {step} is over the largest step, {MAX_STEP}")]
    StepTooLarge {
        /// The step asked for.
        step: u64,
    },
    /// A single value larger than [`MAX_VALUE_BYTES`].
    #[error("value of key {key:?} is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit")]
    TooLarge {
        /// The key whose value was too large.
        key: String,
        /// Its size.
        size: usize,
    },
}

/// Keys the server adds to every row.
const RESERVED: [&str; 3] = ["_step", "_timestamp", "_runtime"];

/// The run's log state; one per run, guarded by the caller's lock.
#[derive(Default)]
pub struct RunLog {
    keys: KeyTable,
    step: u64,
    pending: PendingRow,
    shape: Vec<u32>,
    pending_ts: i64,
    last: Vec<Option<Value>>,
    batch: Vec<u8>,
    records: u64,
    dropped: u64,
    digest: Digest,
    /// The step a replay of the records encoded so far reaches (one past the last history
    /// row's step): what a resume point keeps, whatever an open row or explicit step set.
    row_step: u64,
}

/// What replaying one window of a log found besides the state it rebuilt.
#[derive(Debug, Default)]
pub struct Replayed {
    /// End of the last intact record in the window: where the next window starts.
    pub valid_len: usize,
    /// Damaged stretches with intact records after them, at offsets within the window.
    pub corruption: Vec<Corruption>,
}

fn short(key: &str) -> String {
    key.chars().take(64).collect()
}

impl RunLog {
    /// The state after `records` records that named `keys` (in id order) and reached `step`:
    /// a resume from a checkpoint whose prefix is no longer stored (IndexedDB drops the
    /// chunks of a synced, ended run). The last values and digest of that prefix are not
    /// known; the server has them.
    pub fn seeded<'k>(keys: impl IntoIterator<Item = &'k str>, step: u64, records: u64) -> RunLog {
        let mut me = RunLog {
            step,
            row_step: step,
            records,
            ..RunLog::default()
        };
        for name in keys {
            me.keys.intern(name);
            me.last.push(None);
            me.pending.add_key();
        }
        me
    }

    /// The state a replay of the records encoded so far rebuilds, as a resume point for a
    /// log of `offset` bytes whose last record starts at `last` (the open row is not in it).
    pub fn point(&self, run: &RunInfo, (offset, last): (u64, u64)) -> ResumePoint {
        ResumePoint {
            offset,
            records: self.records,
            last,
            run: run.clone(),
            keys: (0..self.keys.len() as u32)
                .filter_map(|id| self.keys.name(id).map(str::to_owned))
                .collect(),
            step: self.row_step,
            values: self.last_values(),
            config: self.digest.config().clone(),
            summary: self.digest.overrides().clone(),
            checksum: 0,
        }
        .sealed()
    }

    /// The point after `batch` (the one [`Self::take_batch`] just gave) is appended to a log
    /// of `good_len` bytes; `None` for an empty batch.
    pub fn point_after(&self, run: &RunInfo, batch: &[u8], good_len: u64) -> Option<ResumePoint> {
        let last = Frames::new(batch).last()?.offset as u64;
        Some(self.point(run, (good_len + batch.len() as u64, good_len + last)))
    }

    /// The state a resume point kept: a resume continues replaying after its offset.
    pub fn from_point(p: ResumePoint) -> RunLog {
        let mut me = RunLog::seeded(p.keys.iter().map(String::as_str), p.step, p.records);
        for (name, v) in p.values {
            if let Some(slot) = me.keys.get(&name).and_then(|id| me.last.get_mut(id as usize)) {
                *slot = Some(Value::from(v));
            }
        }
        me.digest = Digest::from_parts(p.config, p.summary);
        me
    }

    /// Rebuilds the state of an existing log so appends continue it (resume).
    pub fn restore(log: &[u8]) -> Result<(RunLog, usize), DecodeError> {
        let mut me = RunLog::default();
        let replayed = me.replay(log, false, &mut None)?;
        Ok((me, replayed.valid_len))
    }

    /// Replays the records of one window of a log into this state (a resume reads the log in
    /// windows, so it needs memory for one window, not the log); `more` says the log goes on
    /// past it (a frame cut by its end is left for the next window). `start` takes the run's
    /// first start record.
    pub fn replay(
        &mut self,
        window: &[u8],
        more: bool,
        start: &mut Option<RunInfo>,
    ) -> Result<Replayed, DecodeError> {
        let mut frames = Frames::window(window, more);
        for f in frames.by_ref() {
            self.records += 1;
            match decode(f.payload)? {
                Record::Key { name, .. } => {
                    self.keys.intern(name);
                    self.last.push(None);
                    self.pending.add_key();
                }
                Record::Row(row) if row.kind == RowKind::History => {
                    self.step = self.step.max(row.step + 1);
                    self.row_step = self.step;
                    for v in row.values() {
                        let (id, v) = v?;
                        if let Some(slot) = self.last.get_mut(id as usize) {
                            *slot = Some(v.to_owned());
                        }
                    }
                }
                Record::Meta(Meta::Start(info)) if start.is_none() => *start = Some(info),
                Record::Meta(meta) => self.digest_meta(&meta),
                Record::Row(_) => {}
            }
        }
        Ok(Replayed {
            valid_len: frames.valid_len(),
            corruption: frames.corruption().to_vec(),
        })
    }

    /// Folds a config or summary record into the digest; a summary value replaces the last
    /// logged value of its key until the key is logged again.
    fn digest_meta(&mut self, meta: &Meta) {
        match meta {
            Meta::Config { update } => self.digest.config_update(update),
            Meta::Summary { update } => {
                for name in update.keys() {
                    if let Some(slot) = self.keys.get(name).and_then(|id| self.last.get_mut(id as usize)) {
                        *slot = None;
                    }
                }
                self.digest.summary_update(update);
            }
            _ => {}
        }
    }

    /// Logs one call's values with `wandb.log` step semantics.
    pub fn log<K, V, I>(&mut self, now_ms: i64, items: I, opts: LogOptions) -> Result<Logged, LogError>
    where
        K: AsRef<str>,
        V: Into<Value>,
        I: IntoIterator<Item = (K, V)>,
    {
        self.call(now_ms, opts, |me| {
            for (i, (k, v)) in items.into_iter().enumerate() {
                me.stage(i, k.as_ref(), v.into())?;
            }
            Ok(())
        })
    }

    /// Logs numbers by interned key id (`ids_values` alternates id, value) plus other values
    /// by name: the path of the JS wrapper, which caches ids and writes numbers into wasm memory.
    pub fn log_ids(
        &mut self,
        now_ms: i64,
        ids_values: &[f64],
        others: Vec<(String, Value)>,
        opts: LogOptions,
    ) -> Result<Logged, LogError> {
        self.call(now_ms, opts, |me| {
            for pair in ids_values.chunks_exact(2) {
                let id = pair[0] as u32;
                if f64::from(id) != pair[0] || id as usize >= me.keys.len() {
                    return Err(LogError::InvalidKey {
                        key: format!("#{}", pair[0]),
                        why: "not an interned key id",
                    });
                }
                me.pending.put_num(id, pair[1]);
            }
            for (k, v) in others {
                me.stage(usize::MAX, &k, v)?;
            }
            Ok(())
        })
    }

    /// The id of `key`, interning (and logging its definition) when new.
    pub fn intern(&mut self, key: &str) -> Result<u32, LogError> {
        match self.keys.get(key) {
            Some(id) => Ok(id),
            None => self.new_key(key),
        }
    }

    /// One `log()` call: the step rules before staging, all-or-nothing staging, the commit.
    #[inline]
    fn call(
        &mut self,
        now_ms: i64,
        opts: LogOptions,
        stage_all: impl FnOnce(&mut Self) -> Result<(), LogError>,
    ) -> Result<Logged, LogError> {
        if let Some(step) = opts.step {
            if step > MAX_STEP {
                return Err(LogError::StepTooLarge { step });
            }
            if step < self.step {
                self.dropped += 1;
                log::warn!(
                    "tidelog: dropped values logged at step {step}: the run is at step {}; steps must not decrease",
                    self.step
                );
                return Ok(Logged::DroppedStaleStep {
                    step,
                    current: self.step,
                });
            }
            if step > self.step {
                self.write_pending(RowKind::History);
                self.step = step;
            }
        }
        let saved = (!self.pending.is_empty()).then(|| self.pending.clone());
        if let Err(e) = stage_all(self) {
            self.pending.clear();
            if let Some(saved) = saved {
                self.pending.restore(saved);
            }
            return Err(e);
        }
        self.pending_ts = now_ms;
        if opts.commit.unwrap_or(opts.step.is_none()) {
            self.write_pending(RowKind::History);
            self.step += 1;
        }
        Ok(Logged::Accepted)
    }

    /// Writes a system-metrics row at the current step, apart from the history row.
    pub fn system<K: AsRef<str>>(&mut self, now_ms: i64, items: &[(K, f64)]) -> Result<(), LogError> {
        let mut row = Vec::with_capacity(items.len());
        for (k, v) in items {
            let id = match self.keys.get(k.as_ref()) {
                Some(id) => id,
                None => self.new_key(k.as_ref())?,
            };
            row.push((id, *v));
        }
        encode_row(&mut self.batch, RowKind::System, self.step, now_ms, &row, &[]);
        self.records += 1;
        Ok(())
    }

    /// Stages the `nth` value of a call. Numbers take a path of their own so the value is
    /// never copied through a stack temporary (a store-forwarding stall on the hot path).
    #[inline]
    fn stage(&mut self, nth: usize, key: &str, v: Value) -> Result<(), LogError> {
        match v {
            Value::Num(x) => {
                let id = self.key_id(nth, key)?;
                self.pending.put_num(id, x);
            }
            other => {
                let size = other.approx_size();
                if size > MAX_VALUE_BYTES {
                    return Err(LogError::TooLarge {
                        key: short(key),
                        size,
                    });
                }
                let id = self.key_id(nth, key)?;
                self.pending.put_other(id, other);
            }
        }
        Ok(())
    }

    /// Calls usually repeat the previous call's keys in the same order, so the key at the
    /// same position is checked before hashing. The cache holds one id per position of a
    /// call (values staged by name have none), so it is bounded by the widest call.
    #[inline]
    fn key_id(&mut self, nth: usize, key: &str) -> Result<u32, LogError> {
        if let Some(&id) = self.shape.get(nth) {
            if self.keys.name(id) == Some(key) {
                return Ok(id);
            }
        }
        let id = match self.keys.get(key) {
            Some(id) => id,
            None => self.new_key(key)?,
        };
        if nth < self.shape.len() {
            self.shape[nth] = id;
        } else if nth == self.shape.len() {
            self.shape.push(id);
        }
        Ok(id)
    }

    #[cold]
    fn new_key(&mut self, key: &str) -> Result<u32, LogError> {
        let why = if key.is_empty() {
            Some("empty")
        } else if key.len() > MAX_KEY_BYTES {
            Some("longer than 1024 bytes")
        } else if RESERVED.contains(&key) {
            Some("reserved for the server")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LogError::InvalidKey { key: short(key), why });
        }
        let (id, _) = self.keys.intern(key);
        encode_key(&mut self.batch, id, key);
        self.records += 1;
        self.pending.add_key();
        self.last.push(None);
        Ok(id)
    }

    fn write_pending(&mut self, kind: RowKind) {
        if self.pending.is_empty() {
            return;
        }
        if kind == RowKind::History {
            self.row_step = self.row_step.max(self.step + 1);
        }
        let last = &mut self.last;
        self.pending
            .commit(&mut self.batch, kind, self.step, self.pending_ts, |id, v| {
                if kind == RowKind::History {
                    last[id as usize] = Some(v);
                }
            });
        self.records += 1;
    }

    /// Appends a JSON record, closing any open row first so order is kept.
    pub fn meta(&mut self, meta: &Meta) {
        if matches!(meta, Meta::Finish { .. }) {
            self.write_pending(RowKind::History);
        }
        self.digest_meta(meta);
        encode_meta(&mut self.batch, meta);
        self.records += 1;
    }

    /// Swaps the encoded batch into `out` (cleared first), leaving an empty batch behind.
    pub fn take_batch(&mut self, out: &mut Vec<u8>) {
        out.clear();
        std::mem::swap(&mut self.batch, out);
    }

    /// Puts back a batch the store could not write, ahead of anything logged since.
    pub fn restore_batch(&mut self, mut failed: Vec<u8>) {
        failed.extend_from_slice(&self.batch);
        self.batch = failed;
    }

    /// Commits the open row (values logged with `commit: false` or an explicit step), for a
    /// page or process that is going away: the later step that would commit it never comes.
    pub fn commit_open_row(&mut self) {
        if !self.pending.is_empty() {
            self.write_pending(RowKind::History);
            self.step += 1;
        }
    }

    /// The encoded batch, left in place: a copy for a page that may be going away.
    pub fn batch(&self) -> &[u8] {
        &self.batch
    }

    /// Bytes encoded but not yet handed to the store.
    pub fn batch_len(&self) -> usize {
        self.batch.len()
    }

    /// The step the next committed row gets.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Records encoded over the run's life (including restored ones).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// How many calls were dropped for a decreasing step.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The merged config of every config record: `files/config.json` at finish.
    pub fn config(&self) -> &JsonMap {
        self.digest.config()
    }

    /// The run's summary: `summary.set()` values, each replaced by the key's value when it is
    /// logged later, and the last committed value of every other history key:
    /// `files/summary.json` at finish, without reading the log back.
    pub fn summary(&self) -> JsonMap {
        self.digest.summary(self.last_values())
    }

    /// The last committed value of every history key: the default summary.
    pub fn last_values(&self) -> Map<String, Json> {
        let mut out = Map::new();
        for (id, v) in self.last.iter().enumerate() {
            if let (Some(v), Some(name)) = (v, self.keys.name(id as u32)) {
                out.insert(name.to_owned(), v.to_json());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::value::ValueRef;

    fn rows(log: &RunLog) -> Vec<(u64, Vec<(String, f64)>)> {
        let mut names = KeyTable::default();
        let mut out = Vec::new();
        for f in Frames::new(&log.batch) {
            match decode(f.payload).unwrap() {
                Record::Key { name, .. } => {
                    names.intern(name);
                }
                Record::Row(r) => out.push((
                    r.step,
                    r.values()
                        .map(|v| match v.unwrap() {
                            (id, ValueRef::Num(x)) => (names.name(id).unwrap().to_owned(), x),
                            _ => panic!("not a number"),
                        })
                        .collect(),
                )),
                Record::Meta(_) => {}
            }
        }
        out
    }

    fn kv(k: &str, v: f64) -> [(&str, f64); 1] {
        [(k, v)]
    }

    #[test]
    fn wandb_step_semantics() {
        let mut log = RunLog::default();
        let o = LogOptions::default();
        log.log(1, kv("a", 1.0), o).unwrap();
        log.log(
            2,
            kv("lr", 0.1),
            LogOptions {
                commit: Some(false),
                ..o
            },
        )
        .unwrap();
        log.log(3, kv("a", 2.0), o).unwrap();
        log.log(4, kv("v", 9.0), LogOptions { step: Some(10), ..o })
            .unwrap();
        log.log(5, kv("w", 8.0), LogOptions { step: Some(10), ..o })
            .unwrap();
        let dropped = log
            .log(6, kv("x", 0.0), LogOptions { step: Some(3), ..o })
            .unwrap();
        assert_eq!(dropped, Logged::DroppedStaleStep { step: 3, current: 10 });
        log.log(7, kv("a", 3.0), o).unwrap();
        assert_eq!(log.step(), 11);
        assert_eq!(log.dropped(), 1);
        let got = rows(&log);
        let want = vec![
            (0, vec![("a".to_owned(), 1.0)]),
            (1, vec![("lr".to_owned(), 0.1), ("a".to_owned(), 2.0)]),
            (
                10,
                vec![
                    ("v".to_owned(), 9.0),
                    ("w".to_owned(), 8.0),
                    ("a".to_owned(), 3.0),
                ],
            ),
        ];
        assert_eq!(got, want);
        assert_eq!(log.last_values()["a"], serde_json::json!(3.0));
    }

    #[test]
    fn an_open_row_is_committed_on_request_and_only_once() {
        let mut log = RunLog::default();
        let at = |step| LogOptions {
            step: Some(step),
            ..LogOptions::default()
        };
        log.log(1, kv("a", 1.0), at(4)).unwrap();
        assert!(rows(&log).is_empty(), "an explicit step stays open");
        log.commit_open_row();
        log.commit_open_row();
        assert_eq!(rows(&log), vec![(4, vec![("a".to_owned(), 1.0)])]);
        assert_eq!(log.step(), 5);
        log.log(2, kv("a", 2.0), LogOptions::default()).unwrap();
        assert_eq!(rows(&log).last().unwrap().0, 5);
    }

    #[test]
    fn duplicate_keys_in_a_row_keep_the_last_value() {
        let mut log = RunLog::default();
        log.log(1, [("a", 1.0), ("a", 2.0)], LogOptions::default())
            .unwrap();
        assert_eq!(rows(&log), vec![(0, vec![("a".to_owned(), 2.0)])]);
    }

    #[test]
    fn bad_keys_and_huge_values_are_refused_whole() {
        let mut log = RunLog::default();
        let err = log
            .log(
                1,
                [("ok", Value::Num(1.0)), ("_step", Value::Num(2.0))],
                LogOptions::default(),
            )
            .unwrap_err();
        assert!(matches!(err, LogError::InvalidKey { ref key, .. } if key == "_step"));
        let big = "x".repeat(MAX_VALUE_BYTES + 1);
        let err = log.log(1, [("s", big)], LogOptions::default()).unwrap_err();
        assert!(err.to_string().contains("\"s\""), "{err}");
        log.log(2, kv("ok", 5.0), LogOptions::default()).unwrap();
        assert_eq!(rows(&log), vec![(0, vec![("ok".to_owned(), 5.0)])]);
    }

    #[test]
    fn values_staged_by_name_do_not_grow_the_key_cache() {
        let mut log = RunLog::default();
        for step in 0..10_000 {
            let others = vec![
                ("flag".to_owned(), Value::Bool(true)),
                ("phase".to_owned(), Value::from("train")),
            ];
            log.log_ids(step, &[], others, LogOptions::default()).unwrap();
            let mut out = Vec::new();
            log.take_batch(&mut out);
        }
        assert!(log.shape.len() <= 2, "key cache grew to {}", log.shape.len());
        log.log(1, [("a", 1.0), ("b", 2.0), ("c", 3.0)], LogOptions::default())
            .unwrap();
        assert_eq!(log.shape.len(), 3);
    }

    #[test]
    fn steps_beyond_the_signed_range_are_refused() {
        let mut log = RunLog::default();
        let at = |step| LogOptions {
            step: Some(step),
            ..LogOptions::default()
        };
        let err = log.log(1, kv("a", 1.0), at(MAX_STEP + 1)).unwrap_err();
        assert_eq!(err, LogError::StepTooLarge { step: MAX_STEP + 1 });
        assert_eq!(log.step(), 0);
        assert_eq!(log.log(1, kv("a", 1.0), at(MAX_STEP)), Ok(Logged::Accepted));
        assert_eq!(log.step(), MAX_STEP);
    }

    #[test]
    fn restore_continues_steps_and_keys() {
        let mut log = RunLog::default();
        log.log(1, kv("a", 1.0), LogOptions::default()).unwrap();
        log.log(1, kv("b", 1.0), LogOptions::default()).unwrap();
        let mut bytes = Vec::new();
        log.take_batch(&mut bytes);
        let (mut again, valid) = RunLog::restore(&bytes).unwrap();
        assert_eq!(valid, bytes.len());
        assert_eq!(again.step(), 2);
        assert_eq!(again.records(), 4);
        again.log(1, kv("b", 2.0), LogOptions::default()).unwrap();
        let mut more = Vec::new();
        again.take_batch(&mut more);
        assert_eq!(Frames::new(&more).count(), 1, "no second key definition for b");
    }
}
