//! The on-disk layout of CONTRACT §3: folder names, spec files and run discovery.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::record::RunState;

/// The folder every run lives under.
pub const ROOT: &str = "tidelog";
/// Per-run identity and state.
pub const RUN_SPEC: &str = "run.spec";
/// The most recent run of a `tidelog/` folder.
pub const LATEST_SPEC: &str = "latest.spec";
/// The append-only record log.
pub const RECORDS: &str = "records.tlog";
/// Config, summary, metadata, media and saved files.
pub const FILES: &str = "files";
/// Marker: everything up to the last record is acknowledged.
pub const SYNCED: &str = ".synced";
/// Partial sync progress (acknowledged records, an upload in flight).
pub const PROGRESS: &str = ".sync-progress";
/// Held locked by the process writing the run.
pub const LOCK: &str = ".lock";

/// Sync status shown in `run.spec`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncSpec {
    /// `unsynced`, `partial` or `synced`.
    pub state: String,
    /// Records the server acknowledged.
    pub acked_records: u64,
}

/// `run.spec`: what a person (or `tidelog ls`) reads to know a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// Run id.
    pub id: String,
    /// Project.
    pub project: String,
    /// Display name.
    pub name: Option<String>,
    /// Entity.
    pub entity: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// Sync status.
    pub sync: SyncSpec,
}

/// `latest.spec`: a pointer to the newest run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LatestSpec {
    /// Run id.
    pub id: String,
    /// Project.
    pub project: String,
    /// The run's folder name inside `tidelog/`.
    pub dir: String,
    /// Running, finished, failed or crashed.
    pub state: RunState,
    /// Whether everything was acknowledged.
    pub synced: bool,
}

/// Written by `tidelog sync` once the server acknowledged the whole log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SyncedMarker {
    /// Records acknowledged.
    pub acked_records: u64,
    /// Length of `records.tlog` when it was synced; a longer log is unsynced again.
    pub log_bytes: u64,
}

/// The folder name of a run: `run-20261126_171930-a1b2c3d4`.
pub fn run_dir_name(created_ms: i64, id: &str) -> String {
    format!("run-{}-{id}", crate::core::time::compact(created_ms))
}

/// Writes JSON through a temporary file and a rename, so readers never see half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &bytes)
}

/// Writes bytes through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp~");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
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
    let mut out: Vec<PathBuf> = fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("run-"))
                && is_run_dir(p)
        })
        .collect();
    out.sort();
    Ok(out)
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
    if !root.is_dir() {
        return Ok(None);
    }
    let suffix = format!("-{id}");
    Ok(runs_in(root)?.into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&suffix))
    }))
}
