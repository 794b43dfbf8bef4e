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

/// Runs `a` and `b` together: `b` works while `a` waits on the network.
pub(super) async fn both<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(x) = a.as_mut().poll(cx) {
                ra = Some(x);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(y) = b.as_mut().poll(cx) {
                rb = Some(y);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => std::task::Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                std::task::Poll::Pending
            }
        }
    })
    .await
}
