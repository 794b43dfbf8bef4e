//! The HTTP side of a sync: the [`Transport`] seam every home implements (over `ureq`
//! natively, `fetch` in wasm), how a server's answers become errors, and [`deliver`], the one
//! loop that sends a bundle until the server acknowledges it: retries, backoff, `Retry-After`,
//! POST or resumable tus.

use serde::{Deserialize, Serialize};

use super::bundle::Bundle;
use super::sync::{PendingUpload, SyncError, SyncOptions};

/// The longest `Retry-After` honoured: a server cannot park a client for longer than the
/// longest backoff.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;

/// What the server said about an ingested bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Ack {
    /// History and system rows newly stored.
    pub rows_added: u64,
    /// Rows it already had.
    pub duplicates_skipped: u64,
}

impl Ack {
    /// The acknowledgement in a `POST /bundles` answer; an answer without one is a failure,
    /// never a success: only the server's word marks records as delivered.
    pub fn from_body(body: &str) -> Result<Ack, TransportError> {
        #[derive(Deserialize)]
        struct Body {
            rows_added: u64,
            duplicates_skipped: u64,
        }
        serde_json::from_slice::<Body>(body.as_bytes())
            .map(|b| Ack {
                rows_added: b.rows_added,
                duplicates_skipped: b.duplicates_skipped,
            })
            .map_err(|e| {
                TransportError::Network(format!("the server's answer is not an acknowledgement ({e})"))
            })
    }
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
        /// How long the server asked to wait (`Retry-After` of a 429 or 503).
        retry_after_ms: Option<u64>,
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
    /// has one, a 409 with `next_seq` as a [`TransportError::Gap`], and the `Retry-After`
    /// header's wait.
    pub fn from_response(status: u16, body: &str, retry_after: Option<&str>) -> TransportError {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: Option<String>,
            next_seq: Option<u64>,
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(body.as_bytes()).ok();
        if let (409, Some(next_seq)) = (status, parsed.as_ref().and_then(|b| b.next_seq)) {
            return TransportError::Gap { next_seq };
        }
        let message = parsed.and_then(|b| b.error).unwrap_or_else(|| body.to_owned());
        let message = match status {
            401 => format!("invalid or missing API key ({message})"),
            403 => format!("this key's account may not write this run ({message})"),
            507 => format!("the server's storage is full ({message})"),
            _ => message,
        };
        TransportError::Status {
            status,
            message,
            retry_after_ms: retry_after.and_then(retry_after_ms),
        }
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

/// The wait a `Retry-After` header asks for, in milliseconds, capped at
/// [`MAX_RETRY_AFTER_MS`]; only the delta-seconds form (what tidelog's server sends).
pub fn retry_after_ms(header: &str) -> Option<u64> {
    let secs: u64 = header.trim().parse().ok()?;
    Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
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

/// Where the tus upload of the bundle being sent is remembered, so that an interrupted one
/// continues instead of starting over: a run's persisted progress, or memory.
#[allow(async_fn_in_trait)]
pub trait UploadLedger {
    /// The upload under way, if any.
    fn current(&self) -> Option<&PendingUpload>;
    /// Records the upload under way (`None`: there is none to continue).
    async fn remember(&mut self, upload: Option<PendingUpload>) -> Result<(), SyncError>;
}

/// An upload remembered for as long as the process runs (`tidelog upload`).
impl UploadLedger for Option<PendingUpload> {
    fn current(&self) -> Option<&PendingUpload> {
        self.as_ref()
    }

    async fn remember(&mut self, upload: Option<PendingUpload>) -> Result<(), SyncError> {
        *self = upload;
        Ok(())
    }
}

/// Sends one bundle until the server acknowledges it: bounded attempts with doubling backoff
/// (or the server's `Retry-After`, when longer), a POST when small, tus otherwise. `on_sent`
/// hears each chunk's size. The one retry loop of every client.
pub async fn deliver<T: Transport, L: UploadLedger>(
    transport: &mut T,
    opts: &SyncOptions,
    bundle: &Bundle,
    ledger: &mut L,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send(transport, opts, bundle, ledger, on_sent).await {
            Err(e) if e.retryable() && attempt < opts.attempts => {
                let backoff = opts.backoff_ms << (attempt - 1).min(16);
                transport
                    .sleep(backoff.max(e.retry_after_ms().unwrap_or(0)))
                    .await;
            }
            other => return other,
        }
    }
}

async fn send<T: Transport, L: UploadLedger>(
    t: &mut T,
    opts: &SyncOptions,
    bundle: &Bundle,
    ledger: &mut L,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let len = bundle.bytes.len() as u64;
    if bundle.bytes.len() <= opts.direct_max {
        let ack = t.post_bundle(&bundle.sha256, &bundle.bytes).await;
        on_sent(len);
        return Ok(ack?);
    }
    let known = match ledger.current() {
        Some(u) if u.sha256 == bundle.sha256 => {
            let url = u.url.clone();
            t.upload_offset(&url).await?.map(|off| (url, off))
        }
        _ => None,
    };
    let (url, mut offset) = match known {
        Some(k) => k,
        None => {
            let url = t.create_upload(&bundle.sha256, len).await?;
            ledger
                .remember(Some(PendingUpload {
                    url: url.clone(),
                    sha256: bundle.sha256.clone(),
                    seq_start: bundle.manifest.seq_start,
                    seq_end: bundle.manifest.seq_end,
                }))
                .await?;
            (url, 0)
        }
    };
    while offset < len {
        let end = (offset as usize + opts.chunk).min(bundle.bytes.len());
        let chunk = &bundle.bytes[offset as usize..end];
        let (next, ack) = t.patch(&url, offset, chunk).await?;
        on_sent(chunk.len() as u64);
        if next <= offset {
            return Err(TransportError::Status {
                status: 409,
                message: format!("upload offset did not advance past {offset}"),
                retry_after_ms: None,
            }
            .into());
        }
        offset = next;
        if let Some(ack) = ack {
            return Ok(ack);
        }
    }
    // Every byte is there but no answer said the bundle was ingested: never count that as
    // success. Forget the upload so the next attempt sends the bundle afresh (the server
    // keeps it exactly once by its sha256).
    ledger.remember(None).await?;
    Err(TransportError::Network(format!(
        "upload {url} holds all {len} bytes but the server did not acknowledge the bundle"
    ))
    .into())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::core::bundle::Manifest;

    /// A server scripted answer by answer, recording what the engine asked and how long it
    /// waited: the loop's decisions are pure functions of those answers.
    #[derive(Default)]
    struct Scripted {
        posts: VecDeque<Result<Ack, TransportError>>,
        patches: VecDeque<Result<(u64, Option<Ack>), TransportError>>,
        created: u32,
        slept: Vec<u64>,
    }

    impl Transport for Scripted {
        async fn post_bundle(&mut self, _: &str, _: &[u8]) -> Result<Ack, TransportError> {
            self.posts.pop_front().expect("an answer for every POST")
        }
        async fn create_upload(&mut self, _: &str, _: u64) -> Result<String, TransportError> {
            self.created += 1;
            Ok(format!("/api/v1/uploads/{}", self.created))
        }
        async fn upload_offset(&mut self, _: &str) -> Result<Option<u64>, TransportError> {
            Ok(Some(0))
        }
        async fn patch(&mut self, _: &str, _: u64, _: &[u8]) -> Result<(u64, Option<Ack>), TransportError> {
            self.patches.pop_front().expect("an answer for every PATCH")
        }
        async fn sleep(&mut self, ms: u64) {
            self.slept.push(ms);
        }
    }

    fn bundle(len: usize) -> Bundle {
        Bundle {
            bytes: vec![7; len],
            sha256: "ab".repeat(32),
            manifest: Manifest {
                format: crate::core::bundle::FORMAT,
                run: Default::default(),
                state: Default::default(),
                seq_start: 0,
                seq_end: 1,
                entries: Vec::new(),
            },
            dropped_values: 0,
        }
    }

    fn busy(status: u16, retry_after: &str) -> TransportError {
        TransportError::from_response(status, r#"{"error":"busy"}"#, Some(retry_after))
    }

    fn ack(rows: u64) -> Ack {
        Ack {
            rows_added: rows,
            duplicates_skipped: 0,
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let mut t = Scripted::default();
        t.posts
            .extend([Err(busy(503, "7")), Err(busy(429, "0")), Ok(ack(3))]);
        let opts = SyncOptions::default();
        let got = pollster::block_on(deliver(&mut t, &opts, &bundle(10), &mut None, &mut |_| {}));
        assert_eq!(got.unwrap(), ack(3));
        assert_eq!(t.slept, vec![7_000, opts.backoff_ms * 2]);
    }

    #[test]
    fn a_hostile_retry_after_is_capped() {
        assert_eq!(retry_after_ms("86400"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(retry_after_ms(" 2 "), Some(2_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_ms("-1"), None);
    }

    #[test]
    fn an_answer_without_an_acknowledgement_is_never_success() {
        assert!(Ack::from_body("").is_err());
        assert!(Ack::from_body(r#"{"ok":true}"#).is_err());
        assert_eq!(
            Ack::from_body(r#"{"rows_added":2,"duplicates_skipped":1}"#).unwrap(),
            Ack {
                rows_added: 2,
                duplicates_skipped: 1
            }
        );
    }

    #[test]
    fn a_finished_upload_without_an_ack_is_sent_again_not_counted() {
        let opts = SyncOptions {
            direct_max: 4,
            chunk: 8,
            ..SyncOptions::default()
        };
        let mut t = Scripted::default();
        t.patches.extend([Ok((8, None)), Ok((8, Some(ack(5))))]);
        let mut upload = None;
        let got = pollster::block_on(deliver(&mut t, &opts, &bundle(8), &mut upload, &mut |_| {}));
        assert_eq!(got.unwrap(), ack(5));
        assert_eq!(t.created, 2, "the unacknowledged upload was started over");
        assert_eq!(upload.map(|u| u.url).as_deref(), Some("/api/v1/uploads/2"));
    }

    #[test]
    fn refusals_are_not_retried() {
        let mut t = Scripted::default();
        t.posts.push_back(Err(TransportError::from_response(
            413,
            r#"{"error":"too big"}"#,
            None,
        )));
        let got = pollster::block_on(deliver(
            &mut t,
            &SyncOptions::default(),
            &bundle(1),
            &mut None,
            &mut |_| {},
        ));
        assert!(matches!(
            got,
            Err(SyncError::Transport(TransportError::Status { status: 413, .. }))
        ));
        assert!(t.slept.is_empty());
    }
}
