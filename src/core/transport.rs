//! The HTTP side of a sync: the [`Transport`] seam every home implements (send one request
//! given as plain data, sleep), how a server's answers become errors, the retry schedule
//! ([`Backoff`]) and [`deliver`], the one loop that sends a bundle until the server
//! acknowledges it: retries, `Retry-After`, POST or resumable tus (the requests themselves
//! are built and read in [`super::tus`]).

use serde::{Deserialize, Serialize};

use super::bundle::Bundle;
use super::sync::{PendingUpload, SyncError, SyncOptions};
use super::tus;

/// The longest `Retry-After` honoured: a server cannot park a client for longer than the
/// longest backoff.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;

/// The HTTP methods the client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// `POST`.
    Post,
    /// `PATCH`.
    Patch,
}

/// One HTTP request as plain data: what the protocol decided, for a home to put on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Request headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty: none).
    pub body: &'a [u8],
    /// The response headers the protocol reads: a home copies these (and only these) into
    /// [`Response::headers`].
    pub read: &'static [&'static str],
}

/// What a server answered, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Those of [`Request::read`]'s headers that the answer had.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header of the answer, by the name [`Request::read`] gave it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A header holding a non-negative integer.
    pub(crate) fn header_u64(&self, name: &str) -> Option<u64> {
        self.header(name)?.trim().parse().ok()
    }

    /// The error this answer stands for (its JSON reason, `next_seq`, `Retry-After`).
    pub(crate) fn failure(&self) -> TransportError {
        TransportError::from_response(
            self.status,
            std::str::from_utf8(&self.body).unwrap_or_default(),
            self.header(tus::RETRY_AFTER),
        )
    }
}

/// The server a client talks to: its base URL and the API key's `Authorization` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    base: String,
    auth: String,
}

impl Server {
    /// The server at `base` (e.g. `http://127.0.0.1:8080`), authenticating with `api_key`.
    pub fn new(base: &str, api_key: &str) -> Server {
        Server {
            base: base.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {api_key}"),
        }
    }

    /// The base URL, as messages name the server.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` on this server; an absolute URL (a tus `Location`) is kept as it is.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// An authenticated request for `path`.
    pub(crate) fn request<'a>(
        &self,
        method: Method,
        path: &str,
        body: &'a [u8],
        read: &'static [&'static str],
    ) -> Request<'a> {
        Request {
            method,
            url: self.url(path),
            headers: vec![("Authorization", self.auth.clone())],
            body,
            read,
        }
    }
}

/// The HTTP side of a sync, implemented over `ureq` natively and `fetch` in wasm: a home
/// only sends requests and waits; what to send and what an answer means is the core's.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// The server requests go to.
    fn server(&self) -> &Server;
    /// Sends one request. `Err` only when no answer came, with why (refused, timed out, cut).
    async fn send(&mut self, req: &Request<'_>) -> Result<Response, String>;
    /// Waits before a retry.
    async fn sleep(&mut self, ms: u64);
}

/// Sends `req`; no answer is a network error naming the server, so a wrong URL or port is
/// plain to see.
pub(crate) async fn exchange<T: Transport>(t: &mut T, req: Request<'_>) -> Result<Response, TransportError> {
    t.send(&req)
        .await
        .map_err(|why| TransportError::Network(format!("could not reach {}: {why}", t.server().base())))
}

/// A retry schedule: `first_ms` after the first failure, doubling after each further one, at
/// most `cap_ms`, and never shorter than what the server asked for with `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub first_ms: u64,
    /// The longest wait the doubling reaches.
    pub cap_ms: u64,
}

impl Backoff {
    /// Between the syncs of a page or a Node process that failed (CONTRACT §1: from 5 s,
    /// doubling, capped at 5 min).
    pub const BETWEEN_SYNCS: Backoff = Backoff {
        first_ms: 5_000,
        cap_ms: 300_000,
    };

    /// Between the attempts at one bundle, starting at `first_ms` (`SyncOptions::backoff_ms`).
    pub fn attempts(first_ms: u64) -> Backoff {
        Backoff {
            first_ms,
            cap_ms: MAX_RETRY_AFTER_MS,
        }
    }

