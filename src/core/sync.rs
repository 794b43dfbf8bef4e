//! The sync engine: turns unacknowledged records into bundles and sends them exactly once,
//! resuming interrupted uploads. I/O goes through the [`RunStore`] and [`Transport`] seams,
//! so the same engine runs natively, in Node and in the browser.

use std::collections::BTreeSet;
use std::fmt::Display;

#[cfg(not(target_arch = "wasm32"))]
use super::ahead::Ahead;
use super::bundle::{write_bundle_skipping, BundleError};
use super::checkpoint::Checkpoint;
use super::frame::{is_one_frame, Corruption};
use super::log_index::LogIndex;
#[cfg(not(target_arch = "wasm32"))]
use super::plan::ahead_range;
use super::plan::{fit_files, short_tail, state_for, unsent_files};
pub use super::progress::{PendingUpload, RunStore, SyncProgress};
use super::record::{DecodeError, RunInfo, RunState};
pub use super::transport::{deliver, retry_after_ms, Ack, Transport, TransportError, UploadLedger};

/// Knobs of a sync.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Upload under this project instead of the run's own.
    pub project: Option<String>,
    /// Upload under this entity instead of the run's own.
    pub entity: Option<String>,
    /// Log bytes per bundle.
    pub max_bundle_log_bytes: usize,
    /// Bundles up to this size go in one POST; larger ones through tus.
    pub direct_max: usize,
    /// tus PATCH size.
    pub chunk: usize,
    /// Attempts per bundle for retryable failures.
    pub attempts: u32,
    /// First backoff; doubles per attempt.
    pub backoff_ms: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            project: None,
            entity: None,
            max_bundle_log_bytes: 4 << 20,
            direct_max: 4 << 20,
            chunk: 4 << 20,
            attempts: 4,
            backoff_ms: 500,
        }
    }
}

/// What one run's sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Bundles the server acknowledged.
    pub bundles: u64,
    /// Bundle bytes put on the wire (resumed uploads count only the rest).
    pub bytes_sent: u64,
    /// Rows the server newly stored.
    pub rows_added: u64,
    /// Rows it already had.
    pub duplicates_skipped: u64,
    /// Records acknowledged in total.
    pub acked_records: u64,
    /// Intact records in the log.
    pub total_records: u64,
    /// The state the run was uploaded with.
    pub state: RunState,
    /// Saved files the server refused and that were left out, each as "path (sha256): why":
    /// the run is not fully synced while any is listed.
    pub skipped_files: Vec<String>,
    /// Damaged stretches of the log (the readable records around them were uploaded): the
    /// run is not fully synced while any is listed.
    pub corruption: Vec<Corruption>,
}

/// Why a run could not be synced; progress made before it is kept.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading or writing local state failed.
    #[error("local store: {0}")]
    Store(String),
    /// The log does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The log has no start record, so the run cannot be identified.
    #[error("the log has no start record")]
    NoStart,
    /// Building a bundle failed.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The server or the network refused.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl SyncError {
    /// How long the server asked the client to wait before trying again, if it did.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            SyncError::Transport(TransportError::Status { retry_after_ms, .. }) => *retry_after_ms,
            _ => None,
        }
    }

    pub(crate) fn retryable(&self) -> bool {
        matches!(self, SyncError::Transport(t) if t.retryable())
    }
}

fn store_err(e: impl Display) -> SyncError {
    SyncError::Store(e.to_string())
}

/// A run's progress, saved through its store on every change.
struct StoreLedger<'a, S> {
    store: &'a mut S,
    progress: &'a mut SyncProgress,
}

impl<S: RunStore> UploadLedger for StoreLedger<'_, S> {
    fn current(&self) -> Option<&PendingUpload> {
        self.progress.upload.as_ref()
    }

    async fn remember(&mut self, upload: Option<PendingUpload>) -> Result<(), SyncError> {
        self.progress.upload = upload;
        self.store
            .save_progress(self.progress, None)
            .await
            .map_err(store_err)
    }
}

