//! Bundles: deterministic `.tar.gz` uploads of a record range, and their guarded reader.

mod columns;
mod gzip;
mod manifest;
mod reader;
mod writer;

pub use columns::{Budget, Columns, ColumnsBuilder, DecodedColumn, OverBudget, TableError};
pub use manifest::{Entry, Manifest, FORMAT};
pub use reader::{read_bundle, read_bundle_from, BundleContents, Limits};
pub use writer::{write_bundle, write_bundle_skipping, Bundle};

use sha2::{Digest, Sha256};

/// Names of the fixed entries.
pub const MANIFEST: &str = "manifest.json";
/// JSON lines of the non-row records.
pub const RECORDS: &str = "records.jsonl";
/// Columnar history rows.
pub const HISTORY: &str = "history.tlc";
/// Columnar system rows.
pub const SYSTEM: &str = "system.tlc";
/// Folder of saved files.
pub const FILES_DIR: &str = "files/";

/// Saved-file bytes one bundle carries at most: a run's files travel in bundles of their own
/// size class, so no bundle outgrows what the server unpacks.
pub const MAX_BUNDLE_FILE_BYTES: u64 = crate::core::layout::MAX_FILE_BYTES;

/// What a server unpacks by default: the largest saved file plus room for a bundle's records.
pub const DEFAULT_MAX_UNPACKED: u64 = MAX_BUNDLE_FILE_BYTES + (256 << 20);

/// Hex SHA-256, the id of bundles and blobs.
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Not gzip, or a truncated or corrupt stream.
    #[error("bad gzip stream: {0}")]
    Gzip(String),
    /// The tar inside is malformed.
    #[error("bad tar archive: {0}")]
    Tar(String),
    /// An entry escapes the bundle (absolute, `..`, or non-UTF-8).
    #[error("unsafe entry path {0:?}")]
    UnsafePath(String),
    /// A symlink, hard link, device or other non-file entry.
    #[error("entry {0:?} is not a regular file (links are refused)")]
    NotAFile(String),
    /// Unpacked content exceeds the limit.
    #[error("bundle unpacks to more than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// Decoding an entry would take more than the decode budget of [`Limits`].
    #[error("{entry}: {over}")]
    OverBudget {
        /// Which entry.
        entry: &'static str,
        /// What was over, and its limit.
        over: OverBudget,
    },
    /// More entries than allowed.
    #[error("bundle has more than {limit} entries")]
    TooManyEntries {
        /// The configured limit.
        limit: usize,
    },
    /// An entry's content does not match the manifest.
    #[error("checksum mismatch for {0:?}")]
    ChecksumMismatch(String),
    /// Manifest absent, unreadable, or inconsistent with the entries.
    #[error("bad manifest: {0}")]
    Manifest(String),
    /// Records inside do not decode.
    #[error("bad records in {entry}: {why}")]
    Records {
        /// Which entry.
        entry: &'static str,
        /// What was wrong.
        why: String,
    },
    /// Reading a saved file for the bundle failed.
    #[error("cannot read saved file {path:?}: {why}")]
    MissingFile {
        /// The file's path in the run.
        path: String,
        /// The underlying error.
        why: String,
    },
}

#[cfg(test)]
mod tests;
