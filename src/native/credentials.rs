//! Where the server URL and API key come from: flags, `TIDELOG_BASE_URL` /
//! `TIDELOG_API_KEY`, then the login stored by `tidelog login` (a 0600 JSON file).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::layout::read_json;

/// The server used when nothing names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// A resolved server and, if one was found, its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// Base URL without a trailing slash.
    pub server: String,
    /// Whether the server was named (flag, environment or login) rather than defaulted.
    pub explicit_server: bool,
    /// The API key, when one was found.
    pub api_key: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Stored {
    #[serde(default)]
    default_server: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, String>,
}

/// The stored-login file: `$TIDELOG_CONFIG_DIR`, else `$XDG_CONFIG_HOME/tidelog`, else
/// `~/.config/tidelog`, then `credentials.json`.
pub fn path() -> PathBuf {
    let dir = std::env::var_os("TIDELOG_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("tidelog")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/tidelog")))
        .unwrap_or_else(|| PathBuf::from(".tidelog-config"));
    dir.join("credentials.json")
}

fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// Resolves server and key: explicit values, then the environment, then the stored login.
pub fn resolve(server: Option<&str>, api_key: Option<String>) -> Credentials {
    let stored: Stored = read_json(&path()).ok().flatten().unwrap_or_default();
    let named = server
        .map(str::to_owned)
        .or_else(|| std::env::var("TIDELOG_BASE_URL").ok().filter(|s| !s.is_empty()))
        .or_else(|| stored.default_server.clone());
    let explicit_server = named.is_some();
    let server = normalize(named.as_deref().unwrap_or(DEFAULT_SERVER));
    let api_key = api_key
        .or_else(|| std::env::var("TIDELOG_API_KEY").ok().filter(|s| !s.is_empty()))
        .or_else(|| stored.keys.get(&server).cloned());
    Credentials {
        server,
        explicit_server,
        api_key,
    }
}

/// Stores `key` for `server` (and makes it the default server), readable by the owner only.
pub fn store(server: &str, key: &str) -> io::Result<PathBuf> {
    let path = path();
    let mut stored: Stored = read_json(&path).ok().flatten().unwrap_or_default();
    let server = normalize(server);
    stored.keys.insert(server.clone(), key.to_owned());
    stored.default_server = Some(server);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let bytes = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
    super::layout::write_atomic_mode(&path, &bytes, 0o600)?;
    Ok(path)
}
