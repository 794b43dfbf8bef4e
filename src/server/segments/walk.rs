//! A run's rows in step order, a few segments at a time: what full-resolution answers (JSON
//! and the Parquet export) stream from, so memory stays at one group of segments however long
//! the run. A group is segments whose step ranges overlap: rows in step order never need the
//! next group. A segment compacted away meanwhile is found in a fresh listing, and only rows
//! after the last one handed out are handed out from it.

use std::collections::{HashSet, VecDeque};

use super::catalog::{self, Segment};
use super::read::{decode_all, fetch};
use super::table::Table;
use super::Ctx;
use crate::server::error::ServerError;

/// Times the segments are listed again when compaction replaced one being read.
const ATTEMPTS: usize = 5;

/// A row of a group: table and row index.
pub type At = (u32, u32);

/// Where a walk is.
pub struct Walk {
    run_id: String,
    kind: &'static str,
    keys: Option<HashSet<String>>,
    min_step: u64,
    max_step: u64,
    /// Rows logged after the walk began are left out, so a live run's answer is a snapshot.
    last_seq: u64,
    todo: VecDeque<Segment>,
    after: Option<(u64, u64)>,
    attempts: usize,
}

/// Whether a store error is an object that is gone.
pub fn gone(e: &ServerError) -> bool {
    matches!(
        e,
        ServerError::Store {
            source: object_store::Error::NotFound { .. },
            ..
        }
    )
}

impl Walk {
    /// A walk over the run's `kind` rows with a step in `min_step..=max_step` and, with
    /// `keys`, only those keys; `segments` are the catalog's for that range.
    pub fn new(
        run_id: &str,
        kind: &'static str,
        keys: Option<HashSet<String>>,
        (min_step, max_step): (u64, u64),
        segments: Vec<Segment>,
    ) -> Walk {
        let mut walk = Walk {
            run_id: run_id.to_owned(),
            kind,
            keys,
            min_step,
            max_step,
            last_seq: segments.iter().map(|s| s.last_seq).max().unwrap_or(0),
            todo: VecDeque::new(),
            after: None,
            attempts: 0,
        };
        walk.todo = walk.relevant(segments);
        walk
    }

    /// Whether only some keys are read, so rows holding none of them are left out.
    pub fn filtered(&self) -> bool {
        self.keys.is_some()
    }

    /// Of `segments`, those still to read: holding a key asked, rows the snapshot has, and
    /// steps not yet passed.
    fn relevant(&self, segments: Vec<Segment>) -> VecDeque<Segment> {
        segments
            .into_iter()
            .filter(|s| {
                self.keys
                    .as_ref()
                    .is_none_or(|k| s.stats.keys().any(|name| k.contains(name)))
                    && s.first_seq <= self.last_seq
                    && self.after.is_none_or(|(step, _)| s.max_step >= step)
            })
            .collect()
    }

    /// The next group's tables and its rows in (step, sequence) order; `None` when done.
    pub async fn next(&mut self, ctx: Ctx<'_>) -> Result<Option<(Vec<Table>, Vec<At>)>, ServerError> {
        loop {
            let Some(first) = self.todo.front() else {
                return Ok(None);
            };
            let mut reach = first.max_step;
            let n = self
                .todo
                .iter()
                .take_while(|s| {
                    let overlaps = s.min_step <= reach;
                    reach = reach.max(s.max_step);
                    overlaps
                })
                .count();
            let objects: Vec<&str> = self.todo.iter().take(n).map(|s| s.object.as_str()).collect();
            let bytes = match fetch(ctx.store, &objects).await {
                Err(e) if gone(&e) && self.attempts < ATTEMPTS => {
                    self.attempts += 1;
                    let listed =
                        catalog::list(ctx.db, &self.run_id, self.kind, self.min_step, self.max_step).await?;
                    self.todo = self.relevant(listed);
                    continue;
                }
                got => got?,
            };
            self.todo.drain(..n);
            let keys = self.keys.as_ref().map(|k| k.iter().map(String::as_str).collect());
            let tables = decode_all(bytes, keys.as_ref()).await?;
            let order = in_order(&tables, self.min_step..=self.max_step, self.last_seq, self.after);
            if let Some(&(t, r)) = order.last() {
                let t = &tables[t as usize];
                self.after = Some((t.steps[r as usize], t.seqs[r as usize]));
            }
            return Ok(Some((tables, order)));
        }
    }
}

