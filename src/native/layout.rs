//! The on-disk layout of CONTRACT §3 on a real filesystem: atomic writes and run discovery.
//! Names and spec formats are in [`crate::core::layout`], shared with Node.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use crate::core::layout::*;

use super::store::StdDir;

/// Writes JSON through a temporary file and a rename, so readers never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes bytes through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// Writes bytes through a temporary file and a rename, the file getting Unix permissions
/// `mode` (`0o600` for credentials). The temporary name is unique to this process and call,
/// so two writers of one file never write into each other's temporary file.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(
        ".{}.{}.tmp~",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Reads a JSON file, `None` when it does not exist.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True for a folder that holds a run.
pub fn is_run_dir(path: &Path) -> bool {
    path.join(RECORDS).is_file()
}

/// The runs of one `tidelog/` folder, oldest first.
pub fn runs_in(root: &Path) -> io::Result<Vec<PathBuf>> {
    crate::core::folder::runs_in(&StdDir, root)
}

/// Every run under `dir`: its `tidelog/` folder and nested ones, skipping hidden folders,
/// `node_modules` and `target`.
pub fn discover(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if !e.file_type().is_ok_and(|t| t.is_dir())
                || name.starts_with('.')
                || name == "node_modules"
                || name == "target"
            {
                continue;
            }
            if name == ROOT {
                out.extend(runs_in(&p)?);
            } else {
                stack.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Finds the folder of run `id` inside a `tidelog/` folder.
pub fn find_run(root: &Path, id: &str) -> io::Result<Option<PathBuf>> {
    crate::core::folder::find_run(&StdDir, root, id)
}
