//! The native home: runs written to the on-disk layout by a background writer, and the
//! HTTP client and credentials used by `tidelog sync`.

pub mod credentials;
pub mod layout;
pub mod run;
pub mod store;
pub mod sysmetrics;
pub mod transport;
mod writer;