/// The rows of `tables` with a step in `steps`, a sequence number up to `last_seq` and after
/// `after` (step, sequence), in (step, sequence) order.
pub fn in_order(
    tables: &[Table],
    steps: std::ops::RangeInclusive<u64>,
    last_seq: u64,
    after: Option<(u64, u64)>,
) -> Vec<At> {
    let mut all: Vec<(u64, u64, At)> = Vec::new();
    for (t, table) in tables.iter().enumerate() {
        for (r, (&step, &seq)) in table.steps.iter().zip(&table.seqs).enumerate() {
            if steps.contains(&step) && seq <= last_seq && after.is_none_or(|a| (step, seq) > a) {
                all.push((step, seq, (t as u32, r as u32)));
            }
        }
    }
    if !all.is_sorted_by_key(|&(step, seq, _)| (step, seq)) {
        all.sort_unstable_by_key(|&(step, seq, _)| (step, seq));
    }
    all.into_iter().map(|(.., at)| at).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{compact, testing, HISTORY_KIND};
    use super::*;

    /// Rows with sequence numbers `seqs`, the step of seq `s` given by `step(s)`.
    fn rows(seqs: std::ops::Range<u64>, step: impl Fn(u64) -> u64) -> Table {
        let rows: Vec<(u64, u64, i64, String)> = seqs
            .map(|s| (s, step(s), s as i64, format!(r#"{{"loss":{s},"other":1}}"#)))
            .collect();
        Table::from_json_rows(&rows).unwrap()
    }

    /// `(step, seq)` of every row a walk hands out.
    async fn walked(ctx: Ctx<'_>, mut walk: Walk, between: impl AsyncFn(usize)) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut groups = 0;
        while let Some((tables, order)) = walk.next(ctx).await.unwrap() {
            out.extend(order.iter().map(|&(t, r)| {
                let t = &tables[t as usize];
                (t.steps[r as usize], t.seqs[r as usize])
            }));
            groups += 1;
            between(groups).await;
        }
        out
    }

    #[tokio::test]
    async fn a_walk_hands_out_every_row_once_in_step_order_across_overlaps_and_a_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        let ctx = testing::ctx(&db, &store);
        // Ten small segments in order, then one whose steps reach back into the third and
        // fourth (a resumed run that logged earlier steps again).
        for i in 0..10 {
            testing::add(ctx, &rows(i * 50..(i + 1) * 50, |s| s * 2)).await;
        }
        testing::add(ctx, &rows(500..520, |s| 250 + (s - 500) * 5)).await;
        let all = catalog::list(&db, "r", HISTORY_KIND, 0, u64::MAX >> 1)
            .await
            .unwrap();
        let mut expected: Vec<(u64, u64)> = (0..500).map(|s| (s * 2, s)).collect();
        expected.extend((500..520).map(|s| (250 + (s - 500) * 5, s)));
        expected.sort_unstable();
        let walk = Walk::new("r", HISTORY_KIND, None, (0, u64::MAX >> 1), all.clone());
        assert_eq!(walked(ctx, walk, async |_| {}).await, expected);
        // Compaction replaces the segments after the first group was handed out.
        let leases = crate::server::lease::Leases::new().unwrap();
        let walk = Walk::new("r", HISTORY_KIND, None, (0, u64::MAX >> 1), all);
        let compact = async |groups| {
            if groups == 1 {
                assert!(compact::compact_run(ctx, &leases, "r").await.unwrap() > 0);
            }
        };
        assert_eq!(walked(ctx, walk, compact).await, expected);
        // A step range and a key.
        let listed = catalog::list(&db, "r", HISTORY_KIND, 100, 300).await.unwrap();
        let keys = Some(["loss".to_owned()].into());
        let walk = Walk::new("r", HISTORY_KIND, keys, (100, 300), listed);
        let inside: Vec<(u64, u64)> = expected
            .iter()
            .copied()
            .filter(|&(step, _)| (100..=300).contains(&step))
            .collect();
        assert_eq!(walked(ctx, walk, async |_| {}).await, inside);
    }
}
