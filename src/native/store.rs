//! The [`Dir`] seam over `std::fs`, with liveness from an OS file lock (or, for runs written
//! by Node, from the live process the lock file names): run folders on disk.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::core::folder::{Dir, FolderRun};
use crate::core::layout::{LockOwner, LOCK};

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDir;

/// A run folder on the local disk.
pub type RunDir = FolderRun<StdDir>;

impl FolderRun<StdDir> {
    /// Opens the run folder at `path` on the local disk.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FolderRun::open(StdDir, path)
    }
}

fn missing_ok<T: Default>(r: io::Result<T>) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        other => other,
    }
}

impl Dir for StdDir {
    fn read(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        missing_ok(fs::read(path).map(Some))
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        super::layout::write_atomic(path, data)
    }

    fn append(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(data)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        missing_ok(fs::remove_file(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn mkdirp(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        missing_ok(fs::read_dir(path).and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        }))
    }

    fn size(&self, path: &Path) -> io::Result<Option<u64>> {
        missing_ok(fs::metadata(path).map(|m| Some(m.len())))
    }

    fn is_locked(&self, run: &Path) -> bool {
        let Ok(f) = File::open(run.join(LOCK)) else {
            return false;
        };
        if matches!(f.try_lock_shared(), Err(TryLockError::WouldBlock)) {
            return true;
        }
        fs::read(run.join(LOCK))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<LockOwner>(&bytes).ok())
            .is_some_and(|owner| is_running(&owner))
    }
}

/// Whether the process a Node run's lock names is alive on this machine.
fn is_running(owner: &LockOwner) -> bool {
    if sysinfo::System::host_name().as_deref() != Some(owner.host.as_str()) {
        return false;
    }
    let pid = sysinfo::Pid::from_u32(owner.pid);
    let mut system = sysinfo::System::new();
    system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), false);
    system.process(pid).is_some()
}
