//! Compaction: a live run synced every few seconds leaves many small segments; they are merged
//! into large ones. The catalog swap is one transaction (old rows out, the merged row in), so a
//! reader sees the old set or the new one, never a gap or a row twice; the old objects are
//! deleted after it, and a reader that listed them reads the catalog again ([`super::read`]).
//! Ingest never waits for it: new segments only add catalog rows, and the run's high-water
//! mark is not touched. One replica compacts at a time, whichever holds the `compact` lease;
//! besides compacting after its own ingests, it sweeps the catalog for runs another replica
//! ingested.

use std::collections::HashMap;

use axum::body::Bytes;

use super::catalog::{self, Segment};
use super::format;
use super::read::fetch;
use super::table::Table;
use super::write::{build, build_spliced, delete, Built};
use super::{Ctx, KINDS};
use crate::server::db::begin_write;
use crate::server::error::ServerError;
use crate::server::lease::Leases;
use crate::server::{background, AppState};

/// A segment of fewer rows than this is small: merged once enough of them gather.
pub const SMALL_ROWS: u64 = 1 << 16;
/// Small segments of a run's kind that start a compaction.
pub const MERGE_AT: u64 = 8;
/// Most rows a merge puts into one segment: it holds them all decoded at once (about 40 MB at
/// ten keys), so this bounds the memory of compaction.
pub const TARGET_ROWS: u64 = 1 << 18;
/// The database lease that makes one replica the compactor.
const LEASE: &str = "compact";
/// How long the lease holds without renewal.
const LEASE_MS: i64 = 60_000;
/// How often each replica looks for runs to compact that no ingest of its own announced.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// After an ingest committed: compacts the run in the background if it has gathered
/// [`MERGE_AT`] small segments of a kind. Compactions of this process run one at a time.
pub fn after_ingest(state: &AppState, run_id: &str) {
    let (state, run_id) = (state.clone(), run_id.to_owned());
    tokio::spawn(async move {
        let _one = state.compacting.lock().await;
        if let Err(e) = compact_run(Ctx::of(&state), &state.leases, &run_id).await {
            log::warn!("tidelog server: compacting run {run_id:?}: {e}");
        }
    });
}

/// Compacts crowded runs for as long as the server runs: the lease may sit with a replica
/// that did not ingest a run's segments, so [`after_ingest`] alone would leave them small.
pub async fn compactor(state: AppState) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let _one = state.compacting.lock().await;
        if let Err(e) = sweep(Ctx::of(&state), &state.leases).await {
            log::warn!("tidelog server: compaction sweep: {e}");
        }
    }
}

/// Compacts every run that has gathered [`MERGE_AT`] small segments of a kind, while this
/// process holds the lease; returns the merges done.
pub async fn sweep(ctx: Ctx<'_>, leases: &Leases) -> Result<u64, ServerError> {
    let mut merges = 0;
    for run_id in catalog::crowded(ctx.db, SMALL_ROWS, MERGE_AT).await? {
        merges += compact_run(ctx, leases, &run_id).await?;
    }
    Ok(merges)
}

/// Merges the run's small segments of each kind while [`MERGE_AT`] of them remain and this
/// process holds the lease; returns the merges done.
pub async fn compact_run(ctx: Ctx<'_>, leases: &Leases, run_id: &str) -> Result<u64, ServerError> {
    let mut merges = 0;
    for kind in KINDS {
        while catalog::count_small(ctx.db, run_id, kind, SMALL_ROWS).await? >= MERGE_AT {
            if !leases.hold(ctx.db, LEASE, LEASE_MS).await? {
                return Ok(merges);
            }
            let mut group = Vec::new();
            let mut rows = 0;
            for s in catalog::small(ctx.db, run_id, kind, SMALL_ROWS).await? {
                if !group.is_empty() && rows + s.rows > TARGET_ROWS {
                    break;
                }
                rows += s.rows;
                group.push(s);
            }
            if group.len() < 2 || !merge(ctx, run_id, kind, &group).await? {
                break;
            }
            merges += 1;
        }
    }
    Ok(merges)
}

