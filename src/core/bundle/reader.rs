//! Reads an untrusted bundle within limits: every refusal names what was wrong.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Component;

use flate2::read::GzDecoder;
use serde::Deserialize;

use super::columns::{Budget, Columns, TableError};
use super::manifest::{Manifest, FORMAT};
use super::{sha256_hex, BundleError, FILES_DIR, HISTORY, MANIFEST, RECORDS, SYSTEM};
use crate::core::record::Meta;
use crate::core::run_log::MAX_KEY_BYTES;

/// Bounds on what a bundle may unpack and decode to, so a small bundle cannot ask for a large
/// allocation (docs/SECURITY.md has the figures).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Total bytes after gunzip, tar headers included.
    pub max_unpacked: u64,
    /// Entries in the tar.
    pub max_entries: usize,
    /// Rows × keys of one table: the cells a wide export of it would hold.
    pub max_cells: u64,
    /// Longest key name, as the client refuses at `log()`.
    pub max_key_bytes: usize,
    /// Memory the decoded records, rows and their stored JSON may take together.
    pub max_decoded_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked: super::DEFAULT_MAX_UNPACKED,
            max_entries: 10_000,
            max_cells: 1 << 30,
            max_key_bytes: MAX_KEY_BYTES,
            max_decoded_bytes: 1 << 30,
        }
    }
}

/// A bundle that passed every check.
#[derive(Debug)]
pub struct BundleContents {
    /// Its manifest.
    pub manifest: Manifest,
    /// The JSON records with their sequence numbers.
    pub records: Vec<(u64, Meta)>,
    /// History rows.
    pub history: Columns,
    /// System metric rows.
    pub system: Columns,
    /// Saved files' contents by sha256 (entries `files/<sha256>`), checked against it.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The decode budget left, for whatever the caller builds from the rows.
    pub budget: Budget,
}

/// Counts bytes through, failing once `left` runs out: the gzip-bomb guard.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(self.left.saturating_add(1).min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::other(TooBig(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooBig(u64);

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unpacked size over {}", self.0)
    }
}

impl std::error::Error for TooBig {}

fn classify(e: io::Error, tar_level: bool) -> BundleError {
    if let Some(TooBig(limit)) = e.get_ref().and_then(|i| i.downcast_ref::<TooBig>()) {
        return BundleError::TooLarge { limit: *limit };
    }
    let is_gzip = matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
    ) || !tar_level;
    if is_gzip {
        BundleError::Gzip(e.to_string())
    } else {
        BundleError::Tar(e.to_string())
    }
}

fn check_path(raw: &[u8]) -> Result<String, BundleError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let s = std::str::from_utf8(raw).map_err(|_| BundleError::UnsafePath(lossy()))?;
    let ok = !s.is_empty()
        && !s.contains('\\')
        && !s.contains('\0')
        && std::path::Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(BundleError::UnsafePath(s.to_owned()))
    }
}

#[derive(Deserialize)]
struct MetaLine {
    seq: u64,
    #[serde(flatten)]
    meta: Meta,
}

/// Unpacks and verifies a bundle: safe paths, regular files only, sizes within `limits`,
/// every entry matching the manifest, every record decodable and inside the stated range.
pub fn read_bundle(bytes: &[u8], limits: &Limits) -> Result<BundleContents, BundleError> {
    read_bundle_from(bytes, limits)
}

