//! `manifest.json`: what a bundle claims to hold, checked entry by entry on arrival.

use serde::{Deserialize, Serialize};

use crate::core::record::{RunInfo, RunState};

/// Bumped when the bundle layout changes incompatibly.
pub const FORMAT: u32 = 1;

/// One file inside the bundle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the tar.
    pub path: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Content length.
    pub size: u64,
}

/// The bundle's table of contents and the run it belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Layout version, [`FORMAT`].
    pub format: u32,
    /// The run, so the server can file the bundle even if the start record came earlier.
    pub run: RunInfo,
    /// The run's state as of the last record in the bundle.
    pub state: RunState,
    /// First record sequence number covered.
    pub seq_start: u64,
    /// One past the last record covered.
    pub seq_end: u64,
    /// Every other entry of the tar, in tar order.
    pub entries: Vec<Entry>,
}
