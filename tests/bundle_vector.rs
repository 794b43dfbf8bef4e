//! Bundle bytes are a pure function of the records: the native build reproduces the vector's
//! sha256 (tests/browser.rs checks the same in Chromium's wasm).

#![cfg(not(target_arch = "wasm32"))]

mod vectors;

use tidelog::core::bundle::{read_bundle, Limits};

#[test]
fn native_bundle_matches_the_shared_vector() {
    let b = vectors::bundle();
    assert_eq!(b.sha256, vectors::BUNDLE_SHA256.trim());
    let back = read_bundle(&b.bytes, &Limits::default()).unwrap();
    assert_eq!(back.history.len(), 201);
    assert_eq!(back.system.len(), 4);
    assert_eq!(back.files.len(), 1);
}
