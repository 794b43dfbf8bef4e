//! Uploads whose ingest failed or never completed are kept aside in the object store, so no
//! upload can stop the server from starting and none is lost: `quarantine/<id>.bundle` keeps
//! the bytes, `quarantine/<id>.reason` says why. The "ingest in progress" mark that sends an
//! upload here is its row's `started` (see `staged`).

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use super::db::now_ms;
use super::error::ServerError;
use super::staged::Upload;
use super::store::Store;
use crate::core::time::rfc3339;

/// Copies upload `up`'s parts (`parts`, in order) into one quarantined bundle beside its
/// `reason`, streaming. The caller forgets the upload afterwards.
pub async fn hold(store: &Store, up: &Upload, parts: Vec<Key>, reason: &str) -> Result<(), ServerError> {
    let id = &up.id;
    let note = Key::from(format!("quarantine/{id}.reason"));
    let text = format!(
        "upload {id} of account {:?}, quarantined {}\nreason: {reason}\n",
        up.account,
        rfc3339(now_ms())
    );
    let mut out = store.writer(Key::from(format!("quarantine/{id}.bundle")));
    for part in parts {
        let mut piece = store
            .get(&part)
            .await
            .map_err(|e| store.failed("reading an upload part", e))?
            .into_stream();
        while let Some(bytes) = piece.next().await {
            let bytes = bytes.map_err(|e| store.failed("reading an upload part", e))?;
            if let Err(e) = out.put(bytes).await {
                let _ = out.abort().await;
                return Err(store.failed("quarantining an upload", e));
            }
        }
    }
    out.shutdown()
        .await
        .map_err(|e| ServerError::io(format!("quarantining upload {id} in {}", store.url()), e))?;
    store
        .put(&note, PutPayload::from(text))
        .await
        .map(drop)
        .map_err(|e| store.failed("writing a quarantine reason", e))
}
