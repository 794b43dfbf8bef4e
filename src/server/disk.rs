//! The data folder's files: content-addressed blobs and tus staging files.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::auth::random_hex;
use super::error::ServerError;

/// Where blobs and uploads live under the data folder.
#[derive(Clone, Debug)]
pub struct Disk {
    blobs: PathBuf,
    uploads: PathBuf,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True for a lowercase hex SHA-256, the only thing a blob may be named.
pub fn is_sha256(s: &str) -> bool {
    is_hex(s, 64)
}

/// True for an id as [`Disk::upload_path`] accepts it.
pub fn is_upload_id(s: &str) -> bool {
    is_hex(s, 32)
}

impl Disk {
    /// Creates `<data>/blobs` and `<data>/uploads`.
    pub fn create(data: &Path) -> Result<Disk, ServerError> {
        let me = Disk {
            blobs: data.join("blobs"),
            uploads: data.join("uploads"),
        };
        for dir in [&me.blobs, &me.uploads] {
            std::fs::create_dir_all(dir)
                .map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(me)
    }

    /// `<data>/blobs/<sha[0..2]>/<sha>`; `sha` must pass [`is_sha256`].
    pub fn blob_path(&self, sha: &str) -> PathBuf {
        self.blobs.join(&sha[..2]).join(sha)
    }

    /// `<data>/uploads`, the folder of staged tus uploads.
    pub fn uploads(&self) -> &Path {
        &self.uploads
    }

    /// `<data>/uploads/<id>`; `id` must pass [`is_upload_id`].
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads.join(id)
    }

    /// Stores `data` under its hash once: temp file, fsync, rename. Blocking.
    pub fn put_blob(&self, sha: &str, data: &[u8]) -> Result<(), ServerError> {
        let path = self.blob_path(sha);
        if path.exists() {
            return Ok(());
        }
        let io = |e| ServerError::io(format!("writing blob {sha}"), e);
        let dir = self.blobs.join(&sha[..2]);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tmp = dir.join(format!(".{sha}.{}.tmp", random_hex(8)?));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}