/// Uploads every unacknowledged record of one run; `on_sent` hears each chunk's size.
///
/// The log is read in windows from the checkpoint of the acknowledged prefix (see
/// [`Checkpoint`]): records there are numbered from the checkpoint's count, so a re-sync
/// reads only what is new, and damage inside the acknowledged prefix never renumbers the
/// records after it. Without a usable checkpoint the log is read from byte 0 and the
/// checkpoint rebuilt on the way.
pub async fn sync_run<S: RunStore, T: Transport>(
    store: &mut S,
    transport: &mut T,
    opts: &SyncOptions,
    on_sent: &mut dyn FnMut(u64),
) -> Result<SyncReport, SyncError> {
    let log_len = store.log_len().await.map_err(store_err)?;
    let live = store.is_live();
    let mut progress = store.progress().await.map_err(store_err)?;
    let mut cp = progress
        .checkpoint
        .take()
        .filter(|c| c.usable(log_len, progress.acked_records))
        .unwrap_or_default();
    if cp.records > 0 {
        let (at, len) = cp.last_record();
        if !is_one_frame(
            &store
                .read_log_at(at, cp.records - 1, len)
                .await
                .map_err(store_err)?,
        ) {
            // The checkpoint's last record is not where it says: another log's; start over.
            cp = Checkpoint::default();
        }
    }
    let base_window = store
        .read_window()
        .max(opts.max_bundle_log_bytes.saturating_mul(2));
    let mut window = base_window;
    let mut report = SyncReport::default();
    let mut rewound = false;
    loop {
        let bytes = store
            .read_log_at(cp.offset, cp.records, window)
            .await
            .map_err(store_err)?;
        let more = bytes.len() == window;
        let index = LogIndex::after(&bytes, more, &cp)?;
        let end = index.len();
        if more && end == cp.records {
            // A record longer than the window, or damage spanning it.
            window = window.saturating_mul(2);
            continue;
        }
        window = base_window;
        if !more && progress.acked_records > end {
            if cp.records > 0 {
                cp = Checkpoint::default();
                continue;
            }
            progress = SyncProgress::default();
        }
        let step = sync_window(
            store,
            transport,
            opts,
            &index,
            &mut progress,
            &mut report,
            &mut *on_sent,
            (!more).then(|| (index.state(live), cp.offset + bytes.len() as u64)),
        )
        .await;
        match step {
            Err(SyncError::Transport(TransportError::Gap { next_seq }))
                if !rewound && next_seq < progress.acked_records =>
            {
                rewound = true;
                progress = SyncProgress {
                    acked_records: next_seq,
                    skipped_files: std::mem::take(&mut progress.skipped_files),
                    ..SyncProgress::default()
                };
                cp = if next_seq >= cp.records && next_seq <= end {
                    index.checkpoint(next_seq)
                } else {
                    Checkpoint::default()
                };
            }
            Err(e) => return Err(e),
            Ok(()) if more => cp = index.checkpoint(progress.acked_records),
            Ok(()) => break,
        }
    }
    report.acked_records = progress.acked_records;
    report.skipped_files = progress
        .skipped_files
        .iter()
        .map(|(sha, why)| format!("{why} [sha256 {sha}]"))
        .collect();
    Ok(report)
}

