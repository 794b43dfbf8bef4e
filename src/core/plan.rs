//! What each bundle of a sync holds: its record range (cut where its files would outgrow
//! their budget, a window's short tail left to the next window) and the state it carries.

use std::collections::BTreeSet;
use std::ops::Range;

use super::bundle::MAX_BUNDLE_FILE_BYTES;
use super::log_index::LogIndex;
use super::progress::SyncProgress;
use super::record::{decode, FileRef, Meta, Record, RunState};
use super::sync::SyncOptions;

/// Whether `range` is the short tail of a window that does not reach the log's end: it goes
/// in the next window's first bundle instead of a bundle of its own, a round trip for a few
/// records (a third of a 10 M-step sync's bundles were such).
pub(super) fn short_tail(index: &LogIndex<'_>, opts: &SyncOptions, range: &Range<u64>, last: bool) -> bool {
    !last
        && range.end == index.len()
        && index.offset(range.end) - index.offset(range.start) < opts.max_bundle_log_bytes / 2
}

/// The state a bundle of `range` carries: the run's, for the one that reaches the log's
/// `end` of the window that has it; running before.
pub(super) fn state_for(state: Option<RunState>, range: &Range<u64>, end: u64) -> RunState {
    match state {
        Some(s) if range.end == end => s,
        _ => RunState::Running,
    }
}

/// The range after `from` when its bundle would carry no files: only then can it be built
/// before `from` is acknowledged.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn ahead_range(
    index: &LogIndex<'_>,
    opts: &SyncOptions,
    progress: &SyncProgress,
    from: u64,
) -> Option<Range<u64>> {
    Some(fit_files(
        index,
        index.plan(from, opts.max_bundle_log_bytes),
        progress,
    ))
    .filter(|r| !r.is_empty() && unsent_files(index, r.clone(), progress).is_empty())
}

/// The saved files records `range` refer to that the server has neither acknowledged nor
/// refused, in first-reference order.
pub(super) fn unsent_files(index: &LogIndex<'_>, range: Range<u64>, progress: &SyncProgress) -> Vec<FileRef> {
    index
        .files(range)
        .into_iter()
        .filter(|f| {
            !progress.acked_files.contains(&f.sha256) && !progress.skipped_files.contains_key(&f.sha256)
        })
        .collect()
}

/// Ends `range` early where the files its bundle would carry outgrow
/// [`MAX_BUNDLE_FILE_BYTES`]; the first record always stays, so a range is never empty.
pub(super) fn fit_files(index: &LogIndex<'_>, range: Range<u64>, progress: &SyncProgress) -> Range<u64> {
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    for (seq, payload) in index.payloads(range.clone()) {
        let Ok(Record::Meta(Meta::File(f))) = decode(payload) else {
            continue;
        };
        let fresh = !progress.acked_files.contains(&f.sha256)
            && !progress.skipped_files.contains_key(&f.sha256)
            && seen.insert(f.sha256);
        if fresh {
            total = total.saturating_add(f.size);
            if total > MAX_BUNDLE_FILE_BYTES && seq > range.start {
                return range.start..seq;
            }
        }
    }
    range
}
