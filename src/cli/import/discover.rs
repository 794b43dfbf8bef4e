//! Finding the sources under the PATHs of `tidelog import`, and the run ids that make a
//! second import of the same source a no-op.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tidelog::core::bundle::sha256_hex;
use tidelog::core::layout::run_id_from;

/// Deepest folder searched under a PATH.
const MAX_DEPTH: usize = 32;

/// Every file under the PATHs that `wanted` picks (a PATH that is a file is taken as is),
/// each as a one-file source, sorted; symbolic links are not followed.
pub fn find(paths: &[PathBuf], wanted: impl Fn(&Path) -> bool) -> anyhow::Result<Vec<Vec<PathBuf>>> {
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if !meta.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut stack = vec![(path.clone(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let e = e?;
                let kind = e.file_type()?;
                if kind.is_dir() && depth < MAX_DEPTH {
                    stack.push((e.path(), depth + 1));
                } else if kind.is_file() && wanted(&e.path()) {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out.into_iter().map(|p| vec![p]).collect())
}

/// Event files grouped by their folder: one run per folder, files in name (= time) order.
pub fn group_by_folder(files: Vec<Vec<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let mut groups: Vec<Vec<PathBuf>> = Vec::new();
    for f in files.into_iter().flatten() {
        match groups.last_mut() {
            Some(g) if g[0].parent() == f.parent() => g.push(f),
            _ => groups.push(vec![f]),
        }
    }
    groups
}

/// A run id that is the same every time the same source is imported.
pub fn derived_id(kind: &str, source: &str) -> String {
    let digest = sha256_hex(format!("{kind}\0{source}").as_bytes());
    let mut raw = [0u8; 8];
    for (i, b) in raw.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).expect("hex");
    }
    run_id_from(raw)
}

pub fn canonical(path: &Path) -> anyhow::Result<String> {
    let p = fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(p.to_string_lossy().into_owned())
}
