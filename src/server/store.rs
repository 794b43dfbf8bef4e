//! The object store behind `--store`: immutable objects by key (history segments, blobs,
//! staged uploads) on local disk by default or in an S3-compatible bucket, through the
//! `object_store` crate's one small trait, so no caller knows which.

use std::path::Path;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::cache::Cache;
use super::error::ServerError;

/// The key of the object naming the layout version, written at first start: a store another
/// program uses, or a bucket that cannot be written, is found at start and not at first upload.
const FORMAT_KEY: &str = "tidelog-store";
/// What [`FORMAT_KEY`] holds.
const FORMAT: &[u8] = b"tidelog object store, layout 1\n";

/// Bytes a [`Store::writer`] buffers before it starts a multipart upload, and the size of each
/// part after that: S3's smallest part, so a request streams through in bounded memory.
const PART_BYTES: usize = 5 << 20;

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for a lowercase hex SHA-256, the only thing a blob may be named.
pub fn is_sha256(s: &str) -> bool {
    is_hex(s, 64)
}

/// True for a tus upload id as the server makes them (32 lowercase hex digits).
pub fn is_upload_id(s: &str) -> bool {
    is_hex(s, 32)
}

/// `blobs/<sha[0..2]>/<sha>`: a saved file's bytes, stored once by content; `sha` must pass
/// [`is_sha256`].
pub fn blob_key(sha: &str) -> Key {
    Key::from(format!("blobs/{}/{sha}", &sha[..2]))
}

/// A handle on the configured object store, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    objects: Arc<dyn ObjectStore>,
    /// The URL it was opened from, credentials never included, for messages.
    url: String,
    /// Small objects read lately.
    cache: Arc<Cache>,
}

impl std::ops::Deref for Store {
    type Target = dyn ObjectStore;

    fn deref(&self) -> &Self::Target {
        self.objects.as_ref()
    }
}

impl Store {
    /// Opens `url` (`file:///DIR` or `s3://BUCKET[/PREFIX]`; default `<data>/store`) and checks
    /// that it is tidelog's, writing the format object into an empty one. S3 is configured by
    /// the standard `AWS_*` variables (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for a local
    /// S3-protocol server).
    pub async fn open(url: Option<&str>, data: &Path) -> Result<Store, ServerError> {
        let (objects, url): (Arc<dyn ObjectStore>, String) = match url {
            None => {
                let dir = data.join("store");
                (local(&dir)?, format!("file://{}", dir.display()))
            }
            Some(u) if u.starts_with("file://") => (local(Path::new(&u["file://".len()..]))?, u.to_string()),
            Some(u) if u.starts_with("s3://") => (s3(u)?, u.to_string()),
            Some(u) => return Err(bad(u, "expected file:///DIR or s3://BUCKET/PREFIX")),
        };
        let store = Store {
            objects,
            url,
            cache: Arc::default(),
        };
        store.check_format().await?;
        Ok(store)
    }

    /// Small objects read lately ([`Cache`]): immutable, so never stale.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The URL it was opened from, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A streaming writer of object `key`: a single PUT for a small object, a multipart upload
    /// for a large one, never more than a few parts in memory. Nothing is visible under `key`
    /// until it is shut down; an aborted one leaves nothing.
    pub fn writer(&self, key: Key) -> BufWriter {
        BufWriter::with_capacity(self.objects.clone(), key, PART_BYTES).with_max_concurrency(2)
    }

    /// Stores a blob under its hash unless it is there already (same name, same bytes).
    pub async fn put_blob(&self, sha: &str, data: Vec<u8>) -> Result<(), ServerError> {
        let key = blob_key(sha);
        match self.objects.head(&key).await {
            Ok(_) => return Ok(()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.failed(&format!("looking up blob {sha}"), e)),
        }
        self.objects
            .put(&key, PutPayload::from(data))
            .await
            .map(drop)
            .map_err(|e| self.failed(&format!("writing blob {sha}"), e))
    }

