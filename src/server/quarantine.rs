//! Uploads whose ingest failed or never completed: a durable "ingest in progress" mark before
//! each ingest of a staged upload, and a quarantine folder, so no upload can stop the server
//! from starting. `<data>/quarantine/<id>.bundle` keeps the bytes, `<id>.reason` says why.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::db::now_ms;
use super::disk::Disk;
use super::error::ServerError;
use crate::core::time::rfc3339;

/// The marks and the quarantine folder of a data folder.
#[derive(Clone, Debug)]
pub struct Quarantine {
    uploads: PathBuf,
    dir: PathBuf,
}

/// Makes a new directory entry (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Quarantine {
    /// Creates `<data>/quarantine`; marks live beside the staged uploads of `disk`.
    pub fn create(data: &Path, disk: &Disk) -> Result<Quarantine, ServerError> {
        let dir = data.join("quarantine");
        fs::create_dir_all(&dir).map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
        Ok(Quarantine {
            uploads: disk.uploads().to_path_buf(),
            dir,
        })
    }

    fn mark_path(&self, id: &str) -> PathBuf {
        self.uploads.join(format!("{id}.ingesting"))
    }

    /// Records, durably, that upload `id` is being ingested: found at the next start, it
    /// means that ingest crashed or was killed. Blocking.
    pub fn mark(&self, id: &str) -> Result<(), ServerError> {
        let path = self.mark_path(id);
        File::create(&path)
            .and_then(|mut f| writeln!(f, "{}", rfc3339(now_ms())).and_then(|()| f.sync_all()))
            .and_then(|()| sync_dir(&self.uploads))
            .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))
    }

    /// True when upload `id` carries a mark from an ingest that never finished.
    pub fn is_marked(&self, id: &str) -> bool {
        self.mark_path(id).exists()
    }

    /// Removes the mark of upload `id` once its ingest returned and the upload is gone. Blocking.
    pub fn unmark(&self, id: &str) -> Result<(), ServerError> {
        let path = self.mark_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ServerError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Moves the staged upload `staged` (id `id`, of `account`) aside with `reason`, then its
    /// mark. The caller forgets the upload's row afterwards. Blocking.
    pub fn hold(&self, id: &str, staged: &Path, account: &str, reason: &str) -> Result<PathBuf, ServerError> {
        let note = self.dir.join(format!("{id}.reason"));
        let kept = self.dir.join(format!("{id}.bundle"));
        let io = |what: &Path, e| ServerError::io(format!("quarantining into {}", what.display()), e);
        File::create(&note)
            .and_then(|mut f| {
                writeln!(
                    f,
                    "upload {id} of account {account:?}, quarantined {}",
                    rfc3339(now_ms())
                )?;
                writeln!(f, "reason: {reason}")?;
                f.sync_all()
            })
            .map_err(|e| io(&note, e))?;
        match fs::rename(staged, &kept) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&kept, e)),
            _ => {}
        }
        sync_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        self.unmark(id)?;
        Ok(note)
    }
}
