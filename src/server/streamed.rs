//! Answers streamed from a task: the task sends chunks into a bounded channel, so a slow client
//! holds the producer back, and an error after the status was sent cuts the answer short (the
//! client sees a truncated body, never a well-formed wrong one).

use std::future::Future;

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;

use super::error::ServerError;

/// Where a producer sends its chunks.
pub type Chunks = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A body fed by `produce`, at most `ahead` chunks ahead of the client.
pub fn body<F, Fut>(ahead: usize, produce: F) -> Body
where
    F: FnOnce(Chunks) -> Fut,
    Fut: Future<Output = Result<(), ServerError>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(ahead);
    let task = produce(tx.clone());
    tokio::spawn(async move {
        if let Err(e) = task.await {
            log::error!("tidelog server: a streamed answer stopped: {e}");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    Body::from_stream(stream)
}

/// Sends the next chunk; false when the client has gone away (nothing more to do).
pub async fn send(out: &Chunks, bytes: Vec<u8>) -> bool {
    out.send(Ok(Bytes::from(bytes))).await.is_ok()
}
