//! The bytes of a tus upload as immutable part objects, one per PATCH, since an object store
//! has no append: a request body streamed into a part (checked against `Upload-Checksum`),
//! and the parts of a finished upload read back in order as one blocking reader.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use base64::Engine;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::ObjectStoreExt;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use super::auth::random_hex;
use super::error::{ApiError, ServerError};
use super::store::Store;

/// The key prefix of upload `id`'s parts; everything under it goes when the upload does.
pub fn prefix(id: &str) -> String {
    format!("uploads/{id}")
}

/// A fresh key for the part of upload `id` starting at `start`: random, so two requests
/// racing on the same offset never write one object.
pub fn new_key(id: &str, start: u64) -> Result<Key, ServerError> {
    Ok(Key::from(format!(
        "{}/{start:020}-{}",
        prefix(id),
        random_hex(8)?
    )))
}

enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

/// An `Upload-Checksum` to verify the chunk against.
pub struct Checksum {
    hasher: Hasher,
    expected: Vec<u8>,
}

impl Checksum {
    /// The request's `Upload-Checksum`, if any.
    pub fn parse(headers: &HeaderMap) -> Result<Option<Checksum>, ApiError> {
        let bad = |why: &str| ApiError::BadRequest(why.to_owned());
        let Some(v) = headers.get("upload-checksum") else {
            return Ok(None);
        };
        let (alg, b64) = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().split_once(' '))
            .ok_or_else(|| bad("Upload-Checksum must be `<algorithm> <base64>`"))?;
        let hasher = match alg {
            "sha1" => Hasher::Sha1(sha1::Sha1::new()),
            "sha256" => Hasher::Sha256(sha2::Sha256::new()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unsupported checksum algorithm {other:?}"
                )))
            }
        };
        let expected = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad("Upload-Checksum value is not base64"))?;
        Ok(Some(Checksum { hasher, expected }))
    }

    fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn matches(self) -> bool {
        let got = match self.hasher {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        got == self.expected
    }
}

/// How a request body ended.
pub enum Received {
    /// Complete and verified, stored as a part of this many bytes (none for an empty body).
    Done(u64),
    /// The body stopped early (`stalled`: it timed out); the bytes before the cut are stored
    /// as a part when no checksum was asked for, else dropped.
    Cut { kept: u64, stalled: bool },
    /// The body went past what the upload may hold; dropped.
    TooLarge,
    /// `Upload-Checksum` did not match; dropped.
    Mismatch,
}

/// What [`receive`] is to read and where it may stop.
pub struct Chunk {
    /// The request body.
    pub body: Body,
    /// The most bytes it may carry.
    pub limit: u64,
    /// The `Upload-Checksum` it must match.
    pub sum: Option<Checksum>,
    /// Longest wait for the next piece of it.
    pub timeout: std::time::Duration,
}

/// Streams `chunk` into a new object `key`. The object exists afterwards exactly when the
/// outcome keeps bytes (a [`Received::Done`] or [`Received::Cut`] with a nonzero count).
pub async fn receive(store: &Store, key: Key, chunk: Chunk) -> Result<Received, ServerError> {
    let Chunk {
        body,
        limit,
        mut sum,
        timeout,
    } = chunk;
    let mut out = store.writer(key);
    let mut stream = body.into_data_stream();
    let mut received = 0u64;
    let outcome = loop {
        let data: Bytes = match tokio::time::timeout(timeout, stream.next()).await {
            Ok(Some(Ok(data))) => data,
            Ok(None) => {
                let ok = sum.take().is_none_or(Checksum::matches);
                break if ok {
                    Received::Done(received)
                } else {
                    Received::Mismatch
                };
            }
            Ok(Some(Err(_))) => break cut(received, &sum, false),
            Err(_) => break cut(received, &sum, true),
        };
        received += data.len() as u64;
        if received > limit {
            break Received::TooLarge;
        }
        if let Some(s) = &mut sum {
            s.update(&data);
        }
        if let Err(e) = out.put(data).await {
            let _ = out.abort().await;
            return Err(store.failed("writing an upload part", e));
        }
    };
    let kept = match outcome {
        Received::Done(n) | Received::Cut { kept: n, .. } => n,
        Received::TooLarge | Received::Mismatch => 0,
    };
    if kept == 0 {
        out.abort()
            .await
            .map_err(|e| store.failed("dropping an upload part", e))?;
    } else {
        out.shutdown()
            .await
            .map_err(|e| ServerError::io(format!("storing an upload part in {}", store.url()), e))?;
    }
    Ok(outcome)
}

fn cut(kept: u64, sum: &Option<Checksum>, stalled: bool) -> Received {
    let kept = if sum.is_some() { 0 } else { kept };
    Received::Cut { kept, stalled }
}

/// The parts of a received upload in order, read from a blocking thread as one byte stream,
/// one piece of one part in memory at a time.
pub struct PartsReader {
    store: Store,
    keys: std::vec::IntoIter<Key>,
    runtime: tokio::runtime::Handle,
    piece: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    buf: Bytes,
}

impl PartsReader {
    /// A reader of `keys` in `store`; call from within the runtime, read from a blocking thread.
    pub fn new(store: Store, keys: Vec<Key>) -> PartsReader {
        PartsReader {
            store,
            keys: keys.into_iter(),
            runtime: tokio::runtime::Handle::current(),
            piece: None,
            buf: Bytes::new(),
        }
    }

    /// A second reader of the parts this one has yet to read (all of them before its first read),
    /// for a second pass.
    pub fn again(&self) -> PartsReader {
        PartsReader {
            store: self.store.clone(),
            keys: self.keys.as_slice().to_vec().into_iter(),
            runtime: self.runtime.clone(),
            piece: None,
            buf: Bytes::new(),
        }
    }
}

impl Read for PartsReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.buf.is_empty() {
                let n = out.len().min(self.buf.len());
                out[..n].copy_from_slice(&self.buf.split_to(n));
                return Ok(n);
            }
            if let Some(piece) = &mut self.piece {
                match self.runtime.block_on(piece.next()) {
                    Some(Ok(b)) => self.buf = b,
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                    None => self.piece = None,
                }
                continue;
            }
            let Some(key) = self.keys.next() else {
                return Ok(0);
            };
            let got = self
                .runtime
                .block_on(self.store.get(&key))
                .map_err(std::io::Error::other)?;
            self.piece = Some(got.into_stream());
        }
    }
}