/// Sends the unacknowledged records of one window of the log. `last` is set for the window
/// that reaches the log's end: the run's state there and the log's length.
#[allow(clippy::too_many_arguments)]
async fn sync_window<S: RunStore, T: Transport>(
    store: &mut S,
    transport: &mut T,
    opts: &SyncOptions,
    index: &LogIndex<'_>,
    progress: &mut SyncProgress,
    report: &mut SyncReport,
    on_sent: &mut dyn FnMut(u64),
    last: Option<(RunState, u64)>,
) -> Result<(), SyncError> {
    let end = index.len();
    let state = last.map(|(s, _)| s);
    let corruption = index.all_corruption();
    if !corruption.is_empty() {
        store.forget_points().await.map_err(store_err)?;
    }
    let synced_bytes = last.filter(|_| corruption.is_empty()).map(|(_, len)| len);
    if let Some(s) = state {
        report.state = s;
        report.total_records = end;
        report.corruption = corruption;
    }
    // A state-only bundle (no records) when the run ended without a record saying so.
    let stale_state = |p: &SyncProgress| {
        p.acked_records == end
            && p.acked_state == Some(RunState::Running)
            && state.is_some_and(|s| s != RunState::Running)
    };
    if last.is_some() && index.run().is_none() {
        return Err(SyncError::NoStart);
    }
    let mut run = None;
    let entered = progress.acked_records;
    #[cfg(not(target_arch = "wasm32"))]
    let mut ahead: Option<Ahead> = None;
    while progress.acked_records < end || stale_state(progress) {
        let run: &RunInfo = match &run {
            Some(r) => r,
            None => run.insert(run_info(index, opts)?),
        };
        let range = match &progress.upload {
            Some(u) if u.seq_start == progress.acked_records && u.seq_end <= end => u.seq_start..u.seq_end,
            _ => {
                let range = fit_files(
                    index,
                    index.plan(progress.acked_records, opts.max_bundle_log_bytes),
                    progress,
                );
                // Never before the window's first bundle: every window makes progress.
                if range.start > entered && short_tail(index, opts, &range, last.is_some()) {
                    break;
                }
                range
            }
        };
        let bundle_state = state_for(state, &range, end);
        let refs = unsent_files(index, range.clone(), progress);
        let skip: BTreeSet<String> = progress.skipped_files.keys().cloned().collect();
        #[cfg(not(target_arch = "wasm32"))]
        let ready = ahead
            .take()
            .filter(|a| refs.is_empty() && a.fits(&range, bundle_state, &skip))
            .map(|a| a.bundle);
        #[cfg(target_arch = "wasm32")]
        let ready = None;
        let bundle = match ready {
            Some(b) => b,
            None => {
                let contents = store.read_files(&refs).await.map_err(store_err)?;
                let files: Vec<_> = refs.iter().map(|f| f.sha256.clone()).zip(contents).collect();
                write_bundle_skipping(index, run, bundle_state, range.clone(), &files, &skip)?
            }
        };
        #[cfg(not(target_arch = "wasm32"))]
        let next = ahead_range(index, opts, progress, range.end)
            .filter(|r| !short_tail(index, opts, r, last.is_some()));
        let mut ledger = StoreLedger {
            store: &mut *store,
            progress: &mut *progress,
        };
        let sent = &mut report.bytes_sent;
        let mut count = |n| {
            *sent += n;
            on_sent(n);
        };
        let delivery = deliver(transport, opts, &bundle, &mut ledger, &mut count);
        #[cfg(not(target_arch = "wasm32"))]
        let ack = {
            let build =
                async { next.and_then(|r| Ahead::build(index, run, state_for(state, &r, end), r, skip)) };
            // `join` polls the delivery first: its request is on the wire before the build runs.
            let (ack, built) = futures_util::future::join(delivery, build).await;
            ahead = built;
            ack
        };
        #[cfg(target_arch = "wasm32")]
        let ack = delivery.await;
        match ack {
            Ok(ack) => {
                report.bundles += 1;
                report.rows_added += ack.rows_added;
                report.duplicates_skipped += ack.duplicates_skipped;
                progress.acked_records = range.end;
                progress.acked_state = Some(bundle_state);
                progress.upload = None;
                progress.checkpoint = Some(index.checkpoint(range.end));
                progress
                    .acked_files
                    .extend(bundle.manifest.entries.iter().filter_map(|e| {
                        e.path
                            .strip_prefix(crate::core::bundle::FILES_DIR)
                            .map(str::to_owned)
                    }));
                let done = synced_bytes.filter(|_| range.end == end && progress.skipped_files.is_empty());
                store.save_progress(progress, done).await.map_err(store_err)?;
            }
            Err(SyncError::Transport(TransportError::Status {
                status: 413, message, ..
            })) if !refs.is_empty() => {
                // The server will not take this bundle's files: leave out the largest and
                // send the records again without it.
                let big = refs.iter().max_by_key(|f| f.size).expect("refs is not empty");
                progress.skipped_files.insert(
                    big.sha256.clone(),
                    format!(
                        "{} ({} bytes): refused by the server: {message}",
                        big.path, big.size
                    ),
                );
                progress.upload = None;
                store.save_progress(progress, None).await.map_err(store_err)?;
            }
            Err(e) => return Err(e),
        }
    }
    if progress.acked_records == end && progress.skipped_files.is_empty() && last.is_some() {
        progress.checkpoint = Some(index.checkpoint(end));
        store
            .save_progress(progress, synced_bytes)
            .await
            .map_err(store_err)?;
    }
    Ok(())
}

/// The run's identity as uploaded: its start record, with the project and entity overrides.
fn run_info(index: &LogIndex<'_>, opts: &SyncOptions) -> Result<RunInfo, SyncError> {
    let mut run = index.run().cloned().ok_or(SyncError::NoStart)?;
    if let Some(p) = &opts.project {
        run.project = p.clone();
    }
    if let Some(e) = &opts.entity {
        run.entity = Some(e.clone());
    }
    Ok(run)
}
