//! tidelog: an offline-first experiment tracker. Log runs with no network; sync them to a
//! tidelog server later, exactly once.
//!
//! [`core`] is the I/O-free heart shared by every target; `native` (files, threads, HTTP
//! client) and `server` (axum + SQL) wrap it on the host.

#![warn(missing_docs)]

pub mod core;

#[cfg(not(target_arch = "wasm32"))]
pub mod import;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(all(feature = "python", not(target_arch = "wasm32")))]
mod python;
#[cfg(not(target_arch = "wasm32"))]
pub mod server;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use crate::core::media::{Media, MediaError};
pub use crate::core::record::{FileRef, Meta, RunInfo, RunState};
pub use crate::core::run_log::{LogError, LogOptions, Logged};
pub use crate::core::value::Value;
#[cfg(not(target_arch = "wasm32"))]
pub use native::run::{init, Mode, Resume, Run, RunError, Settings};