    /// Deletes every object whose key starts with `prefix/`; a missing one is no error.
    pub async fn remove_all(&self, prefix: &str) -> Result<(), ServerError> {
        let under = Key::from(prefix);
        let keys = self
            .objects
            .list(Some(&under))
            .map_ok(|meta| meta.location)
            .boxed();
        self.objects
            .delete_stream(keys)
            .try_for_each(|_| std::future::ready(Ok(())))
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(self.failed(&format!("removing {prefix}/"), e)),
            })
    }

    /// Moves the blobs an older server kept in `<data>/blobs/<xx>/<sha>` into the store, once:
    /// each is stored under its name, then its file removed, so an interrupted move resumes.
    pub async fn adopt_old_blobs(&self, data: &Path) -> Result<(), ServerError> {
        let old = data.join("blobs");
        let io = |what: &Path, e| ServerError::io(format!("moving {} into the store", what.display()), e);
        let Ok(shards) = std::fs::read_dir(&old) else {
            return Ok(());
        };
        for shard in shards {
            let shard = shard.map_err(|e| io(&old, e))?.path();
            for blob in std::fs::read_dir(&shard).map_err(|e| io(&shard, e))? {
                let path = blob.map_err(|e| io(&shard, e))?.path();
                let Some(sha) = path.file_name().and_then(|n| n.to_str()).filter(|n| is_sha256(n)) else {
                    continue;
                };
                let bytes = tokio::fs::read(&path).await.map_err(|e| io(&path, e))?;
                self.put_blob(sha, bytes).await?;
                tokio::fs::remove_file(&path).await.map_err(|e| io(&path, e))?;
            }
            let _ = std::fs::remove_dir(&shard);
        }
        let _ = std::fs::remove_dir(&old);
        log::info!("blobs of {} moved into {}", old.display(), self.url);
        Ok(())
    }

    /// Fails unless the format object is tidelog's; writes it into a store that has none.
    async fn check_format(&self) -> Result<(), ServerError> {
        let key = Key::from(FORMAT_KEY);
        match self.objects.get(&key).await {
            Ok(found) => {
                let bytes = found
                    .bytes()
                    .await
                    .map_err(|e| self.failed("reading the format object", e))?;
                if bytes.as_ref() != FORMAT {
                    return Err(bad(&self.url, "its tidelog-store object is not this layout's; it belongs to another program or version"));
                }
                Ok(())
            }
            Err(object_store::Error::NotFound { .. }) => self
                .objects
                .put(&key, PutPayload::from_static(FORMAT))
                .await
                .map(drop)
                .map_err(|e| self.failed("writing the format object", e)),
            Err(e) => Err(self.failed("reading the format object", e)),
        }
    }

    /// A store error with what was being done and where.
    pub fn failed(&self, what: &str, source: object_store::Error) -> ServerError {
        ServerError::Store {
            what: format!("{what} in {}", self.url),
            source,
        }
    }
}

/// A folder on local disk, created if missing.
fn local(dir: &Path) -> Result<Arc<dyn ObjectStore>, ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map(|fs| fs.with_automatic_cleanup(true))
        .map_err(|e| ServerError::Store {
            what: format!("opening {}", dir.display()),
            source: e,
        })?;
    Ok(Arc::new(fs))
}

/// A bucket and optional key prefix, credentials and endpoint from `AWS_*`.
fn s3(url: &str) -> Result<Arc<dyn ObjectStore>, ServerError> {
    let rest = &url["s3://".len()..];
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad(url, "no bucket named"));
    }
    // reqwest's rustls has no crypto provider of its own here; a second call finds it set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bucket = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| ServerError::Store {
            what: format!("configuring {url}"),
            source: e,
        })?;
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        Arc::new(bucket)
    } else {
        Arc::new(PrefixStore::new(bucket, prefix))
    })
}

fn bad(url: &str, why: &str) -> ServerError {
    ServerError::StoreUrl {
        url: url.to_string(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_is_marked_at_first_open_and_a_foreign_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(None, dir.path()).await.unwrap();
        let mark = dir.path().join("store").join(FORMAT_KEY);
        assert_eq!(std::fs::read(&mark).unwrap(), FORMAT);
        Store::open(None, dir.path())
            .await
            .expect("reopening its own store");
        std::fs::write(&mark, b"someone else's\n").unwrap();
        let err = Store::open(None, dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("another program"), "{err}");
        let url = format!("file://{}", dir.path().join("elsewhere").display());
        Store::open(Some(&url), dir.path())
            .await
            .expect("a file:// store");
        assert!(dir.path().join("elsewhere").join(FORMAT_KEY).exists());
        let err = Store::open(Some("ftp://x"), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected file:///DIR or s3://"), "{err}");
        let err = Store::open(Some("s3://"), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no bucket"), "{err}");
    }

    #[tokio::test]
    async fn blobs_of_an_older_data_folder_move_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let sha = crate::core::bundle::sha256_hex(b"old weights");
        let shard = dir.path().join("blobs").join(&sha[..2]);
        std::fs::create_dir_all(&shard).unwrap();
        std::fs::write(shard.join(&sha), b"old weights").unwrap();
        let store = Store::open(None, dir.path()).await.unwrap();
        store.adopt_old_blobs(dir.path()).await.unwrap();
        let got = store.get(&blob_key(&sha)).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"old weights");
        assert!(!dir.path().join("blobs").exists(), "the old folder stays behind");
        store
            .adopt_old_blobs(dir.path())
            .await
            .expect("nothing left to move");
    }
}
