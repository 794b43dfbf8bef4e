//! Names and JSON formats of the on-disk layout (CONTRACT §3), shared by the native
//! filesystem store and the Node store of the wasm build.

use serde::{Deserialize, Serialize};

use super::record::RunState;

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
/// The writer's resume point while the run is live (an ended run keeps it in `run.spec`).
pub const RESUME: &str = ".resume";
/// Held locked by the process writing the run (an OS lock natively, a [`LockOwner`] from Node).
pub const LOCK: &str = ".lock";

/// What a process without OS file locks (Node) writes into a run's [`LOCK`] while it writes
/// the run, so `tidelog sync` and `tidelog ls` see the run as live, not crashed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LockOwner {
    /// The writing process.
    pub pid: u32,
    /// The machine it runs on: a pid means nothing elsewhere.
    pub host: String,
}

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
    /// An ended run's resume point ([`crate::core::resume_point::ResumePoint`]), as plain JSON
    /// so a damaged one never makes `run.spec` unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<serde_json::Value>,
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SyncedMarker {
    /// Records acknowledged.
    pub acked_records: u64,
    /// Length of `records.tlog` when it was synced; a longer log is unsynced again.
    pub log_bytes: u64,
    /// Saved files (sha256) the server has, so a resumed run does not upload them again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub acked_files: std::collections::BTreeSet<String>,
    /// The state the server was told: `running` makes a run whose process died unsynced again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RunState>,
    /// The acknowledged prefix, so the sync after the log grows reads only what is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::core::checkpoint::Checkpoint>,
}

/// The folder name of a run: `run-20261126_171930-a1b2c3d4`.
pub fn run_dir_name(created_ms: i64, id: &str) -> String {
    format!("run-{}-{id}", crate::core::time::compact(created_ms))
}

/// Checks a user-chosen run id: 1–64 characters of `[A-Za-z0-9_-]` (it names a folder).
pub fn check_run_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("id {id:?} must be 1-64 characters of [A-Za-z0-9_-]"))
    }
}

/// A fresh 8-character `[a-z0-9]` run id from 8 random bytes.
pub fn run_id_from(random: [u8; 8]) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Largest file `save()` accepts: one limit for every client and the server, which by
/// default unpacks bundles of this plus room for records ([`crate::core::bundle::DEFAULT_MAX_UNPACKED`]),
/// so a file that can be saved can always be uploaded.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Checks a saved file's name and size: a relative path inside `files/`, no `..`, no hidden
/// names (they are tidelog's own), within [`MAX_FILE_BYTES`].
pub fn check_saved_file(name: &str, len: u64) -> Result<(), String> {
    let safe = !name.is_empty()
        && !name.contains('\\')
        && !name.contains('\0')
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.starts_with('.'));
    if !safe {
        return Err(format!(
            "file name {name:?} must be a relative path without '..', empty or hidden parts"
        ));
    }
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "file {name:?} is {len} bytes, over the {MAX_FILE_BYTES}-byte limit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_file_names() {
        for ok in ["model.onnx", "ckpt/epoch-1.bin", "media/images/a_1.png"] {
            assert_eq!(check_saved_file(ok, 1), Ok(()));
        }
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            ".synced",
            "a/.hidden",
            "a//b",
            "a\\b",
        ] {
            assert!(check_saved_file(bad, 1).is_err(), "{bad:?}");
        }
        assert!(check_saved_file("big", MAX_FILE_BYTES + 1)
            .unwrap_err()
            .contains("limit"));
    }
}