/// [`read_bundle`] from a stream (a staged upload's file), so the gzip bytes are never all
/// in memory at once.
pub fn read_bundle_from(gzip: impl Read, limits: &Limits) -> Result<BundleContents, BundleError> {
    let capped = Capped {
        inner: GzDecoder::new(gzip),
        left: limits.max_unpacked,
        limit: limits.max_unpacked,
    };
    let mut archive = tar::Archive::new(capped);
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut count = 0usize;
    for entry in archive.entries().map_err(|e| classify(e, false))? {
        let mut entry = entry.map_err(|e| classify(e, true))?;
        count += 1;
        if count > limits.max_entries {
            return Err(BundleError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let path = check_path(&entry.path_bytes())?;
        if !matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        ) {
            return Err(BundleError::NotAFile(path));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| BundleError::Tar(e.to_string()))?;
        if size > limits.max_unpacked {
            return Err(BundleError::TooLarge {
                limit: limits.max_unpacked,
            });
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| classify(e, true))?;
        if data.len() as u64 != size {
            return Err(BundleError::Gzip(format!("entry {path:?} is truncated")));
        }
        if entries.insert(path.clone(), data).is_some() {
            return Err(BundleError::Manifest(format!("entry {path:?} appears twice")));
        }
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| classify(e, false))?;

    let manifest_bytes = entries
        .remove(MANIFEST)
        .ok_or_else(|| BundleError::Manifest("manifest.json is missing".into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest(format!(
            "unsupported format {}",
            manifest.format
        )));
    }
    if manifest.seq_start > manifest.seq_end {
        return Err(BundleError::Manifest("seq_start is after seq_end".into()));
    }
    if manifest.run.id.is_empty() || manifest.run.project.is_empty() {
        return Err(BundleError::Manifest("run id and project are required".into()));
    }
    if manifest.entries.len() != entries.len() {
        return Err(BundleError::Manifest(format!(
            "manifest lists {} entries, the tar holds {}",
            manifest.entries.len(),
            entries.len()
        )));
    }
    for e in &manifest.entries {
        let data = entries
            .get(&e.path)
            .ok_or_else(|| BundleError::Manifest(format!("entry {:?} is missing", e.path)))?;
        if data.len() as u64 != e.size || sha256_hex(data) != e.sha256 {
            return Err(BundleError::ChecksumMismatch(e.path.clone()));
        }
    }

    let range = manifest.seq_start..manifest.seq_end;
    let records_err = |entry: &'static str, why: String| BundleError::Records { entry, why };
    let mut budget = Budget::new(limits);
    let mut records = Vec::new();
    if let Some(data) = entries.remove(RECORDS) {
        budget
            .charge_json(data.len())
            .map_err(|over| BundleError::OverBudget { entry: RECORDS, over })?;
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let l: MetaLine =
                serde_json::from_slice(line).map_err(|e| records_err(RECORDS, e.to_string()))?;
            if !range.contains(&l.seq) {
                return Err(records_err(RECORDS, format!("seq {} outside {range:?}", l.seq)));
            }
            records.push((l.seq, l.meta));
        }
    }
    let mut table = |name: &'static str| -> Result<Columns, BundleError> {
        let Some(data) = entries.remove(name) else {
            return Ok(Columns::default());
        };
        let cols = Columns::decode(&data, &mut budget).map_err(|e| match e {
            TableError::Decode(e) => records_err(name, e.to_string()),
            TableError::Budget(over) => BundleError::OverBudget { entry: name, over },
        })?;
        if let Some(bad) = cols.seqs.iter().find(|s| !range.contains(s)) {
            return Err(records_err(name, format!("seq {bad} outside {range:?}")));
        }
        Ok(cols)
    };
    let history = table(HISTORY)?;
    let system = table(SYSTEM)?;
    let mut files = BTreeMap::new();
    for (path, data) in entries {
        match path.strip_prefix(FILES_DIR) {
            Some(sha) if sha == sha256_hex(&data) => {
                files.insert(sha.to_owned(), data);
            }
            Some(_) => return Err(BundleError::ChecksumMismatch(path)),
            _ => return Err(BundleError::Manifest(format!("unexpected entry {path:?}"))),
        }
    }
    for (_, meta) in &records {
        if let Meta::File(f) = meta {
            check_path(f.path.as_bytes())?;
        }
    }
    Ok(BundleContents {
        manifest,
        records,
        history,
        system,
        files,
        budget,
    })
}
