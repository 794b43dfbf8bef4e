//! The sync engine: turns unacknowledged records into bundles and sends them exactly once,
//! resuming interrupted uploads. I/O goes through the [`RunStore`] and [`Transport`] seams,
//! so the same engine runs natively, in Node and in the browser.

use std::collections::BTreeSet;
use std::fmt::Display;

use serde::{Deserialize, Serialize};

use super::bundle::{write_bundle, Bundle, BundleError};
use super::log_index::LogIndex;
use super::record::{DecodeError, FileRef, RunState};

/// How far a run's upload got; persisted by the store between syncs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Records `0..acked_records` are acknowledged by the server.
    pub acked_records: u64,
    /// A resumable upload under way, to continue rather than restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<PendingUpload>,
    /// Saved files (by sha256) the server acknowledged: later bundles leave them out.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acked_files: BTreeSet<String>,
    /// The run state the server last acknowledged: a run synced while `running` whose
    /// process has since died is synced again, to tell the server it `crashed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_state: Option<RunState>,
}

/// A tus upload that was created but may not have finished.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// The upload's URL on the server.
    pub url: String,
    /// SHA-256 of the bundle being uploaded.
    pub sha256: String,
    /// The record range the bundle covers.
    pub seq_start: u64,
    /// One past the last record covered.
    pub seq_end: u64,
}

/// What the server said about an ingested bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// History and system rows newly stored.
    pub rows_added: u64,
    /// Rows it already had.
    pub duplicates_skipped: u64,
}

/// A failed exchange with the server.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No connection, a timeout or a cut transfer: worth retrying.
    #[error("network error: {0}")]
    Network(String),
    /// The server answered with an error status.
    #[error("server answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The server's reason.
        message: String,
    },
    /// The server is missing records before this bundle and wants them from `next_seq`.
    #[error("server expects records from {next_seq}")]
    Gap {
        /// The first record the server lacks.
        next_seq: u64,
    },
}

impl TransportError {
    /// The error for a server's error answer: its JSON `{"error", "next_seq"}` body when it
    /// has one, a 409 with `next_seq` as a [`TransportError::Gap`].
    pub fn from_response(status: u16, body: &str) -> TransportError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: Option<String>,
            next_seq: Option<u64>,
        }
        let parsed: Option<ErrorBody> = serde_json::from_str(body).ok();
        if let (409, Some(next_seq)) = (status, parsed.as_ref().and_then(|b| b.next_seq)) {
            return TransportError::Gap { next_seq };
        }
        let message = parsed.and_then(|b| b.error).unwrap_or_else(|| body.to_owned());
        let message = match status {
            401 => format!("invalid or missing API key ({message})"),
            403 => format!("this key's account may not write this run ({message})"),
            _ => message,
        };
        TransportError::Status { status, message }
    }

    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            TransportError::Network(_) => true,
            TransportError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 423 || *status == 429
            }
            TransportError::Gap { .. } => false,
        }
    }
}

/// The HTTP side of a sync, implemented over `ureq` natively and `fetch` in browsers.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Posts a whole bundle to `/api/v1/bundles`.
    async fn post_bundle(&mut self, sha256: &str, bytes: &[u8]) -> Result<Ack, TransportError>;
    /// Creates a tus upload of `len` bytes; returns its URL (a path is kept as given, so the
    /// upload resumes even when the server comes back on another address).
    async fn create_upload(&mut self, sha256: &str, len: u64) -> Result<String, TransportError>;
    /// The server's offset of an upload, or `None` when it no longer knows it.
    async fn upload_offset(&mut self, url: &str) -> Result<Option<u64>, TransportError>;
    /// Sends `chunk` at `offset`; returns the new offset, and the server's ingest result when
    /// the chunk completed the upload.
    async fn patch(
        &mut self,
        url: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<(u64, Option<Ack>), TransportError>;
    /// Waits before a retry.
    async fn sleep(&mut self, ms: u64);
}

/// Where a run's log, files and sync progress live (a folder, IndexedDB, memory).
#[allow(async_fn_in_trait)]
pub trait RunStore {
    /// The store's error.
    type Error: Display;
    /// The whole `records.tlog`.
    async fn read_log(&self) -> Result<Vec<u8>, Self::Error>;
    /// Saved files' contents, in the order asked.
    async fn read_files(&self, files: &[FileRef]) -> Result<Vec<Vec<u8>>, Self::Error>;
    /// Whether a live process still writes this run (a dead one without finish is crashed).
    fn is_live(&self) -> bool;
    /// The persisted progress.
    async fn progress(&self) -> Result<SyncProgress, Self::Error>;
    /// Persists progress; `synced_bytes` (the log's length) is set once every intact record is
    /// acknowledged.
    async fn save_progress(
        &mut self,
        progress: &SyncProgress,
        synced_bytes: Option<u64>,
    ) -> Result<(), Self::Error>;
}

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
            max_bundle_log_bytes: 16 << 20,
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

fn store_err(e: impl Display) -> SyncError {
    SyncError::Store(e.to_string())
}

