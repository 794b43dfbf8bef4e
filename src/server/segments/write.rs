//! Making segments: a table becomes a Parquet object under a key no other write uses, with its
//! catalog row and, for a long one, M4 pre-aggregates beside it at two resolutions.

use axum::body::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

use super::catalog::{merged_stats, stats, Segment};
use super::format;
use super::table::{Cells, Table};
use crate::server::auth::random_hex;
use crate::server::error::ServerError;
use crate::server::store::Store;

/// Values of a key per bucket of the fine pre-aggregate: its first, last, minimum and maximum
/// are kept.
pub const FINE: usize = 256;

/// Values of a key per bucket of the coarse pre-aggregate, so that a chart of a 10 M-step run
/// reads about as many rows as one of a 1 M-step run reads at [`FINE`].
pub const COARSE: usize = 4096;

/// A segment made but not yet stored: its row, its bytes and its pre-aggregates'.
pub struct Built {
    /// The catalog row.
    pub segment: Segment,
    data: Bytes,
    agg: Option<Bytes>,
    agg2: Option<Bytes>,
}

/// The rows a coarse chart needs of `t`: per key and per `per` of its values, the rows of
/// the first, last, smallest and largest one; each row keeps only the keys it was kept for.
fn candidates(t: &Table, per: usize) -> Table {
    let mut keep: Vec<Vec<u32>> = Vec::with_capacity(t.cols.len());
    for c in &t.cols {
        let parsed: Vec<f64>;
        let values: &[f64] = match &c.cells {
            Cells::Num(v) => v,
            Cells::Json(_) => {
                parsed = (0..c.cells.len()).map(|i| c.cells.chart(i)).collect();
                &parsed
            }
        };
        let mut picked = Vec::with_capacity(values.len().div_ceil(per) * 4);
        for (b, chunk) in values.chunks(per).enumerate() {
            let start = b * per;
            // The first smallest and first largest number of the bucket; NaN is no number.
            let (mut lo, mut hi) = (None::<usize>, None::<usize>);
            for (i, &v) in chunk.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                if lo.is_none_or(|m| v < chunk[m]) {
                    lo = Some(i);
                }
                if hi.is_none_or(|m| v > chunk[m]) {
                    hi = Some(i);
                }
            }
            picked.extend(
                [Some(0), Some(chunk.len() - 1), lo, hi]
                    .into_iter()
                    .flatten()
                    .map(|i| c.rows[start + i]),
            );
        }
        picked.sort_unstable();
        picked.dedup();
        keep.push(picked);
    }
    let mut rows: Vec<u32> = keep.iter().flatten().copied().collect();
    rows.sort_unstable();
    rows.dedup();
    t.subset(&rows, |ci, r| keep[ci].binary_search(&r).is_ok())
}

/// Fresh object keys for rows `first..=last` of a run's `kind`: the rows', and the fine and
/// coarse pre-aggregates'.
fn keys(run_id: &str, kind: &str, first: u64, last: u64) -> Result<[Key; 3], ServerError> {
    let name = format!("{first:020}-{last:020}-{}", random_hex(8)?);
    let at = |ext: &str| Key::from_iter(["segments", run_id, kind, &format!("{name}{ext}")]);
    Ok([at(".parquet"), at(".m4.parquet"), at(".m16.parquet")])
}

/// The pre-aggregate of `t` at `per` values a bucket, when `t` is long enough for it to
/// save reading.
fn pre_aggregate(t: &Table, per: usize) -> Result<Option<Bytes>, ServerError> {
    if t.len() <= 4 * per {
        return Ok(None);
    }
    Ok(Some(Bytes::from(format::encode_small(&candidates(t, per))?)))
}

/// Encodes `t` (rows in sequence order) as a segment of the run's `kind`; `None` when it
/// has no rows. Blocking: call it off the async threads.
pub fn build(run_id: &str, kind: &str, t: &Table) -> Result<Option<Built>, ServerError> {
    let (Some(&first_seq), Some(&last_seq)) = (t.seqs.first(), t.seqs.last()) else {
        return Ok(None);
    };
    let keys = keys(run_id, kind, first_seq, last_seq)?;
    // The three encodings are independent: while one sync waits for its answer, the rows and
    // the two pre-aggregates encode on cores of their own.
    let (data, agg, agg2) = std::thread::scope(|s| {
        let agg = s.spawn(|| pre_aggregate(t, FINE));
        let agg2 = s.spawn(|| pre_aggregate(t, COARSE));
        let data = format::encode(t).map(Bytes::from);
        let join = |h: std::thread::ScopedJoinHandle<'_, _>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        (data, join(agg), join(agg2))
    });
    let segment = Segment {
        object: String::new(),
        agg: None,
        agg2: None,
        run_id: run_id.to_owned(),
        kind: kind.to_owned(),
        first_seq,
        last_seq,
        min_step: t.steps.iter().copied().min().unwrap_or(0),
        max_step: t.steps.iter().copied().max().unwrap_or(0),
        rows: t.len() as u64,
        bytes: 0,
        stats: stats(t),
    };
    Ok(Some(Built::new(segment, keys, data?, agg?, agg2?)))
}

