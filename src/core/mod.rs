//! The I/O-free core shared by every home: record model, log framing, step semantics,
//! bundles and the sync engine. No files, threads, clocks or sockets in here.

#[cfg(not(target_arch = "wasm32"))]
mod ahead;
pub mod bundle;
pub mod checkpoint;
pub mod digest;
pub mod folder;
pub mod frame;
pub mod init;
pub mod keys;
pub mod layout;
pub mod log_index;
pub mod media;
mod plan;
pub mod png;
pub mod point_store;
pub mod progress;
pub mod record;
pub mod restore;
pub mod resume_point;
pub mod row;
pub mod run_log;
pub mod sync;
pub mod time;
pub mod transport;
pub mod tus;
pub mod value;
pub mod varint;
