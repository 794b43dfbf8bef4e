//! Reading segments: the catalog names the segments of a step range, only the keys asked are
//! decoded, and a sampled read over many rows takes a segment's pre-aggregate (fine or coarse)
//! instead of its rows. A read that
//! finds an object gone (compaction replaced it after the catalog was read) starts again.

use std::collections::HashSet;

use axum::body::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use super::catalog::{self, Segment};
use super::format;
use super::table::Table;
use super::write::parse_key;
use super::Ctx;
use crate::server::error::ServerError;
use crate::server::store::Store;

/// Reads a run's segments from scratch this many times when objects vanish under them.
const ATTEMPTS: usize = 5;

/// Objects fetched at once.
const FETCHES: usize = 8;

/// What to read.
pub struct Query<'a> {
    /// `history` or `system`.
    pub kind: &'a str,
    /// Run id.
    pub run_id: &'a str,
    /// Only these keys (`None`: all).
    pub keys: Option<&'a HashSet<&'a str>>,
    /// Lowest step, inclusive.
    pub min_step: u64,
    /// Highest step, inclusive.
    pub max_step: u64,
    /// When pre-aggregates may stand for segments wholly inside the range.
    pub levels: Option<Levels>,
}

/// Row counts past which a read takes pre-aggregates: when the segments of the range hold
/// more rows than `fine_over`, the fine ones; more than `coarse_over`, the coarse ones.
#[derive(Clone, Copy, Debug)]
pub struct Levels {
    /// Past this many rows, fine pre-aggregates.
    pub fine_over: u64,
    /// Past this many rows, coarse pre-aggregates (fine ones where a segment has none).
    pub coarse_over: u64,
}

/// Which object stands for `s` in a read of `rows` rows: a pre-aggregate when the read is
/// long enough and `s` lies inside the step range, otherwise its rows.
fn object<'s>(s: &'s Segment, q: &Query<'_>, rows: u64) -> &'s str {
    let inside = s.min_step >= q.min_step && s.max_step <= q.max_step;
    let Some(levels) = q.levels.filter(|_| inside) else {
        return &s.object;
    };
    let coarse = s.agg2.as_deref().filter(|_| rows > levels.coarse_over);
    let fine = s.agg.as_deref().filter(|_| rows > levels.fine_over);
    coarse.or(fine).unwrap_or(&s.object)
}

/// The segments' tables, in catalog order (by first step), with only the keys asked.
pub async fn tables(ctx: Ctx<'_>, q: &Query<'_>) -> Result<Vec<Table>, ServerError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut segs = catalog::list(ctx.db, q.run_id, q.kind, q.min_step, q.max_step).await?;
        if let Some(keys) = q.keys {
            segs.retain(|s| s.stats.keys().any(|k| keys.contains(k.as_str())));
        }
        let rows: u64 = segs.iter().map(|s| s.rows).sum();
        let objects: Vec<&str> = segs.iter().map(|s| object(s, q, rows)).collect();
        match fetch(ctx.store, &objects).await {
            Ok(bytes) => return decode_all(bytes, q.keys).await,
            Err(
                e @ ServerError::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                },
            ) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| ServerError::Corrupt("segments kept vanishing".into())))
}

/// The objects' bytes, in order.
pub async fn fetch(store: &Store, objects: &[&str]) -> Result<Vec<Bytes>, ServerError> {
    let keys = objects
        .iter()
        .map(|k| parse_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let store = store.clone();
    futures_util::stream::iter(keys)
        .map(move |k| {
            let store = store.clone();
            async move {
                if let Some(kept) = store.cache().get(k.as_ref()) {
                    return Ok(kept);
                }
                let got = store
                    .get(&k)
                    .await
                    .map_err(|e| store.failed("reading a segment", e))?;
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|e| store.failed("reading a segment", e))?;
                store.cache().put(k.as_ref(), &bytes);
                Ok(bytes)
            }
        })
        .buffered(FETCHES)
        .try_collect()
        .await
}

/// Decodes segments off the async threads, keeping only `keys`.
pub async fn decode_all(bytes: Vec<Bytes>, keys: Option<&HashSet<&str>>) -> Result<Vec<Table>, ServerError> {
    let keys: Option<HashSet<String>> = keys.map(|k| k.iter().map(|s| (*s).to_owned()).collect());
    tokio::task::spawn_blocking(move || {
        let wanted = |k: &str| keys.as_ref().is_none_or(|keys| keys.contains(k));
        bytes.into_iter().map(|b| format::decode(b, &wanted)).collect()
    })
    .await?
}