/// The segment of `group`'s rows (in sequence order) already spliced into `data`
/// ([`format::splice`]), its pre-aggregates made of theirs: `fine` and `coarse` hold, per
/// member, its own fine and coarse one (its fine one, or its rows, where it has none). A
/// bucket of a member's pre-aggregate is a bucket of the whole, so their rows stand for it.
pub fn build_spliced(
    group: &[Segment],
    data: Vec<u8>,
    fine: Vec<Table>,
    coarse: Vec<Table>,
) -> Result<Option<Built>, ServerError> {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Ok(None);
    };
    let rows: u64 = group.iter().map(|s| s.rows).sum();
    let keys = keys(&first.run_id, &first.kind, first.first_seq, last.last_seq)?;
    let joined = |tables: Vec<Table>, per: usize| -> Result<Option<Bytes>, ServerError> {
        if rows <= 4 * per as u64 {
            return Ok(None);
        }
        Ok(Some(Bytes::from(format::encode_small(&Table::concat(tables))?)))
    };
    let segment = Segment {
        object: String::new(),
        agg: None,
        agg2: None,
        run_id: first.run_id.clone(),
        kind: first.kind.clone(),
        first_seq: first.first_seq,
        last_seq: last.last_seq,
        min_step: group.iter().map(|s| s.min_step).min().unwrap_or(0),
        max_step: group.iter().map(|s| s.max_step).max().unwrap_or(0),
        rows,
        bytes: 0,
        stats: merged_stats(group),
    };
    let (agg, agg2) = (joined(fine, FINE)?, joined(coarse, COARSE)?);
    Ok(Some(Built::new(segment, keys, Bytes::from(data), agg, agg2)))
}

/// A key as the catalog stores it, parsed back.
pub fn parse_key(key: &str) -> Result<Key, ServerError> {
    Key::parse(key).map_err(|e| ServerError::Corrupt(format!("segment key {key:?}: {e}")))
}

impl Built {
    /// `segment` with its objects named by `keys` (rows, fine, coarse) and sized.
    fn new(
        mut segment: Segment,
        keys: [Key; 3],
        data: Bytes,
        agg: Option<Bytes>,
        agg2: Option<Bytes>,
    ) -> Built {
        let [object, agg_key, agg2_key] = keys;
        let named = |bytes: &Option<Bytes>, key: Key| bytes.as_ref().map(|_| key.as_ref().to_owned());
        segment.object = object.as_ref().to_owned();
        segment.agg = named(&agg, agg_key);
        segment.agg2 = named(&agg2, agg2_key);
        segment.bytes = [Some(&data), agg.as_ref(), agg2.as_ref()]
            .into_iter()
            .flatten()
            .map(|b| b.len() as u64)
            .sum();
        Built {
            segment,
            data,
            agg,
            agg2,
        }
    }

    /// Writes the objects; on failure none is left behind.
    pub async fn put(&self, store: &Store) -> Result<(), ServerError> {
        let mut done = Vec::new();
        let objects = std::iter::once((&self.segment.object, &self.data))
            .chain(self.segment.agg.as_ref().zip(self.agg.as_ref()))
            .chain(self.segment.agg2.as_ref().zip(self.agg2.as_ref()));
        for (key, bytes) in objects {
            let put = store.put(&parse_key(key)?, PutPayload::from(bytes.clone())).await;
            if let Err(e) = put {
                delete(store, done.into_iter()).await;
                return Err(store.failed("writing a segment", e));
            }
            done.push(key.as_str());
        }
        Ok(())
    }

    /// Deletes the objects of a segment that never made it into the catalog.
    pub async fn discard(&self, store: &Store) {
        delete(store, self.segment.objects()).await;
    }
}

/// Deletes objects no catalog row names any more; a failure is logged (the object is only
/// wasted space) rather than failing what already committed.
pub async fn delete<'a>(store: &Store, objects: impl Iterator<Item = &'a str>) {
    for key in objects {
        store.cache().forget(key);
        let res = match parse_key(key) {
            Ok(k) => store
                .delete(&k)
                .await
                .map_err(|e| store.failed("deleting a segment", e)),
            Err(e) => Err(e),
        };
        match res {
            Ok(())
            | Err(ServerError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => {}
            Err(e) => log::warn!("tidelog server: {e}"),
        }
    }
}
