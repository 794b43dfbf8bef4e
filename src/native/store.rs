//! The [`Dir`] seam over `std::fs`, with liveness from an OS file lock (or, for runs written
//! by Node, from the live process the lock file names): run folders on disk.

use std::fs::{self, File, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::core::folder::{Dir, FolderRun};
use crate::core::layout::{LockOwner, LOCK};

/// Log bytes a sync reads at once from disk: two bundles' worth of log.
const READ_WINDOW: usize = 8 << 20;

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

    fn read_at(&self, path: &Path, offset: u64, max: usize) -> io::Result<Vec<u8>> {
        let mut f = match File::open(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other?,
        };
        f.seek(io::SeekFrom::Start(offset))?;
        let mut out = Vec::new();
        f.take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }

    fn read_window(&self) -> usize {
        READ_WINDOW
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

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        fs::OpenOptions::new().write(true).open(path)?.set_len(len)
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

/// This process, as a run's lock names its writer.
fn this_process() -> LockOwner {
    LockOwner {
        pid: std::process::id(),
        host: sysinfo::System::host_name().unwrap_or_default(),
    }
}

fn read_owner(f: &mut File) -> Option<LockOwner> {
    let mut bytes = Vec::new();
    f.seek(io::SeekFrom::Start(0)).ok()?;
    f.take(4096).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn held_by(owner: Option<LockOwner>) -> io::Error {
    let who = owner.map_or_else(
        || "another process".to_owned(),
        |o| format!("process {} on host {}", o.pid, o.host),
    );
    io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("the run is being written by {who}"),
    )
}

/// Takes the writer's lock of the run folder `run`, atomically: an OS lock on [`LOCK`] (freed
/// when the process dies), and the file names this process so others can say who holds it. A
/// Node writer takes no OS lock, so a [`LockOwner`] of a live process also refuses. The error
/// names the holder's pid and host.
pub fn lock_run(run: &Path) -> io::Result<File> {
    let path = run.join(LOCK);
    let mut f = loop {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(held_by(read_owner(&mut f))),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        // A finishing writer removes the file: a lock on its old inode guards nothing.
        if same_file(&f, &path) {
            break f;
        }
    };
    let me = this_process();
    if let Some(owner) = read_owner(&mut f).filter(|o| *o != me && is_running(o)) {
        return Err(held_by(Some(owner)));
    }
    f.set_len(0)?;
    f.seek(io::SeekFrom::Start(0))?;
    f.write_all(&serde_json::to_vec(&me).map_err(io::Error::other)?)?;
    f.sync_all()?;
    Ok(f)
}

#[cfg(unix)]
fn same_file(f: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    matches!((f.metadata(), fs::metadata(path)), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
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
