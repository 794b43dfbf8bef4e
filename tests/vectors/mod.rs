//! The shared bundle test vector: one `records.tlog` (written by the native core) whose
//! bundle must have the same bytes when built natively and in wasm.

use tidelog::core::bundle::{write_bundle, Bundle};
use tidelog::core::log_index::LogIndex;

/// The vector's log.
pub const LOG: &[u8] = include_bytes!("run.tlog");
/// The saved file it references.
pub const MODEL: &[u8] = include_bytes!("model.bin");
/// SHA-256 of the bundle of the whole log.
pub const BUNDLE_SHA256: &str = include_str!("run.bundle.sha256");

/// The bundle of the vector's whole log, as the sync engine would build it.
pub fn bundle() -> Bundle {
    let index = LogIndex::new(LOG).expect("the vector decodes");
    let run = index.run().expect("start record").clone();
    let files = [(tidelog::core::bundle::sha256_hex(MODEL), MODEL.to_vec())];
    write_bundle(&index, &run, index.state(false), 0..index.len(), &files).expect("bundle")
}