/// Replaces `group` (segments of the run's `kind`, by first sequence number) by one segment
/// of all their rows; false when the catalog no longer held all of them (nothing changed).
pub async fn merge(ctx: Ctx<'_>, run_id: &str, kind: &str, group: &[Segment]) -> Result<bool, ServerError> {
    let objects: Vec<&str> = group.iter().map(|s| s.object.as_str()).collect();
    let bytes = fetch(ctx.store, &objects).await?;
    let rows: u64 = group.iter().map(|s| s.rows).sum();
    let aggs = if rows >= group.len() as u64 * format::SPLICE_MIN_ROWS {
        Some(stand_ins(ctx, group, &objects, &bytes).await?)
    } else {
        None
    };
    let (run, k, members) = (run_id.to_owned(), kind.to_owned(), group.to_vec());
    let built = background::run("tidelog-compact", move || {
        let decoded = |objects: Vec<Bytes>| -> Result<Vec<Table>, ServerError> {
            objects
                .into_iter()
                .map(|b| format::decode(b, &|_| true))
                .collect()
        };
        if let Some((fine, coarse)) = aggs {
            if let Some(data) = format::splice(&bytes)? {
                return build_spliced(&members, data, decoded(fine)?, decoded(coarse)?);
            }
        }
        build(&run, &k, &Table::concat(decoded(bytes)?))
    })
    .await?;
    let Some(built) = built else {
        return Ok(false);
    };
    built.put(ctx.store).await?;
    match swap(ctx, group, &built).await {
        Ok(true) => {
            delete(ctx.store, group.iter().flat_map(Segment::objects)).await;
            Ok(true)
        }
        other => {
            built.discard(ctx.store).await;
            other
        }
    }
}

/// What stands for each member of `group` in the merged segment's fine and coarse
/// pre-aggregates: its own, else its fine one, else its rows (`bytes` of `objects`); each
/// object read once.
async fn stand_ins(
    ctx: Ctx<'_>,
    group: &[Segment],
    objects: &[&str],
    bytes: &[Bytes],
) -> Result<(Vec<Bytes>, Vec<Bytes>), ServerError> {
    let picks: Vec<[&str; 2]> = group
        .iter()
        .map(|s| {
            let fine = s.agg.as_deref().unwrap_or(&s.object);
            [fine, s.agg2.as_deref().unwrap_or(fine)]
        })
        .collect();
    let mut wanted: Vec<&str> = picks
        .iter()
        .flatten()
        .copied()
        .filter(|k| !objects.contains(k))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let fetched = fetch(ctx.store, &wanted).await?;
    let by_key: HashMap<&str, &Bytes> = objects
        .iter()
        .zip(bytes)
        .chain(wanted.iter().zip(&fetched))
        .map(|(k, b)| (*k, b))
        .collect();
    let level = |i: usize| picks.iter().map(|p| by_key[p[i]].clone()).collect();
    Ok((level(0), level(1)))
}

