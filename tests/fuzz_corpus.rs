//! Every committed fuzz input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) passes
//! its target's property checks (`fuzz/checks.rs`, the same code libFuzzer runs), so a
//! finding stays fixed and the corpora stay meaningful without a fuzzer in the test run.

#![cfg(not(target_arch = "wasm32"))]

#[path = "../fuzz/checks.rs"]
mod checks;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The fuzzers' `-malloc_limit_mb=512`: one allocation larger than this is a finding.
const MAX_ALLOC: usize = 512 << 20;

/// The system allocator, aborting on any allocation over [`MAX_ALLOC`] so an input that
/// over-allocates fails this test as it fails under libFuzzer.
struct Capped;

fn over_limit() -> ! {
    let msg = b"fuzz_corpus: an input asked for one allocation over 512 MiB (-malloc_limit_mb)\n";
    let _ = std::io::stderr().write_all(msg);
    std::process::abort()
}

// SAFETY: every call is forwarded unchanged to `System`, or aborts before allocating.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            over_limit()
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOC {
            over_limit()
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOC {
            over_limit()
        }
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("readable folder").path()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_passes_its_checks() {
    let mut failed = Vec::new();
    for &(target, check) in checks::TARGETS {
        let corpus = inputs("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        for path in corpus.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(path).expect("readable input");
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "inputs failing their checks:\n{}",
        failed.join("\n")
    );
}