    /// The wait after the `failures`-th failure in a row (1 for the first), given the server's
    /// `Retry-After` if it sent one.
    pub fn delay_ms(&self, failures: u32, retry_after_ms: Option<u64>) -> u64 {
        let doubled = self
            .first_ms
            .saturating_mul(1u64 << failures.saturating_sub(1).min(32));
        doubled
            .min(self.cap_ms)
            .max(retry_after_ms.unwrap_or(0).min(MAX_RETRY_AFTER_MS))
    }
}

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
    pub fn from_body(body: &[u8]) -> Result<Ack, TransportError> {
        serde_json::from_slice::<Ack>(body).map_err(|e| {
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
            460 => format!("the chunk arrived damaged ({message})"),
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
                *status >= 500 || matches!(*status, 408 | 423 | 429 | 460)
            }
            TransportError::Gap { .. } => false,
        }
    }

    /// A tus chunk the server refused for where it stood (409: another offset) or what
    /// arrived (460: checksum mismatch): the upload continues from the server's offset.
    pub(crate) fn resync(&self) -> bool {
        matches!(
            self,
            TransportError::Status {
                status: 409 | 460,
                ..
            }
        )
    }
}

/// The wait a `Retry-After` header asks for, in milliseconds, capped at
/// [`MAX_RETRY_AFTER_MS`]; only the delta-seconds form (what tidelog's server sends).
pub fn retry_after_ms(header: &str) -> Option<u64> {
    let secs: u64 = header.trim().parse().ok()?;
    Some(secs.saturating_mul(1000).min(MAX_RETRY_AFTER_MS))
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

/// Sends one bundle until the server acknowledges it: bounded attempts on the
/// [`Backoff::attempts`] schedule (the server's `Retry-After` when longer), a POST when small,
/// tus otherwise. `on_sent` hears each chunk's size. The one retry loop of every client.
pub async fn deliver<T: Transport, L: UploadLedger>(
    transport: &mut T,
    opts: &SyncOptions,
    bundle: &Bundle,
    ledger: &mut L,
    on_sent: &mut dyn FnMut(u64),
) -> Result<Ack, SyncError> {
    let schedule = Backoff::attempts(opts.backoff_ms);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tus::send(transport, opts, bundle, ledger, on_sent).await {
            Err(e) if e.retryable() && attempt < opts.attempts => {
                transport
                    .sleep(schedule.delay_ms(attempt, e.retry_after_ms()))
                    .await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_retry_after_is_capped() {
        assert_eq!(retry_after_ms("86400"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(retry_after_ms(" 2 "), Some(2_000));
        assert_eq!(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_ms("-1"), None);
    }

    #[test]
    fn the_schedule_doubles_to_its_cap_and_yields_to_a_longer_retry_after() {
        let s = Backoff::BETWEEN_SYNCS;
        let plain: Vec<u64> = (1..=9).map(|n| s.delay_ms(n, None)).collect();
        assert_eq!(
            plain,
            [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]
        );
        assert_eq!(
            s.delay_ms(1, Some(1_000)),
            5_000,
            "a shorter Retry-After changes nothing"
        );
        assert_eq!(s.delay_ms(2, Some(42_000)), 42_000, "a longer one is honoured");
        assert_eq!(
            s.delay_ms(1, Some(u64::MAX)),
            MAX_RETRY_AFTER_MS,
            "within the cap"
        );
        assert_eq!(
            s.delay_ms(u32::MAX, None),
            300_000,
            "no overflow however long it fails"
        );
        assert_eq!(Backoff::attempts(500).delay_ms(3, None), 2_000);
    }

    #[test]
    fn an_answer_without_an_acknowledgement_is_never_success() {
        assert!(Ack::from_body(b"").is_err());
        assert!(Ack::from_body(br#"{"ok":true}"#).is_err());
        assert_eq!(
            Ack::from_body(br#"{"rows_added":2,"duplicates_skipped":1}"#).unwrap(),
            Ack {
                rows_added: 2,
                duplicates_skipped: 1
            }
        );
    }

    #[test]
    fn a_409_with_next_seq_is_a_gap_and_a_460_is_retried_from_the_offset() {
        let gap = TransportError::from_response(409, r#"{"error":"gap","next_seq":7}"#, None);
        assert_eq!(gap, TransportError::Gap { next_seq: 7 });
        assert!(!gap.retryable() && !gap.resync());
        let offset = TransportError::from_response(409, r#"{"error":"offset 3, not 4"}"#, None);
        assert!(offset.resync() && !offset.retryable());
        let damaged = TransportError::from_response(460, r#"{"error":"chunk checksum mismatch"}"#, None);
        assert!(damaged.resync() && damaged.retryable());
    }
}