/// The catalog swap: `group`'s rows out and `built`'s in, in one transaction.
async fn swap(ctx: Ctx<'_>, group: &[Segment], built: &Built) -> Result<bool, ServerError> {
    let mut tx = begin_write(ctx.db, ctx.sqlite).await?;
    let old: Vec<&str> = group.iter().map(|s| s.object.as_str()).collect();
    if !catalog::remove(&mut tx, &old).await? {
        return Ok(false);
    }
    built.segment.insert(&mut tx).await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::read::{tables, Query};
    use super::super::{testing, HISTORY_KIND};
    use super::*;

    /// Rows `range` with a number and, every third row, a string.
    fn rows(range: std::ops::Range<u64>) -> Table {
        let rows: Vec<(u64, u64, i64, String)> = range
            .map(|i| {
                let data = if i % 3 == 0 {
                    format!(r#"{{"loss":{},"note":"n{i}"}}"#, 1.0 / (i + 1) as f64)
                } else {
                    format!(r#"{{"loss":{}}}"#, i as f64)
                };
                (i, i, 1_000 + i as i64, data)
            })
            .collect();
        Table::from_json_rows(&rows).unwrap()
    }

    #[tokio::test]
    async fn readers_see_the_old_set_or_the_new_one_and_a_stale_listing_reads_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        let ctx = testing::ctx(&db, &store);
        for i in 0..10 {
            testing::add(ctx, &rows(i * 50..(i + 1) * 50)).await;
        }
        let q = Query {
            kind: HISTORY_KIND,
            run_id: "r",
            keys: None,
            min_step: 0,
            max_step: i64::MAX as u64,
            levels: None,
        };
        let whole = rows(0..500);
        assert_eq!(Table::concat(tables(ctx, &q).await.unwrap()), whole);
        let stale = catalog::list(&db, "r", HISTORY_KIND, 0, i64::MAX as u64)
            .await
            .unwrap();
        assert_eq!(stale.len(), 10);
        let reader = async {
            for _ in 0..40 {
                let seen = Table::concat(tables(ctx, &q).await.unwrap());
                assert_eq!(seen, whole, "a reader saw a gap or a row twice");
                tokio::task::yield_now().await;
            }
        };
        let leases = Leases::new().unwrap();
        let ((), merges) = tokio::join!(reader, compact_run(ctx, &leases, "r"));
        assert_eq!(merges.unwrap(), 1);
        let now = catalog::list(&db, "r", HISTORY_KIND, 0, i64::MAX as u64)
            .await
            .unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].first_seq, now[0].last_seq, now[0].rows), (0, 499, 500));
        let err = fetch(&store, &[stale[0].object.as_str()]).await.unwrap_err();
        assert!(
            matches!(
                err,
                ServerError::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(Table::concat(tables(ctx, &q).await.unwrap()), whole);
        let other = Leases::new().unwrap();
        for i in 10..20 {
            testing::add(ctx, &rows(i * 50..(i + 1) * 50)).await;
        }
        assert_eq!(
            compact_run(ctx, &other, "r").await.unwrap(),
            0,
            "a replica without the lease compacted"
        );
        assert_eq!(compact_run(ctx, &leases, "r").await.unwrap(), 1);
        assert_eq!(Table::concat(tables(ctx, &q).await.unwrap()), rows(0..1000));
    }

    #[tokio::test]
    async fn the_lease_holder_compacts_runs_another_replica_ingested_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        holder_compacts_runs_another_replica_ingested(testing::ctx(&db, &store)).await;
    }

    #[tokio::test]
    async fn the_lease_holder_compacts_runs_another_replica_ingested_on_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open_postgres(dir.path()).await;
        holder_compacts_runs_another_replica_ingested(testing::ctx(&db, &store)).await;
    }

    async fn holder_compacts_runs_another_replica_ingested(ctx: Ctx<'_>) {
        let db = ctx.db;
        let (holder, other) = (Leases::new().unwrap(), Leases::new().unwrap());
        for i in 0..8 {
            testing::add_to(ctx, "a", &rows(i * 50..(i + 1) * 50)).await;
        }
        assert_eq!(
            sweep(ctx, &holder).await.unwrap(),
            1,
            "the first sweep took the lease"
        );
        for i in 0..3 {
            testing::add_to(ctx, "few", &rows(i * 50..(i + 1) * 50)).await;
        }
        for i in 0..9 {
            testing::add_to(ctx, "b", &rows(i * 50..(i + 1) * 50)).await;
        }
        assert_eq!(catalog::crowded(db, SMALL_ROWS, MERGE_AT).await.unwrap(), ["b"]);
        assert_eq!(
            compact_run(ctx, &other, "b").await.unwrap(),
            0,
            "b's ingester has no lease"
        );
        assert_eq!(sweep(ctx, &holder).await.unwrap(), 1);
        let b = catalog::of_run(db, "b").await.unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].first_seq, b[0].last_seq, b[0].rows), (0, 449, 450));
        assert_eq!(
            catalog::of_run(db, "few").await.unwrap().len(),
            3,
            "too few to merge"
        );
        assert!(catalog::crowded(db, SMALL_ROWS, MERGE_AT)
            .await
            .unwrap()
            .is_empty());
    }

    /// `n` segments of `per` rows each added to run `r`, the one numbered `extra_in` with a
    /// key of its own; the whole table.
    async fn add_many(ctx: Ctx<'_>, n: u64, per: u64, extra_in: Option<u64>) -> Table {
        let mut parts = Vec::new();
        for i in 0..n {
            let mut t = rows(i * per..(i + 1) * per);
            if extra_in == Some(i) {
                let mut extra = t.cols[0].clone();
                extra.name = "extra".into();
                t.cols.push(extra);
            }
            testing::add(ctx, &t).await;
            parts.push(t);
        }
        Table::concat(parts)
    }

    /// The run's history read whole, through fine pre-aggregates, and through coarse ones.
    async fn reads(ctx: Ctx<'_>) -> [Table; 3] {
        let at = |levels| Query {
            kind: HISTORY_KIND,
            run_id: "r",
            keys: None,
            min_step: 0,
            max_step: i64::MAX as u64,
            levels,
        };
        let fine = Some(super::super::read::Levels {
            fine_over: 0,
            coarse_over: u64::MAX,
        });
        let coarse = Some(super::super::read::Levels {
            fine_over: 0,
            coarse_over: 0,
        });
        let mut out = Vec::new();
        for levels in [None, fine, coarse] {
            out.push(Table::concat(tables(ctx, &at(levels)).await.unwrap()));
        }
        out.try_into().unwrap()
    }

    async fn row_groups(ctx: Ctx<'_>, object: &str) -> usize {
        use parquet::file::reader::FileReader;
        let bytes = fetch(ctx.store, &[object]).await.unwrap().remove(0);
        parquet::file::serialized_reader::SerializedFileReader::new(bytes)
            .unwrap()
            .num_row_groups()
    }

    /// Compacts run `r` into one segment of `whole`'s stats; it and its row groups.
    async fn merged_once(ctx: Ctx<'_>, whole: &Table) -> (Segment, usize) {
        let leases = Leases::new().unwrap();
        assert_eq!(compact_run(ctx, &leases, "r").await.unwrap(), 1);
        let mut now = catalog::list(ctx.db, "r", HISTORY_KIND, 0, i64::MAX as u64)
            .await
            .unwrap();
        assert_eq!(now.len(), 1);
        let merged = now.remove(0);
        assert_eq!(merged.stats, catalog::stats(whole));
        let groups = row_groups(ctx, &merged.object).await;
        (merged, groups)
    }

    #[tokio::test]
    async fn large_segments_are_spliced_and_read_the_same_at_every_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = testing::open(dir.path()).await;
        let ctx = testing::ctx(&db, &store);
        let per = format::SPLICE_MIN_ROWS + 808;
        let whole = add_many(ctx, MERGE_AT, per, None).await;
        let before = reads(ctx).await;
        assert_eq!(before[0], whole);
        assert!(
            before[1].len() < whole.len() / 20,
            "fine pre-aggregates were read"
        );
        let (merged, groups) = merged_once(ctx, &whole).await;
        assert_eq!(
            groups, MERGE_AT as usize,
            "the members' row groups were copied, not re-encoded"
        );
        assert_eq!(
            (merged.first_seq, merged.last_seq, merged.rows),
            (0, whole.len() as u64 - 1, whole.len() as u64)
        );
        assert!(merged.agg.is_some() && merged.agg2.is_some());
        assert_eq!(reads(ctx).await, before);
    }

    #[tokio::test]
    async fn segments_of_other_keys_or_small_ones_are_merged_by_re_encoding() {
        for (per, extra_in) in [
            (format::SPLICE_MIN_ROWS + 808, Some(3)),
            (format::SPLICE_MIN_ROWS / 2, None),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (db, store) = testing::open(dir.path()).await;
            let ctx = testing::ctx(&db, &store);
            let whole = add_many(ctx, MERGE_AT, per, extra_in).await;
            let (_, groups) = merged_once(ctx, &whole).await;
            assert_eq!(groups, 1, "per {per}, extra {extra_in:?}");
            assert_eq!(reads(ctx).await[0], whole);
        }
    }
}