/// Uploads every unacknowledged record of one run; `on_sent` hears each chunk's size.
pub async fn sync_run<S: RunStore, T: Transport>(
    store: &mut S,
    transport: &mut T,
    opts: &SyncOptions,
    on_sent: &mut dyn FnMut(u64),
) -> Result<SyncReport, SyncError> {
    let log = store.read_log().await.map_err(store_err)?;
    let index = LogIndex::new(&log)?;
    let mut run = index.run().cloned().ok_or(SyncError::NoStart)?;
    if let Some(p) = &opts.project {
        run.project = p.clone();
    }
    if let Some(e) = &opts.entity {
        run.entity = Some(e.clone());
    }
    let state = index.state(store.is_live());
    let mut progress = store.progress().await.map_err(store_err)?;
    if progress.acked_records > index.len() {
        progress = SyncProgress::default();
    }
    let mut report = SyncReport {
        total_records: index.len(),
        state,
        ..SyncReport::default()
    };
    let mut rewound = false;
    // A state-only bundle (no records) when the run ended without a record saying so.
    let stale_state = |p: &SyncProgress| {
        p.acked_records == index.len()
            && p.acked_state == Some(RunState::Running)
            && state != RunState::Running
    };
    while progress.acked_records < index.len() || stale_state(&progress) {
        let range = match &progress.upload {
            Some(u) if u.seq_start == progress.acked_records && u.seq_end <= index.len() => {
                u.seq_start..u.seq_end
            }
            _ => index.plan(progress.acked_records, opts.max_bundle_log_bytes),
        };
        let bundle_state = if range.end == index.len() {
            state
        } else {
            RunState::Running
        };
        let refs: Vec<_> = index
            .files(range.clone())
            .into_iter()
            .filter(|f| !progress.acked_files.contains(&f.sha256))
            .collect();
        let contents = store.read_files(&refs).await.map_err(store_err)?;
        let files: Vec<_> = refs.iter().map(|f| f.sha256.clone()).zip(contents).collect();
        let bundle = write_bundle(&index, &run, bundle_state, range.clone(), &files)?;
        let mut attempt = 0;
        let ack = loop {
            attempt += 1;
            let sent = send(
                store,
                transport,
                opts,
                &mut progress,
                &bundle,
                &mut report,
                on_sent,
            )
            .await;
            match sent {
                Err(e) if e_retryable(&e) && attempt < opts.attempts => {
                    transport.sleep(opts.backoff_ms << (attempt - 1)).await;
                }
                other => break other,
            }
        };
        match ack {
            Ok(ack) => {
                report.bundles += 1;
                report.rows_added += ack.rows_added;
                report.duplicates_skipped += ack.duplicates_skipped;
                progress.acked_records = range.end;
                progress.acked_state = Some(bundle_state);
                progress.upload = None;
                progress
                    .acked_files
                    .extend(bundle.manifest.entries.iter().filter_map(|e| {
                        e.path
                            .strip_prefix(crate::core::bundle::FILES_DIR)
                            .map(str::to_owned)
                    }));
                let done = (range.end == index.len()).then_some(log.len() as u64);
                store.save_progress(&progress, done).await.map_err(store_err)?;
            }
            Err(SyncError::Transport(TransportError::Gap { next_seq }))
                if next_seq < range.start && !rewound =>
            {
                rewound = true;
                progress = SyncProgress {
                    acked_records: next_seq,
                    ..SyncProgress::default()
                };
            }
            Err(e) => return Err(e),
        }
    }
    if progress.acked_records == index.len() {
        store
            .save_progress(&progress, Some(log.len() as u64))
            .await
            .map_err(store_err)?;
    }
    report.acked_records = progress.acked_records;
    Ok(report)
}

fn e_retryable(e: &SyncError) -> bool {
    matches!(e, SyncError::Transport(t) if t.retryable())
}

async fn send<S: RunStore, T: Transport>(
    store: &mut S,
    t: &mut T,
    opts: &SyncOptions,
    progress: &mut SyncProgress,
    bundle: &Bundle,
    report: &mut SyncReport,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let len = bundle.bytes.len() as u64;
    if bundle.bytes.len() <= opts.direct_max {
        let ack = t.post_bundle(&bundle.sha256, &bundle.bytes).await;
        report.bytes_sent += len;
        on_sent(len);
        return Ok(ack?);
    }
    let known = match &progress.upload {
        Some(u) if u.sha256 == bundle.sha256 => {
            t.upload_offset(&u.url).await?.map(|off| (u.url.clone(), off))
        }
        _ => None,
    };
    let (url, mut offset) = match known {
        Some(k) => k,
        None => {
            let url = t.create_upload(&bundle.sha256, len).await?;
            progress.upload = Some(PendingUpload {
                url: url.clone(),
                sha256: bundle.sha256.clone(),
                seq_start: bundle.manifest.seq_start,
                seq_end: bundle.manifest.seq_end,
            });
            store.save_progress(progress, None).await.map_err(store_err)?;
            (url, 0)
        }
    };
    while offset < len {
        let end = (offset as usize + opts.chunk).min(bundle.bytes.len());
        let chunk = &bundle.bytes[offset as usize..end];
        let (next, ack) = t.patch(&url, offset, chunk).await?;
        let sent = chunk.len() as u64;
        report.bytes_sent += sent;
        on_sent(sent);
        if next <= offset {
            return Err(TransportError::Status {
                status: 409,
                message: format!("upload offset did not advance past {offset}"),
            }
            .into());
        }
        offset = next;
        if let Some(ack) = ack {
            return Ok(ack);
        }
    }
    Ok(Ack::default())
}
