//! Building the next bundle while the one before it is on the wire: the sync engine's
//! overlap of its own work with the server's. Natively only, where the transport sends from
//! a thread of its own; in the wasm module the overlap cost 0.8 KB gzipped, over its size
//! budget.

use std::collections::BTreeSet;
use std::ops::Range;

use super::bundle::{write_bundle_skipping, Bundle};
use super::log_index::LogIndex;
use super::record::{RunInfo, RunState};

/// A bundle built ahead of its turn, with what it was built for.
pub(super) struct Ahead {
    range: Range<u64>,
    state: RunState,
    skip: BTreeSet<String>,
    /// What goes on the wire when its turn comes.
    pub bundle: Bundle,
}

impl Ahead {
    /// Whether this bundle is the one to send for `range` in `state`, skipping `skip`.
    pub fn fits(&self, range: &Range<u64>, state: RunState, skip: &BTreeSet<String>) -> bool {
        self.range == *range && self.state == state && self.skip == *skip
    }

    /// Builds the bundle of `range`; a failure is left for its turn, which reports it.
    pub fn build(
        index: &LogIndex<'_>,
        run: &RunInfo,
        state: RunState,
        range: Range<u64>,
        skip: BTreeSet<String>,
    ) -> Option<Ahead> {
        let bundle = write_bundle_skipping(index, run, state, range.clone(), &[], &skip).ok()?;
        Some(Ahead {
            range,
            state,
            skip,
            bundle,
        })
    }
}
